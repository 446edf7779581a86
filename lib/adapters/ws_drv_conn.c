/*
 * A connection of the loop: the core's events to the callbacks, socket
 * bytes to the core and back through the transport, backpressure, pauses,
 * and the end of the transport.
 * SPDX-License-Identifier: MIT
 *
 * Socket bytes and core bytes meet in exactly two places,
 * conn_read_round (transport read -> core feed) and conn_flush (core
 * out_peek -> transport write): the seam where a TLS transport slots in.
 */
#include "ws_drv.h"

#include <errno.h>
#include <string.h>

/* ---- bookkeeping ----------------------------------------------------------- */

conn_aux *conn_aux_get(ws_loop_conn *c) {
  if (!c->aux) {
    c->aux = budget_malloc_posted(conn_loop(c), sizeof(conn_aux));
    if (c->aux) memset(c->aux, 0, sizeof(conn_aux));
  }
  return c->aux;
}

void post_free(ws_loop *l, post *p) {
  atomic_fetch_sub(&l->post_bytes, p->len);
  drv_free(l, p);
}

static void aux_free(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  if (!a) return;
  ws_loop *l = conn_loop(c);
  drv_free(l, a->rbuf);
  if (a->ai_all) l->sys.free_addrs(l->sys.self, a->ai_all);
  drv_free(l, a->server_name);
  while (a->def_head) {
    post *p = a->def_head;
    a->def_head = p->next;
    post_free(l, p);
  }
  drv_free(l, a);
  c->aux = NULL;
}

void conn_aux_trim(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  if (!a || (c->flags & (F_PAUSED | F_TP)) || a->rpos < a->rlen || a->rbuf ||
      a->ai_all || a->server_name || a->def_head || a->drv_at ||
      a->stall_since || a->msg_since || a->drain_since || a->end_err)
    return;
  aux_free(c);
}

static int has_retained(const ws_loop_conn *c) {
  return c->aux && c->aux->rpos < c->aux->rlen;
}

/* (A connection not in the graveyard holds its slot: F_SLOT.) */
void conn_mark_dirty(ws_loop_conn *c) {
  if (c->flags & (F_DIRTY | F_GRAVE)) return;
  c->flags |= F_DIRTY;
  c->next_dirty = conn_loop(c)->dirty;
  conn_loop(c)->dirty = (uint32_t)c->id;
}

void conn_mark_again(ws_loop_conn *c) {
  if (c->flags & (F_AGAIN | F_GRAVE)) return;
  c->flags |= F_AGAIN;
  c->next_again = conn_loop(c)->again;
  conn_loop(c)->again = (uint32_t)c->id;
}

ws_loop_conn *conn_by_id(ws_loop *l, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  if (slot == 0 || slot > l->nslots) return NULL;
  ws_loop_conn *c = drv_slot_conn(l, slot - 1);
  return c && c->id == id ? c : NULL;
}

int drv_page_add(ws_loop *l, void ***ppages, uint32_t *pn, uint32_t *pcap,
                 size_t entry) {
  if (*pn == *pcap) {
    uint32_t cap = *pcap ? *pcap * 2 : 4;
    void **np = drv_realloc(l, *ppages, cap * sizeof(*np));
    if (!np) return -1;
    *ppages = np;
    *pcap = cap;
  }
  void *page = drv_malloc(l, PAGE_ENTRIES * entry);
  if (!page) return -1;
  (*ppages)[(*pn)++] = page;
  return 0;
}

void drv_pages_free(ws_loop *l, void **pages, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    drv_free(l, pages[i]);
  drv_free(l, pages);
}

static slot_entry *slot_at(ws_loop *l, uint32_t s) {
  return &((slot_entry *)l->spages[s / PAGE_ENTRIES])[s % PAGE_ENTRIES];
}

/* Gives |c| a slot and an id that is never reused: the slot's generation
 * in the high 32 bits, the slot + 1 in the low ones. */
static int slot_take(ws_loop *l, ws_loop_conn *c) {
  uint32_t s, gen;
  if (l->free_head) {
    s = l->free_head - 1;
    slot_entry e = *slot_at(l, s);
    l->free_head = (uint32_t)(e & 0xffffffffu) >> 1;
    gen = (uint32_t)(e >> 32);
  } else {
    if (l->nslots == MAX_SLOTS) return -1;
    if (l->nslots == l->nspages * PAGE_ENTRIES &&
        drv_page_add(l, &l->spages, &l->nspages, &l->spcap,
                     sizeof(slot_entry)) != 0)
      return -1;
    s = l->nslots++;
    gen = 0;
  }
  gen++;
  *slot_at(l, s) = (slot_entry)(uintptr_t)c;
  c->id = (uint64_t)gen << 32 | (uint64_t)(s + 1);
  c->flags |= F_SLOT;
  return 0;
}

/* Dead |c| is still on a list, which links it by its slot: it keeps
 * the slot until it is freed, but the slot no longer finds it
 * (drv_slot_conn(), conn_by_id()). */
static void slot_hold(ws_loop *l, ws_loop_conn *c) {
  uint32_t s = (uint32_t)(c->id & 0xffffffffu) - 1;
  *slot_at(l, s) = (slot_entry)(uintptr_t)c | 2u;
}

