/*
 * Incremental UTF-8 validation (RFC 3629, Unicode Table 3-7), failing on
 * the first byte that cannot continue any well-formed sequence.
 * SPDX-License-Identifier: MIT
 *
 * Well-formed sequences, by lead byte:
 *
 *   00..7F
 *   C2..DF  80..BF
 *   E0      A0..BF  80..BF          (E0 80..9F would be overlong)
 *   E1..EC  80..BF  80..BF
 *   ED      80..9F  80..BF          (ED A0..BF would be a surrogate)
 *   EE..EF  80..BF  80..BF
 *   F0      90..BF  80..BF  80..BF  (F0 80..8F would be overlong)
 *   F1..F3  80..BF  80..BF  80..BF
 *   F4      80..8F  80..BF  80..BF  (F4 90.. would be above U+10FFFF)
 *
 * Everything else (80..C1 as a lead, F5..FF anywhere) is invalid. Only the
 * first continuation byte has a range other than 80..BF, so nine states
 * cover everything: between characters, failed, 1/2/3 continuation bytes
 * owed in 80..BF, and the four narrow first-continuation ranges after E0,
 * ED, F0 and F4.
 *
 * Independent implementations of that table, all with the same state
 * values in ws_utf8.state and compared against each other by the tests:
 *
 * - the reference (ws_utf8_scan_scalar) steps byte by byte over an
 *   explicit (bytes owed, lowest, highest) triple, straight from the table;
 * - the DFA: a branch-free 64-bit shift DFA (2 KiB table) that also skips
 *   runs of ASCII a word at a time; the scalar fast path, used for short
 *   inputs, tails, and to find the exact byte when a vector block fails;
 * - the compact DFA: a DFA over twelve byte classes (under 200 bytes of
 *   tables) for size-optimised and freestanding builds (WS_UTF8_COMPACT);
 * - vector kernels (SSE4.1 and AVX2 chosen at run time on x86, NEON on
 *   AArch64) that check a whole block at once, see "vector kernels".
 *
 * Whatever the implementation, the result does not depend on how the input
 * is split: a call starts from the state the previous one left.
 */
#include "ws_utf8.h"

#include "ws_mask.h"

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

/* Canonical state values (ws_utf8.state): the 64-bit DFA's shift counts
 * XOR 6, so that 0 is "between characters" and 6 is WS_UTF8_FAILED. */
#define U_ACC 0u
#define U_ERR WS_UTF8_FAILED
#define U_T1 10u /* one continuation byte owed, 80..BF */
#define U_T2 20u /* two owed, 80..BF */
#define U_T3 30u /* three owed, 80..BF */
#define U_E0 24u /* after E0: A0..BF, then one more */
#define U_ED 34u /* after ED: 80..9F, then one more */
#define U_F0 44u /* after F0: 90..BF, then two more */
#define U_F4 54u /* after F4: 80..8F, then two more */

/* ---- reference ------------------------------------------------------- */

/* A reference state: bytes owed (bits 0-1), lowest and highest value of
 * the next byte (bits 8-15, 16-23); 0 between characters. */
#define SEQ(n, lo, hi)                                                         \
  ((uint32_t)(n) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)
#define SEQ_FAILED 0x80000000u

/* The state after lead byte |b| (>= 0x80), straight from the table above;
 * 0 if |b| cannot start a sequence. */
static uint32_t lead(uint8_t b) {
  if (b < 0xC2) return 0; /* continuation, or C0/C1 (overlong) */
  if (b <= 0xDF) return SEQ(1, 0x80, 0xBF);
  if (b == 0xE0) return SEQ(2, 0xA0, 0xBF);
  if (b == 0xED) return SEQ(2, 0x80, 0x9F);
  if (b <= 0xEF) return SEQ(2, 0x80, 0xBF);
  if (b == 0xF0) return SEQ(3, 0x90, 0xBF);
  if (b <= 0xF3) return SEQ(3, 0x80, 0xBF);
  if (b == 0xF4) return SEQ(3, 0x80, 0x8F);
  return 0; /* F5..FF: above U+10FFFF, or no UTF-8 form at all */
}

/* One byte through the reference; SEQ_FAILED if it is invalid. */
static uint32_t step(uint32_t st, uint8_t b) {
  uint32_t lo, hi, need;

  if (st == 0) {
    uint32_t t;

    if (b < 0x80) return 0;
    t = lead(b);
    return t ? t : SEQ_FAILED;
  }
  lo = (st >> 8) & 0xFFu;
  hi = (st >> 16) & 0xFFu;
  if (b < lo || b > hi) return SEQ_FAILED;
  need = (st & 3u) - 1;
  return need ? SEQ(need, 0x80, 0xBF) : 0;
}

/* The canonical states in a fixed order (also the compact DFA's state
 * numbers, below) and the reference state for each. */
static const uint8_t c_canon[9] = {U_ACC, U_ERR, U_T1, U_T2, U_T3,
                                   U_E0,  U_ED,  U_F0, U_F4};
/* clang-format off */
static const uint32_t seq_of[9] = {
    0,                  SEQ_FAILED,         SEQ(1, 0x80, 0xBF),
    SEQ(2, 0x80, 0xBF), SEQ(3, 0x80, 0xBF), SEQ(2, 0xA0, 0xBF),
    SEQ(2, 0x80, 0x9F), SEQ(3, 0x90, 0xBF), SEQ(3, 0x80, 0x8F)};
/* clang-format on */

/* The index of canonical state |s| in c_canon; 1 (failed) if unknown. */
static unsigned canon_index(uint32_t s) {
  unsigned k;
  for (k = 0; k < 9 && c_canon[k] != s; k++)
    continue;
  return k < 9 ? k : 1;
}

/* Canonical state <-> reference state. */
static uint32_t canon_to_seq(uint32_t s) { return seq_of[canon_index(s)]; }

static uint32_t seq_to_canon(uint32_t s) {
  unsigned k;
  for (k = 0; k < 9 && seq_of[k] != s; k++)
    continue;
  return k < 9 ? c_canon[k] : U_ERR;
}

