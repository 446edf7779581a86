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

#endif /* WS_UTF8_SIMD_H */
