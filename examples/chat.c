/*
 * chat: one binary that serves a small chat page at http://127.0.0.1:8080/
 * and relays every message typed in any tab to every connected tab over
 * WebSocket (/ws, with permessage-deflate). Open it in two tabs and chat.
 * Plain HTTP comes in through on_http (parsed by the core, under the same
 * limits as a handshake); the WebSocket through on_request. The page
 * connects with wss:// when it was served over https:// (behind a TLS
 * front end such as nginx), else ws://. Logs one line per connection on
 * stderr (-q, -v); systemd socket activation and readiness as
 * echo-server (contrib/systemd/).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_loop.h>

#include "ws_example_util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long max_message = 8192; /* bytes of one chat message */
static char *line_buf;                   /* max_message + 32 */
#define MAX_ORIGINS 16

static const char page[] =
    "<!doctype html><html><head><meta charset=utf-8><title>libws chat</title>"
    "<style>body{font:15px sans-serif;max-width:40em;margin:2em auto}"
    "#log{list-style:none;padding:0;height:22em;overflow-y:auto;"
    "border:1px solid #ccc}#log li{padding:2px 6px}#log li.sys{color:#777}"
    "form{display:flex}#msg{flex:1}</style></head><body>"
    "<h1>libws chat</h1><p id=status>connecting...</p><ul id=log></ul>"
    "<form id=form><input id=msg autocomplete=off autofocus>"
    "<button id=send>Send</button></form><script>\n"
    "const log = document.getElementById('log');\n"
    "const status = document.getElementById('status');\n"
    "function add(text) {\n"
    "  const li = document.createElement('li');\n"
    "  li.textContent = text;\n"
    "  if (text.startsWith('* ')) li.className = 'sys';\n"
    "  log.appendChild(li);\n"
    "  log.scrollTop = log.scrollHeight;\n"
    "}\n"
    "const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';\n"
    "const ws = new WebSocket(scheme + location.host + '/ws');\n"
    "ws.onopen = () => { status.textContent = 'connected' +\n"
    "  (ws.extensions ? ' (' + ws.extensions + ')' : ''); };\n"
    "ws.onmessage = (e) => add(e.data);\n"
    "ws.onclose = (e) => { status.textContent = 'disconnected (' + e.code +\n"
    "  ')'; };\n"
    "document.getElementById('form').onsubmit = (e) => {\n"
    "  e.preventDefault();\n"
    "  const msg = document.getElementById('msg');\n"
    "  if (msg.value && ws.readyState === 1) ws.send(msg.value);\n"
    "  msg.value = '';\n"
    "};\n"
    "</script></body></html>\n";

static ws_loop *loop;
static unsigned next_guest = 1;

static volatile sig_atomic_t signals;

/* Each connection's user data is its ex_conn (the connection log), whose
 * tag is the guest number. */
static unsigned guest(const ws_loop_conn *conn) {
  const ex_conn *x = ws_loop_conn_user_data(conn);
  return x ? x->tag : 0;
}

static void announce(const char *text) {
  ws_loop_broadcast(loop, WS_OP_TEXT, text, strlen(text), NULL, NULL);
}

/* Methods are case-sensitive (RFC 7230 3.1.1). */
static int method_is(const ws_loop_http_request *req, const char *m) {
  return req->method.len == strlen(m) &&
         memcmp(req->method.base, m, req->method.len) == 0;
}

static int on_http(ws_loop_conn *conn, void *ud,
                   const ws_loop_http_request *req) {
  static const ws_kv html[] = {{"Content-Type", "text/html; charset=utf-8"},
                               {"Cache-Control", "no-store"}};
  static const ws_kv allow[] = {{"Allow", "GET, HEAD"}};
  (void)ud;
  if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
    ex_log_request(conn, req, 405);
    return ws_loop_http_respond(conn, 405, allow, 1, NULL, 0), 0;
  }
  if (ws_slice_ieq(req->path, "/") || ws_slice_ieq(req->path, "/index.html")) {
    ex_log_request(conn, req, 200);
    ws_loop_http_respond(conn, 200, html, 2, page, sizeof(page) - 1);
  } else {
    ex_log_request(conn, req, 404);
  }
  return 0; /* anything else: the loop answers 404 (HEAD: no body) */
}

