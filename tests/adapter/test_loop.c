/*
 * The loop, client and server in one process over 127.0.0.1/::1:
 * sends posted from another thread arrive in order; graceful shutdown
 * closes with 1001 and refuses new upgrades with 503; IPv6; two loops on
 * one SO_REUSEPORT port; a transport that reads 1 byte and writes 3 bytes
 * at a time (and holds output itself) changes nothing; a transport's
 * failure reaches on_close with its own code and text; input a transport
 * holds is read when reading resumes after backpressure, without new
 * readiness; an idle connection does not wake the loop; WS_LOOP_PAUSE and
 * ws_loop_resume() deliver the kept message again.
 *
 * Built twice: over epoll (test_loop), and with WS_TEST_KQUEUE over the
 * kqueue backend and the kevent-on-epoll test double (test_loop_kqueue).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ws/ws_loop.h>
#ifdef WS_TEST_KQUEUE
#  include <ws/ws_kqueue.h>
#  define loop_new ws_kqueue_loop_new
#else
#  define loop_new ws_loop_new
#endif

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a tiny harness: one loop with an echo server and a client ---------- */

typedef struct rec {
  int opened, closed, msgs, pauses_left, http_status, error, sys_errno;
  uint16_t code;
  char got[64][32];
  char transport_error[64];
  size_t bytes;
  uint64_t id;
  ws_loop_conn *paused;
} rec;

static rec srv, cli;

static int srv_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  (void)ud;
  if (srv.pauses_left > 0) { /* keep it; resumed from the client side */
    srv.pauses_left--;
    srv.paused = c;
    return WS_LOOP_PAUSE;
  }
  srv.msgs++;
  ws_loop_send(c, ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
               ev->data.base, ev->data.len, 0);
  return 0;
}

static int on_open(ws_loop_conn *c, void *ud) {
  rec *r = ud ? ud : &srv;
  r->opened++;
  if (r == &cli) r->id = ws_loop_conn_id(c);
  return 0;
}

static int cli_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  (void)c;
  (void)ud;
  if (cli.msgs < 64)
    snprintf(cli.got[cli.msgs], 32, "%.*s", (int)ev->data.len,
             (const char *)ev->data.base);
  cli.msgs++;
  cli.bytes += ev->data.len;
  return 0;
}

static int on_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  rec *r = ud ? ud : &srv;
  (void)c;
  r->closed++;
  r->code = in->code;
  r->http_status = in->http_status;
  r->error = in->error;
  r->sys_errno = in->sys_errno;
  snprintf(r->transport_error, sizeof(r->transport_error), "%s",
           in->transport_error ? in->transport_error : "(null)");
  return 0;
}

static int on_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  return ud == &cli ? cli_message(c, ud, ev) : srv_message(c, ud, ev);
}

static ws_loop *new_loop_cfg(uint32_t high_water, uint32_t low_water) {
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_close = on_close;
  if (high_water) {
    lc.high_water = high_water;
    lc.low_water = low_water;
  }
  ws_loop *l = NULL;
  assert_int_equal(loop_new(&l, &lc), 0);
  return l;
}

static ws_loop *new_loop(void) { return new_loop_cfg(0, 0); }

static uint16_t listen_on(ws_loop *l, const char *host, uint32_t flags,
                          uint16_t port, const ws_loop_transport *tp) {
  static ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = &cfg;
  lp.host = host;
  lp.port = port;
  lp.flags = flags;
  lp.transport = tp;
  uint16_t bound = 0;
  assert_int_equal(ws_loop_listen(l, &lp, &bound), 0);
  assert_true(bound != 0);
  return bound;
}

static ws_loop_conn *connect_to(ws_loop *l, const char *host, uint16_t port,
                                const ws_loop_transport *tp) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.delivery = WS_DELIVER_MESSAGE;
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.config = &cfg;
  cp.host = host;
  cp.port = port;
  cp.user_data = &cli;
  cp.transport = tp;
  ws_loop_conn *c = NULL;
  assert_int_equal(ws_loop_connect(l, &cp, &c), 0);
  return c;
}

/* Runs |l| until |*flag| reaches |want| or 5 s pass. */
static void run_until(ws_loop *l, int *flag, int want) {
  for (int i = 0; i < 500 && *flag < want; i++) ws_loop_run_once(l, 10);
  assert_int_equal(*flag, want);
}

static void reset(void) {
  memset(&srv, 0, sizeof(srv));
  memset(&cli, 0, sizeof(cli));
}

/* ---- tests --------------------------------------------------------------- */

