/*
 * Streaming raw DEFLATE compressor (RFC 1951) with sync flush, for
 * permessage-deflate (RFC 7692).
 *
 * History: one buffer of max(W, N) + max(W, 2*LOOK) bytes (W =
 * 2^window_bits, N symbols per block; at most 64 KiB). Input is appended
 * after the lookahead; when the buffer is full the oldest bytes beyond
 * the last W (or, when it fits, before the current block) are dropped by
 * moving the rest down. Index 0 of the buffer never starts a match (a
 * stream starts at index 1), and matches reach back less than W bytes:
 * window_bits is honoured, 8 included.
 *
 * Match finding: hash heads (of 3 bytes; 4 at level 1) and, from level
 * 2, chains (indexed by buffer index plus pshift, mod W) hold 16-bit
 * buffer indexes, 0 meaning none; moving the buffer down by d subtracts
 * d from every entry (dropping those that fall off) and adds d to
 * pshift, so no slot moves. A chain therefore lists strictly decreasing
 * indexes, and a step costs one load and one compare against the reach
 * limit. Once a match is known, a candidate is first compared on the 4
 * bytes that end at the current best length, then on its first 4.
 *
 * Blocks: up to N symbols are buffered with their frequencies, then the
 * cheapest of dynamic Huffman, fixed Huffman and stored (when the raw
 * bytes are still in the buffer) is written whole into a pending buffer
 * (which the symbols share) that the caller drains in pieces. Every
 * table lives in the heap block: the stack stays small. The block writer
 * is ws_deflate_block.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_deflate_block.h"

/* the whole file: build switches (README "Firmware") */
#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)

#  define MIN_MATCH 3u  /* RFC 1951 3.2.5: shortest length code */
#  define FIND_MIN 3u   /* shortest match the finder reports */
#  define TOO_FAR 4096u /* a 3-byte match further than this is not worth it */
#  define MAX_MATCH 258u
/* Lookahead kept before compressing without a flush: a longest match
 * plus the bytes hashed at its end. */
#  define LOOK (MAX_MATCH + MIN_MATCH + 1u)
#  define BUF_SLACK 8u /* readable bytes past the buffer for 8-byte loads */

/* Per-level search parameters: chain steps (halved past |good|), stop
 * at a match of |nice|, and for lazy levels no second look after a
 * match of |lazy|; for greedy levels |lazy| bounds the match lengths
 * whose inner positions are hashed. */
typedef struct level_cfg {
  uint16_t good, lazy, nice, chain;
  uint8_t is_lazy;
} level_cfg;

static const level_cfg levels[10] = {
    {0, 0, 0, 0, 0},         {0, 0, 0, 0, 0}, /* level 1: its own loop */
    {4, 4, 16, 8, 0},        {4, 6, 32, 32, 0},      {4, 4, 16, 16, 1},
    {8, 16, 32, 32, 1},      {8, 16, 128, 128, 1},   {8, 32, 128, 256, 1},
    {32, 128, 258, 1024, 1}, {32, 258, 258, 4096, 1}};

/* Hash slots: 2^window_bits with chains (a slot per window position;
 * more do not shorten the searches measurably), twice that, at most
 * 2^14, for level 1's single probe. */
static uint32_t hash_bits_for(unsigned window_bits, int level) {
  if (level >= 2) return window_bits;
  return window_bits + 1 > 14 ? 14 : window_bits + 1;
}

/* Symbols per block, N = 2^clamp(window_bits, 10, 13): small windows
 * get small blocks. N bounds every frequency and their sum (N + 1 with
 * the end-of-block code), so weights fit 16 bits. */
static uint32_t nsyms_for(unsigned window_bits) {
  unsigned b = window_bits;
  b = b < 10 ? 10 : b > 13 ? 13 : b;
  return (uint32_t)1 << b;
}

/* History plus lookahead: max(W, N) + max(W, 2*LOOK) <= 65,536, so
 * that every index fits the 16-bit hash entries. Room for N bytes
 * behind the position lets a block of N literals (data that does not
 * compress) still be written stored when W < N: see fill(). */
