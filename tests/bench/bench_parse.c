/*
 * Receive-path throughput: a stream of masked client frames (as a server
 * sees them) of 16 B, 1 KiB and 64 KiB payload, text (mixed ASCII, Greek
 * and CJK UTF-8) and binary. Rows, each over the same bytes:
 *
 *   memcpy   copying the stream once: the anchor
 *   codec    ws_frame_decode_header + ws_frame_check_header +
 *            ws_unmask_utf8 (unmask and, for text, validate in one sweep)
 *   wslay    wslay_frame_recv with a recv callback serving from memory;
 *            for text, plus ws_utf8_feed over what it returns, since wslay's
 *            frame layer does not validate (when libwslay is found)
 *   conn     ws_conn_feed + ws_conn_next_event on an accepted server
 *            connection (when built with WS_BENCH_CONN)
 *
 * The codec and conn rows unmask in place, so the stream is restored from
 * a pristine copy before every pass, outside the timed region.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ws/ws.h>

#include "ws_utf8.h"

#ifdef WS_BENCH_WSLAY
#  include <sys/types.h>
#  include <wslay/wslay.h>
#endif

#define STREAM_BYTES (2u << 20) /* per pass: fits in L2/L3 */
#define MIN_SECONDS 0.25

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x1234567887654321ull;

static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}

static void die(const char *what) {
  fprintf(stderr, "bench_parse: %s\n", what);
  exit(1);
}

/* Fills |out| with exactly |len| bytes of valid, mixed UTF-8. */
static void make_text(uint8_t *out, size_t len) {
  static const char *const words[] = {
      "hello ",       "world ",          "websocket ",   "frame ",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ", /* Greek */
      "\xce\xb1\xce\xbb\xcf\x86\xce\xb1 ",             /* alpha */
      "\xe4\xb8\x96\xe7\x95\x8c ",                     /* CJK */
      "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c",          /* CJK + comma */
      "\xf0\x9f\x98\x80 ",                             /* emoji */
      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ", /* Cyrillic */
  };
  size_t n = 0;

  while (n < len) {
    const char *w = words[rnd() % (sizeof(words) / sizeof(words[0]))];
    size_t wl = strlen(w);
    if (wl > len - n) {
      memset(out + n, 'x', len - n);
      break;
    }
    memcpy(out + n, w, wl);
    n += wl;
  }
  if (ws_utf8_validate(out, len) != 0) die("generated text is not UTF-8");
}

typedef struct stream {
  uint8_t *pristine; /* masked frames as on the wire */
  uint8_t *work;     /* scratch copy processed in place */
  uint8_t *dst;      /* memcpy destination */
  size_t len;
  size_t nframes;
  int text;
  size_t payload;
} stream;

static void make_stream(stream *s, size_t payload, int text) {
  size_t per = payload + WS_FRAME_HEADER_MAX, cap, i;
  uint8_t *plain = malloc(payload ? payload : 1);

  s->nframes = STREAM_BYTES / per;
  if (s->nframes < 16) s->nframes = 16;
  cap = s->nframes * per;
  s->pristine = malloc(cap);
  s->work = malloc(cap);
  s->dst = malloc(cap);
  if (!plain || !s->pristine || !s->work || !s->dst) die("out of memory");
  s->len = 0;
  s->text = text;
  s->payload = payload;
  for (i = 0; i < s->nframes; i++) {
    ws_frame_header hd;
    memset(&hd, 0, sizeof(hd));
    hd.fin = 1;
    hd.opcode = text ? WS_OP_TEXT : WS_OP_BINARY;
    hd.masked = 1;
    hd.payload_len = payload;
    for (size_t k = 0; k < 4; k++) hd.mask[k] = (uint8_t)rnd();
    if (text) {
      make_text(plain, payload);
    } else {
      for (size_t k = 0; k < payload; k++) plain[k] = (uint8_t)rnd();
    }
    s->len += ws_frame_encode_header(s->pristine + s->len, &hd);
    memcpy(s->pristine + s->len, plain, payload);
    ws_mask(s->pristine + s->len, payload, hd.mask, 0);
    s->len += payload;
  }
  free(plain);
}

static void free_stream(stream *s) {
  free(s->pristine);
  free(s->work);
  free(s->dst);
}

/* ---- rows ------------------------------------------------------------ */

typedef size_t (*pass_fn)(stream *s, void *ctx); /* returns messages */

static size_t pass_memcpy(stream *s, void *ctx) {
  (void)ctx;
  memcpy(s->dst, s->pristine, s->len);
  /* Keep the copy observable. */
  return s->nframes + (s->dst[s->len - 1] == 0xFFu && s->len == 0);
}

