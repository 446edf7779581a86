/*
 * Streaming raw DEFLATE compressor (RFC 1951) with sync flush, for
 * permessage-deflate (RFC 7692).
 *
 * History: one buffer of 2W + 2*LOOK bytes (W = 2^window_bits). Input is
 * appended after the lookahead; when the buffer is full the oldest bytes
 * beyond the last W are dropped by moving the rest down. Matches reach
 * back at most min(W, bytes of history) bytes: window_bits is honoured
 * exactly, 8 included.
 *
 * Match finding: hash heads (and, from level 2, chains) hold the low 16
 * bits of absolute stream positions, so nothing needs rebasing when the
 * buffer moves; a stale or aliased entry yields at worst a candidate
 * whose bytes are then compared, and a chain stops as soon as distances
 * stop growing or leave the window.
 *
 * Blocks: up to N symbols are buffered with their frequencies, then the
 * cheapest of dynamic Huffman, fixed Huffman and stored (when the raw
 * bytes are still in the buffer) is written whole into a pending buffer
 * that the caller drains in pieces.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_deflate.h"

#define MIN_MATCH 3u
#define MAX_MATCH 258u
/* Lookahead kept before compressing without a flush: a longest match
 * plus the bytes hashed at its end. */
#define LOOK (MAX_MATCH + MIN_MATCH + 1u)
#define BUF_SLACK 8u /* readable bytes past the buffer for 8-byte loads */
#define TOO_FAR 4096u /* a 3-byte match further than this is not worth it */

static const uint8_t len_code[256] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 12, 12, 13,
    13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16, 16,
    16, 17, 17, 17, 17, 17, 17, 17, 17, 18, 18, 18, 18, 18, 18, 18, 18, 19,
    19, 19, 19, 19, 19, 19, 19, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20,
    20, 20, 20, 20, 20, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21,
    21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22,
    22, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 25, 25, 25, 25, 25,
    25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25,
    25, 25, 25, 25, 25, 25, 25, 25, 25, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    28,
};
static const uint8_t dist_code_tab[512] = {
    0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 9,
    9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,
    11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13,
    13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13,
    13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 0, 14, 16, 17, 18, 18,
    19, 19, 20, 20, 20, 20, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22,
    23, 23, 23, 23, 23, 23, 23, 23, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 24, 24, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25,
    25, 25, 25, 25, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
};

/* RFC 1951 3.2.5 */
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
                                      1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                                      4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,
                                      11, 13, 15, 17,  19,  23,  27,  31,
                                      35, 43, 51, 59,  67,  83,  99,  115,
                                      131, 163, 195, 227, 258};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2,  2,  3,  3,
                                       4, 4, 5, 5, 6, 6, 7,  7,  8,  8,
                                       9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint16_t dist_base[30] = {
    1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
    33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
    1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
/* RFC 1951 3.2.7 */
static const uint8_t clen_order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                       11, 4,  12, 3, 13, 2, 14, 1, 15};

/* Per-level search parameters: chain steps (halved past |good|), stop
 * at a match of |nice|, and for lazy levels no second look after a
 * match of |lazy|; for greedy levels |lazy| bounds the match lengths
 * whose inner positions are hashed. */
typedef struct level_cfg {
  uint16_t good, lazy, nice, chain;
  uint8_t is_lazy;
} level_cfg;

static const level_cfg levels[10] = {
    {0, 0, 0, 0, 0},        {0, 0, 0, 0, 0}, /* level 1: its own loop */
    {4, 4, 16, 8, 0},       {4, 6, 32, 32, 0},   {4, 4, 16, 16, 1},
    {8, 16, 32, 32, 1},     {8, 16, 128, 128, 1}, {8, 32, 128, 256, 1},
    {32, 128, 258, 1024, 1}, {32, 258, 258, 4096, 1}};

static inline unsigned dist_code(uint32_t d) {
  return d <= 256 ? dist_code_tab[d - 1] : dist_code_tab[256 + ((d - 1) >> 7)];
}

static uint32_t hash_bits_for(unsigned window_bits, int level) {
  unsigned hb = window_bits + 1;
  unsigned cap = level == 1 ? 14u : 15u;
  return hb > cap ? cap : hb;
}

static uint32_t nsyms_for(unsigned window_bits) {
  unsigned b = window_bits < 12 ? 12 : window_bits > 14 ? 14 : window_bits;
  return (uint32_t)1 << b;
}