static size_t bufsize_for(unsigned window_bits) {
  size_t w = (size_t)1 << window_bits, n = nsyms_for(window_bits);
  size_t look2 = (size_t)2 * LOOK;
  return (w > n ? w : n) + (w > look2 ? w : look2);
}

/* Layout of the heap block: syms, pend, work, head, prev, buf. */
typedef struct layout {
  size_t buf, head, prev, syms, pend, work, total;
} layout;

static int get_layout(unsigned window_bits, int level, layout *l) {
  if (window_bits < WS_DEFLATE_MIN_WINDOW_BITS ||
      window_bits > WS_DEFLATE_MAX_WINDOW_BITS || level < 1 || level > 9)
    return -1;
  size_t w = (size_t)1 << window_bits;
  size_t n = nsyms_for(window_bits);
  size_t bufsize = bufsize_for(window_bits);
  l->pend = 0; /* 4-byte aligned items first */
  l->syms = l->pend + PEND_HEAD + 2 * n;
  l->work = l->syms + 4 * n;
  l->head = l->work + ((sizeof(ws_deflate_work) + 3) & ~(size_t)3);
  l->prev = l->head + 2 * ((size_t)1 << hash_bits_for(window_bits, level));
  l->buf = l->prev + (level >= 2 ? 2 * w : 0);
  l->total = l->buf + bufsize + BUF_SLACK;
  return 0;
}

size_t ws_deflate_memsize(unsigned window_bits, int level) {
  layout l;
  return get_layout(window_bits, level, &l) ? 0 : l.total;
}

int ws_deflate_init(ws_deflater *z, const ws_mem *mem, unsigned window_bits,
                    int level) {
  ws_mem m;
  layout l;
  memset(z, 0, sizeof(*z));
  if (get_layout(window_bits, level, &l) || ws_mem_resolve(&m, mem) != 0)
    return WS_ERR_INVALID_ARGUMENT;
  uint8_t *p = ws_malloc(&m, l.total);
  if (!p) return WS_ERR_NOMEM;
  z->mem = m;
  z->block = p;
  z->syms = (uint32_t *)(void *)(p + l.syms);
  z->pend = p + l.pend;
  z->work = (ws_deflate_work *)(void *)(p + l.work);
  z->head = (uint16_t *)(void *)(p + l.head);
  z->prev = level >= 2 ? (uint16_t *)(void *)(p + l.prev) : NULL;
  z->buf = p + l.buf;
  z->wsize = (uint32_t)1 << window_bits;
  z->bufsize = (uint32_t)bufsize_for(window_bits);
  z->hbits = hash_bits_for(window_bits, level);
  z->nsyms_max = nsyms_for(window_bits);
  z->pendcap = (uint32_t)(PEND_HEAD + 6 * z->nsyms_max);
  z->level = level;
  /* Bytes past the data are read (never used) by hashing and 8-byte
   * compares: keep them defined. */
  memset(z->buf, 0, z->bufsize + BUF_SLACK);
  if (z->prev) memset(z->prev, 0, 2 * (size_t)z->wsize);
  ws_deflate_reset(z);
  return 0;
}

void ws_deflate_reset(ws_deflater *z) {
  memset(z->head, 0, sizeof(uint16_t) << z->hbits);
  z->pendpos = z->pendlen = 0;
  z->lookahead = 0;
  z->pos = 1; /* index 0 never starts a match: 0 marks an empty slot */
  z->pshift = 0;
  z->block_start = 1;
  z->nsyms = 0;
  z->err = 0;
  z->have_prev = 0;
  z->prev_len = FIND_MIN - 1;
  z->prev_dist = 0;
  z->flushed = 0;
  z->bitbuf = 0;
  z->bitcnt = 0;
  memset(z->lfreq, 0, sizeof(z->lfreq));
  memset(z->dfreq, 0, sizeof(z->dfreq));
}

