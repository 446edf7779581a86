/*
 * Fuzz target: our raw compressor (lib/ws_deflate.c), round trip through
 * zlib's inflate and ours.
 * SPDX-License-Identifier: MIT
 *
 * Input layout:
 *   byte 0    bits 0-2: window bits - 8 (8..15); bits 3-6: level 1..9
 *             (value mod 9, plus 1); bit 7: no context takeover (every
 *             side resets between messages)
 *   byte 1    bits 0-1: compressor input chunk mode; bits 2-3: its output
 *             chunk mode; bits 4-5: inflater chunk mode; bits 6-7:
 *             repeat the data 1, 3, 9 or 65 times (each copy slightly
 *             changed, at most 128 KiB in all), to reach the window
 *             sizes, block limits and buffer moves with short inputs
 *   byte 2-3  seed of the chunk sizes and of the message lengths
 *   rest      the data, cut into messages of seed-chosen lengths
 *
 * Every message is compressed with WS_DEFLATE_SYNC_FLUSH at its end (the
 * context carried over, as with context takeover), in fuzzer-chosen
 * input and output pieces. Invariants:
 *  - the compressed message ends in 00 00 ff ff (RFC 7692 7.2.1) and is
 *    no bigger than a stored encoding plus block and flush overhead;
 *  - zlib inflates the stream (raw, same window, kept across messages)
 *    back to exactly the messages;
 *  - our inflater with the same window (which rejects any distance
 *    beyond 2^window_bits) gives back exactly each message, in
 *    fuzzer-chosen pieces, and ends each message between blocks;
 *  - ws_deflate() returns 0 only once all input is consumed and the
 *    flush written; WS_ERR_WOULDBLOCK only with the output space full or
 *    the flush still under way;
 *  - each codec allocates exactly its ws_*_memsize() once and frees it.
 */
#include <zlib.h>

#include "fuzz_common.h"
#include "ws_deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Above the window-15 compressor's buffer (2 * 32 KiB + 524), so its
 * history moves; long repeats at level 9 walk 4096-entry hash chains,
 * which is what bounds the size for the fuzzer's speed. */
#define MAX_DATA (128u << 10)
/* Byte-sized pieces only for the first 16 KiB of a message, then mixed
 * ones (which still include single bytes): keeps large inputs fast. */
#define TINY_SPAN 16384u

static size_t piece(uint32_t *r, unsigned mode, size_t left, size_t pos) {
  if (pos >= TINY_SPAN && (mode == FZ_ONE || mode == FZ_SMALL)) mode = FZ_MIX;
  return fz_piece(r, mode, left);
}

/* Compresses |n| bytes as one message into a malloc'd buffer. */
static uint8_t *compress_msg(ws_deflater *d, const uint8_t *in, size_t n,
                             size_t *pclen, uint32_t *r, unsigned inmode,
                             unsigned outmode) {
  /* stored blocks of at most 65535 bytes cost 5 bytes each; a dynamic
   * or fixed block is never chosen when it is bigger than that, except
   * when its raw bytes have left the buffer (then at most 9/8 of them) */
  size_t cap = n + n / 8 + 64 + 5 * (n / 4096 + 1) + 16;
  uint8_t *out = malloc(cap);
  CHECK(out);
  size_t ip = 0, op = 0;
  unsigned rounds = 0;
  int flushing = 0;
  for (;;) {
    /* Once the final piece was passed with the flush, every retry passes
     * what is left of it with the flush again (the ws_deflate contract). */
    size_t ik = flushing ? n - ip : piece(r, inmode, n - ip, ip);
    int last = ip + ik == n;
    int flush = last ? WS_DEFLATE_SYNC_FLUSH : WS_DEFLATE_NO_FLUSH;
    flushing |= last;
    size_t ok = piece(r, outmode, cap - op, op);
    CHECK(ok > 0); /* the bound above holds */
    size_t nin = 99, nout = 99;
    int rc = ws_deflate(d, in + ip, ik, &nin, out + op, ok, &nout, flush);
    CHECK(nin <= ik && nout <= ok);
    ip += nin;
    op += nout;
    if (rc == 0) {
      CHECK(nin == ik);
      if (last) break;
    } else {
      CHECK(rc == WS_ERR_WOULDBLOCK);
      /* blocked only for lack of output space or mid-flush */
      CHECK(nout == ok || (last && nin == ik));
      CHECK(++rounds < 100000000u);
    }
  }
  CHECK(op >= 4 && memcmp(out + op - 4, "\0\0\xff\xff", 4) == 0);
  *pclen = op;
  return out;
}

