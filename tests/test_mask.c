/* Masking tests (RFC 6455 5.3). SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "ws_mask.h"

/* The definition, written out: octet i XOR key[(offset + i) mod 4]. */
static void naive_mask(uint8_t *buf, size_t len, const uint8_t key[4],
                       size_t offset) {
  size_t i;
  for (i = 0; i < len; i++) buf[i] = (uint8_t)(buf[i] ^ key[(offset + i) % 4]);
}

#define MAXLEN 300
#define GUARD 32

/* RFC 6455 5.7: "Hello" masked with 37 fa 21 3d. */
static void rfc_5_7_masked_hello(void **state) {
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t buf[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
  uint8_t dst[5];
  (void)state;

  assert_int_equal(ws_copy_mask(dst, buf, 5, key, 0), 1);
  assert_memory_equal(dst, "Hello", 5);
  assert_int_equal(ws_mask(buf, 5, key, 0), 1);
  assert_memory_equal(buf, "Hello", 5);
  assert_int_equal(ws_mask_scalar(buf, 5, key, 0), 1);
  tu_assert_hex(buf, 5, "7f 9f 4d 51 58");
  /* Masking twice is the identity. */
  ws_mask(buf, 5, key, 0);
  ws_mask(buf, 5, key, 0);
  tu_assert_hex(buf, 5, "7f 9f 4d 51 58");
}

/* Every length 0..300, key offset 0..3 and buffer alignment 0..15: fast
 * path == scalar reference == the definition, no byte outside touched. */
static void mask_any_length_offset_alignment(void **state) {
  uint64_t rs = 1;
  uint8_t *src = malloc(MAXLEN + 2 * GUARD + 16);
  uint8_t *a = malloc(MAXLEN + 2 * GUARD + 16);
  uint8_t *b = malloc(MAXLEN + 2 * GUARD + 16);
  uint8_t *c = malloc(MAXLEN + 2 * GUARD + 16);
  size_t len, off, al;
  (void)state;

  assert_non_null(src);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  for (len = 0; len <= MAXLEN; len++) {
    for (off = 0; off < 4; off++) {
      for (al = 0; al < 16; al++) {
        uint8_t key[4];
        size_t total = MAXLEN + 2 * GUARD + 16;
        uint8_t *pa = a + GUARD + al, *pb = b + GUARD + al;
        uint8_t *pc = c + GUARD + ((al + 5) & 15);

        tu_rand_fn(key, 4, &rs);
        tu_rand_fn(src, total, &rs);
        memcpy(a, src, total);
        memcpy(b, src, total);
        memset(c, 0xEE, total);
        assert_int_equal(ws_mask(pa, len, key, off), (off + len) % 4);
        assert_int_equal(ws_mask_scalar(pb, len, key, off), (off + len) % 4);
        naive_mask(src + GUARD + al, len, key, off);
        assert_memory_equal(a, src, total);
        assert_memory_equal(b, src, total);
        /* Copy from a differently aligned source into pc. */
        memcpy(b, src, total);
        naive_mask(b + GUARD + al, len, key, off); /* back to masked */
        assert_int_equal(ws_copy_mask(pc, b + GUARD + al, len, key, off),
                         (off + len) % 4);
        if (len) assert_memory_equal(pc, src + GUARD + al, len);
        {
          size_t i;
          for (i = 0; i < GUARD; i++) {
            assert_int_equal(pc[len + i], 0xEE);
            assert_int_equal(pc[-1 - (ptrdiff_t)i], 0xEE);
          }
        }
      }
    }
  }
  free(src);
  free(a);
  free(b);
  free(c);
}

/* Masking in chunks, passing the returned offset on, equals one call. */
static void mask_chunked_random_splits(void **state) {
  uint64_t rs = 99;
  int iter;
  (void)state;

  for (iter = 0; iter < 3000; iter++) {
    size_t len = tu_rand(&rs) % 2000, pos = 0, off, off0;
    uint8_t key[4];
    uint8_t *whole = malloc(len + 1), *chunked = malloc(len + 1),
            *copied = malloc(len + 1), *ref = malloc(len + 1);

    assert_non_null(whole);
    assert_non_null(chunked);
    assert_non_null(copied);
    assert_non_null(ref);
    tu_rand_fn(key, 4, &rs);
    tu_rand_fn(whole, len, &rs);
    memcpy(chunked, whole, len);
    memcpy(ref, whole, len);
    off0 = off = tu_rand(&rs) % 4;
    naive_mask(ref, len, key, off0);
    while (pos < len) {
      size_t n = tu_rand(&rs) % 70;
      size_t noff;
      if (n > len - pos) n = len - pos;
      /* Alternate the in-place and the copying form. */
      if (tu_rand(&rs) & 1) {
        noff = ws_mask(chunked + pos, n, key, off);
      } else {
        noff = ws_copy_mask(copied, chunked + pos, n, key, off);
        memcpy(chunked + pos, copied, n);
      }
      assert_int_equal(noff, (off + n) % 4);
      off = noff;
      pos += n;
    }
    assert_int_equal(ws_mask(whole, len, key, off0), (off0 + len) % 4);
    if (len) {
      assert_memory_equal(whole, ref, len);
      assert_memory_equal(chunked, ref, len);
    }
    free(whole);
    free(chunked);
    free(copied);
    free(ref);
  }
}

/* In-place ws_copy_mask (dst == src) works like ws_mask. */
static void copy_mask_in_place(void **state) {
  uint64_t rs = 5;
  uint8_t buf[1000], ref[1000];
  const uint8_t key[4] = {1, 2, 3, 4};
  (void)state;

  tu_rand_fn(buf, sizeof(buf), &rs);
  memcpy(ref, buf, sizeof(buf));
  naive_mask(ref + 3, 990, key, 2);
  assert_int_equal(ws_copy_mask(buf + 3, buf + 3, 990, key, 2), 0);
  assert_memory_equal(buf, ref, sizeof(buf));
}

/* Large buffers (the SIMD loop's territory) at odd start addresses. */
/*
 * Short payloads (RFC 6455 5.3, any length and key offset): the fast path
 * stores a first and a last word that overlap for lengths that are not a
 * multiple of the word size; in place, the overlapping bytes must not be
 * XORed twice. Lengths 0..40, every offset, a key with four different
 * bytes, in place and copied.
 */
static void mask_short_overlapping_words(void **state) {
  const uint8_t key[4] = {0x11, 0x22, 0x44, 0x88};
  uint8_t buf[48], ref[48], dst[48];
  size_t len, off, i;
  (void)state;

  for (len = 0; len <= 40; len++) {
    for (off = 0; off < 4; off++) {
      for (i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 1);
      memcpy(ref, buf, sizeof(buf));
      naive_mask(ref + 1, len, key, off);
      memset(dst, 0xEE, sizeof(dst));
      assert_int_equal(ws_copy_mask(dst + 1, buf + 1, len, key, off),
                       (off + len) % 4);
      if (len) assert_memory_equal(dst + 1, ref + 1, len);
      assert_int_equal(dst[0], 0xEE);
      assert_int_equal(dst[len + 1], 0xEE);
      assert_int_equal(ws_mask(buf + 1, len, key, off), (off + len) % 4);
      assert_memory_equal(buf, ref, sizeof(buf));
    }
  }
}

static void mask_large(void **state) {
  uint64_t rs = 11;
  size_t len = 1u << 20;
  uint8_t *a = malloc(len + 16), *b = malloc(len + 16);
  const uint8_t key[4] = {0xA5, 0x5A, 0xFF, 0x00};
  (void)state;

  assert_non_null(a);
  assert_non_null(b);
  tu_rand_fn(a, len + 16, &rs);
  memcpy(b, a, len + 16);
  assert_int_equal(ws_mask(a + 7, len - 3, key, 3), (3 + len - 3) % 4);
  naive_mask(b + 7, len - 3, key, 3);
  assert_memory_equal(a, b, len + 16);
  free(a);
  free(b);
}

/* A zero key is the identity; a zero length returns the offset as is. */
static void mask_degenerate(void **state) {
  const uint8_t zero[4] = {0, 0, 0, 0};
  uint8_t buf[64];
  size_t i;
  (void)state;

  for (i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)i;
  ws_mask(buf, sizeof(buf), zero, 1);
  for (i = 0; i < sizeof(buf); i++) assert_int_equal(buf[i], i);
  for (i = 0; i < 4; i++) {
    assert_int_equal(ws_mask(buf, 0, zero, i), i);
    assert_int_equal(ws_mask(NULL, 0, zero, i), i);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc_5_7_masked_hello),
      cmocka_unit_test(mask_any_length_offset_alignment),
      cmocka_unit_test(mask_chunked_random_splits),
      cmocka_unit_test(copy_mask_in_place),
      cmocka_unit_test(mask_short_overlapping_words),
      cmocka_unit_test(mask_large),
      cmocka_unit_test(mask_degenerate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
