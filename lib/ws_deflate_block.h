/*
 * The deflate block writer, shared by the match finder (ws_deflate.c)
 * and the block writer (ws_deflate_block.c): the layout of pend, the
 * tables of a block, the bit writer and the length and distance codes.
 * Internal: not part of the API.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_DEFLATE_BLOCK_H
#define WS_DEFLATE_BLOCK_H

#include "ws_deflate.h"

#include <stdint.h>

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

/* Tables of ws_deflate_emit_block() that live while a block is written, in the
 * heap block to keep the stack small. */
struct ws_deflate_work {
  uint16_t lc[288], dc[30], cc[19]; /* codes, bit-reversed */
  uint8_t ll[288], dl[30], cl[19];  /* code lengths */
};

/* RFC 1951 3.2.5: the length code of a match length less 3 (from 257,
 * less 257), and the distance code of a distance d, at d - 1 up to 256
 * and at 256 + ((d - 1) >> 7) beyond. */
extern const uint8_t ws_deflate_len_code[256];
extern const uint8_t ws_deflate_dist_code_tab[512];

static inline unsigned dist_code(uint32_t d) {
  return d <= 256 ? ws_deflate_dist_code_tab[d - 1]
                  : ws_deflate_dist_code_tab[256 + ((d - 1) >> 7)];
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
static inline void align_bits(ws_deflater *z) {
  while (z->bitcnt > 0) {
    z->pend[z->pendlen++] = (uint8_t)z->bitbuf;
    z->bitbuf >>= 8;
    z->bitcnt = z->bitcnt > 8 ? z->bitcnt - 8 : 0;
  }
  z->bitbuf = 0;
}

/* Writes the buffered symbols as one block into pend (which has room:
 * see pendcap) and starts the next block. All tables are in z->work. */
void ws_deflate_emit_block(ws_deflater *z);

#endif /* WS_DEFLATE_BLOCK_H */
