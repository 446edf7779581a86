/*
 * Decoding tables for ws_inflate.c (the entry layout is described
 * there): built from a dynamic block's code lengths, and the fixed
 * code's, prebuilt.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ws_inflate_table.h"

#include <string.h>

/* the whole file: build switches (README "Firmware") */
#if !defined(WS_NO_DEFLATE)

/* Table entries of the length symbols 256..287 (end of block; RFC 1951
 * 3.2.5 base length and extra bits; 286 and 287 invalid) and of the
 * distance symbols 0..31 (3.2.5; 30 and 31 invalid). */
#define BX(base, extra) ((uint32_t)(base) << 16 | (uint32_t)(extra) << 8)
#if !WS_SMALL_CODE /* (size builds compute them: sym_entry()) */
static const uint32_t len_entry[32] = {
    E_EOB,      BX(3, 0),   BX(4, 0),   BX(5, 0),   BX(6, 0),   BX(7, 0),
    BX(8, 0),   BX(9, 0),   BX(10, 0),  BX(11, 1),  BX(13, 1),  BX(15, 1),
    BX(17, 1),  BX(19, 2),  BX(23, 2),  BX(27, 2),  BX(31, 2),  BX(35, 3),
    BX(43, 3),  BX(51, 3),  BX(59, 3),  BX(67, 4),  BX(83, 4),  BX(99, 4),
    BX(115, 4), BX(131, 5), BX(163, 5), BX(195, 5), BX(227, 5), BX(258, 0),
    E_BAD,      E_BAD};
static const uint32_t dist_entry[32] = {
    BX(1, 0),     BX(2, 0),     BX(3, 0),      BX(4, 0),      BX(5, 1),
    BX(7, 1),     BX(9, 2),     BX(13, 2),     BX(17, 3),     BX(25, 3),
    BX(33, 4),    BX(49, 4),    BX(65, 5),     BX(97, 5),     BX(129, 6),
    BX(193, 6),   BX(257, 7),   BX(385, 7),    BX(513, 8),    BX(769, 8),
    BX(1025, 9),  BX(1537, 9),  BX(2049, 10),  BX(3073, 10),  BX(4097, 11),
    BX(6145, 11), BX(8193, 12), BX(12289, 12), BX(16385, 13), BX(24577, 13),
    E_BAD,        E_BAD};

static inline uint32_t sym_entry(int type, unsigned sym) {
  if (type == T_CLEN) return (uint32_t)sym << 16;
  if (type == T_DIST) return dist_entry[sym & 31u];
  return sym < 256 ? E_LIT | (uint32_t)sym << 16 : len_entry[(sym - 256) & 31u];
}
#else
/* The same entries as the tables above, from the rule behind RFC 1951
 * 3.2.5's tables: past the first few, every group of codes (4 of
 * lengths, 2 of distances) has one more extra bit, and its bases step by
 * 2^extra from 4 (lengths, +3) or 2 (distances, +1) times 2^extra. */
static uint32_t sym_entry(int type, unsigned sym) {
  unsigned i, ex;
  if (type == T_CLEN) return (uint32_t)sym << 16;
  if (type == T_DIST) {
    i = sym & 31u;
    if (i >= 30) return E_BAD;
    if (i < 2) return BX(i + 1, 0);
    ex = (i >> 1) - 1;
    return BX(((2u + (i & 1u)) << ex) + 1, ex);
  }
  if (sym < 256) return E_LIT | (uint32_t)sym << 16;
  i = (sym - 256) & 31u;
  if (i == 0) return E_EOB;
  if (i >= 30) return E_BAD;
  if (i == 29) return BX(258, 0);
  if (i < 5) return BX(i + 2, 0);
  ex = (i - 5) >> 2;
  return BX(((4u + ((i - 5) & 3u)) << ex) + 3, ex);
}
#endif
#undef BX