static void slot_release(ws_loop *l, ws_loop_conn *c) {
  if (!(c->flags & F_SLOT)) return;
  uint32_t s = (uint32_t)(c->id & 0xffffffffu) - 1;
  *slot_at(l, s) = (c->id & 0xffffffff00000000u) |
                   (slot_entry)l->free_head << 1 | 1u;
  l->free_head = s + 1;
  c->flags &= ~F_SLOT;
}

/* The block of a connection with |flags| (F_SHARED, F_TAIL_*). */
static size_t block_size(uint32_t flags) {
  return conn_tail_off(flags) + ((flags & F_TAIL_IP) ? 8 : 0) +
         ((flags & F_TAIL_HS) ? 4 : 0);
}

size_t conn_block_size(const ws_loop_conn *c) { return block_size(c->flags); }

ws_loop_conn *conn_new(ws_loop *l, int fd, ws_role role, const ws_config *cfg,
                       ws_conn_shared *sh, const ws_loop_transport *tp,
                       void *ud, uint32_t tail) {
  uint32_t fl = (sh ? F_SHARED : 0) | (tail & (F_TAIL_IP | F_TAIL_HS));
  ws_loop_conn *c = drv_block_alloc(l, block_size(fl));
  ws_conn *ws;
  int rv;
  if (!c) return NULL;
  memset(c, 0, sizeof(*c));
  c->flags = fl;
  conn_set_peer_hash(c, 0);
  conn_set_hs_ms(c, 0);
  c->h.kind = H_CONN;
  c->fd = fd;
  c->role = (uint8_t)role;
  c->state = C_WS;
  c->heap_idx = UINT32_MAX;
  c->deadline = NO_DEADLINE;
  c->lst = &l->unlisted; /* (accept sets its own) */
  c->user_data = ud;
  if (tp && tp != &l->plain) {
    /* (kept in the aux block for the connection's life) */
    if (!conn_aux_get(c)) {
      drv_block_free(l, c, conn_block_size(c));
      return NULL;
    }
    c->aux->tp = tp;
    c->flags |= F_TP;
  }
  rv = sh ? ws_conn_init_shared(&ws, CONN_WS(c), ws_conn_sizeof_shared(), sh)
          : ws_conn_init(&ws, CONN_WS(c), ws_conn_sizeof(), cfg, &l->mem);
  if (rv != 0) {
    aux_free(c);
    drv_block_free(l, c, conn_block_size(c));
    return NULL;
  }
  if (slot_take(l, c) != 0) {
    ws_conn_fini(ws);
    aux_free(c);
    drv_block_free(l, c, conn_block_size(c));
    return NULL;
  }
  l->nconns++;
  /* The handshake timer starts now: the clock is read for it. */
  ws_conn_tick(ws, drv_clock(l));
  return c;
}

/* The transport's description of its failure, or NULL. */
static const char *tp_error_text(const ws_loop_conn *c) {
  const ws_loop_transport *tp = conn_tp(c);
  void *tctx = conn_tctx(c);
  const char *s =
      (c->flags & F_FAILED) && tp->error && tctx ? tp->error(tctx) : NULL;
  return s && *s ? s : NULL;
}

static size_t tp_pending(const ws_loop_conn *c) {
  const ws_loop_transport *tp = conn_tp(c);
  void *tctx = conn_tctx(c);
  return tp->pending && tctx ? tp->pending(tctx) : 0;
}

void conn_set_io_err(ws_loop_conn *c, int err, int e) {
  if (c->flags & F_FAILED) return;
  heap_remove(conn_loop(c), c); /* (its key makes room) */
  c->io_fail = err == WS_LOOP_ERR_IO && e > 0 ? e : err;
  c->flags |= F_FAILED;
}

/* Notes that a transport call failed with |rv| (WS_LOOP_ERR_IO: errno
 * says why; any other negative code is the transport's own) and returns
 * the code to report. The first failure is the one kept. */
static int tp_fail(ws_loop_conn *c, int rv) {
  int e = errno;
  if (rv >= WS_ERR_WOULDBLOCK) rv = WS_LOOP_ERR_IO; /* not a failure code */
  conn_set_io_err(c, rv, e ? e : EIO);
  return conn_io_err(c);
}

static void call_on_close(ws_loop_conn *c, ws_loop_close_info *info) {
  ws_loop *l = conn_loop(c);
  c->flags |= F_CLOSED_CB;
  if (l->cfg.callbacks.on_close)
    drv_note_rv(l, l->cfg.callbacks.on_close(c, c->user_data, info));
}

void conn_destroy(ws_loop_conn *c, int err) {
  ws_loop *l = conn_loop(c);
  if (c->state == C_DEAD) return;
  if ((c->flags & (F_KNOWN | F_CLOSED_CB)) == F_KNOWN) {
    ws_loop_close_info info;
    memset(&info, 0, sizeof(info));
    info.code = 1006;
    info.sent_code = ws_conn_close_code(CONN_WS(c));
    info.error = conn_end_err(c) ? conn_end_err(c) : err;
    info.sys_errno = conn_sys_errno(c);
    info.http_status = conn_http_status(c);
    info.transport_error = tp_error_text(c);
    call_on_close(c, &info);
  }
  c->state = C_DEAD;
  if (c->flags & F_REG) l->poller.remove(l->poller.self, c->fd);
  c->flags &= ~F_REG;
  if (c->flags & F_TP) {
    conn_aux *a = c->aux;
    if (a->tctx && a->tp->detach) a->tp->detach(a->tctx);
    a->tctx = NULL;
  }
  if (c->fd >= 0) l->sys.close(l->sys.self, c->fd);
  c->fd = -1;
  heap_remove(l, c);
  budget_release(c);
  if (c->flags & (F_DIRTY | F_AGAIN))
    slot_hold(l, c); /* released when it is freed */
  else
    slot_release(l, c);
  l->nconns--;
  c->flags = (c->flags & ~F_FAILED) | F_GRAVE; /* (io_fail makes room) */
  c->next_grave = l->grave;
  l->grave = c;
}