void ws_utf8_init(ws_utf8 *u) { u->state = 0; }

size_t ws_utf8_scan_scalar(ws_utf8 *u, const uint8_t *buf, size_t len) {
  uint32_t st = canon_to_seq(u->state);
  size_t i;

  if (st == SEQ_FAILED) return 0;
  for (i = 0; i < len; i++) {
    st = step(st, buf[i]);
    if (st == SEQ_FAILED) break;
  }
  u->state = seq_to_canon(st);
  return i;
}

int ws_utf8_feed_scalar(ws_utf8 *u, const uint8_t *buf, size_t len) {
  if (u->state == WS_UTF8_FAILED) return WS_ERR_UTF8;
  return ws_utf8_scan_scalar(u, buf, len) == len ? 0 : WS_ERR_UTF8;
}

/* 1 if the |n| (<= 8) bytes at |p| are all ASCII; a word at a time. */
static inline int ascii_upto8(const uint8_t *p, size_t n) {
  uint32_t a, b;

  if (n >= 4) {
    /* Two loads that overlap when n < 8 cover all n bytes. */
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    return ((a | b) & 0x80808080u) == 0;
  }
  a = 0;
  while (n--)
    a |= p[n];
  return a < 0x80;
}

/* ---- compact DFA ----------------------------------------------------- */

/*
 * Byte classes for 80..FF, two 4-bit classes a byte (the even byte in the
 * low nibble): 1 80..8F, 2 90..9F, 3 A0..BF, 4 never valid (C0, C1,
 * F5..FF), 5 C2..DF, 6 E0, 7 E1..EC and EE..EF, 8 ED, 9 F0, 10 F1..F3,
 * 11 F4. Class 0 is ASCII, told apart without the table.
 */
static const uint8_t cclass[64] = {
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, /* 80..8F */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 90..9F */
    0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, /* A0..AF */
    0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, /* B0..BF */
    0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, /* C0..CF */
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, /* D0..DF */
    0x76, 0x77, 0x77, 0x77, 0x77, 0x77, 0x87, 0x77, /* E0..EF */
    0xA9, 0xAA, 0x4B, 0x44, 0x44, 0x44, 0x44, 0x44, /* F0..FF */
};

/* Compact states: the indexes of c_canon (0 between characters, 1
 * failed, then T1, T2, T3, E0, ED, F0, F4); c_lead[class] is the state
 * after a lead byte. */
enum { C_ACC, C_ERR, C_T1, C_T2, C_T3, C_E0, C_ED, C_F0, C_F4 };

static const uint8_t c_lead[12] = {C_ACC, C_ERR, C_ERR, C_ERR, C_ERR, C_T1,
                                   C_E0,  C_T2,  C_ED,  C_F0,  C_T3,  C_F4};
/* The class ranges each in-sequence state accepts, as bit masks over
 * classes 1..3 (80..8F, 90..9F, A0..BF), and the state after. */
static const uint8_t c_ok[7] = {7, 7, 7, 4, 3, 6, 1};
static const uint8_t c_then[7] = {C_ACC, C_T1, C_T2, C_T1, C_T1, C_T2, C_T2};

/* Validates |n| bytes from canonical state |*pst|; returns how many
 * precede the first invalid one (*pst is then U_ERR). */
static size_t scan_compact(uint32_t *pst, const uint8_t *p, size_t n) {
  unsigned st = canon_index(*pst);
  size_t i = 0;

  if (st == C_ERR) return 0;
  while (i < n) {
    uint8_t b = p[i];
    unsigned c;

    if (st == C_ACC) {
      if (b < 0x80) {
        i++;
        /* Skip ASCII four bytes at a time between characters. */
        while (n - i >= 4 && ascii_upto8(p + i, 4))
          i += 4;
        continue;
      }
      c = (unsigned)(cclass[(b - 0x80) >> 1] >> ((b & 1u) * 4)) & 15u;
      st = c_lead[c];
    } else {
      c = b < 0x80
              ? 0
              : (unsigned)(cclass[(b - 0x80) >> 1] >> ((b & 1u) * 4)) & 15u;
      /* Classes 1..3 are continuation bytes; the state's mask says which
       * of them it accepts (RFC 3629 section 4: the narrow ranges after
       * E0, ED, F0, F4). */
      st = (c >= 1 && c <= 3 && (c_ok[st - 2] >> (c - 1) & 1u)) ? c_then[st - 2]
                                                                : C_ERR;
    }
    if (st == C_ERR) break;
    i++;
  }
  *pst = c_canon[st];
  return i;
}

/* ---- 64-bit shift DFA ------------------------------------------------ */

#ifndef WS_UTF8_COMPACT
/*
 * A branch-free DFA. Each DFA state is a shift count (a multiple of 6);
 * dfa[b] packs, for every state s, the next state after byte b into bits
 * s..s+5, so one step is "st = dfa[b] >> st". The load does not depend on
 * the state, leaving a one-shift dependency chain per byte whatever the
 * mix of scripts. ERR is 0, so every transition not listed below fails,
 * and ERR is absorbing. DFA state = canonical state XOR 6.
 */
#  define D_ERR 0u
#  define D_ACC 6u
#  define D_T1 12u
#  define D_T2 18u
#  define D_T3 24u
#  define D_E0 30u
#  define D_ED 36u
#  define D_F0 42u
#  define D_F4 48u

#  define TR(from, to) ((uint64_t)(to) << (from))
#  define C_ASC TR(D_ACC, D_ACC)
#  define C_CONT TR(D_T1, D_ACC) | TR(D_T2, D_T1) | TR(D_T3, D_T2)
#  define C_80 (C_CONT | TR(D_ED, D_T1) | TR(D_F4, D_T2))
#  define C_90 (C_CONT | TR(D_ED, D_T1) | TR(D_F0, D_T2))
#  define C_A0 (C_CONT | TR(D_E0, D_T1) | TR(D_F0, D_T2))
#  define C_BAD 0u
#  define C_L2 TR(D_ACC, D_T1)
#  define C_E0 TR(D_ACC, D_E0)
#  define C_L3 TR(D_ACC, D_T2)
#  define C_ED TR(D_ACC, D_ED)
#  define C_F0 TR(D_ACC, D_F0)
#  define C_L4 TR(D_ACC, D_T3)
#  define C_F4 TR(D_ACC, D_F4)
#  define R2(x) x, x
#  define R4(x) R2(x), R2(x)
#  define R8(x) R4(x), R4(x)
#  define R16(x) R8(x), R8(x)
#  define R32(x) R16(x), R16(x)
#  define R64(x) R32(x), R32(x)

