/*
 * ws-consumer: a loop that echoes on 127.0.0.1 and a client of it in the
 * same loop; exits 0 once the echo came back and the library's version
 * is the one it was built against.
 * SPDX-License-Identifier: MIT
 */
#include <ws/version.h>
#include <ws/ws_epoll.h>

#include <stdio.h>
#include <string.h>

static int echoed;

static int on_open(ws_loop_conn *conn, void *ud) {
  if (ud) ws_loop_send(conn, WS_OP_TEXT, "ping", 4, 0); /* the client */
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  if (!ud) /* the server echoes */
    return ws_loop_send(conn, WS_OP_TEXT, ev->data.base, ev->data.len, 0), 0;
  echoed = ev->data.len == 4 && memcmp(ev->data.base, "ping", 4) == 0;
  ws_loop_close(conn, 1000, NULL, 0);
  return 0;
}

int main(void) {
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  ws_loop *loop;
  if (ws_loop_new(&loop, &lc) != 0) return 1;
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.host = "127.0.0.1";
  uint16_t port = 0;
  static int client;
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "127.0.0.1";
  cp.request.path = "/";
  cp.user_data = &client;
  if (ws_loop_listen(loop, &lp, &port) != 0) return 1;
  cp.port = port;
  if (ws_loop_connect(loop, &cp, NULL) != 0) return 1;
  for (int i = 0; i < 2000 && !echoed; i++) ws_loop_run_once(loop, 10);
  ws_loop_del(loop);
  printf("ws-consumer: libws %s (runtime 0x%06x), echo %s\n", WS_VERSION,
         (unsigned)ws_version(), echoed ? "ok" : "FAILED");
  return echoed && ws_version() == WS_VERSION_NUM ? 0 : 1;
}
