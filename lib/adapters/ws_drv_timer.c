/*
 * Timers: a binary heap of connections keyed by their next deadline (the
 * core's, the write timeout, linger and the shutdown close), and what
 * happens when one is due.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <string.h>

/* Entry |i| of the heap (in its pages). */
#define HEAP(l, i)                                                             \
  (((ws_loop_conn **)(l)->hpages[(i) / PAGE_ENTRIES])[(i) % PAGE_ENTRIES])

static void heap_set(ws_loop *l, uint32_t i, ws_loop_conn *c) {
  HEAP(l, i) = c;
  c->heap_idx = i;
}

static void heap_up(ws_loop *l, uint32_t i) {
  ws_loop_conn *c = HEAP(l, i);
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (HEAP(l, p)->deadline <= c->deadline) break;
    heap_set(l, i, HEAP(l, p));
    i = p;
  }
  heap_set(l, i, c);
}

static void heap_down(ws_loop *l, uint32_t i) {
  ws_loop_conn *c = HEAP(l, i);
  for (;;) {
    uint32_t k = 2 * i + 1;
    if (k >= l->heaplen) break;
    if (k + 1 < l->heaplen && HEAP(l, k + 1)->deadline < HEAP(l, k)->deadline)
      k++;
    if (HEAP(l, k)->deadline >= c->deadline) break;
    heap_set(l, i, HEAP(l, k));
    i = k;
  }
  heap_set(l, i, c);
}

void heap_remove(ws_loop *l, ws_loop_conn *c) {
  uint32_t i = c->heap_idx;
  if (i == UINT32_MAX) return;
  c->heap_idx = UINT32_MAX;
  l->heaplen--;
  ws_loop_conn *last = HEAP(l, l->heaplen);
  if (i == l->heaplen) return;
  heap_set(l, i, last);
  heap_up(l, i);
  heap_down(l, last->heap_idx);
}

int heap_update(ws_loop *l, ws_loop_conn *c, uint64_t d) {
  if (c->flags & F_FAILED) return 0; /* (ends in this call: no key) */
  if (d == NO_DEADLINE) {
    heap_remove(l, c);
    c->deadline = d;
    return 0;
  }
  if (c->heap_idx == UINT32_MAX) {
    if (l->heaplen == l->nhpages * PAGE_ENTRIES &&
        drv_page_add(l, &l->hpages, &l->nhpages, &l->hpcap,
                     sizeof(ws_loop_conn *)) != 0)
      return -1;
    c->deadline = d;
    heap_set(l, l->heaplen++, c);
    heap_up(l, c->heap_idx);
    return 0;
  }
  uint64_t old = c->deadline;
  c->deadline = d;
  if (d < old)
    heap_up(l, c->heap_idx);
  else if (d > old)
    heap_down(l, c->heap_idx);
  return 0;
}

uint64_t heap_first(const ws_loop *l) {
  return l->heaplen ? HEAP(l, 0u)->deadline : NO_DEADLINE;
}

/* One due connection. */
static void conn_due(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  const ws_loop_config *cfg = &l->cfg;
  const conn_aux *a = c->aux; /* (it holds every timer of the loop's) */
  if (c->state == C_LINGER && l->now >= AUX_T(c, drv_at)) {
    conn_destroy(c, 0);
    return;
  }
  if (cfg->write_timeout_ms && a && a->stall_since &&
      l->now >= a->stall_since + cfg->write_timeout_ms) {
    c->aux->end_err = (int16_t)WS_LOOP_ERR_STALLED;
    conn_destroy(c, WS_LOOP_ERR_STALLED);
    return;
  }
  if (conn_drain_check(c)) return;
  conn_message_timeout(c);
  if ((c->flags & F_SD_CLOSE) && l->now >= AUX_T(c, drv_at)) {
    c->flags &= ~F_SD_CLOSE;
    if (c->aux) c->aux->drv_at = 0;
    conn_shutdown_close(c);
  }
  if (!(c->flags & F_PAUSED) && ws_conn_next_deadline(CONN_WS(c)) <= l->now)
    conn_tick(c);
  conn_after(c);
}

/* How many entries of the heap are due at |now|: they form a subtree at
 * the root (a node is due only if its parent is), walked depth first
 * with the right children kept on a stack (at most one a level). */
static uint32_t heap_count_due(const ws_loop *l, uint64_t now) {
  uint32_t stack[32], sp = 0, n = 0, i = 0;
  for (;;) {
    if (i < l->heaplen && HEAP(l, i)->deadline <= now) {
      n++;
      /* (i < heaplen <= MAX_SLOTS: no overflow) */
      if (2 * i + 2 < l->heaplen) stack[sp++] = 2 * i + 2;
      i = 2 * i + 1;
    } else if (sp) {
      i = stack[--sp];
    } else {
      return n;
    }
  }
}

void drv_run_timers(ws_loop *l) {
  drv_clock(l);
  /* Handles as many as were due when it started, earliest first: one
   * that is re-armed at once waits for the next round (which does not
   * wait), so the round ends. A dead connection is never in the heap. */
  uint32_t n = heap_count_due(l, l->now);
  while (n-- > 0 && l->heaplen && HEAP(l, 0u)->deadline <= l->now) {
    ws_loop_conn *c = HEAP(l, 0u);
    heap_remove(l, c);
    conn_due(c);
  }
}
