/*
 * Hostile input against a server connection: each test asserts the exact
 * HTTP status or close code, that memory stays within the configured
 * bounds (a counting allocator through ws_mem), that the work done is
 * bounded (input consumed), and that nothing leaks.
 *
 * Kept fast (the whole file runs in well under a second natively) so that
 * the valgrind stage can afford it: floods reuse one buffer of frames
 * with an all-zero mask key, which unmasking leaves unchanged.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

static const char REQ_HEAD[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\n";
static const char REQ_KEY[] =
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
static const char REQ_PMD[] =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- a server connection with a counting allocator ----------------------- */

typedef struct peer {
  tu_alloc a;
  ws_conn *c;
  ws_config cfg;
  uint8_t *out; /* everything the connection wrote */
  size_t outlen, outcap;
  int no_drain;  /* leave the output queued (a peer that does not read) */
  int error;     /* from the WS_EV_ERROR event */
  uint16_t error_close;
  char reason[64];
  int requests, opens, closes;
  size_t data_bytes, data_events, pings;
  size_t consumed; /* bytes ws_conn_feed() took */
  size_t nevents;
  int last_rv;
} peer;

static void p_new(peer *p, const ws_config *cfg) {
  memset(p, 0, sizeof(*p));
  tu_alloc_init(&p->a, 0);
  p->cfg = *cfg;
  assert_int_equal(ws_conn_new(&p->c, cfg, &p->a.mem), 0);
}

static void p_del(peer *p) {
  ws_conn_del(p->c);
  p->c = NULL;
  assert_int_equal(p->a.live_blocks, 0); /* no leak */
  assert_int_equal(p->a.live_bytes, 0);
  free(p->out);
}

static void p_drain(peer *p) {
  ws_iovec v;
  while (ws_conn_out_peek(p->c, &v, 1) == 1) {
    if (p->outlen + v.len > p->outcap) {
      p->outcap = (p->outlen + v.len) * 2 + 256;
      p->out = realloc(p->out, p->outcap);
      assert_non_null(p->out);
    }
    memcpy(p->out + p->outlen, v.base, v.len);
    p->outlen += v.len;
    ws_conn_out_consume(p->c, v.len);
  }
}

static void p_pull(peer *p) {
  ws_event ev;
  while (ws_conn_next_event(p->c, &ev) == 0) {
    p->nevents++;
    switch (ev.type) {
    case WS_EV_REQUEST:
      p->requests++;
      assert_int_equal(ws_conn_accept(p->c, NULL), 0);
      break;
    case WS_EV_OPEN: p->opens++; break;
    case WS_EV_TEXT:
    case WS_EV_BINARY:
      p->data_events++;
      p->data_bytes += ev.data.len;
      break;
    case WS_EV_PING: p->pings++; break;
    case WS_EV_CLOSE: p->closes++; break;
    case WS_EV_ERROR:
      assert_int_equal(p->error, 0); /* reported once */
      p->error = ev.error;
      p->error_close = ev.close_code;
      snprintf(p->reason, sizeof(p->reason), "%.*s", (int)ev.data.len,
               (const char *)ev.data.base);
      break;
    default: break;
    }
  }
  if (!p->no_drain) p_drain(p);
}

/* Feeds |len| bytes of |data| in place (it may be unmasked) in pieces of
 * |chunk| bytes (0: all at once), pulling events as they come. Returns 0
 * once the connection refuses input (an error), 1 if all was taken. */
static int p_feed_inplace(peer *p, uint8_t *data, size_t len, size_t chunk) {
  size_t off = 0;
  while (off < len) {
    size_t end = chunk ? WS_MIN(off + chunk, len) : len;
    while (off < end) {
      size_t n = 0;
      int rv = ws_conn_feed(p->c, data + off, end - off, &n);
      off += n;
      p->consumed += n;
      p->last_rv = rv;
      size_t before = p->nevents;
      p_pull(p);
      if (rv != 0 && rv != WS_ERR_WOULDBLOCK) return 0;
      /* input neither taken nor refused, and no event: a stall */
      if (n == 0 && p->nevents == before) fail_msg("feed made no progress");
    }
  }
  return 1;
}

/* The same on a copy, so callers can pass constants. */
static int p_feed(peer *p, const void *data, size_t len, size_t chunk) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, data, len);
  int rv = p_feed_inplace(p, copy, len, chunk);
  free(copy);
  return rv;
}

/* A request: the head, then |extra| header lines, then the key (unless
 * |key| is NULL: then |extra| must carry one) and the empty line. */
static char *make_req(const char *extra, const char *key_line) {
  size_t n = strlen(REQ_HEAD) + strlen(extra) + strlen(key_line) + 3;
  char *r = malloc(n);
  assert_non_null(r);
  snprintf(r, n, "%s%s%s\r\n", REQ_HEAD, extra, key_line);
  return r;
}