static const uint64_t dfa[256] = {
    R64(C_ASC), R64(C_ASC),                               /* 00..7F */
    R16(C_80),                                            /* 80..8F */
    R16(C_90),                                            /* 90..9F */
    R32(C_A0),                                            /* A0..BF */
    R2(C_BAD),                                            /* C0..C1 */
    R16(C_L2),  R8(C_L2),   R4(C_L2), R2(C_L2),           /* C2..DF */
    C_E0,       R8(C_L3),   R4(C_L3), C_ED,     R2(C_L3), /* E0..EF */
    C_F0,       C_L4,       C_L4,     C_L4,     C_F4,     /* F0..F4 */
    R8(C_BAD),  R2(C_BAD),  C_BAD,                        /* F5..FF */
};

#  define STEP(st, b) ((st) = dfa[(b)] >> ((st)&63u))

/* The index of the first byte of p[0..n) that takes |st| to ERR. */
static size_t locate_error(uint64_t st, const uint8_t *p, size_t n) {
  size_t k;
  for (k = 0; k < n; k++) {
    STEP(st, p[k]);
    if ((st & 63u) == D_ERR) break;
  }
  return k;
}

/* 1 if the 16 bytes at |p| are all ASCII. */
static inline int ascii16(const uint8_t *p) {
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + 8, 8);
  return ((a | b) & 0x8080808080808080ull) == 0;
}

/* As scan_compact(), with the 64-bit DFA. */
/* scan_dfa() for under 16 bytes: ASCII a word at a time, else the DFA
 * byte by byte. */
static size_t scan_dfa_short(uint32_t *pst, const uint8_t *buf, size_t len) {
  uint64_t st = (uint64_t)*pst ^ D_ACC, s0;
  size_t k;

  if (st == D_ERR) return 0;
  if (st == D_ACC &&
      (len <= 8 ? ascii_upto8(buf, len)
                : ascii_upto8(buf, 8) && ascii_upto8(buf + 8, len - 8))) {
    return len;
  }
  s0 = st;
  for (k = 0; k < len; k++)
    STEP(st, buf[k]);
  st &= 63u;
  if (st == D_ERR) {
    *pst = U_ERR;
    return locate_error(s0, buf, len);
  }
  *pst = (uint32_t)(st ^ D_ACC);
  return len;
}

static size_t scan_dfa(uint32_t *pst, const uint8_t *buf, size_t len) {
  uint64_t st = (uint64_t)*pst ^ D_ACC;
  size_t i = 0;

  if (len < 16) return scan_dfa_short(pst, buf, len);
  if (st == D_ERR) return 0;
  while (len - i >= 16) {
    const uint8_t *p = buf + i;
    uint64_t s0;

    /* Runs of ASCII between characters: skip, 64 bytes at a time when the
     * run is long. The ASCII test comes first: in non-ASCII text it is
     * steadily false, while the state at a block edge is random there and
     * would be a badly predicted branch. */
    if (ascii16(p) && st == D_ACC) {
      i += 16;
      while (len - i >= 64 && ascii16(buf + i) && ascii16(buf + i + 16) &&
             ascii16(buf + i + 32) && ascii16(buf + i + 48)) {
        i += 64;
      }
      continue;
    }
    s0 = st;
    STEP(st, p[0]);
    STEP(st, p[1]);
    STEP(st, p[2]);
    STEP(st, p[3]);
    STEP(st, p[4]);
    STEP(st, p[5]);
    STEP(st, p[6]);
    STEP(st, p[7]);
    STEP(st, p[8]);
    STEP(st, p[9]);
    STEP(st, p[10]);
    STEP(st, p[11]);
    STEP(st, p[12]);
    STEP(st, p[13]);
    STEP(st, p[14]);
    STEP(st, p[15]);
    st &= 63u;
    if (WS_UNLIKELY(st == D_ERR)) {
      i += locate_error(s0, p, 16);
      goto fail;
    }
    i += 16;
  }
  {
    uint64_t s0 = st;
    size_t k;
    for (k = i; k < len; k++)
      STEP(st, buf[k]);
    st &= 63u;
    if (st == D_ERR) {
      i += locate_error(s0, buf + i, len - i);
      goto fail;
    }
  }
  *pst = (uint32_t)(st ^ D_ACC);
  return len;

fail:
  *pst = U_ERR;
  return i;
}
#endif /* !WS_UTF8_COMPACT */

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

#if defined(WS_UTF8_SSE4) || defined(WS_UTF8_AVX2) || defined(WS_UTF8_NEON)
#  define WS_UTF8_VECTOR 1
#  define K_ANY_CONT (K_LONG | K_CC | K_OVL2)

