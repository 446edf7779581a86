/* Shared helpers for the unit tests. SPDX-License-Identifier: MIT */
#ifndef WS_TESTUTIL_H
#define WS_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ws_int.h"

/* Decodes a hex string (spaces ignored) into a malloc'd buffer. */
uint8_t *tu_hex(const char *hex, size_t *plen);

/* Asserts |len| bytes at |got| equal the hex string |hex|. */
void tu_assert_hex(const uint8_t *got, size_t len, const char *hex);

/* A deterministic xorshift PRNG for tests. */
uint32_t tu_rand(uint64_t *state);

/* ws_rand_fn backed by tu_rand; user_data is a uint64_t * state. */
int tu_rand_fn(uint8_t *buf, size_t len, void *user_data);

/* An allocator that fails the N-th allocation (fail_at, 1-based; 0
 * never) and counts live blocks and bytes to catch leaks. */
typedef struct tu_alloc {
  ws_mem mem;
  size_t calls;
  size_t fail_at;
  size_t live_blocks;
  size_t live_bytes;
  size_t peak_bytes;
} tu_alloc;

void tu_alloc_init(tu_alloc *a, size_t fail_at);

/* The bytes of a connection's busy-only state, measured: what
 * ws_conn_shrink() frees of an open, quiet server connection (0 in a
 * build that keeps that state inside the object). */
size_t tu_conn_busy_bytes(void);

#endif