/* Opens |p| with |cfg| (and permessage-deflate offered when |pmd|). */
static void p_open(peer *p, const ws_config *cfg, int pmd) {
  p_new(p, cfg);
  char *r = make_req(pmd ? REQ_PMD : "", REQ_KEY);
  assert_int_equal(p_feed(p, r, strlen(r), 0), 1);
  free(r);
  assert_int_equal(p->requests, 1);
  assert_int_equal(p->opens, 1);
  assert_int_equal(ws_conn_state(p->c), WS_STATE_OPEN);
  ws_pmd_params pp;
  ws_conn_pmd(p->c, &pp);
  assert_int_equal(pp.enabled, pmd ? 1 : 0);
  p->outlen = 0; /* forget the 101 */
  p->consumed = 0;
}

static void server_cfg(ws_config *cfg) {
  ws_config_default(cfg, WS_ROLE_SERVER);
}

/* The status of the HTTP answer |p| wrote. */
static int http_status(const peer *p) {
  assert_true(p->outlen >= 12);
  assert_memory_equal(p->out, "HTTP/1.1 ", 9);
  return (p->out[9] - '0') * 100 + (p->out[10] - '0') * 10 + (p->out[11] - '0');
}

/* The code of the close frame |p| wrote (its only frame), after checking
 * it is one well-formed unmasked close frame. */
static uint16_t close_sent(const peer *p) {
  ws_frame_header fh;
  size_t hl;
  assert_int_equal(ws_frame_decode_header(&fh, p->out, p->outlen, &hl), 0);
  assert_int_equal(fh.opcode, WS_OP_CLOSE);
  assert_int_equal(fh.masked, 0);
  assert_true(fh.payload_len >= 2 && fh.payload_len <= WS_CONTROL_MAX);
  assert_int_equal(hl + fh.payload_len, p->outlen);
  uint16_t code = (uint16_t)(p->out[hl] << 8 | p->out[hl + 1]);
  assert_int_equal(code, ws_conn_close_code(p->c));
  return code;
}

/* A masked client frame with |key|; returns its size. */
static size_t cframe(uint8_t *out, unsigned b0, const void *payload,
                     size_t len, const uint8_t key[4]) {
  ws_frame_header fh;
  memset(&fh, 0, sizeof(fh));
  fh.fin = (uint8_t)(b0 >> 7);
  fh.rsv = (uint8_t)((b0 >> 4) & 7u);
  fh.opcode = (uint8_t)(b0 & 15u);
  fh.masked = 1;
  memcpy(fh.mask, key, 4);
  fh.payload_len = len;
  size_t h = ws_frame_encode_header(out, &fh);
  if (len) memcpy(out + h, payload, len);
  ws_mask(out + h, len, key, 0);
  return h + len;
}

/* ---- opening handshake ----------------------------------------------------- */

/* Slow loris: a header that never ends, a byte every 100 ms. The
 * handshake timeout (10 s by default) fires at exactly 10 s, however
 * busy the peer is; nothing is written, and memory stays that of one
 * short head. */
static void slowloris_handshake_timeout(void **state) {
  (void)state;
  ws_config cfg;
  server_cfg(&cfg);
  peer p;
  p_new(&p, &cfg);
  assert_int_equal(ws_conn_tick(p.c, 1000), 0);
  assert_int_equal(ws_conn_next_deadline(p.c), 1000 + 10000);
  char head[512];
  snprintf(head, sizeof(head), "%sX-Loris: ", REQ_HEAD);
  size_t hl = strlen(head), i = 0;
  uint64_t now = 1000;
  int rv = 0;
  for (;;) {
    uint8_t b = i < hl ? (uint8_t)head[i] : 'a';
    i++;
    size_t n = 0;
    assert_int_equal(ws_conn_feed(p.c, &b, 1, &n), 0);
    assert_int_equal(n, 1);
    p_pull(&p);
    now += 100;
    rv = ws_conn_tick(p.c, now);
    p_pull(&p);
    if (rv) break;
    assert_true(now < 1000 + 10000);
    assert_true(i < 1000);
  }
  assert_int_equal(rv, WS_ERR_TIMEOUT);
  assert_int_equal(now, 1000 + 10000);
  assert_int_equal(p.error, WS_ERR_TIMEOUT);
  assert_int_equal(p.error_close, 0);
  assert_string_equal(p.reason, "handshake timeout");
  assert_int_equal(p.requests, 0);
  assert_int_equal(p.outlen, 0); /* no answer to a request never made */
  assert_int_equal(ws_conn_state(p.c), WS_STATE_FAILED);
  assert_true(ws_conn_should_close_transport(p.c));
  /* sticky: more bytes are refused */
  uint8_t more = 'a';
  size_t n;
  assert_int_equal(ws_conn_feed(p.c, &more, 1, &n), WS_ERR_TIMEOUT);
  assert_int_equal(n, 0);
  /* ~100 bytes of head held: far under max_handshake_bytes */
  assert_true(p.a.peak_bytes < ws_conn_sizeof() + 1024);
  p_del(&p);
}