void ws_deflate_free(ws_deflater *z) {
  if (!z || !z->block) return;
  ws_free(&z->mem, z->block);
  z->block = NULL;
}

/* ---- matching ------------------------------------------------------------ */

static inline uint32_t load32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Hash of the 4 bytes at |p| into |hb| bits. */
static inline uint32_t hash4(const uint8_t *p, unsigned hb) {
  return (load32le(p) * 2654435761u) >> (32 - hb);
}

/* Hash of the 3 bytes at |p| into |hb| bits (4 readable). */
static inline uint32_t hash3(const uint8_t *p, unsigned hb) {
  return ((load32le(p) & 0xffffffu) * 2654435761u) >> (32 - hb);
}

/* Length of the common prefix of |a| and |b|, at most |max|. */
static inline uint32_t match_len(const uint8_t *a, const uint8_t *b,
                                 uint32_t max) {
  uint32_t n = 0;
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                            \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (n + 8 <= max) {
    uint64_t x, y;
    memcpy(&x, a + n, 8);
    memcpy(&y, b + n, 8);
    if (x != y) return n + (uint32_t)__builtin_ctzll(x ^ y) / 8;
    n += 8;
  }
#endif
  while (n < max && a[n] == b[n])
    n++;
  return n;
}

/* Oldest buffer index a match at |pos| may start after: index 0 and
 * anything W or more back are out of reach. */
static inline uint32_t reach_limit(const ws_deflater *z, uint32_t pos) {
  return pos > z->wsize ? pos - z->wsize : 0;
}

/*
 * Longest match at |pos| along the chain from buffer index |cand|,
 * longer than |best| (>= FIND_MIN - 1); sets |*pdist| when one is found.
 * Chains hold buffer indexes in decreasing order, so a step is one load
 * and one compare against the reach limit. A candidate is compared
 * first on the 4 bytes that end at |best| (where a longer match must
 * still agree) and on its first 4, then in 8-byte words.
 */
static uint32_t longest_match(const ws_deflater *z, uint32_t pos, uint32_t look,
                              uint32_t cand, uint32_t best, uint32_t *pdist,
                              const level_cfg *cfg) {
  const uint8_t *const buf = z->buf, *const cur = buf + pos;
  const uint16_t *const prev = z->prev;
  const uint32_t wmask = z->wsize - 1, limit = reach_limit(z, pos);
  const uint32_t pshift = z->pshift;
  uint32_t max = look < MAX_MATCH ? look : MAX_MATCH;
  uint32_t nice = cfg->nice < max ? cfg->nice : max;
  uint32_t chain = cfg->chain;
  if (best >= cfg->good) chain >>= 2;
  if (best >= max) return best;
  const uint32_t first = load32le(cur);
  if (best < 3) {
    /* No match yet: the first 3 bytes must agree. */
    for (;;) {
      if (cand <= limit) return best;
      if (((load32le(buf + cand) ^ first) & 0xffffffu) == 0) break;
      if (--chain == 0) return best;
      cand = prev[(cand + pshift) & wmask];
    }
    best = 3 + match_len(cur + 3, buf + cand + 3, max - 3);
    *pdist = pos - cand;
    if (best >= nice || --chain == 0) return best;
    cand = prev[(cand + pshift) & wmask];
  }
  /* A longer match agrees on its first 4 bytes and on the 4 ending at
   * |best|; the latter tell most candidates apart. */
  const uint8_t *bend = buf + best - 3; /* + cand: where the 4 end */
  uint32_t endw = load32le(cur + best - 3);
  while (cand > limit) {
    if (load32le(bend + cand) == endw && load32le(buf + cand) == first) {
      const uint8_t *m = buf + cand;
      uint32_t len = 4 + match_len(cur + 4, m + 4, max - 4);
      if (len > best) {
        best = len;
        *pdist = pos - cand;
        if (len >= nice) break;
        bend = buf + best - 3;
        endw = load32le(cur + best - 3);
      }
    }
    if (--chain == 0) break;
    cand = prev[(cand + pshift) & wmask];
  }
  return best;
}