/* Indexed by the high nibble of the previous byte. */
/* clang-format off */
static const uint8_t k_prev_hi[16] = {
    K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, K_LONG, /* 0-7 */
    K_CC,   K_CC,   K_CC,   K_CC,                                   /* 8-B */
    K_SHORT | K_OVL2,                                               /* C */
    K_SHORT,                                                        /* D */
    K_SHORT | K_OVL3 | K_SURR,                                      /* E */
    K_SHORT | K_BIG | K_F8X,                                        /* F */
};
/* clang-format on */
/* Indexed by the low nibble of the previous byte. */
#  define K_ALL (K_SHORT | K_LONG | K_CC)
/* clang-format off */
static const uint8_t k_prev_lo[16] = {
    K_ALL | K_OVL2 | K_OVL3 | K_F8X, /* x0: C0, E0, F0 */
    K_ALL | K_OVL2,                  /* x1: C1 */
    K_ALL,
    K_ALL,
    K_ALL | K_BIG,                   /* x4: F4 */
    K_ALL | K_BIG | K_F8X,           /* x5..xF: F5..FF */
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X | K_SURR, /* xD: ED */
    K_ALL | K_BIG | K_F8X,
    K_ALL | K_BIG | K_F8X,
};
/* clang-format on */
/* Indexed by the high nibble of the byte itself. */
/* clang-format off */
static const uint8_t k_cur_hi[16] = {
    K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT, K_SHORT,
    K_ANY_CONT | K_OVL3 | K_F8X,         /* 8 */
    K_ANY_CONT | K_OVL3 | K_BIG,         /* 9 */
    K_ANY_CONT | K_SURR | K_BIG,         /* A */
    K_ANY_CONT | K_SURR | K_BIG,         /* B */
    K_SHORT, K_SHORT, K_SHORT, K_SHORT, /* C-F */
};
/* clang-format on */
/* A block whose last bytes are these or more ends inside a sequence. */
static const uint8_t k_incomplete[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xEF, 0xDF, 0xBF};
/* Splat constants, loaded rather than built: the low nibble mask, the
 * offsets that take E0.. and F0.. to 80.. (saturating), and K_CC. */
static const uint8_t k_nib[16] = {0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F,
                                  0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F,
                                  0x0F, 0x0F, 0x0F, 0x0F};
static const uint8_t k_sub2[16] = {0x60, 0x60, 0x60, 0x60, 0x60, 0x60,
                                   0x60, 0x60, 0x60, 0x60, 0x60, 0x60,
                                   0x60, 0x60, 0x60, 0x60};
static const uint8_t k_sub3[16] = {0x70, 0x70, 0x70, 0x70, 0x70, 0x70,
                                   0x70, 0x70, 0x70, 0x70, 0x70, 0x70,
                                   0x70, 0x70, 0x70, 0x70};
static const uint8_t k_cc[16] = {K_CC, K_CC, K_CC, K_CC, K_CC, K_CC,
                                 K_CC, K_CC, K_CC, K_CC, K_CC, K_CC,
                                 K_CC, K_CC, K_CC, K_CC};
/* loadu(k_slide + 16 - n) moves the last n bytes of a vector to its start
 * and zeroes the rest (as a byte shuffle). */
static const uint8_t k_slide[32] = {
    0,    1,    2,    3,    4,    5,    6,    7,    8,    9,    10,
    11,   12,   13,   14,   15,   0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};
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
#  define LD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#  define ST128(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