typedef struct poster {
  ws_loop *loop;
  uint64_t id;
} poster;

static void *post_thread(void *arg) {
  poster *p = arg;
  for (int i = 0; i < 50; i++) {
    char m[16];
    int n = snprintf(m, sizeof(m), "m%d", i);
    while (ws_loop_post_send(p->loop, p->id, WS_OP_TEXT, m, (size_t)n, 0) ==
           WS_ERR_WOULDBLOCK)
      usleep(100);
  }
  ws_loop_post_close(p->loop, p->id, 1000, "bye");
  return NULL;
}

static void post_send_from_thread_in_order(void **state) {
  (void)state;
  reset();
  ws_loop *l = new_loop();
  uint16_t port = listen_on(l, "127.0.0.1", 0, 0, NULL);
  connect_to(l, "127.0.0.1", port, NULL);
  run_until(l, &cli.opened, 1);
  poster p = {l, cli.id};
  pthread_t t;
  pthread_create(&t, NULL, post_thread, &p);
  run_until(l, &cli.closed, 1);
  pthread_join(t, NULL);
  assert_int_equal(cli.msgs, 50);
  for (int i = 0; i < 50; i++) {
    char m[16];
    snprintf(m, sizeof(m), "m%d", i);
    assert_string_equal(cli.got[i], m);
  }
  assert_int_equal(cli.code, 1000);
  /* a post to a connection that is gone is dropped quietly */
  assert_int_equal(ws_loop_post_send(l, p.id, WS_OP_TEXT, "x", 1, 0), 0);
  ws_loop_run_once(l, 10);
  ws_loop_del(l);
}

static void shutdown_closes_1001_and_refuses_upgrades(void **state) {
  (void)state;
  reset();
  ws_loop *l = new_loop();
  uint16_t port = listen_on(l, "127.0.0.1", 0, 0, NULL);
  connect_to(l, "127.0.0.1", port, NULL);
  run_until(l, &cli.opened, 1);
  ws_loop_shutdown(l, 0, 0, 2000);
  ws_loop_run_once(l, 10); /* the drain starts: 1001 goes out */
  connect_to(l, "127.0.0.1", port, NULL); /* a late client */
  run_until(l, &cli.closed, 2);
  assert_int_equal(ws_loop_run(l), 0); /* ends once drained */
  assert_int_equal(srv.closed, 1);
  assert_int_equal(srv.code, 1001); /* the client echoed our 1001 */
  assert_int_equal(cli.http_status, 503);
  ws_loop_del(l);
}

static void ipv6_loopback(void **state) {
  (void)state;
  reset();
  ws_loop *l = new_loop();
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) {
    ws_loop_del(l);
    skip(); /* no IPv6 here */
  }
  close(fd);
  uint16_t port = listen_on(l, "::1", WS_LOOP_V6ONLY, 0, NULL);
  ws_loop_conn *c = connect_to(l, "::1", port, NULL);
  run_until(l, &cli.opened, 1);
  char peer[64];
  ws_loop_conn_peer(c, peer, sizeof(peer));
  assert_true(strncmp(peer, "[::1]:", 6) == 0);
  ws_loop_send(c, WS_OP_TEXT, "six", 3, 0);
  run_until(l, &cli.msgs, 1);
  assert_string_equal(cli.got[0], "six");
  ws_loop_del(l);
  assert_int_equal(cli.closed, 1); /* on_close on delete: ABORTED */
}

static void two_loops_share_a_reuseport_port(void **state) {
  (void)state;
  reset();
  ws_loop *a = new_loop(), *b = new_loop();
  uint16_t port = listen_on(a, "127.0.0.1", WS_LOOP_REUSEPORT, 0, NULL);
  assert_int_equal(listen_on(b, "127.0.0.1", WS_LOOP_REUSEPORT, port, NULL),
                   port);
  ws_loop *c = new_loop();
  for (int i = 0; i < 16; i++) connect_to(c, "127.0.0.1", port, NULL);
  for (int i = 0; i < 500 && cli.opened < 16; i++) {
    ws_loop_run_once(a, 0);
    ws_loop_run_once(b, 0);
    ws_loop_run_once(c, 5);
  }
  assert_int_equal(cli.opened, 16);
  assert_int_equal(ws_loop_conn_count(a) + ws_loop_conn_count(b), 16);
  ws_loop_del(c);
  ws_loop_del(a);
  ws_loop_del(b);
}

/* A transport that hands the core 1 byte per read and takes 3 bytes per
 * write into a buffer of its own, which it flushes to the socket. */
typedef struct trickle {
  uint8_t out[8];
  size_t outlen;
} trickle;