/* Frequencies of a literal and of a match, and their symbol entries
 * (literal: the byte; match: distance << 8 | length - 3). */
static inline uint32_t lit_sym(uint16_t *lfreq, uint8_t c) {
  lfreq[c]++;
  return c;
}

static inline uint32_t match_sym(uint16_t *lfreq, uint16_t *dfreq, uint32_t len,
                                 uint32_t dist) {
  lfreq[257 + ws_deflate_len_code[len - MIN_MATCH]]++;
  dfreq[dist_code(dist)]++;
  return dist << 8 | (len - MIN_MATCH);
}

/*
 * The compress loops keep the position, the lookahead and the symbol
 * count in locals and store them back at the end. Each runs while
 * there is room for a symbol and at least |stop| bytes of lookahead: a
 * whole longest match and its hashing without a flush, any byte with
 * one.
 */

/* Level 1: one probe of a 4-byte hash, greedy. */
static void compress_fast(ws_deflater *z, int final) {
  uint8_t *const buf = z->buf;
  uint16_t *const head = z->head, *const lfreq = z->lfreq,
                  *const dfreq = z->dfreq;
  uint32_t *const syms = z->syms;
  const unsigned hb = z->hbits;
  const uint32_t wsize = z->wsize, nmax = z->nsyms_max;
  const uint32_t stop = final ? 1 : LOOK;
  uint32_t pos = z->pos, look = z->lookahead, n = z->nsyms;
  while (n < nmax && look >= stop) {
    if (look >= 4u) {
      uint32_t h = hash4(buf + pos, hb);
      uint32_t cand = head[h];
      head[h] = (uint16_t)pos;
      if (cand + wsize > pos && cand != 0 &&
          load32le(buf + cand) == load32le(buf + pos)) {
        uint32_t max = look < MAX_MATCH ? look : MAX_MATCH;
        uint32_t len = 4 + match_len(buf + pos + 4, buf + cand + 4, max - 4);
        syms[n++] = match_sym(lfreq, dfreq, len, pos - cand);
        /* hash a few positions inside short matches */
        if (len <= 8) {
          for (uint32_t k = 1; k < len && look - k >= 4u; k++)
            head[hash4(buf + pos + k, hb)] = (uint16_t)(pos + k);
        } else if (look - len + 2 >= 4u) {
          head[hash4(buf + pos + len - 2, hb)] = (uint16_t)(pos + len - 2);
        }
        pos += len;
        look -= len;
        continue;
      }
    }
    syms[n++] = lit_sym(lfreq, buf[pos]);
    pos++;
    look--;
  }
  z->pos = pos;
  z->lookahead = look;
  z->nsyms = n;
}

/* Inserts buffer index |pos| in its hash chain; returns the index that
 * held the head before (0: none). Reads 4 bytes at |pos|. */
static inline uint32_t insert3(const ws_deflater *z, uint32_t pos) {
  uint32_t h = hash3(z->buf + pos, z->hbits);
  uint32_t old = z->head[h];
  z->head[h] = (uint16_t)pos;
  z->prev[(pos + z->pshift) & (z->wsize - 1)] = (uint16_t)old;
  return old;
}

