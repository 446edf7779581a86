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
 *   AArch64) that check a whole block at once: ws_utf8_simd.c.
 *
 * Whatever the implementation, the result does not depend on how the input
 * is split: a call starts from the state the previous one left.
 */
#include "ws_utf8_simd.h"

#include "ws_mask.h"

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

#if WS_HAS_REFERENCE
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

#endif

/* Compact states: the indexes of ctab.canon (0 between characters, 1
 * failed, then T1, T2, T3, E0, ED, F0, F4). */
enum { C_ACC, C_ERR, C_T1, C_T2, C_T3, C_E0, C_ED, C_F0, C_F4 };

/* The compact DFA's tables (see "compact DFA" below), in one object so
 * that its code reaches them all from one address (firmware size). */
static const struct {
  /* The canonical states in a fixed order (the compact states), and
   * below, the reference state for each. */
  uint8_t canon[9];
  /*
   * Byte classes for 80..FF, two 4-bit classes a byte (the even byte in
   * the low nibble): 1 80..8F, 2 90..9F, 3 A0..BF, 4 never valid (C0, C1,
   * F5..FF), 5 C2..DF, 6 E0, 7 E1..EC and EE..EF, 8 ED, 9 F0, 10 F1..F3,
   * 11 F4. Class 0 is ASCII, told apart without the table.
   */
  uint8_t cclass[64];
  /* lead[class]: the state after a lead byte */
  uint8_t lead[12];
  /* The class ranges each in-sequence state accepts, as bit masks over
   * classes 1..3 (80..8F, 90..9F, A0..BF), and the state after. */
  uint8_t ok[7];
  uint8_t then[7];
} ctab = {
    {U_ACC, U_ERR, U_T1, U_T2, U_T3, U_E0, U_ED, U_F0, U_F4},
    {
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, /* 80..8F */
        0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 90..9F */
        0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, /* A0..AF */
        0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, /* B0..BF */
        0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, /* C0..CF */
        0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, /* D0..DF */
        0x76, 0x77, 0x77, 0x77, 0x77, 0x77, 0x87, 0x77, /* E0..EF */
        0xA9, 0xAA, 0x4B, 0x44, 0x44, 0x44, 0x44, 0x44, /* F0..FF */
    },
    {C_ACC, C_ERR, C_ERR, C_ERR, C_ERR, C_T1, C_E0, C_T2, C_ED, C_F0, C_T3,
     C_F4},
    {7, 7, 7, 4, 3, 6, 1},
    {C_ACC, C_T1, C_T2, C_T1, C_T1, C_T2, C_T2},
};
#if WS_HAS_REFERENCE
/* clang-format off */
static const uint32_t seq_of[9] = {
    0,                  SEQ_FAILED,         SEQ(1, 0x80, 0xBF),
    SEQ(2, 0x80, 0xBF), SEQ(3, 0x80, 0xBF), SEQ(2, 0xA0, 0xBF),
    SEQ(2, 0x80, 0x9F), SEQ(3, 0x90, 0xBF), SEQ(3, 0x80, 0x8F)};
/* clang-format on */
#endif

/* The index of canonical state |s| in ctab.canon; 1 (failed) if
 * unknown. */
static unsigned canon_index(uint32_t s) {
  unsigned k;
  for (k = 0; k < 9 && ctab.canon[k] != s; k++)
    continue;
  return k < 9 ? k : 1;
}

#if WS_HAS_REFERENCE
/* Canonical state <-> reference state. */
static uint32_t canon_to_seq(uint32_t s) { return seq_of[canon_index(s)]; }

static uint32_t seq_to_canon(uint32_t s) {
  unsigned k;
  for (k = 0; k < 9 && seq_of[k] != s; k++)
    continue;
  return k < 9 ? ctab.canon[k] : U_ERR;
}

#endif

void ws_utf8_init(ws_utf8 *u) { u->state = 0; }

#if WS_HAS_REFERENCE
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
#endif

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

/* The class of byte |b| (0 for ASCII; ctab.cclass above 7F). */
static inline unsigned c_class(uint8_t b) {
  return b < 0x80 ? 0
                  : (unsigned)(ctab.cclass[(b - 0x80) >> 1] >> ((b & 1u) * 4)) &
                        15u;
}

/* The state after a byte of class |c| in sequence state |st| (C_T1 and
 * up). Classes 1..3 are continuation bytes; the state's mask says which
 * of them it accepts (RFC 3629 section 4: the narrow ranges after E0, ED,
 * F0, F4). */
static inline unsigned c_next(unsigned st, unsigned c) {
  return (c >= 1 && c <= 3 && (ctab.ok[st - 2] >> (c - 1) & 1u))
             ? ctab.then[st - 2]
             : C_ERR;
}

