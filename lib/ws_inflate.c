/*
 * Streaming raw inflate (RFC 1951) into caller buffers.
 *
 * Decoding tables: one 32-bit entry per index, indexed by the next bits
 * of the stream (LSB first). A root table of LIT_ROOT (DIST_ROOT) bits is
 * followed by subtables for codes longer than the root; a root entry for
 * such a prefix links to its subtable. Entry layout:
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
#include "ws_deflate.h"

/* the whole file: build switches (README "Firmware") */
#if !defined(WS_NO_DEFLATE)

#  define LIT_ROOT 9u
#  define DIST_ROOT 6u
#  define CLEN_ROOT 7u
/* Root table plus the most its subtables can take. A subtable is as
 * deep as the subtree under its root prefix needs to be complete (see
 * build_table()), which makes the largest total over all complete codes
 * of at most 15 bits a property of the counts of codes alone: 852
 * entries for 286 literal/length codes with a 9-bit root, 592 for 30
 * distance codes with a 6-bit root (the maxima over every count vector,
 * as tabulated for this layout by zlib's examples/enough.c; figures, not
 * code). The code length code (19 codes of at most 7 bits) needs no
 * subtable. build_table() still checks the bound. */
#  define LIT_CAP 852u
#  define DIST_CAP 592u
#  define CLEN_CAP 128u
#  define LENS_MAX 320u

#  define E_LIT 0x8000u
#  define E_SUB 0x4000u
#  define E_EOB 0x2000u
#  define E_BAD 0x1000u

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
  M_COPY,
  M_DONE,
  M_ERROR
};

/* RFC 1951 3.2.7: order of the code length code lengths */
static const uint8_t clen_order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                       11, 4,  12, 3, 13, 2, 14, 1, 15};

enum { T_CLEN, T_LIT, T_DIST };

/* Table entries of the length symbols 256..287 (end of block; RFC 1951
 * 3.2.5 base length and extra bits; 286 and 287 invalid) and of the
 * distance symbols 0..31 (3.2.5; 30 and 31 invalid). */
#define BX(base, extra) ((uint32_t)(base) << 16 | (uint32_t)(extra) << 8)
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
#undef BX

static inline uint32_t sym_entry(int type, unsigned sym) {
  if (type == T_CLEN) return (uint32_t)sym << 16;
  if (type == T_DIST) return dist_entry[sym & 31u];
  return sym < 256 ? E_LIT | (uint32_t)sym << 16 : len_entry[(sym - 256) & 31u];
}

/*
 * Builds the table for the |n| code lengths |lens| into |tab| (|cap|
 * entries) with |root| index bits. Returns 0, or -1 for an
 * oversubscribed code, an incomplete one (other than a single code of
 * length 1, or no code at all for distances), or a table overflow.
 */
