/*
 * ws_peer: our client side (the epoll loop and the core in client role)
 * checked against someone else's echo server (python3-websockets,
 * node-ws; see peer.py and peer.js). Two connections:
 *   1. text and binary messages of 0 B to 4 MiB, fragmented sends, a ping
 *      with payload, then the server's own fragmented, binary and ping
 *      traffic ("cmd:" messages), then our close 4321 "done", which the
 *      server must echo;
 *   2. "cmd:close:4001:bye": the server closes with 4001 "bye".
 * Every byte and close code is checked. Prints "N passed, N failed".
 *   ws_peer --url ws://127.0.0.1:PORT/ [--deflate | --no-deflate]
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_epoll.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct step {
  const char *what;
  ws_opcode op;
  size_t len;       /* generated payload of this size ... */
  const char *text; /* ... or this literal */
  int frags;        /* send in this many fragments (0: whole) */
  int ping;         /* a ping with |text|: expect the pong */
  const char *expect; /* expected answer if not the echo */
  ws_opcode expect_op;
} step;

static const step steps[] = {
    {"text 0 B", WS_OP_TEXT, 0, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 1 B", WS_OP_TEXT, 1, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 125 B", WS_OP_TEXT, 125, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 126 B", WS_OP_TEXT, 126, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 65535 B", WS_OP_TEXT, 65535, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 65536 B", WS_OP_TEXT, 65536, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 1 MiB", WS_OP_TEXT, 1u << 20, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"text 4 MiB", WS_OP_TEXT, 4u << 20, NULL, 0, 0, NULL, WS_OP_TEXT},
    {"binary 0 B", WS_OP_BINARY, 0, NULL, 0, 0, NULL, WS_OP_BINARY},
    {"binary 127 B", WS_OP_BINARY, 127, NULL, 0, 0, NULL, WS_OP_BINARY},
    {"binary 65537 B", WS_OP_BINARY, 65537, NULL, 0, 0, NULL, WS_OP_BINARY},
    {"binary 4 MiB", WS_OP_BINARY, 4u << 20, NULL, 0, 0, NULL, WS_OP_BINARY},
    {"text in 3 fragments", WS_OP_TEXT, 3000, NULL, 3, 0, NULL, WS_OP_TEXT},
    {"binary in 5 fragments", WS_OP_BINARY, 100000, NULL, 5, 0, NULL,
     WS_OP_BINARY},
    {"ping with payload", WS_OP_TEXT, 0, "ping-1", 0, 1, NULL, WS_OP_TEXT},
    {"server fragments", WS_OP_TEXT, 0, "cmd:frag", 0, 0, "abcdefghi",
     WS_OP_TEXT},
    {"server binary", WS_OP_TEXT, 0, "cmd:binary", 0, 0, "\x00\x01\x02\xff",
     WS_OP_BINARY},
    {"server ping", WS_OP_TEXT, 0, "cmd:ping:xyz", 0, 0, "pong:xyz",
     WS_OP_TEXT},
};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

static ws_loop_url url;
static int want_deflate = -1; /* -1: do not check */
static int passed, failed, conn_no;
static size_t cur;
static uint8_t *sent;
static size_t sentlen;

static void result(int ok, const char *what, const char *why) {
  if (ok) passed++;
  else failed++;
  printf("%s %s%s%s\n", ok ? "ok" : "FAIL", what, ok ? "" : ": ", ok ? "" : why);
  fflush(stdout);
}

/* Valid UTF-8 for text (1-, 2- and 3-byte characters cut only at
 * character boundaries), a byte pattern for binary. */
static void fill(uint8_t *p, size_t n, ws_opcode op) {
  static const char pat[] = "ab\xce\xbb\xe2\x82\xac";
  for (size_t i = 0; i < n; i++)
    p[i] = op == WS_OP_BINARY ? (uint8_t)(i * 7 + i / 251) : (uint8_t)pat[i % 7];
  /* End on a character boundary: offsets 2 and 4 of the pattern start a
   * 2- and a 3-byte character. */
  size_t r = n % 7;
  if (op == WS_OP_TEXT && (r == 3 || r == 5 || r == 6)) p[n - 1] = 'z';
  if (op == WS_OP_TEXT && r == 6) p[n - 2] = 'z';
}

static void send_step(ws_loop_conn *c) {
  const step *s = &steps[cur];
  free(sent);
  sentlen = s->text ? strlen(s->text) : s->len;
  sent = malloc(sentlen + 1);
  if (s->text) memcpy(sent, s->text, sentlen);
  else fill(sent, sentlen, s->op);
  if (s->ping) {
    ws_loop_ping(c, sent, sentlen);
    return;
  }
  if (!s->frags) {
    ws_loop_send(c, s->op, sent, sentlen, 0);
    return;
  }
  size_t part = sentlen / (size_t)s->frags, off = 0;
  for (int i = 0; i < s->frags; i++) { /* the middle fragment is empty */
    size_t n = i == s->frags - 1 ? sentlen - off : i == 1 ? 0 : part;
    ws_loop_send(c, s->op, sent + off, n, i == s->frags - 1 ? 0 : WS_SEND_MORE);
    off += n;
  }
}

