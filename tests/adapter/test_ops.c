/*
 * What operators and packagers rely on, over 127.0.0.1: a socket handed
 * in (ws_loop_listen_fd, as systemd socket activation does) serves, and
 * lets a graceful shutdown end as soon as the connections are closed; a
 * listener of our own stays open for the whole drain and answers 503;
 * anything but a listening stream socket is refused and left open; host
 * names resolve for listening, a taken port says EADDRINUSE; the loop's
 * totals (ws_loop_stats_get) count both ends and write no more than the
 * size asked; configs with an unknown |size| are refused (ABI policy).
 * No test rests on a tight time margin: only lower bounds, or upper
 * bounds far above what is expected (a loaded machine).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ws/ws_loop.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct rec {
  int opened, closed, msgs, http_status;
} rec;

static rec srv, cli;

static int on_open(ws_loop_conn *c, void *ud) {
  rec *r = ud ? ud : &srv;
  r->opened++;
  if (r == &cli) ws_loop_send(c, WS_OP_TEXT, "hello", 5, 0);
  return 0;
}

static int on_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  rec *r = ud ? ud : &srv;
  r->msgs++;
  if (r == &srv)
    ws_loop_send(c, WS_OP_TEXT, ev->data.base, ev->data.len, 0);
  else
    ws_loop_close(c, 1000, NULL, 0);
  return 0;
}

static int on_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *info) {
  rec *r = ud ? ud : &srv;
  (void)c;
  r->closed++;
  r->http_status = info->http_status;
  return 0;
}

static ws_loop *new_loop(void) {
  ws_loop_config lc;
  ws_loop *l = NULL;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_close = on_close;
  assert_int_equal(ws_loop_new(&l, &lc), 0);
  memset(&srv, 0, sizeof(srv));
  memset(&cli, 0, sizeof(cli));
  return l;
}

static void connect_client(ws_loop *l, uint16_t port) {
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "127.0.0.1";
  cp.port = port;
  cp.request.path = "/";
  cp.user_data = &cli;
  assert_int_equal(ws_loop_connect(l, &cp, NULL), 0);
}

static void run_until(ws_loop *l, const int *flag, int want) {
  for (int i = 0; i < 3000 && *flag < want; i++)
    ws_loop_run_once(l, 10);
  assert_true(*flag >= want);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tcp_listener(uint16_t *pport) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  *pport = ntohs(sa.sin_port);
  return fd;
}

/* A socket made elsewhere serves; once it and its connections are the
 * only things left, a shutdown ends with the connections, long before
 * its drain time: the socket's owner (systemd) keeps it. */
static void listen_fd_serves_and_hands_back(void **state) {
  (void)state;
  ws_loop *l = new_loop();
  uint16_t port = 0, got = 0;
  int fd = tcp_listener(&port);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  assert_int_equal(ws_loop_listen_fd(l, fd, &lp, &got), 0);
  assert_int_equal(got, port);
  assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  connect_client(l, port);
  run_until(l, &cli.closed, 1);
  run_until(l, &srv.closed, 1);
  assert_int_equal(srv.msgs, 1);
  assert_int_equal(cli.msgs, 1);

  ws_loop_stats st;
  memset(&st, 0xee, sizeof(st));
  ws_loop_stats_get(l, &st, sizeof(st));
  assert_int_equal(st.accepted, 1);
  assert_int_equal(st.connected, 1);
  assert_int_equal(st.closed + st.open, 2);
  assert_int_equal(st.msgs_in, 2); /* one each way, at each end */
  assert_int_equal(st.msgs_out, 2);
  assert_int_equal(st.bytes_in, 10);
  assert_true(st.wire_in >= st.bytes_in && st.wire_out == st.wire_in);
  /* a caller built against a smaller struct: nothing past its size */
  uint64_t small[3] = {7, 7, 7};
  ws_loop_stats_get(l, (ws_loop_stats *)(void *)small, 2 * sizeof(uint64_t));
  assert_int_equal(small[0], 1);
  assert_int_equal(small[1], 1);
  assert_int_equal(small[2], 7);

  double t0 = now_s();
  ws_loop_shutdown(l, 1001, 0, 60000);
  assert_int_equal(ws_loop_run(l), 0);
  assert_true(now_s() - t0 < 30); /* not the 60 s drain */
  ws_loop_del(l);
  /* the loop owned the descriptor and closed it */
  assert_int_equal(fcntl(fd, F_GETFD), -1);
}

/* A listener of our own keeps the drain to its end, answering 503. */
static void own_listener_answers_503_for_the_whole_drain(void **state) {
  (void)state;
  ws_loop *l = new_loop();
  ws_loop_listen_params lp;
  uint16_t port = 0;
  memset(&lp, 0, sizeof(lp));
  lp.host = "127.0.0.1";
  assert_int_equal(ws_loop_listen(l, &lp, &port), 0);
  double t0 = now_s();
  ws_loop_shutdown(l, 1001, 0, 1500);
  ws_loop_run_once(l, 0); /* the drain starts, with no connection */
  connect_client(l, port);
  run_until(l, &cli.closed, 1);
  assert_int_equal(cli.http_status, 503);
  assert_int_equal(cli.opened, 0);
  assert_int_equal(ws_loop_run(l), 0);
  assert_true(now_s() - t0 >= 1.4); /* the listener stayed */
  ws_loop_del(l);
}

