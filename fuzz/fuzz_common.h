/*
 * Helpers shared by the deflate fuzz targets: CHECK, a counting
 * allocator for ws_mem, a small PRNG for chunk sizes.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_FUZZ_COMMON_H
#define WS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_int.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* ---- counting allocator --------------------------------------------------- */

/* Counts live bytes and blocks; aborts when live bytes would exceed
 * |limit|, which the target sets to what the codec documents. */
typedef struct fz_alloc {
  ws_mem mem;
  size_t live, blocks, calls, limit;
} fz_alloc;

#define FZ_HDR 16 /* keeps malloc's alignment */

static inline void *fz_malloc(size_t n, void *ud) {
  fz_alloc *a = (fz_alloc *)ud;
  a->calls++;
  if (n > a->limit || a->live + n > a->limit) {
    fprintf(stderr, "allocation over the documented size: %zu + %zu > %zu\n",
            a->live, n, a->limit);
    abort();
  }
  uint8_t *p = (uint8_t *)malloc(n + FZ_HDR);
  if (!p) return NULL;
  memcpy(p, &n, sizeof(n));
  a->live += n;
  a->blocks++;
  return p + FZ_HDR;
}

static inline void fz_free(void *ptr, void *ud) {
  fz_alloc *a = (fz_alloc *)ud;
  if (!ptr) return;
  uint8_t *p = (uint8_t *)ptr - FZ_HDR;
  size_t n;
  memcpy(&n, p, sizeof(n));
  CHECK(a->live >= n && a->blocks > 0);
  a->live -= n;
  a->blocks--;
  free(p);
}

static inline void *fz_realloc(void *ptr, size_t n, void *ud) {
  (void)ptr;
  (void)n;
  (void)ud;
  /* The codecs allocate one block and never resize it. */
  fprintf(stderr, "unexpected realloc\n");
  abort();
}

static inline void fz_alloc_init(fz_alloc *a, size_t limit) {
  memset(a, 0, sizeof(*a));
  a->limit = limit;
  a->mem.user_data = a;
  a->mem.malloc = fz_malloc;
  a->mem.realloc = fz_realloc;
  a->mem.free = fz_free;
}

/* ---- chunk sizes -------------------------------------------------------------- */

static inline uint32_t fz_rand(uint32_t *r) {
  uint32_t x = *r ? *r : 0x9E3779B9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *r = x;
  return x;
}

/* Chunk modes, two bits of the input's first bytes. */
enum { FZ_MIX = 0, FZ_ONE = 1, FZ_WHOLE = 2, FZ_SMALL = 3 };

/* A piece of 1..left bytes (0 if left is 0) for |mode|. */
static inline size_t fz_piece(uint32_t *r, unsigned mode, size_t left) {
  size_t n;
  if (left == 0) return 0;
  switch (mode) {
  case FZ_ONE: n = 1; break;
  case FZ_WHOLE: n = left; break;
  case FZ_SMALL: n = 1 + fz_rand(r) % 7u; break;
  default: {
    uint32_t x = fz_rand(r);
    switch (x & 3u) {
    case 0: n = 1; break;
    case 1: n = 1 + (x >> 8) % 16u; break;
    case 2: n = 1 + (x >> 8) % 512u; break;
    default: n = left; break;
    }
  }
  }
  return n < left ? n : left;
}

#endif /* WS_FUZZ_COMMON_H */
