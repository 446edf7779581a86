/* Allocator plumbing and the growable byte buffer.
 * SPDX-License-Identifier: MIT */
#include "ws_int.h"

#ifndef WS_FREESTANDING
#include <stdlib.h>

static void *default_malloc(size_t n, void *ud) {
  (void)ud;
  return malloc(n);
}
static void *default_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return realloc(p, n);
}
static void default_free(void *p, void *ud) {
  (void)ud;
  free(p);
}
#endif

int ws_mem_resolve(ws_mem *dst, const ws_mem *src) {
  ws_mem m = {0};
  if (src) m = *src;
#ifndef WS_FREESTANDING
  if (!m.malloc && !m.realloc && !m.free) {
    m.malloc = default_malloc;
    m.realloc = default_realloc;
    m.free = default_free;
  }
#endif
  /* A partial allocator cannot be mixed with the C library's. (The
   * members are function pointers named after malloc and realloc, not
   * memory: cppcheck's leak check takes them for allocations.) */
  /* cppcheck-suppress memleak */
  if (!m.malloc || !m.realloc || !m.free) return WS_ERR_INVALID_ARGUMENT;
  *dst = m;
  return 0;
}

#if WS_MEM_CALLS /* (ws_int.h) */
void *ws_malloc(const ws_mem *m, size_t n) {
  return m->malloc(n, m->user_data);
}

void ws_free(const ws_mem *m, void *p) {
  if (p) m->free(p, m->user_data);
}
#endif

int ws_buf_reserve(ws_buf *b, const ws_mem *m, size_t extra) {
  return ws_buf_reserve_bounded(b, m, extra, SIZE_MAX);
}

int ws_buf_reserve_bounded(ws_buf *b, const ws_mem *m, size_t extra,
                           size_t limit) {
  if (b->cap - b->len < extra && b->pos > 0) { /* compact */
    size_t live = b->len - b->pos;
    memmove(b->base, b->base + b->pos, live);
    b->pos = 0;
    b->len = live;
  }
  if (b->cap - b->len >= extra) return 0;
  if (extra > SIZE_MAX - b->len) return WS_ERR_NOMEM;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) /* doubling, or just what is needed near the top */
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  /* Growth by doubling must not overshoot the caller's bound. */
  if (cap > limit) cap = need > limit ? need : limit;
  uint8_t *p = ws_realloc(m, b->base, cap);
  if (!p) return WS_ERR_NOMEM;
  b->base = p;
  b->cap = cap;
  return 0;
}

int ws_buf_append(ws_buf *b, const ws_mem *m, const void *data, size_t n) {
  if (n == 0) return 0;
  int rv = ws_buf_reserve(b, m, n);
  if (rv) return rv;
  memcpy(b->base + b->len, data, n);
  b->len += n;
  return 0;
}

void ws_buf_consume_keep(ws_buf *b, const ws_mem *m, size_t n, size_t keep) {
  if (n > b->len - b->pos) n = b->len - b->pos;
  b->pos += n;
  if (b->pos == b->len) ws_buf_clear_keep(b, m, keep);
}

void ws_buf_clear_keep(ws_buf *b, const ws_mem *m, size_t keep) {
  if (b->cap > keep) {
    ws_buf_free(b, m);
    return;
  }
  b->pos = b->len = 0;
}

void ws_buf_free(ws_buf *b, const ws_mem *m) {
  ws_free(m, b->base);
  b->base = NULL;
  b->pos = b->len = b->cap = 0;
}

/* ---- the fixed arena (ws_arena_init) ------------------------------------ */

/* Blocks lie end to end from the start of the buffer, each behind a
 * header word: its payload size (a multiple of WS_ARENA_ALIGN) with the
 * low bit set while it is free. Allocation is first fit, splitting what
 * is left over; a free block merges with the free blocks after it
 * whenever a walk passes it, and growth happens in place when the next
 * block is free. No state outside the arena and the caller's buffer. */
#define A_FREE ((size_t)1)

static size_t a_round(size_t n) {
  return (n + (WS_ARENA_ALIGN - 1)) & ~(size_t)(WS_ARENA_ALIGN - 1);
}

static size_t a_hdr(const uint8_t *p) {
  size_t h;
  memcpy(&h, p, sizeof(h));
  return h;
}

static void a_set(uint8_t *p, size_t h) { memcpy(p, &h, sizeof(h)); }

/* Merges the free blocks that follow the free block at |p|. */
static void a_merge(ws_arena *a, uint8_t *p) {
  uint8_t *end = a->base + a->len;
  size_t sz = a_hdr(p) & ~A_FREE;
  uint8_t *q = p + WS_ARENA_ALIGN + sz;
  while (q < end && (a_hdr(q) & A_FREE)) {
    sz += WS_ARENA_ALIGN + (a_hdr(q) & ~A_FREE);
    q = p + WS_ARENA_ALIGN + sz;
  }
  a_set(p, sz | A_FREE);
}

