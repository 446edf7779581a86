/*
 * Internal to the UTF-8 module: the build's choice of implementations
 * (the compact DFA only, or the fast paths with vector kernels behind
 * their gates), shared by ws_utf8.c (API, scalar DFAs, dispatch) and
 * ws_utf8_simd.c (vector kernels and the per-instruction-set entry
 * twins). Not part of the API.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_UTF8_SIMD_H
#define WS_UTF8_SIMD_H

#include "ws_utf8.h"

/* Size-optimised and freestanding builds get the compact DFA only, unless
 * WS_UTF8_FAST asks for the fast paths anyway. */
#if !defined(WS_UTF8_FAST) &&                                                  \
    (defined(WS_SMALL) || defined(WS_FREESTANDING) ||                          \
     defined(__OPTIMIZE_SIZE__))
#  define WS_UTF8_COMPACT 1
#endif

/*
 * Vector kernels. On x86 in a hosted build they are compiled with target
 * attributes and chosen per call from the CPU's feature bits (kept by the
 * compiler runtime, not by us: the core holds no mutable state). NEON is
 * part of every AArch64 CPU. Freestanding x86 builds, which may have no
 * compiler runtime to ask, keep to the scalar code.
 */
#if !defined(WS_UTF8_COMPACT) && !defined(WS_NO_SIMD) && defined(__GNUC__)
#  if (defined(__x86_64__) || defined(__i386__)) && !defined(WS_FREESTANDING)
#    define WS_UTF8_SSE4 1
#    ifndef WS_UTF8_NO_AVX2 /* SSE4.1 only, e.g. to test it on AVX2 CPUs */
#      define WS_UTF8_AVX2 1
#    endif
#    include <immintrin.h>
#  elif defined(__aarch64__) && defined(__ARM_NEON) &&                         \
      defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#    define WS_UTF8_NEON 1
#    include <arm_neon.h>
#  endif
#endif

#if defined(WS_UTF8_SSE4) || defined(WS_UTF8_AVX2) || defined(WS_UTF8_NEON)
#  define WS_UTF8_VECTOR 1
#endif

#if defined(__GNUC__)
#  define WS_AINLINE inline __attribute__((always_inline))
#  define WS_NOINLINE __attribute__((noinline))
#else
#  define WS_AINLINE inline
#  define WS_NOINLINE
#endif

#ifdef WS_UTF8_SSE4
#  define TGT_SSE4 __attribute__((target("sse4.1")))
#  define TGT_AVX2 __attribute__((target("avx2")))
#  define TGT_sse4 TGT_SSE4
#  define TGT_avx2 TGT_AVX2
#endif

/*
 * ws_utf8.c: the general case (an open sequence, the vector kernel
 * unless it has run, then the scalar DFA), from byte |i| with the bytes
 * before |w| already stored; what the twins fall back on.
 */
int ws_utf8_run_general(uint8_t *dst, const uint8_t *src, size_t len,
                        const uint8_t *key, size_t *poffset, ws_utf8 *u,
                        size_t *pvalid, size_t i, size_t w);

/*
 * ws_utf8_simd.c: the kernels (see "vector kernels" there) and, per
 * instruction set, the twins of the entry points that ws_utf8.c
 * tail-calls when a call starts between characters with len >= 16.
 */
#ifdef WS_UTF8_SSE4
TGT_SSE4 int ws_utf8_short_sse4(uint8_t *dst, const uint8_t *src, size_t n,
                                const uint8_t *key, size_t off);
TGT_SSE4 int ws_utf8_short_sse4_v(const uint8_t *src, size_t n);
TGT_SSE4 size_t ws_utf8_kern_sse4(uint8_t *dst, const uint8_t *src, size_t n,
                                  const uint8_t *key, size_t off, size_t *pw);
TGT_SSE4 size_t ws_utf8_kern_sse4_v(const uint8_t *src, size_t n, size_t *pw);
TGT_SSE4 int ws_utf8_validate_sse4(const uint8_t *buf, size_t len);
TGT_SSE4 size_t ws_utf8_scan_sse4(ws_utf8 *u, const uint8_t *buf, size_t len);
TGT_SSE4 int ws_utf8_feed_sse4(ws_utf8 *u, const uint8_t *buf, size_t len);
TGT_SSE4 int ws_utf8_unmask_sse4(uint8_t *buf, size_t len, const uint8_t *key,
                                 size_t *poffset, ws_utf8 *u, size_t *pvalid);
TGT_SSE4 int ws_utf8_copy_sse4(uint8_t *dst, const uint8_t *src, size_t len,
                               const uint8_t *key, size_t *poffset, ws_utf8 *u,
                               size_t *pvalid);
