/*
 * echo-server: sends every text and binary message back as it came, with
 * permessage-deflate offered to clients (unless --no-deflate), over
 * wss:// with --tls-cert and --tls-key. Built on the loop
 * (<ws/ws_loop.h>) and, for TLS, the mbedTLS adapter (<ws/ws_mbedtls.h>);
 * the Autobahn fuzzingclient target and the target of tests/conformance,
 * tests/interop and tests/load. Ctrl-C (SIGINT) or SIGTERM closes every
 * connection with 1001 and exits once they are closed and the drain time
 * is over (new upgrades get 503 meanwhile); a second one exits at once.
 * Logs one line per connection on stderr (-q: errors only, -v: more);
 * takes its socket from systemd when socket-activated and tells systemd
 * when it is ready (contrib/systemd/).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_loop.h>
#ifdef WS_EXAMPLES_TLS
#  include <ws/ws_mbedtls.h>
#endif

#include "ws_example_util.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_ORIGINS 16

static ws_loop *loops[MAX_THREADS];
static int nloops;
static unsigned long drain_ms = 5000;
static volatile sig_atomic_t signals;

/* The connection log: the request's path, then open and close lines. */
static int on_request(ws_loop_conn *conn, void *ud, const ws_request *req) {
  (void)ud;
  ex_log_request(conn, req, 0);
  /* The log's state (peer, path, start time: ~48 B per connection) only
   * when there is a log: with -q an idle connection costs what the
   * library and the loop hold, nothing more. */
  if (ex_verbosity >= 1) ex_conn_new(conn, req);
  return 0; /* accept */
}

static int on_open(ws_loop_conn *conn, void *ud) {
  (void)ud;
  ex_log_open(conn);
  return 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *info) {
  (void)ud;
  ex_log_close(conn, info);
  ex_conn_free(conn);
  return 0;
}

/* Echo. If the output queue is full, pause: the loop hands us the same
 * message again once the queue has drained. */
static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  (void)ud;
  ws_opcode op = ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
  int rv = ws_loop_send(conn, op, ev->data.base, ev->data.len, 0);
  return rv == WS_ERR_WOULDBLOCK ? WS_LOOP_PAUSE : 0;
}

static void on_signal(int sig) {
  static const char msg[] = "echo-server: shutting down: close 1001, new "
                            "upgrades get 503 until the drain ends (again "
                            "to stop at once)\n";
  (void)sig;
  if (signals++) { /* the second one */
    for (int i = 0; i < nloops; i++)
      ws_loop_stop(loops[i]);
    return;
  }
  ex_notify("STOPPING=1"); /* all async-signal-safe */
  if (ex_verbosity > 0) (void)!write(2, msg, sizeof(msg) - 1);
  for (int i = 0; i < nloops; i++)
    ws_loop_shutdown(loops[i], 1001, 0, (uint32_t)drain_ms);
}

static void *run(void *arg) {
  return (void *)(intptr_t)ws_loop_run(arg);
}

static int usage(FILE *f, const char *argv0) {
  fprintf(
      f,
      "usage: %s [options]\n"
      "  --host HOST              IPv4 or IPv6 address or host name\n"
      "                           (127.0.0.1)\n"
      "  --port N                 TCP port, 0 for any free one (9001)\n"
      "  --no-deflate             do not accept permessage-deflate\n"
      "  --max-message BYTES      largest message and frame (1048576;\n"
      "                           67108864 with --autobahn)\n"
      "  --autobahn               the Autobahn testsuite's limits: 64 MiB\n"
      "                           messages, no fragment limit, an output\n"
      "                           queue of the message + 4 MiB (not for a\n"
      "                           public port)\n"
      "  --memory-budget BYTES    per loop, for all its connections; over\n"
      "                           it the client asking is closed 1013 (0:\n"
      "                           none, the default)\n"
      "  --max-conns N            connections at once, per loop (0: any)\n"
      "  --max-conns-per-ip N     ... from one address (0: any)\n"
      "  --max-handshakes N       opening (and TLS) handshakes at once, per\n"
      "                           loop (0: any)\n"
      "  --max-pmd-context N      connections per loop that keep a deflate\n"
      "                           context (up to 282 KiB each at window 15);\n"
      "                           later ones get no context takeover (64;\n"
      "                           0: no cap, the default with --autobahn)\n"
      "  --origin ORIGIN          allow this Origin (repeatable; exact, or\n"
      "                           a pattern: https://*.example.com); with\n"
      "                           any, other browser origins get 403\n"
      "  --handshake-timeout MS   drop clients that do not finish the\n"
      "                           opening handshake in time (10000)\n"
      "  --threads N              N loops on one SO_REUSEPORT port (1)\n"
      "  --tls-cert FILE          serve wss://: the certificate chain (PEM)\n"
      "  --tls-key FILE           ... and its private key (PEM)\n"
      "  --drain MS               on SIGINT/SIGTERM: keep answering 503 and\n"
      "                           wait for the closes this long (5000)\n"
      "  -q, --quiet              log errors only\n"
      "  -v, --verbose            log requests and totals too\n"
      "  --version                print the version and exit\n"
      "  -h, --help               print this and exit\n"
      "Unless --autobahn, a deflate client is held to the server's window\n"
      "and context reset (WS_CFG_PMD_SYMMETRIC).\n"
      "Logs one line per connection event on stderr. Under systemd socket\n"
      "activation (LISTEN_FDS) it serves the sockets passed in instead of\n"
      "--host/--port, and it notifies readiness (NOTIFY_SOCKET).\n",
      argv0);
  return f == stdout ? 0 : 2;
}