/* Layout of the heap block: buf, head, prev, syms, pend. */
typedef struct layout {
  size_t buf, head, prev, syms, pend, total;
} layout;

static int get_layout(unsigned window_bits, int level, layout *l) {
  if (window_bits < WS_DEFLATE_MIN_WINDOW_BITS ||
      window_bits > WS_DEFLATE_MAX_WINDOW_BITS || level < 1 || level > 9)
    return -1;
  size_t w = (size_t)1 << window_bits;
  size_t n = nsyms_for(window_bits);
  size_t bufsize = 2 * w + 2 * (size_t)LOOK;
  l->syms = 0; /* 4-byte aligned items first */
  l->pend = l->syms + 4 * n;
  l->head = l->pend + ((4 * n + 1024 + 3) & ~(size_t)3);
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
  z->head = (uint16_t *)(void *)(p + l.head);
  z->prev = level >= 2 ? (uint16_t *)(void *)(p + l.prev) : NULL;
  z->buf = p + l.buf;
  z->wsize = (uint32_t)1 << window_bits;
  z->bufsize = 2 * z->wsize + 2 * LOOK;
  z->hbits = hash_bits_for(window_bits, level);
  z->nsyms_max = nsyms_for(window_bits);
  z->pendcap = (uint32_t)(4 * z->nsyms_max + 1024);
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
  z->pos = 0;
  z->lookahead = 0;
  z->hist = 0;
  z->abspos = 0;
  z->block_start = 0;
  z->nsyms = 0;
  z->err = 0;
  z->have_prev = 0;
  z->prev_len = MIN_MATCH - 1;
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

/* ---- bit writer (into pend) ------------------------------------------- */

static inline void put_bits(ws_deflater *z, uint32_t v, unsigned n) {
  z->bitbuf |= (uint64_t)v << z->bitcnt;
  z->bitcnt += n;
  if (z->bitcnt >= 32) {
    uint8_t *p = z->pend + z->pendlen;
    p[0] = (uint8_t)z->bitbuf;
    p[1] = (uint8_t)(z->bitbuf >> 8);
    p[2] = (uint8_t)(z->bitbuf >> 16);
    p[3] = (uint8_t)(z->bitbuf >> 24);
    z->pendlen += 4;
    z->bitbuf >>= 32;
    z->bitcnt -= 32;
  }
}

/* Pads to a byte boundary and moves every whole byte to pend. */
static void align_bits(ws_deflater *z) {
  while (z->bitcnt > 0) {
    z->pend[z->pendlen++] = (uint8_t)z->bitbuf;
    z->bitbuf >>= 8;
    z->bitcnt = z->bitcnt > 8 ? z->bitcnt - 8 : 0;
  }
  z->bitbuf = 0;
}

/* ---- Huffman code construction ---------------------------------------- */

/*
 * Sets |lens| (n entries) to the lengths of a Huffman code for |freq|
 * with no length over |limit|. Codes with zero frequency get length 0;
 * at least two codes get a length, so every code is complete. When the
 * optimal code is too deep, the frequencies are flattened (halved, kept
 * nonzero) and the code rebuilt.
 */
static void build_lengths(const uint16_t *freq, unsigned n, unsigned limit,
                          uint8_t *lens) {
  uint32_t w[2 * 288];     /* weights: leaves, then internal nodes */
  uint16_t parent[2 * 288];
  uint16_t leaf[288];      /* used symbols, by increasing weight */
  uint8_t depth[2 * 288];
  unsigned m = 0, s;

  memset(lens, 0, n);
  for (s = 0; s < n; s++)
    if (freq[s]) leaf[m++] = (uint16_t)s;
  if (m < 2) {
    /* one or no symbol: two codes of one bit */
    unsigned a = m ? leaf[0] : 0;
    lens[a] = 1;
    lens[a == 0 ? 1 : 0] = 1;
    return;
  }
  uint32_t f[288];
  for (unsigned i = 0; i < m; i++) f[i] = freq[leaf[i]];

  for (;;) {
    /* insertion sort of the leaves by weight (stable by symbol) */
    uint16_t order[288];
    for (unsigned i = 0; i < m; i++) {
      unsigned j = i;
      /* order[0..i-1] were written by the earlier rounds; cppcheck's
       * value flow does not see that j - 1 < i. */
      /* cppcheck-suppress uninitvar */
      while (j > 0 && f[order[j - 1]] > f[i]) {
        order[j] = order[j - 1];
        j--;
      }
      order[j] = (uint16_t)i;
    }
    for (unsigned i = 0; i < m; i++) w[i] = f[order[i]];
    /* two queues: leaves in order, internal nodes in creation order */
    unsigned li = 0, ni = m, nend = m;
    while (nend < 2 * m - 1) {
      unsigned pick[2];
      for (int k = 0; k < 2; k++) {
        if (li < m && (ni >= nend || w[li] <= w[ni]))
          pick[k] = li++;
        else
          pick[k] = ni++;
      }
      w[nend] = w[pick[0]] + w[pick[1]];
      parent[pick[0]] = parent[pick[1]] = (uint16_t)nend;
      nend++;
    }
    unsigned root = 2 * m - 2, maxd = 0;
    depth[root] = 0;
    for (unsigned i = root; i-- > 0;) {
      depth[i] = (uint8_t)(depth[parent[i]] + 1);
      if (i < m && depth[i] > maxd) maxd = depth[i];
    }
    if (maxd <= limit) {
      for (unsigned i = 0; i < m; i++) lens[leaf[order[i]]] = depth[i];
      return;
    }
    for (unsigned i = 0; i < m; i++) f[i] = (f[i] >> 1) | 1u;
  }
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed for LSB-first output. */
static void gen_codes(const uint8_t *lens, unsigned n, uint16_t *codes) {
  unsigned count[16] = {0}, next[16];
  unsigned s, len, code = 0;
  for (s = 0; s < n; s++) count[lens[s]]++;
  count[0] = 0;
  for (len = 1; len < 16; len++) {
    code = (code + count[len - 1]) << 1;
    next[len] = code;
  }
  for (s = 0; s < n; s++) {
    len = lens[s];
    if (!len) {
      codes[s] = 0;
      continue;
    }
    unsigned c = next[len]++, r = 0;
    for (unsigned i = 0; i < len; i++) {
      r = (r << 1) | (c & 1u);
      c >>= 1;
    }
    codes[s] = (uint16_t)r;
  }
}

static void fixed_lens(uint8_t *ll, uint8_t *dl) {
  unsigned s;
  for (s = 0; s < 144; s++) ll[s] = 8;
  for (; s < 256; s++) ll[s] = 9;
  for (; s < 280; s++) ll[s] = 7;
  for (; s < 288; s++) ll[s] = 8;
  for (s = 0; s < 30; s++) dl[s] = 5;
}

/* Bits to code the buffered symbols with the given lengths. */
static uint64_t data_cost(const ws_deflater *z, const uint8_t *ll,
                          const uint8_t *dl) {
  uint64_t c = 0;
  unsigned i;
  for (i = 0; i < 286; i++) c += (uint64_t)z->lfreq[i] * ll[i];
  for (i = 0; i < 29; i++) c += (uint64_t)z->lfreq[257 + i] * len_extra[i];
  for (i = 0; i < 30; i++)
    c += (uint64_t)z->dfreq[i] * (uint64_t)(dl[i] + dist_extra[i]);
  return c;
}

static void write_syms(ws_deflater *z, const uint8_t *ll, const uint16_t *lc,
                       const uint8_t *dl, const uint16_t *dc) {
  const uint32_t *sy = z->syms;
  for (uint32_t i = 0, n = z->nsyms; i < n; i++) {
    uint32_t s = sy[i];
    uint32_t dist = s >> 8;
    if (dist == 0) {
      put_bits(z, lc[s], ll[s]);
      continue;
    }
    uint32_t l = s & 0xffu;
    unsigned c = len_code[l];
    put_bits(z, lc[257 + c] | (l + 3 - len_base[c]) << ll[257 + c],
             ll[257 + c] + len_extra[c]);
    unsigned d = dist_code(dist);
    put_bits(z, dc[d] | (dist - dist_base[d]) << dl[d], dl[d] + dist_extra[d]);
  }
  put_bits(z, lc[256], ll[256]);
}

/* Writes the buffered symbols as one block into pend (which has room:
 * see pendcap) and starts the next block. */
static void emit_block(ws_deflater *z) {
  uint8_t ll[288], dl[30], cl[19];
  uint16_t lc[288], dc[30], cc[19];
  uint8_t rs[286 + 30], rx[286 + 30];
  uint16_t cfreq[19] = {0};
  unsigned nr = 0, i;

  z->lfreq[256] = 1;
  build_lengths(z->lfreq, 286, 15, ll);
  build_lengths(z->dfreq, 30, 15, dl);
  ll[286] = ll[287] = 0;

  unsigned hlit = 286, hdist = 30;
  while (hlit > 257 && ll[hlit - 1] == 0) hlit--;
  while (hdist > 1 && dl[hdist - 1] == 0) hdist--;
  uint8_t all[286 + 30];
  memcpy(all, ll, hlit);
  memcpy(all + hlit, dl, hdist);
  unsigned total = hlit + hdist;
  for (i = 0; i < total;) {
    uint8_t v = all[i];
    unsigned run = 1;
    while (i + run < total && all[i + run] == v) run++;
    i += run;
    if (v == 0) {
      while (run >= 11) {
        unsigned k = run > 138 ? 138 : run;
        rs[nr] = 18, rx[nr++] = (uint8_t)(k - 11);
        run -= k;
      }
      if (run >= 3) {
        rs[nr] = 17, rx[nr++] = (uint8_t)(run - 3);
        run = 0;
      }
    } else {
      rs[nr] = v, rx[nr++] = 0;
      run--;
      while (run >= 3) {
        unsigned k = run > 6 ? 6 : run;
        rs[nr] = 16, rx[nr++] = (uint8_t)(k - 3);
        run -= k;
      }
    }
    while (run > 0) {
      rs[nr] = v, rx[nr++] = 0;
      run--;
    }
  }
  /* rs[0..nr-1] were all written above (nr counts them); cppcheck only
   * sees that the loop above may run zero times (it cannot: total is at
   * least 258). */
  /* cppcheck-suppress uninitvar */
  for (i = 0; i < nr; i++) cfreq[rs[i]]++;
  build_lengths(cfreq, 19, 7, cl);
  unsigned hclen = 19;
  while (hclen > 4 && cl[clen_order[hclen - 1]] == 0) hclen--;

  uint64_t dyn = 3 + 14 + 3 * (uint64_t)hclen + data_cost(z, ll, dl);
  for (i = 0; i < nr; i++)
    dyn += cl[rs[i]] + (rs[i] == 16 ? 2u : rs[i] == 17 ? 3u : rs[i] == 18 ? 7u : 0u);
  uint8_t fl[288], fd[30];
  fixed_lens(fl, fd);
  uint64_t fix = 3 + data_cost(z, fl, fd);
  uint64_t sto = UINT64_MAX;
  uint32_t raw = 0;
  /* The symbols cover the bytes up to pos, less one still held back by
   * lazy matching. */
  uint32_t covered = z->pos - (uint32_t)(z->have_prev != 0);
  if (z->block_start >= 0) {
    raw = covered - (uint32_t)z->block_start;
    uint32_t nblk = raw ? (raw + 65534) / 65535 : 1;
    sto = (uint64_t)nblk * 40 + 8 * (uint64_t)raw + 7;
  }

  if (sto <= fix && sto <= dyn) {
    const uint8_t *p = z->buf + z->block_start;
    do {
      uint32_t k = raw > 65535 ? 65535 : raw;
      put_bits(z, 0, 3);
      align_bits(z);
      uint8_t *q = z->pend + z->pendlen;
      q[0] = (uint8_t)k;
      q[1] = (uint8_t)(k >> 8);
      q[2] = (uint8_t)~k;
      q[3] = (uint8_t)(~k >> 8);
      memcpy(q + 4, p, k);
      z->pendlen += 4 + k;
      p += k;
      raw -= k;
    } while (raw > 0);
  } else if (fix <= dyn) {
    put_bits(z, 1u << 1, 3);
    gen_codes(fl, 288, lc);
    gen_codes(fd, 30, dc);
    write_syms(z, fl, lc, fd, dc);
  } else {
    put_bits(z, 2u << 1, 3);
    put_bits(z, (hlit - 257) | (hdist - 1) << 5 | (hclen - 4) << 10, 14);
    for (i = 0; i < hclen; i++) put_bits(z, cl[clen_order[i]], 3);
    gen_codes(cl, 19, cc);
    for (i = 0; i < nr; i++) {
      unsigned s = rs[i];
      put_bits(z, cc[s], cl[s]);
      if (s >= 16) put_bits(z, rx[i], s == 16 ? 2u : s == 17 ? 3u : 7u);
    }
    gen_codes(ll, 288, lc);
    gen_codes(dl, 30, dc);
    write_syms(z, ll, lc, dl, dc);
  }
  z->nsyms = 0;
  z->block_start = (int64_t)covered;
  memset(z->lfreq, 0, sizeof(z->lfreq));
  memset(z->dfreq, 0, sizeof(z->dfreq));
}

/* ---- matching ------------------------------------------------------------ */

static inline uint32_t load32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline uint32_t hash3(const uint8_t *p, unsigned hb) {
  return ((load32le(p) & 0xffffffu) * 2654435761u) >> (32 - hb);
}

static inline uint32_t hash4(const uint8_t *p, unsigned hb) {
  return (load32le(p) * 2654435761u) >> (32 - hb);
}

/* Length of the common prefix of |a| and |b|, at most |max|. */
static inline uint32_t match_len(const uint8_t *a, const uint8_t *b,
                                 uint32_t max) {
  uint32_t n = 0;
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                           \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (n + 8 <= max) {
    uint64_t x, y;
    memcpy(&x, a + n, 8);
    memcpy(&y, b + n, 8);
    if (x != y) return n + (uint32_t)__builtin_ctzll(x ^ y) / 8;
    n += 8;
  }
#endif
  while (n < max && a[n] == b[n]) n++;
  return n;
}

/* Inserts position |pos| in its hash chain; returns the distance to the
 * previous position with that hash (0 if none is usable). */
static inline uint32_t insert3(ws_deflater *z, uint32_t pos) {
  uint32_t h = hash3(z->buf + pos, z->hbits);
  uint32_t abs = z->abspos + pos;
  uint16_t old = z->head[h];
  z->head[h] = (uint16_t)abs;
  z->prev[abs & (z->wsize - 1)] = old;
  return (uint16_t)(abs - old);
}

static inline void advance(ws_deflater *z, uint32_t k) {
  z->pos += k;
  z->lookahead -= k;
  z->hist = z->hist + k > z->wsize ? z->wsize : z->hist + k;
}

/* Longest match at |pos| along the chain starting |dist| back, longer
 * than |best|; sets |*pdist| when one is found. */
static uint32_t longest_match(const ws_deflater *z, uint32_t pos,
                              uint32_t dist, uint32_t best, uint32_t *pdist,
                              const level_cfg *cfg) {
  const uint8_t *cur = z->buf + pos;
  uint32_t max = z->lookahead < MAX_MATCH ? z->lookahead : MAX_MATCH;
  uint32_t nice = cfg->nice < max ? cfg->nice : max;
  uint32_t maxd = z->hist;
  uint32_t chain = cfg->chain;
  uint32_t abs = z->abspos + pos, wmask = z->wsize - 1;
  if (best >= cfg->good) chain >>= 2;
  if (best >= max) return best;
  for (;;) {
    if (dist == 0 || dist > maxd) break;
    const uint8_t *m = cur - dist;
    if (m[best] == cur[best] && m[0] == cur[0] && m[1] == cur[1]) {
      uint32_t len = match_len(cur, m, max);
      if (len > best) {
        best = len;
        *pdist = dist;
        if (len >= nice) break;
      }
    }
    if (--chain == 0) break;
    uint32_t nd = (uint16_t)(abs - z->prev[(abs - dist) & wmask]);
    if (nd <= dist) break;
    dist = nd;
  }
  return best;
}

static inline void tally_lit(ws_deflater *z, uint8_t c) {
  z->syms[z->nsyms++] = c;
  z->lfreq[c]++;
}

static inline void tally_match(ws_deflater *z, uint32_t len, uint32_t dist) {
  z->syms[z->nsyms++] = dist << 8 | (len - MIN_MATCH);
  z->lfreq[257 + len_code[len - MIN_MATCH]]++;
  z->dfreq[dist_code(dist)]++;
}

/* Level 1: one probe of a 4-byte hash, greedy. */
static void compress_fast(ws_deflater *z, int final) {
  uint8_t *buf = z->buf;
  const unsigned hb = z->hbits;
  uint16_t *head = z->head;
  while (z->nsyms < z->nsyms_max) {
    uint32_t look = z->lookahead;
    if (look < LOOK && (!final || look == 0)) break;
    uint32_t pos = z->pos;
    if (look >= 4) {
      uint32_t h = hash4(buf + pos, hb);
      uint32_t abs = z->abspos + pos;
      uint32_t dist = (uint16_t)(abs - head[h]);
      head[h] = (uint16_t)abs;
      if (dist != 0 && dist <= z->hist &&
          load32le(buf + pos - dist) == load32le(buf + pos)) {
        uint32_t max = look < MAX_MATCH ? look : MAX_MATCH;
        uint32_t len = 4 + match_len(buf + pos + 4, buf + pos + 4 - dist, max - 4);
        tally_match(z, len, dist);
        /* hash a few positions inside short matches */
        if (len <= 8) {
          for (uint32_t k = 1; k < len && look - k >= 4; k++) {
            head[hash4(buf + pos + k, hb)] = (uint16_t)(abs + k);
          }
        } else if (look - len + 2 >= 4) {
          head[hash4(buf + pos + len - 2, hb)] = (uint16_t)(abs + len - 2);
        }
        advance(z, len);
        continue;
      }
    }
    tally_lit(z, buf[pos]);
    advance(z, 1);
  }
}

/* Levels 2-3: hash chains, greedy. */
static void compress_greedy(ws_deflater *z, int final, const level_cfg *cfg) {
  while (z->nsyms < z->nsyms_max) {
    uint32_t look = z->lookahead;
    if (look < LOOK && (!final || look == 0)) break;
    uint32_t pos = z->pos, len = MIN_MATCH - 1, dist = 0;
    if (look >= MIN_MATCH) {
      uint32_t cand = insert3(z, pos);
      len = longest_match(z, pos, cand, MIN_MATCH - 1, &dist, cfg);
      if (len == MIN_MATCH && dist > TOO_FAR) len = MIN_MATCH - 1;
    }
    if (len >= MIN_MATCH) {
      tally_match(z, len, dist);
      if (len <= cfg->lazy) {
        for (uint32_t k = 1; k < len && look - k >= MIN_MATCH; k++)
          (void)insert3(z, pos + k);
      }
      advance(z, len);
    } else {
      tally_lit(z, z->buf[pos]);
      advance(z, 1);
    }
  }
}

/* Levels 4-9: hash chains with lazy evaluation: a match is taken only
 * if the next position does not start a longer one. */
static void compress_lazy(ws_deflater *z, int final, const level_cfg *cfg) {
  while (z->nsyms < z->nsyms_max) {
    uint32_t look = z->lookahead;
    if (look < LOOK && (!final || look == 0)) break;
    uint32_t pos = z->pos, len = MIN_MATCH - 1, dist = 0;
    uint32_t plen = z->have_prev ? z->prev_len : MIN_MATCH - 1;
    if (look >= MIN_MATCH) {
      uint32_t cand = insert3(z, pos);
      if (plen < cfg->lazy) {
        len = longest_match(z, pos, cand, plen, &dist, cfg);
        if (len == plen) len = MIN_MATCH - 1; /* nothing longer */
        if (len == MIN_MATCH && dist > TOO_FAR) len = MIN_MATCH - 1;
      }
    }
    if (plen >= MIN_MATCH && len <= plen) {
      /* the match at pos-1 wins */
      tally_match(z, plen, z->prev_dist);
      uint32_t end = pos - 1 + plen; /* first position after it */
      for (uint32_t p = pos + 1; p < end; p++)
        if (z->lookahead - (p - pos) >= MIN_MATCH) (void)insert3(z, p);
      advance(z, end - pos);
      z->have_prev = 0;
      z->prev_len = MIN_MATCH - 1;
      continue;
    }
    if (z->have_prev) tally_lit(z, z->buf[pos - 1]);
    z->have_prev = 1;
    z->prev_len = len;
    z->prev_dist = dist;
    advance(z, 1);
  }
  if (final && z->lookahead == 0 && z->have_prev && z->nsyms < z->nsyms_max) {
    tally_lit(z, z->buf[z->pos - 1]);
    z->have_prev = 0;
    z->prev_len = MIN_MATCH - 1;
  }
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

/* Appends input to the buffer, first dropping history older than W when
 * space runs short. Returns the bytes taken. */
static size_t fill(ws_deflater *z, const uint8_t *in, size_t inlen) {
  uint32_t end = z->pos + z->lookahead;
  if (z->bufsize - end < LOOK && z->pos > z->wsize) {
    uint32_t d = z->pos - z->wsize;
    memmove(z->buf, z->buf + d, end - d);
    z->pos -= d;
    z->abspos += d;
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
      emit_block(z);
      continue;
    }
    if (ip < inlen) continue;
    if (!final) break;
    if (!all_compressed(z)) continue;
    if (z->nsyms > 0) emit_block(z);
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
