/*
 * Budgets and caps: the loop-wide memory budget (a counting allocator
 * under every allocation of the loop and of its connections' cores), the
 * listeners' connection caps, the Origin allowlist, and how many
 * connections may keep a deflate context.
 * SPDX-License-Identifier: MIT
 *
 * Who pays: an allocation over the budget made while a connection's
 * input is fed (l->feeding) marks that connection (F_BUDGET) and every
 * later allocation for it is refused too, so the core fails it with
 * WS_ERR_NOMEM and drops what it held for the message; the loop then
 * writes the close 1013 "try again later" itself (the core's own close
 * frame could not be queued: its output queue is freed when empty).
 */
#include "ws_drv.h"

#include <stddef.h>
#include <string.h>

/* Room before each block for its size. The blocks keep the alignment
 * the core's own arena gives its blocks (WS_ARENA_ALIGN, 8: the core and
 * the loop store nothing that needs more), not max_align_t's (16 on
 * x86-64): 8 bytes less a block, and a chunk size class less for many
 * (an idle connection's deflate state, 64 B: 96 -> 80 B with glibc). */
#define MEM_HDR WS_ARENA_ALIGN
_Static_assert(sizeof(size_t) <= MEM_HDR, "MEM_HDR too small");
_Static_assert(_Alignof(uint64_t) <= MEM_HDR && _Alignof(void *) <= MEM_HDR &&
                   _Alignof(double) <= MEM_HDR,
               "MEM_HDR below the alignment of what is stored");

/* Up to this many connections over a cap wait for their request to
 * answer it 503; beyond, they are closed at once. */
#define MAX_REFUSING 64

/* ---- the counting allocator ------------------------------------------------
 * The counts are atomic: posts are allocated on other threads. Only the
 * loop's thread looks at |feeding| and refuses. */

static void mem_add(ws_loop *l, uint64_t n) {
  uint64_t now = atomic_fetch_add(&l->mem_now, n) + n;
  uint64_t peak = atomic_load(&l->mem_peak);
  while (now > peak &&
         !atomic_compare_exchange_weak(&l->mem_peak, &peak, now)) {
  }
}

/* 1 if |extra| more bytes may not be allocated now. */
static int mem_refused(ws_loop *l, size_t extra) {
  ws_loop_conn *c = l->feeding;
  if (c && (c->flags & F_BUDGET)) return 1;
  if (!l->cfg.memory_budget ||
      atomic_load(&l->mem_now) + extra <= l->cfg.memory_budget)
    return 0;
  if (c) c->flags |= F_BUDGET;
  return 1;
}

static void *count_malloc(ws_loop *l, size_t n, int check) {
  if (n > SIZE_MAX - MEM_HDR) return NULL;
  size_t t = n + MEM_HDR;
  if (check && mem_refused(l, t)) return NULL;
  unsigned char *p = l->umem.malloc(t, l->umem.user_data);
  if (!p) return NULL;
  memcpy(p, &t, sizeof(t));
  mem_add(l, t);
  return p + MEM_HDR;
}

static void *b_malloc(size_t n, void *ud) { return count_malloc(ud, n, 1); }

/* A connection's block: its size is known at free, no header. */
void *drv_block_alloc(ws_loop *l, size_t n) {
  if (mem_refused(l, n)) return NULL;
  void *p = l->umem.malloc(n, l->umem.user_data);
  if (p) mem_add(l, n);
  return p;
}

void drv_block_free(ws_loop *l, void *p, size_t n) {
  if (!p) return;
  atomic_fetch_sub(&l->mem_now, n);
  l->umem.free(p, l->umem.user_data);
}

void *budget_malloc_posted(ws_loop *l, size_t n) {
  return count_malloc(l, n ? n : 1, 0);
}

static void *b_realloc(void *ptr, size_t n, void *ud) {
  ws_loop *l = ud;
  if (!ptr) return b_malloc(n, ud);
  if (n > SIZE_MAX - MEM_HDR) return NULL;
  unsigned char *base = (unsigned char *)ptr - MEM_HDR;
  size_t old, t = n + MEM_HDR;
  memcpy(&old, base, sizeof(old));
  if (t > old && mem_refused(l, t - old)) return NULL;
  unsigned char *p = l->umem.realloc(base, t, l->umem.user_data);
  if (!p) return NULL;
  memcpy(p, &t, sizeof(t));
  atomic_fetch_sub(&l->mem_now, old);
  mem_add(l, t);
  return p + MEM_HDR;
}

