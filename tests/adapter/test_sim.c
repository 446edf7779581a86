/*
 * The loop over simulated sockets and a simulated clock (sim.h): time is
 * advanced by hours in microseconds, so every timer is checked to the
 * millisecond, and wakeups are counted, on any machine however loaded.
 *
 *  - a new client after 12 s, 60 s or 300 s of quiet gets its 101 at
 *    once and the full handshake timeout (the regression for the stale
 *    clock: deadlines were computed from the previous round's time);
 *  - keepalive pings go out every 25 s on an idle connection for a
 *    simulated day, with no other wakeup;
 *  - non-reading clients at the keepalive deadline cost a bounded number
 *    of wakeups (no spin) and are dropped at the write timeout;
 *  - linger, graceful shutdown with spread and drain, the EMFILE pause,
 *    partial reads and writes, resets, refused connects, plain HTTP
 *    (400 at once for a bare-LF head, 431, HEAD), posts from a thread
 *    racing with the close;
 *  - every refusal the loop makes by itself (the parser's 400/405/426/
 *    431, 503 while draining, over a cap or the memory budget, 403 for
 *    a foreign Origin, 500 or a close at once out of memory) is told to
 *    on_refused once, with its exact status and reason; what the
 *    application accepts or refuses is not.
 *  - a request paused while the transport owes output (TLS) is not
 *    delivered again once that output has gone.
 * Every connection gets exactly one on_close.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sim.h"
#include "ws_drv.h" /* the loop's connection table, for the tests */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1000000u /* the simulation starts at 1000 s */
#define MAXPEERS 64

/* ---- a WebSocket client of the test's own, over a simulated socket ------- */

typedef struct peer {
  sim *s;
  int fd;
  ws_conn *ws;
  uint64_t rng;
  int opened, msgs, pings, eof_fed, mute;
  int status; /* of a rejected handshake */
  int err;
  uint16_t close_code;
  uint64_t opened_at, closed_at, last_ping_at;
  char last[256];
} peer;

static int peer_rand(uint8_t *buf, size_t n, void *ud) {
  uint64_t *r = ud;
  for (size_t i = 0; i < n; i++) {
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    buf[i] = (uint8_t)(*r >> 56);
  }
  return 0;
}

static void peer_event(peer *p, const ws_event *ev) {
  uint64_t now = sim_now(p->s);
  switch (ev->type) {
  case WS_EV_OPEN:
    p->opened++;
    p->opened_at = now;
    break;
  case WS_EV_TEXT:
  case WS_EV_BINARY:
    p->msgs++;
    snprintf(p->last, sizeof(p->last), "%.*s", (int)ev->data.len,
             (const char *)ev->data.base);
    break;
  case WS_EV_PING:
    p->pings++;
    p->last_ping_at = now;
    break;
  case WS_EV_CLOSE:
    p->close_code = ev->close_code;
    p->closed_at = now;
    break;
  case WS_EV_ERROR:
    p->err = ev->error;
    if (!p->closed_at) p->closed_at = now;
    if (ev->response) p->status = ev->response->status;
    break;
  default: break;
  }
}

/* Reads what the loop sent, answers (the core pongs and echoes closes),
 * and writes what it can. */
static void peer_pump(peer *p) {
  if (p->mute || !p->ws || p->fd < 0) return;
  uint8_t buf[16384];
  ws_event ev;
  size_t n;
  while ((n = sim_recv(p->s, p->fd, buf, sizeof(buf))) > 0) {
    size_t off = 0;
    while (off < n) {
      size_t used = 0;
      int rv = ws_conn_feed(p->ws, buf + off, n - off, &used);
      off += used;
      while (ws_conn_next_event(p->ws, &ev) == 0) peer_event(p, &ev);
      if (rv < 0 && rv != WS_ERR_WOULDBLOCK) off = n;
    }
  }
  if (sim_peer_done(p->s, p->fd) && !p->eof_fed) {
    p->eof_fed = 1;
    ws_conn_feed_eof(p->ws);
    while (ws_conn_next_event(p->ws, &ev) == 0) peer_event(p, &ev);
  }
  ws_iovec v;
  while (ws_conn_out_peek(p->ws, &v, 1) == 1) {
    size_t w = sim_send(p->s, p->fd, v.base, v.len);
    if (w == 0) break;
    ws_conn_out_consume(p->ws, w);
  }
}

static void peer_start(peer *p, sim *s, uint16_t port, const char *path) {
  memset(p, 0, sizeof(*p));
  p->s = s;
  p->rng = 42;
  p->fd = sim_dial(s, port);
  assert_true(p->fd >= 0);
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.rand = peer_rand;
  cfg.rand_user_data = &p->rng;
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.handshake_timeout_ms = cfg.ping_interval_ms = 0;
  cfg.pong_timeout_ms = cfg.close_timeout_ms = 0;
  assert_int_equal(ws_conn_new(&p->ws, &cfg, NULL), 0);
  ws_client_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "h";
  cp.path = path ? path : "/";
  assert_int_equal(ws_conn_connect(p->ws, &cp), 0);
  peer_pump(p);
}

static void peer_send(peer *p, const char *text) {
  assert_int_equal(ws_conn_send(p->ws, WS_OP_TEXT, text, strlen(text), 0), 0);
  peer_pump(p);
}

static void peer_end(peer *p) {
  ws_conn_del(p->ws);
  p->ws = NULL;
  if (p->fd >= 0) sim_close(p->s, p->fd);
  p->fd = -1;
}

/* ---- the loop under test ---------------------------------------------------- */

typedef struct harness {
  sim *s;
  ws_loop *l;
  uint16_t port;
  peer *peers[MAXPEERS];
  size_t npeers;
  int opens, closes, msgs, dup_close;
  int close_err, close_errno, close_status;
  uint16_t close_code, sent_code;
  uint64_t close_at;
  uint64_t closed_ids[256];
  int pause_next;
} harness;

static harness H;

/* ws_loop_broadcast() over prepared messages (issue 11), at the end of
 * the file. */
static void broadcast_prepared_to_mixed_peers(void **state);

static int h_open(ws_loop_conn *c, void *ud) {
  (void)c;
  (void)ud;
  H.opens++;
  return 0;
}

static int h_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  (void)ud;
  H.msgs++;
  int rv = ws_loop_send(c, ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
                        ev->data.base, ev->data.len, 0);
  return rv == WS_ERR_WOULDBLOCK ? WS_LOOP_PAUSE : 0;
}

static int h_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  (void)ud;
  uint64_t id = ws_loop_conn_id(c);
  for (int i = 0; i < H.closes && i < 256; i++)
    if (H.closed_ids[i] == id) H.dup_close++;
  if (H.closes < 256) H.closed_ids[H.closes] = id;
  H.closes++;
  H.close_err = in->error;
  H.close_errno = in->sys_errno;
  H.close_status = in->http_status;
  H.close_code = in->code;
  H.sent_code = in->sent_code;
  H.close_at = ws_loop_now(ws_loop_conn_loop(c));
  return 0;
}

static const char page[] = "<p>page</p>";

static int h_http(ws_loop_conn *c, void *ud, const ws_loop_http_request *req) {
  static const ws_kv html[] = {{"Content-Type", "text/html"}};
  (void)ud;
  if (ws_slice_ieq(req->path, "/"))
    ws_loop_http_respond(c, 200, html, 1, page, sizeof(page) - 1);
  return 0;
}

static void h_start(const ws_loop_config *lcfg, const ws_config *scfg,
                    int http) {
  memset(&H, 0, sizeof(H));
  H.s = sim_new(T0, 7);
  sim_set_block_limit(H.s, 2000);
  ws_loop_config lc;
  if (lcfg)
    lc = *lcfg;
  else
    ws_loop_config_default(&lc);
  lc.callbacks.on_open = h_open;
  lc.callbacks.on_message = h_message;
  lc.callbacks.on_close = h_close;
  if (http) lc.callbacks.on_http = h_http;
  ws_drv_poller pl = sim_poller(H.s);
  assert_int_equal(ws_drv_new(&H.l, &lc, &pl, sim_sys(H.s)), 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = scfg;
  assert_int_equal(ws_loop_listen(H.l, &lp, &H.port), 0);
}

static void h_end(void) {
  for (size_t i = 0; i < H.npeers; i++) peer_end(H.peers[i]);
  ws_loop_del(H.l);
  assert_int_equal(H.dup_close, 0);
  sim_stats st;
  sim_get_stats(H.s, &st);
  assert_int_equal(st.open_fds, 0); /* the loop closed all it opened */
  sim_del(H.s);
}

static peer *h_peer(peer *p, const char *path) {
  peer_start(p, H.s, H.port, path);
  assert_true(H.npeers < MAXPEERS);
  H.peers[H.npeers++] = p;
  return p;
}

/* A default server that sends no keepalive pings. */
static void h_start_unpinged(void) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.ping_interval_ms = 0;
  h_start(NULL, &cfg, 0);
}

/* One round of the loop (waiting as long as it wants: the simulation
 * jumps to its next deadline), then every peer reads and answers. */
static void h_round(void) {
  int rv = ws_loop_run_once(H.l, -1);
  assert_true(rv == 0 || rv == 1);
  for (size_t i = 0; i < H.npeers; i++) peer_pump(H.peers[i]);
}

/* Rounds until |*flag| >= |want|, failing after |max_rounds|. */
static void h_until(const int *flag, int want, int max_rounds) {
  for (int i = 0; i < max_rounds && *flag < want; i++) h_round();
  assert_true(*flag >= want);
}

static sim_stats h_stats(void) {
  sim_stats st;
  sim_get_stats(H.s, &st);
  return st;
}

/* ---- time ------------------------------------------------------------------- */

static peer quiet_peers[4];
static int quiet_arrived;

static void arrive(sim *s, void *arg) {
  (void)s;
  h_peer(arg, "/");
  quiet_arrived++;
}

/* Issue: the first client after a quiet period was dropped at once, and
 * shorter quiet periods shortened the handshake timeout, because a new
 * connection's deadline was computed from the previous round's clock. */
static void new_client_after_quiet_gets_full_timeout(void **state) {
  (void)state;
  static const uint64_t quiet[] = {12000, 60000, 300000};
  for (size_t q = 0; q < 3; q++) {
    h_start(NULL, NULL, 0);
    quiet_arrived = 0;
    /* one client comes and goes */
    peer *a = h_peer(&quiet_peers[0], "/");
    h_until(&a->opened, 1, 20);
    ws_conn_close(a->ws, 1000, NULL, 0);
    peer_pump(a);
    h_until(&H.closes, 1, 20);
    uint64_t last = sim_now(H.s);
    /* after the quiet period: one client that completes its handshake,
     * one that never sends a byte */
    sim_at(H.s, last + quiet[q], arrive, &quiet_peers[1]);
    h_until(&quiet_arrived, 1, 20);
    peer *b = H.peers[1];
    h_until(&b->opened, 1, 5);
    assert_int_equal(b->opened_at, last + quiet[q]); /* no time passed */
    int silent = sim_dial(H.s, H.port);
    uint64_t t1 = sim_now(H.s);
    for (int i = 0; i < 50 && !sim_peer_done(H.s, silent); i++) h_round();
    assert_true(sim_peer_done(H.s, silent));
    /* exactly the configured 10 s after the accept */
    assert_int_equal(sim_now(H.s), t1 + 10000);
    assert_int_equal(b->closed_at, 0); /* the other one is still open */
    sim_close(H.s, silent);
    h_end();
  }
}

static int day_over;
static void end_of_day(sim *s, void *arg) {
  (void)s;
  (void)arg;
  day_over = 1;
}

/* Keepalive: an idle connection is pinged every ping_interval_ms (25 s)
 * for a simulated day, answered by the peer, and nothing else wakes the
 * loop: one wait per ping and its pong. */
static void keepalive_pings_on_schedule_for_a_day(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  uint64_t start = sim_now(H.s);
  sim_stats before = h_stats();
  day_over = 0;
  sim_at(H.s, start + 86400000u, end_of_day, NULL);
  while (!day_over) h_round();
  sim_stats after = h_stats();
  assert_int_equal(p.pings, 86400 / 25);
  assert_int_equal(p.last_ping_at, start + 86400000u);
  assert_int_equal(p.closed_at, 0);
  /* a ping and its pong: two wakeups each, and no busy wait */
  assert_true(after.waits - before.waits <= 2u * 3456u + 4u);
  assert_true(after.idle_waits - before.idle_waits <= 2);
  h_end();
}

/* Issue: with an output queue exactly full at the keepalive deadline the
 * loop spun (epoll_wait(0) in a tight loop) until the write timeout.
 * Twelve clients that never read, each with a full queue: a handful of
 * wakeups in all, and each is dropped exactly at the write timeout. */
static void full_queues_at_ping_deadline_do_not_spin(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_out_queue = 4096;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.write_timeout_ms = 60000; /* after the ping (25 s) and pong (50 s) */
  h_start(&lc, &cfg, 0);
  peer ps[12];
  for (int i = 0; i < 12; i++) {
    h_peer(&ps[i], "/");
    h_until(&ps[i].opened, 1, 10);
  }
  uint64_t t = sim_now(H.s);
  char chunk[1000];
  memset(chunk, 'x', sizeof(chunk));
  for (int i = 0; i < 12; i++) {
    sim_set_rcvbuf(H.s, ps[i].fd, 0); /* never reads again */
    ps[i].mute = 1;
  }
  /* fill every queue to exactly max_out_queue: 4 x 1004 + 80 */
  for (uint32_t i = 0; i < H.l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(H.l, i);
    if (!c) continue;
    for (int k = 0; k < 4; k++)
      assert_int_equal(ws_loop_send(c, WS_OP_BINARY, chunk, 1000, 0), 0);
    assert_int_equal(ws_loop_send(c, WS_OP_BINARY, chunk, 78, 0), 0);
    assert_int_equal(ws_conn_out_pending(ws_loop_conn_ws(c)), 4096);
  }
  sim_stats before = h_stats();
  h_until(&H.closes, 12, 200);
  sim_stats after = h_stats();
  /* The ping is due at t + 25 s with every queue full: the pong timeout
   * (25 s) then fails each connection with 1011 at t + 50 s. */
  assert_int_equal(H.close_at, t + 50000);
  assert_int_equal(H.close_err, WS_ERR_TIMEOUT);
  assert_true(after.waits - before.waits <= 6);
  assert_true(after.idle_waits - before.idle_waits <= 2);
  h_end();
}

/* The write timeout: a connection whose pending output makes no
 * progress for write_timeout_ms is dropped, exactly then. */
static void write_timeout_drops_a_stalled_reader(void **state) {
  (void)state;
  h_start_unpinged();
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  sim_set_rcvbuf(H.s, p.fd, 0);
  p.mute = 1;
  uint64_t t = sim_now(H.s);
  ws_loop_send(drv_slot_conn(H.l, 0), WS_OP_TEXT, "stuck", 5, 0);
  h_until(&H.closes, 1, 20);
  assert_int_equal(H.close_at, t + 30000);
  assert_int_equal(H.close_err, WS_LOOP_ERR_STALLED);
  assert_true(h_stats().waits < 10);
  h_end();
}

/* After the close handshake the server shuts its side and waits up to
 * linger_ms for the client's FIN (RFC 6455 7.1.1), then closes. */
static void linger_after_close_handshake(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  uint64_t t = sim_now(H.s);
  assert_int_equal(ws_loop_close(drv_slot_conn(H.l, 0), 1000, "bye", 3), 0);
  h_until(&H.closes, 1, 10);
  assert_int_equal(H.close_code, 1000); /* echoed by the peer */
  assert_int_equal(H.sent_code, 1000);
  assert_int_equal(p.close_code, 1000);
  /* the peer keeps its socket open: the server gives up at +2 s */
  for (int i = 0; i < 10 && !sim_peer_closed(H.s, p.fd); i++) h_round();
  assert_true(sim_peer_closed(H.s, p.fd));
  assert_int_equal(sim_now(H.s), t + 2000);
  h_end();
}

/* ---- shutdown ------------------------------------------------------------------ */

/* 1012 to every client at a moment spread over 1 s; those that answer
 * are gone at once, the one that does not is dropped at the drain
 * deadline, and ws_loop_run() returns then. New upgrades get 503. */
