/*
 * fw_client: a WebSocket client the way firmware runs one: no OS, no
 * sockets, no clock of the library's own. The board gives a byte
 * transport (a TCP stack, a modem's AT socket, a UART bridge) and a
 * millisecond tick; this file is the whole feed/drain loop. It opens
 * the connection, sends one text message, waits for the echo, closes.
 *
 * Only the core is used (<ws/ws.h>), built freestanding
 * (-DWS_FREESTANDING): it includes nothing beyond <stddef.h>,
 * <stdint.h> and <string.h>, and allocates through the library's fixed
 * arena over the caller's buffer (ws_arena_init(): no malloc anywhere;
 * ws_conn_memsize() says how big that buffer must be).
 * SPDX-License-Identifier: MIT
 */
#include "fw_client.h"

#include <string.h>

/* ---- the loop ---------------------------------------------------------------- */

/* Writes everything the connection has queued, as far as the transport
 * takes it now. Returns -1 on a transport error. */
static int drain(ws_conn *c, const fw_transport *t) {
  ws_iovec v;
  while (ws_conn_out_peek(c, &v, 1) == 1) {
    int n = t->write(t->ctx, v.base, v.len);
    if (n < 0) return -1;
    if (n == 0) break; /* would block: next time round */
    ws_conn_out_consume(c, (size_t)n);
  }
  return 0;
}

/* One event: returns 1 when the client is done. */
static int on_event(ws_conn *c, const ws_event *ev, fw_result *r,
                    const char *text) {
  switch (ev->type) {
  case WS_EV_OPEN:
    ws_conn_send(c, WS_OP_TEXT, text, strlen(text), 0);
    return 0;
  case WS_EV_TEXT: { /* the echo, whole (WS_DELIVER_MESSAGE) */
    size_t n = ev->data.len < sizeof(r->echo) - 1 ? ev->data.len
                                                   : sizeof(r->echo) - 1;
    memcpy(r->echo, ev->data.base, n);
    r->echo[n] = 0;
    ws_conn_close(c, 1000, "done", 4);
    return 0;
  }
  case WS_EV_CLOSE: r->close_code = ev->close_code; return 0;
  case WS_EV_ERROR: r->error = ev->error; return 1;
  default: return 0; /* pings are answered by the core */
  }
}

int fw_client_run(const fw_transport *t, const char *host, const char *path,
                  const char *text, void *mem, size_t memlen, fw_result *r) {
  ws_arena a;
  ws_mem m;
  ws_config cfg;
  ws_conn *c;
  uint8_t buf[512]; /* the read buffer: events borrow it */
  memset(r, 0, sizeof(*r));
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.rand = t->rand;
  cfg.rand_user_data = t->ctx;
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = 1024;
  cfg.max_handshake_bytes = 1024;
  cfg.max_headers = 16;
  cfg.max_out_queue = 1024;
  if (ws_arena_init(&a, mem, memlen, &m) != 0 || ws_conn_new(&c, &cfg, &m) != 0)
    return -1;
  ws_client_params p;
  memset(&p, 0, sizeof(p));
  p.host = host;
  p.path = path;
  int rv = ws_conn_connect(c, &p);
  while (rv == 0 && !ws_conn_should_close_transport(c)) {
    ws_conn_tick(c, t->millis(t->ctx)); /* timers: handshake, keepalive */
    if (drain(c, t) != 0) break;
    int n = t->read(t->ctx, buf, sizeof(buf));
    if (n < 0) {
      ws_conn_feed_eof(c);
    } else if (n == 0) {
      t->idle(t->ctx); /* nothing to read: sleep until the next tick */
    }
    size_t off = 0;
    int done = 0;
    while (!done) {
      size_t used = 0;
      int frv = n > 0 ? ws_conn_feed(c, buf + off, (size_t)n - off, &used)
                      : 0;
      off += used;
      ws_event ev;
      while (!done && ws_conn_next_event(c, &ev) == 0)
        done = on_event(c, &ev, r, text);
      if (n <= 0 || off >= (size_t)n || (frv < 0 && frv != WS_ERR_WOULDBLOCK))
        break;
    }
    if (done || n < 0) break;
  }
  drain(c, t);
  ws_conn_stats(c, &r->stats);
  ws_conn_del(c);
  r->peak_memory = ws_arena_peak(&a);
  return r->error && r->error != WS_ERR_CLOSED ? -1 : 0;
}
