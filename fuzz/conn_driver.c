/*
 * Whole-connection fuzz driver, shared by fuzz_conn_server.c and
 * fuzz_conn_client.c.
 * SPDX-License-Identifier: MIT
 *
 * Input layout:
 *   byte 0   configuration bits (CF_* below)
 *   byte 1   limits and timer values
 *   byte 2-3 seed of the chunk sizes (feeding and draining) and app bits
 *            (SB_* below), among them permessage-deflate: SB_PMD turns it
 *            on, byte 2 holds its parameters (PB_* below)
 *   rest     the peer's bytes: frames, after a valid handshake the driver
 *            builds, or the whole handshake as well (CF_RAW)
 *
 * A run creates a connection with a counting allocator, starts it, feeds
 * the peer's bytes in chunks, pulls every event, answers like an echo
 * application (echo data, answer requests, ping and close sometimes),
 * drains the output in chunks and ticks the clock. Invariants:
 *  - every output byte after the handshake head is a well-formed,
 *    complete frame of this role (server: unmasked; client: masked),
 *    fragments in order, nothing after a close frame, close payloads
 *    with a sendable code and UTF-8 reason; RSV1 only when
 *    permessage-deflate was negotiated, on first fragments only;
 *  - the data of the output frames, inflated (our inflater, with the
 *    negotiated window and takeover) where RSV1 says so, is exactly the
 *    data the application sent, in order;
 *  - live allocated bytes never exceed what the configured limits allow,
 *    and nothing is left allocated after ws_conn_del();
 *  - unless timers are on, the same input fed unsplit gives the same
 *    event sequence (type, flags and data joined per frame, close code,
 *    error): split invariance; the split run also lets go of the
 *    busy-only state now and then (ws_conn_shrink()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"
#include "ws_int.h"

int fuzz_conn_run(ws_role role, const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

enum {
  CF_MESSAGE = 0x01,  /* WS_DELIVER_MESSAGE */
  CF_SMALL = 0x02,    /* small limits from byte 1 */
  CF_NO_PONG = 0x04,  /* WS_CFG_NO_AUTO_PONG; the app answers instead */
  CF_RAW = 0x08,      /* the input holds the handshake too */
  CF_NO_CLOSE = 0x10, /* WS_CFG_NO_AUTO_CLOSE; the app answers instead */
  CF_TIMERS = 0x20,   /* short timers, clock moving; no split compare */
  CF_ALT = 0x40,      /* server: reject or other request; client: proto */
  CF_EOF = 0x80       /* transport EOF after the input */
};

/* Bits of the seed (bytes 2-3) that the application and the
 * configuration use; the whole seed also seeds the chunk sizes. */
enum {
  SB_REQ = 0x03,     /* server: which request / whether to reject */
  SB_PROTO = 0x04,   /* server: accept the first subprotocol */
  SB_MINSIZE0 = 0x08,/* pmd.min_size 0: compress every message */
  SB_PING = 0x10,    /* the app pings after some frames */
  SB_CLOSE = 0x20,   /* the app closes after two frames */
  SB_PMD = 0x40,     /* permessage-deflate enabled */
  SB_LEVEL1 = 0x80   /* pmd.level 1 (else 6) */
};
/* Byte 2 (the seed's high byte), when SB_PMD is set. */
enum {
  PB_SBITS = 0x07,   /* server_max_window_bits - 8 */
  PB_CBITS = 0x38,   /* client_max_window_bits - 8, shifted by 3 */
  PB_SNCT = 0x40,    /* server_no_context_takeover */
  PB_CNCT = 0x80     /* client_no_context_takeover */
};

/* ---- counting allocator ------------------------------------------------- */

typedef struct alloc_ctx {
  size_t live, peak, limit;
} alloc_ctx;

#define HDR 16 /* keeps malloc's alignment */

static void over_limit(alloc_ctx *a, size_t want) {
  fprintf(stderr,
          "allocation over the configured limits: live %zu + %zu > %zu\n",
          a->live, want, a->limit);
  abort();
}

static void *c_malloc(size_t n, void *ud) {
  alloc_ctx *a = ud;
  if (n > a->limit || a->live + n > a->limit) over_limit(a, n);
  uint8_t *p = malloc(n + HDR);
  if (!p) return NULL;
  memcpy(p, &n, sizeof(n));
  a->live += n;
  if (a->live > a->peak) a->peak = a->live;
  return p + HDR;
}