static int tr_attach(void *ud, int fd, ws_role role, const char *sn,
                     void **pctx) {
  (void)ud;
  (void)fd;
  (void)role;
  (void)sn;
  *pctx = calloc(1, sizeof(trickle));
  return *pctx ? 0 : -1;
}
static int tr_read(void *ctx, int fd, uint8_t *buf, size_t cap, size_t *pn) {
  (void)ctx;
  (void)cap;
  ssize_t r = recv(fd, buf, 1, 0);
  if (r == 1) {
    *pn = 1;
    return 0;
  }
  if (r == 0) return WS_ERR_EOF;
  return errno == EAGAIN ? WS_ERR_WOULDBLOCK : WS_LOOP_ERR_IO;
}
static int tr_flush(trickle *t, int fd) {
  while (t->outlen) {
    ssize_t w = send(fd, t->out, t->outlen, MSG_NOSIGNAL);
    if (w < 0) return errno == EAGAIN ? WS_ERR_WOULDBLOCK : WS_LOOP_ERR_IO;
    memmove(t->out, t->out + w, t->outlen - (size_t)w);
    t->outlen -= (size_t)w;
  }
  return 0;
}
static int tr_write(void *ctx, int fd, const ws_iovec *iov, size_t n,
                    size_t *pn) {
  trickle *t = ctx;
  *pn = 0;
  int rv = tr_flush(t, fd);
  if (rv || n == 0) return rv;
  size_t k = iov[0].len < 3 ? iov[0].len : 3;
  memcpy(t->out, iov[0].base, k);
  t->outlen = k;
  *pn = k;
  return tr_flush(t, fd) == WS_LOOP_ERR_IO ? WS_LOOP_ERR_IO : 0;
}
static size_t tr_pending(void *ctx) { return ((trickle *)ctx)->outlen; }
static void tr_detach(void *ctx) { free(ctx); }

static const ws_loop_transport trickle_tp = {
    NULL, tr_attach, tr_read, tr_write, tr_pending, NULL, tr_detach, NULL};

static void transport_seam_byte_by_byte(void **state) {
  (void)state;
  reset();
  ws_loop *l = new_loop();
  uint16_t port = listen_on(l, "127.0.0.1", 0, 0, &trickle_tp);
  ws_loop_conn *c = connect_to(l, "127.0.0.1", port, &trickle_tp);
  run_until(l, &cli.opened, 1);
  for (int i = 0; i < 5; i++) {
    char m[32];
    int n = snprintf(m, sizeof(m), "trickle message %d", i);
    ws_loop_send(c, WS_OP_TEXT, m, (size_t)n, 0);
  }
  run_until(l, &cli.msgs, 5);
  assert_string_equal(cli.got[4], "trickle message 4");
  ws_loop_close(c, 4000, "x", 1);
  run_until(l, &cli.closed, 1);
  assert_int_equal(cli.code, 4000);
  ws_loop_del(l);
}

static void pause_and_resume_deliver_again(void **state) {
  (void)state;
  reset();
  srv.pauses_left = 2;
  ws_loop *l = new_loop();
  uint16_t port = listen_on(l, "127.0.0.1", 0, 0, NULL);
  ws_loop_conn *c = connect_to(l, "127.0.0.1", port, NULL);
  run_until(l, &cli.opened, 1);
  ws_loop_send(c, WS_OP_TEXT, "first", 5, 0);
  ws_loop_send(c, WS_OP_TEXT, "second", 6, 0);
  for (int i = 0; i < 20; i++) ws_loop_run_once(l, 5);
  assert_int_equal(cli.msgs, 0); /* paused with nothing pending: waits */
  ws_loop_resume(srv.paused);    /* delivered again: pauses once more */
  for (int i = 0; i < 20; i++) ws_loop_run_once(l, 5);
  assert_int_equal(cli.msgs, 0);
  ws_loop_resume(srv.paused);
  run_until(l, &cli.msgs, 2);
  assert_string_equal(cli.got[0], "first");
  assert_string_equal(cli.got[1], "second");
  ws_loop_del(l);
}

/* A transport that fails the way TLS does: after |ok_reads| good reads,
 * read() returns a code of its own, which error() explains; or, with
 * |code| WS_LOOP_ERR_IO, a socket error with errno ECONNRESET. */
typedef struct breaking {
  int code;
  int reads;
} breaking;