/* Levels 2-3: hash chains, greedy. */
static void compress_greedy(ws_deflater *z, int final, const level_cfg *cfg) {
  const uint8_t *const buf = z->buf;
  uint16_t *const lfreq = z->lfreq, *const dfreq = z->dfreq;
  uint32_t *const syms = z->syms;
  const uint32_t nmax = z->nsyms_max, stop = final ? 1 : LOOK;
  uint32_t pos = z->pos, look = z->lookahead, n = z->nsyms;
  while (n < nmax && look >= stop) {
    uint32_t len = FIND_MIN - 1, dist = 0;
    if (look >= FIND_MIN) {
      uint32_t cand = insert3(z, pos);
      len = longest_match(z, pos, look, cand, FIND_MIN - 1, &dist, cfg);
      if (len == MIN_MATCH && dist > TOO_FAR) len = FIND_MIN - 1;
    }
    if (len >= FIND_MIN) {
      syms[n++] = match_sym(lfreq, dfreq, len, dist);
      if (len <= cfg->lazy) {
        for (uint32_t k = 1; k < len && look - k >= FIND_MIN; k++)
          (void)insert3(z, pos + k);
      }
      pos += len;
      look -= len;
    } else {
      syms[n++] = lit_sym(lfreq, buf[pos]);
      pos++;
      look--;
    }
  }
  z->pos = pos;
  z->lookahead = look;
  z->nsyms = n;
}

/* Levels 4-9: hash chains with lazy evaluation: a match is taken only
 * if the next position does not start a longer one. */
static void compress_lazy(ws_deflater *z, int final, const level_cfg *cfg) {
  const uint8_t *const buf = z->buf;
  uint16_t *const lfreq = z->lfreq, *const dfreq = z->dfreq;
  uint32_t *const syms = z->syms;
  const uint32_t nmax = z->nsyms_max, stop = final ? 1 : LOOK;
  uint32_t pos = z->pos, look = z->lookahead, n = z->nsyms;
  /* a match found at pos-1 waiting for a better one (plen < FIND_MIN:
   * only the literal at pos-1 waits) */
  int have_prev = z->have_prev;
  uint32_t plen = have_prev ? z->prev_len : FIND_MIN - 1, pdist = z->prev_dist;
  while (n < nmax && look >= stop) {
    uint32_t len = FIND_MIN - 1, dist = 0;
    if (look >= FIND_MIN) {
      uint32_t cand = insert3(z, pos);
      if (plen < cfg->lazy) {
        len = longest_match(z, pos, look, cand, plen, &dist, cfg);
        if (len == plen) len = FIND_MIN - 1; /* nothing longer */
        if (len == MIN_MATCH && dist > TOO_FAR) len = FIND_MIN - 1;
      }
    }
    if (plen >= FIND_MIN && len <= plen) {
      /* the match at pos-1 wins */
      syms[n++] = match_sym(lfreq, dfreq, plen, pdist);
      uint32_t end = pos - 1 + plen;         /* first position after it */
      uint32_t last = pos + look - FIND_MIN; /* last one hashable */
      if (last > end - 1) last = end - 1;
      for (uint32_t p = pos + 1; p <= last; p++)
        (void)insert3(z, p);
      look -= end - pos;
      pos = end;
      have_prev = 0;
      plen = FIND_MIN - 1;
      continue;
    }
    if (have_prev) syms[n++] = lit_sym(lfreq, buf[pos - 1]);
    have_prev = 1;
    plen = len;
    pdist = dist;
    pos++;
    look--;
  }
  if (final && look == 0 && have_prev && n < nmax) {
    syms[n++] = lit_sym(lfreq, buf[pos - 1]);
    have_prev = 0;
    plen = FIND_MIN - 1;
  }
  z->pos = pos;
  z->lookahead = look;
  z->nsyms = n;
  z->have_prev = have_prev;
  z->prev_len = plen;
  z->prev_dist = pdist;
}

/* Nothing left to compress before the flush point? */
static int all_compressed(const ws_deflater *z) {
  return z->lookahead == 0 && !z->have_prev;
}

static void compress(ws_deflater *z, int final) {
  if (z->level == 1)
    compress_fast(z, final);
  else if (levels[z->level].is_lazy)
    compress_lazy(z, final, &levels[z->level]);
  else
    compress_greedy(z, final, &levels[z->level]);
}

/* Subtracts |d| from every buffer index in |t|; those below |d| (and
 * index |d| itself, which becomes 0) are dropped. |n| is a multiple of
 * 16 (a power of two >= 256): the fixed inner loop lets compilers use
 * vector saturating subtraction. */
