/*
 * The loop: creation and deletion, one round (wait, read the clock,
 * dispatch readiness, posts, timers, the lists of work), and running.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory and small helpers ---------------------------------------------- */

static void *def_malloc(size_t n, void *ud) {
  (void)ud;
  return malloc(n);
}
static void *def_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return realloc(p, n);
}
static void def_free(void *p, void *ud) {
  (void)ud;
  free(p);
}

void *drv_malloc(ws_loop *l, size_t n) {
  return l->mem.malloc(n ? n : 1, l->mem.user_data);
}
void *drv_realloc(ws_loop *l, void *p, size_t n) {
  return l->mem.realloc(p, n ? n : 1, l->mem.user_data);
}
void drv_free(ws_loop *l, void *p) {
  if (p) l->mem.free(p, l->mem.user_data);
}

uint64_t drv_clock(ws_loop *l) {
  uint64_t t = l->sys.now_ms(l->sys.self);
  if (t > l->now) l->now = t;
  return l->now;
}

void drv_note_rv(ws_loop *l, int rv) {
  if (rv < 0 && !l->stop_rv) l->stop_rv = rv;
}

/* Adds |c| (its role and its core counters) to |st|. */
static void add_conn_stats(ws_loop_stats *st, const ws_loop_conn *c) {
  ws_stats cs;
  if (c->role == WS_ROLE_CLIENT)
    st->connected++;
  else
    st->accepted++;
  ws_conn_stats(CONN_WS(c), &cs);
  st->msgs_in += cs.msgs_in;
  st->msgs_out += cs.msgs_out;
  st->bytes_in += cs.bytes_in;
  st->bytes_out += cs.bytes_out;
  st->wire_in += cs.wire_in;
  st->wire_out += cs.wire_out;
}

void drv_free_grave(ws_loop *l) {
  ws_loop_conn **pp = &l->grave;
  while (*pp) {
    ws_loop_conn *c = *pp;
    if (c->flags & (F_DIRTY | F_AGAIN)) {
      pp = &c->next_grave;
      continue;
    }
    *pp = c->next_grave;
    add_conn_stats(&l->freed, c);
    l->freed.closed++;
    conn_free_memory(c);
  }
}

void ws_loop_stats_get(const ws_loop *l, ws_loop_stats *pstats, size_t size) {
  ws_loop_stats st;
  if (!pstats) return;
  memset(&st, 0, sizeof(st));
  if (l) {
    st = l->freed;
    for (const ws_loop_conn *c = l->grave; c; c = c->next_grave) {
      add_conn_stats(&st, c); /* ended this round, not freed yet */
      st.closed++;
    }
    for (uint32_t i = 0; i < l->nslots; i++)
      if (drv_slot_conn(l, i)) add_conn_stats(&st, drv_slot_conn(l, i));
    st.open = l->nconns;
  }
  memcpy(pstats, &st, size < sizeof(st) ? size : sizeof(st));
}

const char *ws_loop_strerror(int err) {
  switch (err) {
  case WS_LOOP_ERR_IO: return "socket error";
  case WS_LOOP_ERR_RESOLVE: return "host name did not resolve";
  case WS_LOOP_ERR_STALLED: return "peer stopped reading (write timeout)";
  case WS_LOOP_ERR_SHUTDOWN: return "dropped at the end of the shutdown";
  case WS_LOOP_ERR_ABORTED: return "the loop was deleted";
  case WS_LOOP_ERR_BUDGET: return "over the loop's memory budget";
  case WS_LOOP_ERR_SLOW_MESSAGE: return "message not finished in time";
  default: return ws_strerror(err);
  }
}

void ws_loop_config_default(ws_loop_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->size = (uint32_t)sizeof(*cfg);
  cfg->read_size = 65536;
  cfg->high_water = 1u << 20;
  cfg->low_water = 256u << 10;
  cfg->write_timeout_ms = 30000;
  cfg->linger_ms = 2000;
  cfg->max_post_bytes = 16u << 20;
  cfg->message_timeout_ms = 60000;
}