static void c_free(void *ptr, void *ud) {
  alloc_ctx *a = ud;
  if (!ptr) return;
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t n;
  memcpy(&n, p, sizeof(n));
  CHECK(a->live >= n);
  a->live -= n;
  free(p);
}

static void *c_realloc(void *ptr, size_t n, void *ud) {
  alloc_ctx *a = ud;
  if (!ptr) return c_malloc(n, ud);
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t old;
  memcpy(&old, p, sizeof(old));
  if (n > a->limit || a->live - old + n > a->limit) over_limit(a, n - old);
  uint8_t *q = realloc(p, n + HDR);
  if (!q) return NULL;
  memcpy(q, &n, sizeof(n));
  a->live = a->live - old + n;
  if (a->live > a->peak) a->peak = a->live;
  return q + HDR;
}

/* ---- small helpers -------------------------------------------------------- */

typedef struct bytes {
  uint8_t *p;
  size_t len, cap;
} bytes;

static void b_add(bytes *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    CHECK(b->p);
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void b_u32(bytes *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  b_add(b, x, 4);
}

static uint32_t xs(uint32_t *r) {
  *r ^= *r << 13;
  *r ^= *r >> 17;
  *r ^= *r << 5;
  return *r;
}

static const uint8_t *find(const uint8_t *h, size_t hl, const char *n) {
  size_t nl = strlen(n);
  for (size_t i = 0; i + nl <= hl; i++)
    if (memcmp(h + i, n, nl) == 0) return h + i;
  return NULL;
}

/* ---- one run ---------------------------------------------------------------- */

typedef struct run {
  ws_role role;
  uint8_t cf, lim;
  uint16_t seed;
  int split;          /* feed in chunks (else all at once) */
  ws_conn *c;
  alloc_ctx alloc;
  ws_config cfg;
  uint32_t r;         /* chunk-size generator */
  uint32_t rand_state;/* the connection's deterministic randomness */
  uint64_t now;
  bytes events;       /* recorded event sequence */
  bytes frame;        /* data of the current frame so far */
  uint32_t frame_flags;
  uint8_t frame_type;
  int in_frame;
  bytes out;          /* everything the connection wrote */
  int accepted;       /* server: accept() returned 0 */
  bytes sent;         /* data the application sent (send() returned 0) */
  ws_pmd_params pmd;  /* what was negotiated, at WS_EV_OPEN */
  size_t nframes;     /* complete data frames seen */
  size_t nevents;
} run;

static int det_rand(uint8_t *buf, size_t len, void *ud) {
  uint32_t *st = ud;
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t)(xs(st) >> 11);
  return 0;
}

static void record(run *R, uint8_t type, uint32_t flags, uint16_t code,
                   int err, const uint8_t *d, size_t n) {
  uint8_t t = type;
  b_add(&R->events, &t, 1);
  b_u32(&R->events, flags);
  b_u32(&R->events, code);
  b_u32(&R->events, (uint32_t)err);
  b_u32(&R->events, (uint32_t)n);
  b_add(&R->events, d, n);
}

static void drain(run *R) {
  ws_iovec iov[4];
  size_t guard = 0;
  for (;;) {
    size_t k = ws_conn_out_peek(R->c, iov, 4);
    if (k == 0) {
      CHECK(ws_conn_out_pending(R->c) == 0);
      CHECK(!ws_conn_want_write(R->c));
      return;
    }
    CHECK(k <= 4);
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
      CHECK(iov[i].len > 0 && iov[i].base);
      total += iov[i].len;
    }
    CHECK(total <= ws_conn_out_pending(R->c));
    /* write a fuzzer-chosen part of the first vector */
    size_t n = iov[0].len;
    if (R->split && (xs(&R->r) & 3u) == 0) n = 1 + xs(&R->r) % n;
    b_add(&R->out, iov[0].base, n);
    ws_conn_out_consume(R->c, n);
    CHECK(++guard < 1000000);
  }
}

static void tick(run *R, uint64_t adv) {
  if (R->cf & CF_TIMERS) R->now += adv;
  int rv = ws_conn_tick(R->c, R->now);
  CHECK(rv <= 0);
  (void)ws_conn_next_deadline(R->c);
}

static void end_frame_record(run *R) {
  record(R, R->frame_type, R->frame_flags, 0, 0, R->frame.p, R->frame.len);
  R->frame.len = 0;
  R->in_frame = 0;
  R->frame_flags = 0;
  R->nframes++;
}

/* RFC 7230 3.2.6 token, as RFC 6455 4.1 requires of subprotocols. */
static int is_token(const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c <= 0x20 || c >= 0x7F || strchr("()<>@,;:\\\"/[]?={}", c))
      return 0;
  }
  return 1;
}