static void check_answer(ws_loop_conn *c, ws_opcode op, ws_slice d) {
  const step *s = &steps[cur];
  const uint8_t *want = s->expect ? (const uint8_t *)s->expect : sent;
  size_t wlen = s->expect ? (s->expect_op == WS_OP_BINARY ? 4 : strlen(s->expect))
                          : sentlen;
  char why[160];
  snprintf(why, sizeof(why), "got %s of %zu bytes, want %s of %zu",
           op == WS_OP_TEXT ? "text" : "binary", d.len,
           s->expect_op == WS_OP_TEXT ? "text" : "binary", wlen);
  result(op == s->expect_op && d.len == wlen &&
             (wlen == 0 || memcmp(d.base, want, wlen) == 0),
         s->what, why);
  if (++cur < NSTEPS) {
    send_step(c);
  } else {
    ws_loop_close(c, 4321, "done", 4);
  }
}

static int on_open(ws_loop_conn *c, void *ud) {
  ws_pmd_params pmd;
  (void)ud;
  ws_conn_pmd(ws_loop_conn_ws(c), &pmd);
  if (conn_no == 1 && want_deflate >= 0)
    result(pmd.enabled == want_deflate, "permessage-deflate negotiation",
           pmd.enabled ? "negotiated, not wanted" : "not negotiated");
  if (conn_no == 1) {
    cur = 0;
    send_step(c);
  } else {
    ws_loop_send(c, WS_OP_TEXT, "cmd:close:4001:bye", 18, 0);
  }
  return 0;
}

static int on_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  (void)ud;
  if (conn_no != 1 || cur >= NSTEPS) {
    result(0, "unexpected message", "after the script");
    return 0;
  }
  check_answer(c, ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
               ev->data);
  return 0;
}

static int on_control(ws_loop_conn *c, void *ud, const ws_event *ev) {
  (void)ud;
  if (ev->type == WS_EV_PONG && cur < NSTEPS && steps[cur].ping)
    check_answer(c, WS_OP_TEXT, ev->data);
  return 0;
}

static void connect_next(ws_loop *loop);

static int on_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  char why[200];
  (void)ud;
  snprintf(why, sizeof(why), "closed %u \"%.*s\" (%s)", in->code,
           (int)in->reason.len, (const char *)in->reason.base,
           in->error ? ws_loop_strerror(in->error) : "clean");
  if (conn_no == 1) {
    result(cur == NSTEPS, "every step answered", why);
    result(!in->error && in->code == 4321 && in->reason.len == 4 &&
               !memcmp(in->reason.base, "done", 4),
           "our close 4321 echoed", why);
    connect_next(ws_loop_conn_loop(c));
  } else {
    result(!in->error && in->code == 4001 && in->reason.len == 3 &&
               !memcmp(in->reason.base, "bye", 3),
           "server close 4001 \"bye\"", why);
  }
  return 0;
}

static void connect_next(ws_loop *loop) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = 16u << 20;
  cfg.max_out_queue = 20u << 20;
  cfg.pmd.enable = want_deflate != 0;
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = url.host;
  cp.port = url.port;
  cp.request.path = url.path;
  cp.config = &cfg;
  conn_no++;
  int rv = ws_loop_connect(loop, &cp, NULL);
  if (rv != 0) result(0, "connect", ws_loop_strerror(rv));
}

int main(int argc, char **argv) {
  const char *u = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--url") && i + 1 < argc) u = argv[++i];
    else if (!strcmp(argv[i], "--deflate")) want_deflate = 1;
    else if (!strcmp(argv[i], "--no-deflate")) want_deflate = 0;
    else u = NULL, i = argc;
  }
  if (!u || ws_loop_parse_url(u, &url) != 0) {
    fprintf(stderr, "usage: ws_peer --url ws://HOST:PORT/ [--deflate|--no-deflate]\n");
    return 2;
  }
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_control = on_control;
  lc.callbacks.on_close = on_close;
  ws_loop *loop;
  if (ws_loop_new(&loop, &lc) != 0) return 1;
  connect_next(loop);
  ws_loop_run(loop);
  ws_loop_del(loop);
  free(sent);
  if (conn_no < 2) failed++;
  printf("%d passed, %d failed\n", passed, failed);
  return failed || passed == 0 ? 1 : 0;
}