#if WS_SMALL_CODE
/* Validates |n| bytes from canonical state |*pst|; returns how many
 * precede the first invalid one (*pst is then U_ERR). Size builds take a
 * byte at a time with one class lookup: ASCII is class 0, and ctab.lead[0]
 * keeps the state between characters (no four-byte ASCII skip, which
 * only buys speed). */
static size_t scan_compact(uint32_t *pst, const uint8_t *p, size_t n) {
  unsigned st = canon_index(*pst);
  size_t i = 0;

  if (st == C_ERR) return 0;
  while (i < n) {
    unsigned c = c_class(p[i]);
    st = st == C_ACC ? ctab.lead[c] : c_next(st, c);
    if (st == C_ERR) break;
    i++;
  }
  *pst = ctab.canon[st];
  return i;
}
#else
/* Validates |n| bytes from canonical state |*pst|; returns how many
 * precede the first invalid one (*pst is then U_ERR). */
static size_t scan_compact(uint32_t *pst, const uint8_t *p, size_t n) {
  unsigned st = canon_index(*pst);
  size_t i = 0;

  if (st == C_ERR) return 0;
  while (i < n) {
    uint8_t b = p[i];
    if (st == C_ACC) {
      if (b < 0x80) {
        i++;
        /* Skip ASCII four bytes at a time between characters. */
        while (n - i >= 4 && ascii_upto8(p + i, 4))
          i += 4;
        continue;
      }
      st = ctab.lead[c_class(b)];
    } else {
      st = c_next(st, c_class(b));
    }
    if (st == C_ERR) break;
    i++;
  }
  *pst = ctab.canon[st];
  return i;
}
#endif /* WS_SMALL_CODE */

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

#ifndef WS_UTF8_COMPACT /* (compact builds call scan_compact() by name) */
static inline size_t scan_default(uint32_t *pst, const uint8_t *p, size_t n) {
  return scan_dfa(pst, p, n);
}
#endif

#if WS_HAS_REFERENCE || defined(WS_UTF8_VECTOR)
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
#endif

#ifdef WS_UTF8_COMPACT
/* Compact builds have two scalar validators: the compact DFA, and the
 * reference for tests and benchmarks, passed by address so that firmware
 * that links only the entry points does not link the reference too. */
typedef size_t scan_fn(uint32_t *pst, const uint8_t *p, size_t n);

#  if WS_HAS_REFERENCE
static size_t scan_ref(uint32_t *pst, const uint8_t *p, size_t n) {
  ws_utf8 t;
  size_t v;
  t.state = *pst;
  v = ws_utf8_scan_scalar(&t, p, n);
  *pst = t.state;
  return v;
}

static scan_fn *scanner(int impl) {
  return impl == WS_UTF8_IMPL_REF ? scan_ref : scan_compact;
}
#  endif
#else
/* The scalar validators by implementation, for the parts that are not
 * vector blocks. */
static size_t scan_with(int impl, uint32_t *pst, const uint8_t *p, size_t n) {
#  if WS_HAS_REFERENCE
  if (impl == WS_UTF8_IMPL_REF) {
    ws_utf8 t;
    size_t v;
    t.state = *pst;
    v = ws_utf8_scan_scalar(&t, p, n);
    *pst = t.state;
    return v;
  }
#  endif
  if (impl == WS_UTF8_IMPL_COMPACT) return scan_compact(pst, p, n);
  return scan_default(pst, p, n);
}

#endif

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
      return (dst ? ws_utf8_short_avx2(dst, src, n, key, off)
                  : ws_utf8_short_avx2_v(src, n))
                 ? n
                 : 0;
    }
    return dst ? ws_utf8_kern_avx2(dst, src, n, key, off, pw)
               : ws_utf8_kern_avx2_v(src, n, pw);
  }
#  endif
#  ifdef WS_UTF8_SSE4
  if (n >= 16 && impl != WS_UTF8_IMPL_NEON && impl_ok(WS_UTF8_IMPL_SSE4)) {
    if (n <= 64) {
      *pw = n;
      return (dst ? ws_utf8_short_sse4(dst, src, n, key, off)
                  : ws_utf8_short_sse4_v(src, n))
                 ? n
                 : 0;
    }
    return dst ? ws_utf8_kern_sse4(dst, src, n, key, off, pw)
               : ws_utf8_kern_sse4_v(src, n, pw);
  }
#  endif
#  ifdef WS_UTF8_NEON
  if (n >= 16) return ws_utf8_kern_neon(dst, src, n, key, off, pw);
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
#ifdef WS_UTF8_COMPACT
/* Compact builds: everything stored first (one masked copy), then
 * validated by |scan|: two passes, the least code. The contracts allow
 * it: on failure at least the valid bytes and one more are stored, and
 * the offset says how many. Every entry point ends here. */