/* The application's answer to a request: look at it, then accept (with
 * the first offered subprotocol when one is there) or reject. */
static void on_request(run *R, const ws_request *req) {
  CHECK(req != NULL);
  ws_slice v, p0 = {NULL, 0};
  for (size_t i = 0; ws_request_protocol(req, i, &v); i++)
    if (i == 0) p0 = v;
  for (size_t i = 0; ws_request_extension(req, i, &v); i++)
    CHECK(v.len > 0);
  (void)ws_request_header(req, "Host", 0, &v);
  (void)ws_request_header(req, "Sec-WebSocket-Protocol", 1, &v);
  if ((R->cf & CF_ALT) && (R->seed & SB_REQ) == 0) {
    static const ws_kv h[1] = {{"X-Reason", "fuzz"}};
    CHECK(ws_conn_reject(R->c, 403, h, 1, "no", 2) == 0);
    return;
  }
  char proto[64];
  ws_accept_params ap;
  static const ws_kv h[1] = {{"X-Fuzz", "1"}};
  memset(&ap, 0, sizeof(ap));
  ap.headers = h;
  ap.nheaders = 1;
  if (p0.len && p0.len < sizeof(proto) && is_token(p0.base, p0.len) &&
      (R->seed & SB_PROTO)) {
    memcpy(proto, p0.base, p0.len);
    proto[p0.len] = 0;
    ap.protocol = proto;
  }
  int rv = ws_conn_accept(R->c, &ap);
  if (rv) fprintf(stderr, "accept: %s\n", ws_strerror(rv));
  CHECK(rv == 0);
  R->accepted = 1;
}

static void on_data(run *R, const ws_event *ev) {
  uint8_t type = (uint8_t)ev->type;
  if (!R->in_frame) {
    R->in_frame = 1;
    R->frame_type = type;
  }
  CHECK(R->frame_type == type);
  CHECK(ev->data.len == 0 || ev->data.base != NULL);
  b_add(&R->frame, ev->data.base, ev->data.len);
  R->frame_flags |= ev->flags;
  if (R->cfg.delivery == WS_DELIVER_MESSAGE)
    CHECK(ev->flags == (WS_EVF_FIRST | WS_EVF_FRAME_END | WS_EVF_FINAL));

  /* echo */
  ws_opcode op = ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
  uint32_t sf = (ev->flags & WS_EVF_FINAL) ? 0 : WS_SEND_MORE;
  int rv = ws_conn_send(R->c, op, ev->data.base, ev->data.len, sf);
  CHECK(rv == 0 || rv == WS_ERR_WOULDBLOCK || rv == WS_ERR_TOO_BIG ||
        rv == WS_ERR_INVALID_STATE || rv == WS_ERR_INVALID_ARGUMENT ||
        rv == WS_ERR_NOMEM);
  if (rv == 0) b_add(&R->sent, ev->data.base, ev->data.len);

  if (ev->flags & WS_EVF_FRAME_END) {
    end_frame_record(R);
    if ((R->seed & SB_PING) && R->nframes % 3 == 1) {
      rv = ws_conn_ping(R->c, "fz", 2);
      CHECK(rv <= 0);
    }
    if ((R->seed & SB_CLOSE) && R->nframes == 2) {
      rv = ws_conn_close(R->c, 1000, "bye", 3);
      CHECK(rv == 0 || rv == WS_ERR_INVALID_STATE);
    }
  }
}

/* What permessage-deflate negotiated: within the configuration, and on
 * whenever the driver's own handshake offered or answered it. */
static void check_pmd(run *R) {
  ws_pmd_params *p = &R->pmd;
  const ws_pmd_config *c = &R->cfg.pmd;
  ws_conn_pmd(R->c, p);
  if (!p->enabled) {
    CHECK(p->server_max_window_bits == 0 && p->client_max_window_bits == 0);
    /* the driver's handshakes make an acceptable offer / answer */
    if (!(R->cf & CF_RAW)) CHECK(!c->enable);
    return;
  }
  CHECK(c->enable);
  CHECK(p->server_max_window_bits >= 8 && p->server_max_window_bits <= 15);
  CHECK(p->client_max_window_bits >= 8 && p->client_max_window_bits <= 15);
  /* never a window above what we asked for or allow */
  /* server: the smaller of the offer and its bound; client: at most
   * what it offered, which is its configuration */
  CHECK(p->server_max_window_bits <= c->server_max_window_bits);
  CHECK(p->client_max_window_bits <= c->client_max_window_bits);
  if (c->server_no_context_takeover) CHECK(p->server_no_context_takeover);
  if (c->client_no_context_takeover) CHECK(p->client_no_context_takeover);
}