static void rebase(uint16_t *t, size_t n, uint32_t d) {
  const uint16_t dd = (uint16_t)d;
  for (size_t i = 0; i < n; i += 16) {
    for (size_t k = 0; k < 16; k++) {
      uint16_t v = t[i + k];
      t[i + k] = (uint16_t)(v > dd ? v - dd : 0);
    }
  }
}

/* Appends input to the buffer, first dropping history older than W when
 * space runs short, but keeping the bytes of the current block when
 * they leave at least LOOK bytes free (its stored form needs them).
 * Returns the bytes taken. */
static size_t fill(ws_deflater *z, const uint8_t *in, size_t inlen) {
  uint32_t end = z->pos + z->lookahead;
  if (z->bufsize - end < LOOK && z->pos > z->wsize) {
    uint32_t d = z->pos - z->wsize;
    if (z->block_start >= 0 && (uint32_t)z->block_start < d &&
        end - (uint32_t)z->block_start <= z->bufsize - LOOK)
      d = (uint32_t)z->block_start; /* > 0: end > bufsize - LOOK */
    memmove(z->buf, z->buf + d, end - d);
    rebase(z->head, (size_t)1 << z->hbits, d);
    if (z->prev) rebase(z->prev, z->wsize, d);
    z->pshift += d; /* chain slots stay where they are */
    z->pos -= d;
    z->block_start -= d;
    if (z->block_start < 0) z->block_start = -1;
    end -= d;
  }
  size_t n = z->bufsize - end;
  if (n > inlen) n = inlen;
  memcpy(z->buf + end, in, n);
  z->lookahead += (uint32_t)n;
  return n;
}

int ws_deflate(ws_deflater *z, const uint8_t *in, size_t inlen, size_t *pnin,
               uint8_t *out, size_t outlen, size_t *pnout, int flush) {
  size_t ip = 0, op = 0;
  *pnin = 0;
  *pnout = 0;
  if (flush != WS_DEFLATE_NO_FLUSH && flush != WS_DEFLATE_SYNC_FLUSH)
    return WS_ERR_INVALID_ARGUMENT;
  /* flushed: 0 none under way, 1 flushing, 2 flush written to pend */
  if (flush == WS_DEFLATE_SYNC_FLUSH && z->flushed == 0) z->flushed = 1;

  for (;;) {
    if (z->pendpos < z->pendlen) {
      size_t n = z->pendlen - z->pendpos;
      if (n > outlen - op) n = outlen - op;
      memcpy(out + op, z->pend + z->pendpos, n);
      op += n;
      z->pendpos += (uint32_t)n;
      if (z->pendpos < z->pendlen) break; /* out is full */
    }
    z->pendpos = z->pendlen = 0;
    if (z->flushed == 2) {
      z->flushed = 0;
      break;
    }
    if (ip < inlen) ip += fill(z, in + ip, inlen - ip);
    int final = z->flushed == 1 && ip == inlen;
    compress(z, final);
    if (z->nsyms == z->nsyms_max) {
      ws_deflate_emit_block(z);
      continue;
    }
    if (ip < inlen) continue;
    if (!final) break;
    if (!all_compressed(z)) continue;
    if (z->nsyms > 0) ws_deflate_emit_block(z);
    /* the empty stored block: 3 header bits, pad, 00 00 ff ff */
    put_bits(z, 0, 3);
    align_bits(z);
    memcpy(z->pend + z->pendlen, "\0\0\xff\xff", 4);
    z->pendlen += 4;
    z->block_start = (int64_t)z->pos;
    z->flushed = 2;
  }
  *pnin = ip;
  *pnout = op;
  if (z->pendpos < z->pendlen || z->flushed != 0 || ip < inlen)
    return WS_ERR_WOULDBLOCK;
  return 0;
}

#else
typedef int ws_deflate_left_out; /* (an empty file is not ISO C) */
#endif /* !WS_NO_DEFLATE && !WS_INFLATE_ONLY */