#endif
#ifdef WS_UTF8_AVX2
TGT_AVX2 int ws_utf8_short_avx2(uint8_t *dst, const uint8_t *src, size_t n,
                                const uint8_t *key, size_t off);
TGT_AVX2 int ws_utf8_short_avx2_v(const uint8_t *src, size_t n);
TGT_AVX2 size_t ws_utf8_kern_avx2(uint8_t *dst, const uint8_t *src, size_t n,
                                  const uint8_t *key, size_t off, size_t *pw);
TGT_AVX2 size_t ws_utf8_kern_avx2_v(const uint8_t *src, size_t n, size_t *pw);
TGT_AVX2 int ws_utf8_validate_avx2(const uint8_t *buf, size_t len);
TGT_AVX2 size_t ws_utf8_scan_avx2(ws_utf8 *u, const uint8_t *buf, size_t len);
TGT_AVX2 int ws_utf8_feed_avx2(ws_utf8 *u, const uint8_t *buf, size_t len);
TGT_AVX2 int ws_utf8_unmask_avx2(uint8_t *buf, size_t len, const uint8_t *key,
                                 size_t *poffset, ws_utf8 *u, size_t *pvalid);
TGT_AVX2 int ws_utf8_copy_avx2(uint8_t *dst, const uint8_t *src, size_t len,
                               const uint8_t *key, size_t *poffset, ws_utf8 *u,
                               size_t *pvalid);
#endif
#ifdef WS_UTF8_NEON
size_t ws_utf8_kern_neon(uint8_t *dst, const uint8_t *src, size_t n,
                         const uint8_t *key, size_t off, size_t *pw);
int ws_utf8_validate_neon(const uint8_t *buf, size_t len);
size_t ws_utf8_scan_neon(ws_utf8 *u, const uint8_t *buf, size_t len);
int ws_utf8_feed_neon(ws_utf8 *u, const uint8_t *buf, size_t len);
int ws_utf8_unmask_neon(uint8_t *buf, size_t len, const uint8_t *key,
                        size_t *poffset, ws_utf8 *u, size_t *pvalid);
int ws_utf8_copy_neon(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t *key, size_t *poffset, ws_utf8 *u,
                      size_t *pvalid);
#endif

/*
 * The constants of the vector kernels (ws_utf8_simd.c, "vector kernels")
 * and the 16..31-byte AVX2 kernel, here so that a caller compiled for
 * AVX2 (ws_conn_feed_events()'s twin in ws_conn.c) can have it inline.
 */
#ifdef WS_UTF8_VECTOR
#  include <string.h>

/* The tables and splat constants, each a 32-byte row: ws_utf8_simd.c. */
extern const uint8_t ws_utf8_k_rows[256];
/* Offsets of the rows: the three tables, then the splats: the low nibble
 * mask, the offsets that take E0.. and F0.. to 80.. (saturating), K_CC. */
#  define R_PREV_HI 0
#  define R_PREV_LO 32
#  define R_CUR_HI 64
#  define R_NIB 96
#  define R_SUB2 128
#  define R_SUB3 160
#  define R_CC 192
/* Then k_slide: loadu(k_slide + 16 - n) moves the last n bytes of a
 * vector to its start and zeroes the rest (as a byte shuffle). */
#  define R_SLIDE 224

/* ws_utf8_k_rows, its value hidden from the compiler by an empty asm. */
static WS_AINLINE const uint8_t *k_base(void) {
  const uint8_t *p = ws_utf8_k_rows;
  __asm__("" : "+r"(p));
  return p;
}

/* The mask key for a block starting at offset |off|, as one 32-bit word
 * whose bytes lie in memory order: the key word rotated by |off| bytes
 * (the vector kernels exist only for little-endian targets). */
static inline uint32_t key_word(const uint8_t key[4], size_t off) {
  uint32_t w;
  unsigned r = (unsigned)(off & 3) * 8;
  memcpy(&w, key, 4);
  return (w >> r) | (w << ((32 - r) & 31));
}
#endif

#ifdef WS_UTF8_SSE4
#  define LD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#  define ST128(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

/* A splat constant, loaded: the empty asm hides its value from the
 * compiler, which would otherwise build it from immediates in three
 * instructions instead of one load. */
static WS_AINLINE TGT_SSE4 __m128i k128_const(const uint8_t *p) {
  __asm__("" : "+r"(p));
  return LD128(p);
}

/* The short kernels' first step, 16..32 bytes: the first 16 and the last
 * 16 (overlapping) loaded, unmasked with |key| from offset |off| if there
 * is one (the last block's key is the first's rotated by (n - 16) mod 4
 * bytes), and stored if |dst|. In line in the SSE4.1 and the AVX2
 * kernels alike. */