/* loadu(k_tailmask + n) selects the last n bytes of a vector. */
static const uint8_t k_tailmask[32] = {
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0,    0,    0,    0,    0,    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

typedef struct k128 {
  __m128i t_hi, t_lo, t_cur, nib, sub2, sub3, cc;
} k128;

/* A splat constant, loaded: the empty asm hides its value from the
 * compiler, which would otherwise build it from immediates in three
 * instructions instead of one load. */
static WS_AINLINE TGT_SSE4 __m128i k128_const(const uint8_t *p) {
  __asm__("" : "+r"(p));
  return LD128(p);
}

static WS_AINLINE TGT_SSE4 void k128_init(k128 *k) {
  k->t_hi = LD128(k_prev_hi);
  k->t_lo = LD128(k_prev_lo);
  k->t_cur = LD128(k_cur_hi);
  k->nib = k128_const(k_nib);
  k->sub2 = k128_const(k_sub2); /* E0.. two back: >= 0x80 */
  k->sub3 = k128_const(k_sub3); /* F0.. three back: >= 0x80 */
  k->cc = k128_const(k_cc);
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
  __m128i v0 = LD128(src), v1 = LD128(src + n - 16), err;
  k128 k;

  if (dst) {
    if (key) {
      uint32_t k0 = key_word(key, off);
      /* The key from offset n - 16: k0 rotated by (n - 16) mod 4 bytes. */
      unsigned r = (unsigned)((n - 16) & 3) * 8;
      uint32_t k1 = (k0 >> r) | (k0 << ((32 - r) & 31));
      v0 = _mm_xor_si128(v0, _mm_set1_epi32((int)k0));
      v1 = _mm_xor_si128(v1, _mm_set1_epi32((int)k1));
    }
    ST128(dst, v0);
    ST128(dst + n - 16, v1);
  }
  if (_mm_movemask_epi8(_mm_or_si128(v0, v1)) == 0) return 1;
  k128_init(&k);
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
  k128_init(&k);
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

static TGT_SSE4 int short_sse4(uint8_t *dst, const uint8_t *src, size_t n,
                               const uint8_t *key, size_t off) {
  return n <= 32 ? k128_short(dst, src, n, key, off)
                 : k128_mid(dst, src, n, key, off);
}
static TGT_SSE4 int short_sse4_v(const uint8_t *src, size_t n) {
  return n <= 32 ? k128_short(NULL, src, n, NULL, 0)
                 : k128_mid(NULL, src, n, NULL, 0);
}
#  ifdef WS_UTF8_AVX2
/* The same in VEX form, for CPUs with AVX2. */
static TGT_AVX2 int short_avx2(uint8_t *dst, const uint8_t *src, size_t n,
                               const uint8_t *key, size_t off) {
  return n <= 32 ? k128_short(dst, src, n, key, off)
                 : k128_mid(dst, src, n, key, off);
}
static TGT_AVX2 int short_avx2_v(const uint8_t *src, size_t n) {
  return n <= 32 ? k128_short(NULL, src, n, NULL, 0)
                 : k128_mid(NULL, src, n, NULL, 0);
}
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
static TGT_SSE4 size_t kern_sse4_v(const uint8_t *src, size_t n, size_t *pw) {
  return kbody_sse4(NULL, src, n, NULL, 0, pw);
}
static TGT_SSE4 size_t kern_sse4(uint8_t *dst, const uint8_t *src, size_t n,
                                 const uint8_t *key, size_t off, size_t *pw) {
  return kbody_sse4(dst, src, n, key, off, pw);
}
#endif /* WS_UTF8_SSE4 */

#ifdef WS_UTF8_AVX2
#  define LD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#  define ST256(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))

typedef struct k256 {
  __m256i t_hi, t_lo, t_cur, nib, sub2, sub3, cc;
} k256;

static WS_AINLINE TGT_AVX2 __m256i bcast16(const uint8_t *t) {
  return _mm256_broadcastsi128_si256(k128_const(t));
}

static WS_AINLINE TGT_AVX2 __m256i k256_check(const k256 *k, __m256i prev,
                                              __m256i cur) {
  /* [high half of prev, low half of cur]: what precedes each lane. */
  __m256i pc = _mm256_permute2x128_si256(prev, cur, 0x21);
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

static WS_AINLINE TGT_AVX2 __m256i k256_load(uint8_t *dst, const uint8_t *src,
                                             __m256i mk) {
  __m256i v = LD256(src);
  if (dst) {
    v = _mm256_xor_si256(v, mk);
    ST256(dst, v);
  }
  return v;
}

/* The AVX2 kernel: as kern_sse4() with 32-byte blocks; n >= 16. The
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
    k.t_hi = bcast16(k_prev_hi);
    k.t_lo = bcast16(k_prev_lo);
    k.t_cur = bcast16(k_cur_hi);
    k.nib = bcast16(k_nib);
    k.sub2 = bcast16(k_sub2);
    k.sub3 = bcast16(k_sub3);
    k.cc = bcast16(k_cc);
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
  k128_init(&k1);
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

static TGT_AVX2 size_t kern_avx2_v(const uint8_t *src, size_t n, size_t *pw) {
  return kbody_avx2(NULL, src, n, NULL, 0, pw);
}
static TGT_AVX2 size_t kern_avx2(uint8_t *dst, const uint8_t *src, size_t n,
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

/* The NEON kernel: as kern_sse4(). */
static size_t kern_neon(uint8_t *dst, const uint8_t *src, size_t n,
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

/* ---- driver ---------------------------------------------------------- */

/* Bytes transformed ahead of scalar validation: small enough to stay in
 * L1 between the two steps. */
#define BLOCK 4096

/* dst[i..i+n) = src[i..i+n) XOR key from offset |off| + i (a copy
 * without |key|); nothing without |dst|. */
static inline void transform(uint8_t *dst, const uint8_t *src, size_t i,
                             size_t n, const uint8_t *key, size_t off) {
  if (!dst || n == 0) return;
  if (key)
    ws_copy_mask(dst + i, src + i, n, key, (off + i) & 3u);
  else if (dst != src)
    memcpy(dst + i, src + i, n);
}

static inline size_t scan_default(uint32_t *pst, const uint8_t *p, size_t n) {
#ifdef WS_UTF8_COMPACT
  return scan_compact(pst, p, n);
#else
  return scan_dfa(pst, p, n);
#endif
}

/* Is implementation |impl| usable here (built in and, for run-time
 * choices, supported by this CPU)? The feature bits are the compiler
 * runtime's, filled in by a constructor: a call made before it ran (from
 * another constructor) sees no feature and stays scalar, still correct. */
static int impl_ok(int impl) {
  switch (impl) {
  case WS_UTF8_IMPL_BEST:
  case WS_UTF8_IMPL_REF:
#ifndef WS_UTF8_COMPACT
  case WS_UTF8_IMPL_DFA:
#endif
#ifdef WS_UTF8_NEON
  case WS_UTF8_IMPL_NEON:
#endif
  case WS_UTF8_IMPL_COMPACT: return 1;
#ifdef WS_UTF8_SSE4
  case WS_UTF8_IMPL_SSE4: return __builtin_cpu_supports("sse4.1");
#endif
#ifdef WS_UTF8_AVX2
  case WS_UTF8_IMPL_AVX2: return __builtin_cpu_supports("avx2");
#endif
  default: return 0;
  }
}

/* The scalar validators by implementation, for the parts that are not
 * vector blocks. */
static size_t scan_with(int impl, uint32_t *pst, const uint8_t *p, size_t n) {
  if (impl == WS_UTF8_IMPL_REF) {
    ws_utf8 t;
    size_t v;
    t.state = *pst;
    v = ws_utf8_scan_scalar(&t, p, n);
    *pst = t.state;
    return v;
  }
  if (impl == WS_UTF8_IMPL_COMPACT) return scan_compact(pst, p, n);
  return scan_default(pst, p, n);
}

#ifdef WS_UTF8_VECTOR
/*
 * The vector kernel for |impl| over n bytes (see above), or SIZE_MAX when
 * there is none for this length and CPU. |dst| NULL: validation only.
 */
static WS_AINLINE size_t vec(uint8_t *dst, const uint8_t *src, size_t n,
                             const uint8_t *key, size_t off, size_t *pw,
                             int impl) {
  /* 16..64 bytes: whole blocks and the last 16 at once; if that does not settle
   * it, the bytes are stored and the scalar DFA looks closer (*pw = n, 0). */
#  ifdef WS_UTF8_AVX2
  if (n >= 16 && (impl == WS_UTF8_IMPL_AVX2 ||
                  (impl == WS_UTF8_IMPL_BEST && impl_ok(WS_UTF8_IMPL_AVX2)))) {
    if (n <= 64) {
      *pw = n;
      return (dst ? short_avx2(dst, src, n, key, off) : short_avx2_v(src, n))
                 ? n
                 : 0;
    }
    return dst ? kern_avx2(dst, src, n, key, off, pw) : kern_avx2_v(src, n, pw);
  }
#  endif
#  ifdef WS_UTF8_SSE4
  if (n >= 16 && impl != WS_UTF8_IMPL_NEON && impl_ok(WS_UTF8_IMPL_SSE4)) {
    if (n <= 64) {
      *pw = n;
      return (dst ? short_sse4(dst, src, n, key, off) : short_sse4_v(src, n))
                 ? n
                 : 0;
    }
    return dst ? kern_sse4(dst, src, n, key, off, pw) : kern_sse4_v(src, n, pw);
  }
#  endif
#  ifdef WS_UTF8_NEON
  if (n >= 16) return kern_neon(dst, src, n, key, off, pw);
#  endif
  (void)dst;
  (void)src;
  (void)n;
  (void)key;
  (void)off;
  (void)pw;
  (void)impl;
  return SIZE_MAX;
}
#endif

/*
 * The general case, from byte |i| (bytes before |w| already stored) in
 * state |st|: an open sequence first, byte by byte; then the vector kernel
 * (unless it has run: |w| > 0); then the scalar DFA for short inputs, the
 * final unfinished sequence, and the exact byte when a block failed.
 */
static WS_AINLINE int run_general_impl(uint8_t *dst, const uint8_t *src,
                                       size_t len, const uint8_t *key,
                                       size_t *poffset, ws_utf8 *u,
                                       size_t *pvalid, int impl, size_t i,
                                       size_t w) {
  const uint8_t *plain = dst ? dst : src;
  size_t off = (key && poffset) ? *poffset : 0, valid = len;
  uint32_t st;
  int rv = 0;

  if (u == NULL) {
    transform(dst, src, 0, len, key, off);
    w = len;
    goto out;
  }
  st = u->state;
  if (st == U_ERR) {
    valid = 0;
    rv = WS_ERR_UTF8;
    goto out;
  }
#ifdef WS_UTF8_VECTOR
  if (w == 0 && (impl == WS_UTF8_IMPL_BEST || impl >= WS_UTF8_IMPL_SSE4)) {
    size_t pos, wk = 0;

    /* Finish a sequence left open by the previous call (<= 3 bytes). */
    while (st != U_ACC && i < len) {
      transform(dst, src, i, 1, key, off);
      w = i + 1;
      if (scan_default(&st, plain + i, 1) != 1) {
        valid = i;
        goto fail;
      }
      i++;
    }
    pos = len - i < 16 ? SIZE_MAX
                       : vec(dst ? dst + i : NULL, src + i, len - i, key,
                             off + i, &wk, impl);
    if (pos != SIZE_MAX) {
      if (i + wk > w) w = i + wk;
      i += pos;
    }
  }
#endif
  while (i < len) {
    size_t n, v;

    if (i >= w) {
      n = WS_MIN(len - i, (size_t)BLOCK);
      transform(dst, src, i, n, key, off);
      w = i + n;
    } else {
      n = w - i;
    }
    v = scan_with(impl, &st, plain + i, n);
    if (v != n) {
      valid = i + v;
      goto fail;
    }
    i += n;
  }
  u->state = st;
  goto out;

fail:
  u->state = U_ERR;
  rv = WS_ERR_UTF8;
out:
  if (pvalid) *pvalid = valid;
  if (key && poffset) *poffset = (off + w) & 3u;
  return rv;
}

/* run_general_impl() for the entry points, and for a chosen |impl| (tests
 * and benchmarks): apart, so that firmware that links only the entry
 * points does not link the reference implementation too. */
static WS_NOINLINE int run_general(uint8_t *dst, const uint8_t *src, size_t len,
                                   const uint8_t *key, size_t *poffset,
                                   ws_utf8 *u, size_t *pvalid, size_t i,
                                   size_t w) {
  return run_general_impl(dst, src, len, key, poffset, u, pvalid,
                          WS_UTF8_IMPL_BEST, i, w);
}

static WS_NOINLINE int run_general_any(uint8_t *dst, const uint8_t *src,
                                       size_t len, const uint8_t *key,
                                       size_t *poffset, ws_utf8 *u,
                                       size_t *pvalid, int impl) {
  return run_general_impl(dst, src, len, key, poffset, u, pvalid, impl, 0, 0);
}

/*
 * The common case: a call that starts between characters with at least
 * one vector block. Each entry point has a twin per instruction set with
 * the same parameters, so that the checks in the entry point end in a
 * tail call, and the twin's short path (16..64 bytes) calls nothing but
 * by tail calls either: no stack frame. Twins need u->state == 0 (and
 * |u|, |key|, |poffset| where the entry point allows NULL but the twin
 * does not), and len >= 16.
 */
#define GO_LONG(kern_fn, kern_v_fn)                                            \
  size_t off = (key && poffset) ? *poffset : 0, pos, w = len;                  \
  pos = dst ? kern_fn(dst, src, len, key, off, &w) : kern_v_fn(src, len, &w);  \
  if (WS_LIKELY(pos == len)) {                                                 \
    if (pvalid) *pvalid = len;                                                 \
    if (key && poffset) *poffset = (off + len) & 3u;                           \
    return 0;                                                                  \
  }                                                                            \
  return run_general(dst, src, len, key, poffset, u, pvalid, pos, w)

/* The twins for one instruction set |isa|, with its target attribute
 * TGT_|isa|. */
/* k128_short() or k128_mid() by length (16..64). */
#define SHORT(dst, src, len, key, off)                                         \
  ((len) <= 32 ? k128_short((dst), (src), (len), (key), (off))                 \
               : k128_mid((dst), (src), (len), (key), (off)))

#define TWINS(isa)                                                             \
  static WS_NOINLINE TGT_##isa int go_long_##isa(                              \
      uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key,        \
      size_t *poffset, ws_utf8 *u, size_t *pvalid) {                           \
    GO_LONG(kern_##isa, kern_##isa##_v);                                       \
  }                                                                            \
  static TGT_##isa int validate_##isa(const uint8_t *buf, size_t len) {        \
    if (len > 64) {                                                            \
      ws_utf8 u = {0};                                                         \
      if (go_long_##isa(NULL, buf, len, NULL, NULL, &u, NULL)) {               \
        return WS_ERR_UTF8;                                                    \
      }                                                                        \
      return u.state == 0 ? 0 : WS_ERR_UTF8;                                   \
    }                                                                          \
    if (WS_LIKELY(SHORT(NULL, buf, len, NULL, 0))) return 0;                   \
    return validate_general(buf, len);                                         \
  }                                                                            \
  static TGT_##isa int feed_##isa(ws_utf8 *u, const uint8_t *buf,              \
                                  size_t len) {                                \
    if (len > 64) return go_long_##isa(NULL, buf, len, NULL, NULL, u, NULL);   \
    if (WS_LIKELY(SHORT(NULL, buf, len, NULL, 0))) return 0;                   \
    return feed_general(u, buf, len);                                          \
  }                                                                            \
  static TGT_##isa int unmask_##isa(uint8_t *buf, size_t len,                  \
                                    const uint8_t *key, size_t *poffset,       \
                                    ws_utf8 *u, size_t *pvalid) {              \
    size_t off = *poffset;                                                     \
    if (len > 64) {                                                            \
      return go_long_##isa(buf, buf, len, key, poffset, u, pvalid);            \
    }                                                                          \
    if (WS_LIKELY(SHORT(buf, buf, len, key, off))) {                           \
      if (pvalid) *pvalid = len;                                               \
      *poffset = (off + len) & 3u;                                             \
      return 0;                                                                \
    }                                                                          \
    return unmask_stored(buf, len, key, poffset, u, pvalid);                   \
  }                                                                            \
  static TGT_##isa int copy_##isa(                                             \
      uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key,        \
      size_t *poffset, ws_utf8 *u, size_t *pvalid) {                           \
    size_t off = (key && poffset) ? *poffset : 0;                              \
    if (len > 64) {                                                            \
      return go_long_##isa(dst, src, len, key, poffset, u, pvalid);            \
    }                                                                          \
    if (WS_LIKELY(SHORT(dst, src, len, key, off))) {                           \
      if (pvalid) *pvalid = len;                                               \
      if (key && poffset) *poffset = (off + len) & 3u;                         \
      return 0;                                                                \
    }                                                                          \
    return copy_stored(dst, src, len, key, poffset, u, pvalid);                \
  }

