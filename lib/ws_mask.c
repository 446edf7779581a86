/*
 * Payload masking (RFC 6455 5.3): XOR with a 4-byte key, rolling offset.
 * SPDX-License-Identifier: MIT
 *
 * The fast path loads the key rotated by the start offset as one 32-bit
 * word and repeats it, so its layout in memory matches the payload on any
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

size_t ws_mask_scalar(uint8_t *buf, size_t len, const uint8_t key[4],
                      size_t offset) {
  size_t i;

  offset &= 3;
  for (i = 0; i < len; i++) {
    buf[i] ^= key[(offset + i) & 3];
  }
  return (offset + len) & 3;
}

/* dst[i] = src[i] ^ key[(offset + i) mod 4]; dst == src is allowed. */
static size_t xor_run(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t key[4], size_t offset) {
  uint8_t rot[4];
  uint32_t k32;
  uint64_t m;
  size_t i = 0;

  offset &= 3;
  rot[0] = key[offset];
  rot[1] = key[(offset + 1) & 3];
  rot[2] = key[(offset + 2) & 3];
  rot[3] = key[(offset + 3) & 3];
  memcpy(&k32, rot, 4);
  /* Both halves hold the same bytes, so the layout is right on any
   * endianness. */
  m = (uint64_t)k32 << 32 | k32;

#ifdef WS_MASK_SSE2
  if (len >= 16) {
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
      _mm_storeu_si128((__m128i *)(void *)(dst + i + 16), _mm_xor_si128(b, mm));
      _mm_storeu_si128((__m128i *)(void *)(dst + i + 32), _mm_xor_si128(c, mm));
      _mm_storeu_si128((__m128i *)(void *)(dst + i + 48), _mm_xor_si128(d, mm));
    }
    for (; len - i >= 16; i += 16) {
      __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
      _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, mm));
    }
  }
#endif

  if (len - i >= 8) {
    for (; len - i >= 8; i += 8) {
      uint64_t w;

      memcpy(&w, src + i, 8);
      w ^= m;
      memcpy(dst + i, &w, 8);
    }
  }

  /* i is a multiple of 8 here, so rot[i & 3] is still in step. */
  for (; i < len; i++) {
    dst[i] = (uint8_t)(src[i] ^ rot[i & 3]);
  }
  return (offset + len) & 3;
}

size_t ws_mask(uint8_t *buf, size_t len, const uint8_t key[4],
               size_t offset) {
  return xor_run(buf, buf, len, key, offset);
}

size_t ws_copy_mask(uint8_t *dst, const uint8_t *src, size_t len,
                    const uint8_t key[4], size_t offset) {
  return xor_run(dst, src, len, key, offset);
}