void conn_free_memory(ws_loop_conn *c) {
  slot_release(conn_loop(c), c); /* if it was held (slot_hold()) */
  ws_conn_fini(CONN_WS(c));
  aux_free(c);
  drv_block_free(conn_loop(c), c, conn_block_size(c));
}

size_t conn_pending(const ws_loop_conn *c) {
  return ws_conn_out_pending(CONN_WS(c)) + tp_pending(c);
}

/* ---- events -> callbacks ------------------------------------------------- */

static const char *sd_reason(uint16_t code) {
  return code == 1012 ? "service restart" : "going away";
}

void conn_shutdown_close(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  if (c->state != C_WS || ws_conn_state(CONN_WS(c)) != WS_STATE_OPEN) return;
  const char *r = sd_reason(l->sd_code);
  ws_conn_close(CONN_WS(c), l->sd_code, r, strlen(r));
  conn_mark_dirty(c);
}

static const ws_kv retry_after[] = {{"Retry-After", "5"}};

/* on_refused for server connection |c|, once, and only if the
 * application has not heard of it. Before the answer is queued: that
 * frees |req|. */
static void conn_refused(ws_loop_conn *c, int status, const char *reason,
                         const ws_request *req) {
  if ((c->flags & (F_TOLD | F_KNOWN)) || c->role != WS_ROLE_SERVER) return;
  c->flags |= F_TOLD;
  drv_refused(conn_loop(c), c->fd, c->user_data, status, reason, req);
}

void conn_drop(ws_loop_conn *c, const char *reason) {
  conn_refused(c, 0, reason, NULL);
  conn_destroy(c, WS_LOOP_ERR_SHUTDOWN);
}

/* The status of the HTTP answer the core queued for |c| when it failed
 * a request head ("HTTP/1.1 400 Bad Request..."), or 0 if none is. */
static int answered_status(const ws_loop_conn *c) {
  static const char v11[] = "HTTP/1.1 ";
  const size_t n = sizeof(v11) - 1;
  ws_iovec v;
  int st = 0;
  if (ws_conn_out_peek(CONN_WS(c), &v, 1) != 1 || v.len < n + 3 ||
      memcmp(v.base, v11, n) != 0)
    return 0;
  for (size_t i = n; i < n + 3; i++) {
    if (v.base[i] < '0' || v.base[i] > '9') return 0;
    st = st * 10 + (v.base[i] - '0');
  }
  return st;
}

/* A server connection that failed before the application heard of it:
 * a request head the core answered with an HTTP error (400, 405, 426,
 * 431), or memory that ran out while it came in. Not a peer that went
 * away or took too long (WS_ERR_EOF, WS_ERR_TIMEOUT): nothing was
 * refused. */
static void refused_in_handshake(ws_loop_conn *c, const ws_event *ev) {
  char why[96];
  if (ev->error == WS_ERR_NOMEM) {
    conn_refused(c, answered_status(c),
                 budget_nomem_reason(conn_loop(c), c->flags), NULL);
    return;
  }
  if (ev->error != WS_ERR_HANDSHAKE) return;
  size_t n = ev->data.len < sizeof(why) - 1 ? ev->data.len : sizeof(why) - 1;
  if (n) memcpy(why, ev->data.base, n);
  why[n] = 0;
  conn_refused(c, answered_status(c), n ? why : "invalid request", NULL);
}

static int dispatch_request(ws_loop_conn *c, const ws_event *ev) {
  ws_loop *l = conn_loop(c);
  int rv = 0;
  const char *why = "draining";
  int st = l->draining ? 503 : budget_request_status(c, ev->request, &why);
  if (st) { /* over a cap or the budget (503), or a foreign Origin (403) */
    conn_refused(c, st, why, ev->request);
    ws_conn_reject(CONN_WS(c), st, retry_after, st == 503, NULL, 0);
    budget_hs_done(c);
    return 0;
  }
  /* Owed an on_close once the application heard of it: here if it has
   * on_request, else at WS_EV_OPEN (an accept that fails for lack of
   * memory ends the connection unannounced: on_refused, 500). */
  if (l->cfg.callbacks.on_request) {
    c->flags |= F_KNOWN;
    rv = l->cfg.callbacks.on_request(c, c->user_data, ev->request);
  }
  if (rv == WS_LOOP_PAUSE && ws_conn_state(CONN_WS(c)) == WS_STATE_CONNECTING)
    return WS_LOOP_PAUSE;
  if (ws_conn_state(CONN_WS(c)) == WS_STATE_CONNECTING &&
      ws_conn_accept(CONN_WS(c), NULL) != 0) {
    conn_refused(c, 500, budget_nomem_reason(l, c->flags), ev->request);
    ws_conn_reject(CONN_WS(c), 500, NULL, 0, NULL, 0);
  }
  budget_hs_done(c);
  return rv == WS_LOOP_PAUSE ? 0 : rv;
}

