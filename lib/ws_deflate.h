/*
 * Raw DEFLATE (RFC 1951) codec for permessage-deflate (RFC 7692).
 * Internal, not installed. Freestanding: no libc beyond <string.h>, no
 * global mutable state; all memory comes from the injected ws_mem.
 *
 * Both objects live in caller storage (a ws_inflater / ws_deflater struct
 * of a few hundred bytes) and own one heap block each, allocated by
 * *_init() and released by *_free().
 *
 * Memory per stream: the struct (ws_inflater 160 bytes, ws_deflater 816
 * on LP64) plus one heap block, W = 2^window_bits:
 *
 *   inflate:           W + 7,248 bytes (decoding tables, the window)
 *   deflate, level 1:  B + 6N + 2H + 1,604 bytes
 *   deflate, 2..9:     B + 4W + 6N + 1,604 bytes (hash heads and chains)
 *     B = history buffer = max(W, N) + max(W, 524);
 *     N = symbols per block = 2^clamp(window_bits, 10, 13): 4 bytes
 *         each, sharing 584 + 6N bytes with the block's output, which
 *         is built whole, then drained in pieces;
 *     H = level 1 hash slots = 2^min(window_bits + 1, 14).
 *   Deflate stays below zlib's deflateInit2() memory at every window
 *   and level (2^(window_bits + 2) + 128 KiB at its default memLevel).
 *
 *   window_bits   inflate   deflate level 1   deflate levels 2..9
 *        8          7,504         10,320            10,320
 *        9          7,760         11,344            11,344
 *       10          8,272         13,892            13,892
 *       11          9,296         26,180            26,180
 *       12         11,344         50,756            50,756
 *       13         15,440         99,908            99,908
 *       14         23,632        116,292           149,060
 *       15         40,016        149,060           247,364
 *
 * Stack: every table lives in the heap block. Deepest chains measured
 * with -fstack-usage at -O2 (bytes, x86-64 gcc 12 / clang 14 / i386 gcc):
 *   deflate: ws_deflate 272/216/192 + emit_block 176/184/200 + its
 *            deepest callee 56/136/156 = 504/536/548
 *   inflate: ws_inflate 192/184/112 + build_table 216/472/304
 *            = 408/656/416
 *
 * ws_inflate_memsize() and ws_deflate_memsize() give the exact figure.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include "ws_int.h"

#include <stddef.h>
#include <stdint.h>

#define WS_DEFLATE_MIN_WINDOW_BITS 8
#define WS_DEFLATE_MAX_WINDOW_BITS 15

/* ---- inflate ------------------------------------------------------------ */

/*
 * A streaming raw inflater with a 2^window_bits history. Fields are
 * private.
 *
 * Message model (RFC 7692 7.2.2): feed every compressed byte of a
 * message, then the 4-byte tail 00 00 ff ff, through ws_inflate(); drain
 * the output until ws_inflate() leaves room unused in |out|; then call
 * ws_inflate_end_message(). The history is kept across messages (context
 * takeover) unless ws_inflate_reset() is called between them.
 *
 * A block with BFINAL=1 ends the DEFLATE stream: ws_inflate() then
 * consumes and ignores the rest of the message's input (normally just
 * the appended tail), and ws_inflate_end_message() starts a new stream
 * for the next message while keeping the history.
 */
typedef struct ws_inflater {
  ws_mem mem;
  uint8_t *block;   /* the one heap block: window, then tables */
  uint32_t *lit;    /* literal/length decoding table (+ subtables) */
  uint32_t *dist;   /* distance decoding table (+ subtables) */
  uint32_t *clen;   /* code length code table */
  uint16_t *sorted; /* ws_inflate_build_table() work space (320) */
  uint8_t *lens;    /* code lengths being read (320) */
  uint8_t *win;     /* circular history, wsize bytes */
  uint32_t wsize;   /* 2^window_bits */
  uint32_t wpos;    /* next write position in win */
  uint32_t whave;   /* valid bytes in win (<= wsize) */
  uint64_t bits;    /* bit accumulator, LSB first */
  unsigned nbits;   /* valid bits in |bits| */
  int mode;
  int last;   /* current block has BFINAL set */
  int err;    /* sticky error, 0 if none */
  int tables; /* 0 none, 1 the static fixed-code tables, 2 lit/dist */
  unsigned hlit, hdist, hclen, idx;
  uint32_t left; /* stored bytes or match bytes still to copy */
  uint32_t dist_pending;
} ws_inflater;

/*
 * Initializes |z| for a history of 2^|window_bits| bytes (8..15) and
 * allocates its state with |mem| (NULL: the default allocator); the
 * allocator is copied. |z| must be released with ws_inflate_free().
 *
 * Returns 0, or one of:
 *   WS_ERR_INVALID_ARGUMENT  window_bits out of range, or no allocator
 *   WS_ERR_NOMEM             allocation failed (|z| needs no free)
 */
int ws_inflate_init(ws_inflater *z, const ws_mem *mem, unsigned window_bits);

/*
 * Inflates from |in| (|inlen| bytes, any split: one byte at a time is
 * fine) into |out| (at most |outlen| bytes). Stops when the input is used
 * up or |out| is full; sets |*pnin| to the bytes consumed and |*pnout| to
 * the bytes written. Bytes of |out| past |*pnout| may have been
 * overwritten. When |*pnout| == |outlen| more output may be pending: call
 * again (with the unconsumed input, or none) and more space. Work per
 * call is proportional to |*pnin| + |*pnout|, so capping the total of
 * |outlen| over a message caps a decompression bomb.
 *
 * |in| and |out| are borrowed for the call only; either may be NULL when
 * its length is 0 (to drain pending output, pass no input).
 *
 * Returns 0, or one of:
 *   WS_ERR_DATA  invalid data (block type 3, stored length mismatch,
 *                bad or incomplete Huffman code, invalid repeat, code
 *                286/287 or distance 30/31, distance beyond the window
 *                or the data so far). Sticky until ws_inflate_reset().
 */
