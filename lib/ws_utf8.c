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
 * Two independent implementations of that table:
 *
 * - the reference (ws_utf8_scan_scalar) steps byte by byte over an
 *   explicit (bytes owed, lowest, highest) triple, straight from the table;
 * - the fast path (ws_utf8_scan) runs a branch-free DFA 16 bytes at a time
 *   and skips 16-byte blocks of ASCII between characters (SSE2 movemask,
 *   or two 64-bit words). Its cost per byte does not depend on the mix of
 *   scripts, so non-ASCII text runs without branch mispredictions. When a
 *   block ends in the error state it is re-stepped to find the exact byte.
 */
#include "ws_utf8.h"

#include "ws_mask.h"

#if defined(__SSE2__) && !defined(WS_NO_SIMD)
#  include <emmintrin.h>
#  define WS_UTF8_SSE2 1
#endif

/* ---- reference ------------------------------------------------------- */

/* A reference state: bytes owed (bits 0-1), lowest and highest value of
 * the next byte (bits 8-15, 16-23); 0 between characters. */
#define SEQ(n, lo, hi) \
  ((uint32_t)(n) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)
#define SEQ_FAILED 0x80000000u
#define X 0u
#define S2 SEQ(1, 0x80, 0xBF)
#define S3 SEQ(2, 0x80, 0xBF)
#define E0 SEQ(2, 0xA0, 0xBF)
#define ED SEQ(2, 0x80, 0x9F)
#define S4 SEQ(3, 0x80, 0xBF)
#define F0 SEQ(3, 0x90, 0xBF)
#define F4 SEQ(3, 0x80, 0x8F)

/* State after a lead byte C0..FF, indexed by byte - 0xC0; 0 if invalid. */
static const uint32_t lead_state[64] = {
    X,  X,  S2, S2, S2, S2, S2, S2, /* C0..C7: C0, C1 overlong */
    S2, S2, S2, S2, S2, S2, S2, S2, /* C8..CF */
    S2, S2, S2, S2, S2, S2, S2, S2, /* D0..D7 */
    S2, S2, S2, S2, S2, S2, S2, S2, /* D8..DF */
    E0, S3, S3, S3, S3, S3, S3, S3, /* E0..E7 */
    S3, S3, S3, S3, S3, ED, S3, S3, /* E8..EF */
    F0, S4, S4, S4, F4, X,  X,  X,  /* F0..F7: F5.. above U+10FFFF */
    X,  X,  X,  X,  X,  X,  X,  X,  /* F8..FF: 5/6-byte forms, FE, FF */
};

#undef X
#undef S2
#undef S3
#undef E0
#undef ED
#undef S4
#undef F0
#undef F4

static inline uint32_t lead(uint8_t b) {
  return b >= 0xC0 ? lead_state[b - 0xC0] : 0;
}

/* One byte through the reference; SEQ_FAILED if it is invalid. */
static inline uint32_t step(uint32_t st, uint8_t b) {
  uint32_t lo, hi, need;

  if (st == 0) {
    uint32_t t;

    if (b < 0x80) {
      return 0;
    }
    t = lead(b);
    return t ? t : SEQ_FAILED;
  }
  lo = (st >> 8) & 0xFFu;
  hi = (st >> 16) & 0xFFu;
  if (b < lo || b > hi) {
    return SEQ_FAILED;
  }
  need = (st & 3u) - 1;
  return need ? SEQ(need, 0x80, 0xBF) : 0;
}

/* ---- fast path ------------------------------------------------------- */

/*
 * The fast path: a branch-free DFA. Each DFA state is a shift count (a
 * multiple of 6); dfa[b] packs, for every state s, the next state after
 * byte b into bits s..s+5, so one step is "st = dfa[b] >> st". The load
 * does not depend on the state, leaving a one-shift dependency chain per
 * byte whatever the mix of scripts. ERR is 0, so every transition not
 * listed below fails, and ERR is absorbing.
 */