/* A plain HTTP request (WS_CFG_HTTP, set when on_http is). */
static int dispatch_http(ws_loop_conn *c, const ws_event *ev) {
  ws_loop *l = conn_loop(c);
  static const ws_kv text[] = {{"Content-Type", "text/plain"}};
  int rv = 0;
  const char *why = "draining";
  budget_hs_done(c);
  /* draining: a load balancer's health check sees it; or over a cap */
  if (l->draining || budget_request_status(c, NULL, &why) == 503) {
    conn_refused(c, 503, why, ev->request);
    ws_conn_respond(CONN_WS(c), 503, retry_after, 1, NULL, 0);
    return 0;
  }
  c->flags |= F_TOLD; /* the application's to answer and to log */
  if (l->cfg.callbacks.on_http)
    rv = l->cfg.callbacks.on_http(c, c->user_data, ev->request);
  if (ws_conn_state(CONN_WS(c)) == WS_STATE_CONNECTING &&
      ws_conn_respond(CONN_WS(c), 404, text, 1, "not found\n", 10) != 0)
    ws_conn_respond(CONN_WS(c), 404, NULL, 0, NULL, 0);
  return rv == WS_LOOP_PAUSE ? 0 : rv;
}

static void dispatch_end(ws_loop_conn *c, const ws_event *ev) {
  ws_loop_close_info info;
  if (!(c->flags & F_KNOWN)) {
    if (ev->type == WS_EV_ERROR) refused_in_handshake(c, ev);
    return;
  }
  memset(&info, 0, sizeof(info));
  info.sent_code = ws_conn_close_code(CONN_WS(c)); /* only what was sent */
  if (ev->type == WS_EV_CLOSE) {
    info.code = ev->close_code;
    info.reason = ev->data;
  } else {
    info.code = 1006;
    info.error = ev->error;
    if (ev->error == WS_ERR_EOF && (c->flags & F_FAILED))
      info.error = conn_io_err(c);
    if (c->flags & F_BUDGET) {
      info.error = WS_LOOP_ERR_BUDGET;
      if (c->role == WS_ROLE_SERVER && !info.sent_code)
        info.sent_code = 1013; /* written once the output drains */
    }
    info.sys_errno = conn_sys_errno(c);
    info.transport_error = tp_error_text(c);
    if (ev->response) {
      info.response = ev->response;
      info.http_status = ev->response->status;
    }
  }
  if (!info.error && conn_end_err(c)) info.error = conn_end_err(c);
  call_on_close(c, &info);
}

/* Hands one core event to the application. Returns WS_LOOP_PAUSE if the
 * event must be kept, else 0. */
static int dispatch(ws_loop_conn *c, const ws_event *ev) {
  ws_loop *l = conn_loop(c);
  const ws_loop_callbacks *cb = &l->cfg.callbacks;
  int rv = 0;
  if (c->flags & F_CLOSED_CB) return 0;
  switch (ev->type) {
  case WS_EV_REQUEST: rv = dispatch_request(c, ev); break;
  case WS_EV_HTTP: rv = dispatch_http(c, ev); break;
  case WS_EV_OPEN:
    c->flags |= F_KNOWN | F_OPEN;
    budget_opened(c);
    /* ws_loop_conn_response() during the call: the client's 101 */
    l->open_conn = c;
    l->open_resp = ev->response;
    if (cb->on_open) rv = cb->on_open(c, c->user_data);
    l->open_conn = NULL;
    l->open_resp = NULL;
    if (l->draining) conn_shutdown_close(c);
    break;
  case WS_EV_TEXT:
  case WS_EV_BINARY:
    if (cb->on_message) rv = cb->on_message(c, c->user_data, ev);
    break;
  case WS_EV_PING:
  case WS_EV_PONG:
    if (cb->on_control) rv = cb->on_control(c, c->user_data, ev);
    break;
  case WS_EV_CLOSE:
  case WS_EV_ERROR: dispatch_end(c, ev); return 0;
  default: break;
  }
  conn_mark_dirty(c);
  if (rv == WS_LOOP_PAUSE) return WS_LOOP_PAUSE;
  drv_note_rv(l, rv);
  return 0;
}

/* Keeps |ev| for later. */
static int keep_event(ws_loop_conn *c, const ws_event *ev) {
  conn_aux *a = conn_aux_get(c);
  if (!a) return -1;
  a->ev = *ev;
  c->flags |= F_PAUSED;
  /* A request waits for its answer and ws_loop_resume(): output pending
   * now is the transport's own (the end of a TLS handshake whose client
   * sent the request at once, as Chromium's False Start does), and once
   * it drained the request would be delivered a second time. */
  if (conn_pending(c) > 0 && ev->type != WS_EV_REQUEST)
    c->flags |= F_PAUSED_AUTO;
  else
    c->flags &= ~F_PAUSED_AUTO;
  return 0;
}

int conn_pull_events(ws_loop_conn *c) {
  ws_event ev;
  while (c->state == C_WS && !(c->flags & F_PAUSED)) {
    if (ws_conn_next_event(CONN_WS(c), &ev) != 0) return 0;
    if (dispatch(c, &ev) == WS_LOOP_PAUSE) {
      if (keep_event(c, &ev) != 0) {
        ws_conn_close(CONN_WS(c), 1011, NULL, 0);
        continue;
      }
      return 1;
    }
  }
  return (c->flags & F_PAUSED) != 0;
}

