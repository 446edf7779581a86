/*
 * Streaming raw inflate (RFC 1951) into caller buffers.
 *
 * Decoding tables: one 32-bit entry per index, indexed by the next bits
 * of the stream (LSB first). A root table of LIT_ROOT (DIST_ROOT) bits is
 * followed by subtables for codes longer than the root; a root entry for
 * such a prefix links to its subtable (ws_inflate_table.c builds them).
 * Entry layout:
 *
 *   bits  0..7   bits to drop: the code length (in a subtable, the part
 *                past the root; in a link, the root length)
 *   bits  8..11  extra bits of a length or distance; in a link, the
 *                subtable's index bits
 *   bits 12..15  kind: E_LIT, E_SUB, E_EOB, E_BAD, or 0 for a
 *                length/distance base (or a code-length symbol)
 *   bits 16..31  literal byte, length or distance base, symbol, or the
 *                subtable's offset
 *
 * Matches are copied from the output of the current call when they
 * reach back no further than it, otherwise from the circular window,
 * which is brought up to date with the call's output before returning.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_inflate_table.h"

/* the whole file: build switches (README "Firmware") */
#if !defined(WS_NO_DEFLATE)

/* The fast loop needs this much input (one 8-byte refill). */
#define FAST_IN 8u
#define FAST_SLACK 8u /* 8-byte match copies overrun by up to 7 */

enum {
  M_HEADER,
  M_STORED_LEN,
  M_STORED,
  M_DYN_COUNTS,
  M_DYN_CLEN,
  M_DYN_LENS,
  M_CODES,
  M_DIST,  /* WS_SMALL_CODE: a length decoded (in |left|), its distance next */
  M_DISTX, /* WS_SMALL_CODE: and the distance code (in |dist_pending|), its
              extra bits next */
  M_COPY,
  M_DONE,
  M_ERROR
};

/* RFC 1951 3.2.7: order of the code length code lengths */
static const uint8_t clen_order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                       11, 4,  12, 3, 13, 2, 14, 1, 15};

size_t ws_inflate_memsize(unsigned window_bits) {
  if (window_bits < WS_DEFLATE_MIN_WINDOW_BITS ||
      window_bits > WS_DEFLATE_MAX_WINDOW_BITS)
    return 0;
  return (LIT_CAP + DIST_CAP + CLEN_CAP) * sizeof(uint32_t) +
         LENS_MAX * sizeof(uint16_t) + LENS_MAX + ((size_t)1 << window_bits);
}

int ws_inflate_init(ws_inflater *z, const ws_mem *mem, unsigned window_bits) {
  ws_mem m;
  size_t sz = ws_inflate_memsize(window_bits);
  memset(z, 0, sizeof(*z));
  if (sz == 0 || ws_mem_resolve(&m, mem) != 0) return WS_ERR_INVALID_ARGUMENT;
  uint8_t *p = ws_malloc(&m, sz);
  if (!p) return WS_ERR_NOMEM;
  z->mem = m;
  z->block = p;
  /* The window comes first: 8-byte copies out of it may read up to 7
   * bytes past its end, into the tables (2^window_bits keeps them
   * aligned). */
  z->win = p;
  z->lit = (uint32_t *)(void *)(p + ((size_t)1 << window_bits));
  z->dist = z->lit + LIT_CAP;
  z->clen = z->dist + DIST_CAP;
  z->sorted = (uint16_t *)(void *)(z->clen + CLEN_CAP);
  z->lens = (uint8_t *)(z->sorted + LENS_MAX);
  z->wsize = (uint32_t)1 << window_bits;
  /* The memset above left the state ws_inflate_reset() sets. */
  _Static_assert(M_HEADER == 0, "a cleared inflater reads a block header");
  return 0;
}

void ws_inflate_reset(ws_inflater *z) {
  z->wpos = 0;
  z->whave = 0;
  z->bits = 0;
  z->nbits = 0;
  z->mode = M_HEADER;
  z->last = 0;
  z->err = 0;
  z->left = 0;
  z->dist_pending = 0;
}

