/*
 * ws-proxy: a WebSocket reverse proxy (what a CDN edge runs in front of
 * an origin), on the loop (<ws/ws_loop.h>) and, for wss://, the mbedTLS
 * adapter.
 *
 *   ws-proxy --listen [HOST:]PORT --upstream ws[s]://HOST:PORT[/PATH] ...
 *
 * Each client gets its own connection to an upstream (handshake.c,
 * upstream.c), and messages, backpressure and closes go across
 * (relay.c). Metering: one JSON line per connection at its end
 * (access_log.c) and Prometheus counters on --admin HOST:PORT
 * (metrics.c). SIGTERM (or SIGINT): the listeners close at once (a new
 * process bound to the same port with SO_REUSEPORT takes over), every
 * client gets 1012 and every upstream 1001, and the process exits when
 * they are closed or after --drain-timeout. This file starts it all.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include "proxy.h"
#ifdef WS_EXAMPLES_TLS
#  include <ws/ws_mbedtls.h>
#endif

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

ws_config up_cfg, cl_cfg;
worker workers[MAX_THREADS];
int nworkers;

/* Client side: streaming, large messages, bounded by the high water. */
static void make_configs(void) {
  ws_config_default(&cl_cfg, WS_ROLE_SERVER);
  cl_cfg.delivery = WS_DELIVER_STREAM;
  cl_cfg.max_message = cl_cfg.max_frame_payload = opt.max_message;
  cl_cfg.max_fragments = 0;
  cl_cfg.max_out_queue = opt.high_water * 4u + (16u << 20);
  cl_cfg.ping_interval_ms = opt.ping_ms;
  cl_cfg.pong_timeout_ms = opt.idle_ms;
  cl_cfg.pmd.enable = (uint8_t)opt.deflate_client;
  /* a client may not make the proxy compress with less history than it
   * used itself (output amplification), unless --autobahn */
  if (!opt.autobahn) cl_cfg.flags |= WS_CFG_PMD_SYMMETRIC;
  up_cfg = cl_cfg;
  up_cfg.role = WS_ROLE_CLIENT;
  up_cfg.flags &= ~WS_CFG_PMD_SYMMETRIC; /* a server's policy */
  up_cfg.ping_interval_ms = opt.up_ping_ms;
  up_cfg.pong_timeout_ms = opt.up_idle_ms;
  up_cfg.handshake_timeout_ms = opt.connect_ms;
  up_cfg.pmd.enable = (uint8_t)opt.deflate_upstream;
}

#ifdef WS_EXAMPLES_TLS
static ws_tls_ctx *stls, *ctls;

static int tls_ctx(ws_tls_ctx **pctx, ws_loop_transport *tp, ws_role role) {
  char err[400];
  ws_tls_params p;
  memset(&p, 0, sizeof(p));
  p.role = role;
  p.cert_file = role == WS_ROLE_SERVER ? opt.cert : NULL;
  p.key_file = role == WS_ROLE_SERVER ? opt.key : NULL;
  if (role == WS_ROLE_CLIENT)
    p.ca_file = opt.ca ? opt.ca : "/etc/ssl/certs/ca-certificates.crt";
  if (ws_tls_ctx_new(pctx, &p, err, sizeof(err)) != 0) {
    fprintf(stderr, "ws-proxy: %s\n", err);
    return -1;
  }
  ws_tls_transport(tp, *pctx);
  return 0;
}
#endif

/* wss:// on either side. Returns 0, or the exit status. */
static int setup_tls(void) {
#ifdef WS_EXAMPLES_TLS
  static ws_loop_transport stp, ctp;
  if (opt.cert || opt.key) {
    if (tls_ctx(&stls, &stp, WS_ROLE_SERVER) != 0) return 1;
    opt.listen_tp = &stp;
  }
  for (int i = 0; i < opt.nups; i++) {
    if (!opt.ups[i].u.secure) continue;
    if (!ctls && tls_ctx(&ctls, &ctp, WS_ROLE_CLIENT) != 0) return 1;
    opt.ups[i].tp = &ctp;
  }
#else
  int secure_up = 0;
  for (int i = 0; i < opt.nups; i++)
    secure_up |= opt.ups[i].u.secure;
  if (opt.cert || opt.key || secure_up) {
    fprintf(stderr, "ws-proxy: TLS is not built in (meson setup "
                    "-Dtls=mbedtls)\n");
    return 2;
  }
#endif
  return 0;
}

