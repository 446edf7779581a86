/*
 * Fuzz target: our raw inflater (lib/ws_inflate.c) against zlib.
 * SPDX-License-Identifier: MIT
 *
 * Input layout:
 *   byte 0    bits 0-2: window bits - 8 (8..15); bit 3: no context
 *             takeover (both inflaters reset between messages); bits
 *             4-5: input chunk mode; bits 6-7: output chunk mode
 *   byte 1-2  seed of the chunk sizes
 *   rest      compressed messages as on a permessage-deflate stream: the
 *             data is cut after each 00 00 ff ff (RFC 7692 7.2.1 removes
 *             it from the frame, 7.2.2 appends it again: the inflater sees
 *             the same bytes); a last piece without it gets it appended.
 *             So a zlib raw stream sync-flushed per message is an input.
 *
 * Each message is inflated by ws_inflate() in fuzzer-chosen input chunks
 * and output spaces, then ws_inflate_end_message(); and by zlib with the
 * same window, one output byte per inflate() call. Invariants:
 *  - both accept, or both reject, every message, in the same order, and
 *    produce the same bytes (on a rejection: the bytes before the bad
 *    symbol); output is capped at OUT_CAP bytes, beyond which only the
 *    bytes are compared;
 *  - every ws_inflate() call consumes all its input or fills its output
 *    space; an error is WS_ERR_DATA and stays until a reset;
 *  - the inflater allocates exactly ws_inflate_memsize() once, and
 *    nothing is left after ws_inflate_free().
 *
 * Why zlib gets one output byte per call: zlib checks a distance against
 * its window contents *plus what this call has written so far*, so with a
 * big output buffer it accepts distances beyond 2^window_bits that
 * RFC 7692 (and our inflater) reject. With one byte per call the bytes
 * written so far are none, and zlib's check is exactly "distance <= bytes
 * of history, at most 2^window_bits". Bigger pieces are given only where
 * the check stays exact: at window 15, and while history plus piece fit
 * in the window. The output cap keeps the rest affordable.
 *
 * "Accept" at the end of a message means the stream stopped between
 * blocks (or after the final block). zlib does not say so directly, so a
 * copy of its state gets the bits of an empty final fixed block: it ends
 * the stream only if the state was between blocks. As ours, the bits
 * still pending there (fewer than 3) are padding and are dropped.
 */
#include <zlib.h>

#include "fuzz_common.h"
#include "ws_deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_CAP (96u << 10)
#define MAX_MSGS 64

enum { ST_OK = 1, ST_ERR, ST_CAP };

typedef struct result {
  int st[MAX_MSGS];   /* per message */
  size_t end[MAX_MSGS]; /* total output after it */
  size_t nmsgs;
  uint8_t *out;
  size_t total;
} result;

typedef struct msg {
  uint8_t *p; /* exact-size heap copy, tail included */
  size_t len;
} msg;

static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

static size_t split_messages(const uint8_t *d, size_t n, msg *m) {
  size_t k = 0, start = 0;
  for (size_t i = 0; i < n && k < MAX_MSGS; i++) {
    int last = i + 1 == n;
    int sep = i >= start + 3 && memcmp(d + i - 3, tail, 4) == 0;
    if (!sep && !last) continue;
    size_t len = i + 1 - start;
    m[k].len = sep ? len : len + 4;
    m[k].p = malloc(m[k].len);
    CHECK(m[k].p);
    memcpy(m[k].p, d + start, len);
    if (!sep) memcpy(m[k].p + len, tail, 4);
    k++;
    start = i + 1;
  }
  if (n == 0) { /* one empty message: just the tail */
    m[0].len = 4;
    m[0].p = malloc(4);
    CHECK(m[0].p);
    memcpy(m[0].p, tail, 4);
    k = 1;
  }
  return k;
}

/* ---- ours -------------------------------------------------------------------- */

