/*
 * The DEFLATE block writer (RFC 1951 3.2.5 - 3.2.7) of ws_deflate.c:
 * Huffman code lengths and canonical codes for the buffered symbols, the
 * run coding of the code lengths, the cost of each kind of block, and
 * the block itself (stored, fixed or dynamic) written into pend.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_deflate_block.h"

#include <string.h>

/* the whole file: build switches (README "Firmware") */
#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)

const uint8_t ws_deflate_len_code[256] = {
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
const uint8_t ws_deflate_dist_code_tab[512] = {
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
    unsigned c = ws_deflate_len_code[l];
    put_bits(z, lc[257 + c] | (l + 3 - len_base[c]) << ll[257 + c],
             ll[257 + c] + len_extra[c]);
    unsigned d = dist_code(dist);
    put_bits(z, dc[d] | (dist - dist_base[d]) << dl[d], dl[d] + dist_extra[d]);
  }
  put_bits(z, lc[256], ll[256]);
}

/* What emit_block() learns about a block before writing it: the
 * lengths of both codes run coded (symbols |rs|, extra values |rx|), the
 * header's counts, and the bits each kind of block would take. */
typedef struct block_plan {
  uint8_t *rs, *rx;
  unsigned nr, hlit, hdist, hclen;
  uint64_t dyn, fix, sto;
  uint32_t raw; /* bytes the block covers, when still in the buffer */
} block_plan;

/* The literal/length and distance codes' lengths (into z->work), and
 * how many of each the header lists (trailing zeros dropped). */
static void build_codes(ws_deflater *z, block_plan *b) {
  ws_deflate_work *w = z->work;
  uint16_t *ha = (uint16_t *)(void *)z->pend;
  uint16_t *hsym = (uint16_t *)(void *)(z->pend + SCR_SYM);
  z->lfreq[256] = 1;
  build_lengths(ha, hsym, z->lfreq, 286, 15, w->ll);
  build_lengths(ha, hsym, z->dfreq, 30, 15, w->dl);
  w->ll[286] = w->ll[287] = 0;
  b->hlit = 286;
  b->hdist = 30;
  while (b->hlit > 257 && w->ll[b->hlit - 1] == 0)
    b->hlit--;
  while (b->hdist > 1 && w->dl[b->hdist - 1] == 0)
    b->hdist--;
}

/* RFC 1951 3.2.7: the lengths of both codes as one sequence, runs
 * coded with 16 (repeat previous), 17 and 18 (zeros). The sequence is
 * put together where build_lengths() works (free until the code
 * length code is built); see SCR_RUNS. */
static void run_code_lengths(ws_deflater *z, block_plan *b) {
  const ws_deflate_work *w = z->work;
  uint8_t *rs = z->pend + (PEND_HEAD + (size_t)2 * z->nsyms_max - SCR_RUNS);
  uint8_t *rx = rs + SCR_RUNS / 2;
  unsigned total = b->hlit + b->hdist, nr = 0, i;
  uint8_t *all = z->pend;
  memcpy(all, w->ll, b->hlit);
  memcpy(all + b->hlit, w->dl, b->hdist);
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
  b->rs = rs;
  b->rx = rx;
  b->nr = nr;
}

/* The code length code's lengths (into z->work) and how many the
 * header lists, in clen_order. */
static void build_clen_code(ws_deflater *z, block_plan *b) {
  uint8_t *cl = z->work->cl;
  uint16_t cfreq[19] = {0};
  for (unsigned i = 0; i < b->nr; i++)
    cfreq[b->rs[i]]++;
  build_lengths((uint16_t *)(void *)z->pend,
                (uint16_t *)(void *)(z->pend + SCR_SYM), cfreq, 19, 7, cl);
  b->hclen = 19;
  while (b->hclen > 4 && cl[clen_order[b->hclen - 1]] == 0)
    b->hclen--;
}

/* The bits of the block as dynamic, fixed and (when its bytes are still
 * in the buffer) stored; returns the buffer index the symbols cover up
 * to: pos, less one still held back by lazy matching. */
static uint32_t block_costs(const ws_deflater *z, block_plan *b) {
  const ws_deflate_work *w = z->work;
  uint64_t ext = extra_cost(z);
  b->dyn = 3 + 14 + 3 * (uint64_t)b->hclen + code_cost(z, w->ll, w->dl) + ext;
  for (unsigned i = 0; i < b->nr; i++) {
    unsigned s = b->rs[i];
    b->dyn += w->cl[s] + (s == 16 ? 2u : s == 17 ? 3u : s == 18 ? 7u : 0u);
  }
  b->fix = 3 + fixed_code_cost(z) + ext;
  b->sto = UINT64_MAX;
  b->raw = 0;
  uint32_t covered = z->pos - (uint32_t)(z->have_prev != 0);
  if (z->block_start >= 0) {
    b->raw = covered - (uint32_t)z->block_start;
    uint32_t nblk = b->raw ? (b->raw + 65534) / 65535 : 1;
    b->sto = (uint64_t)nblk * 40 + 8 * (uint64_t)b->raw + 7;
  }
  return covered;
}

/* Stored blocks of at most 65,535 bytes each, at least one. */
static void write_stored(ws_deflater *z, uint32_t raw) {
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
}

static void write_fixed(ws_deflater *z) {
  ws_deflate_work *w = z->work;
  put_bits(z, 1u << 1, 3);
  fixed_lens(w->ll, w->dl);
  write_syms(z, w->ll, fixed_lc, w->dl, fixed_dc);
}

/* The header (counts, code length code, run-coded lengths), then the
 * symbols with their canonical codes. */
static void write_dynamic(ws_deflater *z, const block_plan *b) {
  ws_deflate_work *w = z->work;
  const uint8_t *cl = w->cl;
  unsigned i;
  put_bits(z, 2u << 1, 3);
  put_bits(z, (b->hlit - 257) | (b->hdist - 1) << 5 | (b->hclen - 4) << 10, 14);
  for (i = 0; i < b->hclen; i++)
    put_bits(z, cl[clen_order[i]], 3);
  gen_codes(cl, 19, w->cc);
  for (i = 0; i < b->nr; i++) {
    unsigned s = b->rs[i];
    put_bits(z, w->cc[s], cl[s]);
    if (s >= 16) put_bits(z, b->rx[i], s == 16 ? 2u : s == 17 ? 3u : 7u);
  }
  gen_codes(w->ll, 288, w->lc);
  gen_codes(w->dl, 30, w->dc);
  write_syms(z, w->ll, w->lc, w->dl, w->dc);
}

void ws_deflate_emit_block(ws_deflater *z) {
  block_plan b;
  build_codes(z, &b);
  run_code_lengths(z, &b);
  build_clen_code(z, &b);
  uint32_t covered = block_costs(z, &b);
  if (b.sto <= b.fix && b.sto <= b.dyn)
    write_stored(z, b.raw);
  else if (b.fix <= b.dyn)
    write_fixed(z);
  else
    write_dynamic(z, &b);
  z->nsyms = 0;
  z->block_start = (int64_t)covered;
  memset(z->lfreq, 0, sizeof(z->lfreq));
  memset(z->dfreq, 0, sizeof(z->dfreq));
}

#else
typedef int ws_deflate_block_left_out; /* (an empty file is not ISO C) */
#endif