static void graceful_shutdown_spread_and_drain(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer ps[8];
  for (int i = 0; i < 8; i++) {
    h_peer(&ps[i], "/");
    h_until(&ps[i].opened, 1, 10);
  }
  ps[7].mute = 1; /* never answers the close */
  uint64_t t = sim_now(H.s);
  ws_loop_shutdown(H.l, 1012, 1000, 5000);
  h_round();
  peer late;
  h_peer(&late, "/");
  h_until(&H.closes, 8, 100);
  for (int i = 0; i < 7; i++) {
    assert_int_equal(ps[i].close_code, 1012);
    assert_true(ps[i].closed_at >= t && ps[i].closed_at < t + 1000);
  }
  assert_int_equal(late.status, 503);
  assert_int_equal(H.close_err, WS_LOOP_ERR_SHUTDOWN);
  assert_int_equal(H.close_at, t + 5000);
  assert_int_equal(ws_loop_run_once(H.l, -1), 1); /* over */
  h_end();
}

/* ---- faults ---------------------------------------------------------------------- */

/* Out of descriptors at accept(): the listener rests 100 ms instead of
 * spinning on a readable socket, then accepts. */
static void accept_emfile_pauses_listener(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  sim_fail_accepts(H.s, 1, EMFILE);
  uint64_t t = sim_now(H.s);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  assert_int_equal(p.opened_at, t + 100);
  assert_true(h_stats().idle_waits <= 2);
  assert_true(h_stats().waits <= 6);
  h_end();
}

/* Reads of 1 byte and writes of 3: the same messages arrive. */
static void partial_reads_and_writes(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  sim_set_partial(H.s, 1, 3);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 2000);
  for (int i = 0; i < 5; i++) {
    char m[32];
    snprintf(m, sizeof(m), "partial message %d", i);
    peer_send(&p, m);
  }
  h_until(&p.msgs, 5, 5000);
  assert_string_equal(p.last, "partial message 4");
  h_end();
}

/* A reset in the middle of a frame: on_close once, with the errno. */
static void reset_mid_frame(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  static const uint8_t half[] = {0x81, 0x85, 1, 2, 3, 4, 'a'};
  sim_send(H.s, p.fd, half, sizeof(half));
  h_round();
  sim_reset(H.s, p.fd);
  p.fd = -1;
  h_until(&H.closes, 1, 10);
  assert_int_equal(H.close_err, WS_LOOP_ERR_IO);
  assert_int_equal(H.close_errno, ECONNRESET);
  assert_int_equal(H.close_code, 1006);
  assert_int_equal(H.sent_code, 0); /* nothing was sent: not 1006 */
  h_end();
}

/* A default server and three peers, open. */
static void h_start_three(peer *a, peer *b, peer *c) {
  h_start(NULL, NULL, 0);
  h_peer(a, "/");
  h_peer(b, "/");
  h_peer(c, "/");
  h_until(&H.opens, 3, 20);
}

/* A transport that fails takes its connection out of the deadline heap
 * at once (its key's place keeps the errno until on_close): the others,
 * before and after it in the heap, are still pinged on schedule. */
static void reset_among_pinged(void **state) {
  (void)state;
  peer a, b, c;
  h_start_three(&a, &b, &c);
  assert_int_equal(H.l->heaplen, 3);
  sim_reset(H.s, b.fd);
  b.fd = -1;
  h_until(&H.closes, 1, 10);
  assert_int_equal(H.close_err, WS_LOOP_ERR_IO);
  assert_int_equal(H.close_errno, ECONNRESET);
  assert_int_equal(H.l->heaplen, 2);
  uint64_t t = sim_now(H.s);
  for (int i = 0; i < 400 && (a.pings < 2 || c.pings < 2); i++) h_round();
  assert_true(a.pings >= 2 && c.pings >= 2);
  assert_true(sim_now(H.s) - t <= 2u * 25000u + 1000u);
  assert_int_equal(H.closes, 1);
  h_end();
}

/* The loop's own client: connects through the simulated network to the
 * loop's own listener; a port nobody listens on is refused; a name that
 * does not resolve fails at once. */
static int cli_opened, cli_closed, cli_err, cli_errno;
static int c_open(ws_loop_conn *c, void *ud) {
  (void)c;
  if (ud == &cli_opened) cli_opened++;
  return 0;
}
static int c_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  if (ud != &cli_opened) return h_close(c, ud, in);
  cli_closed++;
  cli_err = in->error;
  cli_errno = in->sys_errno;
  return 0;
}

