/*
 * UTF-8 validation internals. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include "ws_int.h"

/*
 * ws_utf8.state is 0 between characters, WS_UTF8_FAILED once a byte was
 * rejected, and otherwise one of seven values for "inside a sequence"
 * (bytes still owed and the range of the next one; see ws_utf8.c). Treat
 * it as opaque apart from those two.
 */
#define WS_UTF8_FAILED 6u

/*
 * With WS_UTF8_FINISH_INLINE defined before this header, ws_utf8_finish()
 * is its test, inline: the receive path calls it once per text message,
 * and a call there also costs the caller's registers around it. The
 * exported function (ws_utf8.c) stays for applications and other files.
 */
#ifdef WS_UTF8_FINISH_INLINE
#  define ws_utf8_finish(u) ((u)->state == 0 ? 0 : WS_ERR_UTF8)
#endif

/*
 * Validates |len| more bytes like ws_utf8_feed() and returns how many
 * bytes precede the first invalid one: |len| if there is none (the input
 * may still end inside a sequence), 0 if |u| had already failed. On
 * failure |u| stays failed.
 */
size_t ws_utf8_scan(ws_utf8 *u, const uint8_t *buf, size_t len);

/* Byte-at-a-time references for ws_utf8_scan() and ws_utf8_feed(), with
 * the same contracts; kept for tests to compare against. */
size_t ws_utf8_scan_scalar(ws_utf8 *u, const uint8_t *buf, size_t len);
int ws_utf8_feed_scalar(ws_utf8 *u, const uint8_t *buf, size_t len);

/*
 * The implementations, for tests and benchmarks to pick one; every entry
 * point above and below uses WS_UTF8_IMPL_BEST. Each gives the same
 * results and the same states:
 *
 *   BEST     the fastest one built in and supported by this CPU
 *   REF      the byte-at-a-time reference (ws_utf8_scan_scalar)
 *   DFA      the scalar 64-bit DFA (not in compact builds)
 *   COMPACT  the byte-class DFA that compact builds use (always built)
 *   SSE4, AVX2 (x86, chosen at run time), NEON (AArch64): vector blocks,
 *            with the scalar DFA for inputs under one block and the last
 *            unfinished sequence
 *
 * Compact builds (WS_SMALL, WS_FREESTANDING or -Os, unless WS_UTF8_FAST)
 * have only REF and COMPACT; WS_NO_SIMD leaves the vector ones out, as
 * does a freestanding x86 build (no runtime to ask for CPU features);
 * WS_UTF8_NO_AVX2 leaves out AVX2 (to test the SSE4.1 paths on any x86).
 */
enum {
  WS_UTF8_IMPL_BEST,
  WS_UTF8_IMPL_REF,
  WS_UTF8_IMPL_DFA,
  WS_UTF8_IMPL_COMPACT,
  WS_UTF8_IMPL_SSE4,
  WS_UTF8_IMPL_AVX2,
  WS_UTF8_IMPL_NEON,
  WS_UTF8_IMPL_COUNT
};

/* 1 if |impl| is built in and this CPU runs it, else 0. */
int ws_utf8_impl_available(int impl);

/* A short name for |impl| ("avx2", ...); a static string. */
const char *ws_utf8_impl_name(int impl);

/* ws_utf8_scan() and ws_copy_unmask_utf8() with implementation |impl|
 * (WS_UTF8_IMPL_BEST when it is not available). */
size_t ws_utf8_scan_impl(ws_utf8 *u, const uint8_t *buf, size_t len, int impl);
int ws_copy_unmask_utf8_impl(uint8_t *dst, const uint8_t *src, size_t len,
                             const uint8_t key[4], size_t *poffset, ws_utf8 *u,
                             size_t *pvalid, int impl);

/*
 * The receive hot path: unmasks |len| bytes of |buf| in place with |key|
 * from key offset |*poffset| (|key| NULL: no unmasking, |poffset| may then
 * be NULL) and validates them with |u| (NULL: no validation): in one pass
 * over the bytes with the vector kernels, in blocks small enough to stay
 * in L1 between the two steps otherwise.
 *
 * Returns 0 and sets |*pvalid| (if not NULL) to |len|, or WS_ERR_UTF8 and
 * sets |*pvalid| to the number of bytes before the first invalid one. On
 * success |*poffset| is advanced by |len|; on failure it is advanced by the
 * number of bytes unmasked, which is at least |*pvalid| + 1 (the bytes
 * after those are left as they were), except that nothing is unmasked and
 * |*pvalid| is 0 when |u| had already failed.
 */
int ws_unmask_utf8(uint8_t *buf, size_t len, const uint8_t key[4],
                   size_t *poffset, ws_utf8 *u, size_t *pvalid);

/*
 * ws_unmask_utf8() into another buffer: copies |len| bytes from |src| to
 * |dst| XORed with |key| from key offset |*poffset| (|key| NULL: a plain
 * copy) and validates them with |u| (NULL: no validation), in one pass
 * over the bytes. |dst| may equal |src| (then it is ws_unmask_utf8());
 * otherwise the two MUST NOT overlap. |dst| NULL: nothing is stored and
 * |src| is validated as it is (|key| is then ignored).
 *
 * Returns 0 and sets |*pvalid| (if not NULL) to |len|, or WS_ERR_UTF8 and
 * sets |*pvalid| to the number of bytes before the first invalid one. On
 * success all |len| bytes are stored and |*poffset| is advanced by |len|;
 * on failure at least |*pvalid| + 1 bytes are stored and |*poffset| is
 * advanced by the number stored, except that nothing is stored and
 * |*pvalid| is 0 when |u| had already failed.
 */
int ws_copy_unmask_utf8(uint8_t *dst, const uint8_t *src, size_t len,
                        const uint8_t key[4], size_t *poffset, ws_utf8 *u,
                        size_t *pvalid);

#endif /* WS_UTF8_H */
