/*
 * wscat: a WebSocket debugging client (and, with -l, server). Lines read
 * from stdin are sent as text messages; what arrives is printed on stdout
 * ("< text", binary and control frames as hex). Status goes to stderr.
 * A thread reads stdin and hands the lines to the loop with
 * ws_loop_post_send(), the thread-safe way in. wss:// URLs go through
 * the mbedTLS adapter (<ws/ws_mbedtls.h>), which verifies the server's
 * certificate against --ca (by default Debian's CA bundle).
 *
 * Exit status: 0 after a normal close (1000, 1001 or no code), 1 if the
 * connection, TLS (a certificate that does not verify, say) or the
 * opening handshake failed (the reason or HTTP status is shown), 2 for
 * bad usage, 3 if the peer closed with an error code or the connection
 * broke.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_loop.h>
#ifdef WS_EXAMPLES_TLS
#  include <ws/ws_mbedtls.h>
#endif

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEADERS 16
#define DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt" /* Debian's bundle */
#define MAX_PROTOCOLS 8

static ws_loop *loop;
static uint64_t conn_id; /* 0 in listen mode: stdin goes to everyone */
static int listening, opened, exit_status = 1;
static pthread_t reader;
static int reader_started;
#ifdef WS_EXAMPLES_TLS
static ws_tls_ctx *tls;
#endif

static void print_hex(const char *tag, ws_slice s) {
  printf("< [%s %zu]%s", tag, s.len, s.len ? " " : "");
  for (size_t i = 0; i < s.len; i++) printf("%02x", s.base[i]);
  putchar('\n');
  fflush(stdout);
}

static void free_line(void *p) { free(*(char **)p); }

static void *read_stdin(void *arg) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  (void)arg;
  pthread_cleanup_push(free_line, &line); /* main may cancel us in getline */
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') n--;
    if (n > 0 && line[n - 1] == '\r') n--;
    struct timespec ms = {0, 1000000};
    while (ws_loop_post_send(loop, conn_id, WS_OP_TEXT, line, (size_t)n, 0) ==
           WS_ERR_WOULDBLOCK)
      nanosleep(&ms, NULL); /* the loop is behind: wait for it */
  }
  if (!listening) ws_loop_post_close(loop, conn_id, 1000, NULL);
  pthread_cleanup_pop(1);
  return NULL;
}

static int on_open(ws_loop_conn *conn, void *ud) {
  char peer[64];
  ws_pmd_params pmd;
  ws_slice proto = ws_conn_protocol(ws_loop_conn_ws(conn));
  (void)ud;
  opened = 1;
  ws_conn_pmd(ws_loop_conn_ws(conn), &pmd);
  ws_loop_conn_peer(conn, peer, sizeof(peer));
  fprintf(stderr, "connected %s %s", listening ? "from" : "to", peer);
  if (proto.len) fprintf(stderr, ", subprotocol %.*s", (int)proto.len,
                         (const char *)proto.base);
  if (pmd.enabled) fprintf(stderr, ", permessage-deflate");
  fprintf(stderr, "\n");
  if (!listening && !reader_started) {
    conn_id = ws_loop_conn_id(conn);
    reader_started = pthread_create(&reader, NULL, read_stdin, NULL) == 0;
  }
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  (void)conn;
  (void)ud;
  if (ev->type == WS_EV_BINARY) {
    print_hex("binary", ev->data);
    return 0;
  }
  printf("< %.*s\n", (int)ev->data.len, (const char *)ev->data.base);
  fflush(stdout);
  return 0;
}

static int on_control(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  (void)conn;
  (void)ud;
  print_hex(ev->type == WS_EV_PING ? "ping" : "pong", ev->data);
  return 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *in) {
  (void)conn;
  (void)ud;
  if (!opened && !listening) { /* it never got to open */
    if (in->http_status && in->response)
      fprintf(stderr, "handshake failed: HTTP %d %.*s\n", in->http_status,
              (int)in->response->reason.len,
              (const char *)in->response->reason.base);
    else if (in->transport_error) /* TLS: says which check failed */
      fprintf(stderr, "connection failed: %s\n", in->transport_error);
    else
      fprintf(stderr, "connection failed: %s%s%s\n", ws_loop_strerror(in->error),
              in->sys_errno ? ": " : "", in->sys_errno ? strerror(in->sys_errno) : "");
    exit_status = 1;
    return 0;
  }
  fprintf(stderr, "closed: %u%s%.*s%s%s\n", in->code, in->reason.len ? " " : "",
          (int)in->reason.len, (const char *)in->reason.base,
          in->error ? ", " : "",
          in->transport_error ? in->transport_error
          : in->error         ? ws_loop_strerror(in->error)
                              : "");
  int normal = !in->error &&
               (in->code == 1000 || in->code == 1001 || in->code == 1005);
  if (!listening) exit_status = normal ? 0 : 3;
  return 0;
}

/* Ctrl-C: close with 1001 "going away" and exit (async-signal-safe). */
static void on_signal(int sig) {
  (void)sig;
  ws_loop_shutdown(loop, 1001, 0, 2000);
}