/* A head that never ends and exceeds max_handshake_bytes: 431, and no
 * byte beyond the limit is taken or stored. */
static void header_block_over_limit_431(void **state) {
  (void)state;
  ws_config cfg;
  server_cfg(&cfg);
  for (size_t chunk = 0; chunk <= 512; chunk += 512) {
    peer p;
    p_new(&p, &cfg);
    size_t n = 3 * (size_t)cfg.max_handshake_bytes;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'a', n);
    memcpy(big, REQ_HEAD, strlen(REQ_HEAD));
    memcpy(big + strlen(REQ_HEAD), "X-Big: ", 7);
    assert_int_equal(p_feed(&p, big, n, chunk), 0);
    assert_int_equal(p.last_rv, WS_ERR_HANDSHAKE);
    assert_int_equal(p.error, WS_ERR_HANDSHAKE);
    assert_string_equal(p.reason, "request head too large");
    assert_int_equal(http_status(&p), 431);
    assert_int_equal(p.requests, 0);
    assert_int_equal(p.consumed, cfg.max_handshake_bytes);
    assert_true(p.a.peak_bytes <=
                ws_conn_sizeof() + 256 + cfg.max_handshake_bytes + 512);
    assert_true(ws_conn_should_close_transport(p.c));
    free(big);
    p_del(&p);
  }
}

/* Thousands of tiny header lines: within the byte limit they are too
 * many header fields (max_headers), beyond it the head is too large;
 * 431 either way, and the header table never holds more than
 * max_headers entries. */
static void thousands_of_tiny_headers_431(void **state) {
  (void)state;
  static const size_t counts[2] = {2000, 5000};
  static const char *const reasons[2] = {"too many header fields",
                                         "request head too large"};
  for (int k = 0; k < 2; k++) {
    ws_config cfg;
    server_cfg(&cfg);
    peer p;
    p_new(&p, &cfg);
    size_t n = counts[k];
    char *lines = malloc(4 * n + 1);
    assert_non_null(lines);
    for (size_t i = 0; i < n; i++) memcpy(lines + 4 * i, "a:\r\n", 4);
    lines[4 * n] = 0;
    char *r = make_req(lines, REQ_KEY);
    assert_int_equal(strlen(r) <= cfg.max_handshake_bytes, k == 0);
    assert_int_equal(p_feed(&p, r, strlen(r), 1000), 0);
    assert_int_equal(p.error, WS_ERR_HANDSHAKE);
    assert_string_equal(p.reason, reasons[k]);
    assert_int_equal(http_status(&p), 431);
    assert_int_equal(p.requests, 0);
    assert_true(p.a.peak_bytes <= ws_conn_sizeof() + 256 +
                                      cfg.max_handshake_bytes + 512 +
                                      cfg.max_headers * sizeof(ws_header));
    free(lines);
    free(r);
    p_del(&p);
  }
}

/* Header lines without a colon, with NUL bytes in the name or the value,
 * with whitespace before the colon, or folded (obs-fold): 400. */
static void malformed_header_lines_400(void **state) {
  (void)state;
  static const struct {
    const char *line;
    size_t len;
  } bad[] = {
      {"NoColonHere\r\n", 13},
      {"X-A\0B: v\r\n", 10},
      {"X-A: v\0w\r\n", 10},
      {"\0: v\r\n", 6},
      {"X-A : v\r\n", 9},
      {"X-A: v\r\n folded\r\n", 18},
      {": empty name\r\n", 14},
      {"X-A: v\rw\r\n", 10},
      {"X-A: v\nX-B: w\r\n", 15},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ws_config cfg;
    server_cfg(&cfg);
    peer p;
    p_new(&p, &cfg);
    size_t hl = strlen(REQ_HEAD), kl = strlen(REQ_KEY);
    size_t n = hl + bad[i].len + kl + 2;
    uint8_t *r = malloc(n);
    assert_non_null(r);
    memcpy(r, REQ_HEAD, hl);
    memcpy(r + hl, bad[i].line, bad[i].len);
    memcpy(r + hl + bad[i].len, REQ_KEY, kl);
    memcpy(r + n - 2, "\r\n", 2);
    for (size_t chunk = 0; chunk <= 1; chunk++) {
      if (chunk) {
        p_del(&p);
        p_new(&p, &cfg);
      }
      assert_int_equal(p_feed(&p, r, n, chunk), 0);
      if (p.error != WS_ERR_HANDSHAKE)
        fail_msg("line %zu: error %d", i, p.error);
      assert_int_equal(http_status(&p), 400);
      assert_int_equal(p.requests, 0);
    }
    free(r);
    p_del(&p);
  }
}