/* ---- input ----------------------------------------------------------------- */

/* Keeps the unfed input |buf[pos..len)| (and, if an event is kept, the
 * bytes its data may point to, from |fstart|) in the connection. */
static int retain(ws_loop_conn *c, uint8_t *buf, size_t fstart, size_t pos,
                  size_t len, int priv) {
  conn_aux *a = conn_aux_get(c);
  if (!a) return -1;
  if (priv) {
    a->rpos = pos;
    a->rlen = len;
    return 0;
  }
  size_t from = (c->flags & F_PAUSED) ? fstart : pos;
  size_t n = len - from;
  if (n > a->rcap) {
    uint8_t *nb = drv_realloc(conn_loop(c), a->rbuf, n);
    if (!nb) return -1;
    a->rbuf = nb;
    a->rcap = n;
  }
  if (n) memcpy(a->rbuf, buf + from, n);
  if (c->flags & F_PAUSED) {
    /* The kept event's data may point into |buf|: move it along. */
    const uint8_t *b = a->ev.data.base;
    if (b && b >= buf + from && b <= buf + len)
      a->ev.data.base = a->rbuf + (b - (buf + from));
  }
  a->rpos = pos - from;
  a->rlen = n;
  return 0;
}

static void retained_done(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  if (!a) return;
  a->rpos = a->rlen = 0;
  /* an idle connection keeps no buffer: the aux can go (conn_aux_trim) */
  drv_free(conn_loop(c), a->rbuf);
  a->rbuf = NULL;
  a->rcap = 0;
}

/* ws_conn_feed_events()'s callback: one event to the application, as
 * conn_pull_events() does. Returns 1 to stop the feed: the event was kept
 * (WS_LOOP_PAUSE), or the connection ended. */
static int feed_event(ws_conn *ws, const ws_event *ev, void *ud) {
  ws_loop_conn *c = ud;
  ws_loop *l = conn_loop(c);
  (void)ws;
  /* What the application allocates in its callbacks (sends to other
   * connections, say) is not this connection's input. */
  ws_loop_conn *was = l->feeding;
  l->feeding = NULL;
  int kept = 0;
  if (dispatch(c, ev) == WS_LOOP_PAUSE) {
    if (keep_event(c, ev) != 0)
      ws_conn_close(CONN_WS(c), 1011, NULL, 0);
    else
      kept = 1;
  }
  l->feeding = was;
  return kept || c->state != C_WS;
}

/* Feeds |buf[pos..len)| to the core and dispatches the events, until it is
 * used up, or the connection pauses or congests (the rest is retained).
 * |priv|: |buf| is the connection's own retained buffer. The events go to
 * the application from inside the core's batch call, as they are parsed
 * (ws_conn_feed_events): no stop at each one. */
static void process_input(ws_loop_conn *c, uint8_t *buf, size_t pos,
                          size_t len, int priv) {
  size_t fstart = pos;
  int stuck = 0;
  for (;;) {
    int paused = conn_pull_events(c);
    if (c->state != C_WS) return;
    if (paused || ((c->flags & F_CONGESTED) && pos < len)) {
      if (retain(c, buf, fstart, pos, len, priv) != 0) {
        /* Out of memory: give the connection up. */
        c->flags &= ~F_PAUSED;
        ws_conn_close(CONN_WS(c), 1011, NULL, 0);
        if (priv) retained_done(c);
      }
      return;
    }
    if (pos >= len) {
      if (priv) retained_done(c);
      return;
    }
    size_t n = 0;
    fstart = pos;
    ws_loop_conn *was = conn_loop(c)->feeding;
    conn_loop(c)->feeding = c; /* who pays for what the core allocates */
    int rv = ws_conn_feed_events(CONN_WS(c), buf + pos, len - pos, &n, feed_event, c);
    conn_loop(c)->feeding = was;
    pos += n;
    if (rv < 0 && rv != WS_ERR_WOULDBLOCK) pos = len; /* the rest is moot */
    /* Nothing taken twice in a row with no event between: give up on the
     * rest rather than spin (the core refuses it for good). */
    stuck = n ? 0 : stuck + 1;
    if (stuck > 2) pos = len;
  }
}

void conn_tick(ws_loop_conn *c) {
  if (c->state != C_WS && c->state != C_CONNECTING) return;
  if (c->flags & F_PAUSED) return; /* a tick would release its storage */
  ws_conn_tick(CONN_WS(c), drv_clock(conn_loop(c)));
  if (c->state == C_WS)
    conn_pull_events(c);
  else if (ws_conn_state(CONN_WS(c)) == WS_STATE_FAILED)
    conn_destroy(c, WS_ERR_TIMEOUT); /* the TCP connect took too long */
}

static int conn_flush(ws_loop_conn *c);

/* The transport is gone: ended (|err| 0) or failed (|err| from
 * tp_fail()). Reports it and ends the connection. */
static void conn_lost(ws_loop_conn *c, int err) {
  if (c->state == C_DEAD) return;
  if (c->state == C_WS) {
    c->flags &= ~(F_PAUSED | F_PAUSED_AUTO); /* a kept event is moot */
    ws_conn_feed_eof(CONN_WS(c));
    conn_pull_events(c);
    if (!err) conn_flush(c); /* a close reply, best effort */
  }
  conn_destroy(c, err ? err : WS_ERR_EOF);
}

