/*
 * chat: one binary that serves a small chat page at http://127.0.0.1:8080/
 * and relays every message typed in any tab to every connected tab over
 * WebSocket (/ws, with permessage-deflate). Open it in two tabs and chat.
 * Plain HTTP comes in through on_http (parsed by the core, under the same
 * limits as a handshake); the WebSocket through on_request.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_loop.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE 8192 /* bytes of one chat message */
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
    "const ws = new WebSocket('ws://' + location.host + '/ws');\n"
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

/* Each connection's user data is its guest number. */
static unsigned guest(const ws_loop_conn *conn) {
  return (unsigned)(uintptr_t)ws_loop_conn_user_data(conn);
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
  if (!method_is(req, "GET") && !method_is(req, "HEAD"))
    return ws_loop_http_respond(conn, 405, allow, 1, NULL, 0), 0;
  if (ws_slice_ieq(req->path, "/") || ws_slice_ieq(req->path, "/index.html"))
    ws_loop_http_respond(conn, 200, html, 2, page, sizeof(page) - 1);
  return 0; /* anything else: the loop answers 404 (HEAD: no body) */
}

static int on_request(ws_loop_conn *conn, void *ud, const ws_request *req) {
  (void)ud;
  if (!ws_slice_ieq(req->path, "/ws"))
    return ws_loop_reject(conn, 404, NULL, 0, NULL, 0), 0;
  ws_loop_conn_set_user_data(conn, (void *)(uintptr_t)next_guest++);
  return 0; /* returning without an answer accepts */
}

static int on_open(ws_loop_conn *conn, void *ud) {
  char line[128];
  (void)ud;
  snprintf(line, sizeof(line), "* you are guest-%u", guest(conn));
  ws_loop_send(conn, WS_OP_TEXT, line, strlen(line), 0);
  snprintf(line, sizeof(line), "* guest-%u joined", guest(conn));
  announce(line);
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  char line[MAX_MESSAGE + 32]; /* never truncates: UTF-8 stays whole */
  (void)ud;
  if (ev->type != WS_EV_TEXT) /* RFC 6455 7.4.1: 1003, cannot accept */
    return ws_loop_close(conn, 1003, "text only", 9), 0;
  int n = snprintf(line, sizeof(line), "guest-%u: %.*s", guest(conn),
                   (int)ev->data.len, (const char *)ev->data.base);
  if (n > 0 && (size_t)n < sizeof(line))
    ws_loop_broadcast(loop, WS_OP_TEXT, line, (size_t)n, NULL, NULL);
  return 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *info) {
  char line[64];
  (void)ud;
  (void)info;
  snprintf(line, sizeof(line), "* guest-%u left", guest(conn));
  announce(line);
  return 0;
}

static void on_signal(int sig) {
  (void)sig;
  ws_loop_shutdown(loop, 1001, 0, 3000);
}

/* Limits for a public port: --memory-budget BYTES (0: none),
 * --max-conns N, --max-conns-per-ip N (0: any). A browser page from
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
  for (int i = 1; i < argc; i++) {
    char *end = NULL;
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = strtoul(argv[++i], &end, 10);
      if (*end || port > 65535) port = 70000;
    } else if (!strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (!strcmp(argv[i], "--origin") && i + 1 < argc &&
               lp.norigins < MAX_ORIGINS) {
      origins[lp.norigins++] = argv[++i];
    } else if (i + 1 < argc && !limit_arg(argv[i], argv[i + 1], &budget, &lp)) {
      i++;
    } else {
      port = 70000;
    }
    if (port > 65535) {
      fprintf(stderr,
              "usage: %s [--port N (8080)] [--host ADDR] [--origin ORIGIN]..."
              "\n  [--memory-budget BYTES] [--max-conns N] "
              "[--max-conns-per-ip N]\n",
              argv[0]);
      return 2;
    }
  }
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = MAX_MESSAGE;
  cfg.pmd.enable = 1;

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
  int rv = ws_loop_new(&loop, &lc);
  if (rv == 0) rv = ws_loop_listen(loop, &lp, &bound);
  if (rv != 0) {
    fprintf(stderr, "chat: cannot listen on %s:%lu: %s\n", host, port,
            ws_loop_strerror(rv));
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf(strchr(host, ':') ? "chat: open http://[%s]:%u/ in two tabs\n"
                           : "chat: open http://%s:%u/ in two tabs\n",
         host, (unsigned)bound);
  fflush(stdout);
  rv = ws_loop_run(loop);
  ws_loop_del(loop);
  return rv == 0 ? 0 : 1;
}