/* Sec-WebSocket-Key must be the padded base64 of 16 bytes (RFC 6455
 * 4.2.1 (5)): anything else is 400. */
static void invalid_base64_keys_400(void **state) {
  (void)state;
  static const char *const keys[] = {
      "!!!!!!!!!!!!!!!!!!!!!!==",     /* not base64 */
      "dGhlIHNhbXBsZSBub25jZQ",       /* padding missing */
      "dGhlIHNhbXBsZSBub25jZQ=",      /* padding short */
      "dGhlIHNhbXBsZSBub25jZR==",     /* non-zero padding bits */
      "dGhlIHNhbXBsZSBub25j",         /* 15 bytes */
      "dGhlIHNhbXBsZSBub25jZSE=",     /* 17 bytes */
      "dGhlIHNhbXBsZSBub25jZQ==dGhl", /* trailing data */
      "dGhlIHNhbX BsZSBub25jZQ==",    /* a space inside */
      "dGhlIHNhbXBsZSBub25jZQ=\"",    /* a quote for a pad */
      "",                             /* empty */
      "====================\"=\"=",  /* padding only */
  };
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    ws_config cfg;
    server_cfg(&cfg);
    peer p;
    p_new(&p, &cfg);
    char line[128];
    snprintf(line, sizeof(line), "Sec-WebSocket-Key: %s\r\n", keys[i]);
    char *r = make_req("", line);
    assert_int_equal(p_feed(&p, r, strlen(r), 0), 0);
    if (p.error != WS_ERR_HANDSHAKE || strcmp(p.reason, "invalid Sec-WebSocket-Key"))
      fail_msg("key '%s': %d %s", keys[i], p.error, p.reason);
    assert_int_equal(http_status(&p), 400);
    assert_int_equal(p.requests, 0);
    free(r);
    p_del(&p);
  }
}

/* ---- frames ------------------------------------------------------------------ */

/* A frame declaring 2^63-1 bytes: 1009 from the header alone, in both
 * delivery modes and even with no frame size limit, with no allocation
 * but the close frame's output buffer. */
static void frame_2p63_minus_1_1009(void **state) {
  (void)state;
  for (int mode = 0; mode < 4; mode++) {
    ws_config cfg;
    server_cfg(&cfg);
    cfg.delivery = (mode & 1) ? WS_DELIVER_MESSAGE : WS_DELIVER_STREAM;
    if (mode & 2) cfg.max_frame_payload = UINT64_MAX;
    peer p;
    p_open(&p, &cfg, 0);
    size_t calls = p.a.calls, base = p.a.live_bytes;
    p.a.peak_bytes = base;
    uint8_t f[14] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff,
                     0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(p_feed(&p, f, sizeof(f), mode & 1), 0);
    assert_int_equal(p.error, WS_ERR_TOO_BIG);
    assert_int_equal(p.error_close, 1009);
    assert_string_equal(p.reason,
                        (mode & 2) ? "message too big" : "frame too big");
    assert_int_equal(close_sent(&p), 1009);
    assert_int_equal(p.consumed, sizeof(f));
    assert_int_equal(p.data_events, 0);
    assert_true(p.a.calls - calls <= 1);         /* the output queue */
    assert_true(p.a.peak_bytes - base <= 256);   /* its first block */
    p_del(&p);
  }
}

/* A 64-bit length with the top bit set (RFC 6455 5.2): 1002 as soon as
 * its first byte is seen, whole or a byte at a time. */
static void frame_length_top_bit_1002(void **state) {
  (void)state;
  for (size_t chunk = 0; chunk <= 1; chunk++) {
    ws_config cfg;
    server_cfg(&cfg);
    peer p;
    p_open(&p, &cfg, 0);
    uint8_t f[14] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    assert_int_equal(p_feed(&p, f, sizeof(f), chunk), 0);
    assert_int_equal(p.error, WS_ERR_PROTO);
    assert_int_equal(p.error_close, 1002);
    assert_int_equal(close_sent(&p), 1002);
    assert_true(p.consumed <= 3);
    p_del(&p);
  }
}

/* Builds |count| non-final continuation frames with |plen| (0 or 1)
 * payload bytes and the all-zero mask key into a malloc'd buffer. */
static uint8_t *cont_frames(size_t count, size_t plen, size_t *plen_out) {
  static const uint8_t zero[4] = {0, 0, 0, 0};
  uint8_t *b = malloc(count * (6 + plen));
  assert_non_null(b);
  size_t n = 0;
  for (size_t i = 0; i < count; i++)
    n += cframe(b + n, WS_OP_CONT, "x", plen, zero);
  *plen_out = n;
  return b;
}