void ws_inflate_free(ws_inflater *z) {
  if (!z || !z->block) return;
  ws_free(&z->mem, z->block);
  z->block = NULL;
}

int ws_inflate_end_message(ws_inflater *z) {
  switch (z->mode) {
  case M_DONE:
    z->last = 0;
    z->mode = M_HEADER;
    z->bits = 0;
    z->nbits = 0;
    return 0;
  case M_HEADER:
    /* Any bits left are padding before the next message's bytes. */
    z->bits = 0;
    z->nbits = 0;
    return 0;
  case M_COPY: return WS_ERR_WOULDBLOCK;
  case M_ERROR: return z->err;
  default:
    z->mode = M_ERROR;
    z->err = WS_ERR_DATA;
    return WS_ERR_DATA;
  }
}

/* Appends the |n| bytes just produced at |p| to the window. */
static void update_window(ws_inflater *z, const uint8_t *p, size_t n) {
  uint32_t ws = z->wsize;
  if (n == 0) return; /* |p| may be NULL then */
  if (n >= ws) {
    memcpy(z->win, p + n - ws, ws);
    z->wpos = 0;
    z->whave = ws;
    return;
  }
  uint32_t k = (uint32_t)n;
  uint32_t first = ws - z->wpos;
  if (first > k) first = k;
  memcpy(z->win + z->wpos, p, first);
  if (k > first) memcpy(z->win, p + first, k - first);
  z->wpos = (z->wpos + k) & (ws - 1);
  z->whave = z->whave + k > ws ? ws : z->whave + k;
}

/* The bit buffer. Size builds (WS_SMALL_CODE) keep it in 32 bits, which
 * a 32-bit core shifts without 64-bit sequences or library helpers: it is
 * refilled a byte at a time while it holds at most 24 bits, so a refill
 * leaves at least 25 when there is input, and a match is decoded in steps
 * that need no more: the length code and its extra bits (15 + 5), the
 * distance code (15, then M_DISTX), its extra bits (13). (A distance code
 * and its extra bits, 28 bits, could wait for bits that a refill cannot
 * add and stall.) The default build refills 8 bytes at a time into 64
 * bits and decodes a whole match in one step (15 + 5 + 15 + 13 <= 48). */
#if WS_SMALL_CODE
typedef uint32_t inf_bits;
#  define REFILL_MAX 24u /* refill while nb <= this */
#else
typedef uint64_t inf_bits;
#  define REFILL_MAX 48u
#endif

/* |b| without the bits at and above |nb| (which a refill may have read
 * ahead, or an error given back); |nb| is at most 32 (63 in 64 bits). */
static inline inf_bits keep_bits(inf_bits b, unsigned nb) {
#if WS_SMALL_CODE
  return nb < 32 ? b & (((inf_bits)1 << nb) - 1) : b;
#else
  return b & (((inf_bits)1 << nb) - 1);
#endif
}