static int num(const char *s, unsigned long lo, unsigned long hi,
               unsigned long *out) {
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *cert = NULL, *key = NULL;
  ex_log_init("echo-server");
  unsigned long port = 9001, maxmsg = 0, hs_ms = 10000, threads = 1;
  unsigned long budget = 0, max_conns = 0, per_ip = 0, max_hs = 0;
  unsigned long max_pmd = ULONG_MAX; /* not given: see below */
  const char *origins[MAX_ORIGINS];
  size_t norigins = 0;
  int deflate = 1, autobahn = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout, argv[0]);
    if (!strcmp(a, "--version")) return ex_version("echo-server");
    if (!strcmp(a, "--no-deflate")) {
      deflate = 0;
      continue;
    }
    if (!strcmp(a, "--autobahn")) {
      autobahn = 1;
      continue;
    }
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") ||
        !strcmp(a, "--verbose")) {
      ex_verbosity = a[1] == 'q' || a[2] == 'q' ? 0 : 2;
      continue;
    }
    if (!v) return usage(stderr, argv[0]);
    i++;
    if (!strcmp(a, "--host"))
      host = v;
    else if (!strcmp(a, "--tls-cert"))
      cert = v;
    else if (!strcmp(a, "--tls-key"))
      key = v;
    else if (!strcmp(a, "--origin") && norigins < MAX_ORIGINS)
      origins[norigins++] = v;
    else if (!strcmp(a, "--port") ? num(v, 0, 65535, &port)
             : !strcmp(a, "--max-message")
                 ? num(v, 1, 0xffffffffu - (8u << 20), &maxmsg)
             : !strcmp(a, "--handshake-timeout") ? num(v, 0, 86400000, &hs_ms)
             : !strcmp(a, "--threads")       ? num(v, 1, MAX_THREADS, &threads)
             : !strcmp(a, "--memory-budget") ? num(v, 0, ULONG_MAX, &budget)
             : !strcmp(a, "--max-conns") ? num(v, 0, 0xffffffffu, &max_conns)
             : !strcmp(a, "--max-conns-per-ip")
                 ? num(v, 0, 0xffffffffu, &per_ip)
             : !strcmp(a, "--max-handshakes") ? num(v, 0, 0xffffffffu, &max_hs)
             : !strcmp(a, "--drain")         ? num(v, 0, 86400000, &drain_ms)
             : !strcmp(a, "--max-pmd-context")
                 ? num(v, 0, 0xffffffffu, &max_pmd)
                 : -1)
      return usage(stderr, argv[0]);
  }

  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  if (autobahn) { /* its cases send up to 16 MiB in up to 1M fragments */
    cfg.max_fragments = 0;
    if (!maxmsg) maxmsg = 64ul << 20;
  }
  if (maxmsg) { /* else the library's safe defaults */
    cfg.max_message = cfg.max_frame_payload = maxmsg;
    cfg.max_out_queue = (uint32_t)(maxmsg + (4u << 20)); /* an echo fits */
  }
  cfg.handshake_timeout_ms = (uint32_t)hs_ms;
  cfg.pmd.enable = (uint8_t)deflate;
  /* A public port: no client makes us echo many times what it sent, and
   * deflate contexts (up to 282 KiB each, for the connection's life) are
   * capped; Autobahn's cases 13.x expect neither. */
  if (!autobahn) cfg.flags |= WS_CFG_PMD_SYMMETRIC;
  if (max_pmd == ULONG_MAX) max_pmd = autobahn ? 0 : 64;

  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_request = on_request;
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_close = on_close;
  lc.memory_budget = budget;

  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.host = host;
  lp.port = (uint16_t)port;
  lp.config = &cfg;
  lp.flags = threads > 1 ? WS_LOOP_REUSEPORT : 0;
  lp.max_conns = (uint32_t)max_conns;
  lp.max_conns_per_ip = (uint32_t)per_ip;
  lp.max_handshakes = (uint32_t)max_hs;
  lp.max_pmd_context = (uint32_t)max_pmd;
  lp.origins = origins;
  lp.norigins = norigins;
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx *tls = NULL;
  ws_loop_transport tp;
  if (cert || key) { /* wss://: every connection goes through TLS */
    ws_tls_params tlsp;
    char err[400];
    memset(&tlsp, 0, sizeof(tlsp));
    tlsp.role = WS_ROLE_SERVER;
    tlsp.cert_file = cert;
    tlsp.key_file = key;
    if (ws_tls_ctx_new(&tls, &tlsp, err, sizeof(err)) != 0) {
      ex_log(0, "%s", err);
      return 1;
    }
    ws_tls_transport(&tp, tls); /* one context, shared by the threads */
    lp.transport = &tp;
  }