static void run_ours(unsigned wbits, int reset, unsigned inmode,
                     unsigned outmode, uint32_t seed, const msg *m,
                     size_t nm, result *res) {
  fz_alloc a;
  ws_inflater z;
  uint32_t r = seed;
  size_t memsize = ws_inflate_memsize(wbits);
  CHECK(memsize > 0);
  fz_alloc_init(&a, memsize);
  CHECK(ws_inflate_init(&z, &a.mem, wbits) == 0);
  CHECK(a.live == memsize && a.blocks == 1);
  res->out = malloc(OUT_CAP);
  CHECK(res->out);
  res->total = 0;
  res->nmsgs = 0;

  for (size_t k = 0; k < nm; k++) {
    const uint8_t *in = m[k].p;
    size_t len = m[k].len, ipos = 0;
    int st = ST_OK;
    for (;;) {
      if (res->total == OUT_CAP) {
        st = ST_CAP;
        break;
      }
      size_t ik = fz_piece(&r, inmode, len - ipos);
      size_t ok = fz_piece(&r, outmode, OUT_CAP - res->total);
      size_t nin = 99, nout = 99;
      int rc = ws_inflate(&z, in + ipos, ik, &nin, res->out + res->total, ok,
                          &nout);
      CHECK(nin <= ik && nout <= ok);
      ipos += nin;
      res->total += nout;
      if (rc) {
        CHECK(rc == WS_ERR_DATA);
        st = res->total == OUT_CAP ? ST_CAP : ST_ERR;
        /* sticky until reset */
        uint8_t tmp[4];
        CHECK(ws_inflate(&z, in, len, &nin, tmp, sizeof(tmp), &nout) ==
              WS_ERR_DATA);
        CHECK(nin == 0 && nout == 0);
        CHECK(ws_inflate_end_message(&z) == WS_ERR_DATA);
        break;
      }
      /* it stops only when the input is used up or the output is full */
      CHECK(nin == ik || nout == ok);
      if (ipos == len && nout < ok) break;
    }
    if (st == ST_OK) {
      int rc = ws_inflate_end_message(&z);
      CHECK(rc == 0 || rc == WS_ERR_DATA);
      if (rc) st = ST_ERR;
    }
    res->st[k] = st;
    res->end[k] = res->total;
    res->nmsgs = k + 1;
    if (st != ST_OK) break;
    if (reset) ws_inflate_reset(&z);
  }
  CHECK(a.live == memsize && a.blocks == 1); /* nothing else allocated */
  ws_inflate_free(&z);
  ws_inflate_free(&z); /* twice is fine */
  CHECK(a.live == 0 && a.blocks == 0);
}

/* ---- zlib ----------------------------------------------------------------------- */

/* 1 if |s| stopped between blocks: an empty final fixed block (BFINAL 1,
 * BTYPE 01, end-of-block 0000000: the 10 bits 0x003) then ends it. */
static int z_between_blocks(z_stream *s) {
  z_stream c;
  uint8_t scratch[64];
  memset(&c, 0, sizeof(c));
  CHECK(inflateCopy(&c, s) == Z_OK);
  CHECK(inflatePrime(&c, -1, 0) == Z_OK);
  CHECK(inflatePrime(&c, 10, 3) == Z_OK);
  c.next_in = NULL;
  c.avail_in = 0;
  c.next_out = scratch;
  c.avail_out = sizeof(scratch);
  int rc = inflate(&c, Z_SYNC_FLUSH);
  CHECK(rc != Z_MEM_ERROR && rc != Z_STREAM_ERROR);
  inflateEnd(&c);
  return rc == Z_STREAM_END;
}