static WS_NOINLINE void store_compact(uint8_t *dst, const uint8_t *src,
                                      size_t n, const uint8_t *key,
                                      size_t off) {
  transform(dst, src, 0, n, key, off);
}

static WS_NOINLINE int run_compact(uint8_t *dst, const uint8_t *src, size_t len,
                                   const uint8_t *key, size_t *poffset,
                                   ws_utf8 *u, size_t *pvalid, scan_fn *scan) {
  size_t off, valid = 0;
  int rv = WS_ERR_UTF8;

  if (!dst) key = NULL;
  off = (key && poffset) ? *poffset : 0;
  if (u && u->state == U_ERR) {
    len = 0; /* nothing stored */
  } else {
    store_compact(dst, src, len, key, off);
    valid = len;
    if (u && len) /* (the bytes are NULL when |len| is 0) */
      valid = scan(&u->state, dst ? dst : src, len);
    if (valid == len) rv = 0;
  }
  if (pvalid) *pvalid = valid;
  if (key && poffset) *poffset = (off + len) & 3u;
  return rv;
}
#else
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
#  ifdef WS_UTF8_VECTOR
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
#  endif
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
 * and benchmarks): apart, so that the entry points do not link the
 * reference implementation too. */
WS_NOINLINE int ws_utf8_run_general(uint8_t *dst, const uint8_t *src,
                                    size_t len, const uint8_t *key,
                                    size_t *poffset, ws_utf8 *u, size_t *pvalid,
                                    size_t i, size_t w) {
  return run_general_impl(dst, src, len, key, poffset, u, pvalid,
                          WS_UTF8_IMPL_BEST, i, w);
}

#  if WS_HAS_REFERENCE
static WS_NOINLINE int run_general_any(uint8_t *dst, const uint8_t *src,
                                       size_t len, const uint8_t *key,
                                       size_t *poffset, ws_utf8 *u,
                                       size_t *pvalid, int impl) {
  return run_general_impl(dst, src, len, key, poffset, u, pvalid, impl, 0, 0);
}
#  endif
#endif /* !WS_UTF8_COMPACT */

/*
 * The common case: a call that starts between characters with at least
 * one vector block. Each entry point has a twin per instruction set with
 * the same parameters, so that the checks in the entry point end in a
 * tail call, and the twin's short path (16..64 bytes) calls nothing but
 * by tail calls either: no stack frame. Twins need u->state == 0 (and
 * |u|, |key|, |poffset| where the entry point allows NULL but the twin
 * does not), and len >= 16.
 */

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
#ifdef WS_UTF8_COMPACT /* compact builds keep one path, for size */
  return run_compact(dst, src, len, key, poffset, u, pvalid, scan_compact);
#else
  if (!dst) key = NULL;
  if (len < 16 && u && u->state != U_ERR) {
    return run_small(dst, src, len, key, poffset, u, pvalid);
  }
  return ws_utf8_run_general(dst, src, len, key, poffset, u, pvalid, 0, 0);
#endif
}

/*
 * The twin to tail-call for an entry point, if any: |name|_avx2 or
 * |name|_sse4 when the CPU has them, |name|_neon on AArch64.
 */
#if defined(WS_UTF8_AVX2) && defined(WS_UTF8_SSE4)
#  define DISPATCH(cond, name, ...)                                            \
    do {                                                                       \
      if (cond) {                                                              \
        if (impl_ok(WS_UTF8_IMPL_AVX2))                                        \
          return ws_utf8_##name##_avx2(__VA_ARGS__);                           \
        if (impl_ok(WS_UTF8_IMPL_SSE4))                                        \
          return ws_utf8_##name##_sse4(__VA_ARGS__);                           \
      }                                                                        \
    } while (0)
#elif defined(WS_UTF8_SSE4)
#  define DISPATCH(cond, name, ...)                                            \
    do {                                                                       \
      if ((cond) && impl_ok(WS_UTF8_IMPL_SSE4))                                \
        return ws_utf8_##name##_sse4(__VA_ARGS__);                             \
    } while (0)
#elif defined(WS_UTF8_NEON)
#  define DISPATCH(cond, name, ...)                                            \
    do {                                                                       \
      if (cond) return ws_utf8_##name##_neon(__VA_ARGS__);                     \
    } while (0)
#else
#  define DISPATCH(cond, name, ...) (void)0
#endif

/* ---- entry points ---------------------------------------------------- */