static int breaking_code;
static int br_attach(void *ud, int fd, ws_role role, const char *sn,
                     void **pctx) {
  (void)ud;
  (void)fd;
  (void)sn;
  breaking *b = calloc(1, sizeof(breaking));
  if (!b) return WS_ERR_NOMEM;
  b->code = role == WS_ROLE_CLIENT ? breaking_code : 0;
  *pctx = b;
  return 0;
}
static int br_read(void *ctx, int fd, uint8_t *buf, size_t cap, size_t *pn) {
  breaking *b = ctx;
  ssize_t r = recv(fd, buf, cap, 0);
  if (r > 0 && b->code && ++b->reads > 1) { /* the 101 went through */
    errno = ECONNRESET;
    return b->code;
  }
  if (r > 0) {
    *pn = (size_t)r;
    return 0;
  }
  if (r == 0) return WS_ERR_EOF;
  return errno == EAGAIN ? WS_ERR_WOULDBLOCK : WS_LOOP_ERR_IO;
}
static int br_write(void *ctx, int fd, const ws_iovec *iov, size_t n,
                    size_t *pn) {
  (void)ctx;
  *pn = 0;
  if (n == 0) return 0;
  ssize_t w = send(fd, iov[0].base, iov[0].len, MSG_NOSIGNAL);
  if (w < 0) return errno == EAGAIN ? WS_ERR_WOULDBLOCK : WS_LOOP_ERR_IO;
  *pn = (size_t)w;
  return 0;
}
static void br_detach(void *ctx) { free(ctx); }
static const char *br_error(void *ctx) {
  breaking *b = ctx;
  return b->code == WS_LOOP_ERR_IO ? "" : "the record was forged";
}
static const ws_loop_transport breaking_tp = {
    NULL, br_attach, br_read, br_write, NULL, NULL, br_detach, br_error};

static void transport_failure_reaches_on_close(void **state) {
  (void)state;
  static const int codes[] = {-450, WS_LOOP_ERR_IO};
  for (size_t i = 0; i < 2; i++) {
    reset();
    breaking_code = codes[i];
    ws_loop *l = new_loop();
    uint16_t port = listen_on(l, "127.0.0.1", 0, 0, &breaking_tp);
    ws_loop_conn *c = connect_to(l, "127.0.0.1", port, &breaking_tp);
    run_until(l, &cli.opened, 1);
    ws_loop_send(c, WS_OP_TEXT, "echo me", 7, 0);
    run_until(l, &cli.closed, 1); /* the echo is the read that fails */
    assert_int_equal(cli.msgs, 0);
    assert_int_equal(cli.code, 1006);
    assert_int_equal(cli.error, codes[i]);
    if (codes[i] == WS_LOOP_ERR_IO) {
      assert_int_equal(cli.sys_errno, ECONNRESET);
      assert_string_equal(cli.transport_error, "(null)"); /* "" is none */
    } else {
      assert_int_equal(cli.sys_errno, 0);
      assert_string_equal(cli.transport_error, "the record was forged");
    }
    ws_loop_del(l);
  }
}

/* A transport that holds input and output the way TLS does: read()
 * takes everything the socket has into its own buffer and hands it out
 * 1 KiB at a time; write() keeps at most 256 bytes and sends them on the
 * next call only, so output piles up in the core and the connection goes
 * over |high_water|. */
typedef struct hoard {
  uint8_t *in;
  size_t inpos, inlen, incap;
  uint8_t out[256];
  size_t outlen;
} hoard;

