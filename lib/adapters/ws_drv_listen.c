/*
 * Listening sockets: ws_loop_listen(), accepting connections, and
 * telling the application about the connections the loop refuses by
 * itself (ws_loop_set_on_refused).
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <errno.h>
#include <string.h>

static void listener_watch(ws_loop *l, listener *s, int on) {
  if (s->watching == on) return;
  if (l->poller.mod(l->poller.self, s->fd, s, on ? WS_DRV_IN : 0) == 0)
    s->watching = (uint8_t)on;
}

void drv_listeners_watch(ws_loop *l, int on) {
  for (listener *s = l->listeners; s; s = s->next) listener_watch(l, s, on);
}

void drv_close_listeners(ws_loop *l) {
  /* Connections outlive their listener (ws_loop_close_listeners() during
   * a graceful restart): they forget it for the loop's |unlisted|, and
   * its caps and counts with it (a handshake that completes later has no
   * count to give back). */
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(l, i);
    if (!c) continue;
    c->lst = &l->unlisted;
    c->flags &= ~(F_HS | F_COUNTED | F_PMDCTX);
  }
  /* the dead ones too: freed at the end of the round, through their loop */
  for (ws_loop_conn *c = l->grave; c; c = c->next_grave)
    c->lst = &l->unlisted;
  if (l->listeners) l->listen_epoch++;
  while (l->listeners) {
    listener *s = l->listeners;
    l->listeners = s->next;
    l->poller.remove(l->poller.self, s->fd);
    l->sys.close(l->sys.self, s->fd);
    /* (its connections keep theirs) */
    ws_conn_shared_del(s->shared[0]);
    ws_conn_shared_del(s->shared[1]);
    /* closed by a callback while the poller's batch is dispatched: later
     * entries must not name it */
    for (int i = 0; i < l->nready; i++)
      if (l->ready[i].tag == s) l->ready[i].tag = NULL;
    drv_free(l, s);
  }
}

listener *drv_listener_new(ws_loop *l, const ws_loop_listen_params *p,
                           int *prv) {
  if (p && p->norigins && !p->origins) {
    *prv = WS_ERR_INVALID_ARGUMENT;
    return NULL;
  }
  listener *s = drv_malloc(l, sizeof(*s));
  if (!s) {
    *prv = WS_ERR_NOMEM;
    return NULL;
  }
  memset(s, 0, sizeof(*s));
  s->h.kind = H_LISTENER;
  s->loop = l;
  s->fd = -1;
  if (p && p->config) {
    s->cfg = *p->config;
  } else { /* the loop's default: on_message gets whole messages */
    ws_config_default(&s->cfg, WS_ROLE_SERVER);
    s->cfg.delivery = WS_DELIVER_MESSAGE;
  }
  s->cfg.role = WS_ROLE_SERVER;
  /* Plain HTTP requests go to on_http when there is one. */
  if (l->cfg.callbacks.on_http) s->cfg.flags |= WS_CFG_HTTP;
  if (p) {
    s->user_data = p->user_data;
    s->tp = p->transport;
    s->max_conns = p->max_conns;
    s->max_per_ip = p->max_conns_per_ip;
    s->max_hs = p->max_handshakes;
    s->max_pmd = p->max_pmd_context;
    s->origins = p->origins;
    s->norigins = p->norigins;
    s->origin_flags = p->origin_flags;
  }
  return s;
}

int drv_listener_add(ws_loop *l, listener *s, int fd) {
  if (l->poller.add(l->poller.self, fd, s, WS_DRV_IN) != 0) return -1;
  s->fd = fd;
  s->watching = 1;
  s->next = l->listeners;
  l->listeners = s;
  return 0;
}

int ws_loop_listen(ws_loop *l, const ws_loop_listen_params *p,
                   uint16_t *pport) {
  int rv = 0;
  if (!l || !p) return WS_ERR_INVALID_ARGUMENT;
  listener *s = drv_listener_new(l, p, &rv);
  if (!s) return rv;
  uint16_t bound = 0;
  errno = 0;
  int fd = l->sys.listen(l->sys.self, p->host, p->port, p->backlog, p->flags,
                         &bound);
  if (fd < 0) {
    int e = errno;
    drv_free(l, s);
    errno = e;
    return e == EINVAL ? WS_ERR_INVALID_ARGUMENT : WS_LOOP_ERR_IO;
  }
  if (drv_listener_add(l, s, fd) != 0) {
    int e = errno;
    l->sys.close(l->sys.self, fd);
    drv_free(l, s);
    errno = e;
    return WS_LOOP_ERR_IO;
  }
  if (pport) *pport = bound;
  return 0;
}

