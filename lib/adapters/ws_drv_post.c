/*
 * Work queued from other threads: sends, closes and calls, applied on the
 * loop's thread in the order they were posted. The poster takes the lock
 * only to link its post in and then wakes the loop.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <string.h>

static int post_push(ws_loop *l, post *p) {
  pthread_mutex_lock(&l->mu);
  p->next = NULL;
  if (l->post_tail)
    l->post_tail->next = p;
  else
    l->post_head = p;
  l->post_tail = p;
  pthread_mutex_unlock(&l->mu);
  atomic_store(&l->posted, 1);
  l->poller.wake(l->poller.self);
  return 0;
}

static post *post_alloc(ws_loop *l, size_t len) {
  size_t before = atomic_fetch_add(&l->post_bytes, len);
  if (len && before + len > l->cfg.max_post_bytes) {
    atomic_fetch_sub(&l->post_bytes, len);
    return NULL;
  }
  post *p = budget_malloc_posted(l, sizeof(post) + len);
  if (!p) {
    atomic_fetch_sub(&l->post_bytes, len);
    return NULL;
  }
  memset(p, 0, sizeof(*p));
  p->len = len;
  return p;
}

int ws_loop_post_send(ws_loop *l, uint64_t id, ws_opcode opcode,
                      const void *data, size_t len, uint32_t flags) {
  if (!l || (len && !data) || (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY))
    return WS_ERR_INVALID_ARGUMENT;
  if (len > l->cfg.max_post_bytes) return WS_ERR_TOO_BIG;
  post *p = post_alloc(l, len);
  if (!p) {
    /* Tell a full budget from a failed allocation. */
    return atomic_load(&l->post_bytes) + len > l->cfg.max_post_bytes
               ? WS_ERR_WOULDBLOCK
               : WS_ERR_NOMEM;
  }
  p->kind = P_SEND;
  p->id = id;
  p->opcode = (uint8_t)opcode;
  p->flags = flags;
  if (len) memcpy(p->data, data, len);
  return post_push(l, p);
}

int ws_loop_post_close(ws_loop *l, uint64_t id, uint16_t code,
                       const char *reason) {
  size_t rl = reason ? strlen(reason) : 0;
  if (!l || rl > WS_CONTROL_MAX - 2 || (code && !ws_close_code_valid(code)))
    return WS_ERR_INVALID_ARGUMENT;
  post *p = post_alloc(l, rl);
  if (!p) /* a full budget (retry later) or a failed allocation */
    return atomic_load(&l->post_bytes) + rl > l->cfg.max_post_bytes
               ? WS_ERR_WOULDBLOCK
               : WS_ERR_NOMEM;
  p->kind = P_CLOSE;
  p->id = id;
  p->code = code;
  if (rl) memcpy(p->data, reason, rl);
  return post_push(l, p);
}

int ws_loop_post_call(ws_loop *l, void (*fn)(ws_loop *, void *), void *arg) {
  if (!l || !fn) return WS_ERR_INVALID_ARGUMENT;
  post *p = post_alloc(l, 0);
  if (!p) return WS_ERR_NOMEM;
  p->kind = P_CALL;
  p->fn = fn;
  p->arg = arg;
  return post_push(l, p);
}

/* A posted send to one connection: sent now, or kept behind the ones
 * that are waiting for queue room (order is kept), or dropped if the
 * connection is gone. Takes |p|. */
static void post_send_one(ws_loop *l, post *p) {
  ws_loop_conn *c = conn_by_id(l, p->id);
  if (!c || c->state != C_WS) {
    post_free(l, p);
    return;
  }
  conn_aux *a = c->aux;
  int rv = WS_ERR_WOULDBLOCK; /* keep the order behind the waiting ones */
  if (!(a && a->def_head))
    rv = ws_loop_send(c, (ws_opcode)p->opcode, p->data, p->len, p->flags);
  if (rv == WS_ERR_WOULDBLOCK && (a || (a = conn_aux_get(c)) != NULL)) {
    if (a->def_tail)
      a->def_tail->next = p;
    else
      a->def_head = p;
    a->def_tail = p;
    conn_mark_dirty(c);
  } else {
    post_free(l, p);
  }
}

void drv_run_posts(ws_loop *l) {
  if (!atomic_exchange(&l->posted, 0)) return;
  pthread_mutex_lock(&l->mu);
  post *p = l->post_head;
  l->post_head = l->post_tail = NULL;
  pthread_mutex_unlock(&l->mu);
  drv_clock(l);
  while (p) {
    post *next = p->next;
    p->next = NULL;
    if (p->kind == P_CALL) {
      p->fn(l, p->arg);
      post_free(l, p);
    } else if (p->kind == P_CLOSE) {
      ws_loop_conn *c = conn_by_id(l, p->id);
      if (c) ws_loop_close(c, p->code, p->data, p->len);
      post_free(l, p);
    } else if (p->id == 0) {
      ws_loop_broadcast(l, (ws_opcode)p->opcode, p->data, p->len, NULL, NULL);
      post_free(l, p);
    } else {
      post_send_one(l, p);
    }
    p = next;
  }
}

void drv_free_posts(ws_loop *l) {
  post *p = l->post_head;
  l->post_head = l->post_tail = NULL;
  while (p) {
    post *next = p->next;
    post_free(l, p);
    p = next;
  }
}