static int ho_attach(void *ud, int fd, ws_role role, const char *sn,
                     void **pctx) {
  (void)ud;
  (void)fd;
  (void)role;
  (void)sn;
  *pctx = calloc(1, sizeof(hoard));
  return *pctx ? 0 : WS_ERR_NOMEM;
}
static int ho_read(void *ctx, int fd, uint8_t *buf, size_t cap, size_t *pn) {
  hoard *h = ctx;
  for (;;) { /* drain the socket */
    if (h->incap - h->inlen < 4096) {
      uint8_t *p = realloc(h->in, h->incap + 65536);
      if (!p) return WS_ERR_NOMEM;
      h->in = p;
      h->incap += 65536;
    }
    ssize_t r = recv(fd, h->in + h->inlen, h->incap - h->inlen, 0);
    if (r > 0) {
      h->inlen += (size_t)r;
      continue;
    }
    if (r == 0 && h->inpos == h->inlen) return WS_ERR_EOF;
    if (r < 0 && errno != EAGAIN) return WS_LOOP_ERR_IO;
    break;
  }
  size_t n = h->inlen - h->inpos;
  if (n == 0) return WS_ERR_WOULDBLOCK;
  if (n > 1024) n = 1024;
  if (n > cap) n = cap;
  memcpy(buf, h->in + h->inpos, n);
  h->inpos += n;
  *pn = n;
  return 0;
}
static int ho_write(void *ctx, int fd, const ws_iovec *iov, size_t n,
                    size_t *pn) {
  hoard *h = ctx;
  *pn = 0;
  if (h->outlen) {
    ssize_t w = send(fd, h->out, h->outlen, MSG_NOSIGNAL);
    if (w < 0) return errno == EAGAIN ? WS_ERR_WOULDBLOCK : WS_LOOP_ERR_IO;
    memmove(h->out, h->out + w, h->outlen - (size_t)w);
    h->outlen -= (size_t)w;
    return WS_ERR_WOULDBLOCK; /* one step per call */
  }
  if (n == 0) return 0;
  size_t k = iov[0].len < sizeof(h->out) ? iov[0].len : sizeof(h->out);
  memcpy(h->out, iov[0].base, k);
  h->outlen = k;
  *pn = k;
  return WS_ERR_WOULDBLOCK;
}
static size_t ho_pending(void *ctx) { return ((hoard *)ctx)->outlen; }
static void ho_detach(void *ctx) {
  hoard *h = ctx;
  free(h->in);
  free(h);
}
static const ws_loop_transport hoard_tp = {
    NULL, ho_attach, ho_read, ho_write, ho_pending, NULL, ho_detach, NULL};

static void held_input_is_read_after_backpressure(void **state) {
  (void)state;
  reset();
  ws_loop *l = new_loop_cfg(2048, 512);
  uint16_t port = listen_on(l, "127.0.0.1", 0, 0, &hoard_tp);
  ws_loop_conn *c = connect_to(l, "127.0.0.1", port, NULL);
  run_until(l, &cli.opened, 1);
  char m[400];
  for (int i = 0; i < 40; i++) { /* 16 KB in one burst */
    memset(m, 'a' + i % 26, sizeof(m));
    assert_int_equal(ws_loop_send(c, WS_OP_BINARY, m, sizeof(m), 0), 0);
  }
  /* The server reads all of it into the transport at once, echoes until
   * it is over high_water, stops reading, drains under low_water, and
   * must then read what its transport holds: the socket has nothing new
   * to say. */
  run_until(l, &cli.msgs, 40);
  assert_int_equal(cli.bytes, 40 * sizeof(m));
  assert_int_equal(cli.got[39][0], 'a' + 39 % 26);
  ws_loop_del(l);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Write interest only while output is pending: an open, idle pair of
 * connections gives the poller nothing to report, so each round waits
 * its whole timeout. */
static void idle_connection_does_not_wake_the_loop(void **state) {
  (void)state;
  reset();
  ws_loop *l = new_loop();
  uint16_t port = listen_on(l, "127.0.0.1", 0, 0, NULL);
  connect_to(l, "127.0.0.1", port, NULL);
  run_until(l, &cli.opened, 1);
  run_until(l, &srv.opened, 1);
  for (int i = 0; i < 5; i++)
    ws_loop_run_once(l, 0); /* settle */
  uint64_t t0 = now_ms();
  for (int i = 0; i < 4; i++)
    assert_int_equal(ws_loop_run_once(l, 30), 0);
  assert_true(now_ms() - t0 >= 110);
  ws_loop_del(l);
}

static void url_parsing(void **state) {
  (void)state;
  ws_loop_url u;
  assert_int_equal(ws_loop_parse_url("ws://[::1]:9001/a?b", &u), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 9001);
  assert_string_equal(u.path, "/a?b");
  assert_int_equal(ws_loop_parse_url("wss://example.org", &u), 0);
  assert_int_equal(u.port, 443);
  assert_int_equal(u.secure, 1);
  assert_string_equal(u.path, "/");
  assert_int_equal(ws_loop_parse_url("http://x/", &u), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_parse_url("ws://x:0/", &u), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_parse_url("ws://x:99999/", &u),
                   WS_ERR_INVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(post_send_from_thread_in_order),
      cmocka_unit_test(shutdown_closes_1001_and_refuses_upgrades),
      cmocka_unit_test(ipv6_loopback),
      cmocka_unit_test(two_loops_share_a_reuseport_port),
      cmocka_unit_test(transport_seam_byte_by_byte),
      cmocka_unit_test(pause_and_resume_deliver_again),
      cmocka_unit_test(transport_failure_reaches_on_close),
      cmocka_unit_test(held_input_is_read_after_backpressure),
      cmocka_unit_test(idle_connection_does_not_wake_the_loop),
      cmocka_unit_test(url_parsing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