/* Counts the codes of each length in |lens| (|n| of them) into |count|
 * (count[0] not used) and their number into |*pused|: runs of unused
 * symbols (length 0; most of the literals of a block) are skipped 8 at a
 * time. Returns the code space left unused, or -1 when oversubscribed. */
static int count_lengths(const uint8_t *lens, unsigned n, unsigned *count,
                         unsigned *pused) {
  unsigned s = 0, len, used = 0;
  int avail = 1;
#if !WS_SMALL_CODE /* (a speed path: the loop below counts them all too) */
  for (; s + 8 <= n; s += 8) {
    uint64_t w;
    memcpy(&w, lens + s, 8);
    if (w == 0) continue;
    for (unsigned k = 0; k < 8; k++)
      count[lens[s + k]]++;
  }
#endif
  for (; s < n; s++)
    count[lens[s]]++;
  for (len = 1; len < 16; len++) {
    avail = avail * 2 - (int)count[len];
    if (avail < 0) return -1; /* oversubscribed */
    used += count[len];
  }
  *pused = used;
  return avail;
}

/* The |used| symbols with a length into |sorted|, by length, then by
 * value. */
static void sort_by_length(const uint8_t *lens, unsigned n,
                           const unsigned *count, unsigned used,
                           uint16_t *sorted) {
  unsigned offs[16];
  unsigned s = 0, len;
  offs[1] = 0;
  for (len = 1; len < 15; len++)
    offs[len + 1] = offs[len] + count[len];
  offs[0] = used; /* unused symbols after the rest */
#if !WS_SMALL_CODE /* (a speed path, as in count_lengths()) */
  for (; s + 8 <= n; s += 8) {
    uint64_t w;
    memcpy(&w, lens + s, 8);
    if (w == 0) continue;
    for (unsigned k = 0; k < 8; k++)
      sorted[offs[lens[s + k]]++] = (uint16_t)(s + k);
  }
#endif
  for (; s < n; s++)
    sorted[offs[lens[s]]++] = (uint16_t)s;
}

/* Fills |tab| with the codes of the symbols |sorted| by length (|count|
 * of each, none longer than |maxlen|). Returns 0, or -1 when the
 * subtables need more than |cap| entries.
 *
 * |r| is the current codeword bit-reversed (RFC 1951 3.1.1: codes are
 * read from the least significant bit). Appending a 0 to a code (the
 * step to the next length) leaves its reversal unchanged, so the
 * reversed counter is carried from one length to the next and
 * incremented in place: clear the top bits that are set, then set the
 * first clear one. */
static int fill_table(uint32_t *tab, unsigned cap, unsigned root,
                      const unsigned *count, unsigned maxlen, int type,
                      const uint16_t *sorted) {
  unsigned left[16];
  unsigned len, rootsize = 1u << root;
  for (len = 0; len < 16; len++)
    left[len] = count[len];
  unsigned r = 0, i = 0, next = rootsize;
  unsigned cur_prefix = ~0u, sub_off = 0, sub_bits = 0;
  /* The root table is built |size| entries wide and doubled (a copy of
   * the part built so far) before each longer length: a code of length
   * l sits at its reversed value below 2^l, and every doubling repeats
   * it at all the indexes that share its low l bits. */
  unsigned size = 0;
  for (len = 1; len <= maxlen; len++) {
    if ((len <= root || size < rootsize) && count[len]) {
      unsigned want = len <= root ? 1u << len : rootsize;
      if (size == 0 && len <= root) size = want; /* nothing built yet */
      for (; size < want; size *= 2)
        memcpy(tab + size, tab, size * sizeof(*tab));
    }
    for (unsigned k = 0; k < count[len]; k++, i++) {
      uint32_t e = sym_entry(type, sorted[i]);
      unsigned cur = r;
      unsigned bit = 1u << (len - 1);
      while (r & bit) {
        r ^= bit;
        bit >>= 1;
      }
      r |= bit;
      if (len <= root) {
        tab[cur] = e | len;
        continue;
      }
      left[len]--; /* codes of this length still to place (> root only) */
      unsigned prefix = cur & (rootsize - 1);
      if (prefix != cur_prefix) {
        /* New subtable: deep enough for the subtree under this prefix,
         * which the following codes fill completely. */
        unsigned deep = len;
        int room = (1 << (len - root)) - (int)left[len] - 1;
        while (room > 0 && deep < maxlen) {
          deep++;
          room = room * 2 - (int)left[deep];
        }
        sub_bits = deep - root;
        sub_off = next;
        next += 1u << sub_bits;
        if (next > cap) return -1;
        cur_prefix = prefix;
        tab[prefix] = (uint32_t)sub_off << 16 | E_SUB | sub_bits << 8 | root;
      }
      unsigned sublen = len - root;
      for (unsigned j = cur >> root; j < (1u << sub_bits); j += 1u << sublen)
        tab[sub_off + j] = e | sublen;
    }
  }
  for (; size < rootsize; size *= 2)
    memcpy(tab + size, tab, size * sizeof(*tab));
  return 0;
}