int ws_inflate(ws_inflater *z, const uint8_t *in, size_t inlen, size_t *pnin,
               uint8_t *out, size_t outlen, size_t *pnout);

/*
 * Marks the end of a message's compressed data (after its tail was fed
 * and the output drained). Checks the stream stopped at a block boundary
 * and, if its last block had BFINAL set, prepares a new stream (history
 * kept).
 *
 * Returns 0, or one of:
 *   WS_ERR_WOULDBLOCK  output is still pending: call ws_inflate() with
 *                      more space first
 *   WS_ERR_DATA        the data stopped inside a block (truncated), or
 *                      the inflater had failed
 */
int ws_inflate_end_message(ws_inflater *z);

/* Forgets the history and any error: the next byte starts a new stream
 * with an empty window (no_context_takeover). Keeps the memory. */
void ws_inflate_reset(ws_inflater *z);

/* Releases the memory of |z| (NULL or zero-initialized is fine). */
void ws_inflate_free(ws_inflater *z);

/* Bytes ws_inflate_init() allocates for |window_bits| (0 if invalid). */
size_t ws_inflate_memsize(unsigned window_bits);

/* ---- deflate ------------------------------------------------------------ */

#define WS_DEFLATE_FAST 1    /* hash table, greedy, one probe */
#define WS_DEFLATE_DEFAULT 6 /* hash chains, lazy matching */

/* Flush modes for ws_deflate(). */
#define WS_DEFLATE_NO_FLUSH 0
#define WS_DEFLATE_SYNC_FLUSH 1 /* end of message: ends with 00 00 ff ff */

typedef struct ws_deflater ws_deflater;
typedef struct ws_deflate_work ws_deflate_work;

/*
 * A streaming raw compressor whose matches never reach back more than
 * 2^window_bits bytes. Fields are private.
 */
struct ws_deflater {
  ws_mem mem;
  uint8_t *block;        /* the one heap block */
  uint8_t *buf;          /* history + lookahead, bufsize bytes */
  uint16_t *head;        /* hash heads: buffer indexes, 0 for none */
  uint16_t *prev;        /* hash chains (levels >= 2), wsize entries,
                            slot (index + pshift) mod wsize */
  uint32_t *syms;        /* buffered symbols of the current block */
  uint8_t *pend;         /* compressed bytes not yet handed out */
  ws_deflate_work *work; /* tables for building a block */
  uint32_t wsize, bufsize, hbits, nsyms_max;
  uint32_t pendcap, pendpos, pendlen;
  uint32_t pos;        /* current position in buf */
  uint32_t lookahead;  /* bytes at buf[pos..] not yet compressed */
  uint32_t pshift;     /* total of the moves of buf, mod wsize */
  int64_t block_start; /* buf index where the block began (< 0: gone) */
  uint32_t nsyms;
  int level;
  int err;
  /* lazy matching: a match found at pos-1 waiting for a better one */
  int have_prev;
  uint32_t prev_len, prev_dist;
  uint8_t prev_lit;
  int flushed;     /* the sync flush of this message was written */
  uint64_t bitbuf; /* bit writer */
  unsigned bitcnt;
  uint16_t lfreq[288];
  uint16_t dfreq[30];
};

/*
 * Initializes |z| for window_bits 8..15 and |level| 1..9 (1 =
 * WS_DEFLATE_FAST; 2..9 use hash chains, lazy from 4 on;
 * WS_DEFLATE_DEFAULT = 6) and allocates its state with |mem| (NULL: the
 * default allocator; copied). Release with ws_deflate_free().
 *
 * Returns 0, or one of:
 *   WS_ERR_INVALID_ARGUMENT  window_bits or level out of range
 *   WS_ERR_NOMEM             allocation failed (|z| needs no free)
 */
int ws_deflate_init(ws_deflater *z, const ws_mem *mem, unsigned window_bits,
                    int level);

/*
 * Compresses |in| (|inlen| bytes, consumed in any pieces) into |out|
 * (room for |outlen| bytes); sets |*pnin| to the bytes consumed and
 * |*pnout| to the bytes written. With WS_DEFLATE_SYNC_FLUSH the data
 * given so far (in this and earlier calls) is completed and ends with an
 * empty stored block, byte aligned: the output then ends in 00 00 ff ff,
 * which RFC 7692 7.2.1 removes. Pass the same flush on every retry of
 * the final piece. |in| and |out| are borrowed for the call only.
 *
 * Returns 0 when all of |in| was consumed and, with a flush, everything
 * up to its end written to |out|; or one of:
 *   WS_ERR_WOULDBLOCK        |out| is full and output is pending: call
 *                            again with more room (and the unconsumed
 *                            input). Not a failure.
 *   WS_ERR_INVALID_ARGUMENT  |flush| unknown
 */
int ws_deflate(ws_deflater *z, const uint8_t *in, size_t inlen, size_t *pnin,
               uint8_t *out, size_t outlen, size_t *pnout, int flush);

/* Forgets the history (no_context_takeover) and any unfinished message
 * or pending output. Keeps the memory. */
void ws_deflate_reset(ws_deflater *z);

/* Releases the memory of |z| (NULL or zero-initialized is fine). */
void ws_deflate_free(ws_deflater *z);

/* Bytes ws_deflate_init() allocates (0 if the arguments are invalid). */
size_t ws_deflate_memsize(unsigned window_bits, int level);

#endif /* WS_DEFLATE_H */
