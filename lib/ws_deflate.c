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
 * table lives in the heap block: the stack stays small.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_deflate.h"

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

static const uint8_t len_code[256] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  8,  9,  9,  10, 10, 11, 11, 12, 12, 12,
    12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16,
    16, 16, 17, 17, 17, 17, 17, 17, 17, 17, 18, 18, 18, 18, 18, 18, 18, 18, 19,
    19, 19, 19, 19, 19, 19, 19, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20,
    20, 20, 20, 20, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21,
    21, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23,
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25,
    25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25,
    25, 25, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27,
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    27, 27, 27, 27, 27, 27, 27, 27, 28,
};
static const uint8_t dist_code_tab[512] = {
    0,  1,  2,  3,  4,  4,  5,  5,  6,  6,  6,  6,  7,  7,  7,  7,  8,  8,  8,
    8,  8,  8,  8,  8,  9,  9,  9,  9,  9,  9,  9,  9,  10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11, 11,
    11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13,
    13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 0,  14, 16, 17, 18, 18, 19, 19, 20, 20,
    20, 20, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 23, 23,
    23, 23, 23, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    27, 27, 27, 27, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
};

/* RFC 1951 3.2.5 */
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
                                      1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                                      4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t len_base[29] = {
    3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
    31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t dist_extra[30] = {0, 0, 0,  0,  1,  1,  2,  2,  3,  3,
                                       4, 4, 5,  5,  6,  6,  7,  7,  8,  8,
                                       9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint16_t dist_base[30] = {
    1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
    33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
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
    {0, 0, 0, 0, 0},         {0, 0, 0, 0, 0}, /* level 1: its own loop */
    {4, 4, 16, 8, 0},        {4, 6, 32, 32, 0},      {4, 4, 16, 16, 1},
    {8, 16, 32, 32, 1},      {8, 16, 128, 128, 1},   {8, 32, 128, 256, 1},
    {32, 128, 258, 1024, 1}, {32, 258, 258, 4096, 1}};

static inline unsigned dist_code(uint32_t d) {
  return d <= 256 ? dist_code_tab[d - 1] : dist_code_tab[256 + ((d - 1) >> 7)];
}

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

/*
 * Symbols and output share one region (pend) of PEND_HEAD + 6N bytes:
 * the symbols (4 bytes each) fill its last 4N bytes, and a block is
 * written from its start while they are read. A block's header takes at
 * most 4,498 bits (3 + 14 + 19*3, and 316 code length codes of at most
 * 7 + 7 bits) and a symbol at most 48 (15 + 5 for the length, 15 + 13
 * for the distance), so before symbol i is read at most 567 + 6i bytes
 * (with up to 31 bits already pending) were written: below its offset
 * PEND_HEAD - 16 + 2N + 4i. The 16 bytes left at the end take the end
 * of block code and the empty stored block of a flush. A stored block
 * is written only when it costs no more than the fixed code would, at
 * most 31 bits a symbol, so it fits too.
 */
#define PEND_HEAD (568u + 16u)

/* History plus lookahead: max(W, N) + max(W, 2*LOOK) <= 65,536, so
 * that every index fits the 16-bit hash entries. Room for N bytes
 * behind the position lets a block of N literals (data that does not
 * compress) still be written stored when W < N: see fill(). */
static size_t bufsize_for(unsigned window_bits) {
  size_t w = (size_t)1 << window_bits, n = nsyms_for(window_bits);
  size_t look2 = (size_t)2 * LOOK;
  return (w > n ? w : n) + (w > look2 ? w : look2);
}

/* Tables of emit_block() that live while a block is written, in the
 * heap block to keep the stack small. */
struct ws_deflate_work {
  uint16_t lc[288], dc[30], cc[19]; /* codes, bit-reversed */
  uint8_t ll[288], dl[30], cl[19];  /* code lengths */
};

/* Work space that is dead once a block's output starts, at the start of
 * pend (empty when a block is built; its first 2N + 584 bytes stay clear
 * of the symbols): build_lengths() at 0 (two arrays of 288 uint16_t; the
 * run coding's input sequence, 316 bytes, there too), and the run coding
 * itself (316 symbols, 316 extra values) ending at 2N + 584, beyond the
 * at most 567 bytes the block header takes before they are read. */
#define SCR_SYM 576u
#define SCR_RUNS 632u /* 2 * 316, below PEND_HEAD + 2N */
_Static_assert(PEND_HEAD + 2u * 1024u - SCR_RUNS >= 2u * SCR_SYM &&
                   PEND_HEAD + 2u * 1024u - SCR_RUNS >= 567u,
               "with N >= 1024 the work spaces in pend do not overlap");

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

/* Bits reversed within a byte. */
static const uint8_t rev8[256] = {
    0,  128, 64, 192, 32, 160, 96,  224, 16, 144, 80, 208, 48, 176, 112, 240,
    8,  136, 72, 200, 40, 168, 104, 232, 24, 152, 88, 216, 56, 184, 120, 248,
    4,  132, 68, 196, 36, 164, 100, 228, 20, 148, 84, 212, 52, 180, 116, 244,
    12, 140, 76, 204, 44, 172, 108, 236, 28, 156, 92, 220, 60, 188, 124, 252,
    2,  130, 66, 194, 34, 162, 98,  226, 18, 146, 82, 210, 50, 178, 114, 242,
    10, 138, 74, 202, 42, 170, 106, 234, 26, 154, 90, 218, 58, 186, 122, 250,
    6,  134, 70, 198, 38, 166, 102, 230, 22, 150, 86, 214, 54, 182, 118, 246,
    14, 142, 78, 206, 46, 174, 110, 238, 30, 158, 94, 222, 62, 190, 126, 254,
    1,  129, 65, 193, 33, 161, 97,  225, 17, 145, 81, 209, 49, 177, 113, 241,
    9,  137, 73, 201, 41, 169, 105, 233, 25, 153, 89, 217, 57, 185, 121, 249,
    5,  133, 69, 197, 37, 165, 101, 229, 21, 149, 85, 213, 53, 181, 117, 245,
    13, 141, 77, 205, 45, 173, 109, 237, 29, 157, 93, 221, 61, 189, 125, 253,
    3,  131, 67, 195, 35, 163, 99,  227, 19, 147, 83, 211, 51, 179, 115, 243,
    11, 139, 75, 203, 43, 171, 107, 235, 27, 155, 91, 219, 59, 187, 123, 251,
    7,  135, 71, 199, 39, 167, 103, 231, 23, 151, 87, 215, 55, 183, 119, 247,
    15, 143, 79, 207, 47, 175, 111, 239, 31, 159, 95, 223, 63, 191, 127, 255};

/*
 * Sets |lens| (n entries) to the lengths of a Huffman code for |freq|
 * with no length over |limit|. Codes with zero frequency get length 0;
 * at least two codes get a length, so every code is complete. When the
 * optimal code is too deep, the frequencies are flattened (halved, kept
 * nonzero) and the code rebuilt.
 *
 * The lengths come from the weights sorted in place: a first pass
 * merges the two lightest of the remaining leaves and subtrees into each
 * new subtree, keeping in the slot of a merged subtree the index of its
 * parent; a second pass turns those parent links into depths, root
 * first; a third hands out leaf depths level by level, the heaviest
 * leaves the shallowest. No memory beyond the sorted array.
 */
static void build_lengths(uint16_t *a, uint16_t *sym, const uint16_t *freq,
                          unsigned n, unsigned limit, uint8_t *lens) {
  unsigned m = 0, s, flat = 0;

  /* the used symbols, in order; runs of unused ones skipped 4 at a time */
  memset(lens, 0, n);
  for (s = 0; s + 4 <= n; s += 4) {
    uint64_t q;
    memcpy(&q, freq + s, 8);
    if (q == 0) continue;
    for (unsigned k = s; k < s + 4; k++)
      if (freq[k]) sym[m++] = (uint16_t)k;
  }
  for (; s < n; s++)
    if (freq[s]) sym[m++] = (uint16_t)s;
  if (m < 2) {
    /* one or no symbol: two codes of one bit */
    unsigned u = m ? sym[0] : 0;
    lens[u] = 1;
    lens[u == 0 ? 1 : 0] = 1;
    return;
  }
  for (;;) {
    /* weights in increasing order, ties in symbol order: an insertion
     * sort of sym[] in place (sym[i] is read before the sorted prefix
     * grows over it) */
    for (unsigned i = 0; i < m; i++) {
      unsigned u = sym[i], f = freq[u];
      for (unsigned k = 0; k < flat; k++)
        f = (f >> 1) | 1u;
      unsigned j = i;
      while (j > 0 && a[j - 1] > f) {
        a[j] = a[j - 1];
        sym[j] = sym[j - 1];
        j--;
      }
      a[j] = (uint16_t)f;
      sym[j] = (uint16_t)u;
    }
    /* merge: a leaf wins ties against a subtree */
    unsigned leaf = 0, node = 0, next;
    for (next = 0; next < m - 1; next++) {
      unsigned wt;
      if (leaf >= m || (node < next && a[node] < a[leaf])) {
        wt = a[node];
        a[node++] = (uint16_t)next;
      } else {
        wt = a[leaf++];
      }
      if (leaf >= m || (node < next && a[node] < a[leaf])) {
        wt += a[node];
        a[node++] = (uint16_t)next;
      } else {
        wt += a[leaf++];
      }
      a[next] = (uint16_t)wt;
    }
    /* parent links to depths (the root, m - 2, has depth 0) */
    a[m - 2] = 0;
    for (next = m - 2; next-- > 0;)
      a[next] = (uint16_t)(a[a[next]] + 1);
    /* leaves per level: each subtree at depth d frees two slots at d+1 */
    int in = (int)m - 2, out = (int)m - 1;
    unsigned avail = 1, depth = 0;
    while (avail > 0) {
      unsigned used = 0;
      while (in >= 0 && a[in] == depth) {
        used++;
        in--;
      }
      while (avail > used) {
        a[out--] = (uint16_t)depth;
        avail--;
      }
      avail = 2 * used;
      depth++;
    }
    if (a[0] <= limit) { /* a[0], the lightest leaf, is the deepest */
      for (unsigned i = 0; i < m; i++)
        lens[sym[i]] = (uint8_t)a[i];
      return;
    }
    /* too deep (rare): flatten the weights and start again from the
     * used symbols in order */
    flat++;
    m = 0;
    for (s = 0; s < n; s++)
      if (freq[s]) sym[m++] = (uint16_t)s;
  }
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed for LSB-first output. */
static void gen_codes(const uint8_t *lens, unsigned n, uint16_t *codes) {
  unsigned count[16] = {0}, next[16];
  unsigned s, len, code = 0;
  /* codes of unused symbols (length 0) are never read: runs of them are
   * skipped 8 at a time */
  for (s = 0; s + 8 <= n; s += 8) {
    uint64_t q;
    memcpy(&q, lens + s, 8);
    if (q == 0) continue;
    for (unsigned k = 0; k < 8; k++)
      count[lens[s + k]]++;
  }
  for (; s < n; s++)
    count[lens[s]]++;
  count[0] = 0;
  for (len = 1; len < 16; len++) {
    code = (code + count[len - 1]) << 1;
    next[len] = code;
  }
  for (s = 0; s < n; s++) {
    if ((s & 7u) == 0 && s + 8 <= n) {
      uint64_t q;
      memcpy(&q, lens + s, 8);
      if (q == 0) {
        s += 7;
        continue;
      }
    }
    len = lens[s];
    if (!len) continue;
    unsigned c = next[len]++;
    unsigned r = (unsigned)rev8[c & 255u] << 8 | rev8[(c >> 8) & 255u];
    codes[s] = (uint16_t)(r >> (16 - len));
  }
}

/* The fixed code (RFC 1951 3.2.6), bit-reversed for LSB-first output:
 * literal/length codes of 8, 9, 7 and 8 bits by range, distance codes
 * of 5 bits (what gen_codes() makes of fixed_lens()). */
static const uint16_t fixed_lc[288] = {
    12, 140, 76,  204, 44, 172, 108, 236, 28, 156, 92,  220, 60,  188, 124, 252,
    2,  130, 66,  194, 34, 162, 98,  226, 18, 146, 82,  210, 50,  178, 114, 242,
    10, 138, 74,  202, 42, 170, 106, 234, 26, 154, 90,  218, 58,  186, 122, 250,
    6,  134, 70,  198, 38, 166, 102, 230, 22, 150, 86,  214, 54,  182, 118, 246,
    14, 142, 78,  206, 46, 174, 110, 238, 30, 158, 94,  222, 62,  190, 126, 254,
    1,  129, 65,  193, 33, 161, 97,  225, 17, 145, 81,  209, 49,  177, 113, 241,
    9,  137, 73,  201, 41, 169, 105, 233, 25, 153, 89,  217, 57,  185, 121, 249,
    5,  133, 69,  197, 37, 165, 101, 229, 21, 149, 85,  213, 53,  181, 117, 245,
    13, 141, 77,  205, 45, 173, 109, 237, 29, 157, 93,  221, 61,  189, 125, 253,
    19, 275, 147, 403, 83, 339, 211, 467, 51, 307, 179, 435, 115, 371, 243, 499,
    11, 267, 139, 395, 75, 331, 203, 459, 43, 299, 171, 427, 107, 363, 235, 491,
    27, 283, 155, 411, 91, 347, 219, 475, 59, 315, 187, 443, 123, 379, 251, 507,
    7,  263, 135, 391, 71, 327, 199, 455, 39, 295, 167, 423, 103, 359, 231, 487,
    23, 279, 151, 407, 87, 343, 215, 471, 55, 311, 183, 439, 119, 375, 247, 503,
    15, 271, 143, 399, 79, 335, 207, 463, 47, 303, 175, 431, 111, 367, 239, 495,
    31, 287, 159, 415, 95, 351, 223, 479, 63, 319, 191, 447, 127, 383, 255, 511,
    0,  64,  32,  96,  16, 80,  48,  112, 8,  72,  40,  104, 24,  88,  56,  120,
    4,  68,  36,  100, 20, 84,  52,  116, 3,  131, 67,  195, 35,  163, 99,  227,
};
static const uint16_t fixed_dc[30] = {
    0,  16, 8,  24, 4,  20, 12, 28, 2,  18, 10, 26, 6,  22, 14,
    30, 1,  17, 9,  25, 5,  21, 13, 29, 3,  19, 11, 27, 7,  23,
};

/* RFC 1951 3.2.6 */
static void fixed_lens(uint8_t *ll, uint8_t *dl) {
  unsigned s;
  for (s = 0; s < 144; s++)
    ll[s] = 8;
  for (; s < 256; s++)
    ll[s] = 9;
  for (; s < 280; s++)
    ll[s] = 7;
  for (; s < 288; s++)
    ll[s] = 8;
  for (s = 0; s < 30; s++)
    dl[s] = 5;
}

/* Bits of the extra bits of the buffered lengths and distances. */
static uint64_t extra_cost(const ws_deflater *z) {
  uint64_t c = 0;
  for (unsigned i = 0; i < 29; i++)
    c += (uint64_t)z->lfreq[257 + i] * len_extra[i];
  for (unsigned i = 0; i < 30; i++)
    c += (uint64_t)z->dfreq[i] * dist_extra[i];
  return c;
}

/* Bits of the buffered codes (not their extra bits) with |ll| and |dl|. */
static uint64_t code_cost(const ws_deflater *z, const uint8_t *ll,
                          const uint8_t *dl) {
  uint64_t c = 0;
  unsigned i;
  for (i = 0; i + 4 <= 286; i += 4) { /* unused symbols 4 at a time */
    uint64_t q;
    memcpy(&q, z->lfreq + i, 8);
    if (q == 0) continue;
    for (unsigned k = i; k < i + 4; k++)
      c += (uint64_t)z->lfreq[k] * ll[k];
  }
  for (; i < 286; i++)
    c += (uint64_t)z->lfreq[i] * ll[i];
  for (i = 0; i < 30; i++)
    c += (uint64_t)z->dfreq[i] * dl[i];
  return c;
}

/* The same with the fixed code (RFC 1951 3.2.6), without its tables. */
static uint64_t fixed_code_cost(const ws_deflater *z) {
  uint64_t c8 = 0, c9 = 0, c7 = 0, cd = 0;
  unsigned i;
  for (i = 0; i < 144; i++)
    c8 += z->lfreq[i];
  for (; i < 256; i++)
    c9 += z->lfreq[i];
  for (; i < 280; i++)
    c7 += z->lfreq[i];
  for (; i < 286; i++)
    c8 += z->lfreq[i];
  for (i = 0; i < 30; i++)
    cd += z->dfreq[i];
  return 8 * c8 + 9 * c9 + 7 * c7 + 5 * cd;
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
 * see pendcap) and starts the next block. All tables are in z->work. */
static void emit_block(ws_deflater *z) {
  ws_deflate_work *w = z->work;
  uint8_t *ll = w->ll, *dl = w->dl, *cl = w->cl;
  uint16_t *ha = (uint16_t *)(void *)z->pend;
  uint16_t *hsym = (uint16_t *)(void *)(z->pend + SCR_SYM);
  uint8_t *rs = z->pend + (PEND_HEAD + (size_t)2 * z->nsyms_max - SCR_RUNS);
  uint8_t *rx = rs + SCR_RUNS / 2;
  uint16_t cfreq[19] = {0};
  unsigned nr = 0, i;

  z->lfreq[256] = 1;
  build_lengths(ha, hsym, z->lfreq, 286, 15, ll);
  build_lengths(ha, hsym, z->dfreq, 30, 15, dl);
  ll[286] = ll[287] = 0;

  unsigned hlit = 286, hdist = 30;
  while (hlit > 257 && ll[hlit - 1] == 0)
    hlit--;
  while (hdist > 1 && dl[hdist - 1] == 0)
    hdist--;
  /* RFC 1951 3.2.7: the lengths of both codes as one sequence, runs
   * coded with 16 (repeat previous), 17 and 18 (zeros). The sequence is
   * put together where build_lengths() works (free until the code
   * length code is built below); see SCR_RUNS. */
  unsigned total = hlit + hdist;
  uint8_t *all = z->pend;
  memcpy(all, ll, hlit);
  memcpy(all + hlit, dl, hdist);
  for (i = 0; i < total;) {
    uint8_t v = all[i];
    unsigned run = 1;
    while (i + run < total && all[i + run] == v)
      run++;
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
  for (i = 0; i < nr; i++)
    cfreq[rs[i]]++;
  build_lengths(ha, hsym, cfreq, 19, 7, cl);
  unsigned hclen = 19;
  while (hclen > 4 && cl[clen_order[hclen - 1]] == 0)
    hclen--;

  uint64_t ext = extra_cost(z);
  uint64_t dyn = 3 + 14 + 3 * (uint64_t)hclen + code_cost(z, ll, dl) + ext;
  for (i = 0; i < nr; i++)
    dyn += cl[rs[i]] + (rs[i] == 16   ? 2u
                        : rs[i] == 17 ? 3u
                        : rs[i] == 18 ? 7u
                                      : 0u);
  uint64_t fix = 3 + fixed_code_cost(z) + ext;
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

  uint16_t *lc = w->lc, *dc = w->dc, *cc = w->cc;
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
    fixed_lens(ll, dl);
    write_syms(z, ll, fixed_lc, dl, fixed_dc);
  } else {
    put_bits(z, 2u << 1, 3);
    put_bits(z, (hlit - 257) | (hdist - 1) << 5 | (hclen - 4) << 10, 14);
    for (i = 0; i < hclen; i++)
      put_bits(z, cl[clen_order[i]], 3);
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
  lfreq[257 + len_code[len - MIN_MATCH]]++;
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

#else
typedef int ws_deflate_left_out; /* (an empty file is not ISO C) */
#endif /* !WS_NO_DEFLATE && !WS_INFLATE_ONLY */