void ws_loop_set_on_refused(ws_loop *loop, ws_loop_refused_fn fn,
                            void *user_data) {
  if (!loop) return;
  loop->on_refused = fn;
  loop->on_refused_ud = user_data;
}

void drv_refused(ws_loop *l, int fd, void *ud, int status, const char *reason,
                 const ws_request *req) {
  char peer[64];
  ws_loop_refusal r;
  if (!l->on_refused) return;
  peer[0] = 0;
  if (fd >= 0 && l->sys.peer(l->sys.self, fd, peer, sizeof(peer)) != 0)
    peer[0] = 0;
  memset(&r, 0, sizeof(r));
  r.size = (uint32_t)sizeof(r);
  r.status = status;
  r.reason = reason;
  r.peer = peer;
  r.request = req;
  r.listener_user_data = ud;
  drv_note_rv(l, l->on_refused(l, l->on_refused_ud, &r));
}

/* Out of descriptors or memory: stop accepting for a moment rather than
 * spin on a listener that stays readable. */
static void accept_pause(ws_loop *l) {
  drv_listeners_watch(l, 0);
  l->listen_paused = 1;
  l->listen_resume_at = drv_clock(l) + LISTEN_PAUSE_MS;
}

/* drv_refused() from the accept round: returns 1 if the application
 * closed the listeners meanwhile (ws_loop_close_listeners() from
 * on_refused), so that the round ends before it touches |s| again. */
static int refused_at_accept(ws_loop *l, listener *s, int fd, int status,
                             const char *reason) {
  uint32_t epoch = l->listen_epoch;
  drv_refused(l, fd, s->user_data, status, reason, NULL);
  return l->listen_epoch != epoch;
}

/* The ws_conn_shared of |s| for |cfg| (its own, or the one budget_admit()
 * made with both no_context_takeover), created on first use; NULL when
 * out of memory (the connection then has its own copy). */
static ws_conn_shared *listener_shared(ws_loop *l, listener *s,
                                       const ws_config *cfg) {
  int i = cfg->pmd.server_no_context_takeover !=
              s->cfg.pmd.server_no_context_takeover ||
          cfg->pmd.client_no_context_takeover !=
              s->cfg.pmd.client_no_context_takeover;
  if (!s->shared[i] && ws_conn_shared_new(&s->shared[i], cfg, &l->mem) != 0)
    s->shared[i] = NULL;
  return s->shared[i];
}

void drv_accept_round(ws_loop *l, listener *s) {
  for (int i = 0; i < ACCEPT_BUDGET; i++) {
    int fd = l->sys.accept(l->sys.self, s->fd);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM)
        accept_pause(l);
      return;
    }
    ws_config cfg = s->cfg;
    uint32_t fl;
    uint64_t ip;
    if (budget_admit(l, s, fd, &cfg, &fl, &ip) != 0) {
      /* over a cap, with TLS or with too many waiting for their 503 */
      int gone = refused_at_accept(l, s, fd, 0, budget_cap_reason(fl));
      l->sys.close(l->sys.self, fd);
      if (gone) return;
      continue;
    }
    ws_loop_conn *c = conn_new(l, fd, WS_ROLE_SERVER, &cfg,
                               listener_shared(l, s, &cfg), s->tp,
                               s->user_data, budget_tail(s));
    if (!c) {
      int gone = refused_at_accept(l, s, fd, 0, budget_nomem_reason(l, 0));
      l->sys.close(l->sys.self, fd);
      if (gone) return;
      continue;
    }
    c->lst = s;
    c->flags |= fl;
    conn_set_peer_hash(c, ip);
    budget_count(c);
    const ws_loop_transport *tp = conn_tp(c);
    if ((c->flags & F_TP) && tp->attach &&
        tp->attach(tp->user_data, fd, WS_ROLE_SERVER, NULL, &c->aux->tctx) !=
            0) {
      c->aux->tctx = NULL;
      conn_destroy(c, WS_LOOP_ERR_IO); /* owed no on_close yet */
      continue;
    }
    conn_after(c);
  }
}
