/*
 * The vector kernels of the UTF-8 validator (SSE4.1 and AVX2 chosen at
 * run time on x86, NEON on AArch64), each behind its gate in
 * ws_utf8_simd.h, and per instruction set the twins of the entry points
 * that ws_utf8.c tail-calls. The scalar DFA in ws_utf8.c stays the
 * reference, and finishes what a kernel leaves (unfinished sequences, the
 * exact byte of an error).
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_utf8_simd.h"

#include "ws_mask.h"

/* ISO C wants a declaration in every translation unit, vector kernels or
 * not (freestanding and compact builds have none). */
typedef int ws_utf8_simd_unit;

/* ---- vector kernels -------------------------------------------------- */

/*
 * Every rule of the table above that involves only two adjacent bytes is
 * a property of (high nibble of the first, low nibble of the first, high
 * nibble of the second). Each rule gets one bit; three 16-entry tables,
 * one per nibble, hold for each nibble value the rules it is compatible
 * with, and a rule is broken where the three lookups AND to a set bit.
 * The one rule that needs more context, "a continuation byte must follow
 * a lead or be owed by one", is split: K_CC marks every continuation
 * after a continuation, and the byte two or three back tells whether that
 * position is owed one (after E0..FF two back, or F0..FF three back);
 * both must agree.
 */
#define K_SHORT 0x01u /* lead C0..FF not followed by a continuation */
#define K_LONG 0x02u  /* continuation right after ASCII */
#define K_OVL3 0x04u  /* E0 80..9F: overlong */
#define K_SURR 0x08u  /* ED A0..BF: surrogate */
#define K_OVL2 0x10u  /* C0/C1 + continuation: overlong */
#define K_BIG 0x20u   /* F4..FF 90..BF: above U+10FFFF */
#define K_F8X 0x40u   /* F0 80..8F overlong; F5..FF 80..8F too big */
#define K_CC 0x80u    /* continuation after continuation */

#ifdef WS_UTF8_VECTOR
#  define K_ANY_CONT (K_LONG | K_CC | K_OVL2)

/*
 * The tables and splat constants, each a 32-byte row (the same 16 bytes
 * in both halves, for the AVX2 lanes), in one aligned block: a kernel
 * hides its base from the compiler once (k_base()) and reaches every
 * constant at an offset from it, as a memory operand where it is used
 * once, instead of building splats from immediates or taking each
 * address on its own.
 */
/* Indexed by the high nibble of the previous byte. */
/* clang-format off */
#  define ROW_PREV_HI                                                          \
    K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, /* 0-7 */ \
    K_CC,   K_CC,   K_CC,   K_CC,                                   /* 8-B */ \
    K_SHORT | K_OVL2,                                               /* C */   \
    K_SHORT,                                                        /* D */   \
    K_SHORT | K_OVL3 | K_SURR,                                      /* E */   \
    K_SHORT | K_BIG | K_F8X                                         /* F */
/* Indexed by the low nibble of the previous byte. */
#  define K_ALL (K_SHORT | K_LONG | K_CC)
#  define ROW_PREV_LO                                                          \
    K_ALL | K_OVL2 | K_OVL3 | K_F8X, /* x0: C0, E0, F0 */                     \
    K_ALL | K_OVL2,                  /* x1: C1 */                             \
    K_ALL,                                                                     \
    K_ALL,                                                                     \
    K_ALL | K_BIG,                   /* x4: F4 */                             \
    K_ALL | K_BIG | K_F8X,           /* x5..xF: F5..FF */                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X | K_SURR, /* xD: ED */                              \
    K_ALL | K_BIG | K_F8X,                                                     \
    K_ALL | K_BIG | K_F8X
/* Indexed by the high nibble of the byte itself. */
#  define ROW_CUR_HI                                                           \
    K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT,   \
    K_ANY_CONT | K_OVL3 | K_F8X,         /* 8 */                              \
    K_ANY_CONT | K_OVL3 | K_BIG,         /* 9 */                              \
    K_ANY_CONT | K_SURR | K_BIG,         /* A */                              \
    K_ANY_CONT | K_SURR | K_BIG,         /* B */                              \
    K_SHORT, K_SHORT, K_SHORT, K_SHORT  /* C-F */
#  define SPLAT(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
/* At the offsets R_PREV_HI .. R_SLIDE of ws_utf8_simd.h. */
const uint8_t ws_utf8_k_rows[256] __attribute__((aligned(32))) = {
    ROW_PREV_HI,     ROW_PREV_HI,     ROW_PREV_LO,     ROW_PREV_LO,
    ROW_CUR_HI,      ROW_CUR_HI,      SPLAT(0x0F),     SPLAT(0x0F),
    SPLAT(0x60),     SPLAT(0x60),     SPLAT(0x70),     SPLAT(0x70),
    SPLAT(K_CC),     SPLAT(K_CC),
    0,    1,    2,    3,    4,    5,    6,    7,
    8,    9,    10,   11,   12,   13,   14,   15,
    SPLAT(0x80)};