#ifdef WS_UTF8_SSE4
/* The general paths the twins fall back on; *_stored: a short kernel
 * stored all |len| bytes but could not settle them, so the scalar DFA
 * looks at them from the start. */
static WS_NOINLINE int validate_general(const uint8_t *buf, size_t len) {
  ws_utf8 u = {0};
  if (run_general(NULL, buf, len, NULL, NULL, &u, NULL, 0, len)) {
    return WS_ERR_UTF8;
  }
  return u.state == 0 ? 0 : WS_ERR_UTF8;
}
static WS_NOINLINE int feed_general(ws_utf8 *u, const uint8_t *buf,
                                    size_t len) {
  return run_general(NULL, buf, len, NULL, NULL, u, NULL, 0, len);
}
static WS_NOINLINE int unmask_stored(uint8_t *buf, size_t len,
                                     const uint8_t *key, size_t *poffset,
                                     ws_utf8 *u, size_t *pvalid) {
  return run_general(buf, buf, len, key, poffset, u, pvalid, 0, len);
}
static WS_NOINLINE int copy_stored(uint8_t *dst, const uint8_t *src, size_t len,
                                   const uint8_t *key, size_t *poffset,
                                   ws_utf8 *u, size_t *pvalid) {
  return run_general(dst, src, len, key, poffset, u, pvalid, 0, len);
}