static void b_free(void *ptr, void *ud) {
  ws_loop *l = ud;
  if (!ptr) return;
  unsigned char *base = (unsigned char *)ptr - MEM_HDR;
  size_t old;
  memcpy(&old, base, sizeof(old));
  atomic_fetch_sub(&l->mem_now, old);
  l->umem.free(base, l->umem.user_data);
}

void budget_init_mem(ws_loop *l) {
  l->mem.user_data = l;
  l->mem.malloc = b_malloc;
  l->mem.realloc = b_realloc;
  l->mem.free = b_free;
}

void ws_loop_memory(const ws_loop *l, uint64_t *pnow, uint64_t *ppeak) {
  if (pnow) *pnow = l ? atomic_load(&l->mem_now) : 0;
  if (ppeak) *ppeak = l ? atomic_load(&l->mem_peak) : 0;
}

int budget_high(const ws_loop *l) {
  uint64_t b = l->cfg.memory_budget;
  return b && atomic_load(&l->mem_now) > b - b / 10;
}

int budget_hold_back(const ws_loop_conn *c) {
  return (c->flags & F_CONGESTED) && budget_high(conn_loop(c));
}

/* ---- caps at accept ------------------------------------------------------ */

/* FNV-1a of the peer's address without its port. */
static uint64_t peer_hash(ws_loop *l, int fd) {
  char buf[64];
  if (l->sys.peer(l->sys.self, fd, buf, sizeof(buf)) != 0) return 0;
  char *colon = strrchr(buf, ':');
  if (colon) *colon = 0;
  uint64_t h = 1469598103934665603ull;
  for (const char *p = buf; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ull;
  }
  return h ? h : 1;
}

static uint32_t count_ip(const ws_loop *l, const listener *s, uint64_t ip) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < l->nslots; i++) {
    const ws_loop_conn *c = drv_slot_conn(l, i);
    if (c && c->lst == s && (c->flags & F_COUNTED) && conn_peer_hash(c) == ip)
      n++;
  }
  return n;
}

/* At the max_handshakes cap: closes the oldest handshake of |s| that the
 * application has not heard of, if it has run WS_LOOP_HANDSHAKE_DISPLACE_MS
 * (a peer that started one and stalled). Returns 0 if one was closed. One
 * scan of the connections finds it; when none is old enough, none is
 * looked for again before the oldest could be, so that a flood of new
 * connections costs a scan per displaced handshake at most. */
static int displace_handshake(ws_loop *l, listener *s) {
  const uint32_t wait = WS_LOOP_HANDSHAKE_DISPLACE_MS;
  uint64_t now = drv_clock(l);
  if (now < s->displace_at) return -1;
  ws_loop_conn *old = NULL;
  uint32_t age = 0;
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = drv_slot_conn(l, i);
    if (!c || c->lst != s || (c->flags & (F_HS | F_KNOWN | F_TOLD)) != F_HS)
      continue;
    uint32_t a = (uint32_t)now - conn_hs_ms(c);
    if (!old || a > age) {
      old = c;
      age = a;
    }
  }
  if (!old || age < wait) { /* none, or none old enough yet */
    s->displace_at = now + (old ? wait - age : wait);
    return -1;
  }
  conn_drop(old, "displaced (max_handshakes)");
  return 0;
}

int budget_admit(ws_loop *l, listener *s, int fd, ws_config *cfg,
                 uint32_t *pflags, uint64_t *pip) {
  uint32_t over = 0;
  if (s->max_conns && s->nconns >= s->max_conns)
    over = F_CAP_CONNS;
  else if (s->max_hs && s->nhs >= s->max_hs && displace_handshake(l, s) != 0)
    over = F_CAP_HS;
  *pflags = 0;
  *pip = 0;
  if (!over && s->max_per_ip) {
    *pip = peer_hash(l, fd);
    if (count_ip(l, s, *pip) >= s->max_per_ip) over = F_CAP_IP;
  }
  if (over) {
    *pflags = F_REFUSE | over;
    /* TLS: no handshake work for a connection that is refused anyway */
    if (s->tp || l->nrefusing >= MAX_REFUSING) return -1;
    return 0;
  }
  *pflags = F_COUNTED | F_HS;
  const ws_pmd_config *p = &cfg->pmd;
  if (s->max_pmd && p->enable &&
      !(p->server_no_context_takeover && p->client_no_context_takeover)) {
    if (s->npmd >= s->max_pmd) {
      /* RFC 7692 7.1.1: the server may ask for both */
      cfg->pmd.server_no_context_takeover = 1;
      cfg->pmd.client_no_context_takeover = 1;
    } else {
      *pflags |= F_PMDCTX;
    }
  }
  return 0;
}