/* Inflates one message (tail included) with ours; returns the size. */
static size_t inflate_msg(ws_inflater *z, const uint8_t *in, size_t n,
                          uint8_t *out, size_t cap, uint32_t *r,
                          unsigned mode) {
  size_t ip = 0, op = 0;
  for (;;) {
    size_t ik = piece(r, mode, n - ip, ip);
    /* one byte more than the message, so "room left" is seen */
    size_t ok = piece(r, mode, cap + 1 - op, op);
    CHECK(ok > 0);
    size_t nin, nout;
    int rc = ws_inflate(z, in + ip, ik, &nin, out + op, ok, &nout);
    if (rc) fprintf(stderr, "ws_inflate: %d at %zu of %zu\n", rc, ip, n);
    CHECK(rc == 0);
    CHECK(nin == ik || nout == ok);
    ip += nin;
    op += nout;
    CHECK(op <= cap);
    if (ip == n && nout < ok) break;
  }
  CHECK(ws_inflate_end_message(z) == 0);
  return op;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  unsigned wbits = 8 + (data[0] & 7u);
  int level = 1 + (int)(((unsigned)data[0] >> 3 & 15u) % 9u);
  int reset = data[0] >> 7;
  unsigned cin = data[1] & 3u, cout = (data[1] >> 2) & 3u;
  unsigned imode = (data[1] >> 4) & 3u;
  static const unsigned reps[4] = {1, 3, 9, 65};
  unsigned rep = reps[data[1] >> 6];
  uint32_t seed = 0x2545F491u ^ ((uint32_t)data[2] << 8 | data[3]);
  const uint8_t *body = data + 4;
  size_t blen = size - 4;

  /* the data: |rep| copies of the body, copy i with byte i*7 mod len
   * changed, so repeats are long matches but not whole-copy ones */
  size_t n = blen * rep;
  if (n > MAX_DATA) n = MAX_DATA - MAX_DATA % (blen ? blen : 1);
  uint8_t *src = malloc(n ? n : 1);
  CHECK(src);
  for (size_t i = 0; i < n; i++) src[i] = body[i % blen];
  for (size_t c = 1; blen && c * blen < n; c++)
    src[c * blen + (c * 7) % blen] ^= (uint8_t)(c | 1u);

  fz_alloc da, ia;
  ws_deflater d;
  ws_inflater z;
  size_t dsize = ws_deflate_memsize(wbits, level);
  size_t isize = ws_inflate_memsize(wbits);
  fz_alloc_init(&da, dsize);
  fz_alloc_init(&ia, isize);
  CHECK(ws_deflate_init(&d, &da.mem, wbits, level) == 0);
  CHECK(da.live == dsize && da.blocks == 1);
  CHECK(ws_inflate_init(&z, &ia.mem, wbits) == 0);

  z_stream s;
  memset(&s, 0, sizeof(s));
  CHECK(inflateInit2(&s, -(int)wbits) == Z_OK);

  uint32_t r = seed;
  uint8_t *back = malloc(n + 1);
  CHECK(back);
  size_t pos = 0;
  unsigned nmsg = 0;
  do {
    /* message lengths: mostly short, sometimes long, sometimes empty */
    uint32_t x = fz_rand(&r);
    size_t len;
    switch (x & 7u) {
    case 0: len = 0; break;
    case 1: case 2: case 3: len = 1 + (x >> 8) % 64u; break;
    case 4: case 5: len = 1 + (x >> 8) % 4096u; break;
    default: len = n - pos; break;
    }
    if (len > n - pos) len = n - pos;
    const uint8_t *in = src + pos;

    size_t clen;
    uint8_t *c = compress_msg(&d, in, len, &clen, &r, cin, cout);

    /* zlib: one stream across messages; the tail stays on (7.2.2) */
    s.next_in = c;
    s.avail_in = (uInt)clen;
    s.next_out = back;
    s.avail_out = (uInt)(len + 1);
    int rc = inflate(&s, Z_SYNC_FLUSH);
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && len == 0))
      fprintf(stderr, "zlib inflate: %d %s\n", rc, s.msg ? s.msg : "");
    CHECK(rc == Z_OK || (rc == Z_BUF_ERROR && len == 0));
    CHECK(s.avail_in == 0);
    CHECK(len + 1 - s.avail_out == len);
    CHECK(len == 0 || memcmp(back, in, len) == 0);

    /* ours, with the window enforced */
    size_t got = inflate_msg(&z, c, clen, back, len, &r, imode);
    CHECK(got == len);
    CHECK(len == 0 || memcmp(back, in, len) == 0);
    free(c);

    if (reset) {
      ws_deflate_reset(&d);
      ws_inflate_reset(&z);
      CHECK(inflateReset(&s) == Z_OK);
    }
    pos += len;
    nmsg++;
  } while (pos < n && nmsg < 10000);

  CHECK(da.live == dsize && da.blocks == 1 && da.calls == 1);
  CHECK(ia.live == isize && ia.blocks == 1 && ia.calls == 1);
  ws_deflate_free(&d);
  ws_inflate_free(&z);
  CHECK(da.live == 0 && ia.live == 0);
  inflateEnd(&s);
  free(back);
  free(src);
  return 0;
}