/* 2^20 one-byte frames of one message (and 2^20 empty ones): the
 * 65537th frame header ends it with 1009 (max_fragments), after exactly
 * 65536 frames' worth of input, and the message buffer never held more
 * than 65536 bytes. */
static void fragments_2p20_1009(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    size_t plen = k == 0 ? 1 : 0;
    ws_config cfg;
    server_cfg(&cfg);
    cfg.delivery = k == 0 ? WS_DELIVER_MESSAGE : WS_DELIVER_STREAM;
    peer p;
    p_open(&p, &cfg, 0);
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint8_t first[8];
    size_t fl = cframe(first, WS_OP_BINARY, "x", plen, zero);
    assert_int_equal(p_feed(&p, first, fl, 0), 1);
    const size_t per = 4096; /* frames per buffer, fed 256 times */
    size_t blen;
    uint8_t *b = cont_frames(per, plen, &blen);
    size_t fed = 1, more = 1;
    while (more && fed < ((size_t)1 << 20)) {
      more = (size_t)p_feed_inplace(&p, b, blen, 0);
      fed += per;
    }
    assert_int_equal(more, 0);
    assert_int_equal(p.error, WS_ERR_TOO_BIG);
    assert_int_equal(p.error_close, 1009);
    assert_string_equal(p.reason, "too many fragments");
    assert_int_equal(close_sent(&p), 1009);
    /* 65536 frames, then the 65537th header (2 + 4 bytes) */
    assert_int_equal(p.consumed - fl,
                     (cfg.max_fragments - 1) * (6 + plen) + 6);
    assert_true(fed <= cfg.max_fragments + per);
    if (k == 0) {
      assert_int_equal(p.data_events, 0);
      assert_true(p.a.peak_bytes <= ws_conn_sizeof() + 2 * cfg.max_fragments);
    } else {
      assert_int_equal(p.data_bytes, 0);
      assert_int_equal(p.data_events, cfg.max_fragments);
    }
    free(b);
    p_del(&p);
  }
}

/* Pings faster than the peer reads: the automatic pongs fill the output
 * queue to max_out_queue, then only the latest ping is remembered
 * (RFC 6455 5.5.3), so the queue stays within max_out_queue plus one
 * pong frame; once drained, that one pong follows. */
static void ping_flood_bounded_output(void **state) {
  (void)state;
  ws_config cfg;
  server_cfg(&cfg);
  cfg.max_out_queue = 4096;
  peer p;
  p_open(&p, &cfg, 0);
  p.no_drain = 1;
  enum { NPINGS = 5000 };
  uint8_t payload[125];
  uint8_t *buf = malloc(NPINGS * (6 + sizeof(payload)));
  assert_non_null(buf);
  size_t n = 0;
  for (unsigned i = 0; i < NPINGS; i++) {
    memset(payload, 0, sizeof(payload));
    snprintf((char *)payload, sizeof(payload), "ping %u", i);
    n += cframe(buf + n, 0x80 | WS_OP_PING, payload, sizeof(payload), KEY);
  }
  size_t off = 0, max_pending = 0;
  while (off < n) {
    size_t k = 0;
    int rv = ws_conn_feed(p.c, buf + off, n - off, &k);
    assert_true(rv == 0 || rv == WS_ERR_WOULDBLOCK);
    off += k;
    p_pull(&p);
    size_t pend = ws_conn_out_pending(p.c);
    if (pend > max_pending) max_pending = pend;
  }
  assert_int_equal(p.pings, NPINGS);
  assert_int_equal(p.error, 0);
  assert_true(max_pending >= cfg.max_out_queue);
  assert_true(max_pending <= cfg.max_out_queue + 2 + WS_CONTROL_MAX);
  assert_false(ws_conn_want_read(p.c)); /* backpressure */
  /* the queue's storage is bounded too, whatever was asked of it */
  assert_true(p.a.peak_bytes <= ws_conn_sizeof() + tu_conn_busy_bytes() +
                                    cfg.max_out_queue + 512 +
                                    2 * WS_CONTROL_MAX + 64);
  /* drain: the queued pongs, then the one for the latest ping */
  size_t queued = ws_conn_out_pending(p.c);
  p.no_drain = 0;
  p_drain(&p);
  assert_true(p.outlen > queued);
  size_t tail = p.outlen - queued;
  assert_int_equal(tail, 2 + sizeof(payload));
  assert_int_equal(p.out[queued], 0x8a);
  char want[32];
  snprintf(want, sizeof(want), "ping %u", NPINGS - 1);
  assert_memory_equal(p.out + queued + 2, want, strlen(want) + 1);
  assert_int_equal(ws_conn_out_pending(p.c), 0);
  assert_true(ws_conn_want_read(p.c));
  free(buf);
  p_del(&p);
}