static int can_read(const ws_loop_conn *c) {
  switch (c->state) {
  case C_LINGER: return 1;
  case C_WS:
    return !(c->flags & (F_PAUSED | F_CONGESTED)) && !has_retained(c) &&
           ws_conn_want_read(CONN_WS(c));
  default: return 0;
  }
}

/* Reads and processes up to READ_BUDGET buffers. */
static void conn_read_round(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  int i, got = 0;
  for (i = 0; i < READ_BUDGET && can_read(c); i++) {
    size_t n = 0;
    errno = 0;
    int rv = conn_tp(c)->read(conn_tctx(c), c->fd, l->rbuf, l->cfg.read_size,
                              &n);
    if (rv == WS_ERR_WOULDBLOCK) break;
    if (rv == WS_ERR_EOF) {
      conn_lost(c, 0);
      return;
    }
    if (rv < 0 || n == 0 || n > l->cfg.read_size) {
      /* n out of range: the transport broke its contract */
      conn_lost(c, tp_fail(c, rv < 0 ? rv : WS_ERR_INTERNAL));
      return;
    }
    got = 1;
    if (c->state == C_WS) process_input(c, l->rbuf, 0, n, 0);
    /* C_LINGER: the bytes are dropped */
    /* Plain TCP: a read shorter than asked emptied the socket, so asking
     * again would only get EAGAIN; readiness reports what comes next.
     * (A transport may hold bytes that no readiness announces: those are
     * read until WS_ERR_WOULDBLOCK.) */
    if (!(c->flags & F_TP) && n < l->cfg.read_size) break;
  }
  if (got && c->state == C_WS) conn_tick(c);
  if (i == READ_BUDGET && can_read(c)) conn_mark_again(c);
}

/* ---- output -------------------------------------------------------------- */

/* Writes what is pending. Returns 0, or the failure from tp_fail(). */
static int conn_flush(ws_loop_conn *c) {
  for (;;) {
    ws_iovec iov[2];
    size_t w = 0, n = ws_conn_out_peek(CONN_WS(c), iov, 2);
    if (n == 0 && tp_pending(c) == 0) return 0;
    errno = 0;
    int rv = conn_tp(c)->write(conn_tctx(c), c->fd, iov, n, &w);
    if (w) {
      conn_aux *a = c->aux;
      ws_conn_out_consume(CONN_WS(c), w);
      /* Above low_water, a trickle does not count as progress: the
       * write timeout runs until the queue is down to low_water. (No
       * aux: no drain window was running; and no write timeout either,
       * which starts here if output is left, as it would at once in
       * conn_after(). Without memory for it, conn_after() gives the
       * connection up.) */
      size_t left = conn_pending(c);
      if (!a && left > 0 && left <= conn_loop(c)->cfg.low_water &&
          conn_loop(c)->cfg.write_timeout_ms)
        a = conn_aux_get(c);
      if (a) {
        a->drained += w;
        if (left <= conn_loop(c)->cfg.low_water)
          a->stall_since = drv_clock(conn_loop(c));
      }
    }
    if (rv == WS_ERR_WOULDBLOCK) return 0;
    if (rv < 0) return tp_fail(c, rv);
    if (w == 0) return 0; /* nothing taken and no error: wait */
  }
}

/* Retries posted sends that were waiting for queue room. */
static void retry_deferred(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  while (a && a->def_head && c->state == C_WS) {
    post *p = a->def_head;
    int rv =
        ws_conn_send(CONN_WS(c), (ws_opcode)p->opcode, p->data, p->len, p->flags);
    if (rv == WS_ERR_WOULDBLOCK) return;
    a->def_head = p->next;
    if (!a->def_head) a->def_tail = NULL;
    post_free(conn_loop(c), p);
  }
}

static void start_linger(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  l->sys.shutdown_wr(l->sys.self, c->fd);
  conn_aux *a = NULL;
  /* (without memory for the timer: no linger) */
  if (l->cfg.linger_ms == 0 || c->role == WS_ROLE_CLIENT ||
      !(a = conn_aux_get(c))) {
    conn_destroy(c, 0);
    return;
  }
  c->state = C_LINGER;
  a->drv_at = drv_clock(l) + l->cfg.linger_ms;
}

static int conn_track_output(ws_loop_conn *c);

/* Ends the transport once everything is written. */
static void maybe_finish(ws_loop_conn *c) {
  if (c->state != C_WS || !ws_conn_should_close_transport(CONN_WS(c)) ||
      conn_pending(c) > 0)
    return;
  if (!(c->flags & F_SHUT)) {
    budget_close_frame(c);
    c->flags |= F_SHUT;
    if (conn_tp(c)->shutdown && conn_tctx(c)) {
      conn_tp(c)->shutdown(conn_tctx(c), c->fd);
      int e = conn_flush(c);
      if (e) {
        conn_destroy(c, e);
        return;
      }
      if (tp_pending(c) > 0) { /* the closing record is on its way */
        if (conn_track_output(c) != 0) conn_destroy(c, WS_ERR_NOMEM);
        return;
      }
    }
  }
  start_linger(c);
}