/* Cuts the block at |p| (in use, payload |have|) down to |want|, leaving
 * the rest as a free block when there is room for one. */
static void a_split(uint8_t *p, size_t have, size_t want) {
  if (have - want < (size_t)2 * WS_ARENA_ALIGN) return;
  a_set(p, want);
  uint8_t *rest = p + WS_ARENA_ALIGN + want;
  a_set(rest, (have - want - WS_ARENA_ALIGN) | A_FREE);
}

static void a_count(ws_arena *a, uint8_t *p, int sign) {
  size_t n = WS_ARENA_ALIGN + (a_hdr(p) & ~A_FREE);
  a->used = sign > 0 ? a->used + n : a->used - n;
  if (a->used > a->peak) a->peak = a->used;
}

/* A request rounded up to whole units (at least one); 0 when the arena
 * could never hold it. */
static size_t a_want(const ws_arena *a, size_t n) {
  return n > a->len ? 0 : a_round(n ? n : 1);
}

/* Puts the block at |p|, |total| payload bytes (free, or counted out of
 * use), to use for |n| of them: the rest, when there is room for one,
 * stays a free block, merged with any free one after it. */
static void *a_take(ws_arena *a, uint8_t *p, size_t total, size_t n) {
  a_set(p, total);
  a_split(p, total, n);
  a_count(a, p, 1);
  if (a_hdr(p) != total) a_merge(a, p + WS_ARENA_ALIGN + a_hdr(p));
  return p + WS_ARENA_ALIGN;
}

static void *a_malloc(size_t n, void *ud) {
  ws_arena *a = ud;
  uint8_t *p = a->base, *end = a->base + a->len;
  if ((n = a_want(a, n)) == 0) return NULL;
  while (p < end) {
    size_t h = a_hdr(p);
    if (h & A_FREE) {
      a_merge(a, p); /* (so the block after it is in use, or the end) */
      h = a_hdr(p) & ~A_FREE;
      if (h >= n) return a_take(a, p, h, n);
    }
    p += WS_ARENA_ALIGN + (h & ~A_FREE);
  }
  return NULL;
}

static void a_free(void *ptr, void *ud) {
  ws_arena *a = ud;
  if (!ptr) return;
  uint8_t *p = (uint8_t *)ptr - WS_ARENA_ALIGN;
  a_count(a, p, -1);
  a_set(p, a_hdr(p) | A_FREE);
  a_merge(a, p);
}

static void *a_realloc(void *ptr, size_t n, void *ud) {
  ws_arena *a = ud;
  if (!ptr) return a_malloc(n, ud);
  uint8_t *p = (uint8_t *)ptr - WS_ARENA_ALIGN;
  size_t have = a_hdr(p), total = have;
  if ((n = a_want(a, n)) == 0) return NULL;
  /* In place when the block, grown into the free block behind it if
   * need be, holds |n|. */
  uint8_t *next = p + WS_ARENA_ALIGN + have;
  if (n > have && next < a->base + a->len && (a_hdr(next) & A_FREE)) {
    a_merge(a, next);
    total += WS_ARENA_ALIGN + (a_hdr(next) & ~A_FREE);
  }
  if (n <= total) {
    a_count(a, p, -1);
    return a_take(a, p, total, n);
  }
  void *q = a_malloc(n, ud);
  if (!q) return NULL;
  memcpy(q, ptr, have);
  a_free(ptr, ud);
  return q;
}

int ws_arena_init(ws_arena *a, void *buf, size_t len, ws_mem *pmem) {
  if (!a || !buf || !pmem) return WS_ERR_INVALID_ARGUMENT;
  /* the buffer's aligned part, whole blocks only */
  size_t skip = (size_t)(-(uintptr_t)buf & (WS_ARENA_ALIGN - 1));
  if (len < skip + (size_t)2 * WS_ARENA_ALIGN) return WS_ERR_INVALID_ARGUMENT;
  memset(a, 0, sizeof(*a));
  a->base = (uint8_t *)buf + skip;
  a->len = (len - skip) & ~(size_t)(WS_ARENA_ALIGN - 1);
  a_set(a->base, (a->len - WS_ARENA_ALIGN) | A_FREE);
  pmem->user_data = a;
  pmem->malloc = a_malloc;
  pmem->realloc = a_realloc;
  pmem->free = a_free;
  return 0;
}

size_t ws_arena_peak(const ws_arena *a) { return a ? a->peak : 0; }
