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

int ws_buf_reserve(ws_buf *b, const ws_mem *m, size_t extra) {
  return ws_buf_reserve_bounded(b, m, extra, SIZE_MAX);
}

int ws_buf_reserve_bounded(ws_buf *b, const ws_mem *m, size_t extra,
                           size_t limit) {
  if (b->cap - b->len >= extra) return 0;
  if (b->pos > 0) { /* compact */
    size_t live = b->len - b->pos;
    memmove(b->base, b->base + b->pos, live);
    b->pos = 0;
    b->len = live;
    if (b->cap - b->len >= extra) return 0;
  }
  if (extra > SIZE_MAX - b->len) return WS_ERR_NOMEM;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
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

int ws_buf_append_str(ws_buf *b, const ws_mem *m, const char *s) {
  return ws_buf_append(b, m, s, strlen(s));
}

void ws_buf_consume(ws_buf *b, const ws_mem *m, size_t n) {
  if (n > b->len - b->pos) n = b->len - b->pos;
  b->pos += n;
  if (b->pos == b->len) ws_buf_free(b, m);
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