TWINS(sse4)
#  ifdef WS_UTF8_AVX2
TWINS(avx2)
#  endif
#endif /* WS_UTF8_SSE4 */
#ifdef WS_UTF8_NEON
static size_t kern_neon_v(const uint8_t *src, size_t n, size_t *pw) {
  return kern_neon(NULL, src, n, NULL, 0, pw);
}
static int go_neon(uint8_t *dst, const uint8_t *src, size_t len,
                   const uint8_t *key, size_t *poffset, ws_utf8 *u,
                   size_t *pvalid) {
  size_t off = (key && poffset) ? *poffset : 0, pos, w = len;
  pos =
      dst ? kern_neon(dst, src, len, key, off, &w) : kern_neon_v(src, len, &w);
  if (WS_LIKELY(pos == len)) {
    if (pvalid) *pvalid = len;
    if (key && poffset) *poffset = (off + len) & 3u;
    return 0;
  }
  return run_general(dst, src, len, key, poffset, u, pvalid, pos, w);
}
static int validate_neon(const uint8_t *buf, size_t len) {
  ws_utf8 u = {0};
  if (go_neon(NULL, buf, len, NULL, NULL, &u, NULL)) return WS_ERR_UTF8;
  return u.state == 0 ? 0 : WS_ERR_UTF8;
}
static int feed_neon(ws_utf8 *u, const uint8_t *buf, size_t len) {
  return go_neon(NULL, buf, len, NULL, NULL, u, NULL);
}
static int unmask_neon(uint8_t *buf, size_t len, const uint8_t *key,
                       size_t *poffset, ws_utf8 *u, size_t *pvalid) {
  return go_neon(buf, buf, len, key, poffset, u, pvalid);
}
static int copy_neon(uint8_t *dst, const uint8_t *src, size_t len,
                     const uint8_t *key, size_t *poffset, ws_utf8 *u,
                     size_t *pvalid) {
  return go_neon(dst, src, len, key, poffset, u, pvalid);
}
#endif

/*
 * Everything in one sweep: dst = src XOR key (or a copy of src without a
 * key; nothing stored without dst), validated from u's state. See
 * ws_copy_unmask_utf8() for the contract.
 */
#ifndef WS_UTF8_COMPACT
/* The scalar validator for under 16 bytes. */
static WS_AINLINE size_t scan_short(uint32_t *pst, const uint8_t *p, size_t n) {
  return scan_dfa_short(pst, p, n);
}

/* Under one block (short chat messages, the ends of fragments): store,
 * then the scalar DFA, which looks at ASCII a word at a time. |u| is not
 * NULL and has not failed; len < 16. */
static WS_NOINLINE int run_small(uint8_t *dst, const uint8_t *src, size_t len,
                                 const uint8_t *key, size_t *poffset,
                                 ws_utf8 *u, size_t *pvalid) {
  size_t off = (key && poffset) ? *poffset : 0, v;
  uint32_t st = u->state;

  transform(dst, src, 0, len, key, off);
  if (key && poffset) *poffset = (off + len) & 3u;
  v = scan_short(&st, dst ? dst : src, len);
  u->state = st;
  if (pvalid) *pvalid = v;
  return v == len ? 0 : WS_ERR_UTF8;
}
#endif