static void conn_set_interest(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  unsigned ev = 0;
  if (c->state == C_DEAD || (c->flags & F_HUP)) return;
  if (c->state == C_CONNECTING) {
    ev = WS_DRV_OUT;
  } else {
    if (can_read(c)) ev |= WS_DRV_IN;
    if (conn_pending(c) > 0) ev |= WS_DRV_OUT;
  }
  if ((c->flags & F_REG) && ev == c->events) return;
  /* Reading starts or resumes: read once without waiting, since the
   * transport (TLS) may hold input that no readiness will announce. */
  if ((ev & WS_DRV_IN) && c->state == C_WS &&
      !((c->flags & F_REG) && (c->events & WS_DRV_IN)))
    conn_mark_again(c);
  int rv;
  if (c->flags & F_REG)
    rv = l->poller.mod(l->poller.self, c->fd, c, ev);
  else
    rv = l->poller.add(l->poller.self, c->fd, c, ev);
  if (rv != 0) {
    conn_set_io_err(c, WS_LOOP_ERR_IO, errno);
    conn_destroy(c, WS_LOOP_ERR_IO);
    return;
  }
  c->flags |= F_REG;
  c->events = (uint8_t)ev;
}

uint64_t conn_deadline(const ws_loop_conn *c) {
  const ws_loop *l = conn_loop(c);
  uint64_t d = NO_DEADLINE;
  if ((c->state == C_WS || c->state == C_CONNECTING) && !(c->flags & F_PAUSED))
    d = ws_conn_next_deadline(CONN_WS(c));
  const conn_aux *a = c->aux;
  if (!a) return d; /* no timer of the loop's own */
  if (c->state == C_LINGER || (c->flags & F_SD_CLOSE))
    d = a->drv_at < d ? a->drv_at : d;
  if (l->cfg.write_timeout_ms && a->stall_since) {
    uint64_t s = a->stall_since + l->cfg.write_timeout_ms;
    d = s < d ? s : d;
  }
  if (l->cfg.min_drain_rate && l->cfg.write_timeout_ms && a->drain_since) {
    uint64_t r = a->drain_since + l->cfg.write_timeout_ms;
    d = r < d ? r : d;
  }
  if (a->msg_since && !(c->flags & (F_PAUSED | F_CONGESTED))) {
    uint64_t m = a->msg_since + l->cfg.message_timeout_ms;
    d = m < d ? m : d;
  }
  return d;
}

/* Backpressure bookkeeping after a flush: over |high_water| stops
 * reading, under |low_water| resumes. Returns 1 if a callback ran that may
 * have queued output. */
static int conn_account(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  const ws_loop_callbacks *cb = &l->cfg.callbacks;
  size_t pend = conn_pending(c);
  int again = 0;
  if (c->state == C_WS && !(c->flags & F_CONGESTED) &&
      pend > l->cfg.high_water) {
    c->flags |= F_CONGESTED;
    /* not after on_close: the pointer is the application's no more */
    if (cb->on_writable && (c->flags & F_KNOWN) && !(c->flags & F_CLOSED_CB))
      drv_note_rv(l, cb->on_writable(c, c->user_data, 0));
  } else if ((c->flags & F_CONGESTED) && pend <= l->cfg.low_water) {
    c->flags &= ~F_CONGESTED;
    if (has_retained(c)) conn_mark_again(c);
    if (cb->on_writable && (c->flags & F_KNOWN) && !(c->flags & F_CLOSED_CB))
      drv_note_rv(l, cb->on_writable(c, c->user_data, 1));
    again = 1;
  }
  if ((c->flags & (F_PAUSED | F_PAUSED_AUTO)) == (F_PAUSED | F_PAUSED_AUTO) &&
      pend <= l->cfg.low_water)
    conn_mark_again(c); /* auto-resume */
  return again;
}

/* message_timeout_ms: a message in progress on an open connection is
 * timed from the round its first frame arrived in. Returns -1 without
 * memory for the timer. */
static int conn_track_message(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  conn_aux *a = c->aux;
  if (l->cfg.message_timeout_ms && c->state == C_WS &&
      ws_conn_state(CONN_WS(c)) == WS_STATE_OPEN &&
      ws_conn_rx_message(CONN_WS(c), NULL)) {
    if (!a && !(a = conn_aux_get(c))) return -1;
    if (!a->msg_since) a->msg_since = l->now;
  } else if (a) {
    a->msg_since = 0;
  }
  return 0;
}

/* The write timeout and the drain window: running while output is
 * pending. Returns -1 without memory for them. */
static int conn_track_output(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  conn_aux *a = c->aux;
  if (conn_pending(c) == 0) {
    if (a) a->stall_since = a->drain_since = 0;
    return 0;
  }
  int drain = l->cfg.min_drain_rate && l->cfg.write_timeout_ms;
  if (!l->cfg.write_timeout_ms) return 0;
  if (!a && !(a = conn_aux_get(c))) return -1;
  if (!a->stall_since) a->stall_since = drv_clock(l);
  if (drain && !a->drain_since) {
    a->drain_since = drv_clock(l);
    a->drained = 0;
  }
  return 0;
}

int conn_drain_check(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  conn_aux *a = c->aux;
  uint64_t win = l->cfg.write_timeout_ms;
  if (!l->cfg.min_drain_rate || !win || !a || !a->drain_since ||
      l->now < a->drain_since + win)
    return 0;
  if (a->drained * 1000 < (uint64_t)l->cfg.min_drain_rate * win) {
    a->end_err = (int16_t)WS_LOOP_ERR_STALLED;
    conn_destroy(c, WS_LOOP_ERR_STALLED);
    return 1;
  }
  a->drain_since = l->now; /* the next window */
  a->drained = 0;
  return 0;
}