/* A close frame with a 123-byte reason (the most a close frame can
 * carry) that is not UTF-8: 1007, and no WS_EV_CLOSE. The same reason
 * valid is delivered whole. */
static void close_reason_invalid_utf8_1007(void **state) {
  (void)state;
  static const char *const tails[] = {"\xff", "\xe2\x82", "\xed\xa0\x80",
                                      "\xc0\xaf", "\xf4\x90\x80\x80", "ok"};
  for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
    ws_config cfg;
    server_cfg(&cfg);
    peer p;
    p_open(&p, &cfg, 0);
    uint8_t pl[125], f[140];
    size_t tl = strlen(tails[i]);
    pl[0] = 0x03;
    pl[1] = 0xe8; /* 1000 */
    memset(pl + 2, 'a', 123);
    memcpy(pl + 125 - tl, tails[i], tl);
    size_t n = cframe(f, 0x80 | WS_OP_CLOSE, pl, sizeof(pl), KEY);
    int valid = i + 1 == sizeof(tails) / sizeof(tails[0]);
    assert_int_equal(p_feed(&p, f, n, i & 1), valid);
    if (valid) {
      assert_int_equal(ws_conn_state(p.c), WS_STATE_CLOSED);
      assert_int_equal(p_feed(&p, f, 2, 0), 0);
      assert_int_equal(p.last_rv, WS_ERR_CLOSED);
      assert_int_equal(p.closes, 1);
      assert_int_equal(p.error, 0);
      assert_int_equal(close_sent(&p), 1000);
    } else {
      assert_int_equal(p.error, WS_ERR_UTF8);
      assert_int_equal(p.error_close, 1007);
      assert_string_equal(p.reason, "invalid UTF-8 in close reason");
      assert_int_equal(p.closes, 0);
      assert_int_equal(close_sent(&p), 1007);
    }
    p_del(&p);
  }
}

/* ---- permessage-deflate ---------------------------------------------------- */

/* An LSB-first bit writer for hand-made DEFLATE streams. */
typedef struct bitw {
  uint8_t *b;
  size_t n, cap; /* bits, bytes */
} bitw;

static void bw_put(bitw *w, uint32_t v, unsigned k) {
  for (unsigned i = 0; i < k; i++, w->n++) {
    if (w->n / 8 >= w->cap) {
      size_t old = w->cap;
      w->cap = w->cap * 2 + 64;
      w->b = realloc(w->b, w->cap);
      assert_non_null(w->b);
      memset(w->b + old, 0, w->cap - old);
    }
    if (v >> i & 1u) w->b[w->n / 8] |= (uint8_t)(1u << (w->n % 8));
  }
}

/* Huffman codes are sent MSB first. */
static void bw_code(bitw *w, uint32_t code, unsigned k) {
  while (k--) bw_put(w, code >> k & 1u, 1);
}

static size_t bw_bytes(const bitw *w) { return (w->n + 7) / 8; }

/* A decompression bomb: one fixed-Huffman block of a zero literal and
 * |matches| matches of 258 bytes at distance 1 (13 bits each). */
static void bomb_stream(bitw *w, size_t matches) {
  bw_put(w, 1, 1);
  bw_put(w, 1, 2);
  bw_code(w, 0x30, 8); /* literal 0 */
  for (size_t i = 0; i < matches; i++) {
    bw_code(w, 0xc5, 8); /* 285: length 258 */
    bw_code(w, 0, 5);    /* distance code 0: 1 */
  }
  bw_code(w, 0, 7); /* end of block */
}

/* Sends |data| as one compressed message (RSV1) in frames of at most
 * |fsize| bytes. Returns 1 if all was taken. */
static int feed_compressed(peer *p, const uint8_t *data, size_t len,
                           size_t fsize, size_t chunk) {
  size_t cap = len + 16 * (len / fsize + 1), n = 0, off = 0;
  uint8_t *buf = malloc(cap);
  assert_non_null(buf);
  do {
    size_t k = WS_MIN(fsize, len - off);
    int fin = off + k == len;
    unsigned b0 = (fin ? 0x80u : 0u) | (off == 0 ? 0x40u | WS_OP_BINARY : 0u);
    n += cframe(buf + n, b0, data + off, k, KEY);
    off += k;
  } while (off < len);
  int rv = p_feed_inplace(p, buf, n, chunk);
  free(buf);
  return rv;
}

/* A compressed message that inflates far past max_message (16 MiB from
 * 100 KiB): 1009 once the inflated size passes the limit, in both
 * delivery modes; the rest of its input is never looked at, and memory
 * stays within max_message plus the codec's. */