static void handle(run *R, const ws_event *ev) {
  R->nevents++;
  if ((ev->type == WS_EV_ERROR || ev->type == WS_EV_CLOSE) && R->in_frame) {
    /* a frame cut short (by an error or EOF): how much of it came out
     * depends on the split, so it is not compared. (Pings and pongs come
     * between frames; inside a compressed message, whose events do not
     * follow its frames, the data goes on after them.) */
    R->frame.len = 0;
    R->in_frame = 0;
    R->frame_flags = 0;
  }
  switch (ev->type) {
  case WS_EV_REQUEST:
    CHECK(R->role == WS_ROLE_SERVER);
    record(R, (uint8_t)ev->type, 0, 0, 0, ev->request->target.base,
           ev->request->target.len);
    on_request(R, ev->request);
    break;
  case WS_EV_OPEN:
    record(R, (uint8_t)ev->type, 0, 0, 0, NULL, 0);
    if (R->role == WS_ROLE_CLIENT) CHECK(ev->response != NULL);
    check_pmd(R);
    break;
  case WS_EV_TEXT:
  case WS_EV_BINARY:
    on_data(R, ev);
    break;
  case WS_EV_PING:
    CHECK(ev->data.len <= WS_CONTROL_MAX);
    record(R, (uint8_t)ev->type, 0, 0, 0, ev->data.base, ev->data.len);
    if (R->cf & CF_NO_PONG) {
      int rv = ws_conn_pong(R->c, ev->data.base, ev->data.len);
      CHECK(rv <= 0);
    }
    break;
  case WS_EV_PONG:
    CHECK(ev->data.len <= WS_CONTROL_MAX);
    record(R, (uint8_t)ev->type, 0, 0, 0, ev->data.base, ev->data.len);
    break;
  case WS_EV_CLOSE:
    CHECK(ev->data.len <= WS_CONTROL_MAX - 2);
    CHECK(ev->close_code == 1005 || ws_close_code_valid(ev->close_code));
    CHECK(ws_utf8_validate(ev->data.base, ev->data.len) == 0);
    record(R, (uint8_t)ev->type, 0, ev->close_code, 0, ev->data.base,
           ev->data.len);
    if (R->cf & CF_NO_CLOSE) {
      uint16_t code = ev->close_code == 1005 ? 0 : ev->close_code;
      int rv = ws_conn_close(R->c, code, NULL, 0);
      CHECK(rv <= 0);
    }
    break;
  case WS_EV_ERROR:
    CHECK(ev->error < 0);
    record(R, (uint8_t)ev->type, 0, ev->close_code, ev->error, ev->data.base,
           ev->data.len);
    break;
  default:
    CHECK(0 && "unknown event type");
  }
}

static void pull(run *R) {
  ws_event ev;
  size_t guard = 0;
  int rv;
  while ((rv = ws_conn_next_event(R->c, &ev)) == 0) {
    handle(R, &ev);
    CHECK(++guard < 1000000);
  }
  CHECK(rv == WS_ERR_WOULDBLOCK);
  drain(R);
}

/* In a split run, ws_conn_shrink() now and then between
 * feeds: the busy-only state goes whenever the connection is quiet and
 * comes back with the next byte, which must change no event and no
 * output byte (the unsplit run never shrinks). */
static void shrink(run *R) {
  if (!R->split || (xs(&R->r) & 3u) != 0) return;
  if (ws_conn_shrink(R->c) != 1) return;
  CHECK(ws_conn_state(R->c) == WS_STATE_OPEN);
  CHECK(ws_conn_out_pending(R->c) == 0 && !ws_conn_want_write(R->c));
  CHECK(ws_conn_shrink(R->c) == 0);
}

/* Feeds |len| bytes (a heap block of exactly that size, so over-reads
 * are caught). Returns 0 once the connection refuses more input. */
static int feed(run *R, uint8_t *in, size_t len) {
  size_t pos = 0;
  size_t stuck = 0;
  while (pos < len) {
    size_t n = 0;
    int rv = ws_conn_feed(R->c, in + pos, len - pos, &n);
    CHECK(n <= len - pos);
    pos += n;
    size_t before = R->nevents;
    pull(R);
    tick(R, 1);
    drain(R);
    shrink(R);
    if (rv != 0 && rv != WS_ERR_WOULDBLOCK) {
      CHECK(rv < 0);
      return 0;
    }
    if (n == 0 && R->nevents == before) {
      /* no progress: only legitimate while waiting on the app */
      CHECK(++stuck < 4);
    } else {
      stuck = 0;
    }
  }
  return 1;
}