static WS_AINLINE TGT_SSE4 void short_load(uint8_t *dst, const uint8_t *src, size_t n,
                                  const uint8_t *key, size_t off,
                                  __m128i *pv0, __m128i *pv1) {
  __m128i v0 = LD128(src), v1 = LD128(src + n - 16);
  if (dst) {
    if (key) {
      uint32_t k0 = key_word(key, off);
      unsigned r = (unsigned)((n - 16) & 3) * 8;
      uint32_t k1 = (k0 >> r) | (k0 << ((32 - r) & 31));
      v0 = _mm_xor_si128(v0, _mm_set1_epi32((int)k0));
      v1 = _mm_xor_si128(v1, _mm_set1_epi32((int)k1));
    }
    ST128(dst, v0);
    ST128(dst + n - 16, v1);
  }
  *pv0 = v0;
  *pv1 = v1;
}
#endif

#ifdef WS_UTF8_AVX2
#  define LD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#  define ST256(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))

typedef struct k256 {
  __m256i t_hi, t_lo, t_cur, nib, sub2, sub3, cc;
} k256;

/* Rule violations in |cur| given |pc|, the 32 bytes that precede its
 * lanes: [high lane of the block before, low lane of cur]. */
static WS_AINLINE TGT_AVX2 __m256i k256_check_pc(const k256 *k, __m256i pc,
                                                 __m256i cur) {
  __m256i p1 = _mm256_alignr_epi8(cur, pc, 15);
  __m256i p2 = _mm256_alignr_epi8(cur, pc, 14);
  __m256i p3 = _mm256_alignr_epi8(cur, pc, 13);
  __m256i a = _mm256_shuffle_epi8(
      k->t_hi, _mm256_and_si256(_mm256_srli_epi16(p1, 4), k->nib));
  __m256i b = _mm256_shuffle_epi8(k->t_lo, _mm256_and_si256(p1, k->nib));
  __m256i c = _mm256_shuffle_epi8(
      k->t_cur, _mm256_and_si256(_mm256_srli_epi16(cur, 4), k->nib));
  __m256i owed = _mm256_or_si256(_mm256_subs_epu8(p2, k->sub2),
                                 _mm256_subs_epu8(p3, k->sub3));
  owed = _mm256_and_si256(owed, k->cc);
  return _mm256_xor_si256(_mm256_and_si256(_mm256_and_si256(a, b), c), owed);
}

/* The constants, from k_rows at |b| (k_base(); see k128_init()). */
static WS_AINLINE TGT_AVX2 void k256_init(k256 *k, const uint8_t *b) {
  k->t_hi = LD256(b + R_PREV_HI);
  k->t_lo = LD256(b + R_PREV_LO);
  k->t_cur = LD256(b + R_CUR_HI);
  k->nib = LD256(b + R_NIB);
  k->sub2 = LD256(b + R_SUB2);
  k->sub3 = LD256(b + R_SUB3);
  k->cc = LD256(b + R_CC);
}

/*
 * k128_short() for AVX2 CPUs, 16..31 bytes: the first 16 bytes in the low
 * lane and the bytes after them slid down into the high lane with zeros
 * behind, checked as one 32-byte block after an empty one. The zero byte
 * right after the input fails any sequence left open there (a lead wants
 * a continuation; a continuation owed by a lead two or three back is
 * missing), so the padding also catches an unfinished end. One check
 * instead of two, and no separate test of the end.
 */
static WS_AINLINE TGT_AVX2 int k256_short_a(uint8_t *dst, const uint8_t *src,
                                            size_t n, const uint8_t *key,
                                            size_t off, int ascii_first) {
  __m128i v0, v1, hi;
  __m256i cur, err;
  const uint8_t *b;
  k256 k;

  short_load(dst, src, n, key, off, &v0, &v1);
  if (ascii_first && _mm_movemask_epi8(_mm_or_si128(v0, v1)) == 0) return 1;
  b = k_base();
  k256_init(&k, b);
  /* bytes 16..n-1 first, then 32 - n >= 1 zeros */
  hi = _mm_shuffle_epi8(v1, LD128(b + R_SLIDE + 32 - n));
  cur = _mm256_inserti128_si256(_mm256_castsi128_si256(v0), hi, 1);
  /* what precedes each lane: nothing (zeros), then the low lane */
  err = k256_check_pc(&k, _mm256_permute2x128_si256(cur, cur, 0x08), cur);
  return _mm256_testz_si256(err, err);
}
#endif

#endif /* WS_UTF8_SIMD_H */