static void deflate_bomb_1009(void **state) {
  (void)state;
  bitw w = {NULL, 0, 0};
  bomb_stream(&w, (16u << 20) / 258);
  for (int mode = 0; mode < 2; mode++) {
    ws_config cfg;
    server_cfg(&cfg);
    cfg.pmd.enable = 1;
    cfg.delivery = mode ? WS_DELIVER_MESSAGE : WS_DELIVER_STREAM;
    peer p;
    p_open(&p, &cfg, 1);
    size_t base = p.consumed;
    assert_int_equal(feed_compressed(&p, w.b, bw_bytes(&w), 1u << 20, 0), 0);
    assert_int_equal(p.error, WS_ERR_TOO_BIG);
    assert_int_equal(p.error_close, 1009);
    assert_int_equal(close_sent(&p), 1009);
    /* exactly max_message came out, from the first ~1/16 of the input */
    assert_int_equal(p.data_bytes, mode ? 0 : cfg.max_message);
    assert_true(p.consumed - base < bw_bytes(&w) / 8);
    size_t codec = sizeof(ws_inflater) + ws_inflate_memsize(15) + 16384;
    assert_true(p.a.peak_bytes <= ws_conn_sizeof() + cfg.max_message + codec +
                                      8192);
    p_del(&p);
  }
  free(w.b);
}

/* Corrupt compressed data: an invalid distance code, an oversubscribed
 * Huffman code, a distance beyond the negotiated window (9: 512 bytes,
 * though within the data so far): 1007, whole or a byte at a time. The
 * last stream with a window of 10 is fine. */
static void deflate_corrupt_1007(void **state) {
  (void)state;
  bitw w[3];
  memset(w, 0, sizeof(w));
  /* fixed block: 'a', then length 3 with distance code 30, and more
   * input behind it (so the inflater's fast loop meets the bad code) */
  bw_put(&w[0], 1, 1);
  bw_put(&w[0], 1, 2);
  bw_code(&w[0], 0x30 + 'a', 8);
  bw_code(&w[0], 1, 7);
  bw_code(&w[0], 30, 5);
  for (int i = 0; i < 16; i++) bw_code(&w[0], 0x30 + 'b', 8);
  /* dynamic block whose code length code has three codes of one bit */
  bw_put(&w[1], 1, 1);
  bw_put(&w[1], 2, 2);
  bw_put(&w[1], 0, 5);  /* HLIT 257 */
  bw_put(&w[1], 0, 5);  /* HDIST 1 */
  bw_put(&w[1], 0, 4);  /* HCLEN 4 */
  for (int i = 0; i < 3; i++) bw_put(&w[1], 1, 3);
  bw_put(&w[1], 0, 3);
  bw_put(&w[1], 0, 32);
  /* 600 stored bytes, then a match at distance 550 */
  bw_put(&w[2], 0, 3);
  w[2].n = 8;
  bw_put(&w[2], 600, 16);
  bw_put(&w[2], (uint32_t)~600u & 0xffffu, 16);
  for (int i = 0; i < 600; i++) bw_put(&w[2], (uint32_t)('a' + i % 26), 8);
  bw_put(&w[2], 1, 1);
  bw_put(&w[2], 1, 2);
  bw_code(&w[2], 1, 7);           /* 257: length 3 */
  bw_code(&w[2], 18, 5);          /* distance 513 + extra */
  bw_put(&w[2], 550 - 513, 8);
  bw_code(&w[2], 0, 7);
  for (int k = 0; k < 4; k++) {
    for (size_t chunk = 0; chunk <= 1; chunk++) {
      ws_config cfg;
      server_cfg(&cfg);
      cfg.pmd.enable = 1;
      cfg.pmd.client_max_window_bits = k == 3 ? 10 : 9;
      peer p;
      p_open(&p, &cfg, 1);
      const bitw *s = &w[k == 3 ? 2 : k];
      int all = feed_compressed(&p, s->b, bw_bytes(s), 1u << 20, chunk);
      if (k == 3) {
        assert_int_equal(all, 1);
        assert_int_equal(p.error, 0);
        assert_int_equal(p.data_bytes, 603);
      } else {
        assert_int_equal(all, 0);
        assert_int_equal(p.error, WS_ERR_DATA);
        assert_int_equal(p.error_close, 1007);
        assert_string_equal(p.reason, "invalid compressed data");
        assert_int_equal(close_sent(&p), 1007);
      }
      p_del(&p);
    }
  }
  for (int k = 0; k < 3; k++) free(w[k].b);
}

/* Finding F1 of the fuzz report (fuzz/findings/fuzz_conn_*): a compressed
 * text message whose inflated bytes are not UTF-8 before its data turns
 * invalid. Fed whole, the inflater returns the data error in the same
 * call that produced the bad UTF-8, and the connection reported 1007
 * "invalid compressed data"; fed a byte at a time, the UTF-8 error came
 * first. Both must report the UTF-8 error, the first fault in the
 * stream. */