#define D_ERR 0u
#define D_ACC 6u
#define D_T1 12u  /* one continuation byte owed, 80..BF */
#define D_T2 18u  /* two owed, 80..BF */
#define D_T3 24u  /* three owed, 80..BF */
#define D_E0 30u  /* after E0: A0..BF, then one more */
#define D_ED 36u  /* after ED: 80..9F, then one more */
#define D_F0 42u  /* after F0: 90..BF, then two more */
#define D_F4 48u  /* after F4: 80..8F, then two more */

#define TR(from, to) ((uint64_t)(to) << (from))
#define C_ASC TR(D_ACC, D_ACC)
#define C_CONT TR(D_T1, D_ACC) | TR(D_T2, D_T1) | TR(D_T3, D_T2)
#define C_80 (C_CONT | TR(D_ED, D_T1) | TR(D_F4, D_T2))
#define C_90 (C_CONT | TR(D_ED, D_T1) | TR(D_F0, D_T2))
#define C_A0 (C_CONT | TR(D_E0, D_T1) | TR(D_F0, D_T2))
#define C_BAD 0u
#define C_L2 TR(D_ACC, D_T1)
#define C_E0 TR(D_ACC, D_E0)
#define C_L3 TR(D_ACC, D_T2)
#define C_ED TR(D_ACC, D_ED)
#define C_F0 TR(D_ACC, D_F0)
#define C_L4 TR(D_ACC, D_T3)
#define C_F4 TR(D_ACC, D_F4)
#define R2(x) x, x
#define R4(x) R2(x), R2(x)
#define R8(x) R4(x), R4(x)
#define R16(x) R8(x), R8(x)
#define R32(x) R16(x), R16(x)
#define R64(x) R32(x), R32(x)

static const uint64_t dfa[256] = {
    R64(C_ASC), R64(C_ASC),                             /* 00..7F */
    R16(C_80),                                          /* 80..8F */
    R16(C_90),                                          /* 90..9F */
    R32(C_A0),                                          /* A0..BF */
    R2(C_BAD),                                          /* C0..C1 */
    R16(C_L2), R8(C_L2), R4(C_L2), R2(C_L2),            /* C2..DF */
    C_E0, R8(C_L3), R4(C_L3), C_ED, R2(C_L3),           /* E0..EF */
    C_F0, C_L4, C_L4, C_L4, C_F4,                       /* F0..F4 */
    R8(C_BAD), R2(C_BAD), C_BAD,                        /* F5..FF */
};

/* ws_utf8.state holds the DFA state XOR D_ACC, so that zero is "between
 * characters" and WS_UTF8_FAILED (== D_ERR ^ D_ACC) is ERR. */
#define TO_DFA(s) ((uint64_t)(s) ^ D_ACC)
#define FROM_DFA(d) ((uint32_t)((d) ^ D_ACC))

/* DFA state <-> reference state, for the reference's entry and exit. */
static uint32_t dfa_to_seq(uint64_t d) {
  switch (d) {
  case D_ACC: return 0;
  case D_T1: return SEQ(1, 0x80, 0xBF);
  case D_T2: return SEQ(2, 0x80, 0xBF);
  case D_T3: return SEQ(3, 0x80, 0xBF);
  case D_E0: return SEQ(2, 0xA0, 0xBF);
  case D_ED: return SEQ(2, 0x80, 0x9F);
  case D_F0: return SEQ(3, 0x90, 0xBF);
  case D_F4: return SEQ(3, 0x80, 0x8F);
  default: return SEQ_FAILED;
  }
}

static uint64_t seq_to_dfa(uint32_t s) {
  switch (s) {
  case 0: return D_ACC;
  case SEQ(1, 0x80, 0xBF): return D_T1;
  case SEQ(2, 0x80, 0xBF): return D_T2;
  case SEQ(3, 0x80, 0xBF): return D_T3;
  case SEQ(2, 0xA0, 0xBF): return D_E0;
  case SEQ(2, 0x80, 0x9F): return D_ED;
  case SEQ(3, 0x90, 0xBF): return D_F0;
  case SEQ(3, 0x80, 0x8F): return D_F4;
  default: return D_ERR;
  }
}

void ws_utf8_init(ws_utf8 *u) { u->state = 0; }