static int build_table(uint32_t *tab, unsigned cap, unsigned root,
                       const uint8_t *lens, unsigned n, int type,
                       uint16_t *sorted) {
  unsigned count[16] = {0};
  unsigned left[16];
  unsigned offs[16];
  unsigned s, len, used = 0;
  int avail = 1;

  /* Counts, and below the symbols sorted by length: runs of unused
   * symbols (length 0; most of the literals of a block) are skipped 8
   * at a time. count[0] is not used. */
  for (s = 0; s + 8 <= n; s += 8) {
    uint64_t w;
    memcpy(&w, lens + s, 8);
    if (w == 0) continue;
    for (unsigned k = 0; k < 8; k++)
      count[lens[s + k]]++;
  }
  for (; s < n; s++)
    count[lens[s]]++;
  for (len = 1; len < 16; len++) {
    avail = avail * 2 - (int)count[len];
    if (avail < 0) return -1; /* oversubscribed */
    used += count[len];
  }
  unsigned maxlen = 15;
  while (maxlen > 0 && count[maxlen] == 0)
    maxlen--;
  unsigned rootsize = 1u << root;
  if (avail > 0) {
    /* holes of an incomplete code decode as errors */
    for (s = 0; s < rootsize; s++)
      tab[s] = E_BAD | root;
    /* Incomplete: RFC 1951 allows one distance code of one bit, and no
     * distance codes at all; take the single code of length 1 for
     * literal/lengths too (it can only be the end-of-block code). */
    if (type == T_CLEN) return -1;
    if (!(used == 1 && count[1] == 1) && !(type == T_DIST && used == 0))
      return -1;
  }
  if (used == 0) return 0;

  /* symbols by length, then by value (unused ones after the rest) */
  offs[1] = 0;
  for (len = 1; len < 15; len++)
    offs[len + 1] = offs[len] + count[len];
  offs[0] = used;
  for (s = 0; s + 8 <= n; s += 8) {
    uint64_t w;
    memcpy(&w, lens + s, 8);
    if (w == 0) continue;
    for (unsigned k = 0; k < 8; k++)
      sorted[offs[lens[s + k]]++] = (uint16_t)(s + k);
  }
  for (; s < n; s++)
    sorted[offs[lens[s]]++] = (uint16_t)s;
  for (len = 0; len < 16; len++)
    left[len] = count[len];

  /* |r| is the current codeword bit-reversed (RFC 1951 3.1.1: codes
   * are read from the least significant bit). Appending a 0 to a code
   * (the step to the next length) leaves its reversal unchanged, so the
   * reversed counter is carried from one length to the next and
   * incremented in place: clear the top bits that are set, then set the
   * first clear one. */
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

/* The tables build_table() makes for the fixed code (RFC 1951 3.2.6:
 * literal/length lengths 8, 9, 7, 8 by range, 32 distance codes of 5
 * bits), which need no subtables: read-only data, so fixed blocks cost
 * nothing to start. (Generated with build_table(); the fixed-code tests
 * against zlib decode through them.) */
static const uint32_t fixed_lit[1u << LIT_ROOT] = {
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
static const uint32_t fixed_dist[1u << DIST_ROOT] = {
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
  ws_inflate_reset(z);
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

/* Looks up a code with the |nb| bits available: the entry with its total
 * length in bits 0..7, or 0 when more bits are needed. */
static inline uint32_t peek_code(const uint32_t *t, unsigned root, uint64_t b,
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

int ws_inflate(ws_inflater *z, const uint8_t *in, size_t inlen, size_t *pnin,
               uint8_t *out, size_t outlen, size_t *pnout) {
  /* NULL with a length of 0 is allowed: no arithmetic on it (C11 6.5.6) */
  const uint8_t *ip = in, *const iend = inlen ? in + inlen : in;
  uint8_t *op = out, *const oend = outlen ? out + outlen : out;
  uint64_t b = z->bits;
  unsigned nb = z->nbits;
  int rc = 0;

#define NEED(n)                                                                \
  do {                                                                         \
    while (nb < (n)) {                                                         \
      if (ip == iend) goto out;                                                \
      b |= (uint64_t)*ip++ << nb;                                              \
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
    size_t back_ = WS_MIN((size_t)(nb >> 3), (size_t)(ip - in));               \
    ip -= back_;                                                               \
    nb -= 8 * (unsigned)back_;                                                 \
    z->mode = M_ERROR;                                                         \
    z->err = WS_ERR_DATA;                                                      \
    rc = WS_ERR_DATA;                                                          \
    goto out;                                                                  \
  } while (0)

  if (z->mode == M_ERROR) {
    rc = z->err;
    goto out;
  }

  for (;;) {
    switch (z->mode) {
    case M_HEADER: {
      NEED(3);
      z->last = (int)(b & 1u);
      unsigned type = (unsigned)(b >> 1) & 3u;
      DROP(3);
      if (type == 0) {
        DROP(nb & 7u);
        z->mode = M_STORED_LEN;
      } else if (type == 1) {
        z->tables = 1;
        z->mode = M_CODES;
      } else if (type == 2) {
        z->mode = M_DYN_COUNTS;
      } else {
        FAIL();
      }
      break;
    }
    case M_STORED_LEN: {
      NEED(32);
      uint32_t len = (uint32_t)b & 0xffffu;
      uint32_t nlen = (uint32_t)(b >> 16) & 0xffffu;
      DROP(32);
      if (len != (~nlen & 0xffffu)) FAIL();
      z->left = len;
      z->mode = M_STORED;
      break;
    }
    case M_STORED:
      while (z->left > 0 && nb >= 8 && op < oend) { /* buffered bytes */
        *op++ = (uint8_t)b;
        DROP(8);
        z->left--;
      }
      if (z->left > 0) {
        size_t n = WS_MIN((size_t)(iend - ip), (size_t)(oend - op));
        if (n > z->left) n = z->left;
        if (n) memcpy(op, ip, n);
        op += n;
        ip += n;
        z->left -= (uint32_t)n;
        if (z->left > 0) goto out;
      }
      z->mode = z->last ? M_DONE : M_HEADER;
      break;
    case M_DYN_COUNTS:
      NEED(14);
      z->hlit = (unsigned)(b & 31u) + 257;
      z->hdist = (unsigned)((b >> 5) & 31u) + 1;
      z->hclen = (unsigned)((b >> 10) & 15u) + 4;
      DROP(14);
      if (z->hlit > 286 || z->hdist > 30) FAIL();
      z->idx = 0;
      z->mode = M_DYN_CLEN;
      break;
    case M_DYN_CLEN:
      while (z->idx < z->hclen) {
        NEED(3);
        z->lens[clen_order[z->idx++]] = (uint8_t)(b & 7u);
        DROP(3);
      }
      while (z->idx < 19)
        z->lens[clen_order[z->idx++]] = 0;
      if (build_table(z->clen, CLEN_CAP, CLEN_ROOT, z->lens, 19, T_CLEN,
                      z->sorted))
        FAIL();
      z->idx = 0;
      z->mode = M_DYN_LENS;
      break;
    case M_DYN_LENS: {
      unsigned total = z->hlit + z->hdist, idx = z->idx;
      uint8_t *const lens = z->lens;
      const uint32_t *const ct = z->clen;
      while (idx < total) {
        uint32_t e;
        if ((size_t)(iend - ip) >= FAST_IN) {
          /* one refill holds a code and its extra bits (7 + 7); the
           * code is complete, so every entry is a symbol */
          b |= load64le(ip) << nb;
          ip += (63u - nb) >> 3;
          nb |= 56u;
          e = ct[b & ((1u << CLEN_ROOT) - 1)];
        } else {
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
            b |= (uint64_t)*ip++ << nb;
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
      b &= ((uint64_t)1 << nb) - 1;
      if (z->lens[256] == 0) FAIL(); /* no end-of-block code */
      z->tables = 0;
      if (build_table(z->lit, LIT_CAP, LIT_ROOT, z->lens, z->hlit, T_LIT,
                      z->sorted) ||
          build_table(z->dist, DIST_CAP, DIST_ROOT, z->lens + z->hlit, z->hdist,
                      T_DIST, z->sorted))
        FAIL();
      z->tables = 2;
      z->mode = M_CODES;
      break;
    }
    case M_CODES: {
      const uint32_t *lt = z->tables == 1 ? fixed_lit : z->lit;
      const uint32_t *dt = z->tables == 1 ? fixed_dist : z->dist;
      const uint32_t lmask = (1u << LIT_ROOT) - 1,
                     dmask = (1u << DIST_ROOT) - 1;
      const uint32_t wsize = z->wsize, whave = z->whave;

      /* Fast loop: every iteration refills to >= 56 bits, enough for a
       * length code, its extra bits, a distance code and its extra bits
       * (at most 15+5+15+13 = 48). A match that would not fit in |out|
       * with the copy overrun is copied exactly, and what does not fit
       * is left for M_COPY. */
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
          op = end;
        } else {
          uint32_t back = dist - (uint32_t)made;
          uint32_t start = (z->wpos - back) & (wsize - 1);
          uint32_t n = back < len ? back : len;
          uint32_t first = wsize - start;
          if (first > n) first = n;
          /* 8 bytes at a time: |out| has FAST_SLACK bytes to spare, and
           * reads past the window's end stay in the block */
          copy8(op, z->win + start, first);
          if (n > first) copy8(op + first, z->win, n - first);
          op += n;
          len -= n;
          /* the rest comes from this call's output */
          const uint8_t *src = op - dist;
          while (len--)
            *op++ = *src++;
        }
      }
      b &= ((uint64_t)1 << nb) - 1;
      if (z->mode != M_CODES) break;

      /* Slow path, symbol by symbol with whatever input and output is
       * left (fewer than FAST_IN input bytes, or |out| full): until the
       * block ends, a match does not fit, or more input or room is
       * needed. */
      for (;;) {
        while (nb <= 48 && ip < iend) {
          b |= (uint64_t)*ip++ << nb;
          nb += 8;
        }
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
        uint32_t len = (e >> 16) + (uint32_t)((b >> clen) & ((1u << ex) - 1));
        uint32_t d = peek_code(dt, DIST_ROOT, b >> used, nb - used);
        if (!d) goto out;
        if (d & E_BAD) FAIL();
        unsigned dlen = d & 0xffu, dex = (d >> 8) & 15u;
        if (nb < used + dlen + dex) goto out;
        uint32_t dist =
            (d >> 16) + (uint32_t)((b >> (used + dlen)) & ((1u << dex) - 1));
        DROP(used + dlen + dex);
        if (dist > wsize || dist > whave + (size_t)(op - out)) FAIL();
        uint32_t room = (uint32_t)WS_MIN((size_t)(oend - op), (size_t)len);
        op = copy_slow(z, out, op, room, dist);
        if (room < len) {
          z->left = len - room;
          z->dist_pending = dist;
          z->mode = M_COPY;
          break;
        }
      }
      break;
    }
    case M_COPY: {
      size_t room = (size_t)(oend - op);
      uint32_t n = z->left;
      if (n > room) n = (uint32_t)room;
      op = copy_slow(z, out, op, n, z->dist_pending);
      z->left -= n;
      if (z->left > 0) goto out;
      z->mode = M_CODES;
      break;
    }
    case M_DONE:
      /* Whatever follows the final block (the appended tail) is not
       * part of the stream. */
      ip = iend;
      b = 0;
      nb = 0;
      goto out;
    default: rc = z->err ? z->err : WS_ERR_DATA; goto out;
    }
  }

out:
  b &= ((uint64_t)1 << nb) - 1; /* nb < 64: no bits past the input taken */
#undef NEED
#undef DROP
#undef FAIL
  if (rc == 0) update_window(z, out, (size_t)(op - out));
  z->bits = b;
  z->nbits = nb;
  *pnin = (size_t)(ip - in);
  *pnout = (size_t)(op - out);
  return rc;
}

#else
typedef int ws_inflate_left_out; /* (an empty file is not ISO C) */
#endif /* !WS_NO_DEFLATE */