/* One loop per thread on one SO_REUSEPORT port; the admin listener on
 * the first. Sets |*pport|. Returns 0, or the exit status. */
static int start_loops(uint16_t *pport) {
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = on_request;
  lc.callbacks.on_http = on_http;
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_writable = on_writable;
  lc.callbacks.on_close = on_close;
  lc.high_water = opt.high_water;
  lc.low_water = opt.high_water / 4;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.host = opt.listen_host;
  lp.port = opt.listen_port;
  lp.config = &cl_cfg;
  lp.max_pmd_context = opt.autobahn ? 0 : opt.max_pmd;
  lp.flags = WS_LOOP_REUSEPORT;     /* a new process can take the port over */
  static ws_loop_transport gate_tp; /* over TLS or plain TCP */
  gate_transport(&gate_tp, opt.listen_tp);
  lp.transport = &gate_tp;
  for (unsigned i = 0; i < opt.threads; i++) {
    uint16_t bound = 0;
    lc.user_data = &workers[i];
    int rv = ws_loop_new(&workers[i].loop, &lc);
    if (rv == 0) /* the loop's own refusals in the access log too */
      ws_loop_set_on_refused(workers[i].loop, access_log_refused, NULL);
    if (rv == 0) rv = ws_loop_listen(workers[i].loop, &lp, &bound);
    if (rv == 0 && i == 0 && opt.have_admin) {
      ws_loop_listen_params ap;
      memset(&ap, 0, sizeof(ap));
      ap.host = opt.admin_host;
      ap.port = opt.admin_port;
      ap.user_data = &admin_tag;
      rv = ws_loop_listen(workers[0].loop, &ap, &opt.admin_port);
    }
    if (rv != 0) {
      fprintf(stderr, "ws-proxy: cannot listen: %s\n", ws_loop_strerror(rv));
      return 1;
    }
    nworkers++;
    lp.port = bound;
  }
  *pport = lp.port;
  return 0;
}

static void *signal_thread(void *arg) {
  sigset_t *set = arg;
  int sig, n = 0;
  while (sigwait(set, &sig) == 0) {
    for (int i = 0; i < nworkers; i++) {
      if (n == 0)
        ws_loop_post_call(workers[i].loop, drain, NULL);
      else
        ws_loop_stop(workers[i].loop); /* a second signal: now */
    }
    n++;
  }
  return NULL;
}

static void *run(void *arg) { return (void *)(intptr_t)ws_loop_run(arg); }

int main(int argc, char **argv) {
  int rv = flags_parse(argc, argv);
  if (rv >= 0) return rv;
  if (opt.log_path) {
    opt.log_fd = open(opt.log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (opt.log_fd < 0) {
      perror(opt.log_path);
      return 1;
    }
  }
  make_configs();
  uint16_t port = 0;
  if ((rv = setup_tls()) != 0 || (rv = start_loops(&port)) != 0) return rv;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* the signal thread takes them */
  signal(SIGPIPE, SIG_IGN);
  pthread_t sig_tid, tids[MAX_THREADS];
  pthread_create(&sig_tid, NULL, signal_thread, &set);
  printf("ws-proxy listening on %s://%s:%u/", opt.listen_tp ? "wss" : "ws",
         opt.listen_host, (unsigned)port);
  if (opt.have_admin)
    printf(" admin http://%s:%u/metrics", opt.admin_host,
           (unsigned)opt.admin_port);
  printf("\n");
  fflush(stdout);
  for (int i = 1; i < nworkers; i++)
    pthread_create(&tids[i], NULL, run, workers[i].loop);
  rv = ws_loop_run(workers[0].loop);
  for (int i = 1; i < nworkers; i++)
    pthread_join(tids[i], NULL);
  for (int i = 0; i < nworkers; i++)
    ws_loop_del(workers[i].loop);
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx_del(stls);
  ws_tls_ctx_del(ctls);
#endif
  return rv == 0 ? 0 : 1;
}