static int on_request(ws_loop_conn *conn, void *ud, const ws_request *req) {
  (void)ud;
  ex_log_request(conn, req, 0);
  ex_conn *x = ex_conn_new(conn, req); /* on_close frees it */
  if (!ws_slice_ieq(req->path, "/ws")) {
    ex_log_refused(conn, req, 404, "no WebSocket at this path (only /ws)");
    return ws_loop_reject(conn, 404, NULL, 0, NULL, 0), 0;
  }
  if (!x) {
    ex_log_refused(conn, req, 503, "out of memory");
    return ws_loop_reject(conn, 503, NULL, 0, NULL, 0), 0;
  }
  x->tag = next_guest++;
  return 0; /* returning without an answer accepts */
}

static int on_open(ws_loop_conn *conn, void *ud) {
  char line[128];
  (void)ud;
  ex_log_open(conn);
  snprintf(line, sizeof(line), "* you are guest-%u", guest(conn));
  ws_loop_send(conn, WS_OP_TEXT, line, strlen(line), 0);
  snprintf(line, sizeof(line), "* guest-%u joined", guest(conn));
  announce(line);
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  size_t cap = max_message + 32; /* never truncates: UTF-8 stays whole */
  (void)ud;
  if (ev->type != WS_EV_TEXT) /* RFC 6455 7.4.1: 1003, cannot accept */
    return ws_loop_close(conn, 1003, "text only", 9), 0;
  int n = snprintf(line_buf, cap, "guest-%u: %.*s", guest(conn),
                   (int)ev->data.len, (const char *)ev->data.base);
  if (n > 0 && (size_t)n < cap)
    ws_loop_broadcast(loop, WS_OP_TEXT, line_buf, (size_t)n, NULL, NULL);
  return 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *info) {
  char line[64];
  (void)ud;
  ex_log_close(conn, info);
  if (guest(conn)) { /* not for a refused request */
    snprintf(line, sizeof(line), "* guest-%u left", guest(conn));
    announce(line);
  }
  ex_conn_free(conn);
  return 0;
}

static void on_signal(int sig) {
  static const char msg[] = "chat: shutting down: close 1001, new upgrades "
                            "get 503 until the drain ends (again to stop at "
                            "once)\n";
  (void)sig;
  if (signals++) { /* the second one */
    ws_loop_stop(loop);
    return;
  }
  ex_notify("STOPPING=1"); /* all async-signal-safe */
  if (ex_verbosity > 0) (void)!write(2, msg, sizeof(msg) - 1);
  ws_loop_shutdown(loop, 1001, 0, 3000);
}