/*
 * Builds the table for the |n| code lengths |lens| into |tab| (|cap|
 * entries) with |root| index bits. Returns 0, or -1 for an
 * oversubscribed code, an incomplete one (other than a single code of
 * length 1, or no code at all for distances), or a table overflow.
 */
int ws_inflate_build_table(uint32_t *tab, unsigned cap, unsigned root,
                           const uint8_t *lens, unsigned n, int type,
                           uint16_t *sorted) {
  unsigned count[16] = {0};
  unsigned used = 0;
  int avail = count_lengths(lens, n, count, &used);
  if (avail < 0) return -1;
  unsigned maxlen = 15;
  while (maxlen > 0 && count[maxlen] == 0)
    maxlen--;
  unsigned rootsize = 1u << root;
  if (avail > 0) {
    /* holes of an incomplete code decode as errors */
    for (unsigned s = 0; s < rootsize; s++)
      tab[s] = E_BAD | root;
    /* Incomplete: RFC 1951 allows one distance code of one bit, and no
     * distance codes at all; take the single code of length 1 for
     * literal/lengths too (it can only be the end-of-block code). */
    if (type == T_CLEN) return -1;
    if (!(used == 1 && count[1] == 1) && !(type == T_DIST && used == 0))
      return -1;
  }
  if (used == 0) return 0;
  sort_by_length(lens, n, count, used, sorted);
  return fill_table(tab, cap, root, count, maxlen, type, sorted);
}

/* The tables ws_inflate_build_table() makes for the fixed code (RFC 1951 3.2.6:
 * literal/length lengths 8, 9, 7, 8 by range, 32 distance codes of 5
 * bits), which need no subtables: read-only data, so fixed blocks cost
 * nothing to start. (Generated with ws_inflate_build_table(); the fixed-code
 * tests against zlib decode through them.) */
