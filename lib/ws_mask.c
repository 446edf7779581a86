/*
 * Payload masking (RFC 6455 5.3): XOR with a 4-byte key, rolling offset.
 * SPDX-License-Identifier: MIT
 *
 * The fast path loads the key rotated by the start offset as one 32-bit
 * word (a rotate by the offset, in the direction the byte order needs) and
 * repeats it, so its layout in memory matches the payload on any
 * endianness. Every block then starts at a multiple of 4 payload bytes from
 * the start of the call and uses the pattern unchanged. Loads and stores go
 * through memcpy (or unaligned SSE2 moves): any alignment works and no
 * strict-aliasing rule is bent.
 */
#include "ws_mask.h"

#if defined(__SSE2__) && !defined(WS_NO_SIMD)
#  include <emmintrin.h>
#  define WS_MASK_SSE2 1
#endif

#if WS_HAS_REFERENCE
size_t ws_mask_scalar(uint8_t *buf, size_t len, const uint8_t key[4],
                      size_t offset) {
  size_t i;

  offset &= 3;
  for (i = 0; i < len; i++) {
    buf[i] ^= key[(offset + i) & 3];
  }
  return (offset + len) & 3;
}
#endif

#if !WS_SMALL_CODE /* (the word-at-a-time runs) */
/* The key rotated by |offset| bytes, as a word whose bytes lie in memory
 * in payload order: key[offset], key[offset + 1], ... (mod 4). */
static inline uint32_t key_word(const uint8_t key[4], size_t offset) {
  uint32_t w;
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) &&             \
    defined(__ORDER_BIG_ENDIAN__)
  unsigned r = (unsigned)(offset & 3) * 8;
  memcpy(&w, key, 4);
#  if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return (w >> r) | (w << ((32 - r) & 31)); /* first byte is the low one */
#  elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return (w << r) | (w >> ((32 - r) & 31)); /* first byte is the high one */
#  else
#    error "unknown byte order"
#  endif
#else
  uint8_t rot[4];
  rot[0] = key[offset & 3];
  rot[1] = key[(offset + 1) & 3];
  rot[2] = key[(offset + 2) & 3];
  rot[3] = key[(offset + 3) & 3];
  memcpy(&w, rot, 4);
  return w;
#endif
}
#endif

/*
 * dst[i] = src[i] ^ key[(offset + i) mod 4]; dst == src is allowed.
 *
 * Whole words from the start, then one last word that ends at the last
 * byte and may overlap the one before it: that word is loaded before
 * anything is stored, so bytes stored twice get the same value twice,
 * also in place. Short runs (the usual chat message) are thus two or
 * three word operations; only runs of 64 bytes or more set up SSE2.
 */
#if WS_SMALL_CODE
/* Size builds: a byte at a time (the words only buy speed), in one place
 * for both entry points. */
static WS_NOINLINE size_t xor_run(uint8_t *dst, const uint8_t *src, size_t len,
                                  const uint8_t key[4], size_t offset) {
  size_t i;

  for (i = 0; i < len; i++)
    dst[i] = (uint8_t)(src[i] ^ key[(offset + i) & 3u]);
  return (offset + len) & 3u;
}
#elif SIZE_MAX <= 0xffffffffu && !defined(WS_MASK_SSE2)
/* 32-bit targets: the same scheme a 32-bit word at a time. A 64-bit word
 * would cost a register pair per value and, on cores without 64-bit
 * multiply (Cortex-M0), a library helper to build the pattern. */
static size_t xor_run(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t key[4], size_t offset) {
  uint32_t k32 = key_word(key, offset);
  size_t i = 0;

  if (len >= 4) {
    uint32_t w, last;

    memcpy(&last, src + len - 4, 4);
    last ^= key_word(key, offset + len); /* == offset + len - 4 */
    for (; len - i > 4; i += 4) {
      memcpy(&w, src + i, 4);
      w ^= k32;
      memcpy(dst + i, &w, 4);
    }
    memcpy(dst + len - 4, &last, 4);
  } else {
    uint8_t kb[4];

    memcpy(kb, &k32, 4);
    for (; i < len; i++)
      dst[i] = (uint8_t)(src[i] ^ kb[i]);
  }
  return (offset + len) & 3;
}
#else
static size_t xor_run(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t key[4], size_t offset) {
  uint32_t k32 = key_word(key, offset);
  size_t i = 0;

  if (len >= 8) {
    /* Both halves hold the same bytes: right on any endianness. */
    uint64_t m = (uint64_t)k32 << 32 | k32, w, last;
    uint32_t kl = key_word(key, offset + len); /* == offset + len - 8 */

    memcpy(&last, src + len - 8, 8);
    last ^= (uint64_t)kl << 32 | kl;
#  ifdef WS_MASK_SSE2
    if (len >= 64) {
      const __m128i mm = _mm_set1_epi32((int)k32);

      for (; len - i >= 64; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, mm));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 16),
                         _mm_xor_si128(b, mm));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 32),
                         _mm_xor_si128(c, mm));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 48),
                         _mm_xor_si128(d, mm));
      }
      for (; len - i >= 16; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, mm));
      }
    }
#  endif
    if (len <= 16) { /* one word and the last: no loop */
      memcpy(&w, src, 8);
      w ^= m;
      memcpy(dst, &w, 8);
      memcpy(dst + len - 8, &last, 8);
      return (offset + len) & 3;
    }
    for (; len - i > 8; i += 8) {
      memcpy(&w, src + i, 8);
      w ^= m;
      memcpy(dst + i, &w, 8);
    }
    memcpy(dst + len - 8, &last, 8);
  } else if (len >= 4) {
    uint32_t a, z;

    memcpy(&a, src, 4);
    memcpy(&z, src + len - 4, 4);
    a ^= k32;
    z ^= key_word(key, offset + len); /* == offset + len - 4 */
    memcpy(dst, &a, 4);
    memcpy(dst + len - 4, &z, 4);
  } else {
    uint8_t kb[4];

    memcpy(kb, &k32, 4);
    for (; i < len; i++)
      dst[i] = (uint8_t)(src[i] ^ kb[i]);
  }
  return (offset + len) & 3;
}
#endif

size_t ws_mask(uint8_t *buf, size_t len, const uint8_t key[4],
               size_t offset) {
  return xor_run(buf, buf, len, key, offset);
}

size_t ws_copy_mask(uint8_t *dst, const uint8_t *src, size_t len,
                    const uint8_t key[4], size_t offset) {
  return xor_run(dst, src, len, key, offset);
}