static int usage(FILE *f, const char *argv0) {
  fprintf(f,
          "usage: %s [options]\n"
          "  --host HOST          IPv4 or IPv6 address or host name "
          "(127.0.0.1)\n"
          "  --port N             TCP port, 0 for any free one (8080)\n"
          "  --max-message BYTES  largest chat message (8192)\n"
          "  --origin ORIGIN      also allow pages of ORIGIN (an exact origin\n"
          "                       or a host pattern such as *.example.com;\n"
          "                       repeatable; this server's own host always)\n"
          "  --memory-budget BYTES  loop-wide memory budget (0: none)\n"
          "  --max-conns N        connections at once (0: any)\n"
          "  --max-conns-per-ip N   of them from one address (0: any)\n"
          "  --max-pmd-context N  connections keeping a deflate context\n"
          "                       (up to 282 KiB each); later ones get no\n"
          "                       context takeover (64; 0: no cap)\n"
          "  -q, --quiet          log errors only\n"
          "  -v, --verbose        log every HTTP request and totals too\n"
          "  --version            print the version and exit\n"
          "  -h, --help           print this and exit\n"
          "Serves the chat page at / and the WebSocket at /ws. Logs one line\n"
          "per connection event on stderr. Under systemd socket activation\n"
          "(LISTEN_FDS) it serves the sockets passed in instead of --host\n"
          "and --port, and it notifies readiness (NOTIFY_SOCKET).\n",
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

/* Limits for a public port: --memory-budget BYTES (0: none),
 * --max-conns N, --max-conns-per-ip N (0: any), --max-pmd-context N
 * (0: no cap). A browser page from
 * another site must not reach the chat in its visitor's name (RFC 6455
 * 10.2): only pages of this server's own host are allowed, plus every
 * --origin ORIGIN (repeatable: an exact origin, or a host pattern
 * such as *.example.com). */
static int limit_arg(const char *a, const char *v, uint64_t *budget,
                     ws_loop_listen_params *lp) {
  char *end = NULL;
  unsigned long long n = strtoull(v, &end, 10);
  if (!*v || *end || *v == '-') return -1;
  if (!strcmp(a, "--memory-budget"))
    *budget = n;
  else if (n > 0xffffffffu)
    return -1;
  else if (!strcmp(a, "--max-conns"))
    lp->max_conns = (uint32_t)n;
  else if (!strcmp(a, "--max-conns-per-ip"))
    lp->max_conns_per_ip = (uint32_t)n;
  else if (!strcmp(a, "--max-pmd-context"))
    lp->max_pmd_context = (uint32_t)n;
  else
    return -1;
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  unsigned long port = 8080;
  uint64_t budget = 0;
  static const char *origins[MAX_ORIGINS];
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.max_pmd_context = 64; /* deflate contexts: up to 282 KiB each */
  ex_log_init("chat");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout, argv[0]);
    if (!strcmp(a, "--version")) return ex_version("chat");
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet") || !strcmp(a, "-v") ||
        !strcmp(a, "--verbose")) {
      ex_verbosity = a[1] == 'q' || a[2] == 'q' ? 0 : 2;
      continue;
    }
    if (!v) return usage(stderr, argv[0]);
    i++;
    if (!strcmp(a, "--host"))
      host = v;
    else if (!strcmp(a, "--origin") && lp.norigins < MAX_ORIGINS)
      origins[lp.norigins++] = v;
    else if (!limit_arg(a, v, &budget, &lp))
      continue;
    else if (!strcmp(a, "--port")          ? num(v, 0, 65535, &port)
             : !strcmp(a, "--max-message") ? num(v, 1, 16ul << 20, &max_message)
                                           : -1)
      return usage(stderr, argv[0]);
  }
  line_buf = malloc(max_message + 32);
  if (!line_buf) {
    ex_log(0, "out of memory");
    return 1;
  }
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = max_message;
  cfg.pmd.enable = 1;
  cfg.flags |= WS_CFG_PMD_SYMMETRIC; /* no echo many times the input */

  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_http = on_http;
  lc.callbacks.on_request = on_request;
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_close = on_close;
  lc.memory_budget = budget;
  lp.origins = origins;
  lp.origin_flags = WS_ORIGIN_SAME_HOST; /* this server's own pages */
  lp.host = host;
  lp.port = (uint16_t)port;
  lp.config = &cfg;
  uint16_t bound = 0;
  char e[160];
  int nfds = ex_listen_fds(); /* systemd socket activation */
  int rv = ws_loop_new(&loop, &lc);
  if (rv == 0) /* the loop's own refusals (400, 503, 403...) logged too */
    ws_loop_set_on_refused(loop, ex_on_refused, NULL);
  for (int k = 0; rv == 0 && k < nfds; k++) {
    rv = ws_loop_listen_fd(loop, 3 + k, &lp, &bound);
    if (rv != 0) {
      ex_log(0, "cannot listen on the socket passed in (fd %d): %s", 3 + k,
             ex_errtext(rv, errno, e, sizeof(e)));
      return 1;
    }
  }
  if (rv == 0 && nfds == 0) rv = ws_loop_listen(loop, &lp, &bound);
  if (rv != 0) {
    ex_log(0, "cannot listen on %s port %lu: %s", host, port,
           ex_errtext(rv, errno, e, sizeof(e)));
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (nfds) host = "(sockets from systemd)";
  printf(strchr(host, ':') ? "chat: open http://[%s]:%u/ in two tabs\n"
                           : "chat: open http://%s:%u/ in two tabs\n",
         host, (unsigned)bound);
  fflush(stdout);
  ex_notify("READY=1");
  rv = ws_loop_run(loop);
  ex_log_totals(loop);
  ws_loop_del(loop);
  free(line_buf);
  if (rv != 0)
    ex_log(0, "stopped: %s", ws_loop_strerror(rv));
  else
    ex_log(1, "stopped");
  return rv == 0 ? 0 : 1;
}