static size_t chunk_size(run *R, size_t left) {
  if (!R->split) return left;
  uint32_t x = xs(&R->r);
  size_t n;
  switch (x & 3u) {
  case 0: n = 1; break;
  case 1: n = 1 + (x >> 8) % 8u; break;
  case 2: n = 1 + (x >> 8) % 64u; break;
  default: n = 1 + (x >> 8) % 1024u; break;
  }
  return n < left ? n : left;
}

static void feed_all(run *R, const uint8_t *stream, size_t len) {
  size_t pos = 0;
  while (pos < len) {
    size_t n = chunk_size(R, len - pos);
    uint8_t *chunk = malloc(n);
    CHECK(chunk);
    memcpy(chunk, stream + pos, n);
    int more = feed(R, chunk, n);
    /* event slices may point into |chunk|: all were pulled by now */
    free(chunk);
    pos += n;
    if (!more) break;
    if (R->cf & CF_TIMERS) tick(R, xs(&R->r) % 64u);
  }
}

static void check_close_payload(const uint8_t *p, size_t n) {
  CHECK(n != 1);
  if (n >= 2) {
    uint16_t code = (uint16_t)(p[0] << 8 | p[1]);
    CHECK(ws_close_code_valid(code));
    CHECK(ws_utf8_validate(p + 2, n - 2) == 0);
  }
}

/* Inflates one frame's payload of our own compressed output onto |out|,
 * with the tail after the final frame (RFC 7692 7.2.2). */
static void inflate_into(ws_inflater *z, bytes *out, const uint8_t *p,
                         size_t n, int fin, int reset) {
  static const uint8_t tl[4] = {0x00, 0x00, 0xff, 0xff};
  uint8_t buf[4096];
  for (int part = 0; part < 2; part++) {
    const uint8_t *in = part ? tl : p;
    size_t len = part ? (fin ? 4u : 0u) : n, ip = 0;
    for (;;) {
      size_t nin, nout;
      int rv = ws_inflate(z, in + ip, len - ip, &nin, buf, sizeof(buf), &nout);
      if (rv) fprintf(stderr, "our output does not inflate: %d\n", rv);
      CHECK(rv == 0);
      b_add(out, buf, nout);
      ip += nin;
      if (ip == len && nout < sizeof(buf)) break;
    }
  }
  if (fin) {
    CHECK(ws_inflate_end_message(z) == 0);
    if (reset) ws_inflate_reset(z);
  }
}