#if !WS_SMALL_CODE /* (built at run time there: ws_inflate.c) */
const uint32_t ws_inflate_fixed_lit[1u << LIT_ROOT] = {
    0x00002007u, 0x00508008u, 0x00108008u, 0x00730408u, 0x001f0207u,
    0x00708008u, 0x00308008u, 0x00c08009u, 0x000a0007u, 0x00608008u,
    0x00208008u, 0x00a08009u, 0x00008008u, 0x00808008u, 0x00408008u,
    0x00e08009u, 0x00060007u, 0x00588008u, 0x00188008u, 0x00908009u,
    0x003b0307u, 0x00788008u, 0x00388008u, 0x00d08009u, 0x00110107u,
    0x00688008u, 0x00288008u, 0x00b08009u, 0x00088008u, 0x00888008u,
    0x00488008u, 0x00f08009u, 0x00040007u, 0x00548008u, 0x00148008u,
    0x00e30508u, 0x002b0307u, 0x00748008u, 0x00348008u, 0x00c88009u,
    0x000d0107u, 0x00648008u, 0x00248008u, 0x00a88009u, 0x00048008u,
    0x00848008u, 0x00448008u, 0x00e88009u, 0x00080007u, 0x005c8008u,
    0x001c8008u, 0x00988009u, 0x00530407u, 0x007c8008u, 0x003c8008u,
    0x00d88009u, 0x00170207u, 0x006c8008u, 0x002c8008u, 0x00b88009u,
    0x000c8008u, 0x008c8008u, 0x004c8008u, 0x00f88009u, 0x00030007u,
    0x00528008u, 0x00128008u, 0x00a30508u, 0x00230307u, 0x00728008u,
    0x00328008u, 0x00c48009u, 0x000b0107u, 0x00628008u, 0x00228008u,
    0x00a48009u, 0x00028008u, 0x00828008u, 0x00428008u, 0x00e48009u,
    0x00070007u, 0x005a8008u, 0x001a8008u, 0x00948009u, 0x00430407u,
    0x007a8008u, 0x003a8008u, 0x00d48009u, 0x00130207u, 0x006a8008u,
    0x002a8008u, 0x00b48009u, 0x000a8008u, 0x008a8008u, 0x004a8008u,
    0x00f48009u, 0x00050007u, 0x00568008u, 0x00168008u, 0x00001008u,
    0x00330307u, 0x00768008u, 0x00368008u, 0x00cc8009u, 0x000f0107u,
    0x00668008u, 0x00268008u, 0x00ac8009u, 0x00068008u, 0x00868008u,
    0x00468008u, 0x00ec8009u, 0x00090007u, 0x005e8008u, 0x001e8008u,
    0x009c8009u, 0x00630407u, 0x007e8008u, 0x003e8008u, 0x00dc8009u,
    0x001b0207u, 0x006e8008u, 0x002e8008u, 0x00bc8009u, 0x000e8008u,
    0x008e8008u, 0x004e8008u, 0x00fc8009u, 0x00002007u, 0x00518008u,
    0x00118008u, 0x00830508u, 0x001f0207u, 0x00718008u, 0x00318008u,
    0x00c28009u, 0x000a0007u, 0x00618008u, 0x00218008u, 0x00a28009u,
    0x00018008u, 0x00818008u, 0x00418008u, 0x00e28009u, 0x00060007u,
    0x00598008u, 0x00198008u, 0x00928009u, 0x003b0307u, 0x00798008u,
    0x00398008u, 0x00d28009u, 0x00110107u, 0x00698008u, 0x00298008u,
    0x00b28009u, 0x00098008u, 0x00898008u, 0x00498008u, 0x00f28009u,
    0x00040007u, 0x00558008u, 0x00158008u, 0x01020008u, 0x002b0307u,
    0x00758008u, 0x00358008u, 0x00ca8009u, 0x000d0107u, 0x00658008u,
    0x00258008u, 0x00aa8009u, 0x00058008u, 0x00858008u, 0x00458008u,
    0x00ea8009u, 0x00080007u, 0x005d8008u, 0x001d8008u, 0x009a8009u,
    0x00530407u, 0x007d8008u, 0x003d8008u, 0x00da8009u, 0x00170207u,
    0x006d8008u, 0x002d8008u, 0x00ba8009u, 0x000d8008u, 0x008d8008u,
    0x004d8008u, 0x00fa8009u, 0x00030007u, 0x00538008u, 0x00138008u,
    0x00c30508u, 0x00230307u, 0x00738008u, 0x00338008u, 0x00c68009u,
    0x000b0107u, 0x00638008u, 0x00238008u, 0x00a68009u, 0x00038008u,
    0x00838008u, 0x00438008u, 0x00e68009u, 0x00070007u, 0x005b8008u,
    0x001b8008u, 0x00968009u, 0x00430407u, 0x007b8008u, 0x003b8008u,
    0x00d68009u, 0x00130207u, 0x006b8008u, 0x002b8008u, 0x00b68009u,
    0x000b8008u, 0x008b8008u, 0x004b8008u, 0x00f68009u, 0x00050007u,
    0x00578008u, 0x00178008u, 0x00001008u, 0x00330307u, 0x00778008u,
    0x00378008u, 0x00ce8009u, 0x000f0107u, 0x00678008u, 0x00278008u,
    0x00ae8009u, 0x00078008u, 0x00878008u, 0x00478008u, 0x00ee8009u,
    0x00090007u, 0x005f8008u, 0x001f8008u, 0x009e8009u, 0x00630407u,
    0x007f8008u, 0x003f8008u, 0x00de8009u, 0x001b0207u, 0x006f8008u,
    0x002f8008u, 0x00be8009u, 0x000f8008u, 0x008f8008u, 0x004f8008u,
    0x00fe8009u, 0x00002007u, 0x00508008u, 0x00108008u, 0x00730408u,
    0x001f0207u, 0x00708008u, 0x00308008u, 0x00c18009u, 0x000a0007u,
    0x00608008u, 0x00208008u, 0x00a18009u, 0x00008008u, 0x00808008u,
    0x00408008u, 0x00e18009u, 0x00060007u, 0x00588008u, 0x00188008u,
    0x00918009u, 0x003b0307u, 0x00788008u, 0x00388008u, 0x00d18009u,
    0x00110107u, 0x00688008u, 0x00288008u, 0x00b18009u, 0x00088008u,
    0x00888008u, 0x00488008u, 0x00f18009u, 0x00040007u, 0x00548008u,
    0x00148008u, 0x00e30508u, 0x002b0307u, 0x00748008u, 0x00348008u,
    0x00c98009u, 0x000d0107u, 0x00648008u, 0x00248008u, 0x00a98009u,
    0x00048008u, 0x00848008u, 0x00448008u, 0x00e98009u, 0x00080007u,
    0x005c8008u, 0x001c8008u, 0x00998009u, 0x00530407u, 0x007c8008u,
    0x003c8008u, 0x00d98009u, 0x00170207u, 0x006c8008u, 0x002c8008u,
    0x00b98009u, 0x000c8008u, 0x008c8008u, 0x004c8008u, 0x00f98009u,
    0x00030007u, 0x00528008u, 0x00128008u, 0x00a30508u, 0x00230307u,
    0x00728008u, 0x00328008u, 0x00c58009u, 0x000b0107u, 0x00628008u,
    0x00228008u, 0x00a58009u, 0x00028008u, 0x00828008u, 0x00428008u,
    0x00e58009u, 0x00070007u, 0x005a8008u, 0x001a8008u, 0x00958009u,
    0x00430407u, 0x007a8008u, 0x003a8008u, 0x00d58009u, 0x00130207u,
    0x006a8008u, 0x002a8008u, 0x00b58009u, 0x000a8008u, 0x008a8008u,
    0x004a8008u, 0x00f58009u, 0x00050007u, 0x00568008u, 0x00168008u,
    0x00001008u, 0x00330307u, 0x00768008u, 0x00368008u, 0x00cd8009u,
    0x000f0107u, 0x00668008u, 0x00268008u, 0x00ad8009u, 0x00068008u,
    0x00868008u, 0x00468008u, 0x00ed8009u, 0x00090007u, 0x005e8008u,
    0x001e8008u, 0x009d8009u, 0x00630407u, 0x007e8008u, 0x003e8008u,
    0x00dd8009u, 0x001b0207u, 0x006e8008u, 0x002e8008u, 0x00bd8009u,
    0x000e8008u, 0x008e8008u, 0x004e8008u, 0x00fd8009u, 0x00002007u,
    0x00518008u, 0x00118008u, 0x00830508u, 0x001f0207u, 0x00718008u,
    0x00318008u, 0x00c38009u, 0x000a0007u, 0x00618008u, 0x00218008u,
    0x00a38009u, 0x00018008u, 0x00818008u, 0x00418008u, 0x00e38009u,
    0x00060007u, 0x00598008u, 0x00198008u, 0x00938009u, 0x003b0307u,
    0x00798008u, 0x00398008u, 0x00d38009u, 0x00110107u, 0x00698008u,
    0x00298008u, 0x00b38009u, 0x00098008u, 0x00898008u, 0x00498008u,
    0x00f38009u, 0x00040007u, 0x00558008u, 0x00158008u, 0x01020008u,
    0x002b0307u, 0x00758008u, 0x00358008u, 0x00cb8009u, 0x000d0107u,
    0x00658008u, 0x00258008u, 0x00ab8009u, 0x00058008u, 0x00858008u,
    0x00458008u, 0x00eb8009u, 0x00080007u, 0x005d8008u, 0x001d8008u,
    0x009b8009u, 0x00530407u, 0x007d8008u, 0x003d8008u, 0x00db8009u,
    0x00170207u, 0x006d8008u, 0x002d8008u, 0x00bb8009u, 0x000d8008u,
    0x008d8008u, 0x004d8008u, 0x00fb8009u, 0x00030007u, 0x00538008u,
    0x00138008u, 0x00c30508u, 0x00230307u, 0x00738008u, 0x00338008u,
    0x00c78009u, 0x000b0107u, 0x00638008u, 0x00238008u, 0x00a78009u,
    0x00038008u, 0x00838008u, 0x00438008u, 0x00e78009u, 0x00070007u,
    0x005b8008u, 0x001b8008u, 0x00978009u, 0x00430407u, 0x007b8008u,
    0x003b8008u, 0x00d78009u, 0x00130207u, 0x006b8008u, 0x002b8008u,
    0x00b78009u, 0x000b8008u, 0x008b8008u, 0x004b8008u, 0x00f78009u,
    0x00050007u, 0x00578008u, 0x00178008u, 0x00001008u, 0x00330307u,
    0x00778008u, 0x00378008u, 0x00cf8009u, 0x000f0107u, 0x00678008u,
    0x00278008u, 0x00af8009u, 0x00078008u, 0x00878008u, 0x00478008u,
    0x00ef8009u, 0x00090007u, 0x005f8008u, 0x001f8008u, 0x009f8009u,
    0x00630407u, 0x007f8008u, 0x003f8008u, 0x00df8009u, 0x001b0207u,
    0x006f8008u, 0x002f8008u, 0x00bf8009u, 0x000f8008u, 0x008f8008u,
    0x004f8008u, 0x00ff8009u,
};
const uint32_t ws_inflate_fixed_dist[1u << DIST_ROOT] = {
    0x00010005u, 0x01010705u, 0x00110305u, 0x10010b05u, 0x00050105u,
    0x04010905u, 0x00410505u, 0x40010d05u, 0x00030005u, 0x02010805u,
    0x00210405u, 0x20010c05u, 0x00090205u, 0x08010a05u, 0x00810605u,
    0x00001005u, 0x00020005u, 0x01810705u, 0x00190305u, 0x18010b05u,
    0x00070105u, 0x06010905u, 0x00610505u, 0x60010d05u, 0x00040005u,
    0x03010805u, 0x00310405u, 0x30010c05u, 0x000d0205u, 0x0c010a05u,
    0x00c10605u, 0x00001005u, 0x00010005u, 0x01010705u, 0x00110305u,
    0x10010b05u, 0x00050105u, 0x04010905u, 0x00410505u, 0x40010d05u,
    0x00030005u, 0x02010805u, 0x00210405u, 0x20010c05u, 0x00090205u,
    0x08010a05u, 0x00810605u, 0x00001005u, 0x00020005u, 0x01810705u,
    0x00190305u, 0x18010b05u, 0x00070105u, 0x06010905u, 0x00610505u,
    0x60010d05u, 0x00040005u, 0x03010805u, 0x00310405u, 0x30010c05u,
    0x000d0205u, 0x0c010a05u, 0x00c10605u, 0x00001005u,
};
#endif /* !WS_SMALL_CODE */

#else
typedef int ws_inflate_table_left_out; /* (an empty file is not ISO C) */
#endif