void conn_message_timeout(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  static const char reason[] = "message too slow";
  conn_aux *a = c->aux;
  if (!a || !a->msg_since || (c->flags & (F_PAUSED | F_CONGESTED)) ||
      l->now < a->msg_since + l->cfg.message_timeout_ms)
    return;
  a->msg_since = 0;
  a->end_err = (int16_t)WS_LOOP_ERR_SLOW_MESSAGE;
  /* RFC 6455 7.4.1: 1008, the message breaks the server's policy */
  ws_conn_close(CONN_WS(c), 1008, reason, sizeof(reason) - 1);
}

/* Lets the core free what only a busy connection needs (ws_conn_shrink())
 * once |c|'s turn is over and it is quiet: open (not closing), its input
 * all fed (none retained), no event kept for the application (a pause
 * of ws_loop_conn_pause_reading() keeps none), and no more work for it
 * this round (on the dirty or again list, conn_after() comes again).
 * The core checks the rest itself: output, a partial frame or message,
 * an event, a ping, an error, WS_CFG_KEEP_BUFFERS. */
static void conn_shrink(ws_loop_conn *c) {
  if (c->state != C_WS || (c->flags & (F_DIRTY | F_AGAIN)) ||
      has_retained(c) ||
      ((c->flags & F_PAUSED) && c->aux->ev.type != WS_EV_NONE) ||
      ws_conn_state(CONN_WS(c)) != WS_STATE_OPEN)
    return;
  (void)ws_conn_shrink(CONN_WS(c));
}

void conn_after(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  if (c->state == C_DEAD) return;
  if (c->state != C_CONNECTING) {
    for (int round = 0; round < 4 && c->state != C_DEAD; round++) {
      int e = conn_flush(c);
      if (e) {
        conn_lost(c, e);
        return;
      }
      retry_deferred(c);
      if (!conn_account(c) || conn_pending(c) == 0) break;
    }
    if (c->state == C_DEAD) return;
    if (conn_track_output(c) != 0 || conn_track_message(c) != 0) {
      conn_destroy(c, WS_ERR_NOMEM); /* cannot time it: give it up */
      return;
    }
    maybe_finish(c);
    if (c->state == C_DEAD) return;
  }
  conn_set_interest(c);
  if (c->state == C_DEAD) return;
  conn_shrink(c);
  conn_aux_trim(c);
  if (heap_update(l, c, conn_deadline(c)) != 0) conn_destroy(c, WS_ERR_NOMEM);
}

/* ---- readiness and the again list ----------------------------------------- */

void conn_ready(ws_loop_conn *c, unsigned events) {
  ws_loop *l = conn_loop(c);
  if (c->state == C_DEAD) return;
  if (c->state == C_CONNECTING) {
    if (events & (WS_DRV_OUT | WS_DRV_ERR)) connect_done(c);
    conn_after(c);
    return;
  }
  if (events & WS_DRV_OUT) {
    int e = conn_flush(c);
    if (e) {
      conn_lost(c, e);
      return;
    }
  }
  if (events & (WS_DRV_IN | WS_DRV_ERR)) {
    if (can_read(c)) {
      conn_read_round(c);
    } else if (events & WS_DRV_ERR) {
      /* Not reading now: stop watching, or the hang-up repeats; the next
       * read (after a resume) finds out what happened. */
      int e = conn_pending(c) ? conn_flush(c) : 0;
      if (e) {
        conn_lost(c, e);
        return;
      }
      if (c->flags & F_REG) l->poller.remove(l->poller.self, c->fd);
      c->flags &= ~F_REG;
      c->flags |= F_HUP;
    }
  }
  conn_after(c);
}

/* A kept event whose pause ended: delivered again. Returns 1 if it was
 * kept once more. */
static int redeliver(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  int go = (c->flags & F_RESUME) ||
           ((c->flags & F_PAUSED_AUTO) && conn_pending(c) <= l->cfg.low_water);
  if (!go) return 1;
  c->flags &= ~(F_PAUSED | F_PAUSED_AUTO | F_RESUME);
  ws_event ev = c->aux->ev;
  /* A request answered meanwhile is not delivered again. */
  if (ev.type == WS_EV_REQUEST && ws_conn_state(CONN_WS(c)) != WS_STATE_CONNECTING)
    return 0;
  if (dispatch(c, &ev) == WS_LOOP_PAUSE) {
    if (keep_event(c, &ev) != 0) ws_conn_close(CONN_WS(c), 1011, NULL, 0);
    return 1;
  }
  return 0;
}

void conn_again(ws_loop_conn *c) {
  if (c->state == C_DEAD) return;
  if ((c->flags & F_PAUSED) && redeliver(c)) {
    conn_after(c);
    return;
  }
  c->flags &= ~F_RESUME;
  if (c->state == C_WS) {
    if (has_retained(c)) {
      if (!(c->flags & F_CONGESTED)) {
        conn_aux *a = c->aux;
        process_input(c, a->rbuf, a->rpos, a->rlen, 1);
        conn_tick(c);
      }
    } else {
      conn_pull_events(c);
    }
  }
  c->flags &= ~F_HUP; /* hung up while not reading: look again */
  if (can_read(c)) conn_read_round(c);
  conn_after(c);
}