#if WS_HAS_REFERENCE
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
#  ifdef WS_UTF8_COMPACT
  run_compact(NULL, buf, len, NULL, NULL, u, &valid, scanner(impl));
#  else
  if (!impl_ok(impl)) impl = WS_UTF8_IMPL_BEST;
  run_general_any(NULL, buf, len, NULL, NULL, u, &valid, impl);
#  endif
  return valid;
}

int ws_copy_unmask_utf8_impl(uint8_t *dst, const uint8_t *src, size_t len,
                             const uint8_t key[4], size_t *poffset, ws_utf8 *u,
                             size_t *pvalid, int impl) {
#  ifdef WS_UTF8_COMPACT
  return run_compact(dst, src, len, key, poffset, u, pvalid, scanner(impl));
#  else
  if (!impl_ok(impl)) impl = WS_UTF8_IMPL_BEST;
  if (!dst) key = NULL;
  return run_general_any(dst, src, len, key, poffset, u, pvalid, impl);
#  endif
}
#endif

/* What the entry points do when no twin takes the call: apart, so that
 * the entry points themselves need no stack frame before their tail
 * calls (without twins, in line: one function, not two). */
#if defined(WS_UTF8_AVX2) || defined(WS_UTF8_SSE4) || defined(WS_UTF8_NEON)
#  define REST_NOINLINE WS_NOINLINE
#else
#  define REST_NOINLINE
#endif

static REST_NOINLINE int feed_rest(ws_utf8 *u, const uint8_t *buf, size_t len) {
#ifndef WS_UTF8_COMPACT
  if (len < 16 && u->state != U_ERR) {
    return scan_short(&u->state, buf, len) == len ? 0 : WS_ERR_UTF8;
  }
#endif
  return run(NULL, buf, len, NULL, NULL, u, NULL);
}

static REST_NOINLINE int validate_rest(const uint8_t *buf, size_t len) {
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

/* ws_utf8_scan() and ws_unmask_utf8() serve the connection's fast paths
 * (ws_conn.c's whole-frame path, ws_conn_rx.c's stream delivery), which
 * size builds leave out, and the tests, fuzzers and benchmarks, which run
 * hosted: a freestanding size build (firmware) has no caller for them. */
#if WS_HAS_REFERENCE || !WS_SMALL_CODE
#  define WS_UTF8_FAST_ENTRIES 1
#else
#  define WS_UTF8_FAST_ENTRIES 0
#endif

#if WS_UTF8_FAST_ENTRIES && defined(WS_UTF8_VECTOR)
static WS_NOINLINE size_t scan_rest(ws_utf8 *u, const uint8_t *buf,
                                    size_t len) {
  size_t valid;
  run(NULL, buf, len, NULL, NULL, u, &valid);
  return valid;
}

size_t ws_utf8_scan(ws_utf8 *u, const uint8_t *buf, size_t len) {
  DISPATCH(u->state == 0 && len >= 16, scan, u, buf, len);
  return scan_rest(u, buf, len);
}
#elif WS_UTF8_FAST_ENTRIES /* no twins to call: no second function */
size_t ws_utf8_scan(ws_utf8 *u, const uint8_t *buf, size_t len) {
  size_t valid;
  run(NULL, buf, len, NULL, NULL, u, &valid);
  return valid;
}
#endif

int ws_utf8_feed(ws_utf8 *u, const uint8_t *buf, size_t len) {
  DISPATCH(u->state == 0 && len >= 16, feed, u, buf, len);
  return feed_rest(u, buf, len);
}

int ws_utf8_finish(const ws_utf8 *u) { return u->state == 0 ? 0 : WS_ERR_UTF8; }

int ws_utf8_validate(const uint8_t *buf, size_t len) {
  DISPATCH(len >= 16, validate, buf, len);
  return validate_rest(buf, len);
}

#if WS_UTF8_FAST_ENTRIES
int ws_unmask_utf8(uint8_t *buf, size_t len, const uint8_t key[4],
                   size_t *poffset, ws_utf8 *u, size_t *pvalid) {
  DISPATCH(key && poffset && u && u->state == 0 && len >= 16, unmask, buf, len,
           key, poffset, u, pvalid);
  /* Without a key nothing is stored: validation only. */
  return run(key ? buf : NULL, buf, len, key, poffset, u, pvalid);
}
#endif

int ws_copy_unmask_utf8(uint8_t *dst, const uint8_t *src, size_t len,
                        const uint8_t key[4], size_t *poffset, ws_utf8 *u,
                        size_t *pvalid) {
  DISPATCH(u && u->state == 0 && len >= 16, copy, dst, src, len,
           dst ? key : NULL, poffset, u, pvalid);
  return run(dst, src, len, key, poffset, u, pvalid);
}