void *ws_loop_user_data(const ws_loop *l) { return l ? l->cfg.user_data : NULL; }
uint64_t ws_loop_now(const ws_loop *l) { return l ? l->now : 0; }
size_t ws_loop_conn_count(const ws_loop *l) { return l ? l->nconns : 0; }

/* ---- the round ------------------------------------------------------------ */

/* Runs the again list (this round's snapshot; additions wait for the
 * next round), then every connection something happened to. */
static void drain_lists(ws_loop *l) {
  uint32_t link = l->again;
  l->again = 0;
  while (link) {
    ws_loop_conn *c = drv_listed_conn(l, link);
    link = c->next_again;
    c->flags &= ~F_AGAIN;
    c->next_again = 0;
    conn_again(c);
  }
  while (l->dirty) {
    ws_loop_conn *c = drv_listed_conn(l, l->dirty);
    l->dirty = c->next_dirty;
    c->flags &= ~F_DIRTY;
    conn_after(c);
  }
}

/* How long the wait may last: until the first deadline, at most
 * |timeout_ms| (-1: no limit), 0 if work is waiting. */
static int wait_timeout(ws_loop *l, int timeout_ms) {
  if (l->again || l->dirty || atomic_load(&l->posted) ||
      atomic_load(&l->stop_req) || atomic_load(&l->shutdown_req))
    return 0;
  uint64_t d = heap_first(l);
  uint64_t r = drv_reconnect_next(l); /* a client's next attempt */
  if (r < d) d = r;
  if (l->draining && l->drain_deadline < d) d = l->drain_deadline;
  if (l->listen_paused && l->listen_resume_at < d) d = l->listen_resume_at;
  uint64_t now = drv_clock(l);
  int t;
  if (d == NO_DEADLINE)
    t = -1;
  else if (d <= now)
    t = 0;
  else
    t = d - now > INT_MAX ? INT_MAX : (int)(d - now);
  if (timeout_ms >= 0 && (t < 0 || timeout_ms < t)) t = timeout_ms;
  return t;
}

static void dispatch_ready(ws_loop *l, int n) {
  /* A callback may close every listener (ws_loop_close_listeners()):
   * drv_close_listeners() clears the entries that name one (connections
   * are freed only at the end of the round). */
  l->nready = n;
  for (int i = 0; i < n; i++) {
    void *tag = l->ready[i].tag;
    if (!tag) continue;
    /* Both kinds start with a handle: its first byte says which. */
    if (*(const uint8_t *)tag == H_LISTENER)
      drv_accept_round(l, tag);
    else
      conn_ready(tag, l->ready[i].events);
  }
  l->nready = 0;
}

static int nothing_left(ws_loop *l) {
  return l->nconns == 0 && !l->listeners && !atomic_load(&l->posted) &&
         drv_reconnect_next(l) == NO_DEADLINE;
}

int ws_loop_run_once(ws_loop *l, int timeout_ms) {
  if (!l) return WS_ERR_INVALID_ARGUMENT;
  if (l->stopped) return 1;
  if (nothing_left(l) && !atomic_load(&l->stop_req) &&
      !atomic_load(&l->shutdown_req))
    return 1; /* nothing left: do not wait for ever */
  int t = wait_timeout(l, timeout_ms);
  l->in_round = 1;
  int n = l->poller.wait(l->poller.self, t, l->ready, MAX_READY);
  int rc = n < 0 ? WS_LOOP_ERR_IO : 0;
  drv_clock(l); /* after every wait, before anything uses the time */
  if (n > 0) dispatch_ready(l, n);
  drv_take_requests(l);
  drv_run_posts(l);
  if (l->listen_paused && drv_clock(l) >= l->listen_resume_at) {
    l->listen_paused = 0;
    drv_listeners_watch(l, 1);
  }
  drv_run_timers(l);
  drv_run_reconnects(l);
  drain_lists(l);
  drv_check_drain(l);
  drv_free_grave(l);
  l->in_round = 0;
  if (rc) return rc;
  if (l->stop_rv) {
    rc = l->stop_rv;
    l->stop_rv = 0;
    l->stopped = 1;
    return rc;
  }
  return l->stopped || nothing_left(l) ? 1 : 0;
}