uint32_t budget_tail(const listener *s) {
  return (s->max_per_ip ? F_TAIL_IP : 0) | (s->max_hs ? F_TAIL_HS : 0);
}

void budget_count(ws_loop_conn *c) {
  listener *s = c->lst;
  if (c->flags & F_REFUSE) conn_loop(c)->nrefusing++;
  if (c->flags & F_COUNTED) s->nconns++;
  if (c->flags & F_HS) {
    s->nhs++;
    conn_set_hs_ms(c, (uint32_t)drv_clock(conn_loop(c)));
  }
  if (c->flags & F_PMDCTX) s->npmd++;
}

void budget_hs_done(ws_loop_conn *c) {
  if (!(c->flags & F_HS)) return;
  c->flags &= ~F_HS;
  c->lst->nhs--;
}

void budget_opened(ws_loop_conn *c) {
  budget_hs_done(c);
  if (!(c->flags & F_PMDCTX)) return;
  ws_pmd_params pp;
  ws_conn_pmd(CONN_WS(c), &pp);
  if (!pp.enabled ||
      (pp.server_no_context_takeover && pp.client_no_context_takeover)) {
    c->flags &= ~F_PMDCTX;
    c->lst->npmd--;
  }
}

void budget_release(ws_loop_conn *c) {
  listener *s = c->lst;
  if (c->flags & F_REFUSE) conn_loop(c)->nrefusing--;
  /* (none of these for the loop's |unlisted|) */
  budget_hs_done(c);
  if (c->flags & F_COUNTED) s->nconns--;
  if (c->flags & F_PMDCTX) s->npmd--;
  c->flags &= ~(F_REFUSE | F_COUNTED | F_PMDCTX);
}

const char *budget_cap_reason(uint32_t flags) {
  if (flags & F_CAP_CONNS) return "over max_conns";
  if (flags & F_CAP_HS) return "over max_handshakes";
  return "over max_conns_per_ip";
}

const char *budget_nomem_reason(const ws_loop *l, uint32_t flags) {
  return (flags & F_BUDGET) || budget_high(l) ? "memory budget"
                                              : "out of memory";
}

int budget_request_status(ws_loop_conn *c, const ws_request *req,
                          const char **preason) {
  const listener *s = c->lst;
  const char *why = NULL;
  int st = 0;
  if (c->flags & F_REFUSE) {
    st = 503;
    why = budget_cap_reason(c->flags);
  } else if (budget_high(conn_loop(c))) {
    st = 503;
    why = "memory budget";
  } else if (req && (s->norigins || s->origin_flags) && req->key.len &&
             !ws_request_origin_allowed(req, s->origins, s->norigins,
                                        s->origin_flags)) {
    /* RFC 6455 10.2: the Origin tells which page opened the connection */
    st = 403;
    why = "origin not allowed";
  }
  if (preason) *preason = why;
  return st;
}

/* ---- the 1013 close -------------------------------------------------------
 */

void budget_close_frame(ws_loop_conn *c) {
  static const char reason[] = "try again later";
  uint8_t f[2 + 2 + sizeof(reason) - 1];
  /* only on an open WebSocket: a request head refused by the budget
   * just ends (no frame may follow a handshake that never completed) */
  if ((c->flags & (F_BUDGET | F_BCLOSE | F_OPEN)) != (F_BUDGET | F_OPEN) ||
      c->role != WS_ROLE_SERVER || ws_conn_close_code(CONN_WS(c)) != 0)
    return;
  c->flags |= F_BCLOSE;
  /* RFC 6455 5.5.1: a server's close frame, unmasked: FIN|close, the
   * length, the code (7.4.1: 1013 is registered with IANA), the reason */
  f[0] = 0x88;
  f[1] = (uint8_t)(sizeof(f) - 2);
  f[2] = 1013 >> 8;
  f[3] = 1013 & 0xff;
  memcpy(f + 4, reason, sizeof(reason) - 1);
  ws_iovec v = {f, sizeof(f)};
  size_t w = 0;
  /* Best effort: the socket is idle (the core's queue just drained), so
   * 19 bytes go at once; if not, the connection simply closes. */
  (void)conn_tp(c)->write(conn_tctx(c), c->fd, &v, 1, &w);
}