/* clang-format on */
#  define k_prev_hi (ws_utf8_k_rows + R_PREV_HI)
#  define k_prev_lo (ws_utf8_k_rows + R_PREV_LO)
#  define k_cur_hi (ws_utf8_k_rows + R_CUR_HI)
#  define k_nib (ws_utf8_k_rows + R_NIB)
#  define k_sub2 (ws_utf8_k_rows + R_SUB2)
#  define k_sub3 (ws_utf8_k_rows + R_SUB3)
#  define k_cc (ws_utf8_k_rows + R_CC)
#  define k_slide (ws_utf8_k_rows + R_SLIDE)

/* A block whose last bytes are these or more ends inside a sequence. */
static const uint8_t k_incomplete[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xEF, 0xDF, 0xBF};
#endif

#ifdef WS_UTF8_VECTOR
/*
 * Each kernel takes n bytes starting between characters and returns the
 * position where the scalar DFA goes on, with nothing owed: the bytes
 * before it are valid and end between characters. That is the start of
 * the final unfinished sequence (if any) when all is well, or the start
 * of the character in progress at the start of the first failed block.
 * *pw is set to the number of bytes stored (n when nothing failed).
 */

/* The start of the sequence that the valid bytes p[0..n) end inside, or
 * n if they end between characters. p[0] starts a character. */
static inline size_t seq_start(const uint8_t *p, size_t n) {
  if (n >= 1 && p[n - 1] >= 0xC0) return n - 1;
  if (n >= 2 && p[n - 2] >= 0xE0) return n - 2;
  if (n >= 3 && p[n - 3] >= 0xF0) return n - 3;
  return n;
}

#endif

#ifdef WS_UTF8_SSE4