/* The whole output: handshake head, then complete frames of our role. */
static void check_output(run *R) {
  const uint8_t *o = R->out.p;
  size_t len = R->out.len, pos;
  if (len == 0) {
    CHECK(!R->accepted);
    return;
  }
  if (R->role == WS_ROLE_SERVER) {
    if (len < 13 || memcmp(o, "HTTP/1.1 101 ", 13) != 0) {
      /* an HTTP error answer, and nothing else */
      CHECK(!R->accepted);
      CHECK(len >= 13 && memcmp(o, "HTTP/1.1 ", 9) == 0);
      CHECK(o[9] == '4' || o[9] == '5');
      return;
    }
    CHECK(R->accepted);
  } else {
    CHECK(len >= 4 && memcmp(o, "GET ", 4) == 0);
  }
  const uint8_t *e = find(o, len, "\r\n\r\n");
  CHECK(e != NULL);
  pos = (size_t)(e - o) + 4;

  int is_client = R->role == WS_ROLE_CLIENT;
  int msg_open = 0, closed = 0, comp = 0;
  uint8_t ctl[WS_CONTROL_MAX];
  /* our inflater for our own compressed output */
  ws_inflater inf;
  int have_inf = 0;
  unsigned our_bits = is_client ? R->pmd.client_max_window_bits
                                : R->pmd.server_max_window_bits;
  int our_reset = is_client ? R->pmd.client_no_context_takeover
                            : R->pmd.server_no_context_takeover;
  bytes data = {NULL, 0, 0}; /* the output's data, inflated */
  uint8_t *pay = NULL;
  if (R->pmd.enabled) {
    CHECK(ws_inflate_init(&inf, NULL, our_bits) == 0);
    have_inf = 1;
  }
  while (pos < len) {
    ws_frame_header hd;
    size_t hl = 0;
    CHECK(!closed); /* nothing after a close frame */
    int rv = ws_frame_decode_header(&hd, o + pos, len - pos, &hl);
    if (rv) fprintf(stderr, "output frame at %zu of %zu: %d\n", pos, len, rv);
    CHECK(rv == 0);
    /* our frames, seen by the peer: a server checks a client's frames */
    CHECK(ws_frame_check_header(&hd, is_client,
                                R->pmd.enabled ? WS_RSV1 : 0) == 0);
    pos += hl;
    CHECK(hd.payload_len <= len - pos);
    size_t n = (size_t)hd.payload_len;
    if (hd.opcode <= WS_OP_BINARY) {
      /* RFC 7692 6.1: RSV1 on the first frame of a message only */
      if (hd.opcode == WS_OP_CONT) CHECK(!(hd.rsv & WS_RSV1));
      pay = realloc(pay, n ? n : 1);
      CHECK(pay);
      memcpy(pay, o + pos, n);
      if (hd.masked) ws_mask(pay, n, hd.mask, 0);
    }
    switch (hd.opcode) {
    case WS_OP_CONT:
      CHECK(msg_open);
      if (comp)
        inflate_into(&inf, &data, pay, n, hd.fin, our_reset);
      else
        b_add(&data, pay, n);
      if (hd.fin) msg_open = comp = 0;
      break;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
      CHECK(!msg_open);
      comp = (hd.rsv & WS_RSV1) != 0;
      if (comp)
        inflate_into(&inf, &data, pay, n, hd.fin, our_reset);
      else
        b_add(&data, pay, n);
      if (!hd.fin) msg_open = 1;
      else comp = 0;
      break;
    case WS_OP_CLOSE:
      memcpy(ctl, o + pos, n);
      if (hd.masked) ws_mask(ctl, n, hd.mask, 0);
      check_close_payload(ctl, n);
      closed = 1;
      break;
    default:
      break;
    }
    pos += n;
  }
  /* the data sent, every byte and in order; all of it unless a message
   * was cut short by the end of the connection */
  CHECK(data.len <= R->sent.len);
  CHECK(data.len == 0 || memcmp(data.p, R->sent.p, data.len) == 0);
  if (!msg_open) {
    if (data.len != R->sent.len)
      fprintf(stderr, "output data %zu bytes, sent %zu\n", data.len,
              R->sent.len);
    CHECK(data.len == R->sent.len);
  }
  if (have_inf) ws_inflate_free(&inf);
  free(data.p);
  free(pay);
}

/* A valid 101 for the request the client wrote. */
static void build_response(run *R, bytes *resp) {
  const uint8_t *o = R->out.p;
  const uint8_t *k = find(o, R->out.len, "Sec-WebSocket-Key: ");
  CHECK(k != NULL);
  k += strlen("Sec-WebSocket-Key: ");
  CHECK((size_t)(k - o) + 24 <= R->out.len);
  char accept[28];
  ws_handshake_accept_key(k, 24, accept);
  static const char a[] = "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: ";
  b_add(resp, a, strlen(a));
  b_add(resp, accept, 28);
  b_add(resp, "\r\n", 2);
  if (R->cf & CF_ALT) {
    static const char p[] = "Sec-WebSocket-Protocol: chat\r\n";
    b_add(resp, p, strlen(p));
  }
  if (R->cfg.pmd.enable) {
    /* the answer to the client's offer: what it asked for */
    const ws_pmd_config *c = &R->cfg.pmd;
    char ext[200];
    int en = snprintf(ext, sizeof(ext),
                      "Sec-WebSocket-Extensions: permessage-deflate%s%s; "
                      "server_max_window_bits=%u; "
                      "client_max_window_bits=%u\r\n",
                      c->server_no_context_takeover
                          ? "; server_no_context_takeover" : "",
                      c->client_no_context_takeover
                          ? "; client_no_context_takeover" : "",
                      c->server_max_window_bits, c->client_max_window_bits);
    CHECK(en > 0 && (size_t)en < sizeof(ext));
    b_add(resp, ext, (size_t)en);
  }
  b_add(resp, "\r\n", 2);
}