static void listen_fd_refuses_what_is_not_a_listener(void **state) {
  (void)state;
  ws_loop *l = new_loop();
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  int tcp = socket(AF_INET, SOCK_STREAM, 0); /* not listening */
  assert_int_equal(ws_loop_listen_fd(l, udp, &lp, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_listen_fd(l, tcp, &lp, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_listen_fd(l, -1, &lp, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_loop_listen_fd(NULL, tcp, &lp, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0); /* not a socket at all */
  assert_int_equal(ws_loop_listen_fd(l, pfd[0], &lp, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  close(pfd[0]);
  close(pfd[1]);
  assert_true(fcntl(udp, F_GETFD) >= 0); /* left open, to the caller */
  assert_true(fcntl(tcp, F_GETFD) >= 0);
  close(udp);
  close(tcp);
  ws_loop_del(l);
}

/* Other families, and the defaults when no params are given: an IPv6
 * socket tells its port, a Unix socket has none; both are served. */
static void listen_fd_other_families(void **state) {
  (void)state;
  ws_loop *l = new_loop();
  uint16_t port = 1;
  int un = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un su;
  memset(&su, 0, sizeof(su));
  su.sun_family = AF_UNIX; /* autobind: an abstract name on Linux */
  assert_true(un >= 0);
  assert_int_equal(bind(un, (struct sockaddr *)&su, sizeof(sa_family_t)), 0);
  assert_int_equal(listen(un, 4), 0);
  assert_int_equal(ws_loop_listen_fd(l, un, NULL, &port), 0);
  assert_int_equal(port, 0);

  int v6 = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 s6;
  memset(&s6, 0, sizeof(s6));
  s6.sin6_family = AF_INET6;
  s6.sin6_addr = in6addr_loopback;
  if (v6 >= 0 && bind(v6, (struct sockaddr *)&s6, sizeof(s6)) == 0 &&
      listen(v6, 4) == 0) {
    ws_config cfg;
    ws_loop_listen_params lp;
    ws_config_default(&cfg, WS_ROLE_SERVER);
    cfg.delivery = WS_DELIVER_MESSAGE;
    memset(&lp, 0, sizeof(lp));
    lp.config = &cfg;
    assert_int_equal(ws_loop_listen_fd(l, v6, &lp, &port), 0);
    assert_true(port != 0);
    ws_loop_connect_params cp;
    memset(&cp, 0, sizeof(cp));
    cp.host = "::1";
    cp.port = port;
    cp.request.path = "/";
    cp.user_data = &cli;
    assert_int_equal(ws_loop_connect(l, &cp, NULL), 0);
    run_until(l, &cli.closed, 1);
    assert_int_equal(cli.msgs, 1);
  } else if (v6 >= 0) { /* no IPv6 here */
    close(v6);
  }
  ws_loop_stats st;
  ws_loop_stats_get(l, NULL, sizeof(st)); /* harmless */
  ws_loop_stats_get(NULL, &st, sizeof(st));
  assert_int_equal(st.accepted + st.connected + st.open, 0);
  ws_loop_del(l);
}

static void listen_names_and_taken_ports(void **state) {
  (void)state;
  ws_loop *l = new_loop();
  ws_loop_listen_params lp;
  uint16_t port = 0;
  memset(&lp, 0, sizeof(lp));
  lp.host = "localhost";
  assert_int_equal(ws_loop_listen(l, &lp, &port), 0);
  assert_true(port != 0);
  lp.port = port; /* taken, without SO_REUSEPORT */
  errno = 0;
  assert_int_equal(ws_loop_listen(l, &lp, NULL), WS_LOOP_ERR_IO);
  assert_int_equal(errno, EADDRINUSE);
  lp.host = "no-such-host.invalid";
  lp.port = 0;
  assert_int_equal(ws_loop_listen(l, &lp, NULL), WS_ERR_INVALID_ARGUMENT);
  ws_loop_del(l);
}

/* ABI policy: size 0 is the 0.2 layout, sizeof() is what *_default()
 * sets, anything else is a layout this library does not know. */
static void config_sizes(void **state) {
  (void)state;
  ws_loop_config lc;
  ws_loop *l = NULL;
  ws_loop_config_default(&lc);
  assert_int_equal(lc.size, sizeof(lc));
  lc.size = (uint32_t)sizeof(lc) + 8;
  assert_int_equal(ws_loop_new(&l, &lc), WS_ERR_INVALID_ARGUMENT);
  lc.size = 0;
  assert_int_equal(ws_loop_new(&l, &lc), 0);
  ws_loop_del(l);

  ws_config cfg;
  ws_conn *c = NULL;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  assert_int_equal(cfg.size, sizeof(cfg));
  cfg.size = 8;
  assert_int_equal(ws_conn_new(&c, &cfg, NULL), WS_ERR_INVALID_ARGUMENT);
  cfg.size = 0;
  assert_int_equal(ws_conn_new(&c, &cfg, NULL), 0);
  ws_conn_del(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(listen_fd_serves_and_hands_back),
      cmocka_unit_test(own_listener_answers_503_for_the_whole_drain),
      cmocka_unit_test(listen_fd_refuses_what_is_not_a_listener),
      cmocka_unit_test(listen_fd_other_families),
      cmocka_unit_test(listen_names_and_taken_ports),
      cmocka_unit_test(config_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
