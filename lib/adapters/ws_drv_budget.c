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

/* ---- connection blocks ------------------------------------------------------
 * A connection's block: its size is known at free, no header. Those of
 * the common size (l->slab_n: a listener's connection without a tail)
 * come from slabs of SLAB_BLOCKS. Allocated one by one, long-lived blocks
 * end up among the short-lived allocations of handshakes and messages,
 * and the C library's allocator leaves holes between them that nothing
 * fills (10,000 idle connections: 265 bytes of RSS each at the margin,
 * for a 200-byte block); side by side in slabs they cost their size
 * (218). A freed block goes on its slab's free list; a slab whose blocks
 * are all free is given back unless it is the only one with room. The
 * budget counts blocks as before (the room of a slab's free blocks is not
 * counted: at most what its connections held at their peak). */

typedef struct drv_slab {
  struct drv_slab *next, *prev; /* the list of slabs with room */
  void *free;                   /* freed blocks, linked by their first word */
  uint32_t live;                /* blocks handed out */
  uint32_t carved;              /* blocks ever handed out (the rest: never) */
} drv_slab;
/* The blocks start after the header, aligned as every block. */
#define SLAB_HDR                                                               \
  ((sizeof(drv_slab) + WS_ARENA_ALIGN - 1) & ~(size_t)(WS_ARENA_ALIGN - 1))
_Static_assert(SLAB_HDR <= SLAB_HDR_MAX, "fuzz_loop's bound");

/* AddressSanitizer: free and never used blocks of a slab are poisoned, so
 * that a use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#  define SLAB_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define SLAB_ASAN 1
#  endif
#endif
#if defined(SLAB_ASAN)
#  include <sanitizer/asan_interface.h>
#  define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#  define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#  define SLAB_POISON(p, n) ((void)(p), (void)(n))
#  define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static uint8_t *slab_blocks(drv_slab *s) { return (uint8_t *)s + SLAB_HDR; }

static void slab_unlink(ws_loop *l, drv_slab *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    l->partial = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

static void slab_push(ws_loop *l, drv_slab *s) {
  s->prev = NULL;
  s->next = l->partial;
  if (s->next) s->next->prev = s;
  l->partial = s;
}

/* The place of the first slab at or after |p| in l->slabs. */
static uint32_t slab_find(const ws_loop *l, const void *p) {
  uint32_t lo = 0, hi = l->nslabs;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)l->slabs[mid] < (uintptr_t)p)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* A new slab, in l->slabs and on the list of slabs with room. */
static drv_slab *slab_new(ws_loop *l) {
  if (l->nslabs == l->slabcap) {
    uint32_t cap = l->slabcap ? 2 * l->slabcap : 16;
    void **a = l->umem.realloc(l->slabs, cap * sizeof(void *),
                               l->umem.user_data);
    if (!a) return NULL;
    l->slabs = a;
    l->slabcap = cap;
  }
  drv_slab *s = l->umem.malloc(SLAB_HDR + SLAB_BLOCKS * l->slab_n,
                               l->umem.user_data);
  if (!s) return NULL;
  memset(s, 0, sizeof(*s));
  SLAB_POISON(slab_blocks(s), SLAB_BLOCKS * l->slab_n);
  uint32_t at = slab_find(l, s);
  memmove(l->slabs + at + 1, l->slabs + at,
          (l->nslabs - at) * sizeof(void *));
  l->slabs[at] = s;
  l->nslabs++;
  slab_push(l, s);
  return s;
}

static void *slab_alloc(ws_loop *l) {
  drv_slab *s = l->partial ? l->partial : slab_new(l);
  if (!s) return NULL;
  uint8_t *p;
  if (s->free) {
    p = s->free;
    SLAB_UNPOISON(p, l->slab_n);
    memcpy(&s->free, p, sizeof(s->free));
  } else {
    p = slab_blocks(s) + (size_t)s->carved++ * l->slab_n;
    SLAB_UNPOISON(p, l->slab_n);
  }
  s->live++;
  if (!s->free && s->carved == SLAB_BLOCKS) slab_unlink(l, s); /* full */
  return p;
}

static void slab_release(ws_loop *l, drv_slab *s, uint32_t at) {
  slab_unlink(l, s);
  memmove(l->slabs + at, l->slabs + at + 1,
          (l->nslabs - at - 1) * sizeof(void *));
  l->nslabs--;
  SLAB_UNPOISON(slab_blocks(s), SLAB_BLOCKS * l->slab_n);
  l->umem.free(s, l->umem.user_data);
}

static void slab_free(ws_loop *l, void *p) {
  /* its slab: the last one that starts at or before it */
  uint32_t at = slab_find(l, (const uint8_t *)p + 1) - 1;
  drv_slab *s = (drv_slab *)l->slabs[at];
  int was_full = !s->free && s->carved == SLAB_BLOCKS;
  memcpy(p, &s->free, sizeof(s->free));
  SLAB_POISON(p, l->slab_n);
  s->free = p;
  s->live--;
  if (was_full) slab_push(l, s);
  /* all free: given back, unless it is the only slab with room (a
   * connection coming and going does not make and free one each time) */
  if (s->live == 0 && (l->partial != s || s->next)) slab_release(l, s, at);
}

void drv_slabs_free(ws_loop *l) {
  while (l->nslabs) {
    drv_slab *s = (drv_slab *)l->slabs[l->nslabs - 1];
    slab_release(l, s, l->nslabs - 1);
  }
  l->umem.free(l->slabs, l->umem.user_data);
  l->slabs = NULL;
  l->slabcap = 0;
}

void *drv_block_alloc(ws_loop *l, size_t n) {
  if (mem_refused(l, n)) return NULL;
  void *p = n == l->slab_n ? slab_alloc(l) : l->umem.malloc(n, l->umem.user_data);
  if (p) mem_add(l, n);
  return p;
}

void drv_block_free(ws_loop *l, void *p, size_t n) {
  if (!p) return;
  atomic_fetch_sub(&l->mem_now, n);
  if (n == l->slab_n)
    slab_free(l, p);
  else
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