size_t ws_utf8_scan_scalar(ws_utf8 *u, const uint8_t *buf, size_t len) {
  uint32_t st = dfa_to_seq(TO_DFA(u->state));
  size_t i;

  if (st == SEQ_FAILED) {
    return 0;
  }
  for (i = 0; i < len; i++) {
    st = step(st, buf[i]);
    if (st == SEQ_FAILED) {
      break;
    }
  }
  u->state = FROM_DFA(seq_to_dfa(st));
  return i;
}

int ws_utf8_feed_scalar(ws_utf8 *u, const uint8_t *buf, size_t len) {
  if (u->state == WS_UTF8_FAILED) {
    return WS_ERR_UTF8;
  }
  return ws_utf8_scan_scalar(u, buf, len) == len ? 0 : WS_ERR_UTF8;
}

#define STEP(st, b) ((st) = dfa[(b)] >> ((st) & 63u))

/* The index of the first byte of p[0..n) that takes |st| to ERR. */
static size_t locate_error(uint64_t st, const uint8_t *p, size_t n) {
  size_t k;
  for (k = 0; k < n; k++) {
    STEP(st, p[k]);
    if ((st & 63u) == D_ERR) {
      break;
    }
  }
  return k;
}

/* 1 if the 16 bytes at |p| are all ASCII. */
static inline int ascii16(const uint8_t *p) {
#ifdef WS_UTF8_SSE2
  return _mm_movemask_epi8(
             _mm_loadu_si128((const __m128i *)(const void *)p)) == 0;
#else
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + 8, 8);
  return ((a | b) & 0x8080808080808080ull) == 0;
#endif
}

size_t ws_utf8_scan(ws_utf8 *u, const uint8_t *buf, size_t len) {
  uint64_t st = TO_DFA(u->state);
  size_t i = 0;

  if (st == D_ERR) {
    return 0;
  }
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
    for (k = i; k < len; k++) {
      STEP(st, buf[k]);
    }
    st &= 63u;
    if (st == D_ERR) {
      i += locate_error(s0, buf + i, len - i);
      goto fail;
    }
  }
  u->state = FROM_DFA(st);
  return len;

fail:
  u->state = WS_UTF8_FAILED;
  return i;
}

int ws_utf8_feed(ws_utf8 *u, const uint8_t *buf, size_t len) {
  if (u->state == WS_UTF8_FAILED) {
    return WS_ERR_UTF8;
  }
  return ws_utf8_scan(u, buf, len) == len ? 0 : WS_ERR_UTF8;
}

int ws_utf8_finish(const ws_utf8 *u) {
  return u->state == 0 ? 0 : WS_ERR_UTF8;
}

int ws_utf8_validate(const uint8_t *buf, size_t len) {
  ws_utf8 u;

  ws_utf8_init(&u);
  if (ws_utf8_feed(&u, buf, len) != 0) {
    return WS_ERR_UTF8;
  }
  return ws_utf8_finish(&u);
}

/* Bytes unmasked ahead of validation: small enough to stay in L1. */
#define UNMASK_BLOCK 4096

int ws_unmask_utf8(uint8_t *buf, size_t len, const uint8_t key[4],
                   size_t *poffset, ws_utf8 *u, size_t *pvalid) {
  size_t off = (key && poffset) ? *poffset : 0;
  size_t done = 0;
  int rv = 0;

  if (u == NULL) {
    if (key) {
      off = ws_mask(buf, len, key, off);
    }
    done = len;
  } else if (u->state == WS_UTF8_FAILED) {
    rv = WS_ERR_UTF8;
  } else {
    while (done < len) {
      size_t n = WS_MIN(len - done, (size_t)UNMASK_BLOCK);
      size_t v;

      if (key) {
        off = ws_mask(buf + done, n, key, off);
      }
      v = ws_utf8_scan(u, buf + done, n);
      if (v != n) {
        if (pvalid) {
          *pvalid = done + v;
        }
        if (key && poffset) {
          *poffset = off;
        }
        return WS_ERR_UTF8;
      }
      done += n;
    }
  }
  if (pvalid) {
    *pvalid = done;
  }
  if (key && poffset) {
    *poffset = off;
  }
  return rv;
}