#else
  if (cert || key) {
    fprintf(stderr, "echo-server: TLS is not built in (meson setup "
                    "-Dtls=mbedtls)\n");
    return 2;
  }
#endif
  int nfds = ex_listen_fds(); /* systemd socket activation */
  for (unsigned long i = 0; i < threads; i++) {
    uint16_t bound = 0;
    char e[160];
    int rv = ws_loop_new(&loops[i], &lc);
    if (rv == 0) /* the loop's own refusals (400, 503, 403...) logged too */
      ws_loop_set_on_refused(loops[i], ex_on_refused, NULL);
    for (int k = 0; rv == 0 && k < nfds; k++) { /* each loop its own copy */
      int fd = i + 1 < threads ? dup(3 + k) : 3 + k;
      rv = fd < 0 ? WS_LOOP_ERR_IO
                  : ws_loop_listen_fd(loops[i], fd, &lp, &bound);
      if (rv != 0) {
        ex_log(0, "cannot listen on the socket passed in (fd %d): %s", 3 + k,
               ex_errtext(rv, errno, e, sizeof(e)));
        return 1;
      }
    }
    if (rv == 0 && nfds == 0) rv = ws_loop_listen(loops[i], &lp, &bound);
    if (rv != 0) {
      ex_log(0, "cannot listen on %s port %lu: %s", host, port,
             ex_errtext(rv, errno, e, sizeof(e)));
      return 1;
    }
    nloops++;
    lp.port = bound; /* the other loops share the port picked first */
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (nfds) host = "(sockets from systemd)";
  printf(strchr(host, ':') ? "echo-server listening on %s://[%s]:%u/%s\n"
                           : "echo-server listening on %s://%s:%u/%s\n",
         lp.transport ? "wss" : "ws", host, (unsigned)lp.port,
         deflate ? " (permessage-deflate)" : "");
  fflush(stdout);
  ex_notify("READY=1");

  pthread_t tids[MAX_THREADS];
  for (int i = 1; i < nloops; i++)
    pthread_create(&tids[i], NULL, run, loops[i]);
  int rv = ws_loop_run(loops[0]);
  for (int i = 1; i < nloops; i++) pthread_join(tids[i], NULL);
  for (int i = 0; i < nloops; i++) {
    ex_log_totals(loops[i]);
    ws_loop_del(loops[i]);
  }
  if (rv != 0)
    ex_log(0, "stopped: %s", ws_loop_strerror(rv));
  else
    ex_log(1, "stopped");
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx_del(tls);
#endif
  return rv == 0 ? 0 : 1;
}