/* loadu(k_tailmask + n) selects the last n bytes of a vector. */
static const uint8_t k_tailmask[32] = {
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0,    0,    0,    0,    0,    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

typedef struct k128 {
  __m128i t_hi, t_lo, t_cur, nib, sub2, sub3, cc;
} k128;

/* The constants for the long kernels: loaded once ahead of their loops
 * (the tables from their addresses, the splats through k128_const()). */
static WS_AINLINE TGT_SSE4 void k128_init(k128 *k) {
  k->t_hi = LD128(k_prev_hi);
  k->t_lo = LD128(k_prev_lo);
  k->t_cur = LD128(k_cur_hi);
  k->nib = k128_const(k_nib);
  k->sub2 = k128_const(k_sub2); /* E0.. two back: >= 0x80 */
  k->sub3 = k128_const(k_sub3); /* F0.. three back: >= 0x80 */
  k->cc = k128_const(k_cc);
}

/* The constants for the short kernels, which use each once or twice:
 * aligned loads from one hidden base (ws_utf8_k_rows is aligned), which the
 * compiler can fold into the operations as memory operands. */
static WS_AINLINE TGT_SSE4 void k128_init_short(k128 *k) {
  const uint8_t *b = k_base();
  k->t_hi = _mm_load_si128((const __m128i *)(const void *)(b + R_PREV_HI));
  k->t_lo = _mm_load_si128((const __m128i *)(const void *)(b + R_PREV_LO));
  k->t_cur = _mm_load_si128((const __m128i *)(const void *)(b + R_CUR_HI));
  k->nib = _mm_load_si128((const __m128i *)(const void *)(b + R_NIB));
  k->sub2 = _mm_load_si128((const __m128i *)(const void *)(b + R_SUB2));
  k->sub3 = _mm_load_si128((const __m128i *)(const void *)(b + R_SUB3));
  k->cc = _mm_load_si128((const __m128i *)(const void *)(b + R_CC));
}

/* Rule violations in |cur| given the block before it; 0 if none. */
static WS_AINLINE TGT_SSE4 __m128i k128_check(const k128 *k, __m128i prev,
                                              __m128i cur) {
  __m128i p1 = _mm_alignr_epi8(cur, prev, 15);
  __m128i p2 = _mm_alignr_epi8(cur, prev, 14);
  __m128i p3 = _mm_alignr_epi8(cur, prev, 13);
  __m128i a =
      _mm_shuffle_epi8(k->t_hi, _mm_and_si128(_mm_srli_epi16(p1, 4), k->nib));
  __m128i b = _mm_shuffle_epi8(k->t_lo, _mm_and_si128(p1, k->nib));
  __m128i c =
      _mm_shuffle_epi8(k->t_cur, _mm_and_si128(_mm_srli_epi16(cur, 4), k->nib));
  __m128i owed =
      _mm_or_si128(_mm_subs_epu8(p2, k->sub2), _mm_subs_epu8(p3, k->sub3));
  /* Only bit 7 of |owed| matters: it must match K_CC. */
  owed = _mm_and_si128(owed, k->cc);
  return _mm_xor_si128(_mm_and_si128(_mm_and_si128(a, b), c), owed);
}

/* Nonzero if |prev| ends inside a sequence. */
static WS_AINLINE TGT_SSE4 __m128i k128_incomplete(__m128i prev) {
  return _mm_subs_epu8(prev, LD128(k_incomplete));
}

/* Loads (and stores, if |dst|) one block, XORed with |mk|. */
static WS_AINLINE TGT_SSE4 __m128i k128_load(uint8_t *dst, const uint8_t *src,
                                             __m128i mk) {
  __m128i v = LD128(src);
  if (dst) {
    v = _mm_xor_si128(v, mk);
    ST128(dst, v);
  }
  return v;
}

/*
 * The last part of a call: bytes [i, n) after whole blocks, with |prev| the
 * block before them. Stores them (scalar), checks them, and returns where
 * the scalar DFA goes on; sets *pbad to i if they hold an error. n >= 16
 * and i >= 16.
 *
 * Usually the input ends between characters: then the last 16 bytes slid
 * down so that plain[i..n) come first and zeros (ASCII) follow are
 * checked as a block, and that is all. Otherwise the bytes before the
 * unfinished sequence are checked that way and the sequence is left to
 * the scalar DFA.
 */
static WS_AINLINE TGT_SSE4 size_t k128_tail(const k128 *k, uint8_t *dst,
                                            const uint8_t *src, size_t i,
                                            size_t n, const uint8_t *key,
                                            size_t off, __m128i prev,
                                            size_t *pbad) {
  const uint8_t *plain = dst ? dst : src;
  size_t b;
  __m128i err, last;

  if (i == n) {
    last = prev;
  } else if (dst) {
    /* Store the last 16 bytes, XORed with the key from offset n - 16. In
     * place, bytes before i are already unmasked: keep them as they are
     * (only the last n - i bytes take the XOR). */
    __m128i v = LD128(src + n - 16);
    last = v;
    if (key) {
      last = _mm_xor_si128(v, _mm_set1_epi32((int)key_word(key, off + n - 16)));
    }
    if (dst == src) {
      last = _mm_blendv_epi8(v, last, LD128(k_tailmask + (n - i)));
    }
    ST128(dst + n - 16, last);
  } else {
    last = LD128(src + n - 16);
  }
  err = k128_incomplete(last);
  if (WS_LIKELY(_mm_testz_si128(err, err))) {
    if (i == n) return n;
    err = k128_check(k, prev,
                     _mm_shuffle_epi8(last, LD128(k_slide + 16 - (n - i))));
    if (!_mm_testz_si128(err, err)) *pbad = i;
    return n;
  }
  b = seq_start(plain, n);
  if (b < i) return b; /* the sequence starts in a checked block */
  if (b == i) {
    err = k128_incomplete(prev);
  } else {
    /* The 16 bytes ending at b, slid down. b >= i >= 16: in bounds. */
    __m128i v =
        _mm_shuffle_epi8(LD128(plain + b - 16), LD128(k_slide + 16 - (b - i)));
    err = k128_check(k, prev, v);
  }
  if (!_mm_testz_si128(err, err)) *pbad = i;
  return b;
}

/*
 * Short inputs, 16..32 bytes, in one go: the first 16 bytes and the last
 * 16 (overlapping), stored if |dst|, checked as two blocks. Returns 1 if
 * they are valid and end between characters; otherwise (an error, or an
 * unfinished sequence at the end) 0, and the caller validates the stored
 * bytes with the scalar DFA.
 */
static WS_AINLINE TGT_SSE4 int k128_short(uint8_t *dst, const uint8_t *src,
                                          size_t n, const uint8_t *key,
                                          size_t off) {
  __m128i v0, v1, err;
  k128 k;

  short_load(dst, src, n, key, off, &v0, &v1);
  if (_mm_movemask_epi8(_mm_or_si128(v0, v1)) == 0) return 1;
  k128_init_short(&k);
  err = _mm_or_si128(k128_incomplete(v1),
                     k128_check(&k, _mm_setzero_si128(), v0));
  if (n > 16) {
    err = _mm_or_si128(
        err, k128_check(&k, v0, _mm_shuffle_epi8(v1, LD128(k_slide + 32 - n))));
  }
  return _mm_testz_si128(err, err);
}

/*
 * As k128_short() for 33..64 bytes (it works from 16): the whole 16-byte
 * blocks and the last 16 bytes (overlapping the block before when the length is
 * not a multiple of 16), all loaded before anything is stored, so that in place
 * a byte stored twice gets the same value twice. Checks them as blocks;
 * returns 1 if they are valid and end between characters; otherwise (an
 * error, or an unfinished sequence at the end) 0, and the caller looks at
 * the stored bytes with the scalar DFA.
 */
static WS_AINLINE TGT_SSE4 int k128_mid(uint8_t *dst, const uint8_t *src,
                                        size_t n, const uint8_t *key,
                                        size_t off) {
  size_t r = n & 15, nb = n >> 4; /* n = 16 nb + r, nb 1..4 */
  __m128i z = _mm_setzero_si128();
  __m128i v0 = LD128(src), v1 = z, v2 = z, v3 = z, vl, err, all;
  k128 k;

  if (nb >= 2) v1 = LD128(src + 16);
  if (nb >= 3) v2 = LD128(src + 32);
  if (nb >= 4) v3 = LD128(src + 48);
  vl = LD128(src + n - 16);
  if (dst) {
    if (key) {
      uint32_t k0 = key_word(key, off);
      /* The key from offset n - 16: k0 rotated by (n - 16) mod 4 bytes. */
      unsigned rot = (unsigned)(r & 3) * 8;
      __m128i m0 = _mm_set1_epi32((int)k0);
      v0 = _mm_xor_si128(v0, m0);
      v1 = _mm_xor_si128(v1, m0);
      v2 = _mm_xor_si128(v2, m0);
      v3 = _mm_xor_si128(v3, m0);
      vl = _mm_xor_si128(
          vl, _mm_set1_epi32((int)((k0 >> rot) | (k0 << ((32 - rot) & 31)))));
    }
    ST128(dst, v0);
    if (nb >= 2) ST128(dst + 16, v1);
    if (nb >= 3) ST128(dst + 32, v2);
    if (nb >= 4) ST128(dst + 48, v3);
    ST128(dst + n - 16, vl);
  }
  all = _mm_or_si128(_mm_or_si128(v0, v1), _mm_or_si128(v2, v3));
  if (_mm_movemask_epi8(_mm_or_si128(all, vl)) == 0) return 1;
  k128_init_short(&k);
  err = _mm_or_si128(k128_incomplete(vl), k128_check(&k, z, v0));
  if (nb >= 2) err = _mm_or_si128(err, k128_check(&k, v0, v1));
  if (nb >= 3) err = _mm_or_si128(err, k128_check(&k, v1, v2));
  if (nb >= 4) err = _mm_or_si128(err, k128_check(&k, v2, v3));
  if (r) {
    /* The last r bytes, slid down behind the last whole block. */
    __m128i last = nb == 1 ? v0 : nb == 2 ? v1 : nb == 3 ? v2 : v3;
    err = _mm_or_si128(
        err,
        k128_check(&k, last, _mm_shuffle_epi8(vl, LD128(k_slide + 16 - r))));
  }
  return _mm_testz_si128(err, err);
}

/* 16..64 bytes: k128_short() up to 32, k128_mid() above. */
static WS_AINLINE TGT_SSE4 int short_sse4(uint8_t *dst, const uint8_t *src,
                                          size_t n, const uint8_t *key,
                                          size_t off) {
  return n <= 32 ? k128_short(dst, src, n, key, off)
                 : k128_mid(dst, src, n, key, off);
}
TGT_SSE4 int ws_utf8_short_sse4(uint8_t *dst, const uint8_t *src, size_t n,
                                const uint8_t *key, size_t off) {
  return short_sse4(dst, src, n, key, off);
}
TGT_SSE4 int ws_utf8_short_sse4_v(const uint8_t *src, size_t n) {
  return short_sse4(NULL, src, n, NULL, 0);
}
#  ifdef WS_UTF8_AVX2
/* The same in VEX form, for CPUs with AVX2. */
#  endif

/*
 * The SSE4.1 kernel over n >= 16 bytes, starting between characters:
 * src XOR the key (from key offset |off|, if |key|) goes to dst (if not
 * NULL) and is validated 16 bytes at a time, 64 between error checks.
 */
static WS_AINLINE TGT_SSE4 size_t kbody_sse4(uint8_t *dst, const uint8_t *src,
                                             size_t n, const uint8_t *key,
                                             size_t off, size_t *pw) {
  const uint8_t *plain = dst ? dst : src;
  k128 k;
  __m128i prev = _mm_setzero_si128(), mk = _mm_setzero_si128(), err;
  size_t i = 0, bad = n;

  k128_init(&k);
  if (key) mk = _mm_set1_epi32((int)key_word(key, off));
  for (; n - i >= 64; i += 64) {
    __m128i v0 = k128_load(dst ? dst + i : NULL, src + i, mk);
    __m128i v1 = k128_load(dst ? dst + i + 16 : NULL, src + i + 16, mk);
    __m128i v2 = k128_load(dst ? dst + i + 32 : NULL, src + i + 32, mk);
    __m128i v3 = k128_load(dst ? dst + i + 48 : NULL, src + i + 48, mk);
    __m128i any = _mm_or_si128(_mm_or_si128(v0, v1), _mm_or_si128(v2, v3));
    if (_mm_movemask_epi8(any) == 0) {
      err = k128_incomplete(prev);
    } else {
      err = _mm_or_si128(
          _mm_or_si128(k128_check(&k, prev, v0), k128_check(&k, v0, v1)),
          _mm_or_si128(k128_check(&k, v1, v2), k128_check(&k, v2, v3)));
    }
    prev = v3;
    if (WS_UNLIKELY(!_mm_testz_si128(err, err))) {
      bad = i;
      i += 64;
      goto fail;
    }
  }
  for (; n - i >= 16; i += 16) {
    __m128i v = k128_load(dst ? dst + i : NULL, src + i, mk);
    if (_mm_movemask_epi8(v) == 0)
      err = k128_incomplete(prev);
    else
      err = k128_check(&k, prev, v);
    prev = v;
    if (WS_UNLIKELY(!_mm_testz_si128(err, err))) {
      bad = i;
      i += 16;
      goto fail;
    }
  }
  {
    size_t pos = k128_tail(&k, dst, src, i, n, key, off, prev, &bad);
    *pw = n;
    if (bad == n) return pos;
  }
  i = n;
fail:
  *pw = dst ? i : n;
  return seq_start(plain, bad);
}

/* Validation only, and store (copy or unmask) and validate. */
TGT_SSE4 size_t ws_utf8_kern_sse4_v(const uint8_t *src, size_t n, size_t *pw) {
  return kbody_sse4(NULL, src, n, NULL, 0, pw);
}
TGT_SSE4 size_t ws_utf8_kern_sse4(uint8_t *dst, const uint8_t *src, size_t n,
                                  const uint8_t *key, size_t off, size_t *pw) {
  return kbody_sse4(dst, src, n, key, off, pw);
}
#endif /* WS_UTF8_SSE4 */

#ifdef WS_UTF8_AVX2
/* LD256(), k256, k256_check_pc(), k256_init() and the 16..31-byte kernel
 * k256_short_a(): ws_utf8_simd.h. */

static WS_AINLINE TGT_AVX2 __m256i bcast16(const uint8_t *t) {
  return _mm256_broadcastsi128_si256(k128_const(t));
}

static WS_AINLINE TGT_AVX2 __m256i k256_check(const k256 *k, __m256i prev,
                                              __m256i cur) {
  /* [high half of prev, low half of cur]: what precedes each lane. */
  return k256_check_pc(k, _mm256_permute2x128_si256(prev, cur, 0x21), cur);
}

static WS_AINLINE TGT_AVX2 __m256i k256_load(uint8_t *dst, const uint8_t *src,
                                             __m256i mk) {
  __m256i v = LD256(src);
  if (dst) {
    v = _mm256_xor_si256(v, mk);
    ST256(dst, v);
  }
  return v;
}

/* k256_short_a() with the ASCII test first (the kernel alone is right for
 * ASCII too, only slower). */
static WS_AINLINE TGT_AVX2 int k256_short(uint8_t *dst, const uint8_t *src,
                                          size_t n, const uint8_t *key,
                                          size_t off) {
  return k256_short_a(dst, src, n, key, off, 1);
}

/* 16..64 bytes on AVX2 CPUs: k256_short() under 32, k128_mid() (which
 * works from 16) from 32. */
static WS_AINLINE TGT_AVX2 int short_avx2(uint8_t *dst, const uint8_t *src,
                                          size_t n, const uint8_t *key,
                                          size_t off) {
  return n < 32 ? k256_short(dst, src, n, key, off)
                 : k128_mid(dst, src, n, key, off);
}
TGT_AVX2 int ws_utf8_short_avx2(uint8_t *dst, const uint8_t *src, size_t n,
                                const uint8_t *key, size_t off) {
  return short_avx2(dst, src, n, key, off);
}
TGT_AVX2 int ws_utf8_short_avx2_v(const uint8_t *src, size_t n) {
  return short_avx2(NULL, src, n, NULL, 0);
}

/* The AVX2 kernel: as ws_utf8_kern_sse4() with 32-byte blocks; n >= 16. The
 * 16-byte steps at the end are the SSE4.1 ones, in VEX form here. */
static WS_AINLINE TGT_AVX2 size_t kbody_avx2(uint8_t *dst, const uint8_t *src,
                                             size_t n, const uint8_t *key,
                                             size_t off, size_t *pw) {
  const uint8_t *plain = dst ? dst : src;
  k256 k;
  k128 k1;
  __m256i prev = _mm256_setzero_si256(), mk = _mm256_setzero_si256(), err;
  __m128i prev1;
  size_t i = 0, bad = n;

  if (key) mk = _mm256_set1_epi32((int)key_word(key, off));
  prev1 = _mm_setzero_si128();
  if (n >= 32) {
    k256_init(&k, k_base());
    for (; n - i >= 64; i += 64) {
      __m256i v0 = k256_load(dst ? dst + i : NULL, src + i, mk);
      __m256i v1 = k256_load(dst ? dst + i + 32 : NULL, src + i + 32, mk);
      if (_mm256_movemask_epi8(_mm256_or_si256(v0, v1)) == 0) {
        err = _mm256_subs_epu8(prev, bcast16(k_incomplete));
        /* Only the high lane's check is about the block's end. */
        err = _mm256_permute2x128_si256(err, err, 0x11);
      } else {
        err = _mm256_or_si256(k256_check(&k, prev, v0), k256_check(&k, v0, v1));
      }
      prev = v1;
      if (WS_UNLIKELY(!_mm256_testz_si256(err, err))) {
        bad = i;
        i += 64;
        goto fail;
      }
    }
    if (n - i >= 32) {
      __m256i v = k256_load(dst ? dst + i : NULL, src + i, mk);
      err = k256_check(&k, prev, v);
      prev = v;
      if (WS_UNLIKELY(!_mm256_testz_si256(err, err))) {
        bad = i;
        i += 32;
        goto fail;
      }
      i += 32;
    }
    prev1 = _mm256_extracti128_si256(prev, 1);
  }
  /* Under 32 bytes left: finish with 16-byte blocks. */
  k128_init_short(&k1); /* VEX: foldable, and used once or twice */
  if (n - i >= 16) {
    __m128i v =
        k128_load(dst ? dst + i : NULL, src + i, _mm256_castsi256_si128(mk));
    __m128i e = k128_check(&k1, prev1, v);
    prev1 = v;
    if (WS_UNLIKELY(!_mm_testz_si128(e, e))) {
      bad = i;
      i += 16;
      goto fail;
    }
    i += 16;
  }
  {
    size_t pos = k128_tail(&k1, dst, src, i, n, key, off, prev1, &bad);
    *pw = n;
    if (bad == n) return pos;
  }
  i = n;
fail:
  *pw = dst ? i : n;
  return seq_start(plain, bad);
}

TGT_AVX2 size_t ws_utf8_kern_avx2_v(const uint8_t *src, size_t n, size_t *pw) {
  return kbody_avx2(NULL, src, n, NULL, 0, pw);
}
TGT_AVX2 size_t ws_utf8_kern_avx2(uint8_t *dst, const uint8_t *src, size_t n,
                                  const uint8_t *key, size_t off, size_t *pw) {
  return kbody_avx2(dst, src, n, key, off, pw);
}
#endif /* WS_UTF8_AVX2 */

#ifdef WS_UTF8_NEON
typedef struct kneon {
  uint8x16_t t_hi, t_lo, t_cur, nib, sub2, sub3, cc;
} kneon;

static WS_AINLINE uint8x16_t kn_check(const kneon *k, uint8x16_t prev,
                                      uint8x16_t cur) {
  uint8x16_t p1 = vextq_u8(prev, cur, 15);
  uint8x16_t p2 = vextq_u8(prev, cur, 14);
  uint8x16_t p3 = vextq_u8(prev, cur, 13);
  uint8x16_t a = vqtbl1q_u8(k->t_hi, vshrq_n_u8(p1, 4));
  uint8x16_t b = vqtbl1q_u8(k->t_lo, vandq_u8(p1, k->nib));
  uint8x16_t c = vqtbl1q_u8(k->t_cur, vshrq_n_u8(cur, 4));
  uint8x16_t owed = vorrq_u8(vqsubq_u8(p2, k->sub2), vqsubq_u8(p3, k->sub3));
  owed = vandq_u8(owed, k->cc);
  return veorq_u8(vandq_u8(vandq_u8(a, b), c), owed);
}

static WS_AINLINE uint8x16_t kn_load(uint8_t *dst, const uint8_t *src,
                                     uint8x16_t mk) {
  uint8x16_t v = vld1q_u8(src);
  if (dst) {
    v = veorq_u8(v, mk);
    vst1q_u8(dst, v);
  }
  return v;
}

/* The NEON kernel: as ws_utf8_kern_sse4(). */
size_t ws_utf8_kern_neon(uint8_t *dst, const uint8_t *src, size_t n,
                         const uint8_t *key, size_t off, size_t *pw) {
  const uint8_t *plain = dst ? dst : src;
  kneon k;
  uint8x16_t prev = vdupq_n_u8(0), mk = vdupq_n_u8(0), err;
  size_t i = 0, bad = n, b;

  k.t_hi = vld1q_u8(k_prev_hi);
  k.t_lo = vld1q_u8(k_prev_lo);
  k.t_cur = vld1q_u8(k_cur_hi);
  k.nib = vld1q_u8(k_nib);
  k.sub2 = vld1q_u8(k_sub2);
  k.sub3 = vld1q_u8(k_sub3);
  k.cc = vld1q_u8(k_cc);
  if (key) mk = vreinterpretq_u8_u32(vdupq_n_u32(key_word(key, off)));
  for (; n - i >= 16; i += 16) {
    uint8x16_t v = kn_load(dst ? dst + i : NULL, src + i, mk);
    if (vmaxvq_u8(v) < 0x80)
      err = vqsubq_u8(prev, vld1q_u8(k_incomplete));
    else
      err = kn_check(&k, prev, v);
    prev = v;
    if (WS_UNLIKELY(vmaxvq_u8(err) != 0)) {
      bad = i;
      i += 16;
      goto fail;
    }
  }
  if (dst && i < n) {
    if (key)
      ws_copy_mask(dst + i, src + i, n - i, key, off + i);
    else if (dst != src)
      memcpy(dst + i, src + i, n - i);
  }
  b = seq_start(plain, n);
  if (b >= i) {
    if (b == i) {
      err = vqsubq_u8(prev, vld1q_u8(k_incomplete));
    } else {
      uint8x16_t v = vqtbl1q_u8(vld1q_u8(plain + b - 16),
                                vld1q_u8(k_slide + 16 - (b - i)));
      err = kn_check(&k, prev, v);
    }
    if (vmaxvq_u8(err) != 0) {
      bad = i;
      i = n;
      goto fail;
    }
  }
  *pw = n;
  return b;
fail:
  *pw = dst ? i : n;
  return seq_start(plain, bad);
}
#endif /* WS_UTF8_NEON */

#define GO_LONG(kern_fn, kern_v_fn)                                            \
  size_t off = (key && poffset) ? *poffset : 0, pos, w = len;                  \
  pos = dst ? kern_fn(dst, src, len, key, off, &w) : kern_v_fn(src, len, &w);  \
  if (WS_LIKELY(pos == len)) {                                                 \
    if (pvalid) *pvalid = len;                                                 \
    if (key && poffset) *poffset = (off + len) & 3u;                           \
    return 0;                                                                  \
  }                                                                            \
  return ws_utf8_run_general(dst, src, len, key, poffset, u, pvalid, pos, w)

/*
 * The twins for one instruction set |isa|, with its target attribute
 * TGT_|isa|. Each keeps in line only the short kernel for up to
 * SMALL_MAX_|isa| bytes, the common short message, so that its path has
 * no stack frame; 33..64 bytes (k128_mid()) and the long kernel are in
 * *_more_|isa|, a tail call away.
 */
#define TWINS(isa)                                                             \
  static WS_NOINLINE TGT_##isa size_t scan_more_##isa(                         \
      ws_utf8 *u, const uint8_t *buf, size_t len) {                            \
    size_t w = len, pos;                                                       \
    if (len <= 64) {                                                           \
      if (WS_LIKELY(k128_mid(NULL, buf, len, NULL, 0))) return len;            \
      return scan_general(u, buf, len, 0, len);                                \
    }                                                                          \
    pos = ws_utf8_kern_##isa##_v(buf, len, &w);                                \
    if (WS_LIKELY(pos == len)) return len;                                     \
    return scan_general(u, buf, len, pos, w);                                  \
  }                                                                            \
  static WS_NOINLINE TGT_##isa int go_more_##isa(                              \
      uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key,        \
      size_t *poffset, ws_utf8 *u, size_t *pvalid) {                           \
    if (len <= 64) {                                                           \
      size_t off = (key && poffset) ? *poffset : 0;                            \
      if (WS_LIKELY(k128_mid(dst, src, len, key, off))) {                      \
        if (pvalid) *pvalid = len;                                             \
        if (key && poffset) *poffset = (off + len) & 3u;                       \
        return 0;                                                              \
      }                                                                        \
      /* all stored: the scalar DFA looks at them from the start */           \
      return ws_utf8_run_general(dst, src, len, key, poffset, u, pvalid, 0,    \
                                 len);                                         \
    }                                                                          \
    GO_LONG(ws_utf8_kern_##isa, ws_utf8_kern_##isa##_v);                       \
  }                                                                            \
  /* (six arguments, as ws_utf8_unmask_|isa|: a tail call) */                 \
  static WS_NOINLINE TGT_##isa int unmask_more_##isa(                          \
      uint8_t *buf, size_t len, const uint8_t *key, size_t *poffset,           \
      ws_utf8 *u, size_t *pvalid) {                                            \
    return go_more_##isa(buf, buf, len, key, poffset, u, pvalid);              \
  }                                                                            \
  static WS_NOINLINE TGT_##isa int validate_more_##isa(const uint8_t *buf,     \
                                                       size_t len) {           \
    ws_utf8 u = {0};                                                           \
    if (go_more_##isa(NULL, buf, len, NULL, NULL, &u, NULL)) {                 \
      return WS_ERR_UTF8;                                                      \
    }                                                                          \
    return u.state == 0 ? 0 : WS_ERR_UTF8;                                     \
  }                                                                            \
  TGT_##isa int ws_utf8_validate_##isa(const uint8_t *buf, size_t len) {       \
    if (len > SMALL_MAX_##isa) return validate_more_##isa(buf, len);           \
    if (WS_LIKELY(small_##isa(NULL, buf, len, NULL, 0))) return 0;            \
    return validate_general(buf, len);                                         \
  }                                                                            \
  TGT_##isa size_t ws_utf8_scan_##isa(ws_utf8 *u, const uint8_t *buf,          \
                                      size_t len) {                            \
    if (len > SMALL_MAX_##isa) return scan_more_##isa(u, buf, len);            \
    if (WS_LIKELY(scan_small_##isa(buf, len))) return len;                     \
    return scan_general(u, buf, len, 0, len);                                  \
  }                                                                            \
  TGT_##isa int ws_utf8_feed_##isa(ws_utf8 *u, const uint8_t *buf,             \
                                   size_t len) {                               \
    if (len > SMALL_MAX_##isa) {                                               \
      return go_more_##isa(NULL, buf, len, NULL, NULL, u, NULL);               \
    }                                                                          \
    if (WS_LIKELY(small_##isa(NULL, buf, len, NULL, 0))) return 0;            \
    return feed_general(u, buf, len);                                          \
  }                                                                            \
  TGT_##isa int ws_utf8_unmask_##isa(uint8_t *buf, size_t len,                 \
                                     const uint8_t *key, size_t *poffset,      \
                                     ws_utf8 *u, size_t *pvalid) {             \
    size_t off;                                                                \
    if (len > SMALL_MAX_##isa) {                                               \
      return unmask_more_##isa(buf, len, key, poffset, u, pvalid);             \
    }                                                                          \
    off = *poffset;                                                            \
    if (WS_LIKELY(small_##isa(buf, buf, len, key, off))) {                    \
      if (pvalid) *pvalid = len;                                               \
      *poffset = (off + len) & 3u;                                             \
      return 0;                                                                \
    }                                                                          \
    return unmask_stored(buf, len, key, poffset, u, pvalid);                   \
  }                                                                            \
  TGT_##isa int ws_utf8_copy_##isa(                                            \
      uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key,        \
      size_t *poffset, ws_utf8 *u, size_t *pvalid) {                           \
    size_t off = (key && poffset) ? *poffset : 0;                              \
    if (len > SMALL_MAX_##isa) {                                               \
      return go_more_##isa(dst, src, len, key, poffset, u, pvalid);            \
    }                                                                          \
    if (WS_LIKELY(small_##isa(dst, src, len, key, off))) {                    \
      if (pvalid) *pvalid = len;                                               \
      if (key && poffset) *poffset = (off + len) & 3u;                         \
      return 0;                                                                \
    }                                                                          \
    return copy_stored(dst, src, len, key, poffset, u, pvalid);                \
  }

/* The short kernel each twin keeps in line, and up to how many bytes.
 * ws_utf8_scan()'s short kernel on AVX2 skips the ASCII test: its caller
 * on the receive path (the batch path of ws_conn.c) scans only what it
 * has found not to be ASCII, up to 128 bytes. */
#define small_sse4 k128_short
#define scan_small_sse4(buf, len) k128_short(NULL, (buf), (len), NULL, 0)
#define SMALL_MAX_sse4 32
#define small_avx2 k256_short
#define scan_small_avx2(buf, len) k256_short_a(NULL, (buf), (len), NULL, 0, 0)
#define SMALL_MAX_avx2 31

#ifdef WS_UTF8_SSE4
/* The general paths the twins fall back on; *_stored: a short kernel
 * stored all |len| bytes but could not settle them, so the scalar DFA
 * looks at them from the start. */
static WS_NOINLINE int validate_general(const uint8_t *buf, size_t len) {
  ws_utf8 u = {0};
  if (ws_utf8_run_general(NULL, buf, len, NULL, NULL, &u, NULL, 0, len)) {
    return WS_ERR_UTF8;
  }
  return u.state == 0 ? 0 : WS_ERR_UTF8;
}
/* From |pos|, where a kernel left off (w = len: no kernel again). */
static WS_NOINLINE size_t scan_general(ws_utf8 *u, const uint8_t *buf,
                                       size_t len, size_t pos, size_t w) {
  size_t valid;
  ws_utf8_run_general(NULL, buf, len, NULL, NULL, u, &valid, pos, w);
  return valid;
}
static WS_NOINLINE int feed_general(ws_utf8 *u, const uint8_t *buf,
                                    size_t len) {
  return ws_utf8_run_general(NULL, buf, len, NULL, NULL, u, NULL, 0, len);
}
static WS_NOINLINE int unmask_stored(uint8_t *buf, size_t len,
                                     const uint8_t *key, size_t *poffset,
                                     ws_utf8 *u, size_t *pvalid) {
  return ws_utf8_run_general(buf, buf, len, key, poffset, u, pvalid, 0, len);
}
static WS_NOINLINE int copy_stored(uint8_t *dst, const uint8_t *src, size_t len,
                                   const uint8_t *key, size_t *poffset,
                                   ws_utf8 *u, size_t *pvalid) {
  return ws_utf8_run_general(dst, src, len, key, poffset, u, pvalid, 0, len);
}

TWINS(sse4)
#  ifdef WS_UTF8_AVX2
TWINS(avx2)
#  endif
#endif /* WS_UTF8_SSE4 */
#ifdef WS_UTF8_NEON
static size_t kern_neon_v(const uint8_t *src, size_t n, size_t *pw) {
  return ws_utf8_kern_neon(NULL, src, n, NULL, 0, pw);
}
static int go_neon(uint8_t *dst, const uint8_t *src, size_t len,
                   const uint8_t *key, size_t *poffset, ws_utf8 *u,
                   size_t *pvalid) {
  size_t off = (key && poffset) ? *poffset : 0, pos, w = len;
  pos = dst ? ws_utf8_kern_neon(dst, src, len, key, off, &w)
            : kern_neon_v(src, len, &w);
  if (WS_LIKELY(pos == len)) {
    if (pvalid) *pvalid = len;
    if (key && poffset) *poffset = (off + len) & 3u;
    return 0;
  }
  return ws_utf8_run_general(dst, src, len, key, poffset, u, pvalid, pos, w);
}
int ws_utf8_validate_neon(const uint8_t *buf, size_t len) {
  ws_utf8 u = {0};
  if (go_neon(NULL, buf, len, NULL, NULL, &u, NULL)) return WS_ERR_UTF8;
  return u.state == 0 ? 0 : WS_ERR_UTF8;
}
size_t ws_utf8_scan_neon(ws_utf8 *u, const uint8_t *buf, size_t len) {
  size_t valid;
  (void)go_neon(NULL, buf, len, NULL, NULL, u, &valid);
  return valid;
}
int ws_utf8_feed_neon(ws_utf8 *u, const uint8_t *buf, size_t len) {
  return go_neon(NULL, buf, len, NULL, NULL, u, NULL);
}
int ws_utf8_unmask_neon(uint8_t *buf, size_t len, const uint8_t *key,
                        size_t *poffset, ws_utf8 *u, size_t *pvalid) {
  return go_neon(buf, buf, len, key, poffset, u, pvalid);
}
int ws_utf8_copy_neon(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t *key, size_t *poffset, ws_utf8 *u,
                      size_t *pvalid) {
  return go_neon(dst, src, len, key, poffset, u, pvalid);
}
#endif