static size_t pass_codec(stream *s, void *ctx) {
  uint8_t *buf = s->work;
  size_t pos = 0, msgs = 0;
  (void)ctx;

  while (pos < s->len) {
    ws_frame_header hd;
    ws_utf8 u;
    size_t nread, plen, off = 0, valid;

    if (ws_frame_decode_header(&hd, buf + pos, s->len - pos, &nread) != 0 ||
        ws_frame_check_header(&hd, 1, 0) != 0) {
      die("codec: bad header");
    }
    pos += nread;
    plen = (size_t)hd.payload_len;
    ws_utf8_init(&u);
    if (ws_unmask_utf8(buf + pos, plen, hd.mask, &off,
                       hd.opcode == WS_OP_TEXT ? &u : NULL, &valid) != 0 ||
        ws_utf8_finish(&u) != 0) {
      die("codec: bad payload");
    }
    pos += plen;
    msgs++;
  }
  return msgs;
}

#ifdef WS_BENCH_WSLAY
typedef struct wslay_src {
  const uint8_t *p;
  size_t left;
} wslay_src;

static ssize_t wl_recv(uint8_t *buf, size_t len, int flags, void *ud) {
  wslay_src *src = ud;
  size_t n = len < src->left ? len : src->left;
  (void)flags;
  if (n == 0) return -1;
  memcpy(buf, src->p, n);
  src->p += n;
  src->left -= n;
  return (ssize_t)n;
}

static ssize_t wl_send(const uint8_t *data, size_t len, int flags, void *ud) {
  (void)data;
  (void)flags;
  (void)ud;
  return (ssize_t)len;
}

static int wl_genmask(uint8_t *buf, size_t len, void *ud) {
  (void)ud;
  memset(buf, 0, len);
  return 0;
}

static size_t pass_wslay(stream *s, void *ctx) {
  struct wslay_frame_callbacks cb = {wl_send, wl_recv, wl_genmask};
  wslay_frame_context_ptr fc;
  wslay_src src = {s->pristine, s->len};
  size_t msgs = 0;
  uint64_t got = 0;
  ws_utf8 u;
  int validate = ctx != NULL;

  if (wslay_frame_context_init(&fc, &cb, &src) != 0) die("wslay init");
  ws_utf8_init(&u);
  while (msgs < s->nframes) {
    struct wslay_frame_iocb iocb;
    ssize_t r = wslay_frame_recv(fc, &iocb);
    if (r < 0) die("wslay recv");
    if (validate && iocb.opcode == WSLAY_TEXT_FRAME &&
        ws_utf8_feed(&u, iocb.data, iocb.data_length) != 0) {
      die("wslay: bad UTF-8");
    }
    got += iocb.data_length;
    if (got == iocb.payload_length) {
      if (validate && ws_utf8_finish(&u) != 0) die("wslay: truncated UTF-8");
      ws_utf8_init(&u);
      got = 0;
      msgs++;
    }
  }
  wslay_frame_context_free(fc);
  return msgs;
}
#endif