#if !WS_SMALL_CODE /* (the 8-byte refills and copies) */
static inline uint64_t load64le(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* Copies |n| > 0 bytes 8 at a time: up to 7 more are read and written.
 * The ranges must not overlap. */
static inline void copy8(uint8_t *dst, const uint8_t *src, uint32_t n) {
  uint8_t *const end = dst + n;
  do {
    memcpy(dst, src, 8);
    dst += 8;
    src += 8;
  } while (dst < end);
}
#endif /* !WS_SMALL_CODE */

/* Looks up a code with the |nb| bits available: the entry with its total
 * length in bits 0..7, or 0 when more bits are needed. */
static inline uint32_t peek_code(const uint32_t *t, unsigned root, inf_bits b,
                                 unsigned nb) {
  uint32_t e = t[b & ((1u << root) - 1)];
  if (e & E_SUB) {
    if (nb < root) return 0;
    unsigned sb = (e >> 8) & 15u;
    uint32_t e2 = t[(e >> 16) + ((b >> root) & ((1u << sb) - 1))];
    unsigned total = root + (e2 & 0xffu);
    if (total > nb) return 0;
    return (e2 & ~0xffu) | total;
  }
  if ((e & 0xffu) > nb) return 0;
  return e;
}

/* Copies a match of |len| bytes at |dist| (already validated) to
 * |out|: first what is still in the window, then from the output of the
 * current call (|out0| onwards), bytewise as the two may overlap. */
static uint8_t *copy_slow(const ws_inflater *z, const uint8_t *out0,
                          uint8_t *out, uint32_t len, uint32_t dist) {
  size_t made = (size_t)(out - out0);
  if (dist > made) {
    uint32_t back = dist - (uint32_t)made, wsize = z->wsize;
    uint32_t n = back < len ? back : len;
    uint32_t start = (z->wpos - back) & (wsize - 1);
    uint32_t first = wsize - start;
    if (first > n) first = n;
    memcpy(out, z->win + start, first);
    if (n > first) memcpy(out + first, z->win, n - first);
    out += n;
    len -= n;
  }
  const uint8_t *src = out - dist;
  while (len--)
    *out++ = *src++;
  return out;
}

/*
 * ws_inflate() runs one function per state over a cursor of the call's
 * input, output and bit buffer. Each state function works on local
 * copies of the cursor (registers in its loops) and writes them back on
 * leaving; it returns STEP_NEXT to run the state it left in z->mode,
 * STEP_STOP when it needs more input or room in |out|, or an error.
 */
typedef struct inf_io {
  const uint8_t *in, *ip, *iend; /* the call's input, next byte, end */
  uint8_t *out, *op, *oend;      /* the call's output, next byte, end */
  inf_bits b;                    /* bit buffer, LSB first */
  unsigned nb;                   /* bits in |b| */
} inf_io;

enum { STEP_STOP = 0, STEP_NEXT = 1 };

/* The cursor as locals, and back; a state function's |rc| starts as
 * STEP_STOP, and its label |out| writes the cursor back. */
#define IO_LOAD()                                                              \
  const uint8_t *ip = s->ip, *const iend = s->iend;                            \
  inf_bits b = s->b;                                                           \
  unsigned nb = s->nb;                                                         \
  int rc = STEP_STOP
#define IO_SAVE()                                                              \
  do {                                                                         \
    s->ip = ip;                                                                \
    s->b = b;                                                                  \
    s->nb = nb;                                                                \
  } while (0)
#define NEED(n)                                                                \
  do {                                                                         \
    while (nb < (n)) {                                                         \
      if (ip == iend) goto out;                                                \
      b |= (inf_bits)*ip++ << nb;                                              \
      nb += 8;                                                                 \
    }                                                                          \
  } while (0)
#define DROP(n)                                                                \
  do {                                                                         \
    b >>= (n);                                                                 \
    nb -= (n);                                                                 \
  } while (0)
/* On an error, whole bytes of this call still in the bit buffer (read
 * ahead by a refill) are given back: the input taken ends where the
 * bad data does. */
#define FAIL()                                                                 \
  do {                                                                         \
    size_t back_ = WS_MIN((size_t)(nb >> 3), (size_t)(ip - s->in));            \
    if (back_) ip -= back_; /* (not on a NULL input of length 0) */            \
    nb -= 8 * (unsigned)back_;                                                 \
    z->mode = M_ERROR;                                                         \
    z->err = WS_ERR_DATA;                                                      \
    rc = WS_ERR_DATA;                                                          \
    goto out;                                                                  \
  } while (0)

/* ---- block header and stored blocks ------------------------------------- */

/* The literal/length and distance tables of a block from its |nlit| and
 * |ndist| code lengths at |l|; nonzero if either code is invalid. */
static int build_codes(ws_inflater *z, const uint8_t *l, unsigned nlit,
                       unsigned ndist) {
  /* (few values kept across the first call: a small frame on the
   * deepest call chain, through the inflater) */
  const uint8_t *ld = l + nlit;
  if (ws_inflate_build_table(z->lit, LIT_CAP, LIT_ROOT, l, nlit, T_LIT,
                             z->sorted))
    return -1;
  return ws_inflate_build_table(z->dist, DIST_CAP, DIST_ROOT, ld, ndist,
                                T_DIST, z->sorted);
}

static inline int read_header(ws_inflater *z, inf_io *s) {
  IO_LOAD();
  NEED(3);
  z->last = (int)(b & 1u);
  unsigned type = (unsigned)(b >> 1) & 3u;
  DROP(3);
  if (type == 0) {
    DROP(nb & 7u);
    z->mode = M_STORED_LEN;
  } else if (type == 1) {
#if WS_SMALL_CODE
    /* The fixed code (RFC 1951 3.2.6) into the block's own tables, unless
     * they hold it already. */
    if (z->tables != 1) {
      uint8_t *l = z->lens;
      memset(l, 8, 144);
      memset(l + 144, 9, 112);
      memset(l + 256, 7, 24);
      memset(l + 280, 8, 8);
      memset(l + 288, 5, 32);
      z->tables = 0;
      if (build_codes(z, l, 288, 32))
        FAIL(); /* (cannot happen: the fixed code is complete) */
    }
#endif
    z->tables = 1;
    z->mode = M_CODES;
  } else if (type == 2) {
    z->mode = M_DYN_COUNTS;
  } else {
    FAIL();
  }
  rc = STEP_NEXT;
out:
  IO_SAVE();
  return rc;
}

static inline int read_stored_len(ws_inflater *z, inf_io *s) {
  IO_LOAD();
  NEED(32);
  uint32_t len = (uint32_t)b & 0xffffu;
  uint32_t nlen = (uint32_t)(b >> 16) & 0xffffu;
#if WS_SMALL_CODE
  b = 0; /* exactly 32 bits were there (a 32-bit shift would be undefined) */
  nb = 0;
#else
  DROP(32);
#endif
  if (len != (~nlen & 0xffffu)) FAIL();
  z->left = len;
  z->mode = M_STORED;
  rc = STEP_NEXT;
out:
  IO_SAVE();
  return rc;
}

/* The stored bytes: first those already in the bit buffer. */
static inline int copy_stored(ws_inflater *z, inf_io *s) {
  IO_LOAD();
  uint8_t *op = s->op, *const oend = s->oend;
  while (z->left > 0 && nb >= 8 && op < oend) {
    *op++ = (uint8_t)b;
    DROP(8);
    z->left--;
  }
  if (z->left > 0) {
    size_t n = WS_MIN((size_t)(iend - ip), (size_t)(oend - op));
    if (n > z->left) n = z->left;
    if (n) { /* (no input or no room: either may be NULL, not moved) */
      memcpy(op, ip, n);
      op += n;
      ip += n;
      z->left -= (uint32_t)n;
    }
    if (z->left > 0) goto out;
  }
  z->mode = z->last ? M_DONE : M_HEADER;
  rc = STEP_NEXT;
out:
  s->op = op;
  IO_SAVE();
  return rc;
}

/* ---- the code lengths of a dynamic block -------------------------------- */

static inline int read_dyn_counts(ws_inflater *z, inf_io *s) {
  IO_LOAD();
  NEED(14);
  z->hlit = (unsigned)(b & 31u) + 257;
  z->hdist = (unsigned)((b >> 5) & 31u) + 1;
  z->hclen = (unsigned)((b >> 10) & 15u) + 4;
  DROP(14);
  if (z->hlit > 286 || z->hdist > 30) FAIL();
  z->idx = 0;
  z->mode = M_DYN_CLEN;
  rc = STEP_NEXT;
out:
  IO_SAVE();
  return rc;
}

/* The code length code's lengths, then its table. */
static inline int read_dyn_clen(ws_inflater *z, inf_io *s) {
  IO_LOAD();
  while (z->idx < z->hclen) {
    NEED(3);
    z->lens[clen_order[z->idx++]] = (uint8_t)(b & 7u);
    DROP(3);
  }
  while (z->idx < 19)
    z->lens[clen_order[z->idx++]] = 0;
  if (ws_inflate_build_table(z->clen, CLEN_CAP, CLEN_ROOT, z->lens, 19, T_CLEN,
                             z->sorted))
    FAIL();
  z->idx = 0;
  z->mode = M_DYN_LENS;
  rc = STEP_NEXT;
out:
  IO_SAVE();
  return rc;
}

/* The literal/length and distance code lengths, run coded with the code
 * length code, then their tables. */
static inline int read_dyn_lens(ws_inflater *z, inf_io *s) {
  IO_LOAD();
  unsigned total = z->hlit + z->hdist, idx = z->idx;
  uint8_t *const lens = z->lens;
  const uint32_t *const ct = z->clen;
  while (idx < total) {
    uint32_t e;
#if !WS_SMALL_CODE
    if ((size_t)(iend - ip) >= FAST_IN) {
      /* one refill holds a code and its extra bits (7 + 7); the code is
       * complete, so every entry is a symbol (a speed path: the loop
       * below reads any code too) */
      b |= load64le(ip) << nb;
      ip += (63u - nb) >> 3;
      nb |= 56u;
      e = ct[b & ((1u << CLEN_ROOT) - 1)];
    } else
#endif
    {
      for (;;) {
        e = peek_code(ct, CLEN_ROOT, b, nb);
        if (e) {
          unsigned sym = e >> 16, need = e & 0xffu;
          need += sym == 16 ? 2u : sym == 17 ? 3u : sym == 18 ? 7u : 0u;
          if (nb >= need) break;
        }
        if (ip == iend) {
          z->idx = idx;
          goto out;
        }
        b |= (inf_bits)*ip++ << nb;
        nb += 8;
      }
    }
    unsigned sym = e >> 16;
    DROP(e & 0xffu);
    if (sym < 16) {
      lens[idx++] = (uint8_t)sym;
      continue;
    }
    unsigned rep;
    uint8_t val = 0;
    if (sym == 16) {
      if (idx == 0) FAIL();
      val = lens[idx - 1];
      rep = 3 + (unsigned)(b & 3u);
      DROP(2);
    } else if (sym == 17) {
      rep = 3 + (unsigned)(b & 7u);
      DROP(3);
    } else {
      rep = 11 + (unsigned)(b & 127u);
      DROP(7);
    }
    if (idx + rep > total) FAIL();
    memset(lens + idx, val, rep);
    idx += rep;
  }
  z->idx = idx;
  b = keep_bits(b, nb);
  if (z->lens[256] == 0) FAIL(); /* no end-of-block code */
  z->tables = 0;
  if (build_codes(z, z->lens, z->hlit, z->hdist)) FAIL();
  z->tables = 2;
  z->mode = M_CODES;
  rc = STEP_NEXT;
out:
  IO_SAVE();
  return rc;
}

/* ---- decoding ----------------------------------------------------------- */

#if !WS_SMALL_CODE /* (the fast loop and its helpers) */
/* Copies a validated match of |len| bytes at |dist| that fits in the
 * output with FAST_SLACK to spare (|made| bytes of this call's output,
 * at |out|, are before |op|); returns the new |op|. */
static inline uint8_t *copy_match_fast(const ws_inflater *z, uint8_t *op,
                                       uint32_t len, uint32_t dist,
                                       size_t made) {
  if (dist <= made) {
    const uint8_t *src = op - dist;
    uint8_t *end = op + len;
    if (dist >= 8) {
      do {
        memcpy(op, src, 8);
        op += 8;
        src += 8;
      } while (op < end);
    } else if (dist == 1) {
      memset(op, *src, len);
    } else {
      do
        *op++ = *src++;
      while (op < end);
    }
    return end;
  }
  uint32_t wsize = z->wsize;
  uint32_t back = dist - (uint32_t)made;
  uint32_t start = (z->wpos - back) & (wsize - 1);
  uint32_t n = back < len ? back : len;
  uint32_t first = wsize - start;
  if (first > n) first = n;
  /* 8 bytes at a time: |out| has FAST_SLACK bytes to spare, and reads
   * past the window's end stay in the block */
  copy8(op, z->win + start, first);
  if (n > first) copy8(op + first, z->win, n - first);
  op += n;
  len -= n;
  /* the rest comes from this call's output */
  const uint8_t *src = op - dist;
  while (len--)
    *op++ = *src++;
  return op;
}

/* Fast loop: every iteration refills to >= 56 bits, enough for a length
 * code, its extra bits, a distance code and its extra bits (at most
 * 15+5+15+13 = 48). A match that would not fit in |out| with the copy
 * overrun is copied exactly, and what does not fit is left for M_COPY.
 * Returns STEP_NEXT when the block ended or a copy is pending, STEP_STOP
 * to go on with decode_slow(), or an error. */
static inline int decode_fast(ws_inflater *z, inf_io *s, const uint32_t *lt,
                              const uint32_t *dt) {
  IO_LOAD();
  uint8_t *op = s->op, *const oend = s->oend, *const out = s->out;
  const uint32_t lmask = (1u << LIT_ROOT) - 1, dmask = (1u << DIST_ROOT) - 1;
  const uint32_t wsize = z->wsize, whave = z->whave;

  while ((size_t)(iend - ip) >= FAST_IN && op < oend) {
    b |= load64le(ip) << nb;
    ip += (63u - nb) >> 3;
    nb |= 56u;

    uint32_t e = lt[b & lmask];
    if (e & E_SUB) {
      DROP(LIT_ROOT);
      e = lt[(e >> 16) + (b & ((1u << ((e >> 8) & 15u)) - 1))];
    }
    DROP(e & 0xffu);
    if (e & E_LIT) {
      *op++ = (uint8_t)(e >> 16);
      /* Up to 4 more literals from the root table fit in what the
       * refill left: at least 56 - 15 bits, and at most 9 each. */
      if ((size_t)(oend - op) >= 4) {
        for (unsigned k = 0; k < 4; k++) {
          e = lt[b & lmask];
          if ((e & (E_LIT | E_SUB)) != E_LIT) break;
          DROP(e & 0xffu);
          *op++ = (uint8_t)(e >> 16);
        }
      }
      continue;
    }
    if (e & (E_EOB | E_BAD)) {
      if (e & E_BAD) {
        b &= ((uint64_t)1 << nb) - 1;
        FAIL();
      }
      z->mode = z->last ? M_DONE : M_HEADER;
      break;
    }
    unsigned ex = (e >> 8) & 15u;
    uint32_t len = (e >> 16) + (uint32_t)(b & ((1u << ex) - 1));
    DROP(ex);
    e = dt[b & dmask];
    if (e & E_SUB) {
      DROP(DIST_ROOT);
      e = dt[(e >> 16) + (b & ((1u << ((e >> 8) & 15u)) - 1))];
    }
    DROP(e & 0xffu);
    if (e & E_BAD) {
      b &= ((uint64_t)1 << nb) - 1;
      FAIL();
    }
    ex = (e >> 8) & 15u;
    uint32_t dist = (e >> 16) + (uint32_t)(b & ((1u << ex) - 1));
    DROP(ex);
    if (WS_UNLIKELY(dist > wsize)) {
      b &= ((uint64_t)1 << nb) - 1;
      FAIL();
    }
    size_t made = (size_t)(op - out);
    if (WS_UNLIKELY(dist > made && dist - made > whave)) {
      b &= ((uint64_t)1 << nb) - 1;
      FAIL();
    }
    if (WS_UNLIKELY((size_t)(oend - op) < len + FAST_SLACK)) {
      /* near the end of |out|: exact copy, the rest later */
      uint32_t room = (uint32_t)WS_MIN((size_t)(oend - op), (size_t)len);
      op = copy_slow(z, out, op, room, dist);
      if (room < len) {
        z->left = len - room;
        z->dist_pending = dist;
        z->mode = M_COPY;
        break;
      }
      continue;
    }
    op = copy_match_fast(z, op, len, dist, made);
  }
  b &= ((uint64_t)1 << nb) - 1;
  if (z->mode != M_CODES) rc = STEP_NEXT;
out:
  s->op = op;
  IO_SAVE();
  return rc;
}

#endif /* !WS_SMALL_CODE */

/* Slow path, symbol by symbol with whatever input and output is left
 * (fewer than FAST_IN input bytes, or |out| full): until the block ends,
 * a match does not fit, or more input or room is needed. */
static inline int decode_slow(ws_inflater *z, inf_io *s, const uint32_t *lt,
                              const uint32_t *dt) {
  IO_LOAD();
  uint8_t *op = s->op, *const oend = s->oend, *const out = s->out;
  const uint32_t wsize = z->wsize, whave = z->whave;
  for (;;) {
    while (nb <= REFILL_MAX && ip < iend) {
      b |= (inf_bits)*ip++ << nb;
      nb += 8;
    }
    uint32_t len, d, dist;
#if WS_SMALL_CODE
    len = z->left; /* in M_DIST and M_DISTX: the match's length */
    if (z->mode == M_DIST) goto distance;
    d = z->dist_pending;
    if (z->mode == M_DISTX) goto distance_extra;
#endif
    uint32_t e = peek_code(lt, LIT_ROOT, b, nb);
    if (!e) goto out;
    unsigned clen = e & 0xffu;
    if (e & E_LIT) {
      if (op == oend) goto out;
      *op++ = (uint8_t)(e >> 16);
      DROP(clen);
      continue;
    }
    if (e & E_EOB) {
      DROP(clen);
      z->mode = z->last ? M_DONE : M_HEADER;
      break;
    }
    if (e & E_BAD) FAIL();
    unsigned ex = (e >> 8) & 15u;
    unsigned used = clen + ex;
    if (nb < used) goto out;
    len = (e >> 16) + (uint32_t)((b >> clen) & ((1u << ex) - 1));
#if WS_SMALL_CODE
    /* the length is in: its distance code is the next step */
    DROP(used);
    z->left = len;
    z->mode = M_DIST;
    continue;
  distance:
    d = peek_code(dt, DIST_ROOT, b, nb);
    if (!d) goto out;
    if (d & E_BAD) FAIL();
    DROP(d & 0xffu);
    z->dist_pending = d; /* its extra bits are the next step */
    z->mode = M_DISTX;
    continue;
  distance_extra: {
    unsigned dex = (d >> 8) & 15u;
    if (nb < dex) goto out;
    dist = (d >> 16) + (uint32_t)(b & ((1u << dex) - 1));
    DROP(dex);
  }
#else
    d = peek_code(dt, DIST_ROOT, b >> used, nb - used);
    if (!d) goto out;
    if (d & E_BAD) FAIL();
    unsigned dlen = d & 0xffu, dex = (d >> 8) & 15u;
    if (nb < used + dlen + dex) goto out;
    dist = (d >> 16) + (uint32_t)((b >> (used + dlen)) & ((1u << dex) - 1));
    DROP(used + dlen + dex);
#endif
    if (dist > wsize || dist > whave + (size_t)(op - out)) FAIL();
#if WS_SMALL_CODE
    z->mode = M_CODES;
#endif
    uint32_t room = (uint32_t)WS_MIN((size_t)(oend - op), (size_t)len);
    op = copy_slow(z, out, op, room, dist);
    if (room < len) {
      z->left = len - room;
      z->dist_pending = dist;
      z->mode = M_COPY;
      break;
    }
  }
  rc = STEP_NEXT;
out:
  s->op = op;
  IO_SAVE();
  return rc;
}

/* The symbols of a block, with the fixed code or the block's own. */
static inline int decode_codes(ws_inflater *z, inf_io *s) {
#if WS_SMALL_CODE
  const uint32_t *lt = z->lit, *dt = z->dist; /* fixed or not */
#else
  const uint32_t *lt = z->tables == 1 ? ws_inflate_fixed_lit : z->lit;
  const uint32_t *dt = z->tables == 1 ? ws_inflate_fixed_dist : z->dist;
#endif
#if !WS_SMALL_CODE /* (the slow loop alone decodes everything too) */
  int rc = decode_fast(z, s, lt, dt);
  if (rc != STEP_STOP) return rc;
#endif
  return decode_slow(z, s, lt, dt);
}

/* The rest of a match that did not fit in the output. */
static inline int copy_pending(ws_inflater *z, inf_io *s) {
  size_t room = (size_t)(s->oend - s->op);
  uint32_t n = z->left;
  if (n > room) n = (uint32_t)room;
  s->op = copy_slow(z, s->out, s->op, n, z->dist_pending);
  z->left -= n;
  if (z->left > 0) return STEP_STOP;
  z->mode = M_CODES;
  return STEP_NEXT;
}

#undef IO_LOAD
#undef IO_SAVE
#undef NEED
#undef DROP
#undef FAIL

int ws_inflate(ws_inflater *z, const uint8_t *in, size_t inlen, size_t *pnin,
               uint8_t *out, size_t outlen, size_t *pnout) {
  inf_io s;
  /* NULL with a length of 0 is allowed: no arithmetic on it (C11 6.5.6) */
  s.in = s.ip = in;
  s.iend = inlen ? in + inlen : in;
  s.out = s.op = out;
  s.oend = outlen ? out + outlen : out;
  s.b = (inf_bits)z->bits;
  s.nb = z->nbits;
  int rc = STEP_NEXT;

  if (z->mode == M_ERROR) rc = z->err;
  while (rc == STEP_NEXT) {
    switch (z->mode) {
    case M_HEADER: rc = read_header(z, &s); break;
    case M_STORED_LEN: rc = read_stored_len(z, &s); break;
    case M_STORED: rc = copy_stored(z, &s); break;
    case M_DYN_COUNTS: rc = read_dyn_counts(z, &s); break;
    case M_DYN_CLEN: rc = read_dyn_clen(z, &s); break;
    case M_DYN_LENS: rc = read_dyn_lens(z, &s); break;
    case M_CODES:
#if WS_SMALL_CODE
    case M_DIST:
    case M_DISTX:
#endif
      rc = decode_codes(z, &s);
      break;
    case M_COPY: rc = copy_pending(z, &s); break;
    case M_DONE:
      /* Whatever follows the final block (the appended tail) is not
       * part of the stream. */
      s.ip = s.iend;
      s.b = 0;
      s.nb = 0;
      rc = STEP_STOP;
      break;
    default: rc = z->err ? z->err : WS_ERR_DATA; break;
    }
  }
  if (rc == STEP_STOP) rc = 0;

  /* no bits past the input taken */
  s.b = keep_bits(s.b, s.nb);
  if (rc == 0) update_window(z, out, (size_t)(s.op - out));
  z->bits = s.b;
  z->nbits = s.nb;
  *pnin = (size_t)(s.ip - in);
  *pnout = (size_t)(s.op - out);
  return rc;
}

#else
typedef int ws_inflate_left_out; /* (an empty file is not ISO C) */
#endif /* !WS_NO_DEFLATE */
