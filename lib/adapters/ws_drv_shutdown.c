/*
 * Stopping: ws_loop_stop() and the graceful shutdown (stop accepting
 * upgrades, close every connection with 1001 or 1012 spread over a
 * window, wait for the close handshakes up to a deadline, drop the rest).
 * Both may be asked for from any thread or a signal handler: they only
 * set atomics and wake the loop, which applies them on its own thread.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <string.h>

void ws_loop_stop(ws_loop *l) {
  if (!l) return;
  atomic_store(&l->stop_req, 1);
  l->poller.wake(l->poller.self);
}

void ws_loop_shutdown(ws_loop *l, uint16_t code, uint32_t spread_ms,
                      uint32_t drain_ms) {
  if (!l) return;
  atomic_store(&l->sd_req_code, code ? code : 1001u);
  atomic_store(&l->sd_req_spread, spread_ms);
  atomic_store(&l->sd_req_drain, drain_ms);
  atomic_store(&l->shutdown_req, 1);
  l->poller.wake(l->poller.self);
}

/* When to close an open connection: at once, or at a random moment
 * within |spread| so that clients do not all come back at once. */
static void schedule_close(ws_loop_conn *c, uint32_t spread) {
  ws_loop *l = conn_loop(c);
  uint32_t r = 0;
  conn_aux *a = NULL;
  if (spread && l->sys.rand(l->sys.self, (uint8_t *)&r, sizeof(r)) == 0)
    r %= spread;
  /* (without memory for the timer: at once) */
  if (r == 0 || !(a = conn_aux_get(c))) {
    conn_shutdown_close(c);
    return;
  }
  c->flags |= F_SD_CLOSE;
  a->drv_at = l->now + r;
  heap_update(l, c, conn_deadline(c));
}

/* A server connection that has given the core no byte yet. */
static int idle_accepted(const ws_loop_conn *c) {
  ws_stats st;
  ws_conn_stats(CONN_WS(c), &st);
  return st.wire_in == 0;
}

static void start_drain(ws_loop *l) {
  static const ws_kv ra[] = {{"Retry-After", "5"}};
  unsigned code = atomic_load(&l->sd_req_code);
  uint32_t spread = atomic_load(&l->sd_req_spread);
  l->draining = 1;
  l->sd_code = (uint16_t)(code == 1012 ? 1012
                          : ws_close_code_valid((uint16_t)code) ? code
                                                                : 1001);
  l->drain_deadline = drv_clock(l) + atomic_load(&l->sd_req_drain);
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(l, i);
    if (!c || c->state != C_WS) continue;
    ws_state st = ws_conn_state(CONN_WS(c));
    if (st == WS_STATE_OPEN) {
      schedule_close(c, spread);
    } else if (st == WS_STATE_CONNECTING && (c->flags & F_PAUSED) &&
               c->aux->ev.type == WS_EV_REQUEST) {
      /* a request the application has not answered yet */
      ws_conn_reject(CONN_WS(c), 503, ra, 1, NULL, 0);
      conn_mark_again(c);
    } else if (st == WS_STATE_CONNECTING && c->role == WS_ROLE_SERVER &&
               !(c->flags & F_KNOWN) && idle_accepted(c)) {
      /* not a byte of a request yet (a browser's speculative connection,
       * or a TLS handshake): nothing to answer, and nothing to wait for */
      conn_drop(c, "draining");
    }
  }
}

void drv_take_requests(ws_loop *l) {
  if (atomic_exchange(&l->stop_req, 0)) l->stopped = 1;
  if (atomic_exchange(&l->shutdown_req, 0) && !l->draining) start_drain(l);
}

/* A listener of our own (not handed over by ws_loop_listen_fd()) keeps
 * the drain going to its deadline: until then new connections get 503,
 * which a proxy in front can retry elsewhere, instead of a refusal. */
static int own_listener(const ws_loop *l) {
  for (const listener *s = l->listeners; s; s = s->next)
    if (!s->handed) return 1;
  return 0;
}

void drv_check_drain(ws_loop *l) {
  if (!l->draining) return;
  if (l->now < l->drain_deadline && (l->nconns > 0 || own_listener(l))) return;
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(l, i);
    if (c) conn_destroy(c, WS_LOOP_ERR_SHUTDOWN);
  }
  drv_close_listeners(l);
  l->stopped = 1;
}