static WS_AINLINE int run(uint8_t *dst, const uint8_t *src, size_t len,
                          const uint8_t *key, size_t *poffset, ws_utf8 *u,
                          size_t *pvalid) {
  if (!dst) key = NULL;
#ifndef WS_UTF8_COMPACT /* compact builds keep one path, for size */
  if (len < 16 && u && u->state != U_ERR) {
    return run_small(dst, src, len, key, poffset, u, pvalid);
  }
#endif
  return run_general(dst, src, len, key, poffset, u, pvalid, 0, 0);
}

/*
 * The twin to tail-call for an entry point, if any: |name|_avx2 or
 * |name|_sse4 when the CPU has them, |name|_neon on AArch64.
 */
#if defined(WS_UTF8_AVX2) && defined(WS_UTF8_SSE4)
#  define DISPATCH(cond, name, ...)                                            \
    do {                                                                       \
      if (cond) {                                                              \
        if (impl_ok(WS_UTF8_IMPL_AVX2)) return name##_avx2(__VA_ARGS__);       \
        if (impl_ok(WS_UTF8_IMPL_SSE4)) return name##_sse4(__VA_ARGS__);       \
      }                                                                        \
    } while (0)
#elif defined(WS_UTF8_SSE4)
#  define DISPATCH(cond, name, ...)                                            \
    do {                                                                       \
      if ((cond) && impl_ok(WS_UTF8_IMPL_SSE4))                                \
        return name##_sse4(__VA_ARGS__);                                       \
    } while (0)
#elif defined(WS_UTF8_NEON)
#  define DISPATCH(cond, name, ...)                                            \
    do {                                                                       \
      if (cond) return name##_neon(__VA_ARGS__);                               \
    } while (0)
#else
#  define DISPATCH(cond, name, ...) (void)0
#endif

/* ---- entry points ---------------------------------------------------- */

int ws_utf8_impl_available(int impl) { return impl_ok(impl); }

const char *ws_utf8_impl_name(int impl) {
  switch (impl) {
  case WS_UTF8_IMPL_BEST: return "best";
  case WS_UTF8_IMPL_REF: return "reference";
  case WS_UTF8_IMPL_DFA: return "dfa";
  case WS_UTF8_IMPL_COMPACT: return "compact";
  case WS_UTF8_IMPL_SSE4: return "sse4.1";
  case WS_UTF8_IMPL_AVX2: return "avx2";
  case WS_UTF8_IMPL_NEON: return "neon";
  default: return "?";
  }
}

size_t ws_utf8_scan_impl(ws_utf8 *u, const uint8_t *buf, size_t len, int impl) {
  size_t valid;
  if (!impl_ok(impl)) impl = WS_UTF8_IMPL_BEST;
  run_general_any(NULL, buf, len, NULL, NULL, u, &valid, impl);
  return valid;
}

int ws_copy_unmask_utf8_impl(uint8_t *dst, const uint8_t *src, size_t len,
                             const uint8_t key[4], size_t *poffset, ws_utf8 *u,
                             size_t *pvalid, int impl) {
  if (!impl_ok(impl)) impl = WS_UTF8_IMPL_BEST;
  if (!dst) key = NULL;
  return run_general_any(dst, src, len, key, poffset, u, pvalid, impl);
}

size_t ws_utf8_scan(ws_utf8 *u, const uint8_t *buf, size_t len) {
  size_t valid;
  run(NULL, buf, len, NULL, NULL, u, &valid);
  return valid;
}

/* What the entry points do when no twin takes the call: apart, so that
 * the entry points themselves need no stack frame before their tail
 * calls. */
static WS_NOINLINE int feed_rest(ws_utf8 *u, const uint8_t *buf, size_t len) {
#ifndef WS_UTF8_COMPACT
  if (len < 16 && u->state != U_ERR) {
    return scan_short(&u->state, buf, len) == len ? 0 : WS_ERR_UTF8;
  }
#endif
  return run(NULL, buf, len, NULL, NULL, u, NULL);
}

static WS_NOINLINE int validate_rest(const uint8_t *buf, size_t len) {
  ws_utf8 u;

  u.state = 0;
#ifndef WS_UTF8_COMPACT
  if (len < 16) {
    return scan_short(&u.state, buf, len) == len && u.state == 0 ? 0
                                                                 : WS_ERR_UTF8;
  }
#endif
  if (run(NULL, buf, len, NULL, NULL, &u, NULL) != 0) return WS_ERR_UTF8;
  return u.state == 0 ? 0 : WS_ERR_UTF8;
}

int ws_utf8_feed(ws_utf8 *u, const uint8_t *buf, size_t len) {
  DISPATCH(u->state == 0 && len >= 16, feed, u, buf, len);
  return feed_rest(u, buf, len);
}

int ws_utf8_finish(const ws_utf8 *u) { return u->state == 0 ? 0 : WS_ERR_UTF8; }

int ws_utf8_validate(const uint8_t *buf, size_t len) {
  DISPATCH(len >= 16, validate, buf, len);
  return validate_rest(buf, len);
}

int ws_unmask_utf8(uint8_t *buf, size_t len, const uint8_t key[4],
                   size_t *poffset, ws_utf8 *u, size_t *pvalid) {
  DISPATCH(key && poffset && u && u->state == 0 && len >= 16, unmask, buf, len,
           key, poffset, u, pvalid);
  /* Without a key nothing is stored: validation only. */
  return run(key ? buf : NULL, buf, len, key, poffset, u, pvalid);
}

int ws_copy_unmask_utf8(uint8_t *dst, const uint8_t *src, size_t len,
                        const uint8_t key[4], size_t *poffset, ws_utf8 *u,
                        size_t *pvalid) {
  DISPATCH(u && u->state == 0 && len >= 16, copy, dst, src, len,
           dst ? key : NULL, poffset, u, pvalid);
  return run(dst, src, len, key, poffset, u, pvalid);
}