static const char req0[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";
static const char req1[] =
    "GET /?q=1 HTTP/1.1\r\n"
    "Host: h\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Upgrade: WebSocket\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; "
    "client_max_window_bits\r\n"
    "\r\n";

static void set_config(run *R) {
  ws_config *cfg = &R->cfg;
  ws_config_default(cfg, R->role);
  uint8_t cf = R->cf, lim = R->lim;
  cfg->delivery = (cf & CF_MESSAGE) ? WS_DELIVER_MESSAGE : WS_DELIVER_STREAM;
  if (cf & CF_NO_PONG) cfg->flags |= WS_CFG_NO_AUTO_PONG;
  if (cf & CF_NO_CLOSE) cfg->flags |= WS_CFG_NO_AUTO_CLOSE;
  if (cf & CF_SMALL) {
    cfg->max_message = 1u + (lim & 0x0Fu) * 37u;              /* 1..556 */
    cfg->max_frame_payload = (lim & 0x10u) ? 125 : cfg->max_message;
    cfg->max_fragments = (lim & 0x20u) ? 3 : 0;
    cfg->max_out_queue = 1024u + ((lim >> 6) & 3u) * 100u;
    cfg->max_handshake_bytes = (lim & 0x40u) ? 128 : 300;
    cfg->max_headers = (lim & 0x80u) ? 4 : 9;
  }
  if (cf & CF_TIMERS) {
    cfg->handshake_timeout_ms = 1u + (lim & 7u) * 20u;
    cfg->ping_interval_ms = 1u + ((lim >> 3) & 7u) * 15u;
    cfg->pong_timeout_ms = (lim & 0x40u) ? 0 : 1u + ((lim >> 6) & 1u) * 40u;
    cfg->close_timeout_ms = 1u + ((lim >> 5) & 7u) * 25u;
  }
  if (R->role == WS_ROLE_CLIENT) {
    cfg->rand = det_rand;
    cfg->rand_user_data = &R->rand_state;
  }
  if (R->seed & SB_PMD) {
    uint8_t pb = (uint8_t)(R->seed >> 8);
    cfg->pmd.enable = 1;
    cfg->pmd.level = (R->seed & SB_LEVEL1) ? 1 : 6;
    cfg->pmd.server_max_window_bits = (uint8_t)(8 + (pb & PB_SBITS));
    cfg->pmd.client_max_window_bits = (uint8_t)(8 + ((pb & PB_CBITS) >> 3));
    cfg->pmd.server_no_context_takeover = (pb & PB_SNCT) != 0;
    cfg->pmd.client_no_context_takeover = (pb & PB_CNCT) != 0;
    if (R->seed & SB_MINSIZE0) cfg->pmd.min_size = 0;
  }
}

static void do_run(run *R, const uint8_t *body, size_t bodylen) {
  set_config(R);
  const ws_config *cfg = &R->cfg;
  /* What the limits allow: a message buffer and the output queue (each a
   * doubling buffer, so up to twice its bound), the handshake buffer and
   * header table, and a few fixed bits (conn, control, pong, protocol). */
  R->alloc.limit = 2 * (size_t)cfg->max_message +
                   2 * ((size_t)cfg->max_out_queue + 1024) +
                   2 * (size_t)cfg->max_handshake_bytes +
                   (size_t)cfg->max_headers * sizeof(ws_header) + 4096;
  /* permessage-deflate: one inflater and one compressor of at most the
   * configured windows, and the 16 KiB stream-mode chunk */
  if (cfg->pmd.enable) {
    unsigned sb = cfg->pmd.server_max_window_bits;
    unsigned cb = cfg->pmd.client_max_window_bits;
    unsigned ib = R->role == WS_ROLE_SERVER ? cb : sb;
    unsigned db = R->role == WS_ROLE_SERVER ? sb : cb;
    /* a server may be offered a smaller window than its own bound, a
     * client is held to what it offered */
    R->alloc.limit += sizeof(ws_inflater) + ws_inflate_memsize(ib) +
                      sizeof(ws_deflater) +
                      ws_deflate_memsize(db, cfg->pmd.level) + 16384;
  }
  R->rand_state = 0x2545F491u ^ R->seed;
  R->r = 0x9E3779B9u ^ ((uint32_t)R->seed << 7) ^ R->cf;
  ws_mem mem = {&R->alloc, c_malloc, c_realloc, c_free};
  /* Some runs make the connection of a ws_conn_shared, given up at once
   * (the connection frees it) or after the connection: the same
   * behaviour, byte for byte, whichever way it was made. */
  unsigned shared = (unsigned)(R->seed ^ (R->seed >> 7)) % 3u;
  ws_conn_shared *sh = NULL;
  if (shared) {
    CHECK(ws_conn_shared_new(&sh, cfg, &mem) == 0);
    CHECK(ws_conn_new_shared(&R->c, sh) == 0);
    if (shared == 1) {
      ws_conn_shared_del(sh);
      sh = NULL;
    }
  } else {
    CHECK(ws_conn_new(&R->c, cfg, &mem) == 0);
  }
  CHECK(ws_conn_state(R->c) == WS_STATE_CONNECTING);
  tick(R, 0);

  bytes stream = {NULL, 0, 0};
  if (R->role == WS_ROLE_CLIENT) {
    static const char *const protos[2] = {"chat", "superchat"};
    static const ws_kv hdrs[1] = {{"User-Agent", "libws-fuzz"}};
    ws_client_params p;
    memset(&p, 0, sizeof(p));
    p.host = "example.com";
    p.port = 8080;
    p.path = "/chat?x=1";
    p.origin = "http://example.com";
    p.protocols = protos;
    p.nprotocols = 2;
    p.headers = hdrs;
    p.nheaders = 1;
    CHECK(ws_conn_connect(R->c, &p) == 0);
    drain(R);
    if (!(R->cf & CF_RAW)) build_response(R, &stream);
  } else if (!(R->cf & CF_RAW)) {
    /* req1 offers permessage-deflate */
    const char *rq = ((R->cf & CF_ALT) && (R->seed & SB_REQ)) ||
                             (R->seed & SB_PMD)
                         ? req1
                         : req0;
    b_add(&stream, rq, strlen(rq));
  }
  b_add(&stream, body, bodylen);
  feed_all(R, stream.p, stream.len);
  free(stream.p);

  if (R->cf & CF_EOF) {
    int rv = ws_conn_feed_eof(R->c);
    CHECK(rv <= 0);
  }
  pull(R);
  /* let the clock run out every timer */
  for (int i = 0; i < 8; i++) {
    tick(R, (R->cf & CF_TIMERS) ? 200 : 0);
    pull(R);
  }
  (void)ws_conn_should_close_transport(R->c);
  (void)ws_conn_want_read(R->c);
  (void)ws_conn_close_code(R->c);
  (void)ws_conn_protocol(R->c);
  ws_stats st;
  ws_conn_stats(R->c, &st);
  CHECK(st.wire_out == R->out.len);
  CHECK(ws_conn_sizeof() > 0);
  ws_conn_del(R->c);
  R->c = NULL;
  ws_conn_shared_del(sh);
  CHECK(R->alloc.live == 0); /* no leak */
  check_output(R);
}

static void dump_events(const char *what, const bytes *b) {
  fprintf(stderr, "%s (%zu bytes):\n", what, b->len);
  size_t pos = 0;
  while (pos + 17 <= b->len) {
    const uint8_t *p = b->p + pos;
    uint32_t fl = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                  (uint32_t)p[3] << 8 | p[4];
    uint32_t code = (uint32_t)p[7] << 8 | p[8];
    int32_t err = (int32_t)((uint32_t)p[9] << 24 | (uint32_t)p[10] << 16 |
                            (uint32_t)p[11] << 8 | p[12]);
    uint32_t n = (uint32_t)p[13] << 24 | (uint32_t)p[14] << 16 |
                 (uint32_t)p[15] << 8 | p[16];
    fprintf(stderr, "  type %u flags %x code %u err %d len %u\n", p[0], fl,
            code, err, n);
    pos += 17 + n;
  }
}


int fuzz_conn_run(ws_role role, const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  run a, b;
  memset(&a, 0, sizeof(a));
  a.role = role;
  a.cf = data[0];
  a.lim = data[1];
  a.seed = (uint16_t)(data[2] << 8 | data[3]);
  b = a;
  a.split = 1;
  do_run(&a, data + 4, size - 4);
  if (getenv("WS_FUZZ_DEBUG")) {
    dump_events("events", &a.events);
    fprintf(stderr, "output: %zu bytes, peak allocation %zu of %zu\n",
            a.out.len, a.alloc.peak, a.alloc.limit);
  }
  if (!(a.cf & CF_TIMERS)) {
    b.split = 0;
    do_run(&b, data + 4, size - 4);
    if (a.events.len != b.events.len ||
        (a.events.len &&
         memcmp(a.events.p, b.events.p, a.events.len) != 0)) {
      fprintf(stderr, "split invariance violated\n");
      dump_events("split", &a.events);
      dump_events("unsplit", &b.events);
      abort();
    }
  }
  free(a.events.p);
  free(a.frame.p);
  free(a.out.p);
  free(a.sent.p);
  free(b.events.p);
  free(b.frame.p);
  free(b.out.p);
  free(b.sent.p);
  return 0;
}
