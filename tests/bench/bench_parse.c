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
 * a pristine copy before every pass, outside the timed region. The conn
 * rows feed the stream in 64 KiB reads, as a server loop would.
 *
 * Instruction counts: `bench_parse --callgrind` runs itself once under
 * valgrind's callgrind (which must be installed), one pass per row over
 * 16 B and 125 B binary frames, 16 B text frames (mixed UTF-8, and pure
 * ASCII) and 125 B, 1 KiB and 64 KiB mixed UTF-8 text, and prints the
 * instructions per message and per payload byte of each row. Counts are
 * deterministic: they do not depend on the machine's load, so rows can
 * be compared across runs, unlike the timed table.
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

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef WS_BENCH_CALLGRIND
#  include <valgrind/callgrind.h>
#endif

#ifdef WS_BENCH_WSLAY
#  include <wslay/wslay.h>
#endif

#define STREAM_BYTES (2u << 20) /* per pass: fits in L2/L3 */

#ifndef BENCH_FEED_EVENTS
#  define BENCH_FEED_EVENTS 1 /* the batch receive call, ws_conn_feed_events */
#endif
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
    if (text == 2) {
      for (size_t k = 0; k < payload; k++)
        plain[k] = (uint8_t)('a' + rnd() % 26);
    } else if (text) {
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

static ws_conn *open_server_conn_flags(ws_delivery delivery, uint32_t flags) {
  ws_config cfg;
  ws_conn *c;
  ws_event ev;
  uint8_t req[sizeof(handshake)];
  size_t pos = 0, len = sizeof(handshake) - 1, n;
  int opened = 0, requested = 0, rv;

  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = delivery;
  cfg.flags = flags;
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

static ws_conn *open_server_conn(ws_delivery delivery) {
  return open_server_conn_flags(delivery, 0);
}

/* A server loop reads at most this much at a time. */
#define READ_SIZE 65536u

/* ws_conn_feed + ws_conn_next_event, the stream in 64 KiB reads. */
static size_t pass_conn(stream *s, void *ctx) {
  ws_conn *c = ctx;
  uint8_t *buf = s->work;
  size_t rpos = 0, msgs = 0;

  while (rpos < s->len) {
    size_t end = s->len - rpos < READ_SIZE ? s->len : rpos + READ_SIZE;
    size_t pos = rpos;
    while (pos < end) {
      size_t n = 0;
      ws_event ev;
      int rv = ws_conn_feed(c, buf + pos, end - pos, &n);
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
    rpos = end;
  }
  return msgs;
}

#if BENCH_FEED_EVENTS
static int count_event(ws_conn *c, const ws_event *ev, void *ud) {
  size_t *msgs = ud;
  (void)c;
  if (ev->type == WS_EV_ERROR) die("conn: error event");
  if (ev->flags & WS_EVF_FINAL) ++*msgs;
  return 0;
}

/* An echo server that gets one message per read: ws_conn_feed_events,
 * ws_conn_send of each message from the callback, then the output drained
 * (as written to the socket) after every read. */
static int echo_event(ws_conn *c, const ws_event *ev, void *ud) {
  size_t *msgs = ud;
  if (ev->type == WS_EV_ERROR) die("conn: error event");
  if (ev->type != WS_EV_TEXT && ev->type != WS_EV_BINARY) return 0;
  if (ws_conn_send(c, ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
                   ev->data.base, ev->data.len, 0) != 0)
    die("conn: echo");
  if (ev->flags & WS_EVF_FINAL) ++*msgs;
  return 0;
}

static size_t pass_echo(stream *s, void *ctx) {
  ws_conn *c = ctx;
  uint8_t *buf = s->work;
  size_t pos = 0, msgs = 0, per = s->len / s->nframes;

  while (pos < s->len) {
    size_t n = 0;
    ws_iovec iov[4];
    size_t cnt, i, total = 0;
    if (ws_conn_feed_events(c, buf + pos, per, &n, echo_event, &msgs) != 0 ||
        n != per)
      die("conn: echo feed");
    pos += n;
    cnt = ws_conn_out_peek(c, iov, 4);
    for (i = 0; i < cnt; i++) total += iov[i].len;
    ws_conn_out_consume(c, total);
  }
  return msgs;
}

/* ws_conn_feed_events, the stream in 64 KiB reads. */
static size_t pass_conn_cb(stream *s, void *ctx) {
  ws_conn *c = ctx;
  uint8_t *buf = s->work;
  size_t rpos = 0, msgs = 0;

  while (rpos < s->len) {
    size_t end = s->len - rpos < READ_SIZE ? s->len : rpos + READ_SIZE;
    size_t n = 0;
    if (ws_conn_feed_events(c, buf + rpos, end - rpos, &n, count_event,
                            &msgs) != 0 ||
        n != end - rpos) {
      die("conn: feed_events");
    }
    rpos = end;
  }
  return msgs;
}
#endif
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

/* The conn rows: each delivery mode through both receive calls. */
typedef struct conn_row {
  const char *name;
  ws_delivery delivery;
  pass_fn fn;
} conn_row;

#ifdef WS_BENCH_CONN
static const conn_row conn_rows[] = {
    {"conn stream feed+next", WS_DELIVER_STREAM, pass_conn},
#if BENCH_FEED_EVENTS
    {"conn stream feed_events", WS_DELIVER_STREAM, pass_conn_cb},
#endif
    {"conn message feed+next", WS_DELIVER_MESSAGE, pass_conn},
#if BENCH_FEED_EVENTS
    {"conn message feed_events", WS_DELIVER_MESSAGE, pass_conn_cb},
#endif
};
#define NCONN_ROWS (sizeof(conn_rows) / sizeof(conn_rows[0]))
#else
#define NCONN_ROWS 0
#endif

static const char *case_label(char *buf, size_t len, size_t size, int text) {
  snprintf(buf, len, "%s %zu B",
           text == 2 ? "ascii" : text ? "text" : "binary", size);
  return buf;
}

/* ---- instruction counts (callgrind) ------------------------------------- */

static const struct {
  size_t size;
  int text; /* 0 binary, 1 mixed UTF-8, 2 ASCII */
} count_cases[] = {{16, 0},   {125, 0},  {16, 1},   {16, 2},
                   {125, 1},  {1024, 1}, {65536, 1}};

#define NCOUNT_CASES (sizeof(count_cases) / sizeof(count_cases[0]))

#ifdef WS_BENCH_CALLGRIND
/* Under callgrind: one warm pass, then one counted pass per row, each
 * dumped under its own label "case|row|messages". */
static void count_one(stream *s, const char *label, const char *row,
                      pass_fn fn, void *ctx) {
  char desc[128];
  size_t msgs;
  memcpy(s->work, s->pristine, s->len);
  if (fn(s, ctx) != s->nframes) die("wrong message count");
  memcpy(s->work, s->pristine, s->len);
  CALLGRIND_TOGGLE_COLLECT;
  msgs = fn(s, ctx);
  CALLGRIND_TOGGLE_COLLECT;
  snprintf(desc, sizeof(desc), "%s|%s|%zu", label, row, msgs);
  CALLGRIND_DUMP_STATS_AT(desc);
}

static int count_child(void) {
  size_t i, r;
  for (i = 0; i < NCOUNT_CASES; i++) {
    stream s;
    char label[32];
    make_stream(&s, count_cases[i].size, count_cases[i].text);
    case_label(label, sizeof(label), count_cases[i].size,
               count_cases[i].text);
    count_one(&s, label, "codec (decode+unmask+utf8)", pass_codec, NULL);
#ifdef WS_BENCH_WSLAY
    count_one(&s, label, count_cases[i].text ? "wslay frame + ws_utf8"
                                             : "wslay frame",
              pass_wslay, count_cases[i].text ? (void *)&s : NULL);
#endif
    for (r = 0; r < NCONN_ROWS; r++) {
#ifdef WS_BENCH_CONN
      ws_conn *c = open_server_conn(conn_rows[r].delivery);
      count_one(&s, label, conn_rows[r].name, conn_rows[r].fn, c);
      ws_conn_del(c);
#endif
    }
#if defined(WS_BENCH_CONN) && BENCH_FEED_EVENTS
    if (count_cases[i].size <= 125) {
      /* one message per read, echoed: frames of one size are all alike */
      ws_conn *c = open_server_conn(WS_DELIVER_STREAM);
      count_one(&s, label, "echo, a read per message", pass_echo, c);
      ws_conn_del(c);
      c = open_server_conn_flags(WS_DELIVER_STREAM, WS_CFG_KEEP_BUFFERS);
      count_one(&s, label, "echo, WS_CFG_KEEP_BUFFERS", pass_echo, c);
      ws_conn_del(c);
    }
#endif
    free_stream(&s);
  }
  return 0;
}

/* Runs this program under callgrind and prints the counts it dumped. */
static int count_parent(const char *self) {
  char dir[] = "/tmp/bench_parse.XXXXXX", out[96], path[128], line[512];
  char desc[256] = "";
  pid_t pid;
  int status;
  unsigned k;
  double wslay_per[NCOUNT_CASES] = {0};

  if (!mkdtemp(dir)) die("mkdtemp");
  snprintf(out, sizeof(out), "--callgrind-out-file=%s/cg", dir);
  fflush(stdout);
  pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    execlp("valgrind", "valgrind", "--tool=callgrind", "--quiet",
           "--collect-atstart=no", out, self, "--callgrind", (char *)NULL);
    perror("bench_parse: valgrind");
    _exit(127);
  }
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    die("callgrind run failed (is valgrind installed?)");
  }
  printf("libws receive path: instructions per message (callgrind), "
         "64 KiB reads\n");
  printf("%-14s %-26s %12s %10s %9s\n", "case", "row", "instr/msg",
         "instr/B", "x wslay");
  for (k = 1;; k++) {
    FILE *f;
    unsigned long long total = 0;
    char *c1, *c2;
    size_t msgs, ci;
    snprintf(path, sizeof(path), "%s/cg.%u", dir, k);
    f = fopen(path, "r");
    if (!f) break;
    while (fgets(line, sizeof(line), f)) {
      if (strncmp(line, "desc: Trigger: Client Request: ", 31) == 0) {
        size_t l = strcspn(line + 31, "\n");
        if (l >= sizeof(desc)) l = sizeof(desc) - 1;
        memcpy(desc, line + 31, l);
        desc[l] = 0;
      } else if (strncmp(line, "totals: ", 8) == 0) {
        total = strtoull(line + 8, NULL, 10);
      }
    }
    fclose(f);
    remove(path);
    c1 = strchr(desc, '|');
    c2 = c1 ? strchr(c1 + 1, '|') : NULL;
    if (!c2) continue;
    *c1 = *c2 = 0;
    msgs = (size_t)strtoull(c2 + 1, NULL, 10);
    if (!msgs) continue;
    for (ci = 0; ci < NCOUNT_CASES; ci++) {
      char label[32];
      if (strcmp(case_label(label, sizeof(label), count_cases[ci].size,
                            count_cases[ci].text),
                 desc) == 0)
        break;
    }
    if (ci == NCOUNT_CASES) continue;
    double per = (double)total / (double)msgs;
    if (strncmp(c1 + 1, "wslay", 5) == 0) wslay_per[ci] = per;
    printf("%-14s %-26s %12.1f %10.3f", desc, c1 + 1, per,
           per / (double)count_cases[ci].size);
    if (wslay_per[ci] > 0)
      printf(" %9.2f\n", per / wslay_per[ci]);
    else
      printf(" %9s\n", "-");
  }
  /* the final dump at exit, and the directory */
  snprintf(path, sizeof(path), "%s/cg", dir);
  remove(path);
  rmdir(dir);
  return 0;
}
#endif

int main(int argc, char **argv) {
  static const size_t sizes[] = {16, 1024, 65536};
  int text;
  size_t i;

  if (argc > 1 && strcmp(argv[1], "--callgrind") == 0) {
#ifdef WS_BENCH_CALLGRIND
    return RUNNING_ON_VALGRIND ? count_child() : count_parent(argv[0]);
#else
    die("built without valgrind/callgrind.h");
#endif
  }
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
      case_label(label, sizeof(label), sizes[i], text);
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
      for (size_t r = 0; r < NCONN_ROWS; r++) {
        ws_conn *c = open_server_conn(conn_rows[r].delivery);
        result rn = run(&s, conn_rows[r].fn, c, 1);
        print_row(label, conn_rows[r].name, rn, rm, pw);
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
  printf("(instruction counts per message: bench_parse --callgrind)\n");
  return 0;
}
