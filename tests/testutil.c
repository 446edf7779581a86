/* Shared helpers for the unit tests. SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

uint8_t *tu_hex(const char *hex, size_t *plen) {
  size_t n = strlen(hex);
  uint8_t *out = malloc(n / 2 + 1);
  size_t len = 0;
  int hi = -1;
  assert_non_null(out);
  for (size_t i = 0; i < n; i++) {
    if (hex[i] == ' ' || hex[i] == '\n') continue;
    int v = hexval(hex[i]);
    assert_true(v >= 0);
    if (hi < 0) {
      hi = v;
    } else {
      out[len++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  assert_true(hi < 0);
  *plen = len;
  return out;
}

void tu_assert_hex(const uint8_t *got, size_t len, const char *hex) {
  size_t explen;
  uint8_t *exp = tu_hex(hex, &explen);
  if (explen != len || memcmp(exp, got, len) != 0) {
    fprintf(stderr, "expected (%zu): %s\ngot      (%zu): ", explen, hex, len);
    for (size_t i = 0; i < len; i++) fprintf(stderr, "%02x ", got[i]);
    fprintf(stderr, "\n");
    free(exp);
    fail_msg("bytes differ");
  }
  free(exp);
}

uint32_t tu_rand(uint64_t *s) {
  uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return (uint32_t)(x >> 32);
}

int tu_rand_fn(uint8_t *buf, size_t len, void *user_data) {
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)tu_rand(user_data);
  return 0;
}

/* Each block carries its size in a header so frees can be accounted. */
typedef union {
  size_t size;
  max_align_t align;
} tu_hdr;

static void *tu_malloc(size_t n, void *ud) {
  tu_alloc *a = ud;
  a->calls++;
  if (a->fail_at && a->calls == a->fail_at) return NULL;
  tu_hdr *h = malloc(sizeof(tu_hdr) + n);
  if (!h) return NULL;
  h->size = n;
  a->live_blocks++;
  a->live_bytes += n;
  if (a->live_bytes > a->peak_bytes) a->peak_bytes = a->live_bytes;
  return h + 1;
}

static void tu_free(void *p, void *ud) {
  tu_alloc *a = ud;
  if (!p) return;
  tu_hdr *h = (tu_hdr *)p - 1;
  a->live_blocks--;
  a->live_bytes -= h->size;
  free(h);
}

static void *tu_realloc(void *p, size_t n, void *ud) {
  tu_alloc *a = ud;
  if (!p) return tu_malloc(n, ud);
  a->calls++;
  if (a->fail_at && a->calls == a->fail_at) return NULL;
  tu_hdr *h = (tu_hdr *)p - 1;
  size_t old = h->size;
  tu_hdr *nh = realloc(h, sizeof(tu_hdr) + n);
  if (!nh) return NULL;
  nh->size = n;
  a->live_bytes = a->live_bytes - old + n;
  if (a->live_bytes > a->peak_bytes) a->peak_bytes = a->live_bytes;
  return nh + 1;
}

void tu_alloc_init(tu_alloc *a, size_t fail_at) {
  memset(a, 0, sizeof(*a));
  a->fail_at = fail_at;
  a->mem.user_data = a;
  a->mem.malloc = tu_malloc;
  a->mem.realloc = tu_realloc;
  a->mem.free = tu_free;
}

size_t tu_conn_busy_bytes(void) {
  static const char req[] = "GET / HTTP/1.1\r\n"
                            "Host: a\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n";
  tu_alloc a;
  tu_alloc_init(&a, 0);
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  ws_conn *c;
  ws_event ev;
  ws_iovec iov[2];
  size_t n = 0;
  assert_int_equal(ws_conn_new(&c, &cfg, &a.mem), 0);
  uint8_t *in = malloc(sizeof(req));
  memcpy(in, req, sizeof(req));
  assert_int_equal(ws_conn_feed(c, in, sizeof(req) - 1, &n), 0);
  assert_int_equal(ws_conn_next_event(c, &ev), 0);
  assert_int_equal(ev.type, WS_EV_REQUEST);
  assert_int_equal(ws_conn_accept(c, NULL), 0);
  while (ws_conn_out_peek(c, iov, 2))
    ws_conn_out_consume(c, iov[0].len);
  assert_int_equal(ws_conn_next_event(c, &ev), 0);
  assert_int_equal(ev.type, WS_EV_OPEN);
  assert_int_equal(ws_conn_next_event(c, &ev), WS_ERR_WOULDBLOCK);
  size_t busy = a.live_bytes;
  int shrunk = ws_conn_shrink(c);
  busy -= a.live_bytes;
  assert_int_equal(shrunk, busy != 0);
  ws_conn_del(c);
  free(in);
  assert_int_equal(a.live_blocks, 0);
  return busy;
}