int ws_loop_run(ws_loop *l) {
  if (!l) return WS_ERR_INVALID_ARGUMENT;
  l->stopped = 0;
  for (;;) {
    int rv = ws_loop_run_once(l, -1);
    if (rv == 1) return 0;
    if (rv != 0) return rv;
  }
}

/* ---- creation ------------------------------------------------------------- */

static int resolve_mem(ws_mem *m, const ws_mem *src) {
  if (src && (src->malloc || src->realloc || src->free)) {
    if (!src->malloc || !src->realloc || !src->free)
      return WS_ERR_INVALID_ARGUMENT;
    *m = *src;
    return 0;
  }
  m->user_data = NULL;
  m->malloc = def_malloc;
  m->realloc = def_realloc;
  m->free = def_free;
  return 0;
}

int ws_drv_new(ws_loop **ploop, const ws_loop_config *cfg,
               const ws_drv_poller *poller, const ws_drv_sys *sys) {
  ws_mem m;
  if (ploop) *ploop = NULL;
  if (!ploop || !cfg || (cfg->size && cfg->size != sizeof(*cfg)) ||
      cfg->read_size < 1024 ||
      cfg->low_water > cfg->high_water || resolve_mem(&m, cfg->mem) != 0) {
    poller->del(poller->self);
    return WS_ERR_INVALID_ARGUMENT;
  }
  ws_loop *l = m.malloc(sizeof(*l), m.user_data);
  if (!l) {
    poller->del(poller->self);
    return WS_ERR_NOMEM;
  }
  memset(l, 0, sizeof(*l));
  l->rpos = sizeof(l->rpool); /* the mask-key pool starts empty */
  l->unlisted.h.kind = H_LISTENER; /* (never watched) */
  l->unlisted.loop = l;
  l->unlisted.fd = -1;
  l->cfg = *cfg;
  l->umem = m;
  l->slab_n = conn_tail_off(F_SHARED); /* (drv_block_alloc()) */
  budget_init_mem(l);
  l->poller = *poller;
  l->sys = sys ? *sys : ws_drv_sys_default;
  drv_plain_transport(&l->plain, &l->sys);
  l->rbuf = drv_malloc(l, cfg->read_size);
  if (!l->rbuf || pthread_mutex_init(&l->mu, NULL) != 0) {
    drv_free(l, l->rbuf);
    poller->del(poller->self);
    m.free(l, m.user_data);
    return WS_ERR_NOMEM;
  }
  atomic_init(&l->post_bytes, 0);
  atomic_init(&l->posted, 0);
  atomic_init(&l->stop_req, 0);
  atomic_init(&l->shutdown_req, 0);
  atomic_init(&l->sd_req_code, 1001);
  atomic_init(&l->sd_req_spread, 0);
  atomic_init(&l->sd_req_drain, 0);
  drv_clock(l);
  *ploop = l;
  return 0;
}

void ws_loop_del(ws_loop *l) {
  if (!l) return;
  l->in_round = 1;
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(l, i);
    if (c) conn_destroy(c, WS_LOOP_ERR_ABORTED);
  }
  drv_close_listeners(l);
  /* nothing is on a list any more */
  for (ws_loop_conn *c = l->grave; c; c = c->next_grave)
    c->flags &= ~(F_DIRTY | F_AGAIN);
  l->dirty = l->again = 0;
  drv_free_grave(l);
  drv_free_posts(l);
  drv_reconnect_free(l);
  pthread_mutex_destroy(&l->mu);
  l->poller.del(l->poller.self);
  drv_free(l, l->rbuf);
  drv_slabs_free(l);
  drv_pages_free(l, l->hpages, l->nhpages);
  drv_pages_free(l, l->spages, l->nspages);
  ws_mem m = l->umem;
  m.free(l, m.user_data);
}