static void run_zlib(unsigned wbits, int reset, const msg *m, size_t nm,
                     result *res) {
  z_stream s;
  memset(&s, 0, sizeof(s));
  CHECK(inflateInit2(&s, -(int)wbits) == Z_OK);
  res->out = malloc(OUT_CAP);
  CHECK(res->out);
  res->total = 0;
  res->nmsgs = 0;
  size_t ctx = 0; /* where the current history started in |out| */

  for (size_t k = 0; k < nm; k++) {
    int st = ST_OK, ended = 0;
    s.next_in = m[k].p;
    s.avail_in = (uInt)m[k].len;
    for (;;) {
      if (res->total == OUT_CAP) {
        st = ST_CAP;
        break;
      }
      /* One byte per call, except where zlib's check is exact anyway:
       * at window 15 (no distance exceeds 2^15), and while the history
       * plus the piece fits in the window. */
      size_t hist = res->total - ctx, w = (size_t)1 << wbits, room = 1;
      if (wbits == 15)
        room = OUT_CAP;
      else if (hist < w)
        room = w - hist;
      if (room > OUT_CAP - res->total) room = OUT_CAP - res->total;
      uInt before = s.avail_in;
      s.next_out = res->out + res->total;
      s.avail_out = (uInt)room;
      int rc = inflate(&s, Z_SYNC_FLUSH);
      size_t made = room - s.avail_out;
      res->total += made;
      if (rc == Z_STREAM_END) {
        ended = 1;
        break;
      }
      if (rc == Z_DATA_ERROR) {
        st = res->total == OUT_CAP ? ST_CAP : ST_ERR;
        break;
      }
      CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
      if (made == 0 && s.avail_in == before) {
        CHECK(s.avail_in == 0);
        break;
      }
    }
    if (st == ST_OK && !ended) {
      if (z_between_blocks(&s))
        CHECK(inflatePrime(&s, -1, 0) == Z_OK); /* drop the padding */
      else
        st = ST_ERR; /* stopped inside a block */
    }
    res->st[k] = st;
    res->end[k] = res->total;
    res->nmsgs = k + 1;
    if (st != ST_OK) break;
    if (reset) {
      CHECK(inflateReset(&s) == Z_OK);
      ctx = res->total;
    } else if (ended) {
      /* A new stream that keeps the history, as ours does. */
      size_t have = res->total - ctx, w = (size_t)1 << wbits;
      if (have > w) have = w;
      CHECK(inflateReset(&s) == Z_OK);
      if (have)
        CHECK(inflateSetDictionary(&s, res->out + res->total - have,
                                   (uInt)have) == Z_OK);
    }
  }
  inflateEnd(&s);
}

static void dump(const char *who, const result *r) {
  fprintf(stderr, "%s: %zu messages, %zu bytes:", who, r->nmsgs, r->total);
  for (size_t k = 0; k < r->nmsgs; k++)
    fprintf(stderr, " [%s %zu]",
            r->st[k] == ST_OK ? "ok" : r->st[k] == ST_ERR ? "err" : "cap",
            r->end[k]);
  fprintf(stderr, "\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  unsigned wbits = 8 + (data[0] & 7u);
  int reset = (data[0] >> 3) & 1;
  unsigned inmode = (data[0] >> 4) & 3u, outmode = (data[0] >> 6) & 3u;
  uint32_t seed = 0x9E3779B9u ^ ((uint32_t)data[1] << 8 | data[2]);
  msg m[MAX_MSGS];
  size_t nm = split_messages(data + 3, size - 3, m);

  result ours, ref;
  run_ours(wbits, reset, inmode, outmode, seed, m, nm, &ours);
  run_zlib(wbits, reset, m, nm, &ref);

  if (getenv("WS_FUZZ_DEBUG")) {
    fprintf(stderr, "window %u, reset %d, %zu messages\n", wbits, reset, nm);
    dump("ours", &ours);
    dump("zlib", &ref);
  }
  int same = 1;
  size_t common = ours.total < ref.total ? ours.total : ref.total;
  if (memcmp(ours.out, ref.out, common) != 0) same = 0;
  /* verdicts, message by message, up to the first cap */
  size_t n = ours.nmsgs < ref.nmsgs ? ours.nmsgs : ref.nmsgs;
  int capped = 0;
  for (size_t k = 0; k < n && same && !capped; k++) {
    if (ours.st[k] == ST_CAP || ref.st[k] == ST_CAP) {
      capped = 1;
      if (ours.st[k] != ref.st[k] || ours.end[k] != ref.end[k]) {
        /* one side reached the cap; the other must still be going */
        const result *c = ours.st[k] == ST_CAP ? &ours : &ref;
        const result *o = c == &ours ? &ref : &ours;
        if (o->end[k] < c->end[k]) same = 0;
        if (o->st[k] == ST_CAP) same = 0; /* both capped: same totals */
      }
      break;
    }
    if (ours.st[k] != ref.st[k] || ours.end[k] != ref.end[k]) same = 0;
  }
  if (!capped && (ours.nmsgs != ref.nmsgs || ours.total != ref.total))
    same = 0;
  if (!same) {
    fprintf(stderr, "window %u, reset %d\n", wbits, reset);
    dump("ours", &ours);
    dump("zlib", &ref);
    size_t i = 0;
    while (i < common && ours.out[i] == ref.out[i]) i++;
    fprintf(stderr, "outputs agree on %zu bytes\n", i);
    CHECK(0 && "differential mismatch");
  }
  free(ours.out);
  free(ref.out);
  for (size_t k = 0; k < nm; k++)
    free(m[k].p);
  return 0;
}