static void loop_client_connects_and_is_refused(void **state) {
  (void)state;
  memset(&H, 0, sizeof(H));
  H.s = sim_new(T0, 3);
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = c_open;
  lc.callbacks.on_message = h_message;
  lc.callbacks.on_close = c_close;
  ws_drv_poller pl = sim_poller(H.s);
  assert_int_equal(ws_drv_new(&H.l, &lc, &pl, sim_sys(H.s)), 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  assert_int_equal(ws_loop_listen(H.l, &lp, &H.port), 0);
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "127.0.0.1";
  cp.port = H.port;
  cp.user_data = &cli_opened;
  cli_opened = cli_closed = 0;
  assert_int_equal(ws_loop_connect(H.l, &cp, NULL), 0);
  h_until(&cli_opened, 1, 10);
  cp.port = 1; /* nobody */
  assert_int_equal(ws_loop_connect(H.l, &cp, NULL), 0);
  h_until(&cli_closed, 1, 10);
  assert_int_equal(cli_err, WS_LOOP_ERR_IO);
  assert_int_equal(cli_errno, ECONNREFUSED);
  cp.host = "no-such-host.invalid";
  assert_int_equal(ws_loop_connect(H.l, &cp, NULL), WS_LOOP_ERR_RESOLVE);
  ws_loop_del(H.l);
  assert_int_equal(cli_closed, 2); /* the open one: ABORTED */
  assert_int_equal(cli_err, WS_LOOP_ERR_ABORTED);
  sim_stats st;
  sim_get_stats(H.s, &st);
  assert_int_equal(st.open_fds, 0);
  sim_del(H.s);
}

/* ---- plain HTTP ----------------------------------------------------------------- */

/* Sends |req| on a fresh connection and returns what came back, once the
 * server closed its side. */
static size_t http_exchange(const char *req, char *out, size_t cap,
                            uint64_t *pelapsed) {
  int fd = sim_dial(H.s, H.port);
  uint64_t t = sim_now(H.s);
  sim_send(H.s, fd, req, strlen(req));
  for (int i = 0; i < 10 && !sim_peer_done(H.s, fd); i++) h_round();
  assert_true(sim_peer_done(H.s, fd));
  *pelapsed = sim_now(H.s) - t;
  size_t n = sim_recv(H.s, fd, out, cap - 1);
  out[n] = 0;
  sim_close(H.s, fd);
  return n;
}

static void http_requests_through_the_core(void **state) {
  (void)state;
  h_start(NULL, NULL, 1);
  char out[4096];
  uint64_t dt;
  http_exchange("GET / HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof(out), &dt);
  assert_int_equal(dt, 0);
  assert_string_equal(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                           "Content-Length: 11\r\nContent-Type: text/html"
                           "\r\n\r\n<p>page</p>");
  http_exchange("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof(out), &dt);
  assert_string_equal(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                           "Content-Length: 11\r\nContent-Type: text/html"
                           "\r\n\r\n");
  http_exchange("GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof(out),
                &dt);
  assert_memory_equal(out, "HTTP/1.1 404 Not Found\r\n", 24);
  /* a bare-LF head: 400 at once, not after the handshake timeout */
  http_exchange("GET / HTTP/1.1\nHost: h\n\n", out, sizeof(out), &dt);
  assert_memory_equal(out, "HTTP/1.1 400 Bad Request\r\n", 26);
  assert_int_equal(dt, 0);
  /* 65 header lines (max_headers is 64): 431 */
  char big[2048];
  size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\n");
  for (int i = 0; i < 64; i++)
    n += (size_t)snprintf(big + n, sizeof(big) - n, "X%d: y\r\n", i);
  snprintf(big + n, sizeof(big) - n, "\r\n");
  http_exchange(big, out, sizeof(out), &dt);
  assert_memory_equal(out, "HTTP/1.1 431 ", 13);
  /* a WebSocket on the same port still opens */
  peer p;
  h_peer(&p, "/ws");
  h_until(&p.opened, 1, 10);
  /* during a shutdown, plain requests get 503 (health checks see it) */
  ws_loop_shutdown(H.l, 1001, 0, 5000);
  h_round();
  http_exchange("GET / HTTP/1.1\r\nHost: h\r\n\r\n", out, sizeof(out), &dt);
  assert_memory_equal(out, "HTTP/1.1 503 ", 13);
  h_end();
}

/* ---- posts from another thread --------------------------------------------- */

typedef struct poster {
  ws_loop *loop;
  uint64_t id;
  int sent;
} poster;

static void *post_thread(void *arg) {
  poster *p = arg;
  for (int i = 0; i < 400; i++) {
    char m[16];
    int n = snprintf(m, sizeof(m), "m%d", i);
    if (ws_loop_post_send(p->loop, p->id, WS_OP_TEXT, m, (size_t)n, 0) == 0)
      p->sent++;
  }
  return NULL;
}

/* Sends posted from a thread while the connection closes: the peer gets
 * them in order up to the close, the rest are dropped, nothing leaks. */
static void posts_race_with_close(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  ws_loop_conn *c = drv_slot_conn(H.l, 0);
  poster po = {H.l, ws_loop_conn_id(c), 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, post_thread, &po), 0);
  h_until(&p.msgs, 20, 100000);
  ws_loop_close(c, 1001, NULL, 0);
  pthread_join(t, NULL);
  for (int i = 0; i < 20 && !sim_peer_closed(H.s, p.fd); i++) h_round();
  assert_int_equal(H.closes, 1);
  assert_int_equal(po.sent, 400);
  assert_true(p.msgs >= 20 && p.msgs <= 400);
  char want[16];
  snprintf(want, sizeof(want), "m%d", p.msgs - 1); /* in order, no gap */
  assert_string_equal(p.last, want);
  h_end();
}


/* ---- the application's side of the API --------------------------------------- */

static int req_mode; /* 0 accept "chat", 1 reject 403, 2 pause */
static ws_loop_conn *req_paused;

static int r_request(ws_loop_conn *c, void *ud, const ws_request *req) {
  (void)ud;
  (void)req;
  if (req_mode == 1) {
    static const ws_kv h[] = {{"X-Why", "origin"}};
    assert_int_equal(ws_loop_reject(c, 403, h, 1, "no", 2), 0);
    return 0;
  }
  if (req_mode == 2) {
    req_paused = c;
    return WS_LOOP_PAUSE; /* answered later */
  }
  ws_accept_params ap = {NULL, NULL, 0};
  assert_int_equal(ws_loop_accept(c, &ap), 0);
  assert_int_equal(ws_loop_accept(c, &ap), WS_ERR_INVALID_STATE);
  return 0;
}

/* on_request answering at once (accept, reject) or later after a pause;
 * sends, pings and broadcasts; the getters; arguments refused. */
static void api_requests_sends_and_getters(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = r_request;
  lc.user_data = &H;
  h_start(&lc, NULL, 0);
  assert_ptr_equal(ws_loop_user_data(H.l), &H);
  peer a, b, c;
  req_mode = 0;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  req_mode = 1;
  h_peer(&b, "/");
  for (int i = 0; i < 10 && !b.status; i++) h_round();
  assert_int_equal(b.status, 403);
  /* the server's side: why, and its answer (kept to the end) */
  h_until(&H.closes, 1, 100);
  assert_int_equal(H.close_err, WS_ERR_REJECTED);
  assert_int_equal(H.close_status, 403);
  req_mode = 2;
  h_peer(&c, "/");
  for (int i = 0; i < 5; i++) h_round();
  assert_non_null(req_paused);
  assert_int_equal(c.opened, 0);
  assert_int_equal(ws_loop_accept(req_paused, NULL), 0);
  ws_loop_resume(req_paused);
  h_until(&c.opened, 1, 10);
  assert_int_equal(ws_loop_conn_count(H.l), 2);
  assert_true(ws_loop_now(H.l) >= T0);

  ws_loop_conn *ca = drv_slot_conn(H.l, 0);
  assert_int_equal(ws_loop_ping(ca, "hi", 2), 0);
  h_until(&a.pings, 1, 10);
  assert_int_equal(ws_loop_pong(ca, "hb", 2), 0);
  assert_int_equal(ws_loop_pong(NULL, NULL, 0), WS_ERR_INVALID_ARGUMENT);
  size_t n = 0;
  assert_int_equal(ws_loop_broadcast(H.l, WS_OP_TEXT, "all", 3, ca, &n), 0);
  assert_int_equal(n, 1); /* everyone but |ca| */
  h_until(&c.msgs, 1, 10);
  assert_string_equal(c.last, "all");
  assert_int_equal(a.msgs, 0);
  assert_int_equal(ws_loop_broadcast(H.l, WS_OP_CLOSE, "x", 1, NULL, &n),
                   WS_ERR_INVALID_ARGUMENT);

  int tag = 5;
  ws_loop_conn_set_user_data(ca, &tag);
  assert_ptr_equal(ws_loop_conn_user_data(ca), &tag);
  assert_ptr_equal(ws_loop_conn_loop(ca), H.l);
  assert_non_null(ws_loop_conn_ws(ca));
  assert_int_equal(ws_loop_conn_pending(ca), 0);
  char peername[64];
  ws_loop_conn_peer(ca, peername, sizeof(peername));
  assert_true(strncmp(peername, "127.0.0.1:", 10) == 0);

  /* NULL and misuse */
  assert_int_equal(ws_loop_send(NULL, WS_OP_TEXT, "x", 1, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_ping(NULL, NULL, 0), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_close(NULL, 1000, NULL, 0), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_accept(NULL, NULL), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_reject(NULL, 400, NULL, 0, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_http_respond(NULL, 200, NULL, 0, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_http_respond(ca, 200, NULL, 0, NULL, 0),
                   WS_ERR_INVALID_STATE);
  assert_int_equal(ws_loop_conn_id(NULL), 0);
  assert_null(ws_loop_conn_loop(NULL));
  assert_null(ws_loop_conn_user_data(NULL));
  assert_null(ws_loop_conn_ws(NULL));
  assert_int_equal(ws_loop_conn_pending(NULL), 0);
  ws_loop_conn_set_user_data(NULL, NULL);
  ws_loop_resume(NULL);
  ws_loop_conn_peer(NULL, peername, sizeof(peername));
  assert_string_equal(peername, "");
  assert_null(ws_loop_user_data(NULL));
  assert_int_equal(ws_loop_now(NULL), 0);
  assert_int_equal(ws_loop_conn_count(NULL), 0);
  assert_int_equal(ws_loop_run(NULL), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_run_once(NULL, 0), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_listen(NULL, NULL, NULL), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_connect(NULL, NULL, NULL), WS_ERR_INVALID_ARGUMENT);
  ws_loop_stop(NULL);
  ws_loop_shutdown(NULL, 0, 0, 0);
  ws_loop_del(NULL);
  h_end();
}

/* A transport that owes output of its own after its first read, as TLS
 * does when a client sends its request before the server's last
 * handshake flight has left (Chromium over TLS 1.2): 51 bytes pending
 * until the loop next flushes (nothing really goes out). */
typedef struct owe_ctx {
  void *inner;
  size_t owed;
  int reads;
} owe_ctx;

static int owe_attach(void *ud, int fd, ws_role role, const char *name,
                      void **pctx) {
  owe_ctx *o = calloc(1, sizeof(*o));
  (void)ud;
  assert_non_null(o);
  int rv = H.l->plain.attach(H.l->plain.user_data, fd, role, name, &o->inner);
  if (rv != 0) free(o);
  *pctx = rv == 0 ? o : NULL;
  return rv;
}

static int owe_read(void *ctx, int fd, uint8_t *buf, size_t cap,
                    size_t *pnread) {
  owe_ctx *o = ctx;
  int rv = H.l->plain.read(o->inner, fd, buf, cap, pnread);
  if (rv == 0 && o->reads++ == 0) o->owed = 51;
  return rv;
}

static int owe_write(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
                     size_t *pnwritten) {
  owe_ctx *o = ctx;
  o->owed = 0;
  return H.l->plain.write(o->inner, fd, iov, iovcnt, pnwritten);
}

static size_t owe_pending(void *ctx) {
  owe_ctx *o = ctx;
  return o->owed + (H.l->plain.pending ? H.l->plain.pending(o->inner) : 0);
}

static int owe_shutdown(void *ctx, int fd) {
  owe_ctx *o = ctx;
  return H.l->plain.shutdown ? H.l->plain.shutdown(o->inner, fd) : 0;
}

static void owe_detach(void *ctx) {
  owe_ctx *o = ctx;
  if (H.l->plain.detach) H.l->plain.detach(o->inner);
  free(o);
}

/* Listens over the owe_* transport, filled in at |tp| (which must outlive
 * the listener), on |*pport| (0: a new port, written back). */
static void owe_listen(ws_loop_transport *tp, uint16_t *pport) {
  memset(tp, 0, sizeof(*tp));
  tp->attach = owe_attach;
  tp->read = owe_read;
  tp->write = owe_write;
  tp->pending = owe_pending;
  tp->shutdown = owe_shutdown;
  tp->detach = owe_detach;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.transport = tp;
  assert_int_equal(ws_loop_listen(H.l, &lp, pport), 0);
}

static int owed_requests;
static ws_loop_conn *owed_conn;

static int owe_request(ws_loop_conn *c, void *ud, const ws_request *req) {
  (void)ud;
  (void)req;
  owed_requests++;
  owed_conn = c;
  return WS_LOOP_PAUSE; /* answered later */
}

/* A request paused while the transport had output pending waits for
 * ws_loop_resume(): it is not delivered again when that output has
 * gone (ws-proxy opened a second upstream for the same Chromium tab). */
static void request_paused_over_pending_output_waits_for_resume(void **s) {
  (void)s;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = owe_request;
  h_start(&lc, NULL, 0);
  ws_loop_transport tp;
  owe_listen(&tp, &H.port); /* the peers' port */
  owed_requests = 0;
  peer p;
  h_peer(&p, "/");
  for (int i = 0; i < 10; i++) { /* a second of rounds, 100 ms each */
    int rv = ws_loop_run_once(H.l, 100);
    assert_true(rv == 0 || rv == 1);
    peer_pump(&p);
  }
  assert_int_equal(owed_requests, 1); /* once, however many rounds */
  assert_int_equal(p.opened, 0);
  assert_int_equal(ws_loop_conn_pending(owed_conn), 0); /* it went */
  assert_int_equal(ws_loop_accept(owed_conn, NULL), 0);
  ws_loop_resume(owed_conn);
  h_until(&p.opened, 1, 10);
  assert_int_equal(owed_requests, 1);
  h_end();
}

static int called;
static void post_fn(ws_loop *l, void *arg) {
  (void)l;
  *(int *)arg += 1;
}

/* Posts of every kind, their budget and their arguments; a stop. */
static void posts_budget_and_kinds(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.max_post_bytes = 64;
  h_start(&lc, NULL, 0);
  peer a;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  uint64_t id = ws_loop_conn_id(drv_slot_conn(H.l, 0));
  char big[65] = {0};
  assert_int_equal(ws_loop_post_send(H.l, id, WS_OP_TEXT, big, 65, 0),
                   WS_ERR_TOO_BIG);
  assert_int_equal(ws_loop_post_send(H.l, id, WS_OP_TEXT, big, 40, 0), 0);
  assert_int_equal(ws_loop_post_send(H.l, id, WS_OP_TEXT, big, 40, 0),
                   WS_ERR_WOULDBLOCK); /* 40 + 40 > 64 until applied */
  assert_int_equal(ws_loop_post_send(H.l, id, WS_OP_PING, big, 1, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_post_send(NULL, id, WS_OP_TEXT, big, 1, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_post_send(H.l, 0, WS_OP_TEXT, "to all", 6, 0), 0);
  called = 0;
  assert_int_equal(ws_loop_post_call(H.l, post_fn, &called), 0);
  assert_int_equal(ws_loop_post_call(H.l, NULL, NULL), WS_ERR_INVALID_ARGUMENT);
  h_until(&a.msgs, 2, 10);
  assert_string_equal(a.last, "to all");
  assert_int_equal(called, 1);
  assert_int_equal(ws_loop_post_close(H.l, id, 999, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_post_close(H.l, id, 4000, "done"), 0);
  h_until(&H.closes, 1, 10);
  assert_int_equal(a.close_code, 4000);
  /* a stop ends ws_loop_run(); a post left unapplied then is freed with
   * the loop, never called */
  ws_loop_stop(H.l);
  assert_int_equal(ws_loop_run(H.l), 0);
  assert_int_equal(ws_loop_post_call(H.l, post_fn, &called), 0);
  h_end();
  assert_int_equal(called, 1);
}

static void only_free(void *p, void *ud) {
  (void)ud;
  free(p);
}

/* Loop and listener arguments. */
static void loop_config_and_listen_errors(void **state) {
  (void)state;
  sim *s = sim_new(T0, 1);
  ws_loop *l = NULL;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.low_water = lc.high_water + 1;
  ws_drv_poller pl = sim_poller(s);
  assert_int_equal(ws_drv_new(&l, &lc, &pl, sim_sys(s)),
                   WS_ERR_INVALID_ARGUMENT);
  ws_loop_config_default(&lc);
  ws_mem partial = {NULL, NULL, NULL, NULL};
  partial.free = only_free;
  lc.mem = &partial;
  pl = sim_poller(s);
  assert_int_equal(ws_drv_new(&l, &lc, &pl, sim_sys(s)),
                   WS_ERR_INVALID_ARGUMENT);
  lc.mem = NULL;
  pl = sim_poller(s);
  assert_int_equal(ws_drv_new(&l, &lc, &pl, sim_sys(s)), 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.host = "example.org"; /* names are not listened on */
  uint16_t port = 0;
  assert_int_equal(ws_loop_listen(l, &lp, &port), WS_ERR_INVALID_ARGUMENT);
  lp.host = NULL;
  lp.port = 7000;
  assert_int_equal(ws_loop_listen(l, &lp, &port), 0);
  assert_int_equal(port, 7000);
  assert_int_equal(ws_loop_listen(l, &lp, &port), WS_LOOP_ERR_IO);
  assert_int_equal(errno, EADDRINUSE);
  assert_string_equal(ws_loop_strerror(WS_LOOP_ERR_IO), "socket error");
  assert_string_equal(ws_loop_strerror(WS_LOOP_ERR_STALLED),
                      "peer stopped reading (write timeout)");
  assert_string_equal(ws_loop_strerror(WS_ERR_PROTO), ws_strerror(WS_ERR_PROTO));
  ws_loop_del(l);
  sim_stats st;
  sim_get_stats(s, &st);
  assert_int_equal(st.open_fds, 0);
  sim_del(s);
}


/* ---- allocation failures ----------------------------------------------------- */

typedef struct failing {
  ws_mem mem;
  long calls, fail_at; /* fail the fail_at-th call (1-based) and after */
  long live;
} failing;

static void *f_malloc(size_t n, void *ud) {
  failing *f = ud;
  if (++f->calls >= f->fail_at) return NULL;
  void *p = malloc(n);
  if (p) f->live++;
  return p;
}
static void *f_realloc(void *p, size_t n, void *ud) {
  failing *f = ud;
  if (++f->calls >= f->fail_at) return NULL;
  void *q = realloc(p, n);
  if (q && !p) f->live++;
  return q;
}
static void f_free(void *p, void *ud) {
  failing *f = ud;
  if (p) f->live--;
  free(p);
}

/* One scenario (a server, a loop client to it, a raw peer that echoes,
 * posts, a close) with every allocation from the |fail_at|-th on
 * failing: whatever breaks, nothing crashes or leaks, and every
 * connection owed an on_close gets one. */
static int failing_refusals;
static int count_refusal(ws_loop *l, void *ud, const ws_loop_refusal *r) {
  (void)l;
  (void)ud;
  assert_non_null(r->reason);
  failing_refusals++;
  return 0;
}

static long run_failing(long fail_at) {
  failing f;
  memset(&f, 0, sizeof(f));
  f.fail_at = fail_at;
  f.mem.user_data = &f;
  f.mem.malloc = f_malloc;
  f.mem.realloc = f_realloc;
  f.mem.free = f_free;
  memset(&H, 0, sizeof(H));
  H.s = sim_new(T0, 11);
  sim_set_block_limit(H.s, 200);
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.mem = &f.mem;
  lc.callbacks.on_open = c_open;
  lc.callbacks.on_message = h_message;
  lc.callbacks.on_close = c_close;
  lc.callbacks.on_http = h_http;
  ws_drv_poller pl = sim_poller(H.s);
  if (ws_drv_new(&H.l, &lc, &pl, sim_sys(H.s)) != 0) {
    sim_del(H.s);
    assert_int_equal(f.live, 0);
    return f.calls;
  }
  /* refusals out of memory are told (at most once per connection) */
  failing_refusals = 0;
  ws_loop_set_on_refused(H.l, count_refusal, NULL);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  int listening = ws_loop_listen(H.l, &lp, &H.port) == 0;
  cli_opened = cli_closed = 0;
  peer a;
  if (listening) {
    ws_loop_connect_params cp;
    memset(&cp, 0, sizeof(cp));
    cp.host = "127.0.0.1";
    cp.port = H.port;
    cp.user_data = &cli_opened;
    ws_loop_connect(H.l, &cp, NULL);
    h_peer(&a, "/");
    for (int i = 0; i < 30 && !a.closed_at; i++) {
      if (a.opened == 1 && a.msgs == 0 && i == 5) peer_send(&a, "echo");
      if (i == 8) ws_loop_post_send(H.l, 0, WS_OP_TEXT, "post", 4, 0);
      if (i == 12 && a.ws) {
        ws_conn_close(a.ws, 1000, NULL, 0);
        peer_pump(&a);
      }
      int rv = ws_loop_run_once(H.l, 100);
      if (rv != 0) break;
      peer_pump(&a);
    }
  }
  ws_loop_del(H.l);
  for (size_t i = 0; i < H.npeers; i++) peer_end(H.peers[i]);
  assert_int_equal(H.dup_close, 0);
  assert_int_equal(cli_closed, cli_opened ? 1 : cli_closed);
  sim_stats st;
  sim_get_stats(H.s, &st);
  assert_int_equal(st.open_fds, 0);
  assert_true(failing_refusals <= (int)st.accepts); /* once each at most */
  sim_del(H.s);
  assert_int_equal(f.live, 0);
  if (fail_at == LONG_MAX) { /* the whole scenario ran */
    assert_int_equal(failing_refusals, 0);
    assert_int_equal(a.msgs, 2);
    assert_int_equal(cli_opened, 1);
    assert_int_equal(a.close_code, 1000);
  }
  return f.calls;
}

static void failing_allocator_every_call(void **state) {
  (void)state;
  long total = run_failing(LONG_MAX);
  for (long n = 1; n <= total; n++) run_failing(n);
}


/* An echo costs one recv() per message read, not two: a read shorter
 * than the buffer emptied the socket, so the loop does not ask again for
 * an EAGAIN (the echo-server's recv calls per message). */
static void one_recv_per_message(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  sim_stats before = h_stats();
  for (int i = 0; i < 10; i++) {
    peer_send(&p, "ping-pong");
    h_until(&p.msgs, i + 1, 10);
  }
  sim_stats after = h_stats();
  assert_int_equal(after.recvs - before.recvs, 10);
  h_end();
}

/* ---- budgets and caps (h-budget) ------------------------------------------
 * The loop-wide memory budget, the listeners' caps, the Origin allowlist,
 * the deflate-context cap, slow readers and unfinished messages, each at
 * its edge: one below, at, one above. */

/* A peer of the test's own with an Origin header and a deflate offer. */
static peer *b_peer(peer *p, const char *origin, int pmd) {
  memset(p, 0, sizeof(*p));
  p->s = H.s;
  p->rng = 43;
  p->fd = sim_dial(H.s, H.port);
  assert_true(p->fd >= 0);
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.rand = peer_rand;
  cfg.rand_user_data = &p->rng;
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.handshake_timeout_ms = cfg.ping_interval_ms = 0;
  cfg.pong_timeout_ms = cfg.close_timeout_ms = 0;
  cfg.pmd.enable = (uint8_t)pmd;
  assert_int_equal(ws_conn_new(&p->ws, &cfg, NULL), 0);
  ws_client_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "h";
  cp.path = "/";
  cp.origin = origin;
  assert_int_equal(ws_conn_connect(p->ws, &cp), 0);
  assert_true(H.npeers < MAXPEERS);
  H.peers[H.npeers++] = p;
  peer_pump(p);
  return p;
}

/* Counts messages without echoing them (the echo's queue would be
 * charged to the budget too). */
static int b_count(ws_loop_conn *c, void *ud, const ws_event *ev) {
  (void)c;
  (void)ud;
  (void)ev;
  H.msgs++;
  return 0;
}

/* A 64 KiB message in 4 fragments under |budget|; returns the peer's
 * close code (0 if the message arrived) and the loop's peak. */
static uint16_t b_budget_run(uint64_t budget, uint64_t *ppeak) {
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.memory_budget = budget;
  h_start(&lc, NULL, 0);
  H.l->cfg.callbacks.on_message = b_count;
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  static uint8_t chunk[16384];
  memset(chunk, 'z', sizeof(chunk));
  for (int i = 0; i < 4; i++) {
    if (ws_conn_send(p.ws, WS_OP_BINARY, chunk, sizeof(chunk),
                     i < 3 ? WS_SEND_MORE : 0) != 0)
      break; /* closed already */
    peer_pump(&p);
    h_round();
  }
  for (int i = 0; i < 10 && !H.msgs && !p.close_code; i++)
    h_round();
  uint16_t code = p.close_code;
  if (code) {
    h_until(&H.closes, 1, 10);
    assert_int_equal(H.close_err, WS_LOOP_ERR_BUDGET);
    assert_int_equal(H.sent_code, 1013);
  } else {
    assert_int_equal(H.msgs, 1);
  }
  ws_loop_memory(H.l, NULL, ppeak);
  h_end();
  return code;
}

/* A connection whose input would take the loop over memory_budget is
 * the one refused: close 1013 "try again later" (RFC 6455 7.4.1; the
 * code is in the IANA registry, RFC 6455 11.7). */
static void budget_refuses_the_connection_that_asks(void **state) {
  (void)state;
  uint64_t peak = 0, p2 = 0;
  assert_int_equal(b_budget_run(0, &peak), 0); /* no budget: the peak */
  assert_true(peak > 65536);
  assert_int_equal(b_budget_run(peak + 1, &p2), 0);
  assert_int_equal(p2, peak);
  assert_int_equal(b_budget_run(peak, &p2), 0); /* exactly the budget */
  assert_int_equal(b_budget_run(peak - 1, &p2), 1013);
  assert_true(p2 <= peak - 1);
}

/* Over 90% of the budget new requests get 503 (the edge of the mark),
 * and plain HTTP too. */
static void budget_high_mark_refuses_new_requests(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.memory_budget = 1000;
  ws_loop l;
  memset(&l, 0, sizeof(l));
  l.cfg = lc;
  l.mem_now = 899;
  assert_false(budget_high(&l));
  l.mem_now = 900;
  assert_false(budget_high(&l));
  l.mem_now = 901;
  assert_true(budget_high(&l));
  l.cfg.memory_budget = 0;
  assert_false(budget_high(&l));
  /* in a loop: a budget with room for a connection, but over the mark */
  ws_loop_config_default(&lc);
  lc.read_size = 256u << 10;
  h_start(&lc, NULL, 0);
  peer a, b;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  uint64_t now = 0;
  ws_loop_memory(H.l, &now, NULL);
  H.l->cfg.memory_budget = now + 16384;
  assert_true(budget_high(H.l)); /* 90% of it is below |now| */
  h_peer(&b, "/");
  for (int i = 0; i < 10 && !b.status; i++)
    h_round();
  assert_int_equal(b.status, 503);
  assert_int_equal(b.opened, 0);
  h_end();
}

/* Over 90% of the budget, a connection whose output is over high_water
 * gets no more (WS_ERR_WOULDBLOCK, skipped by broadcasts): the rest is
 * kept for the connections that read. */
static void budget_holds_back_congested_connections(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.ping_interval_ms = 0;
  cfg.delivery = WS_DELIVER_MESSAGE;
  h_start(NULL, &cfg, 0);
  peer a, b;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  h_peer(&b, "/");
  h_until(&b.opened, 1, 10);
  ws_loop_conn *ca = drv_slot_conn(H.l, 0), *cb = drv_slot_conn(H.l, 1);
  a.mute = 1;
  sim_set_rcvbuf(H.s, a.fd, 0);
  static uint8_t big[2u << 20];
  assert_int_equal(ws_loop_send(ca, WS_OP_BINARY, big, sizeof(big), 0), 0);
  h_round();
  assert_true(ca->flags & F_CONGESTED);
  uint64_t now = 0;
  ws_loop_memory(H.l, &now, NULL);
  H.l->cfg.memory_budget = now + 65536; /* over 90% used */
  assert_true(budget_high(H.l));
  assert_int_equal(ws_loop_send(ca, WS_OP_TEXT, "x", 1, 0), WS_ERR_WOULDBLOCK);
  assert_int_equal(ws_loop_send(cb, WS_OP_TEXT, "y", 1, 0), 0);
  size_t n = 0;
  assert_int_equal(ws_loop_broadcast(H.l, WS_OP_TEXT, "z", 1, NULL, &n), 0);
  assert_int_equal(n, 1);
  H.l->cfg.memory_budget = now * 2; /* under the mark */
  assert_false(budget_high(H.l));
  assert_int_equal(ws_loop_send(ca, WS_OP_TEXT, "x", 1, 0), 0);
  h_end();
}

static void b_listen(const ws_loop_listen_params *lp) {
  ws_loop_listen_params p = *lp;
  assert_int_equal(ws_loop_listen(H.l, &p, &H.port), 0);
}

/* max_conns, max_conns_per_ip, max_handshakes: the first N are served,
 * the next gets 503 (RFC 7231 6.6.4) with Retry-After; over a transport
 * the connection is closed at once. */
static void listener_caps_at_their_edges(void **state) {
  (void)state;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  static peer ps[8];
  /* max_conns 2 */
  h_start(NULL, NULL, 0);
  lp.max_conns = 2;
  b_listen(&lp);
  h_peer(&ps[0], "/");
  h_until(&ps[0].opened, 1, 10); /* one below */
  h_peer(&ps[1], "/");
  h_until(&ps[1].opened, 1, 10); /* at */
  h_peer(&ps[2], "/");
  for (int i = 0; i < 10 && !ps[2].status; i++)
    h_round();
  assert_int_equal(ps[2].status, 503); /* one above */
  /* one leaves: room again */
  sim_close(H.s, ps[0].fd);
  ps[0].fd = -1;
  h_until(&H.closes, 1, 10);
  h_peer(&ps[3], "/");
  h_until(&ps[3].opened, 1, 10);
  h_end();
  /* max_conns_per_ip 1 (the simulation's peers all are 127.0.0.1) */
  h_start(NULL, NULL, 0);
  memset(&lp, 0, sizeof(lp));
  lp.max_conns_per_ip = 1;
  b_listen(&lp);
  h_peer(&ps[0], "/");
  h_until(&ps[0].opened, 1, 10);
  h_peer(&ps[1], "/");
  for (int i = 0; i < 10 && !ps[1].status; i++)
    h_round();
  assert_int_equal(ps[1].status, 503);
  h_end();
  /* max_handshakes 1: a connection that sends nothing holds the one */
  h_start(NULL, NULL, 0);
  memset(&lp, 0, sizeof(lp));
  lp.max_handshakes = 1;
  b_listen(&lp);
  int mute = sim_dial(H.s, H.port);
  h_round();
  h_peer(&ps[0], "/");
  for (int i = 0; i < 10 && !ps[0].status; i++)
    h_round();
  assert_int_equal(ps[0].status, 503);
  sim_close(H.s, mute);
  h_round();
  h_peer(&ps[1], "/");
  h_until(&ps[1].opened, 1, 10);
  h_peer(&ps[2], "/"); /* open ones do not count */
  h_until(&ps[2].opened, 1, 10);
  h_end();
  /* over a transport (TLS): closed at once, no handshake work */
  h_start(NULL, NULL, 0);
  memset(&lp, 0, sizeof(lp));
  lp.max_conns = 1;
  lp.transport = &H.l->plain;
  b_listen(&lp);
  h_peer(&ps[0], "/");
  h_until(&ps[0].opened, 1, 10);
  int fd = sim_dial(H.s, H.port);
  h_round();
  assert_true(sim_peer_closed(H.s, fd));
  sim_close(H.s, fd);
  h_end();
}

static uint8_t trickle_buf[6144];

static void trickle(sim *s, void *arg) {
  peer *p = arg;
  sim_recv(s, p->fd, trickle_buf, sizeof(trickle_buf));
}

/* A reader taking 6 KiB every 20 s: with its queue above low_water it
 * is dropped at the write timeout (30 s) although bytes do move; under
 * low_water the same trickle is progress and it stays. */
static void slow_reader_trickle_dropped_above_low_water(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.ping_interval_ms = 0;
  cfg.delivery = WS_DELIVER_MESSAGE;
  static uint8_t big[1u << 20];
  for (int round = 0; round < 2; round++) {
    h_start(NULL, &cfg, 0);
    peer p;
    h_peer(&p, "/");
    h_until(&p.opened, 1, 10);
    p.mute = 1;
    sim_set_rcvbuf(H.s, p.fd, sizeof(trickle_buf));
    uint64_t t = sim_now(H.s);
    for (int k = 1; k <= 10; k++)
      sim_at(H.s, t + 20000u * (unsigned)k, trickle, &p);
    /* above: 1 MiB queued (low_water 256 KiB); under: 100 KiB */
    size_t n = round == 0 ? sizeof(big) : 100u << 10;
    assert_int_equal(ws_loop_send(drv_slot_conn(H.l, 0), WS_OP_BINARY, big, n, 0), 0);
    if (round == 0) {
      h_until(&H.closes, 1, 50);
      assert_int_equal(H.close_err, WS_LOOP_ERR_STALLED);
      assert_int_equal(H.close_at, t + 30000);
    } else {
      while (sim_now(H.s) < t + 150000)
        h_round();
      assert_int_equal(H.closes, 0);
    }
    h_end();
  }
}

static void refill(sim *s, void *arg) {
  static uint8_t buf[16384];
  peer *p = arg;
  sim_recv(s, p->fd, buf, sizeof(buf));
}

/* min_drain_rate: a reader under low_water that reads 16 KiB once per
 * 32 s window drains 512 B/s: kept with a minimum of 511 or 512 B/s,
 * dropped at the window's end with 513. */
static void min_drain_rate_at_its_edge(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.ping_interval_ms = 0;
  static const uint32_t rates[] = {511, 512, 513};
  static uint8_t msg[100u << 10];
  for (int k = 0; k < 3; k++) {
    ws_loop_config lc;
    ws_loop_config_default(&lc);
    lc.write_timeout_ms = 32000;
    lc.min_drain_rate = rates[k];
    h_start(&lc, &cfg, 0);
    peer p;
    h_peer(&p, "/");
    h_until(&p.opened, 1, 10);
    p.mute = 1;
    sim_set_rcvbuf(H.s, p.fd, 16384);
    uint64_t t = sim_now(H.s);
    sim_at(H.s, t + 16000, refill, &p);
    assert_int_equal(
        ws_loop_send(drv_slot_conn(H.l, 0), WS_OP_BINARY, msg, sizeof(msg), 0), 0);
    while (sim_now(H.s) < t + 33000) /* waits of 1 s at most */
      assert_int_equal(ws_loop_run_once(H.l, 1000), 0);
    if (k < 2) {
      assert_int_equal(H.closes, 0);
    } else {
      assert_int_equal(H.closes, 1);
      assert_int_equal(H.close_at, t + 32000);
      assert_int_equal(H.close_err, WS_LOOP_ERR_STALLED);
    }
    h_end();
  }
}

static void finish_fragment(sim *s, void *arg) {
  peer *p = arg;
  (void)s;
  assert_int_equal(ws_conn_send(p->ws, WS_OP_TEXT, "end", 3, 0), 0);
  peer_pump(p);
}

/* message_timeout_ms (60 s): a message finished at 59.999 s is
 * delivered; one still unfinished at 60 s is refused with 1008 (RFC
 * 6455 7.4.1, policy), counted from its first frame. */
static void message_timeout_at_its_edge(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  h_start(NULL, &cfg, 0);
  H.l->cfg.callbacks.on_message = b_count;
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  uint64_t t = sim_now(H.s);
  assert_int_equal(ws_conn_send(p.ws, WS_OP_TEXT, "start", 5, WS_SEND_MORE), 0);
  peer_pump(&p);
  sim_at(H.s, t + 59999, finish_fragment, &p);
  h_until(&H.msgs, 1, 50);
  assert_int_equal(sim_now(H.s), t + 59999);
  assert_int_equal(H.closes, 0);
  t = sim_now(H.s);
  assert_int_equal(ws_conn_send(p.ws, WS_OP_TEXT, "again", 5, WS_SEND_MORE), 0);
  peer_pump(&p);
  h_until(&H.closes, 1, 50);
  assert_int_equal(p.close_code, 1008);
  assert_int_equal(p.closed_at, t + 60000);
  assert_int_equal(H.close_err, WS_LOOP_ERR_SLOW_MESSAGE);
  h_end();
}

static int b_origin(const char *origin, const char *host,
                    const char *const *list, size_t n, uint32_t flags) {
  ws_request req;
  memset(&req, 0, sizeof(req));
  if (origin) {
    req.origin.base = (const uint8_t *)origin;
    req.origin.len = strlen(origin);
  }
  req.host.base = (const uint8_t *)host;
  req.host.len = strlen(host);
  return ws_request_origin_allowed(&req, list, n, flags);
}

/* RFC 6455 10.2: the Origin header tells a server which page opened the
 * connection; a server for its own pages refuses the others with 403. */
static void origin_allowlist(void **state) {
  (void)state;
  const uint32_t same = WS_ORIGIN_SAME_HOST;
  assert_true(b_origin("http://h", "h", NULL, 0, same));
  assert_true(b_origin("http://H:80", "h", NULL, 0, same));
  assert_true(b_origin("https://h", "h:443", NULL, 0, same));
  assert_true(b_origin("http://h:8080", "h:8080", NULL, 0, same));
  assert_false(b_origin("http://h:8080", "h", NULL, 0, same));
  assert_false(b_origin("http://h:8081", "h:8080", NULL, 0, same));
  assert_false(b_origin("http://evil.example", "h", NULL, 0, same));
  assert_false(b_origin("http://h.evil.example", "h", NULL, 0, same));
  assert_false(b_origin("null", "h", NULL, 0, same));
  assert_true(b_origin(NULL, "h", NULL, 0, same)); /* not a browser */
  assert_false(b_origin(NULL, "h", NULL, 0, same | WS_ORIGIN_REQUIRE));
  static const char *const sub[] = {"https://*.example.com"};
  assert_true(b_origin("https://a.example.com", "x", sub, 1, 0));
  assert_true(b_origin("https://a.b.example.com", "x", sub, 1, 0));
  assert_false(b_origin("https://example.com", "x", sub, 1, 0));
  assert_false(b_origin("https://aexample.com", "x", sub, 1, 0));
  assert_false(b_origin("http://a.example.com", "x", sub, 1, 0));
  assert_false(b_origin("https://a.example.com:8443", "x", sub, 1, 0));
  static const char *const hostpat[] = {"*.example.com", "exact.org"};
  assert_true(b_origin("http://a.example.com:99", "x", hostpat, 2, 0));
  assert_true(b_origin("https://exact.org", "x", hostpat, 2, 0));
  assert_false(b_origin("https://sub.exact.org", "x", hostpat, 2, 0));
  static const char *const exact[] = {"https://chat.example.com:8443", "null"};
  assert_true(b_origin("HTTPS://Chat.Example.com:8443", "x", exact, 2, 0));
  assert_false(b_origin("https://chat.example.com", "x", exact, 2, 0));
  assert_true(b_origin("null", "x", exact, 2, 0));
  static const char *const any[] = {"*"};
  assert_true(b_origin("http://anything", "x", any, 1, 0));
  assert_false(b_origin("garbage", "x", NULL, 0, same));
  /* in the loop: 403 before on_request, 101 for the same host */
  h_start(NULL, NULL, 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.origin_flags = WS_ORIGIN_SAME_HOST;
  lp.origins = exact;
  lp.norigins = 2;
  b_listen(&lp);
  static peer ps[3];
  b_peer(&ps[0], "http://h", 0);
  h_until(&ps[0].opened, 1, 10);
  b_peer(&ps[1], "http://evil.example", 0);
  for (int i = 0; i < 10 && !ps[1].status; i++)
    h_round();
  assert_int_equal(ps[1].status, 403);
  b_peer(&ps[2], "https://chat.example.com:8443", 0);
  h_until(&ps[2].opened, 1, 10);
  assert_int_equal(H.opens, 2);
  lp.origins = NULL; /* a count without a list */
  assert_int_equal(ws_loop_listen(H.l, &lp, NULL), WS_ERR_INVALID_ARGUMENT);
  assert_string_equal(ws_loop_strerror(WS_LOOP_ERR_BUDGET),
                      "over the loop's memory budget");
  assert_string_equal(ws_loop_strerror(WS_LOOP_ERR_SLOW_MESSAGE),
                      "message not finished in time");
  h_end();
}

/* max_pmd_context: RFC 7692 7.1.1, the server may ask both sides not to
 * keep a context; beyond the cap, new connections are told to. */
static void pmd_context_cap(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.pmd.enable = 1;
  h_start(NULL, &cfg, 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = &cfg;
  lp.max_pmd_context = 1;
  b_listen(&lp);
  static peer ps[3];
  ws_pmd_params pp;
  b_peer(&ps[0], NULL, 1);
  h_until(&ps[0].opened, 1, 10);
  ws_conn_pmd(ps[0].ws, &pp);
  assert_true(pp.enabled);
  assert_false(pp.server_no_context_takeover);
  assert_false(pp.client_no_context_takeover);
  b_peer(&ps[1], NULL, 1); /* over the cap */
  h_until(&ps[1].opened, 1, 10);
  ws_conn_pmd(ps[1].ws, &pp);
  assert_true(pp.enabled);
  assert_true(pp.server_no_context_takeover);
  assert_true(pp.client_no_context_takeover);
  sim_close(H.s, ps[0].fd); /* the holder leaves */
  ps[0].fd = -1;
  h_until(&H.closes, 1, 10);
  b_peer(&ps[2], NULL, 0); /* no deflate: gives the slot back at open */
  h_until(&ps[2].opened, 1, 10);
  static peer late;
  b_peer(&late, NULL, 1);
  h_until(&late.opened, 1, 10);
  ws_conn_pmd(late.ws, &pp);
  assert_false(pp.server_no_context_takeover);
  h_end();
}

/* ---- end of budgets and caps (h-budget) -----------------------------------
 */

/* ---- clients that come back (ws_loop_connect_params.reconnect) ----------- */

/* The loop's own client with |reconnect|, against the loop's own
 * listener: each close the client sees is recorded with the delay it
 * announced; the next open must come exactly that long after. */
#define RC_MAX 32
static struct {
  ws_loop_conn *srv; /* the server side of the current connection */
  int opens, closes, refuse, stop_in_close;
  uint64_t open_at[RC_MAX], close_at[RC_MAX];
  uint32_t delay[RC_MAX];
  int has_delay[RC_MAX], err[RC_MAX];
  uint16_t code[RC_MAX];
} RC;

static int rc_request(ws_loop_conn *c, void *ud, const ws_request *req) {
  (void)ud;
  (void)req;
  if (RC.refuse) ws_loop_reject(c, RC.refuse, NULL, 0, NULL, 0);
  return 0;
}

static int rc_open(ws_loop_conn *c, void *ud) {
  if (ud != &RC) {
    RC.srv = c;
    return 0;
  }
  if (RC.opens < RC_MAX) RC.open_at[RC.opens] = ws_loop_now(H.l);
  RC.opens++;
  return 0;
}

static int rc_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  if (ud != &RC) {
    if (c == RC.srv) RC.srv = NULL;
    return 0;
  }
  int i = RC.closes++;
  assert_true(i < RC_MAX);
  RC.close_at[i] = ws_loop_now(H.l);
  RC.code[i] = in->code;
  RC.err[i] = in->error;
  if (RC.stop_in_close) ws_loop_conn_reconnect_stop(c);
  RC.has_delay[i] = ws_loop_conn_reconnect_delay(c, &RC.delay[i]);
  return 0;
}

static void rc_start(const ws_loop_reconnect *rp, uint16_t port) {
  memset(&H, 0, sizeof(H));
  memset(&RC, 0, sizeof(RC));
  H.s = sim_new(T0, 5);
  sim_set_block_limit(H.s, 2000);
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = rc_request;
  lc.callbacks.on_open = rc_open;
  lc.callbacks.on_message = h_message;
  lc.callbacks.on_close = rc_close;
  ws_drv_poller pl = sim_poller(H.s);
  assert_int_equal(ws_drv_new(&H.l, &lc, &pl, sim_sys(H.s)), 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  assert_int_equal(ws_loop_listen(H.l, &lp, &H.port), 0);
  static const char *const protos[] = {"chat"};
  static const ws_kv hdr[] = {{"X-Try", "1"}};
  char host[16]; /* copied by the loop: gone before the reconnects */
  snprintf(host, sizeof(host), "127.0.0.1");
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = host;
  cp.port = port ? port : H.port;
  cp.request.protocols = protos;
  cp.request.nprotocols = 1;
  cp.request.headers = hdr;
  cp.request.nheaders = 1;
  cp.user_data = &RC;
  cp.reconnect = rp;
  assert_int_equal(ws_loop_connect(H.l, &cp, NULL), 0);
  memset(host, 'x', sizeof(host) - 1);
}

/* Runs the loop for |ms| of simulated time. */
static void rc_run_for(uint64_t ms) {
  uint64_t end = sim_now(H.s) + ms;
  while (sim_now(H.s) < end) {
    uint64_t left = end - sim_now(H.s);
    int rv = ws_loop_run_once(H.l, left > 1000 ? 1000 : (int)left);
    assert_true(rv == 0 || rv == 1);
  }
}

static void rc_until(const int *flag, int want, uint64_t max_ms) {
  uint64_t end = sim_now(H.s) + max_ms;
  while (*flag < want && sim_now(H.s) <= end) {
    int rv = ws_loop_run_once(H.l, 50);
    assert_true(rv == 0 || rv == 1);
  }
  assert_true(*flag >= want);
}

/* The next attempt starts when announced, to the millisecond (the
 * simulated connect and handshake take no time). */
static void rc_check_gap(int i) {
  assert_true(RC.has_delay[i]);
  assert_true(RC.open_at[i + 1] >= RC.close_at[i] + RC.delay[i]);
  assert_true(RC.open_at[i + 1] <= RC.close_at[i] + RC.delay[i] + 1);
}

/* The server restarts (1012) five times right after each open: the
 * bound doubles from 1 s to the 8 s cap; a connection that then stays up
 * 6 s (over reset_after_ms) brings it back to 1 s; a normal close (1000)
 * ends the reconnecting, as does a 403 answer. */
static void reconnect_backoff_full_jitter_and_reset(void **state) {
  (void)state;
  ws_loop_reconnect rp = {1000, 8000, 200, 5000, 0};
  rc_start(&rp, 0);
  rc_until(&RC.opens, 1, 100);
  static const uint32_t bound[] = {1000, 2000, 4000, 8000, 8000};
  uint32_t sum = 0;
  for (int i = 0; i < 5; i++) {
    assert_non_null(RC.srv);
    assert_int_equal(ws_loop_close(RC.srv, 1012, "restart", 7), 0);
    rc_until(&RC.closes, i + 1, 1000);
    assert_int_equal(RC.code[i], 1012);
    assert_true(RC.has_delay[i]);
    assert_true(RC.delay[i] <= bound[i]);
    sum += RC.delay[i];
    rc_until(&RC.opens, i + 2, bound[i] + 100);
    rc_check_gap(i);
  }
  assert_true(sum > 0); /* jitter, not always 0 */
  rc_run_for(6000);     /* stays up over reset_after_ms */
  assert_int_equal(RC.closes, 5);
  ws_loop_close(RC.srv, 1001, "going away", 10);
  rc_until(&RC.closes, 6, 1000);
  assert_true(RC.has_delay[5] && RC.delay[5] <= 1000); /* reset */
  rc_until(&RC.opens, 7, 1100);
  rc_check_gap(5);
  /* a normal close: no further attempt, however long we wait */
  ws_loop_close(RC.srv, 1000, NULL, 0);
  rc_until(&RC.closes, 7, 1000);
  assert_int_equal(RC.code[6], 1000);
  assert_false(RC.has_delay[6]);
  rc_run_for(120000);
  assert_int_equal(RC.opens, 7);
  h_end();
}

/* Connect failures: refused every time; bounds 100, 300, 900 then the
 * 1000 cap; after max_attempts (6) the client gives up. A 5xx answer is
 * retried, a 4xx one is not. */
static void reconnect_on_refused_connects_and_statuses(void **state) {
  (void)state;
  ws_loop_reconnect rp = {100, 1000, 300, 5000, 6};
  rc_start(&rp, 1); /* nobody listens on port 1 */
  static const uint32_t bound[] = {100, 300, 900, 1000, 1000, 1000};
  rc_until(&RC.closes, 1, 100);
  for (int i = 0; i < 6; i++) {
    rc_until(&RC.closes, i + 1, 2000);
    assert_int_equal(RC.err[i], WS_LOOP_ERR_IO);
    if (i < 5) {
      assert_true(RC.has_delay[i]);
      assert_true(RC.delay[i] <= bound[i]);
    }
  }
  for (int i = 0; i < 5; i++) {
    assert_true(RC.close_at[i + 1] >= RC.close_at[i] + RC.delay[i]);
    assert_true(RC.close_at[i + 1] <= RC.close_at[i] + RC.delay[i] + 1);
  }
  assert_false(RC.has_delay[5]); /* the sixth failure in a row: done */
  rc_run_for(10000);
  assert_int_equal(RC.closes, 6);
  assert_int_equal(RC.opens, 0);
  h_end();

  ws_loop_reconnect rp2 = {100, 1000, 200, 5000, 0};
  rc_start(&rp2, 0);
  RC.refuse = 503;
  rc_until(&RC.closes, 1, 100);
  assert_true(RC.has_delay[0]); /* 503: try again */
  RC.refuse = 403;
  rc_until(&RC.closes, 2, 1000);
  assert_false(RC.has_delay[1]); /* 403: no */
  rc_run_for(10000);
  assert_int_equal(RC.closes, 2);
  h_end();

  rc_start(&rp2, 0); /* the loop deleted while an attempt waits */
  RC.refuse = 503;
  rc_until(&RC.closes, 1, 100);
  assert_true(RC.has_delay[0]);
  h_end();

  rc_start(&rp2, 0); /* stopped from on_close */
  RC.refuse = 503;
  RC.stop_in_close = 1;
  rc_until(&RC.closes, 1, 100);
  assert_false(RC.has_delay[0]);
  rc_run_for(10000);
  assert_int_equal(RC.closes, 1);
  /* a first attempt that fails at once is the caller's to hear of */
  ws_loop_connect_params bad;
  memset(&bad, 0, sizeof(bad));
  bad.host = "no-such-host.invalid";
  bad.port = 80;
  bad.reconnect = &rp2;
  assert_int_equal(ws_loop_connect(H.l, &bad, NULL), WS_LOOP_ERR_RESOLVE);
  bad.host = NULL;
  assert_int_equal(ws_loop_connect(H.l, &bad, NULL), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_conn_reconnect_delay(NULL, NULL), 0);
  ws_loop_conn_reconnect_stop(NULL);
  h_end();

  rc_start(&rp2, 0); /* stopped while open: its end is the last */
  rc_until(&RC.opens, 1, 100);
  ws_loop_conn *cli = NULL;
  for (uint32_t i = 0; i < H.l->nslots; i++)
    if (drv_slot_conn(H.l, i) && drv_slot_conn(H.l, i) != RC.srv) cli = drv_slot_conn(H.l, i);
  assert_non_null(cli);
  assert_int_equal(ws_loop_conn_reconnect_delay(cli, NULL), 0); /* open */
  ws_loop_conn_reconnect_stop(cli);
  ws_loop_close(RC.srv, 1012, NULL, 0);
  rc_until(&RC.closes, 1, 1000);
  assert_false(RC.has_delay[0]);
  rc_run_for(10000);
  assert_int_equal(RC.opens, 1);
  h_end();
}

/* ws_loop_conn_pause_reading(): a paused connection's input waits in the
 * socket until it is resumed, a resume undone in the same round keeps it
 * paused; ws_loop_close_listeners(): nobody can connect any more, the
 * open connection goes on. */
static ws_loop_conn *the_server_conn(void) {
  for (uint32_t i = 0; i < H.l->nslots; i++)
    if (drv_slot_conn(H.l, i)) return drv_slot_conn(H.l, i);
  return NULL;
}

static void pr_rounds(peer *p, int n) {
  for (int i = 0; i < n; i++) {
    int rv = ws_loop_run_once(H.l, 100);
    assert_true(rv == 0 || rv == 1);
    peer_pump(p);
  }
}

/* A message handler closes every listener while, in the same batch of
 * ready descriptors, a listener made after the connection (so later in
 * the batch) has a connection waiting: that entry is dropped, not used
 * after the listener was freed (ASan and valgrind check the rest). */
static int closing_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  ws_loop_close_listeners(ws_loop_conn_loop(c));
  return h_message(c, ud, ev);
}

static void close_listeners_mid_batch(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  uint16_t port2 = 0;
  assert_int_equal(ws_loop_listen(H.l, &lp, &port2), 0);
  H.l->cfg.callbacks.on_message = closing_message;
  peer_send(&p, "bye, listeners");
  int fd = sim_dial(H.s, port2); /* ready in the same wait */
  assert_true(fd >= 0);
  pr_rounds(&p, 3);
  assert_int_equal(H.msgs, 1);
  assert_string_equal(p.last, "bye, listeners");
  assert_true(sim_peer_closed(H.s, fd)); /* never accepted */
  sim_close(H.s, fd);
  assert_int_equal(sim_dial(H.s, port2), -1);
  h_end();
}

/* The listeners are closed while a connection is in its opening
 * handshake: it forgets its listener (and the listener's handshake count)
 * and still opens. */
static void close_listeners_mid_handshake(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  int fd = sim_dial(H.s, H.port);
  assert_true(fd >= 0);
  h_round(); /* accepted, nothing read yet */
  ws_loop_close_listeners(H.l);
  static const char head[] =
      "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  sim_send(H.s, fd, head, sizeof(head) - 1);
  char got[160] = {0};
  size_t n = 0;
  for (int i = 0; i < 10 && n < 12; i++) {
    h_round();
    n += sim_recv(H.s, fd, got + n, sizeof(got) - 1 - n);
  }
  /* RFC 6455 4.2.2: the 101 with the accept value of the RFC's example */
  assert_memory_equal(got, "HTTP/1.1 101", 12);
  assert_non_null(strstr(got, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
  sim_close(H.s, fd);
  h_end();
}

/* The listeners are closed in a round in which connections ended before
 * (their peers hung up in the same wait): those wait in the graveyard
 * and are freed through the loop their listener named, the listener
 * itself freed by then (ASan and valgrind check it). Peers on both sides
 * of the one whose message closes the listeners, whichever order the
 * ready ones come in. */
static void close_listeners_after_ends(void **state) {
  (void)state;
  peer a, b, c;
  h_start_three(&a, &b, &c);
  H.l->cfg.callbacks.on_message = closing_message;
  peer_end(&a);
  peer_send(&b, "bye, listeners");
  peer_end(&c);
  h_until(&H.closes, 2, 20);
  assert_int_equal(H.msgs, 1);
  assert_null(H.l->listeners);
  assert_int_equal(H.l->nconns, 1);
  h_end();
}

static void pause_reading_and_close_listeners(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer p;
  h_peer(&p, "/");
  h_until(&p.opened, 1, 10);
  ws_loop_conn *c = the_server_conn();
  assert_non_null(c);
  assert_int_equal(ws_loop_conn_pause_reading(NULL, 1),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_conn_pause_reading(c, 1), 0);
  assert_int_equal(ws_loop_conn_pause_reading(c, 1), 0); /* again: fine */
  peer_send(&p, "held");
  pr_rounds(&p, 5);
  assert_int_equal(H.msgs, 0);
  assert_true(sim_pending(H.s, p.fd) == 0);
  assert_int_equal(ws_loop_conn_pause_reading(c, 0), 0);
  pr_rounds(&p, 3);
  assert_int_equal(H.msgs, 1);
  assert_string_equal(p.last, "held");
  /* resumed and paused again before the loop got to it: still paused */
  ws_loop_conn_pause_reading(c, 1);
  pr_rounds(&p, 1);
  ws_loop_conn_pause_reading(c, 0);
  ws_loop_conn_pause_reading(c, 1);
  peer_send(&p, "later");
  pr_rounds(&p, 5);
  assert_int_equal(H.msgs, 1);
  ws_loop_conn_pause_reading(c, 0);
  ws_loop_conn_pause_reading(c, 0); /* not paused: harmless */
  pr_rounds(&p, 3);
  assert_int_equal(H.msgs, 2);
  assert_string_equal(p.last, "later");
  ws_loop_close_listeners(H.l);
  ws_loop_close_listeners(NULL);
  assert_int_equal(sim_dial(H.s, H.port), -1);
  peer_send(&p, "still");
  pr_rounds(&p, 3);
  assert_int_equal(H.msgs, 3);
  h_end();
}


/* ws_loop_conn_response(): a client's 101 during on_open and while its
 * open event is kept; NULL otherwise and for servers.
 * ws_loop_conn_transport_ctx(): the transport's context. */
static int resp_status_in_open, resp_null_after;
static ws_loop_conn *resp_conn;
static int r_open(ws_loop_conn *c, void *ud) {
  const ws_response *r = ws_loop_conn_response(c);
  if (ud == &cli_opened) {
    resp_status_in_open = r ? r->status : -1;
    resp_conn = c;
    /* the first time, keep the open event; delivered again, go on */
    return cli_opened++ == 0 ? WS_LOOP_PAUSE : 0;
  }
  assert_null(r); /* a server connection */
  return 0;
}

static void loop_conn_response_and_transport_ctx(void **state) {
  (void)state;
  memset(&H, 0, sizeof(H));
  H.s = sim_new(T0, 5);
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = r_open;
  lc.callbacks.on_close = c_close;
  ws_drv_poller pl = sim_poller(H.s);
  assert_int_equal(ws_drv_new(&H.l, &lc, &pl, sim_sys(H.s)), 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  assert_int_equal(ws_loop_listen(H.l, &lp, &H.port), 0);
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "127.0.0.1";
  cp.port = H.port;
  cp.user_data = &cli_opened;
  cli_opened = cli_closed = 0;
  assert_int_equal(ws_loop_connect(H.l, &cp, NULL), 0);
  h_until(&cli_opened, 1, 10);
  assert_int_equal(resp_status_in_open, 101);
  const ws_response *r = ws_loop_conn_response(resp_conn); /* still kept */
  assert_non_null(r);
  assert_int_equal(r->status, 101);
  assert_non_null(ws_loop_conn_transport_ctx(resp_conn)); /* plain TCP */
  assert_null(ws_loop_conn_transport_ctx(NULL));
  assert_null(ws_loop_conn_response(NULL));
  ws_loop_resume(resp_conn);
  h_round();
  assert_int_equal(cli_opened, 2);
  assert_null(ws_loop_conn_response(resp_conn)); /* delivered: gone */
  (void)resp_null_after;
  ws_loop_del(H.l);
  sim_del(H.s);
}

/* ---- refusals the loop makes itself (ws_loop_set_on_refused) ------------------ */

#define MAXREF 80
static struct {
  int n;
  int status[MAXREF];
  char reason[MAXREF][64];
  char peer[MAXREF][32];
  char path[MAXREF][32];   /* "-" when there was no request */
  char origin[MAXREF][32]; /* "-" when there was none */
  void *lud[MAXREF];
  int rv;               /* what the callback returns */
  int close_listeners;  /* ... after ws_loop_close_listeners() */
} RF;

static void rf_text(char *buf, size_t cap, ws_slice v) {
  if (v.base)
    snprintf(buf, cap, "%.*s", (int)v.len, (const char *)v.base);
  else
    snprintf(buf, cap, "-");
}

static int rf_record(ws_loop *l, void *ud, const ws_loop_refusal *r) {
  assert_ptr_equal(l, H.l);
  assert_ptr_equal(ud, &RF);
  assert_int_equal(r->size, sizeof(ws_loop_refusal));
  assert_non_null(r->reason);
  assert_non_null(r->peer);
  if (RF.n < MAXREF) {
    int i = RF.n;
    ws_slice none = {NULL, 0};
    RF.status[i] = r->status;
    snprintf(RF.reason[i], sizeof(RF.reason[i]), "%s", r->reason);
    snprintf(RF.peer[i], sizeof(RF.peer[i]), "%s", r->peer);
    rf_text(RF.path[i], sizeof(RF.path[i]),
            r->request ? r->request->path : none);
    rf_text(RF.origin[i], sizeof(RF.origin[i]),
            r->request ? r->request->origin : none);
    RF.lud[i] = r->listener_user_data;
  }
  RF.n++;
  if (RF.close_listeners) ws_loop_close_listeners(l);
  return RF.rv;
}

static void rf_start(const ws_loop_config *lcfg, const ws_config *scfg,
                     int http) {
  h_start(lcfg, scfg, http);
  memset(&RF, 0, sizeof(RF));
  ws_loop_set_on_refused(H.l, rf_record, &RF);
}

/* Refusal |i| was |status| |reason| for |path|, from a simulated peer. */
static void rf_check(int i, int status, const char *reason,
                     const char *path) {
  assert_true(RF.n > i);
  assert_int_equal(RF.status[i], status);
  assert_string_equal(RF.reason[i], reason);
  assert_string_equal(RF.path[i], path);
  assert_memory_equal(RF.peer[i], "127.0.0.1:", 10);
  assert_true(strlen(RF.peer[i]) > 10);
}

/* Sends |len| bytes of |head| on a new connection and waits until the
 * server is done with it. Returns the status of its answer, 0 if there
 * was no HTTP answer. */
static int rf_raw(const char *head, size_t len) {
  char out[64];
  int fd = sim_dial(H.s, H.port);
  assert_true(fd >= 0);
  if (len) assert_int_equal(sim_send(H.s, fd, head, len), len);
  for (int i = 0; i < 20 && !sim_peer_done(H.s, fd); i++) h_round();
  assert_true(sim_peer_done(H.s, fd));
  size_t n = sim_recv(H.s, fd, out, sizeof(out) - 1);
  out[n] = 0;
  sim_close(H.s, fd);
  return n >= 12 && memcmp(out, "HTTP/1.1 ", 9) == 0 ? atoi(out + 9) : 0;
}

/* An opening request for |path| with |extra| header lines. */
static const char *rf_head(const char *method, const char *path,
                           const char *version, const char *extra) {
  static char buf[1024];
  snprintf(buf, sizeof(buf),
           "%s %s HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: %s\r\n%s\r\n",
           method, path, version, extra);
  return buf;
}

static int rf_send(const char *head) { return rf_raw(head, strlen(head)); }

/* Heads the core's parser answers itself (no on_http here): each is
 * told once, with the status it got and the parser's reason; a peer
 * that goes away or times out in its handshake was not refused. */
static void refused_by_the_request_parser(void **state) {
  (void)state;
  static int tag;
  rf_start(NULL, NULL, 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.user_data = &tag;
  b_listen(&lp);
  static const char bare_lf[] = "GET / HTTP/1.1\nHost: h\n\n";
  assert_int_equal(rf_send(bare_lf), 400);
  rf_check(0, 400, "malformed request line", "-");
  assert_ptr_equal(RF.lud[0], &tag);
  assert_int_equal(rf_send(rf_head("POST", "/p", "13", "")), 405);
  rf_check(1, 405, "method is not GET", "-");
  assert_int_equal(rf_send(rf_head("GET", "/v", "8", "")), 426);
  rf_check(2, 426, "Sec-WebSocket-Version must be 13", "-");
  char big[2048] = "";
  size_t n = 0;
  for (int i = 0; i < 64; i++) /* with Host, 65 lines: max_headers is 64 */
    n += (size_t)snprintf(big + n, sizeof(big) - n, "X%d: y\r\n", i);
  assert_int_equal(rf_send(rf_head("GET", "/h", "13", big)), 431);
  rf_check(3, 431, "too many header fields", "-");
  static char huge[9000]; /* over max_handshake_bytes (8192), no end */
  memset(huge, 'a', sizeof(huge));
  memcpy(huge, "GET /", 5);
  assert_int_equal(rf_raw(huge, sizeof(huge)), 431);
  rf_check(4, 431, "request head too large", "-");
  assert_int_equal(rf_send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  rf_check(5, 400, "Upgrade: websocket missing", "-");
  assert_int_equal(RF.n, 6);
  /* not refusals: a peer that leaves before or during its head, or
   * sends nothing until the handshake timeout */
  assert_int_equal(rf_raw(NULL, 0), 0);
  static const char part[] = "GET / HTTP/1.1\r\nHo";
  int fd = sim_dial(H.s, H.port);
  sim_send(H.s, fd, part, sizeof(part) - 1);
  h_round();
  assert_int_equal(ws_loop_conn_count(H.l), 1);
  sim_close(H.s, fd);
  h_round();
  assert_int_equal(ws_loop_conn_count(H.l), 0);
  assert_int_equal(RF.n, 6);
  /* and one that opens is the application's */
  peer p;
  h_peer(&p, "/ok");
  h_until(&p.opened, 1, 10);
  assert_int_equal(RF.n, 6);
  assert_int_equal(H.closes, 0); /* no on_close for the refused */
  h_end();
}

static int rf_request(ws_loop_conn *c, void *ud, const ws_request *req) {
  (void)c;
  (void)ud;
  return ws_slice_ieq(req->path, "/pause") ? WS_LOOP_PAUSE : 0;
}

/* During a graceful shutdown: 503 "draining" for upgrades and plain
 * requests; a request that on_request paused gets its 503 from the loop
 * too, but it is the application's (on_close follows), not on_refused's. */
static void refused_while_draining(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = rf_request;
  rf_start(&lc, NULL, 1);
  peer a, b, c;
  h_peer(&a, "/a");
  h_until(&a.opened, 1, 10);
  h_peer(&b, "/pause");
  /* accepted and silent (a browser's speculative connection), and one
   * with half a request head */
  int idle = sim_dial(H.s, H.port);
  int half = sim_dial(H.s, H.port);
  static const char part1[] = "GET /half HTTP/1.1\r\nHost: h\r\n";
  sim_send(H.s, half, part1, sizeof(part1) - 1);
  for (int i = 0; i < 3; i++) { /* not as far as the handshake timeout */
    assert_int_equal(ws_loop_run_once(H.l, 10), 0);
    peer_pump(&b);
  }
  assert_int_equal(b.opened, 0);
  assert_false(sim_peer_closed(H.s, idle));
  ws_loop_shutdown(H.l, 1001, 0, 60000);
  for (int i = 0; i < 10 && !b.status; i++) h_round();
  assert_int_equal(b.status, 503);
  h_until(&H.closes, 1, 10);
  /* the silent one is closed at once, told as 0 "draining"; the paused
   * request's 503 is the application's (on_close), not a refusal */
  assert_true(sim_peer_closed(H.s, idle));
  assert_false(sim_peer_closed(H.s, half));
  rf_check(0, 0, "draining", "-");
  assert_int_equal(RF.n, 1);
  h_peer(&c, "/late");
  for (int i = 0; i < 10 && !c.status; i++) h_round();
  assert_int_equal(c.status, 503);
  rf_check(1, 503, "draining", "/late");
  assert_string_equal(RF.origin[1], "-");
  assert_int_equal(rf_send("GET /health HTTP/1.1\r\nHost: h\r\n\r\n"), 503);
  rf_check(2, 503, "draining", "/health");
  /* the half request, finished, gets its 503 */
  static const char part2[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
  sim_send(H.s, half, part2, sizeof(part2) - 1);
  for (int i = 0; i < 10 && !sim_peer_done(H.s, half); i++) h_round();
  char got[16] = {0};
  sim_recv(H.s, half, got, 12);
  assert_string_equal(got, "HTTP/1.1 503");
  rf_check(3, 503, "draining", "/half");
  assert_int_equal(RF.n, 4);
  sim_close(H.s, idle);
  sim_close(H.s, half);
  h_end();
}

/* Over a listener's cap: 503 with the cap's name (upgrades and plain
 * requests); over a transport, or with MAX_REFUSING (64) connections
 * already waiting for their 503, closed at once (status 0). */
static void refused_over_listener_caps(void **state) {
  (void)state;
  ws_loop_listen_params lp;
  static peer ps[4];
  memset(&lp, 0, sizeof(lp));
  lp.max_conns = 1;
  rf_start(NULL, NULL, 1);
  b_listen(&lp);
  h_peer(&ps[0], "/one");
  h_until(&ps[0].opened, 1, 10);
  h_peer(&ps[1], "/two");
  for (int i = 0; i < 10 && !ps[1].status; i++) h_round();
  assert_int_equal(ps[1].status, 503);
  rf_check(0, 503, "over max_conns", "/two");
  assert_int_equal(rf_send("GET /page HTTP/1.1\r\nHost: h\r\n\r\n"), 503);
  rf_check(1, 503, "over max_conns", "/page");
  /* 64 connections wait for their 503 (they send nothing): the 65th
   * is closed at once; the waiting ones that leave were not refused */
  sim_close(H.s, ps[1].fd);
  ps[1].fd = -1;
  for (int i = 0; i < 10 && H.l->nrefusing; i++) h_round();
  assert_int_equal(H.l->nrefusing, 0);
  int fds[65];
  for (int i = 0; i < 65; i++) fds[i] = sim_dial(H.s, H.port);
  for (int i = 0; i < 3; i++) h_round();
  assert_int_equal(RF.n, 3);
  rf_check(2, 0, "over max_conns", "-");
  assert_true(sim_peer_closed(H.s, fds[64]));
  assert_false(sim_peer_closed(H.s, fds[0]));
  for (int i = 0; i < 65; i++) sim_close(H.s, fds[i]);
  for (int i = 0; i < 3; i++) h_round();
  assert_int_equal(RF.n, 3);
  h_end();

  memset(&lp, 0, sizeof(lp));
  lp.max_conns_per_ip = 1;
  rf_start(NULL, NULL, 0);
  b_listen(&lp);
  h_peer(&ps[0], "/");
  h_until(&ps[0].opened, 1, 10);
  h_peer(&ps[1], "/ip");
  for (int i = 0; i < 10 && !ps[1].status; i++) h_round();
  assert_int_equal(ps[1].status, 503);
  rf_check(0, 503, "over max_conns_per_ip", "/ip");
  assert_int_equal(RF.n, 1);
  h_end();

  memset(&lp, 0, sizeof(lp));
  lp.max_handshakes = 1;
  rf_start(NULL, NULL, 0);
  b_listen(&lp);
  int mute = sim_dial(H.s, H.port); /* holds the one handshake */
  h_round();
  h_peer(&ps[0], "/hs");
  for (int i = 0; i < 10 && !ps[0].status; i++) h_round();
  assert_int_equal(ps[0].status, 503);
  rf_check(0, 503, "over max_handshakes", "/hs");
  assert_int_equal(RF.n, 1);
  sim_close(H.s, mute);
  h_end();

  /* over a transport (TLS): closed at once, before any byte is read */
  static int tag;
  memset(&lp, 0, sizeof(lp));
  lp.max_conns = 1;
  lp.user_data = &tag;
  rf_start(NULL, NULL, 0);
  lp.transport = &H.l->plain;
  b_listen(&lp);
  h_peer(&ps[0], "/");
  h_until(&ps[0].opened, 1, 10);
  int fd = sim_dial(H.s, H.port);
  h_round();
  assert_true(sim_peer_closed(H.s, fd));
  sim_close(H.s, fd);
  assert_int_equal(RF.n, 1);
  rf_check(0, 0, "over max_conns", "-");
  assert_ptr_equal(RF.lud[0], &tag);
  /* the application closes the listeners from the callback: the accept
   * round ends there (the second connection in the queue is reset) */
  RF.close_listeners = 1;
  int f1 = sim_dial(H.s, H.port), f2 = sim_dial(H.s, H.port);
  h_round();
  assert_int_equal(RF.n, 2);
  assert_true(sim_peer_closed(H.s, f1));
  assert_true(sim_peer_closed(H.s, f2));
  sim_close(H.s, f1);
  sim_close(H.s, f2);
  h_end();
}

/* max_handshakes at its edge in time: at the cap a new connection takes
 * the place of the oldest stalled handshake once that one has run
 * WS_LOOP_HANDSHAKE_DISPLACE_MS, not a millisecond before (one below:
 * 503); a request the application holds (on_request paused) is never
 * displaced. */
static int hold_request(ws_loop_conn *c, void *ud, const ws_request *req) {
  (void)c;
  (void)ud;
  (void)req;
  return WS_LOOP_PAUSE;
}

static void handshake_displaced_at_the_cap(void **state) {
  (void)state;
  const uint32_t wait = WS_LOOP_HANDSHAKE_DISPLACE_MS;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.max_handshakes = 2;
  rf_start(NULL, NULL, 0);
  b_listen(&lp);
  int m1 = sim_dial(H.s, H.port);
  assert_int_equal(ws_loop_run_once(H.l, 0), 0); /* accepted at t0 */
  uint64_t t0 = sim_now(H.s);
  assert_int_equal(ws_loop_run_once(H.l, 100), 0);
  int m2 = sim_dial(H.s, H.port);
  assert_int_equal(ws_loop_run_once(H.l, 0), 0); /* at t0 + 100 */
  assert_int_equal(ws_loop_run_once(H.l, (int)wait - 101), 0);
  assert_int_equal(sim_now(H.s), t0 + wait - 1);
  /* one below: m1 has run 499 ms, the newcomer is over the cap */
  assert_int_equal(rf_send(rf_head("GET", "/early", "13", "")), 503);
  rf_check(0, 503, "over max_handshakes", "/early");
  assert_false(sim_peer_closed(H.s, m1));
  /* at: 500 ms, the newcomer takes m1's place and opens */
  for (int i = 0; i < 5 && sim_now(H.s) < t0 + wait; i++)
    assert_int_equal(ws_loop_run_once(H.l, (int)(t0 + wait - sim_now(H.s))),
                     0);
  assert_int_equal(sim_now(H.s), t0 + wait);
  static peer p;
  h_peer(&p, "/late");
  h_until(&p.opened, 1, 10);
  assert_true(sim_peer_closed(H.s, m1));
  assert_false(sim_peer_closed(H.s, m2));
  rf_check(1, 0, "displaced (max_handshakes)", "-");
  assert_int_equal(RF.n, 2);
  assert_int_equal(H.closes, 0); /* m1 was never announced */
  sim_close(H.s, m1);
  sim_close(H.s, m2);
  h_end();

  /* a request the application holds stays: the newcomer gets 503 */
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = hold_request;
  memset(&lp, 0, sizeof(lp));
  lp.max_handshakes = 1;
  rf_start(&lc, NULL, 0);
  b_listen(&lp);
  static peer held;
  h_peer(&held, "/held");
  for (int i = 0; i < 3; i++) { /* on_request holds it: no timer runs */
    assert_int_equal(ws_loop_run_once(H.l, 10), 0);
    peer_pump(&held);
  }
  assert_int_equal(ws_loop_run_once(H.l, (int)wait * 2), 0);
  assert_int_equal(rf_send(rf_head("GET", "/next", "13", "")), 503);
  rf_check(0, 503, "over max_handshakes", "/next");
  assert_int_equal(RF.n, 1);
  assert_false(sim_peer_closed(H.s, held.fd));
  h_end();
}

/* The Origin allowlist: 403 before on_request, told with the request
 * (its Origin is there to log); an allowed Origin opens. */
static void refused_by_the_origin_allowlist(void **state) {
  (void)state;
  static const char *const allowed[] = {"https://chat.example.com"};
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = rf_request;
  rf_start(&lc, NULL, 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.origins = allowed;
  lp.norigins = 1;
  b_listen(&lp);
  assert_int_equal(
      rf_send(rf_head("GET", "/o", "13", "Origin: http://evil.example\r\n")),
      403);
  rf_check(0, 403, "origin not allowed", "/o");
  assert_string_equal(RF.origin[0], "http://evil.example");
  static peer ps[1];
  b_peer(&ps[0], "https://chat.example.com", 0);
  h_until(&ps[0].opened, 1, 10);
  assert_int_equal(RF.n, 1);
  assert_int_equal(H.closes, 0); /* the 403 was not on_request's */
  h_end();
}

/* The memory budget: over its mark new requests get 503; a connection
 * whose accept or request head the budget refuses is closed at once. */
static void refused_by_the_memory_budget(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.read_size = 256u << 10;
  rf_start(&lc, NULL, 0);
  peer a, b;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  uint64_t now = 0;
  ws_loop_memory(H.l, &now, NULL);
  H.l->cfg.memory_budget = now + 16384; /* over 90% of it */
  h_peer(&b, "/mark");
  for (int i = 0; i < 10 && !b.status; i++) h_round();
  assert_int_equal(b.status, 503);
  rf_check(0, 503, "memory budget", "/mark");
  /* no room for the connection itself */
  ws_loop_memory(H.l, &now, NULL);
  H.l->cfg.memory_budget = now;
  assert_int_equal(rf_raw(NULL, 0), 0);
  rf_check(1, 0, "memory budget", "-");
  /* room for the connection, none for its request head */
  H.l->cfg.memory_budget = 0;
  int fd = sim_dial(H.s, H.port);
  h_round();
  ws_loop_memory(H.l, &now, NULL);
  H.l->cfg.memory_budget = now;
  const char *head = rf_head("GET", "/head", "13", "");
  sim_send(H.s, fd, head, strlen(head));
  for (int i = 0; i < 10 && !sim_peer_done(H.s, fd); i++) h_round();
  assert_true(sim_peer_done(H.s, fd));
  /* nothing at all: no HTTP answer, and no 1013 close frame either (the
   * handshake never completed, RFC 6455 4.1: no frame before a 101) */
  uint8_t junk[64];
  assert_int_equal(sim_recv(H.s, fd, junk, sizeof(junk)), 0);
  sim_close(H.s, fd);
  rf_check(2, 0, "memory budget", "-");
  assert_int_equal(RF.n, 3);
  H.l->cfg.memory_budget = 0;
  h_end();
}

/* Without on_request the loop accepts by itself: an accept that runs
 * out of memory is answered 500 and told (the allocator fails the
 * first allocation after the request's header array). */
static struct {
  ws_mem mem;
  size_t arm_size;
  int state; /* 0 off, 1 armed, 2 fail the next, 3 done */
} FM;

static void *fm_malloc(size_t n, void *ud) {
  (void)ud;
  if (FM.state == 2) {
    FM.state = 3;
    return NULL;
  }
  if (FM.state == 1 && n == FM.arm_size) FM.state = 2;
  return malloc(n);
}
static void *fm_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  if (FM.state == 2) {
    FM.state = 3;
    return NULL;
  }
  return realloc(p, n);
}
static void fm_free(void *p, void *ud) {
  (void)ud;
  free(p);
}

/* A loop configuration on the FM allocator, reset (off). */
static void fm_loop_config(ws_loop_config *lc) {
  memset(&FM, 0, sizeof(FM));
  FM.mem.malloc = fm_malloc;
  FM.mem.realloc = fm_realloc;
  FM.mem.free = fm_free;
  ws_loop_config_default(lc);
  lc->mem = &FM.mem;
}

static void refused_when_the_accept_runs_out_of_memory(void **state) {
  (void)state;
  ws_loop_config lc;
  fm_loop_config(&lc);
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  /* the header array, as long as the head has headers (11: the five of
   * rf_head() and six more): a size no other block has (7 made 232
   * bytes, the size of a connection's block too) */
  static const char six[] = "X-1: a\r\nX-2: a\r\nX-3: a\r\n"
                            "X-4: a\r\nX-5: a\r\nX-6: a\r\n";
  rf_start(&lc, &cfg, 0);
  FM.arm_size = 11 * sizeof(ws_header) + WS_ARENA_ALIGN; /* + the budget's header */
  FM.state = 1;
  assert_int_equal(rf_send(rf_head("GET", "/oom", "13", six)), 500);
  assert_int_equal(FM.state, 3);
  rf_check(0, 500, "out of memory", "/oom");
  assert_int_equal(RF.n, 1);
  assert_int_equal(H.closes, 0);
  h_end();
  /* with on_request, the same 500 is the application's: on_close */
  lc.callbacks.on_request = rf_request;
  rf_start(&lc, &cfg, 0);
  FM.state = 1;
  assert_int_equal(rf_send(rf_head("GET", "/oom", "13", six)), 500);
  assert_int_equal(FM.state, 3);
  h_round(); /* it sees the peer's end */
  assert_int_equal(RF.n, 0);
  assert_int_equal(H.closes, 1);
  h_end();
}

/* A new slab that cannot be allocated refuses the connection that needed
 * it at accept (told, "out of memory", no answer), and the next one gets
 * it. */
static void refused_when_a_slab_runs_out_of_memory(void **state) {
  (void)state;
  enum { N = SLAB_BLOCKS };
  ws_loop_config lc;
  fm_loop_config(&lc);
  rf_start(&lc, NULL, 0);
  static int fds[N];
  for (int i = 0; i < N; i++) fds[i] = sim_dial(H.s, H.port);
  for (int i = 0; i < 20 && H.l->nconns < N; i++)
    assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nconns, N);
  assert_int_equal(H.l->nslabs, 1); /* full */
  FM.state = 2; /* the next allocation, the second slab's, fails */
  assert_int_equal(rf_raw(NULL, 0), 0);
  assert_int_equal(FM.state, 3);
  rf_check(0, 0, "out of memory", "-");
  assert_int_equal(H.l->nconns, N);
  assert_int_equal(H.l->nslabs, 1);
  int fd = sim_dial(H.s, H.port);
  for (int i = 0; i < 20 && H.l->nconns < N + 1; i++)
    assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nconns, N + 1);
  assert_int_equal(H.l->nslabs, 2);
  assert_int_equal(RF.n, 1);
  sim_close(H.s, fd);
  for (int i = 0; i < N; i++) sim_close(H.s, fds[i]);
  h_end();
}

/* What the application refuses (ws_loop_reject, a 404 after on_http) or
 * accepts is its own: no call. A negative return stops the loop; NULL
 * turns the callback off. */
static void no_refusal_for_the_applications_own(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = r_request;
  rf_start(&lc, NULL, 1);
  peer a, b;
  req_mode = 1;
  h_peer(&a, "/");
  for (int i = 0; i < 10 && !a.status; i++) h_round();
  assert_int_equal(a.status, 403);
  req_mode = 0;
  h_peer(&b, "/");
  h_until(&b.opened, 1, 10);
  assert_int_equal(rf_send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 200);
  assert_int_equal(rf_send("GET /no HTTP/1.1\r\nHost: h\r\n\r\n"), 404);
  assert_int_equal(RF.n, 0);
  /* the callback stops the loop */
  RF.rv = -42;
  int fd = sim_dial(H.s, H.port);
  sim_send(H.s, fd, "GET / HTTP/1.1\n\n", 16);
  int rv = 0;
  for (int i = 0; i < 5 && rv == 0; i++) rv = ws_loop_run_once(H.l, -1);
  assert_int_equal(rv, -42);
  assert_int_equal(RF.n, 1);
  rf_check(0, 400, "malformed request line", "-");
  sim_close(H.s, fd);
  /* off */
  ws_loop_set_on_refused(H.l, NULL, NULL);
  ws_loop_set_on_refused(NULL, rf_record, &RF);
  H.l->stopped = 0; /* as ws_loop_run() does */
  assert_int_equal(rf_send("GET / HTTP/1.1\n\n"), 400);
  assert_int_equal(RF.n, 1);
  h_end();
}


/* ---- the memory of an idle connection ---------------------------------------
 * An open connection with nothing in flight holds one block (the loop's
 * connection and the core's, conn_block_size(); the core's configuration
 * is its listener's ws_conn_shared) and an entry in each of
 * the two tables; the rest (conn_aux) exists only while it is busy. */

/* The second idle connection costs the loop exactly its block (deflate
 * off: the core allocates nothing more once open), and neither has an
 * aux. */
/* The connection in slot |i|, which the test knows is there (abort()
 * tells the compiler so too: gcc -m32 warns of a null dereference
 * after cmocka's assertion otherwise). */
static ws_loop_conn *slot_conn(uint32_t i) {
  ws_loop_conn *c = drv_slot_conn(H.l, i);
  if (!c) abort();
  return c;
}

/* RFC 6455 5.3: a fresh, unpredictable masking key per frame. A client
 * on the loop's random source takes its keys from the loop's pool: one
 * system call per 32 keys, each key wiped from the pool once handed out,
 * a request larger than the pool straight from the system. */
static void mask_keys_come_from_the_pool(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  ws_loop *l = H.l;
  assert_int_equal(l->rpos, sizeof(l->rpool));
  uint8_t keys[40][4];
  for (int i = 0; i < 40; i++) {
    assert_int_equal(drv_mask_rand(keys[i], 4, l), 0);
    /* 32 keys per fill: the 33rd refills */
    assert_int_equal(l->rpos, (i % 32 + 1) * 4);
    for (unsigned k = 0; k < l->rpos; k++)
      assert_int_equal(l->rpool[k], 0);
  }
  int same = 0, zero = 0;
  for (int i = 0; i < 40; i++) {
    zero += !memcmp(keys[i], "\0\0\0\0", 4);
    for (int j = 0; j < i; j++)
      same += !memcmp(keys[i], keys[j], 4);
  }
  assert_int_equal(same, 0); /* 780 pairs: 2^-22 chance of a false alarm */
  assert_int_equal(zero, 0);
  uint8_t big[200];
  memset(big, 0, sizeof(big));
  uint8_t pos = l->rpos;
  assert_int_equal(drv_mask_rand(big, sizeof(big), l), 0);
  assert_int_equal(l->rpos, pos); /* not from the pool */
  size_t nz = 0;
  for (size_t k = 0; k < sizeof(big); k++)
    nz += big[k] != 0;
  assert_true(nz > 150);
  h_end();
}

/* Connection blocks of the common size come from slabs of SLAB_BLOCKS,
 * side by side; a slab whose blocks are all free is given back unless it
 * is the only one with room; the budget counts every block as before. */
static void blocks_come_in_slabs(void **state) {
  (void)state;
  enum { N = 2 * SLAB_BLOCKS + 2 };
  h_start(NULL, NULL, 0);
  static int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = sim_dial(H.s, H.port);
    assert_true(fds[i] >= 0);
  }
  for (int i = 0; i < 20 && H.l->nconns < N; i++)
    assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nconns, N);
  assert_int_equal(H.l->nslabs, 3);
  assert_int_equal(H.l->slab_n, CONN_WS_OFF + ws_conn_sizeof_shared());
  /* side by side: the first two connections' blocks */
  ws_loop_conn *a = slot_conn(0), *b = slot_conn(1);
  assert_int_equal(conn_block_size(a), H.l->slab_n);
  size_t gap = (size_t)((char *)b - (char *)a);
  assert_int_equal(gap, H.l->slab_n);
  uint64_t m0 = 0, m1 = 0;
  ws_loop_memory(H.l, &m0, NULL);
  /* the first slab's connections go: it is given back (the third has
   * room) */
  for (int i = 0; i < (int)SLAB_BLOCKS; i++)
    sim_close(H.s, fds[i]);
  for (int i = 0; i < 20 && H.l->nconns > N - SLAB_BLOCKS; i++)
    assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nconns, N - SLAB_BLOCKS);
  assert_true(ws_loop_run_once(H.l, 0) >= 0); /* (the graveyard) */
  assert_int_equal(H.l->nslabs, 2);
  ws_loop_memory(H.l, &m1, NULL);
  assert_true(m0 - m1 >= SLAB_BLOCKS * H.l->slab_n);
  /* all go: one slab stays for the next connection */
  for (int i = (int)SLAB_BLOCKS; i < N; i++)
    sim_close(H.s, fds[i]);
  for (int i = 0; i < 20 && H.l->nconns > 0; i++)
    assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nconns, 0);
  assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nslabs, 1);
  /* ... which the next one takes */
  int fd = sim_dial(H.s, H.port);
  for (int i = 0; i < 20 && H.l->nconns < 1; i++)
    assert_true(ws_loop_run_once(H.l, 0) >= 0);
  assert_int_equal(H.l->nconns, 1);
  assert_int_equal(H.l->nslabs, 1);
  sim_close(H.s, fd);
  h_end();
}

/* A server delivering whole messages and one peer |a|, open. */
static void h_start_one(peer *a) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  h_start(NULL, &cfg, 0);
  h_peer(a, "/");
  h_until(&a->opened, 1, 10);
}

static void idle_connection_is_one_block(void **state) {
  (void)state;
  peer a, b;
  h_start_one(&a);
  /* (a round that does not wait: h_round() would sleep to the keepalive
   * deadline, and a ping in flight holds the busy-only state) */
  assert_true(ws_loop_run_once(H.l, 0) >= 0);
  uint64_t m0 = 0, m1 = 0;
  ws_loop_memory(H.l, &m0, NULL);
  h_peer(&b, "/");
  h_until(&b.opened, 1, 10);
  assert_true(ws_loop_run_once(H.l, 0) >= 0);
  ws_loop_memory(H.l, &m1, NULL);
  /* (both share their listener's configuration: the smaller block) */
  assert_int_equal(m1 - m0, conn_block_size(slot_conn(1)));
  assert_int_equal(conn_block_size(slot_conn(1)),
                   CONN_WS_OFF + ws_conn_sizeof_shared());
  assert_int_equal(H.l->nslots, 2);
  for (uint32_t i = 0; i < H.l->nslots; i++) {
    ws_loop_conn *c = slot_conn(i);
    assert_true(c->flags & F_SHARED);
    assert_null(c->aux);
    assert_ptr_equal(ws_loop_conn_ws(c), CONN_WS(c));
  }
  h_end();
}

/* The dirty and again lists link connections by slot. A connection that
 * ends while on them keeps its slot until it is freed at the end of the
 * round, unseen by the table's walks and by conn_by_id(): one accepted
 * in the same round takes another slot, and the lists still reach the
 * connections behind it. */
static void dead_connection_on_a_list_keeps_its_slot(void **state) {
  (void)state;
  h_start(NULL, NULL, 0);
  peer a, b, c, d;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  h_peer(&b, "/");
  h_until(&b.opened, 1, 10);
  h_round();
  ws_loop_conn *ca = slot_conn(0), *cb = slot_conn(1);
  uint64_t ida = ws_loop_conn_id(ca);
  assert_int_equal(ida, (uint64_t)1 << 32 | 1);
  conn_mark_dirty(cb);
  conn_mark_dirty(ca);
  conn_mark_again(ca);
  conn_destroy(ca, WS_LOOP_ERR_SHUTDOWN);
  assert_int_equal(H.closes, 1);
  assert_null(drv_slot_conn(H.l, 0));
  assert_null(conn_by_id(H.l, ida));
  assert_ptr_equal(drv_listed_conn(H.l, H.l->dirty), ca);
  assert_ptr_equal(drv_listed_conn(H.l, ca->next_dirty), cb);
  assert_ptr_equal(drv_listed_conn(H.l, H.l->again), ca);
  ws_loop_stats st;
  ws_loop_stats_get(H.l, &st, sizeof(st));
  assert_int_equal(st.open, 1);
  assert_int_equal(st.closed, 1);
  assert_int_equal(st.accepted, 2); /* the dead one counted once */
  /* accepted in the round that runs the lists: a slot of its own */
  h_peer(&c, "/");
  h_round();
  assert_int_equal(H.l->nslots, 3);
  assert_non_null(drv_slot_conn(H.l, 2));
  assert_null(drv_slot_conn(H.l, 0));
  assert_false(cb->flags & F_DIRTY); /* reached behind the dead one */
  assert_int_equal(H.l->dirty, 0);
  assert_int_equal(H.l->again, 0);
  h_until(&c.opened, 1, 10);
  /* freed with the round: the slot is taken again, one generation on */
  h_peer(&d, "/");
  h_until(&d.opened, 1, 10);
  assert_int_equal(H.l->nslots, 3);
  assert_int_equal(ws_loop_conn_id(slot_conn(0)), (uint64_t)2 << 32 | 1);
  h_end();
}

/* After each burst of traffic (messages both ways, a keepalive ping and
 * its pong), an open connection that went quiet again holds what it held
 * idle before: its block (ws_conn_shrink() once its turn is over). */
static void idle_again_after_traffic(void **state) {
  (void)state;
  peer a;
  h_start_one(&a);
  h_round();
  uint64_t m0 = 0, m1 = 0;
  ws_loop_memory(H.l, &m0, NULL);
  static char big[20000];
  memset(big, 'x', sizeof(big) - 1);
  for (int burst = 0; burst < 3; burst++) {
    peer_send(&a, "hello");
    peer_send(&a, big);
    h_until(&a.msgs, 2 * (burst + 1), 20);
    h_round();
    ws_loop_memory(H.l, &m1, NULL);
    assert_int_equal(m1, m0);
  }
  /* the keepalive ping (25 s of quiet), then the pong */
  h_until(&a.pings, 1, 10);
  h_round();
  h_round();
  ws_loop_memory(H.l, &m1, NULL);
  assert_int_equal(m1, m0);
  assert_int_equal(ws_loop_conn_count(H.l), 1);
  h_end();
}

/* What only a listener's caps need is in its connections' blocks only:
 * after the core, the peer's hash (max_conns_per_ip) and the handshake's
 * start (max_handshakes); the connections of a listener without them
 * (above) have neither. */
static void caps_keep_their_state_in_the_block_tail(void **state) {
  (void)state;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.max_conns_per_ip = 4;
  lp.max_handshakes = 4;
  h_start(NULL, NULL, 0);
  b_listen(&lp);
  peer a;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  h_round();
  uint64_t t0 = sim_now(H.s);
  int mute = sim_dial(H.s, H.port); /* a handshake that has not started */
  for (int i = 0; i < 10 && H.l->nslots < 2; i++) h_round();
  assert_int_equal(H.l->nslots, 2);
  ws_loop_conn *ca = slot_conn(0), *cm = slot_conn(1);
  for (int i = 0; i < 2; i++) {
    ws_loop_conn *c = i ? cm : ca;
    assert_int_equal(c->flags & (F_SHARED | F_TAIL_IP | F_TAIL_HS),
                     F_SHARED | F_TAIL_IP | F_TAIL_HS);
    assert_int_equal(conn_block_size(c),
                     CONN_WS_OFF + ws_conn_sizeof_shared() + 8 + 4);
  }
  /* both from 127.0.0.1 */
  assert_true(conn_peer_hash(ca) != 0);
  assert_true(conn_peer_hash(cm) == conn_peer_hash(ca));
  /* the handshake under way started at its accept */
  assert_true((cm->flags & (F_HS | F_COUNTED)) == (F_HS | F_COUNTED));
  assert_true((uint32_t)sim_now(H.s) - conn_hs_ms(cm) <=
              (uint32_t)(sim_now(H.s) - t0));
  assert_false(ca->flags & F_HS); /* open: out of the cap */
  sim_close(H.s, mute);
  h_round();
  h_end();
}

/* A connection over a transport of its own (as TLS) keeps that transport
 * and its context in its aux for its whole life, idle or not, and the
 * transport is detached once at the end; a plain TCP connection keeps
 * neither (its context is the loop's). */
static void own_transport_lives_in_the_aux(void **state) {
  (void)state;
  h_start_unpinged();
  ws_loop_transport tp;
  uint16_t port = 0;
  owe_listen(&tp, &port);
  peer a, b;
  h_peer(&a, "/"); /* the harness's plain listener */
  h_until(&a.opened, 1, 10);
  uint16_t plain_port = H.port;
  H.port = port;
  h_peer(&b, "/");
  h_until(&b.opened, 1, 10);
  H.port = plain_port;
  for (int i = 0; i < 5; i++)
    h_round();
  ws_loop_conn *pc = slot_conn(0), *tc = slot_conn(1);
  assert_false(pc->flags & F_TP);
  assert_null(pc->aux); /* idle and plain: one block */
  assert_ptr_equal(ws_loop_conn_transport_ctx(pc), H.l->plain.user_data);
  assert_true(tc->flags & F_TP);
  assert_non_null(tc->aux); /* idle, but its transport is there */
  assert_ptr_equal(tc->aux->tp, &tp);
  owe_ctx *o = ws_loop_conn_transport_ctx(tc);
  assert_non_null(o);
  assert_ptr_equal(o, tc->aux->tctx);
  assert_true(o->reads > 0); /* the request came through it */
  /* an echo goes through it both ways */
  int before = o->reads;
  peer_send(&b, "via the transport");
  h_until(&b.msgs, 1, 10);
  assert_string_equal(b.last, "via the transport");
  assert_true(o->reads > before);
  h_end(); /* detaches it (owe_detach frees |o|: ASan and valgrind see a
              leak or a double free) */
}

/* Output pending on a peer that does not read starts the write timeout
 * in an aux; once the peer has read it all, the aux is gone again. */
static void busy_connection_gives_its_aux_back(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.ping_interval_ms = 0;
  h_start(NULL, &cfg, 0);
  peer a;
  h_peer(&a, "/");
  h_until(&a.opened, 1, 10);
  ws_loop_conn *c = slot_conn(0);
  assert_null(c->aux);
  a.mute = 1;
  sim_set_rcvbuf(H.s, a.fd, 4096);
  static uint8_t big[64u << 10];
  assert_int_equal(ws_loop_send(c, WS_OP_BINARY, big, sizeof(big), 0), 0);
  h_round();
  assert_non_null(c->aux);
  assert_true(c->aux->stall_since != 0);
  assert_true(conn_deadline(c) <= c->aux->stall_since + 30000);
  a.mute = 0;
  sim_set_rcvbuf(H.s, a.fd, 256u << 10);
  for (int i = 0; i < 50 && a.msgs < 1; i++) h_round();
  assert_int_equal(a.msgs, 1);
  assert_int_equal(ws_loop_run_once(H.l, 0), 0);
  assert_null(c->aux);
  assert_int_equal(H.closes, 0);
  h_end();
}

/* Over two pages of both tables: 1,100 connections that never send a
 * byte, all in the heap (their handshake timers), all timed out by the
 * same timer round, and all ended by the next (their linger); then a
 * slot is reused under a new generation, and the memory is back to the
 * tables' pages. */
/* The bytes of a ws_conn_shared (a listener holds one from its first
 * accept on), as the loop's allocator counts them (a header each). */
static size_t counted_bytes;
static void *count_malloc(size_t n, void *ud) {
  (void)ud;
  counted_bytes += n;
  return malloc(n);
}
static void *count_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  (void)p;
  (void)n;
  abort();
}
static void count_free(void *p, void *ud) {
  (void)ud;
  free(p);
}
static size_t shared_config_bytes(void) {
  ws_mem m = {NULL, count_malloc, count_realloc, count_free};
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  ws_conn_shared *sh;
  counted_bytes = 0;
  assert_int_equal(ws_conn_shared_new(&sh, &cfg, &m), 0);
  ws_conn_shared_del(sh);
  return counted_bytes + WS_ARENA_ALIGN; /* (MEM_HDR) */
}

static void many_connections_span_the_pages(void **state) {
  (void)state;
  enum { N = 1100 };
  static int fds[N];
  h_start(NULL, NULL, 0);
  uint64_t m0 = 0, m1 = 0;
  ws_loop_memory(H.l, &m0, NULL);
  for (int i = 0; i < N; i++) {
    fds[i] = sim_dial(H.s, H.port);
    assert_true(fds[i] >= 0);
  }
  for (int i = 0; i < 100 && ws_loop_conn_count(H.l) < N; i++) h_round();
  assert_int_equal(ws_loop_conn_count(H.l), N);
  assert_int_equal(H.l->nslots, N);
  assert_int_equal(H.l->heaplen, N);
  assert_int_equal(H.l->nspages, (N + PAGE_ENTRIES - 1) / PAGE_ENTRIES);
  assert_int_equal(H.l->nhpages, (N + PAGE_ENTRIES - 1) / PAGE_ENTRIES);
  uint64_t t0 = sim_now(H.s);
  for (uint32_t i = 0; i < N; i++) {
    ws_loop_conn *c = drv_slot_conn(H.l, i);
    assert_non_null(c);
    assert_int_equal(ws_loop_conn_id(c), (uint64_t)1 << 32 | (i + 1));
    assert_ptr_equal(conn_by_id(H.l, ws_loop_conn_id(c)), c);
  }
  for (int i = 0; i < 20 && ws_loop_conn_count(H.l) > 0; i++) h_round();
  assert_int_equal(ws_loop_conn_count(H.l), 0);
  assert_int_equal(H.l->heaplen, 0);
  /* the handshake timeout (10 s), then the linger (2 s) */
  assert_int_equal(sim_now(H.s), t0 + 10000 + 2000);
  for (int i = 0; i < N; i++) {
    assert_true(sim_peer_done(H.s, fds[i]));
    sim_close(H.s, fds[i]);
  }
  assert_null(conn_by_id(H.l, (uint64_t)1 << 32 | 1));
  ws_loop_memory(H.l, &m1, NULL);
  assert_int_equal(
      m1 - m0,
      H.l->nspages * (PAGE_ENTRIES * sizeof(slot_entry) + WS_ARENA_ALIGN) +
          H.l->nhpages * (PAGE_ENTRIES * sizeof(void *) + WS_ARENA_ALIGN) +
          2u * (4u * sizeof(void *) + WS_ARENA_ALIGN) + /* directories */
          shared_config_bytes()); /* the listener's */
  /* the slot released last is taken first, one generation on */
  int fd = sim_dial(H.s, H.port);
  for (int i = 0; i < 10 && ws_loop_conn_count(H.l) < 1; i++) h_round();
  assert_int_equal(ws_loop_conn_count(H.l), 1);
  ws_loop_conn *c = NULL;
  for (uint32_t i = 0; i < H.l->nslots && !c; i++) c = drv_slot_conn(H.l, i);
  assert_non_null(c);
  assert_int_equal(ws_loop_conn_id(c) >> 32, 2);
  assert_int_equal(H.l->nslots, N);
  sim_close(H.s, fd);
  for (int i = 0; i < 10 && ws_loop_conn_count(H.l) > 0; i++) h_round();
  h_end();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(new_client_after_quiet_gets_full_timeout),
      cmocka_unit_test(keepalive_pings_on_schedule_for_a_day),
      cmocka_unit_test(full_queues_at_ping_deadline_do_not_spin),
      cmocka_unit_test(write_timeout_drops_a_stalled_reader),
      cmocka_unit_test(linger_after_close_handshake),
      cmocka_unit_test(graceful_shutdown_spread_and_drain),
      cmocka_unit_test(accept_emfile_pauses_listener),
      cmocka_unit_test(partial_reads_and_writes),
      cmocka_unit_test(reset_mid_frame),
      cmocka_unit_test(reset_among_pinged),
      cmocka_unit_test(loop_client_connects_and_is_refused),
      cmocka_unit_test(http_requests_through_the_core),
      cmocka_unit_test(posts_race_with_close),
      cmocka_unit_test(api_requests_sends_and_getters),
      cmocka_unit_test(request_paused_over_pending_output_waits_for_resume),
      cmocka_unit_test(broadcast_prepared_to_mixed_peers),
      cmocka_unit_test(posts_budget_and_kinds),
      cmocka_unit_test(loop_config_and_listen_errors),
      cmocka_unit_test(failing_allocator_every_call),
      cmocka_unit_test(one_recv_per_message),
      cmocka_unit_test(loop_conn_response_and_transport_ctx),
      /* budgets and caps (h-budget) */
      cmocka_unit_test(budget_refuses_the_connection_that_asks),
      cmocka_unit_test(budget_high_mark_refuses_new_requests),
      cmocka_unit_test(budget_holds_back_congested_connections),
      cmocka_unit_test(listener_caps_at_their_edges),
      cmocka_unit_test(slow_reader_trickle_dropped_above_low_water),
      cmocka_unit_test(min_drain_rate_at_its_edge),
      cmocka_unit_test(message_timeout_at_its_edge),
      cmocka_unit_test(origin_allowlist),
      cmocka_unit_test(pmd_context_cap),
      cmocka_unit_test(reconnect_backoff_full_jitter_and_reset),
      cmocka_unit_test(reconnect_on_refused_connects_and_statuses),
      cmocka_unit_test(pause_reading_and_close_listeners),
      cmocka_unit_test(close_listeners_mid_batch),
      cmocka_unit_test(close_listeners_mid_handshake),
      cmocka_unit_test(close_listeners_after_ends),
      cmocka_unit_test(handshake_displaced_at_the_cap),
      /* refusals the loop makes itself (on_refused) */
      cmocka_unit_test(refused_by_the_request_parser),
      cmocka_unit_test(refused_while_draining),
      cmocka_unit_test(refused_over_listener_caps),
      cmocka_unit_test(refused_by_the_origin_allowlist),
      cmocka_unit_test(refused_by_the_memory_budget),
      cmocka_unit_test(refused_when_the_accept_runs_out_of_memory),
      cmocka_unit_test(refused_when_a_slab_runs_out_of_memory),
      cmocka_unit_test(no_refusal_for_the_applications_own),
      /* the memory of an idle connection */
      cmocka_unit_test(idle_connection_is_one_block),
      cmocka_unit_test(blocks_come_in_slabs),
      cmocka_unit_test(dead_connection_on_a_list_keeps_its_slot),
      cmocka_unit_test(idle_again_after_traffic),
      cmocka_unit_test(caps_keep_their_state_in_the_block_tail),
      cmocka_unit_test(own_transport_lives_in_the_aux),
      cmocka_unit_test(mask_keys_come_from_the_pool),
      cmocka_unit_test(busy_connection_gives_its_aux_back),
      cmocka_unit_test(many_connections_span_the_pages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* ---- broadcast: one prepared message for every connection (issue 11) ----
 * ws_loop_broadcast() frames once and compresses once for the
 * connections whose server side keeps no deflate context (RFC 7692
 * 7.1.1.1), and lets the others compress with their own context. */

/* The server side of every open connection of the loop, sorted by what
 * it negotiated: kept context, no context, no deflate. */
static size_t bc_conns(ws_conn **ctx, ws_conn **noctx, ws_conn **plain,
                       ws_loop_conn **lplain) {
  size_t n = 0, a = 0, b = 0, c = 0;
  for (uint32_t i = 0; i < H.l->nslots; i++) {
    ws_loop_conn *lc = drv_slot_conn(H.l, i);
    if (!lc) continue;
    ws_conn *ws = ws_loop_conn_ws(lc);
    ws_pmd_params pp;
    ws_conn_pmd(ws, &pp);
    if (!pp.enabled) {
      plain[c++] = ws;
      *lplain = lc;
    } else if (pp.server_no_context_takeover) {
      noctx[b++] = ws;
    } else {
      ctx[a++] = ws;
    }
    n++;
  }
  assert_int_equal(a, 2);
  assert_int_equal(b, 3);
  assert_int_equal(c, 1);
  return n;
}

static uint64_t bc_wire(ws_conn *ws) {
  ws_stats st;
  ws_conn_stats(ws, &st);
  return st.wire_out;
}

/* Six peers: two keep a deflate context (max_pmd_context 2), three are
 * over the cap (no context either way), one has no deflate. Each
 * broadcast arrives whole and identical at all six; the no-context
 * connections put the same number of bytes on the wire (one shared
 * compression) and fewer than the plain one; the context connections
 * compress the repeat smaller, against their own window. A connection
 * in the middle of a fragmented message of its own is skipped (RFC 6455
 * 5.4), and its own message arrives unbroken. */
static void broadcast_prepared_to_mixed_peers(void **state) {
  (void)state;
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.pmd.enable = 1;
  h_start(NULL, &cfg, 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = &cfg;
  lp.max_pmd_context = 2;
  b_listen(&lp);
  static peer ps[6];
  for (int i = 0; i < 6; i++) {
    b_peer(&ps[i], NULL, i < 5);
    h_until(&ps[i].opened, 1, 10);
  }
  ws_conn *ctx[6], *noctx[6], *plain[6];
  ws_loop_conn *lplain = NULL;
  assert_int_equal(bc_conns(ctx, noctx, plain, &lplain), 6);

  char text[201];
  for (int i = 0; i < 200; i++) text[i] = "guest-7: hello everyone, "[i % 25];
  text[200] = 0;
  uint64_t w0[3][3] = {{0}}, w1[3][3] = {{0}};
  for (int round = 0; round < 2; round++) {
    for (int k = 0; k < 3; k++) {
      if (k < 2) w0[0][k] = bc_wire(ctx[k]);
      w0[1][k] = bc_wire(noctx[k]);
      if (k < 1) w0[2][k] = bc_wire(plain[k]);
    }
    size_t n = 0;
    assert_int_equal(ws_loop_broadcast(H.l, WS_OP_TEXT, text, 200, NULL, &n),
                     0);
    assert_int_equal(n, 6);
    for (int i = 0; i < 6; i++) {
      h_until(&ps[i].msgs, round + 1, 10);
      assert_int_equal(ps[i].msgs, round + 1);
      assert_string_equal(ps[i].last, text);
    }
    for (int k = 0; k < 3; k++) {
      if (k < 2) w1[0][k] = bc_wire(ctx[k]) - w0[0][k];
      w1[1][k] = bc_wire(noctx[k]) - w0[1][k];
      if (k < 1) w1[2][k] = bc_wire(plain[k]) - w0[2][k];
    }
    assert_int_equal(w1[2][0], 2 + 2 + 200); /* 81 7e 00 c8 + text */
    assert_int_equal(w1[1][1], w1[1][0]);
    assert_int_equal(w1[1][2], w1[1][0]);
    assert_true(w1[1][0] < 60);
    assert_int_equal(w1[0][1], w1[0][0]);
    if (round == 0) /* an empty window: what the no-context ones send */
      assert_int_equal(w1[0][0], w1[1][0]);
    else /* the repeat refers back into the first */
      assert_true(w1[0][0] < w1[1][0]);
  }

  /* mid-fragment: skipped, and its own message is not broken into */
  assert_int_equal(ws_loop_send(lplain, WS_OP_TEXT, "frag-", 5, WS_SEND_MORE),
                   0);
  size_t n = 0;
  assert_int_equal(ws_loop_broadcast(H.l, WS_OP_TEXT, "x", 1, NULL, &n), 0);
  assert_int_equal(n, 5);
  assert_int_equal(ws_loop_send(lplain, WS_OP_TEXT, "end", 3, 0), 0);
  for (int i = 0; i < 6; i++) {
    h_until(&ps[i].msgs, 3, 10);
    assert_int_equal(ps[i].msgs, 3);
    assert_string_equal(ps[i].last, i == 5 ? "frag-end" : "x");
  }
  h_end();
}
