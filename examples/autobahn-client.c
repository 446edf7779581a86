/*
 * autobahn-client: drives an Autobahn testsuite fuzzingserver. It asks
 * for the number of cases (/getCaseCount), runs each one
 * (/runCase?case=N&agent=AGENT), echoing every message it gets, and then
 * asks the server to write its reports (/updateReports?agent=AGENT).
 * One connection at a time: each on_close starts the next. A wss:// URL
 * goes through the mbedTLS adapter, verified against --ca (by default
 * Debian's CA bundle).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/version.h>
#include <ws/ws_loop.h>
#ifdef WS_EXAMPLES_TLS
#  include <ws/ws_mbedtls.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt" /* Debian's bundle */

static ws_loop_url url;
static const ws_loop_transport *transport; /* NULL: ws://, plain TCP */
static const char *agent = "libws";
static int deflate = 1, ncases = -1, current; /* 0: getCaseCount */
static int failed, reported;

static int connect_to(ws_loop *loop, const char *path) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = 64u << 20; /* 9.x: 16 MiB */
  cfg.max_out_queue = 72u << 20;
  cfg.max_fragments = 0;
  cfg.pmd.enable = (uint8_t)deflate;
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = url.host;
  cp.port = url.port;
  cp.request.path = path;
  cp.config = &cfg;
  cp.transport = transport;
  int rv = ws_loop_connect(loop, &cp, NULL);
  if (rv != 0)
    fprintf(stderr, "autobahn-client: connect: %s\n", ws_loop_strerror(rv));
  return rv;
}

/* Starts the step after |current|: the next case, or updateReports. */
static void next_step(ws_loop *loop) {
  char path[512];
  current++;
  if (current <= ncases)
    snprintf(path, sizeof(path), "/runCase?case=%d&agent=%s", current, agent);
  else if (current == ncases + 1)
    snprintf(path, sizeof(path), "/updateReports?agent=%s", agent);
  else
    return; /* done: with no connection left, ws_loop_run() returns */
  if (connect_to(loop, path) != 0) failed = 1;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  (void)ud;
  if (current == 0) { /* the case count, as text */
    char num[16] = {0};
    memcpy(num, ev->data.base, ev->data.len < 15 ? ev->data.len : 15);
    ncases = atoi(num);
    return 0;
  }
  ws_opcode op = ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
  int rv = ws_loop_send(conn, op, ev->data.base, ev->data.len, 0);
  return rv == WS_ERR_WOULDBLOCK ? WS_LOOP_PAUSE : 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *in) {
  (void)ud;
  if (current == 0) {
    if (ncases < 0) {
      fprintf(stderr, "autobahn-client: no case count (%s)\n",
              in->transport_error
                  ? in->transport_error
                  : ws_loop_strerror(in->error ? in->error : WS_ERR_PROTO));
      failed = 1;
      return 0;
    }
    printf("%d cases\n", ncases);
  } else if (current <= ncases) {
    printf("case %d/%d: closed %u%s%s\n", current, ncases, in->code,
           in->error ? ", " : "", in->error ? ws_loop_strerror(in->error) : "");
  } else {
    printf("reports updated for agent %s\n", agent);
    reported = 1;
  }
  fflush(stdout);
  next_step(ws_loop_conn_loop(conn));
  return 0;
}

int main(int argc, char **argv) {
  const char *u = "ws://127.0.0.1:9001", *ca = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--url") && i + 1 < argc) {
      u = argv[++i];
    } else if (!strcmp(argv[i], "--ca") && i + 1 < argc) {
      ca = argv[++i];
    } else if (!strcmp(argv[i], "--agent") && i + 1 < argc) {
      agent = argv[++i];
    } else if (!strcmp(argv[i], "--no-deflate")) {
      deflate = 0;
    } else if (!strcmp(argv[i], "--version")) {
      printf("autobahn-client (libws %s)\n", WS_VERSION);
      return 0;
    } else {
      int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
      fprintf(help ? stdout : stderr,
              "usage: %s [--url ws[s]://HOST:PORT] [--ca FILE] "
              "[--agent NAME] [--no-deflate] [--version]\n",
              argv[0]);
      return help ? 0 : 2;
    }
  }
  if (ws_loop_parse_url(u, &url) != 0) {
    fprintf(stderr, "autobahn-client: %s: need ws[s]://HOST:PORT\n", u);
    return 2;
  }
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx *tls = NULL;
  static ws_loop_transport tp; /* the loop keeps this pointer */
  if (url.secure) {
    ws_tls_params tlsp;
    char err[400];
    memset(&tlsp, 0, sizeof(tlsp));
    tlsp.role = WS_ROLE_CLIENT;
    tlsp.ca_file = ca ? ca : access(DEFAULT_CA, R_OK) == 0 ? DEFAULT_CA : NULL;
    if (ws_tls_ctx_new(&tls, &tlsp, err, sizeof(err)) != 0) {
      fprintf(stderr, "autobahn-client: %s\n", err);
      return 1;
    }
    ws_tls_transport(&tp, tls);
    transport = &tp;
  }
#else
  if (url.secure || ca) {
    fprintf(stderr, "autobahn-client: TLS (wss://, --ca) is not built in "
                    "(meson setup -Dtls=mbedtls)\n");
    return 2;
  }
#endif
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_close = on_close;
  ws_loop *loop;
  if (ws_loop_new(&loop, &lc) != 0 || connect_to(loop, "/getCaseCount") != 0)
    return 1;
  int rv = ws_loop_run(loop);
  ws_loop_del(loop);
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx_del(tls);
#endif
  return rv != 0 || failed || !reported ? 1 : 0;
}