static void deflate_utf8_error_before_data_error(void **state) {
  (void)state;
  bitw w = {NULL, 0, 0};
  bw_put(&w, 1, 1);
  bw_put(&w, 1, 2);
  bw_code(&w, 0x190 + 0xff - 144, 9); /* literal 0xff: 9-bit code */
  for (int i = 0; i < 16; i++) bw_code(&w, 0x30 + 'a', 8);
  bw_code(&w, 1, 7);  /* length 3 */
  bw_code(&w, 30, 5); /* distance code 30: invalid */
  for (int i = 0; i < 16; i++) bw_code(&w, 0x30 + 'b', 8);
  for (size_t chunk = 0; chunk <= 1; chunk++) {
    for (int mode = 0; mode < 2; mode++) {
      ws_config cfg;
      server_cfg(&cfg);
      cfg.pmd.enable = 1;
      cfg.delivery = mode ? WS_DELIVER_MESSAGE : WS_DELIVER_STREAM;
      peer p;
      p_open(&p, &cfg, 1);
      uint8_t f[64];
      size_t n = cframe(f, 0x80 | 0x40 | WS_OP_TEXT, w.b, bw_bytes(&w), KEY);
      assert_int_equal(p_feed_inplace(&p, f, n, chunk), 0);
      assert_int_equal(p.error, WS_ERR_UTF8);
      assert_int_equal(p.error_close, 1007);
      assert_string_equal(p.reason, "invalid UTF-8 in text");
      p_del(&p);
    }
  }
  free(w.b);
}

/* Finding F3 of the fuzz report (fuzz/findings/fuzz_conn_client): a
 * compressed frame still arriving, whose bytes so far inflate to more
 * than one 16 KiB stream chunk. Fed whole, the chunk filled just as the
 * input ran out, and what the inflater still held (the rest of the data,
 * here an invalid code) waited for bytes that may never come: no event,
 * no error, while the same bytes fed one by one gave both. Everything
 * the input so far yields must come out without more input. */
static void deflate_partial_frame_drained(void **state) {
  (void)state;
  for (int bad = 0; bad <= 1; bad++) {
    /* 'a' and 64 matches of 258: 16513 bytes, then (bad) distance code 30 */
    bitw w = {NULL, 0, 0};
    bw_put(&w, 0, 1);
    bw_put(&w, 1, 2);
    bw_code(&w, 0x30 + 'a', 8);
    for (int i = 0; i < 64; i++) {
      bw_code(&w, 0xc5, 8);
      bw_code(&w, 0, 5);
    }
    if (bad) {
      bw_code(&w, 1, 7);
      bw_code(&w, 30, 5);
    }
    size_t plen = bw_bytes(&w);
    for (size_t chunk = 0; chunk <= 1; chunk++) {
      ws_config cfg;
      server_cfg(&cfg);
      cfg.pmd.enable = 1;
      peer p;
      p_open(&p, &cfg, 1);
      /* the frame says 100 bytes more than there are */
      uint8_t f[256];
      size_t n = 0;
      f[n++] = 0x80 | 0x40 | WS_OP_BINARY;
      f[n++] = 0x80 | 126;
      f[n++] = (uint8_t)((plen + 100) >> 8);
      f[n++] = (uint8_t)(plen + 100);
      memcpy(f + n, KEY, 4);
      n += 4;
      memcpy(f + n, w.b, plen);
      ws_mask(f + n, plen, KEY, 0);
      n += plen;
      int all = p_feed_inplace(&p, f, n, chunk);
      /* the error may come from the feed or from the event drain */
      if (!bad) assert_int_equal(all, 1);
      if (bad) {
        assert_int_equal(p.error, WS_ERR_DATA);
        assert_int_equal(p.error_close, 1007);
      } else {
        assert_int_equal(p.error, 0);
        assert_int_equal(p.data_bytes, 1 + 64 * 258);
      }
      p_del(&p);
    }
    free(w.b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slowloris_handshake_timeout),
      cmocka_unit_test(header_block_over_limit_431),
      cmocka_unit_test(thousands_of_tiny_headers_431),
      cmocka_unit_test(malformed_header_lines_400),
      cmocka_unit_test(invalid_base64_keys_400),
      cmocka_unit_test(frame_2p63_minus_1_1009),
      cmocka_unit_test(frame_length_top_bit_1002),
      cmocka_unit_test(fragments_2p20_1009),
      cmocka_unit_test(ping_flood_bounded_output),
      cmocka_unit_test(close_reason_invalid_utf8_1007),
      cmocka_unit_test(deflate_bomb_1009),
      cmocka_unit_test(deflate_corrupt_1007),
      cmocka_unit_test(deflate_utf8_error_before_data_error),
      cmocka_unit_test(deflate_partial_frame_drained),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