static int usage(FILE *f) {
  fprintf(
      f,
      "usage: wscat [options] ws[s]://HOST[:PORT][/PATH]\n"
      "       wscat [options] -l PORT\n"
      "  -H 'Name: value'   extra request header (repeatable)\n"
      "  -s PROTOCOL        offer a subprotocol (repeatable)\n"
      "  --origin ORIGIN    send an Origin header\n"
      "  --ping SECONDS     ping when the connection was idle that long\n"
      "  --no-deflate       do not offer/accept permessage-deflate\n"
      "  --ca FILE          wss://: CA certificates (PEM) to verify the\n"
      "                     server with (" DEFAULT_CA ")\n"
      "  --insecure         wss://: do NOT verify the server (testing only)\n"
      "  -l PORT            listen instead (on --host, 127.0.0.1)\n"
      "  --host ADDR        address to listen on with -l\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *url = NULL, *origin = NULL, *host = "127.0.0.1";
  const char *protos[MAX_PROTOCOLS];
  ws_kv hdrs[MAX_HEADERS];
  char *hbuf[MAX_HEADERS];
  size_t nprotos = 0, nhdrs = 0;
  unsigned long ping = 0, lport = 0;
  int deflate = 1, insecure = 0;
  const char *ca = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (!strcmp(a, "--no-deflate")) {
      deflate = 0;
    } else if (!strcmp(a, "--insecure")) {
      insecure = 1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (a[0] != '-') {
      url = a;
    } else if (!v) {
      return usage(stderr);
    } else if (!strcmp(a, "-H") && nhdrs < MAX_HEADERS) {
      char *colon = strchr(v, ':');
      if (!colon) return usage(stderr);
      hbuf[nhdrs] = strdup(v);
      hbuf[nhdrs][colon - v] = 0;
      hdrs[nhdrs].name = hbuf[nhdrs];
      hdrs[nhdrs].value = hbuf[nhdrs] + (colon - v) + 1 +
                          strspn(colon + 1, " \t");
      nhdrs++;
      i++;
    } else if (!strcmp(a, "-s") && nprotos < MAX_PROTOCOLS) {
      protos[nprotos++] = argv[++i];
    } else if (!strcmp(a, "--origin")) {
      origin = argv[++i];
    } else if (!strcmp(a, "--host")) {
      host = argv[++i];
    } else if (!strcmp(a, "--ca")) {
      ca = argv[++i];
    } else if (!strcmp(a, "--ping") || !strcmp(a, "-l")) {
      unsigned long n = strtoul(v, &end, 10);
      if (*end || n == 0 || n > 65535) return usage(stderr);
      *(a[1] == 'l' ? &lport : &ping) = n;
      i++;
    } else {
      return usage(stderr);
    }
  }
  listening = lport != 0;
  if (listening == (url != NULL)) return usage(stderr);

  ws_config cfg;
  ws_config_default(&cfg, listening ? WS_ROLE_SERVER : WS_ROLE_CLIENT);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = 64u << 20;
  cfg.max_out_queue = 72u << 20;
  cfg.pmd.enable = (uint8_t)deflate;
  cfg.ping_interval_ms = (uint32_t)(ping * 1000);
  cfg.pong_timeout_ms = (uint32_t)(ping * 2000);

  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_control = on_control;
  lc.callbacks.on_close = on_close;
  int rv = ws_loop_new(&loop, &lc);
  if (rv == 0 && listening) {
    ws_loop_listen_params lp;
    memset(&lp, 0, sizeof(lp));
    lp.host = host;
    lp.port = (uint16_t)lport;
    lp.config = &cfg;
    rv = ws_loop_listen(loop, &lp, NULL);
    if (rv == 0) {
      fprintf(stderr, "listening on ws://%s:%lu/\n", host, lport);
      reader_started = pthread_create(&reader, NULL, read_stdin, NULL) == 0;
    }
  } else if (rv == 0) {
    ws_loop_url u;
    if (ws_loop_parse_url(url, &u) != 0) {
      fprintf(stderr, "wscat: %s: need ws[s]://HOST[:PORT][/PATH]\n", url);
      return 2;
    }
    ws_loop_connect_params cp;
    memset(&cp, 0, sizeof(cp));
#ifdef WS_EXAMPLES_TLS
    static ws_loop_transport tp; /* the loop keeps this pointer */
    if (u.secure) {
      ws_tls_params tlsp;
      char err[400];
      memset(&tlsp, 0, sizeof(tlsp));
      tlsp.role = WS_ROLE_CLIENT;
      tlsp.ca_file = ca                              ? ca
                     : access(DEFAULT_CA, R_OK) == 0 ? DEFAULT_CA
                                                     : NULL;
      if (insecure) {
        fprintf(stderr, "wscat: WARNING: --insecure: the server's certificate "
                        "is NOT verified; anyone on the path can read and "
                        "change this connection\n");
        tlsp.flags = WS_TLS_INSECURE_NO_VERIFY;
      }
      if (ws_tls_ctx_new(&tls, &tlsp, err, sizeof(err)) != 0) {
        fprintf(stderr, "wscat: %s\n", err);
        return 1;
      }
      ws_tls_transport(&tp, tls); /* SNI and the name check use u.host */
      cp.transport = &tp;
    }
#else
    if (u.secure || ca || insecure) {
      fprintf(stderr, "wscat: TLS (wss://, --ca, --insecure) is not built in "
                      "(meson setup -Dtls=mbedtls)\n");
      return 2;
    }
#endif
    cp.host = u.host;
    cp.port = u.port;
    cp.request.path = u.path;
    cp.request.origin = origin;
    cp.request.protocols = protos;
    cp.request.nprotocols = nprotos;
    cp.request.headers = hdrs;
    cp.request.nheaders = nhdrs;
    cp.config = &cfg;
    rv = ws_loop_connect(loop, &cp, NULL);
  }
  if (rv != 0) {
    fprintf(stderr, "wscat: %s\n", ws_loop_strerror(rv));
    ws_loop_del(loop);
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  rv = ws_loop_run(loop);
  if (reader_started) { /* it may be blocked in getline(): end it */
    pthread_cancel(reader);
    pthread_join(reader, NULL);
  }
  ws_loop_del(loop);
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx_del(tls);
#endif
  for (size_t i = 0; i < nhdrs; i++) free(hbuf[i]);
  if (listening) return rv == 0 ? 0 : 1;
  return exit_status;
}
