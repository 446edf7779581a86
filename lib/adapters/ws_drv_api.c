/*
 * What the application calls on a connection of the loop (loop thread):
 * answering requests, sending, closing, pausing, and the queries.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <string.h>

int ws_loop_accept(ws_loop_conn *c, const ws_accept_params *params) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_accept(CONN_WS(c), params);
  if (rv == 0) {
    conn_mark_dirty(c);
    if (c->flags & F_PAUSED) conn_mark_again(c); /* the open event waits */
  }
  return rv;
}

int ws_loop_reject(ws_loop_conn *c, int status, const ws_kv *headers,
                   size_t nheaders, const void *body, size_t bodylen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  /* (where the reason for on_close is kept, allocated first: nothing is
   * done without it) */
  conn_aux *a = conn_aux_get(c);
  if (!a) return WS_ERR_NOMEM;
  int rv = ws_conn_reject(CONN_WS(c), status, headers, nheaders, body, bodylen);
  if (rv == 0) {
    a->end_err = (int16_t)WS_ERR_REJECTED;
    a->http_status = (uint16_t)status;
    conn_mark_dirty(c);
    if (c->flags & F_PAUSED) conn_mark_again(c);
  }
  return rv;
}

int ws_loop_http_respond(ws_loop_conn *c, int status, const ws_kv *headers,
                         size_t nheaders, const void *body, size_t bodylen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_respond(CONN_WS(c), status, headers, nheaders, body, bodylen);
  if (rv == 0) conn_mark_dirty(c);
  return rv;
}

int ws_loop_send(ws_loop_conn *c, ws_opcode opcode, const void *data,
                 size_t len, uint32_t flags) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  if (budget_hold_back(c)) return WS_ERR_WOULDBLOCK;
  int rv = ws_conn_send(CONN_WS(c), opcode, data, len, flags);
  if (rv == 0) conn_mark_dirty(c);
  return rv;
}

int ws_loop_ping(ws_loop_conn *c, const void *data, size_t len) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_ping(CONN_WS(c), data, len);
  if (rv == 0) conn_mark_dirty(c);
  return rv;
}

int ws_loop_pong(ws_loop_conn *c, const void *data, size_t len) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_pong(CONN_WS(c), data, len);
  if (rv == 0) conn_mark_dirty(c);
  return rv;
}

int ws_loop_close(ws_loop_conn *c, uint16_t code, const void *reason,
                  size_t reasonlen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_close(CONN_WS(c), code, reason, reasonlen);
  if (rv == 0) conn_mark_dirty(c);
  return rv;
}

/* The message is prepared once, when the first connection takes it
 * (ws_prepared_new(): framed once, compressed once per window and level
 * for the connections whose side keeps no deflate context; the others
 * compress it themselves), then copied into each output queue. Without
 * memory for it, each connection is sent to as by ws_loop_send(). */
int ws_loop_broadcast(ws_loop *l, ws_opcode opcode, const void *data,
                      size_t len, const ws_loop_conn *except,
                      size_t *pnsent) {
  size_t n = 0;
  ws_prepared *prep = NULL;
  int prep_failed = 0;
  if (pnsent) *pnsent = 0;
  if (!l || (len && !data) || (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY))
    return WS_ERR_INVALID_ARGUMENT;
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(l, i);
    if (!c || c == except || c->state != C_WS ||
        ws_conn_state(CONN_WS(c)) != WS_STATE_OPEN || budget_hold_back(c))
      continue;
    if (!prep && !prep_failed &&
        ws_prepared_new(&prep, opcode, data, len, 0, &l->mem) != 0)
      prep_failed = 1;
    int rv = prep ? ws_conn_send_prepared(CONN_WS(c), prep)
                  : ws_conn_send(CONN_WS(c), opcode, data, len, 0);
    if (rv == 0) {
      conn_mark_dirty(c);
      n++;
    }
  }
  ws_prepared_del(prep);
  if (pnsent) *pnsent = n;
  return 0;
}

void ws_loop_resume(ws_loop_conn *c) {
  if (!c || c->state == C_DEAD || !(c->flags & F_PAUSED)) return;
  c->flags |= F_RESUME;
  conn_mark_again(c);
}

uint64_t ws_loop_conn_id(const ws_loop_conn *c) { return c ? c->id : 0; }

ws_loop *ws_loop_conn_loop(const ws_loop_conn *c) {
  return c ? conn_loop(c) : NULL;
}

void *ws_loop_conn_user_data(const ws_loop_conn *c) {
  return c ? c->user_data : NULL;
}

void ws_loop_conn_set_user_data(ws_loop_conn *c, void *ud) {
  if (c) c->user_data = ud;
}

ws_conn *ws_loop_conn_ws(const ws_loop_conn *c) { return c ? CONN_WS(c) : NULL; }

size_t ws_loop_conn_pending(const ws_loop_conn *c) {
  return c ? conn_pending(c) : 0;
}

void ws_loop_conn_peer(const ws_loop_conn *c, char *buf, size_t buflen) {
  if (!buf || buflen == 0) return;
  buf[0] = 0;
  if (!c || c->fd < 0) return;
  const ws_drv_sys *sys = &conn_loop(c)->sys;
  if (sys->peer(sys->self, c->fd, buf, buflen) != 0) buf[0] = 0;
}

/* Stops or restarts reading |c| from the application, for a relay whose
 * other side is congested. It is the pause of WS_LOOP_PAUSE without an
 * event to keep (an empty one is kept: delivering it again does
 * nothing). */
int ws_loop_conn_pause_reading(ws_loop_conn *c, int on) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  if (on) {
    if (c->flags & F_PAUSED) { /* an event is kept already, or paused */
      if (!c->aux || c->aux->ev.type != WS_EV_NONE)
        return WS_ERR_INVALID_STATE;
      c->flags &= ~F_RESUME; /* a resume asked for this round is undone */
      return 0;
    }
    conn_aux *a = conn_aux_get(c);
    if (!a) return WS_ERR_NOMEM;
    memset(&a->ev, 0, sizeof(a->ev)); /* WS_EV_NONE */
    c->flags |= F_PAUSED;
    c->flags &= ~(F_PAUSED_AUTO | F_RESUME);
    conn_mark_dirty(c);
    return 0;
  }
  if ((c->flags & F_PAUSED) && c->aux && c->aux->ev.type == WS_EV_NONE)
    ws_loop_resume(c);
  return 0;
}

void ws_loop_close_listeners(ws_loop *l) {
  if (l) drv_close_listeners(l);
}

/* The answer of a client's opening handshake lives in the core until the
 * next call on it; a connection whose open event is kept (on_open
 * returned WS_LOOP_PAUSE) makes no such call until it is delivered
 * again. */
const ws_response *ws_loop_conn_response(const ws_loop_conn *c) {
  if (c && c == conn_loop(c)->open_conn) return conn_loop(c)->open_resp;
  if (!c || c->state != C_WS || c->role != WS_ROLE_CLIENT ||
      !(c->flags & F_PAUSED) || !c->aux || c->aux->ev.type != WS_EV_OPEN)
    return NULL;
  return c->aux->ev.response;
}

void *ws_loop_conn_transport_ctx(const ws_loop_conn *c) {
  return c && c->state != C_DEAD ? conn_tctx(c) : NULL;
}
