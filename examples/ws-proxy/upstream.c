/*
 * ws-proxy: the choice of upstream (the least loaded among those not
 * tried yet for this client) and the back-off of one that fails
 * (1 s, doubling up to 30 s, shared by every thread).
 * SPDX-License-Identifier: MIT
 */
#include "proxy.h"

#include <stdio.h>
#include <string.h>

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

/* The upstream with the fewest open connections among those not tried
 * yet and not backing off; if all back off, the one free soonest. */
static upstream *pick_upstream(pair *p) {
  uint64_t now = mono_ms();
  upstream *best = NULL, *soonest = NULL;
  for (int i = 0; i < opt.nups; i++) {
    upstream *u = &opt.ups[i];
    if (p->tried & (1u << i)) continue;
    uint64_t du = atomic_load(&u->down_until);
    if (du > now) {
      if (!soonest || du < atomic_load(&soonest->down_until)) soonest = u;
      continue;
    }
    if (!best || atomic_load(&u->open) < atomic_load(&best->open)) best = u;
  }
  return best ? best : soonest;
}

void upstream_failed(upstream *u) {
  unsigned f = atomic_fetch_add(&u->fails, 1) + 1;
  uint64_t d = BACKOFF_MIN_MS;
  for (unsigned i = 1; i < f && d < BACKOFF_MAX_MS; i++)
    d *= 2;
  if (d > BACKOFF_MAX_MS) d = BACKOFF_MAX_MS;
  atomic_store(&u->down_until, mono_ms() + d);
}

void upstream_ok(upstream *u) {
  atomic_store(&u->fails, 0);
  atomic_store(&u->down_until, 0);
}

int start_upstream(pair *p) {
  worker *w = p->w;
  for (;;) {
    upstream *u = pick_upstream(p);
    if (!u) return -1;
    p->tried |= 1u << (u - opt.ups);
    p->ups = u;
    p->attempts++;
    char path[4096];
    const char *base = u->u.path;
    size_t bl = strcspn(base, "?");
    while (bl > 0 && base[bl - 1] == '/')
      bl--;
    snprintf(path, sizeof(path), "%.*s%s", (int)bl, base, p->path);
    ws_loop_connect_params cp;
    memset(&cp, 0, sizeof(cp));
    cp.host = u->u.host;
    cp.port = u->u.port;
    cp.request = p->rq;
    cp.request.path = path;
    cp.config = &up_cfg;
    cp.user_data = p;
    cp.transport = u->tp;
    ws_loop_conn *c = NULL;
    if (ws_loop_connect(w->loop, &cp, &c) == 0) {
      p->s[SIDE_UPSTREAM].conn = c;
      atomic_fetch_add(&u->open, 1);
      p->ups_counted = 1;
      return 0;
    }
    upstream_failed(u);
  }
}
