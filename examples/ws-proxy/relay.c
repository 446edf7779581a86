/*
 * ws-proxy: the relay between a client and its upstream once both are
 * open. Messages stream through chunk by chunk (WS_DELIVER_STREAM in,
 * ws_loop_send() with WS_SEND_MORE out), so a message of any size passes
 * in constant memory; permessage-deflate is negotiated on each side on
 * its own. Backpressure holds end to end: when one side's pending output
 * goes over the loop's high-water mark (on_writable 0), the other side
 * stops being read until it drains. Close codes and reasons go across;
 * an upstream that vanishes gives the client 1014, a client that
 * vanishes gives the upstream 1001.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include "proxy.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *dup_slice(ws_slice s) {
  char *p = malloc(s.len + 1);
  if (!p) return NULL;
  if (s.len) memcpy(p, s.base, s.len);
  p[s.len] = 0;
  return p;
}

int side_of(const pair *p, const ws_loop_conn *c) {
  return p->s[SIDE_CLIENT].conn == c ? SIDE_CLIENT : SIDE_UPSTREAM;
}

/* Both sides are over (the client always has one; the upstream only if a
 * connect was started). */
void pair_maybe_end(pair *p) {
  if (!p->s[SIDE_CLIENT].done || p->s[SIDE_UPSTREAM].conn) return;
  if (p->w) {
    access_log(p);
    if (p->counted_open) atomic_fetch_sub(&m.open, 1);
    if (p->prev)
      p->prev->next = p->next;
    else
      p->w->pairs = p->next;
    if (p->next) p->next->prev = p->prev;
    p->w = NULL;
  }
  free(p->path);
  free(p->proto);
  free(p->arena);
  free(p);
}

int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  pair *p = ud;
  int from = side_of(p, conn), to = !from;
  ws_loop_conn *dst = p->s[to].conn;
  if (!dst || p->state != P_OPEN) return 0; /* the other side is gone */
  ws_opcode op = ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
  uint32_t fl = (ev->flags & WS_EVF_FINAL) ? 0 : WS_SEND_MORE;
  int rv = ws_loop_send(dst, op, ev->data.base, ev->data.len, fl);
  if (rv == WS_ERR_WOULDBLOCK) { /* its queue is full: keep the chunk */
    p->s[from].kept = 1;
    return WS_LOOP_PAUSE;
  }
  if (rv != 0) return 0; /* closing: dropped */
  if (to == SIDE_CLIENT) {
    atomic_fetch_add(&m.bytes_to_clients, ev->data.len);
    if (!fl) atomic_fetch_add(&m.msgs_to_clients, 1);
  } else {
    atomic_fetch_add(&m.bytes_to_upstreams, ev->data.len);
    if (!fl) atomic_fetch_add(&m.msgs_to_upstreams, 1);
  }
  return 0;
}

/* Backpressure: one side over its high-water mark stops reading the
 * other, under its low-water mark starts it again. */
int on_writable(ws_loop_conn *conn, void *ud, int writable) {
  pair *p = ud;
  if (!p || ud == &admin_tag) return 0;
  int other = !side_of(p, conn);
  ws_loop_conn *o = p->s[other].conn;
  if (!o || (other == SIDE_CLIENT && p->held)) return 0;
  ws_loop_conn_pause_reading(o, !writable);
  if (writable && p->s[other].kept) {
    p->s[other].kept = 0;
    ws_loop_resume(o);
  }
  return 0;
}

/* Notes how side |me| ended, for the log and the counters. */
static void side_ended(pair *p, int me, ws_loop_conn *conn,
                       const ws_loop_close_info *info) {
  side *s = &p->s[me];
  ws_conn_stats(ws_loop_conn_ws(conn), &s->st);
  s->code = info->code;
  s->sent = info->sent_code;
  size_t n = info->reason.len < 123 ? info->reason.len : 123;
  if (n) memcpy(s->reason, info->reason.base, n);
  s->reason[n] = 0;
  s->conn = NULL;
  s->done = 1;
  if (me == SIDE_CLIENT) {
    if (p->gate) { /* what the client still sends goes nowhere */
      gate_get_info(p->gate)->pair = NULL;
      gate_open(p->gate);
    }
    p->gate = NULL;
    atomic_fetch_add(&m.wire_to_clients, s->st.wire_out);
    if (p->state == P_OPEN) count_close(m.closes_client, info->code);
  } else {
    atomic_fetch_add(&m.wire_to_upstreams, s->st.wire_out);
    if (p->ups_counted) atomic_fetch_sub(&p->ups->open, 1);
    p->ups_counted = 0;
    p->open_kept = 0; /* its open event went with it */
    if (p->state == P_OPEN) count_close(m.closes_upstream, info->code);
  }
}