#ifdef WS_BENCH_CONN
static const char handshake[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static void drain_out(ws_conn *c) {
  ws_iovec iov[8];
  size_t n, i, total = 0;
  while ((n = ws_conn_out_peek(c, iov, 8)) > 0) {
    for (i = 0; i < n; i++) total += iov[i].len;
    ws_conn_out_consume(c, total);
    total = 0;
  }
}

static ws_conn *open_server_conn(void) {
  ws_config cfg;
  ws_conn *c;
  ws_event ev;
  uint8_t req[sizeof(handshake)];
  size_t pos = 0, len = sizeof(handshake) - 1, n;
  int opened = 0, requested = 0, rv;

  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.ping_interval_ms = 0;
  cfg.pong_timeout_ms = 0;
  cfg.handshake_timeout_ms = 0;
  cfg.max_frame_payload = 1u << 20;
  cfg.max_message = 1u << 20;
  if (ws_conn_new(&c, &cfg, NULL) != 0) die("conn: new");
  ws_conn_tick(c, 0);
  memcpy(req, handshake, len);
  while (!opened) {
    if (pos < len) {
      rv = ws_conn_feed(c, req + pos, len - pos, &n);
      if (rv != 0 && rv != WS_ERR_WOULDBLOCK) die("conn: handshake feed");
      pos += n;
    }
    while (ws_conn_next_event(c, &ev) == 0) {
      if (ev.type == WS_EV_REQUEST && !requested) {
        requested = 1;
        if (ws_conn_accept(c, NULL) != 0) die("conn: accept");
      } else if (ev.type == WS_EV_OPEN) {
        opened = 1;
      } else if (ev.type == WS_EV_ERROR) {
        die("conn: handshake error");
      }
    }
    if (pos >= len && !opened && !requested) die("conn: no request event");
  }
  drain_out(c);
  return c;
}

static size_t pass_conn(stream *s, void *ctx) {
  ws_conn *c = ctx;
  uint8_t *buf = s->work;
  size_t pos = 0, msgs = 0;

  while (pos < s->len) {
    size_t n = 0;
    ws_event ev;
    int rv = ws_conn_feed(c, buf + pos, s->len - pos, &n);
    if (rv != 0 && rv != WS_ERR_WOULDBLOCK) die("conn: feed");
    pos += n;
    while (ws_conn_next_event(c, &ev) == 0) {
      if (ev.type == WS_EV_ERROR) die("conn: error event");
      if ((ev.type == WS_EV_TEXT || ev.type == WS_EV_BINARY) &&
          (ev.flags & WS_EVF_FINAL)) {
        msgs++;
      }
    }
  }
  return msgs;
}
#endif

typedef struct result {
  double gbps, mps;
} result;

/* Runs |fn| over |s| until MIN_SECONDS of timed work have passed. */
static result run(stream *s, pass_fn fn, void *ctx, int restore) {
  double spent = 0;
  uint64_t bytes = 0, msgs = 0;
  result r;

  /* Warm up caches and branch predictors. */
  memcpy(s->work, s->pristine, s->len);
  if (fn(s, ctx) != s->nframes) die("wrong message count");
  while (spent < MIN_SECONDS) {
    double t0, t1;
    if (restore) memcpy(s->work, s->pristine, s->len);
    t0 = now_sec();
    msgs += fn(s, ctx);
    t1 = now_sec();
    spent += t1 - t0;
    bytes += s->len;
  }
  r.gbps = (double)bytes / spent / 1e9;
  r.mps = (double)msgs / spent;
  return r;
}

static void print_row(const char *label, const char *row, result r,
                      result memcpy_r, const result *wslay_r) {
  printf("%-14s %-26s %8.2f %11.0f %9.2f", label, row, r.gbps, r.mps,
         r.gbps / memcpy_r.gbps);
  if (wslay_r) {
    printf(" %9.2f", r.gbps / wslay_r->gbps);
  } else {
    printf(" %9s", "-");
  }
  printf("\n");
}

int main(void) {
  static const size_t sizes[] = {16, 1024, 65536};
  int text;
  size_t i;

  printf("libws receive path: stream of masked client frames, %u KiB per "
         "pass, >= %.2f s per row\n",
         STREAM_BYTES >> 10, MIN_SECONDS);
  printf("%-14s %-26s %8s %11s %9s %9s\n", "case", "row", "GB/s", "msgs/s",
         "x memcpy", "x wslay");
  for (text = 1; text >= 0; text--) {
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
      stream s;
      char label[32];
      result rm, rc;
      const result *pw = NULL;
#ifdef WS_BENCH_WSLAY
      result rw;
#endif

      make_stream(&s, sizes[i], text);
      snprintf(label, sizeof(label), "%s %zu B", text ? "text" : "binary",
               sizes[i]);
      rm = run(&s, pass_memcpy, NULL, 0);
#ifdef WS_BENCH_WSLAY
      rw = run(&s, pass_wslay, text ? (void *)&s : NULL, 0);
      pw = &rw;
#endif
      rc = run(&s, pass_codec, NULL, 1);
      print_row(label, "memcpy", rm, rm, pw);
#ifdef WS_BENCH_WSLAY
      print_row(label, text ? "wslay frame + ws_utf8" : "wslay frame", rw,
                rm, pw);
#endif
      print_row(label, "codec (decode+unmask+utf8)", rc, rm, pw);
#ifdef WS_BENCH_CONN
      {
        ws_conn *c = open_server_conn();
        result rn = run(&s, pass_conn, c, 1);
        print_row(label, "conn feed+next_event", rn, rm, pw);
        ws_conn_del(c);
      }
#endif
      free_stream(&s);
    }
  }
#ifndef WS_BENCH_WSLAY
  printf("(wslay row skipped: libwslay not found)\n");
#endif
#ifndef WS_BENCH_CONN
  printf("(conn row skipped: built without WS_BENCH_CONN)\n");
#endif
  return 0;
}