/* Side |me| ended: the other one, |o|, gets its close code and reason,
 * or 1001 (the client went) / 1014 (the upstream went). */
static void pass_close(pair *p, int me, ws_loop_conn *o,
                       const ws_loop_close_info *info) {
  /* Let the other side read its close reply, and pass the close on. */
  ws_loop_conn_pause_reading(o, 0);
  if (p->s[!me].kept) {
    p->s[!me].kept = 0;
    ws_loop_resume(o);
  }
  int clean = info->error == 0 && info->code != 1006;
  if (clean && info->code == 1005)
    ws_loop_close(o, 0, NULL, 0);
  else if (clean && ws_close_code_valid(info->code))
    ws_loop_close(o, info->code, info->reason.base, info->reason.len);
  else if (me == SIDE_CLIENT)
    ws_loop_close(o, 1001, "client gone", 11);
  else
    ws_loop_close(o, 1014, "bad gateway", 11);
}

int on_close(ws_loop_conn *conn, void *ud, const ws_loop_close_info *info) {
  pair *p = ud;
  if (!p || ud == &admin_tag) return 0;
  int me = side_of(p, conn);
  side_ended(p, me, conn, info);
  if (me == SIDE_UPSTREAM && p->state == P_CONNECTING) {
    upstream_not_opened(p, info);
    return 0;
  }
  if (!p->first) p->first = me == SIDE_CLIENT ? "client" : "upstream";
  if (me == SIDE_CLIENT && p->state == P_CONNECTING) p->client_gone = 1;
  ws_loop_conn *o = p->s[!me].conn;
  if (o && me == SIDE_UPSTREAM && p->held) {
    /* The client's close (or bad frame) goes to its core now, after
     * everything the upstream sent before it closed. */
    p->held = 0;
    gate_open(p->gate);
    ws_loop_conn_pause_reading(o, 0);
  } else if (o) {
    pass_close(p, me, o, info);
  }
  pair_maybe_end(p);
  return 0;
}

void gate_held(gate_info *gi) {
  pair *p = gi->pair;
  ws_loop_conn *cl = p ? p->s[SIDE_CLIENT].conn : NULL;
  ws_loop_conn *up = p ? p->s[SIDE_UPSTREAM].conn : NULL;
  if (!cl || !up || p->state != P_OPEN) { /* no upstream to wait for */
    if (p && p->gate) gate_open(p->gate);
    return;
  }
  p->held = 1;
  if (!p->first) p->first = "client";
  ws_loop_conn_pause_reading(cl, 1); /* until the upstream has closed */
  ws_loop_conn_pause_reading(up, 0);
  int rv = -1;
  if (!gi->bad && gi->code == 1005)
    rv = ws_loop_close(up, 0, NULL, 0);
  else if (!gi->bad)
    rv = ws_loop_close(up, gi->code, gi->reason, gi->reasonlen);
  if (rv == WS_ERR_INVALID_ARGUMENT || gi->bad) /* the client's core fails */
    ws_loop_close(up, 1001, "client gone", 11);
}

void drain(ws_loop *loop, void *arg) {
  (void)arg;
  worker *w = ws_loop_user_data(loop);
  ws_loop_close_listeners(loop);
  for (pair *p = w->pairs; p; p = p->next) {
    if (!p->first) p->first = "proxy";
    if (p->state != P_OPEN) continue;
    if (p->s[SIDE_CLIENT].conn)
      ws_loop_close(p->s[SIDE_CLIENT].conn, 1012, "service restart", 15);
    if (p->s[SIDE_UPSTREAM].conn)
      ws_loop_close(p->s[SIDE_UPSTREAM].conn, 1001, "going away", 10);
  }
  ws_loop_shutdown(loop, 1012, 0, opt.drain_ms);
}
