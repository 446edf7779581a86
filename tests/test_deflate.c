/*
 * Raw DEFLATE codec tests (lib/ws_inflate.c, lib/ws_deflate.c): the
 * RFC 7692 7.2.3 examples byte for byte, differential tests against zlib
 * (the oracle: zlib is used only here, never by the library), corrupt
 * streams (RFC 1951 3.2.3-3.2.7), and a decompression bomb.
 *
 * Sizes: by default every differential still crosses the largest window
 * (32 KiB) several times, a block's symbol limit and the compressor's
 * buffer moves, but stays well under a second, so that the valgrind
 * stage can afford it. WS_TEST_LARGE=1 adds the multi-MiB inputs and the
 * bigger size points (about 9 s natively).
 *
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws_deflate.h"

/* WS_TEST_LARGE set: the big sizes too. */
static int large(void) {
  const char *e = getenv("WS_TEST_LARGE");
  return e && *e && strcmp(e, "0") != 0;
}

/* ---- corpora ----------------------------------------------------------- */

enum { C_TEXT, C_JSON, C_BINARY, C_RANDOM, C_RUNS, C_KINDS };

static const char *const words[] = {
    "the",   "of",     "and",    "websocket", "frame",  "message", "deflate",
    "a",     "window", "server", "client",    "close",  "ping",    "to",
    "in",    "is",     "data",   "payload",   "bytes",  "context", "takeover",
    "Hello", "world",  "zlib",   "inflate",   "header", "length",  "mask"};

static void gen(int kind, uint8_t *p, size_t n, uint64_t *rs) {
  size_t i = 0;
  switch (kind) {
  case C_TEXT:
    while (i < n) {
      const char *w = words[tu_rand(rs) % (sizeof(words) / sizeof(words[0]))];
      while (*w && i < n)
        p[i++] = (uint8_t)*w++;
      if (i < n) p[i++] = (tu_rand(rs) % 11 == 0) ? '\n' : ' ';
    }
    break;
  case C_JSON:
    while (i < n) {
      char tmp[160];
      int k = snprintf(
          tmp, sizeof(tmp),
          "{\"id\":%u,\"user\":\"%s\",\"x\":%u.%02u,\"y\":%u,"
          "\"tags\":[\"%s\",\"%s\"],\"ok\":%s}\n",
          tu_rand(rs) % 100000, words[tu_rand(rs) % 28], tu_rand(rs) % 1000,
          tu_rand(rs) % 100, tu_rand(rs) % 5000, words[tu_rand(rs) % 28],
          words[tu_rand(rs) % 28], tu_rand(rs) & 1 ? "true" : "false");
      for (int j = 0; j < k && i < n; j++)
        p[i++] = (uint8_t)tmp[j];
    }
    break;
  case C_BINARY: /* structured records with small deltas */
    while (i < n) {
      uint32_t v = tu_rand(rs);
      uint8_t rec[12] = {0x01,
                         0x00,
                         (uint8_t)(v & 7),
                         0x00,
                         (uint8_t)(v >> 8),
                         (uint8_t)(v >> 16 & 3),
                         0xff,
                         0xfe,
                         0,
                         0,
                         0,
                         0};
      for (int j = 0; j < 12 && i < n; j++)
        p[i++] = rec[j];
    }
    break;
  case C_RANDOM:
    for (; i < n; i++)
      p[i] = (uint8_t)tu_rand(rs);
    break;
  default: /* long runs and long-distance repeats */
    while (i < n) {
      uint32_t r = tu_rand(rs);
      size_t len = 1 + r % 700;
      if (i > 0 && (r & 0x30000) != 0) {
        size_t d = 1 + tu_rand(rs) % (i < 40000 ? i : 40000);
        for (size_t j = 0; j < len && i < n; j++, i++)
          p[i] = p[i - d];
      } else {
        uint8_t c = (uint8_t)(r >> 24);
        for (size_t j = 0; j < len && i < n; j++)
          p[i++] = c;
      }
    }
    break;
  }
}

/* ---- zlib oracle ------------------------------------------------------- */

/* zlib raw deflate of |n| bytes, ended with a sync flush. */
static uint8_t *z_deflate(const uint8_t *in, size_t n, int wbits, int level,
                          size_t *poutlen) {
  z_stream s;
  memset(&s, 0, sizeof(s));
  assert_int_equal(
      deflateInit2(&s, level, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&s, (uLong)n) + 64;
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  s.next_in = (Bytef *)(uintptr_t)in;
  s.avail_in = (uInt)n;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
  assert_int_equal(s.avail_in, 0);
  *poutlen = cap - s.avail_out;
  deflateEnd(&s);
  return out;
}

/* zlib raw inflate; returns the size or asserts. */
static size_t z_inflate(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                        int wbits) {
  z_stream s;
  memset(&s, 0, sizeof(s));
  assert_int_equal(inflateInit2(&s, -wbits), Z_OK);
  s.next_in = (Bytef *)(uintptr_t)in;
  s.avail_in = (uInt)n;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  int rc = inflate(&s, Z_SYNC_FLUSH);
  assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
  assert_int_equal(s.avail_in, 0);
  size_t got = cap - s.avail_out;
  inflateEnd(&s);
  return got;
}

/* ---- our codec, driven in random pieces -----------------------------------
 */

/* Piece sizes: 0 = random up to 4 KiB, 1 = one byte, else fixed. */
static size_t piece(uint64_t *rs, size_t mode, size_t left) {
  size_t k;
  if (mode == 0)
    k = (tu_rand(rs) & 1) ? 1 + tu_rand(rs) % 64 : 1 + tu_rand(rs) % 4096;
  else
    k = mode;
  return k < left ? k : left;
}

/* Inflates |n| bytes with |z| into |out| (cap bytes), input and output
 * in pieces; returns ws_inflate's error or 0 and the size in *pgot. */
static int our_inflate(ws_inflater *z, const uint8_t *in, size_t n,
                       uint8_t *out, size_t cap, size_t *pgot, uint64_t *rs,
                       size_t inmode, size_t outmode) {
  size_t ipos = 0, opos = 0;
  int stalls = 0;
  for (;;) {
    size_t ik = piece(rs, inmode, n - ipos);
    size_t ok = piece(rs, outmode, cap - opos);
    size_t nin, nout;
    int rc = ws_inflate(z, in + ipos, ik, &nin, out + opos, ok, &nout);
    if (rc) return rc;
    assert_true(nin <= ik);
    assert_true(nout <= ok);
    ipos += nin;
    opos += nout;
    if (ipos == n && nout < ok) break; /* input done, output drained */
    if (opos == cap && ipos == n) break;
    if (nin == 0 && nout == 0) {
      assert_true(++stalls < 4);
      if (opos == cap) break;
    } else {
      stalls = 0;
    }
  }
  *pgot = opos;
  return 0;
}

static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

/* ---- RFC 7692 7.2.3 examples --------------------------------------------- */

static void inflate_msg_hex(ws_inflater *z, const char *hex, const char *want) {
  size_t n, nin, nout, got = 0;
  uint8_t *in = tu_hex(hex, &n);
  uint8_t out[64];
  /* one byte at a time, then the tail (RFC 7692 7.2.2) */
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(
        ws_inflate(z, in + i, 1, &nin, out + got, sizeof(out) - got, &nout), 0);
    assert_int_equal(nin, 1);
    got += nout;
  }
  assert_int_equal(
      ws_inflate(z, tail, 4, &nin, out + got, sizeof(out) - got, &nout), 0);
  got += nout;
  assert_int_equal(ws_inflate_end_message(z), 0);
  assert_int_equal(got, strlen(want));
  assert_memory_equal(out, want, got);
  free(in);
}

/* RFC 7692 7.2.3.1: "Hello" in one compressed message. */
static void rfc7692_hello(void **state) {
  (void)state;
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  inflate_msg_hex(&z, "f2 48 cd c9 c9 07 00", "Hello");
  ws_inflate_free(&z);
}

/* RFC 7692 7.2.3.2: the second "Hello" with the shared LZ77 window. */
static void rfc7692_shared_window(void **state) {
  (void)state;
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  inflate_msg_hex(&z, "f2 48 cd c9 c9 07 00", "Hello");
  inflate_msg_hex(&z, "f2 00 11 00 00", "Hello");
  /* after a reset (no context takeover) the back reference is invalid */
  ws_inflate_reset(&z);
  size_t n, nin, nout;
  uint8_t out[16];
  uint8_t *in = tu_hex("f2 00 11 00 00", &n);
  assert_int_equal(ws_inflate(&z, in, n, &nin, out, sizeof(out), &nout),
                   WS_ERR_DATA);
  free(in);
  ws_inflate_free(&z);
}

/* RFC 7692 7.2.3.3: a DEFLATE block with no compression; 7.2.3.4: two
 * blocks in one message; 7.2.3.5: BFINAL set. */
static void rfc7692_stored_two_blocks_bfinal(void **state) {
  (void)state;
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  inflate_msg_hex(&z, "00 05 00 fa ff 48 65 6c 6c 6f 00", "Hello");
  inflate_msg_hex(&z, "f2 48 05 00 00 00 ff ff ca c9 c9 07 00", "Hello");
  inflate_msg_hex(&z, "f3 48 cd c9 c9 07 00", "Hello");
  /* the stream ended with BFINAL; the next message starts a new one,
   * still with the window: the shared-window example decodes. */
  inflate_msg_hex(&z, "f2 00 11 00 00", "Hello");
  ws_inflate_free(&z);
}

/* A stored block (RFC 1951 3.2.4) whose bytes have not arrived: a call
 * with no input at all (NULL, 0, which ws_inflate() allows) takes nothing
 * and writes nothing, then the bytes come. Under UBSan it failed on
 * NULL + 0 in the stored copy (fuzz_conn_client finding). */
static void stored_block_waits_on_no_input(void **state) {
  (void)state;
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  static const uint8_t head[] = {0x00, 0x05, 0x00, 0xfa, 0xff};
  static const uint8_t rest[] = {'H', 'e', 'l', 'l', 'o', 0x00, 0x00,
                                 0xff, 0xff};
  uint8_t out[16];
  size_t nin = 99, nout = 99;
  assert_int_equal(ws_inflate(&z, head, sizeof(head), &nin, out, sizeof(out),
                              &nout),
                   0);
  assert_int_equal(nin, sizeof(head));
  assert_int_equal(nout, 0);
  assert_int_equal(ws_inflate(&z, NULL, 0, &nin, out, sizeof(out), &nout), 0);
  assert_int_equal(nin, 0);
  assert_int_equal(nout, 0);
  /* and with no room either */
  assert_int_equal(ws_inflate(&z, rest, sizeof(rest), &nin, NULL, 0, &nout),
                   0);
  assert_int_equal(nout, 0);
  assert_int_equal(ws_inflate(&z, rest, sizeof(rest), &nin, out, sizeof(out),
                              &nout),
                   0);
  assert_int_equal(nout, 5);
  assert_memory_equal(out, "Hello", 5);
  ws_inflate_free(&z);
}

/* Our compressor reproduces 7.2.3.1 and 7.2.3.2 byte for byte. */
static void rfc7692_deflate_hello(void **state) {
  (void)state;
  for (int level = 1; level <= 9; level++) {
    ws_deflater d;
    uint8_t out[64];
    size_t nin, nout;
    assert_int_equal(ws_deflate_init(&d, NULL, 15, level), 0);
    assert_int_equal(ws_deflate(&d, (const uint8_t *)"Hello", 5, &nin, out,
                                sizeof(out), &nout, WS_DEFLATE_SYNC_FLUSH),
                     0);
    assert_int_equal(nin, 5);
    tu_assert_hex(out, nout, "f2 48 cd c9 c9 07 00 00 00 ff ff");
    assert_int_equal(ws_deflate(&d, (const uint8_t *)"Hello", 5, &nin, out,
                                sizeof(out), &nout, WS_DEFLATE_SYNC_FLUSH),
                     0);
    /* RFC 7692 shows "f2 00 11 00 00" ('H' then a match of 4); any
     * back reference into the first message is as good: a match of 5
     * at distance 5 is "02 13 00 00". */
    if (nout != 9)
      tu_assert_hex(out, nout, "02 13 00 00 00 00 ff ff");
    else
      tu_assert_hex(out, nout, "f2 00 11 00 00 00 00 ff ff");
    /* an empty message: just the empty stored block (7.2.3.6) */
    assert_int_equal(ws_deflate(&d, NULL, 0, &nin, out, sizeof(out), &nout,
                                WS_DEFLATE_SYNC_FLUSH),
                     0);
    tu_assert_hex(out, nout, "00 00 00 ff ff");
    ws_deflate_reset(&d);
    assert_int_equal(ws_deflate(&d, (const uint8_t *)"Hello", 5, &nin, out,
                                sizeof(out), &nout, WS_DEFLATE_SYNC_FLUSH),
                     0);
    tu_assert_hex(out, nout, "f2 48 cd c9 c9 07 00 00 00 ff ff");
    ws_deflate_free(&d);
  }
}

/* ---- differential: zlib deflate -> our inflate ------------------------------
 */

static void zlib_to_ours(void **state) {
  (void)state;
  uint64_t rs = 42;
  static const size_t sizes[] = {0,   1,    2,    3,     17,    258,
                                 259, 1000, 4096, 33000, 70000, 300000};
  static const int levels[] = {0, 1, 6, 9};
  size_t nsizes = sizeof(sizes) / sizeof(sizes[0]);
  for (int wbits = 9; wbits <= 15; wbits++) {
    for (int kind = 0; kind < C_KINDS; kind++) {
      for (size_t si = 0; si < nsizes; si++) {
        int level = levels[(si + (size_t)kind + (size_t)wbits) % 4];
        size_t n = sizes[si], clen, got;
        /* default: 70000 (two 32 KiB windows and more) for one kind per
         * window, no 300000 */
        if (!large() && (n > 70000 || (n == 70000 && kind != wbits % C_KINDS)))
          continue;
        uint8_t *src = malloc(n + 1);
        gen(kind, src, n, &rs);
        uint8_t *c = z_deflate(src, n, wbits, level, &clen);
        uint8_t *out = malloc(n + 1);
        ws_inflater z;
        assert_int_equal(ws_inflate_init(&z, NULL, (unsigned)wbits), 0);
        size_t inmode = n <= 4096 && (si & 1) ? 1 : 0;
        assert_int_equal(our_inflate(&z, c, clen, out, n + 1, &got, &rs, inmode,
                                     (si & 2) ? 0 : 1u << 20),
                         0);
        assert_int_equal(ws_inflate_end_message(&z), 0);
        assert_int_equal(got, n);
        assert_memory_equal(out, src, n);
        ws_inflate_free(&z);
        free(src);
        free(c);
        free(out);
      }
    }
  }
}

/* Large input, levels 1, 5 and 9, window 15: 3 MiB (96 KiB, three
 * windows, by default). */
static void zlib_to_ours_large(void **state) {
  (void)state;
  uint64_t rs = 7;
  size_t n = large() ? 3u << 20 : 96u << 10, clen, got;
  uint8_t *src = malloc(n), *out = malloc(n + 1);
  for (int kind = 0; kind < C_KINDS; kind++) {
    gen(kind, src, n, &rs);
    for (int level = 1; level <= 9; level += 4) {
      uint8_t *c = z_deflate(src, n, 15, level, &clen);
      ws_inflater z;
      assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
      assert_int_equal(our_inflate(&z, c, clen, out, n + 1, &got, &rs, 0, 0),
                       0);
      assert_int_equal(got, n);
      assert_memory_equal(out, src, n);
      ws_inflate_free(&z);
      free(c);
    }
  }
  free(src);
  free(out);
}

/* Context takeover: many messages through one zlib stream, each ended by
 * Z_SYNC_FLUSH with the tail stripped, inflated one by one. */
static void zlib_to_ours_takeover(void **state) {
  (void)state;
  uint64_t rs = 99;
  for (int wbits = 9; wbits <= 15; wbits += 3) {
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(
        deflateInit2(&s, 6, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    ws_inflater z;
    assert_int_equal(ws_inflate_init(&z, NULL, (unsigned)wbits), 0);
    uint8_t src[5000], c[6000], out[5001];
    for (int m = 0; m < (large() ? 300 : 120); m++) {
      size_t n = tu_rand(&rs) % 4000, got;
      gen(m % 3 == 0 ? C_TEXT : C_JSON, src, n, &rs);
      s.next_in = src;
      s.avail_in = (uInt)n;
      s.next_out = c;
      s.avail_out = sizeof(c);
      assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
      size_t clen = sizeof(c) - s.avail_out;
      assert_true(clen >= 4);
      assert_memory_equal(c + clen - 4, tail, 4);
      memcpy(c + clen - 4, tail, 4); /* strip and re-append */
      assert_int_equal(our_inflate(&z, c, clen, out, sizeof(out), &got, &rs,
                                   m & 1 ? 0 : 7, m & 2 ? 0 : 300),
                       0);
      assert_int_equal(ws_inflate_end_message(&z), 0);
      assert_int_equal(got, n);
      assert_memory_equal(out, src, n);
    }
    deflateEnd(&s);
    ws_inflate_free(&z);
  }
}

/* ---- differential: our deflate -> zlib inflate and ours -------------------
 */

/* Compresses |n| bytes with |d| in pieces, output in pieces, ending with
 * a sync flush; returns malloc'd output. */
static uint8_t *our_deflate(ws_deflater *d, const uint8_t *in, size_t n,
                            size_t *poutlen, uint64_t *rs, size_t inmode,
                            size_t outmode) {
  size_t cap = n + n / 8 + 1024, opos = 0, ipos = 0;
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  for (;;) {
    size_t ik = piece(rs, inmode, n - ipos);
    int flush = ipos + ik == n ? WS_DEFLATE_SYNC_FLUSH : WS_DEFLATE_NO_FLUSH;
    size_t ok = piece(rs, outmode, cap - opos);
    size_t nin, nout;
    int rc = ws_deflate(d, in + ipos, ik, &nin, out + opos, ok, &nout, flush);
    assert_true(rc == 0 || rc == WS_ERR_WOULDBLOCK);
    assert_true(nin <= ik && nout <= ok);
    ipos += nin;
    opos += nout;
    if (rc == 0 && flush == WS_DEFLATE_SYNC_FLUSH && nin == ik) break;
    assert_true(opos < cap);
  }
  *poutlen = opos;
  return out;
}

static void ours_roundtrip(void **state) {
  (void)state;
  uint64_t rs = 1234;
  static const size_t sizes[] = {0,   1,   2,   3,   4,    5,     100,
                                 257, 258, 259, 600, 5000, 40000, 200000};
  for (int wbits = 8; wbits <= 15; wbits++) {
    for (int level = 1; level <= 9; level += (level == 1 ? 5 : 3)) {
      for (int kind = 0; kind < C_KINDS; kind++) {
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
          size_t n = sizes[si], clen, got;
          /* default: 40000 (past the 32 KiB window and the compressor's
           * buffer moves) for one level per window and kind, no 200000 */
          if (!large() &&
              (n > 40000 ||
               (n == 40000 && level != 1 + 5 * ((wbits + kind) % 2))))
            continue;
          uint8_t *src = malloc(n + 1), *out = malloc(n + 1);
          gen(kind, src, n, &rs);
          ws_deflater d;
          assert_int_equal(ws_deflate_init(&d, NULL, (unsigned)wbits, level),
                           0);
          size_t inmode = n <= 5000 && (si & 1) ? 1 : 0;
          uint8_t *c = our_deflate(&d, src, n, &clen, &rs, inmode,
                                   (si & 2) ? 0 : 1u << 22);
          assert_true(clen >= 5);
          assert_memory_equal(c + clen - 4, tail, 4);
          /* zlib (window 15: a window only bounds distances) */
          size_t zg15 = z_inflate(c, clen, out, n + 1, 15);
          if (zg15 != n)
            fprintf(stderr, "w %d level %d kind %d n %zu in %zu: zlib %zu\n",
                    wbits, level, kind, n, inmode, zg15);
          assert_int_equal(zg15, n);
          assert_memory_equal(out, src, n);
          /* zlib at the same window, where zlib supports it */
          if (wbits >= 9) {
            size_t zg = z_inflate(c, clen, out, n + 1, wbits);
            if (zg != n)
              fprintf(stderr, "wbits %d level %d kind %d n %zu: zlib %zu\n",
                      wbits, level, kind, n, zg);
            assert_int_equal(zg, n);
          }
          /* ours, at exactly the window */
          ws_inflater z;
          assert_int_equal(ws_inflate_init(&z, NULL, (unsigned)wbits), 0);
          assert_int_equal(
              our_inflate(&z, c, clen, out, n + 1, &got, &rs, 0, 0), 0);
          assert_int_equal(got, n);
          assert_memory_equal(out, src, n);
          ws_inflate_free(&z);
          ws_deflate_free(&d);
          free(c);
          free(src);
          free(out);
        }
      }
    }
  }
}

/* Large inputs, levels 1 and 6 at windows 8, 9 and 15: 3 MiB (by
 * default 96 KiB: at window 15 the compressor's 2W + 2*262 byte buffer
 * still moves its history down). */
static void ours_roundtrip_large(void **state) {
  (void)state;
  uint64_t rs = 555;
  size_t n = large() ? 3u << 20 : 96u << 10, clen, got;
  uint8_t *src = malloc(n), *out = malloc(n + 1);
  static const int wb[] = {8, 9, 15};
  for (int kind = 0; kind < C_KINDS; kind++) {
    gen(kind, src, n, &rs);
    for (int level = 1; level <= 6; level += 5) {
      for (int w = 0; w < 3; w++) {
        ws_deflater d;
        assert_int_equal(ws_deflate_init(&d, NULL, (unsigned)wb[w], level), 0);
        uint8_t *c = our_deflate(&d, src, n, &clen, &rs, 0, 0);
        assert_int_equal(z_inflate(c, clen, out, n + 1, 15), n);
        assert_memory_equal(out, src, n);
        ws_inflater z;
        assert_int_equal(ws_inflate_init(&z, NULL, (unsigned)wb[w]), 0);
        assert_int_equal(our_inflate(&z, c, clen, out, n + 1, &got, &rs, 0, 0),
                         0);
        assert_int_equal(got, n);
        assert_memory_equal(out, src, n);
        ws_inflate_free(&z);
        ws_deflate_free(&d);
        free(c);
      }
    }
  }
  free(src);
  free(out);
}

/* Context takeover across many messages: our compressor against a zlib
 * inflate stream kept across messages, and against ours. */
static void ours_takeover(void **state) {
  (void)state;
  uint64_t rs = 4321;
  for (int wbits = 8; wbits <= 15; wbits++) {
    for (int level = 1; level <= 6; level += 5) {
      ws_deflater d;
      ws_inflater z;
      z_stream s;
      memset(&s, 0, sizeof(s));
      assert_int_equal(inflateInit2(&s, -(wbits < 9 ? 9 : wbits)), Z_OK);
      assert_int_equal(ws_deflate_init(&d, NULL, (unsigned)wbits, level), 0);
      assert_int_equal(ws_inflate_init(&z, NULL, (unsigned)wbits), 0);
      uint8_t src[4200], out[4201];
      for (int m = 0; m < (large() ? 150 : 100); m++) {
        size_t n = 100 + tu_rand(&rs) % 4000, clen, got;
        gen(m % 4 == 3 ? C_BINARY : C_JSON, src, n, &rs);
        uint8_t *c = our_deflate(&d, src, n, &clen, &rs, m & 1 ? 0 : 13, 0);
        assert_memory_equal(c + clen - 4, tail, 4);
        /* zlib, kept across messages (it needs the tail) */
        s.next_in = c;
        s.avail_in = (uInt)clen;
        s.next_out = out;
        s.avail_out = sizeof(out);
        int rc = inflate(&s, Z_SYNC_FLUSH);
        assert_true(rc == Z_OK);
        assert_int_equal(sizeof(out) - s.avail_out, n);
        assert_memory_equal(out, src, n);
        /* ours */
        assert_int_equal(our_inflate(&z, c, clen, out, sizeof(out), &got, &rs,
                                     0, m & 2 ? 0 : 1000),
                         0);
        assert_int_equal(ws_inflate_end_message(&z), 0);
        assert_int_equal(got, n);
        assert_memory_equal(out, src, n);
        free(c);
        if (m % 50 == 49) { /* no_context_takeover on both sides */
          ws_deflate_reset(&d);
          ws_inflate_reset(&z);
          inflateReset(&s);
        }
      }
      inflateEnd(&s);
      ws_inflate_free(&z);
      ws_deflate_free(&d);
    }
  }
}

/* The sync flush with one byte of output space per call: WOULDBLOCK until
 * everything is out, each retry passing what is left of the final piece
 * with the flush again (fuzz_deflate's first long run stopped on a
 * driver that did not); a caller who drops the flush on a retry gets the
 * flush at the end of that piece instead, and the data still round
 * trips. */
static void deflate_flush_retries(void **state) {
  (void)state;
  uint64_t rs = 31;
  uint8_t src[3000], c[4000], out[3001];
  gen(C_TEXT, src, sizeof(src), &rs);
  for (int drop = 0; drop <= 1; drop++) {
    ws_deflater d;
    assert_int_equal(ws_deflate_init(&d, NULL, 10, 6), 0);
    size_t ip = 0, op = 0, calls = 0, nin, nout;
    /* the first 1000 bytes without flush, then the rest with it */
    assert_int_equal(ws_deflate(&d, src, 1000, &nin, c, sizeof(c), &nout,
                                WS_DEFLATE_NO_FLUSH),
                     0);
    ip = nin;
    op = nout;
    int rc;
    do {
      int flush =
          drop && calls == 3 ? WS_DEFLATE_NO_FLUSH : WS_DEFLATE_SYNC_FLUSH;
      rc = ws_deflate(&d, src + ip, sizeof(src) - ip, &nin, c + op, 1, &nout,
                      flush);
      assert_true(rc == 0 || rc == WS_ERR_WOULDBLOCK);
      if (rc == WS_ERR_WOULDBLOCK) assert_int_equal(nout, 1);
      ip += nin;
      op += nout;
      assert_true(++calls < sizeof(c));
    } while (rc == WS_ERR_WOULDBLOCK);
    assert_int_equal(ip, sizeof(src));
    assert_true(op >= 4);
    assert_memory_equal(c + op - 4, tail, 4);
    ws_inflater z;
    size_t got;
    assert_int_equal(ws_inflate_init(&z, NULL, 10), 0);
    assert_int_equal(our_inflate(&z, c, op, out, sizeof(out), &got, &rs, 0, 0),
                     0);
    assert_int_equal(ws_inflate_end_message(&z), 0);
    assert_int_equal(got, sizeof(src));
    assert_memory_equal(out, src, sizeof(src));
    ws_inflate_free(&z);
    ws_deflate_free(&d);
  }
}

/* No input at all is fine, as a NULL pointer with length 0: at the
 * start, in the middle of a match being copied out, and at the end. The
 * connection drains the inflater that way (fuzz_conn_server found
 * ws_inflate() computing NULL + 0, undefined behaviour, under UBSan). */
static void inflate_null_input(void **state) {
  (void)state;
  size_t clen, nin, nout, got = 0, nulls = 0;
  uint8_t src[1000], out[1001];
  memset(src, 'z', sizeof(src));
  memcpy(src + 500, "a stored-looking middle", 23);
  uint8_t *c = z_deflate(src, sizeof(src), 15, 9, &clen);
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  /* before each input byte, drain with no input (NULL, 0) until nothing
   * comes: every state of the decoder sees such a call */
  for (size_t ip = 0; ip <= clen; ip++) {
    do {
      assert_int_equal(ws_inflate(&z, NULL, 0, &nin, out + got, 7, &nout), 0);
      assert_int_equal(nin, 0);
      got += nout;
      nulls += nout > 0;
    } while (nout == 7);
    if (ip == clen) break;
    do {
      assert_int_equal(ws_inflate(&z, c + ip, 1, &nin, out + got, 7, &nout), 0);
      got += nout;
    } while (nin == 0);
  }
  assert_true(nulls > 0); /* some output came out of NULL calls */
  assert_int_equal(ws_inflate(&z, NULL, 0, &nin, NULL, 0, &nout), 0);
  assert_int_equal(ws_inflate_end_message(&z), 0);
  assert_int_equal(got, sizeof(src));
  assert_memory_equal(out, src, sizeof(src));
  ws_inflate_free(&z);
  free(c);
}

/* Our window-8 output never reaches back more than 256 bytes, and a
 * window-9 inflater rejects what zlib produces with window 15. */
static void window_limits(void **state) {
  (void)state;
  uint64_t rs = 8;
  size_t n = 100000, clen, got;
  uint8_t *src = malloc(n), *out = malloc(n + 1);
  gen(C_RUNS, src, n, &rs);
  uint8_t *c = z_deflate(src, n, 15, 9, &clen);
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 9), 0);
  assert_int_equal(our_inflate(&z, c, clen, out, n + 1, &got, &rs, 0, 0),
                   WS_ERR_DATA);
  ws_inflate_free(&z);
  free(c);
  /* ours at window 8, inflated by ours at window 8 (checked distances) */
  for (int level = 1; level <= 9; level += 4) {
    ws_deflater d;
    assert_int_equal(ws_deflate_init(&d, NULL, 8, level), 0);
    c = our_deflate(&d, src, n, &clen, &rs, 0, 0);
    assert_int_equal(ws_inflate_init(&z, NULL, 8), 0);
    assert_int_equal(our_inflate(&z, c, clen, out, n + 1, &got, &rs, 0, 0), 0);
    assert_int_equal(got, n);
    assert_memory_equal(out, src, n);
    assert_true(clen < n / 2); /* runs still compress at window 8 */
    ws_inflate_free(&z);
    ws_deflate_free(&d);
    free(c);
  }
  free(src);
  free(out);
}

/* ---- corrupt data (RFC 1951) ----------------------------------------------
 */

/* Builds a bit string LSB first. */
typedef struct bits {
  uint8_t b[256];
  size_t n; /* bits */
} bits;

static void put(bits *s, uint32_t v, unsigned k) {
  for (unsigned i = 0; i < k; i++, s->n++) {
    if (i < 32 && (v >> i & 1u)) s->b[s->n / 8] |= (uint8_t)(1u << (s->n % 8));
  }
}

/* Huffman codes go in MSB first. */
static void put_code(bits *s, uint32_t code, unsigned k) {
  while (k--)
    put(s, code >> k & 1u, 1);
}

static int inflate_all(const uint8_t *in, size_t n, unsigned wbits) {
  uint8_t out[1024];
  ws_inflater z;
  size_t nin, nout;
  uint64_t rs = n;
  size_t got;
  assert_int_equal(ws_inflate_init(&z, NULL, wbits), 0);
  int rc1 = ws_inflate(&z, in, n, &nin, out, sizeof(out), &nout);
  ws_inflate_reset(&z);
  int rc2 = our_inflate(&z, in, n, out, sizeof(out), &got, &rs, 1, 1);
  assert_int_equal(rc1, rc2);
  if (rc1 == 0) rc1 = ws_inflate_end_message(&z);
  ws_inflate_free(&z);
  return rc1;
}

/* Dynamic header: HLIT, HDIST, HCLEN, then |nclen| 3-bit lengths. */
static void dyn_header(bits *s, unsigned hlit, unsigned hdist, unsigned hclen,
                       const uint8_t *cl) {
  put(s, 0, 1);
  put(s, 2, 2);
  put(s, hlit - 257, 5);
  put(s, hdist - 1, 5);
  put(s, hclen - 4, 4);
  for (unsigned i = 0; i < hclen; i++)
    put(s, cl[i], 3);
}

static void corrupt_streams(void **state) {
  (void)state;
  bits s;
  /* 3.2.3: block type 3 is reserved */
  memset(&s, 0, sizeof(s));
  put(&s, 1, 1);
  put(&s, 3, 2);
  assert_int_equal(inflate_all(s.b, 4, 15), WS_ERR_DATA);

  /* 3.2.4: stored LEN must be the complement of NLEN */
  {
    static const uint8_t st[] = {0x01, 0x05, 0x00, 0xfa, 0xfe,
                                 'H',  'e',  'l',  'l',  'o'};
    assert_int_equal(inflate_all(st, sizeof(st), 15), WS_ERR_DATA);
  }
  /* 3.2.6: fixed code 286 and 287 are invalid: 286 = 11000110 */
  memset(&s, 0, sizeof(s));
  put(&s, 1, 1);
  put(&s, 1, 2);
  put_code(&s, 0xc6, 8);
  put(&s, 0, 16);
  assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  memset(&s, 0, sizeof(s));
  put(&s, 1, 1);
  put(&s, 1, 2);
  put_code(&s, 0xc7, 8);
  put(&s, 0, 16);
  assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  /* fixed distance codes 30 and 31: literal 'a' then length 3 (code 257 =
   * 0000001), distance code 30 (11110) */
  for (unsigned dc = 30; dc < 32; dc++) {
    memset(&s, 0, sizeof(s));
    put(&s, 1, 1);
    put(&s, 1, 2);
    put_code(&s, 0x30 + 'a', 8);
    put_code(&s, 1, 7);
    put_code(&s, dc, 5);
    put(&s, 0, 16);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  /* distance beyond the data so far: 'a', then length 3 distance 2 */
  memset(&s, 0, sizeof(s));
  put(&s, 1, 1);
  put(&s, 1, 2);
  put_code(&s, 0x30 + 'a', 8);
  put_code(&s, 1, 7);
  put_code(&s, 1, 5); /* distance code 1 = distance 2 */
  put(&s, 0, 16);
  assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  /* ... and distance 1 is fine */
  memset(&s, 0, sizeof(s));
  put(&s, 1, 1);
  put(&s, 1, 2);
  put_code(&s, 0x30 + 'a', 8);
  put_code(&s, 1, 7);
  put_code(&s, 0, 5);
  put_code(&s, 0, 7); /* end of block */
  assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), 0);

  /* 3.2.7: too many literal/length codes (HLIT 287, 288) and distance
   * codes (HDIST 31, 32) */
  static const uint8_t cl_ok[19] = {0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (unsigned hl = 287; hl <= 288; hl++) {
    memset(&s, 0, sizeof(s));
    dyn_header(&s, hl, 1, 4, cl_ok);
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  for (unsigned hd = 31; hd <= 32; hd++) {
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, hd, 4, cl_ok);
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  /* code length code: oversubscribed (three codes of length 1), and
   * incomplete (one code of length 2) */
  {
    uint8_t cl[19] = {1, 1, 1, 0};
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, 1, 4, cl);
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, 1, 4, cl_ok); /* only symbol 0 with length 2 */
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  /* repeat (16) with no previous length. Code length code: 16 -> "0",
   * 0 -> "10"... use lengths 16:1, 17:0, 18:0, 0:1 (order 16 17 18 0). */
  {
    uint8_t cl[19] = {1, 0, 0, 1};
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, 1, 4, cl);
    put_code(&s, 0, 1); /* symbol 0?  codes: sym 0 -> 0, sym 16 -> 1 */
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, 1, 4, cl);
    put_code(&s, 1, 1); /* 16 first */
    put(&s, 0, 2);
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  /* repeat running past HLIT + HDIST: lengths 18 (zeros 11..138) and 1.
   * codes: sym 1 -> 0, sym 18 -> 1 (order 16 17 18 0 8 7 9 6 10 5 11 4
   * 12 3 13 2 14 1: index 17 is symbol 1). */
  {
    uint8_t cl[19] = {0};
    cl[2] = 1;  /* 18 */
    cl[17] = 1; /* 1 */
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, 1, 18, cl);
    for (int i = 0; i < 2; i++) {
      put_code(&s, 1, 1);
      put(&s, 127, 7); /* 138 zeros, twice: 276 */
    }
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  /* literal/length code without an end-of-block code, and an
   * incomplete literal/length code: 258 lengths of 1 via repeats is
   * oversubscribed; all zero but one literal is incomplete and lacks 256 */
  {
    uint8_t cl[19] = {0};
    cl[2] = 1;  /* 18 */
    cl[17] = 1; /* 1 */
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 257, 1, 18, cl);
    put_code(&s, 0, 1); /* lit 0: length 1 */
    put_code(&s, 0, 1); /* lit 1: length 1 */
    put_code(&s, 1, 1);
    put(&s, 127, 7); /* 138 zeros */
    put_code(&s, 1, 1);
    put(&s, 116, 7);    /* 127 zeros: 256 done, 256 has length 0 */
    put_code(&s, 0, 1); /* distance 0: length 1 */
    put(&s, 0, 32);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15), WS_ERR_DATA);
  }
  /* truncated: a fixed block that stops without its end */
  {
    static const uint8_t tr[] = {0xf2, 0x48, 0xcd};
    assert_int_equal(inflate_all(tr, sizeof(tr), 15), WS_ERR_DATA);
  }
}

/* A distance within the data so far but beyond the window (RFC 7692
 * 7.1.2: the peer promised at most 2^window_bits): 600 stored bytes, then
 * a match of 3 at distance 550. Window 9 (512) refuses it however the
 * input and the output are split, in particular when the 600 bytes were
 * produced by the same call (zlib would take it then); window 10 takes
 * it. */
static void distance_beyond_window(void **state) {
  (void)state;
  uint8_t in[700], out[1024];
  size_t n = 0;
  in[n++] = 0x00; /* stored, not final */
  in[n++] = 600 & 0xff;
  in[n++] = 600 >> 8;
  in[n++] = (uint8_t) ~(600 & 0xff);
  in[n++] = (uint8_t) ~(600 >> 8);
  for (int i = 0; i < 600; i++)
    in[n++] = (uint8_t)('a' + i % 26);
  bits s;
  memset(&s, 0, sizeof(s));
  put(&s, 1, 1);       /* final */
  put(&s, 1, 2);       /* fixed */
  put_code(&s, 1, 7);  /* 257: length 3 */
  put_code(&s, 18, 5); /* distance code 18: 513 + 8 extra bits */
  put(&s, 550 - 513, 8);
  put_code(&s, 0, 7); /* end of block */
  memcpy(in + n, s.b, (s.n + 7) / 8);
  n += (s.n + 7) / 8;
  for (size_t mode = 0; mode < 3; mode++) {
    uint64_t rs = 5 + mode;
    size_t got;
    static const size_t modes[3] = {1u << 20, 1, 0};
    ws_inflater z;
    assert_int_equal(ws_inflate_init(&z, NULL, 9), 0);
    assert_int_equal(our_inflate(&z, in, n, out, sizeof(out), &got, &rs,
                                 modes[mode], modes[mode]),
                     WS_ERR_DATA);
    ws_inflate_free(&z);
    assert_int_equal(ws_inflate_init(&z, NULL, 10), 0);
    assert_int_equal(our_inflate(&z, in, n, out, sizeof(out), &got, &rs,
                                 modes[mode], modes[mode]),
                     0);
    assert_int_equal(got, 603);
    assert_memory_equal(out + 600, out + 50, 3);
    ws_inflate_free(&z);
  }
}

/* Dynamic blocks whose literal/length or distance code lengths are
 * oversubscribed (RFC 1951 3.2.2: more codes than the lengths allow),
 * and a distance code that the (allowed) one-code distance tree does
 * not have. Code length codes: 1 -> "0", 16 -> "10", 0 -> "11". */
/* Inflates the dynamic block header in |s| followed by 64 zero bytes,
 * which would decode as data: the header must be refused by itself,
 * with no output and no input taken past it. Returns the result. */
static int fails_at_header(bits *s) {
  size_t hbytes = (s->n + 7) / 8;
  put(s, 0, 64 * 8);
  uint8_t out[4096];
  size_t nin, nout;
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  int rc = ws_inflate(&z, s->b, (s->n + 7) / 8, &nin, out, sizeof(out), &nout);
  assert_int_equal(nout, 0);
  assert_true(nin <= hbytes + 1);
  ws_inflate_free(&z);
  assert_int_equal(inflate_all(s->b, (s->n + 7) / 8, 15), rc);
  return rc;
}

static void oversubscribed_tables(void **state) {
  (void)state;
  /* Code length code lengths, in the RFC order 16 17 18 0 8 7 9 6 10 5
   * 11 4 12 3 13 2 14 1: 1 -> 1, 0 -> 2, 16 -> 2, so the codes are
   * 1 "0", 0 "10", 16 "11". */
  uint8_t cl[19] = {2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  /* literal/lengths all of length 1 (257 codes): oversubscribed */
  bits s;
  memset(&s, 0, sizeof(s));
  dyn_header(&s, 257, 1, 18, cl);
  put_code(&s, 0, 1); /* length 1 */
  for (int i = 0; i < 42; i++) {
    put_code(&s, 3, 2); /* 16: repeat 6 */
    put(&s, 3, 2);
  }
  put_code(&s, 3, 2); /* 16: repeat 4, total 257 */
  put(&s, 1, 2);
  put_code(&s, 0, 1); /* distance 0: length 1 */
  assert_int_equal(fails_at_header(&s), WS_ERR_DATA);

  /* literal/lengths fine (0 and 256 of length 1), distances all of
   * length 1 (30 codes): oversubscribed */
  memset(&s, 0, sizeof(s));
  dyn_header(&s, 257, 30, 18, cl);
  put_code(&s, 0, 1); /* lit 0: 1 */
  for (int i = 1; i < 256; i++)
    put_code(&s, 2, 2); /* zeros */
  put_code(&s, 0, 1);   /* 256: 1 */
  put_code(&s, 0, 1);   /* distance 0: 1 */
  for (int i = 0; i < 4; i++) {
    put_code(&s, 3, 2); /* 16: repeat 6, 24 more */
    put(&s, 3, 2);
  }
  put_code(&s, 3, 2); /* 16: repeat 5: 30 */
  put(&s, 2, 2);
  assert_int_equal(fails_at_header(&s), WS_ERR_DATA);

  /* One distance code (incomplete, which RFC 1951 allows): literals
   * decode, and a match using the missing distance code "1" fails.
   * Code length codes: 0 "00", 1 "01", 2 "10", 16 "11"; literal/lengths
   * 0 "0", 256 "10", 257 "11"; distance 0 "0". */
  uint8_t cl2[19] = {2, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2};
  for (int bad = 1; bad >= 0; bad--) {
    memset(&s, 0, sizeof(s));
    dyn_header(&s, 258, 1, 18, cl2);
    put_code(&s, 1, 2); /* lit 0: 1 */
    for (int i = 1; i < 256; i++)
      put_code(&s, 0, 2);
    put_code(&s, 2, 2);             /* 256: 2 */
    put_code(&s, 2, 2);             /* 257: 2 */
    put_code(&s, 1, 2);             /* distance 0: 1 */
    put_code(&s, 0, 1);             /* lit 0 */
    put_code(&s, 0, 1);             /* lit 0 */
    put_code(&s, 3, 2);             /* 257: length 3 */
    put_code(&s, (uint32_t)bad, 1); /* distance code "1" (missing) or "0" */
    put_code(&s, 2, 2);             /* end of block */
    /* the sync flush a message ends with (RFC 7692 7.2.1) */
    put(&s, 0, 3);
    s.n = (s.n + 7) / 8 * 8;
    put(&s, 0xffff0000u, 32);
    uint8_t out[16];
    size_t nin, nout;
    ws_inflater z;
    assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
    int rc = ws_inflate(&z, s.b, (s.n + 7) / 8, &nin, out, sizeof(out), &nout);
    if (bad) {
      assert_int_equal(rc, WS_ERR_DATA);
      assert_int_equal(nout, 2); /* the two literals before the bad code */
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(nout, 5);
      assert_int_equal(ws_inflate_end_message(&z), 0);
    }
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
    ws_inflate_free(&z);
    assert_int_equal(inflate_all(s.b, (s.n + 7) / 8, 15),
                     bad ? WS_ERR_DATA : 0);
  }
}

/* Random corruption of valid streams: any result but a crash, and no
 * output beyond the cap. Run under ASan/UBSan and valgrind. */
static void corrupt_random(void **state) {
  (void)state;
  uint64_t rs = 77;
  uint8_t src[3000], out[4000];
  int iters = large() ? 3000 : 600;
  for (int it = 0; it < iters; it++) {
    size_t n = tu_rand(&rs) % sizeof(src), clen, got;
    gen(it % C_KINDS, src, n, &rs);
    uint8_t *c = z_deflate(src, n, 9 + it % 7, 1 + it % 9, &clen);
    unsigned flips = 1 + tu_rand(&rs) % 4;
    for (unsigned f = 0; f < flips && clen > 0; f++)
      c[tu_rand(&rs) % clen] ^= (uint8_t)(1u << (tu_rand(&rs) % 8));
    ws_inflater z;
    assert_int_equal(ws_inflate_init(&z, NULL, 9 + (unsigned)(it % 7)), 0);
    int rc = our_inflate(&z, c, clen, out, sizeof(out), &got, &rs,
                         it & 1 ? 1 : 0, 0);
    assert_true(rc == 0 || rc == WS_ERR_DATA);
    assert_true(got <= sizeof(out));
    ws_inflate_free(&z);
    free(c);
  }
}

/* ---- bomb -------------------------------------------------------------------
 */

/* 10 MiB (by default 1 MiB) of zeros compress to ~10 KiB (~1 KiB); with
 * an output cap of 64 KiB the inflater stops at the cap, having read
 * only a little of the input. */
static void bomb(void **state) {
  (void)state;
  size_t n = large() ? 10u << 20 : 1u << 20, clen;
  uint8_t *src = calloc(1, n);
  uint8_t *c = z_deflate(src, n, 15, 9, &clen);
  free(src);
  ws_inflater z;
  assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
  uint8_t out[65536];
  size_t nin, nout, total_in = 0, total_out = 0;
  /* the caller's cap: 64 KiB in 4 KiB pieces */
  while (total_out < sizeof(out)) {
    assert_int_equal(ws_inflate(&z, c + total_in, clen - total_in, &nin,
                                out + total_out, 4096, &nout),
                     0);
    total_in += nin;
    total_out += nout;
    assert_int_equal(nout, 4096);
  }
  assert_int_equal(total_out, sizeof(out));
  /* 64 KiB of output needs well under 1 KiB of this input */
  assert_true(total_in < 1024);
  for (size_t i = 0; i < total_out; i++)
    assert_int_equal(out[i], 0);
  ws_inflate_free(&z);
  free(c);
}

/* ---- match finder edges ------------------------------------------------- */

/* Deflates |n| bytes at |src| as one message with a fresh deflater;
 * checks both inflaters give them back (ours with the same window, so
 * every distance is checked against it). Returns the compressed size. */
static size_t roundtrip_one(const uint8_t *src, size_t n, unsigned w, int level,
                            uint64_t *rs) {
  ws_deflater d;
  ws_inflater z;
  size_t clen, got;
  uint8_t *out = malloc(n + 1);
  assert_non_null(out);
  assert_int_equal(ws_deflate_init(&d, NULL, w, level), 0);
  uint8_t *c = our_deflate(&d, src, n, &clen, rs, 0, 0);
  assert_int_equal(ws_inflate_init(&z, NULL, w), 0);
  assert_int_equal(our_inflate(&z, c, clen, out, n + 1, &got, rs, 0, 0), 0);
  assert_int_equal(got, n);
  assert_memory_equal(out, src, n);
  assert_int_equal(z_inflate(c, clen, out, n + 1, 15), n);
  assert_memory_equal(out, src, n);
  ws_inflate_free(&z);
  ws_deflate_free(&d);
  free(c);
  free(out);
  return clen;
}

/* RFC 1951 3.2.5 / RFC 7692 7.1.2: a match may reach back no further
 * than the window. 258 random bytes repeated W - 1 back are one match
 * of 258 (the longest, RFC 1951 3.2.5) at the edge of the window;
 * repeated W + 1 back they are out of reach and nothing compresses. */
static void match_at_window_edge(void **state) {
  (void)state;
  uint64_t rs = 11;
  for (unsigned w = 8; w <= 15; w++) {
    size_t W = (size_t)1 << w;
    for (int far = 0; far < 2; far++) {
      size_t d = far ? W + 1 : W - 1, n = d + 258;
      uint8_t *src = malloc(n);
      assert_non_null(src);
      for (size_t i = 0; i < d; i++)
        src[i] = (uint8_t)tu_rand(&rs);
      /* the first 258 bytes again at distance d, copied forward byte by
       * byte as LZ77 does (the ranges overlap when d < 258) */
      for (size_t i = 0; i < 258; i++)
        src[d + i] = src[i];
      for (int level = 1; level <= 9; level++) {
        size_t clen = roundtrip_one(src, n, w, level, &rs);
        if (far)
          assert_true(clen >= n);
        else if (level >= 2) /* the chains find it; level 1 may not */
          assert_true(clen + 150 <= n);
      }
      free(src);
    }
  }
}

/* A run of 1 + 258k equal bytes is a literal and k matches of 258 at
 * distance 1 (RFC 1951 3.2.5: length code 285, distance code 0), in a
 * fixed-code block (3.2.6), then the empty stored block of the flush.
 * Exact bits at the lazy levels, which hash every position; levels 1-3
 * skip the inside of long matches and pick other distances. */
static void longest_matches_258(void **state) {
  (void)state;
  uint64_t rs = 15;
  uint8_t src[1 + 258 * 3], out[64];
  memset(src, 'a', sizeof(src));
  for (size_t k = 1; k <= 3; k++) {
    size_t n = 1 + 258 * k, olen, nin;
    bits want;
    memset(&want, 0, sizeof(want));
    put(&want, 0, 1);               /* BFINAL 0 */
    put(&want, 1, 2);               /* BTYPE 01 */
    put_code(&want, 0x30 + 'a', 8); /* literal 'a' */
    for (size_t i = 0; i < k; i++) {
      put_code(&want, 0xc0 + (285 - 280), 8); /* length 258 */
      put_code(&want, 0, 5);                  /* distance 1 */
    }
    put_code(&want, 0, 7); /* end of block */
    put(&want, 0, 3);      /* stored, BFINAL 0, then LEN 0, NLEN ffff */
    want.n = (want.n + 7) / 8 * 8;
    put(&want, 0xffff0000u, 32);
    for (int level = 1; level <= 9; level++) {
      for (unsigned w = 8; w <= 15; w += 7) {
        ws_deflater d;
        assert_int_equal(ws_deflate_init(&d, NULL, w, level), 0);
        assert_int_equal(ws_deflate(&d, src, n, &nin, out, sizeof(out), &olen,
                                    WS_DEFLATE_SYNC_FLUSH),
                         0);
        assert_int_equal(nin, n);
        if (level >= 4) {
          assert_int_equal(olen, want.n / 8);
          assert_memory_equal(out, want.b, olen);
        }
        ws_deflate_free(&d);
        (void)roundtrip_one(src, n, w, level, &rs);
      }
    }
  }
}

/* Window 8 (RFC 7692 7.1.2.1, the smallest): distances up to 255 are
 * used, 256 and beyond never (our inflater at window 8 checks every
 * one), on text fed in pieces across many buffer moves. */
static void window8_distances(void **state) {
  (void)state;
  uint64_t rs = 12;
  size_t n = 200000;
  uint8_t *src = malloc(n);
  assert_non_null(src);
  /* a 240-byte phrase, 250 random bytes: every repeat is 490 back */
  for (size_t i = 0; i < n; i++)
    src[i] = (i % 490) < 240 ? (uint8_t)('a' + (i % 490) % 26)
                             : (uint8_t)tu_rand(&rs);
  size_t clen = roundtrip_one(src, n, 8, 6, &rs);
  assert_true(clen >= n / 490 * 250); /* the phrase is out of reach */
  /* every 245 bytes: in reach, so about half of the data goes away */
  for (size_t i = 0; i < n; i++)
    src[i] = (i % 245) < 120 ? (uint8_t)('a' + (i % 245) % 26)
                             : (uint8_t)tu_rand(&rs);
  clen = roundtrip_one(src, n, 8, 6, &rs);
  assert_true(clen < n / 245 * 140);
  free(src);
}

/* Hash chains across moves of the history buffer: a 4 KiB block comes
 * back 30,000 bytes later (within the 32 KiB window) ten times over
 * 300 KB, in random input pieces, so the buffer moves by odd amounts
 * between a block and its repeat; every repeat must still be found.
 * Then the same with each 30,000 bytes as a message of its own (context
 * takeover, RFC 7692 7.2.3.2). */
static void chains_across_window_moves(void **state) {
  (void)state;
  uint64_t rs = 13;
  const size_t blk = 4096, period = 30000, reps = 10, n = period * reps;
  uint8_t *src = malloc(n), *out = malloc(n + 1);
  assert_non_null(src);
  assert_non_null(out);
  for (size_t i = 0; i < n; i++)
    src[i] = (uint8_t)tu_rand(&rs);
  for (size_t r = 1; r < reps; r++)
    memcpy(src + r * period, src, blk);
  for (int level = 2; level <= 9; level += 7) {
    size_t clen = roundtrip_one(src, n, 15, level, &rs);
    assert_true(clen + (reps - 1) * (blk - 64) <= n + 1024);
    /* one message per period */
    ws_deflater d;
    ws_inflater z;
    assert_int_equal(ws_deflate_init(&d, NULL, 15, level), 0);
    assert_int_equal(ws_inflate_init(&z, NULL, 15), 0);
    size_t total = 0;
    for (size_t r = 0; r < reps; r++) {
      size_t mlen, got;
      uint8_t *c = our_deflate(&d, src + r * period, period, &mlen, &rs, 0, 0);
      total += mlen;
      assert_int_equal(
          our_inflate(&z, c, mlen, out, period + 1, &got, &rs, 0, 0), 0);
      assert_int_equal(got, period);
      assert_memory_equal(out, src + r * period, period);
      assert_int_equal(ws_inflate_end_message(&z), 0);
      free(c);
    }
    assert_true(total + (reps - 1) * (blk - 64) <= n + 1024);
    ws_inflate_free(&z);
    ws_deflate_free(&d);
  }
  free(src);
  free(out);
}

/* Data that does not compress goes out stored (RFC 1951 3.2.4: 5
 * bytes of header a block) at every window, also where a block of N
 * literals is longer than the window: the history buffer keeps the
 * block's bytes. 10,000 random bytes at window 15 are two blocks (N =
 * 8,192 symbols) and the empty stored block of the flush. */
static void incompressible_stays_stored(void **state) {
  (void)state;
  uint64_t rs = 16;
  size_t n = 100000, nin, clen;
  uint8_t *src = malloc(n), *c = malloc(2 * n), *back = malloc(n);
  assert_non_null(src);
  assert_non_null(c);
  assert_non_null(back);
  for (size_t i = 0; i < n; i++)
    src[i] = (uint8_t)tu_rand(&rs);
  for (unsigned w = 8; w <= 15; w++) {
    for (int level = 1; level <= 9; level += 4) {
      ws_deflater d;
      assert_int_equal(ws_deflate_init(&d, NULL, w, level), 0);
      assert_int_equal(
          ws_deflate(&d, src, n, &nin, c, 2 * n, &clen, WS_DEFLATE_SYNC_FLUSH),
          0);
      /* at most one block per 1,024 bytes, and the flush */
      assert_true(clen <= n + 5 * ((n + 1023) / 1024 + 1));
      assert_int_equal(z_inflate(c, clen, back, n, 15), n);
      assert_memory_equal(back, src, n);
      if (w == 15) {
        /* 10,000 bytes: two blocks (N = 8,192 symbols), the flush */
        assert_int_equal(ws_deflate(&d, src, 10000, &nin, c, 2 * n, &clen,
                                    WS_DEFLATE_SYNC_FLUSH),
                         0);
        assert_int_equal(clen, 10000 + 3 * 5);
      }
      ws_deflate_free(&d);
    }
  }
  free(src);
  free(c);
  free(back);
}

/* ---- memory: exact figures, firmware budgets ------------------------------
 */

/* The figures documented in ws_deflate.h and README.md. Deflate never
 * needs more than zlib's documented deflateInit2() memory,
 * (1 << (windowBits + 2)) + (1 << (memLevel + 9)) with its default
 * memLevel 8 (zlib takes window 8 as 9). */
static void memsize_exact(void **state) {
  (void)state;
  static const size_t inflate_b[8] = {7504,  7760,  8272,  9296,
                                      11344, 15440, 23632, 40016};
  static const size_t fast_b[8] = {10320, 11344, 13892,  26180,
                                   50756, 99908, 116292, 149060};
  static const size_t chain_b[8] = {10320, 11344, 13892,  26180,
                                    50756, 99908, 149060, 247364};
  for (unsigned w = 8; w <= 15; w++) {
    assert_int_equal(ws_inflate_memsize(w), inflate_b[w - 8]);
    assert_int_equal(ws_deflate_memsize(w, 1), fast_b[w - 8]);
    size_t zlib_def = ((size_t)1 << ((w < 9 ? 9 : w) + 2)) + ((size_t)1 << 17);
    for (int level = 2; level <= 9; level++) {
      assert_int_equal(ws_deflate_memsize(w, level), chain_b[w - 8]);
      assert_true(ws_deflate_memsize(w, level) < zlib_def);
    }
  }
}

/* Compresses |n| bytes of JSON-like text with |d| as one message. */
static void deflate_msg(ws_deflater *d, const uint8_t *src, size_t n,
                        uint8_t *out, size_t cap, size_t *pclen) {
  size_t nin;
  assert_int_equal(
      ws_deflate(d, src, n, &nin, out, cap, pclen, WS_DEFLATE_SYNC_FLUSH), 0);
  assert_int_equal(nin, n);
}

/* Firmware budgets, measured with a counting allocator that also holds
 * the codec objects themselves (as a connection does):
 *   window 8, no context takeover: compressing a 4 KiB message peaks
 *     at <= 16 KiB;
 *   window 9 with context takeover: an inflater and a deflater together
 *     stay under 24 KiB however many messages go through. */
static void firmware_budgets(void **state) {
  (void)state;
  uint64_t rs = 14;
  uint8_t src[4096], c[4096 + 256], back[4097];
  tu_alloc a;
  size_t clen, got;

  tu_alloc_init(&a, 0);
  gen(C_JSON, src, sizeof(src), &rs);
  ws_deflater *d = a.mem.malloc(sizeof(*d), a.mem.user_data);
  assert_non_null(d);
  assert_int_equal(ws_deflate_init(d, &a.mem, 8, WS_DEFLATE_DEFAULT), 0);
  deflate_msg(d, src, sizeof(src), c, sizeof(c), &clen);
  assert_true(clen < sizeof(src) / 2);
  ws_deflate_reset(d); /* no context takeover */
  deflate_msg(d, src, sizeof(src), c, sizeof(c), &clen);
  ws_deflate_free(d);
  a.mem.free(d, a.mem.user_data);
  assert_int_equal(a.live_bytes, 0);
  assert_int_equal(a.peak_bytes, sizeof(ws_deflater) + 10320);
  assert_true(a.peak_bytes <= 16384);

  tu_alloc_init(&a, 0);
  d = a.mem.malloc(sizeof(*d), a.mem.user_data);
  ws_inflater *z = a.mem.malloc(sizeof(*z), a.mem.user_data);
  assert_non_null(d);
  assert_non_null(z);
  assert_int_equal(ws_deflate_init(d, &a.mem, 9, WS_DEFLATE_DEFAULT), 0);
  assert_int_equal(ws_inflate_init(z, &a.mem, 9), 0);
  for (int m = 0; m < 20; m++) {
    gen(C_JSON, src, sizeof(src), &rs);
    deflate_msg(d, src, sizeof(src), c, sizeof(c), &clen);
    assert_int_equal(
        our_inflate(z, c, clen, back, sizeof(back), &got, &rs, 0, 0), 0);
    assert_int_equal(got, sizeof(src));
    assert_memory_equal(back, src, sizeof(src));
    assert_int_equal(ws_inflate_end_message(z), 0);
  }
  ws_inflate_free(z);
  ws_deflate_free(d);
  a.mem.free(z, a.mem.user_data);
  a.mem.free(d, a.mem.user_data);
  assert_int_equal(a.live_bytes, 0);
  assert_int_equal(a.peak_bytes,
                   sizeof(ws_deflater) + sizeof(ws_inflater) + 11344 + 7760);
  assert_true(a.peak_bytes < 24576);
}

/* ---- misc: arguments, allocation failure ------------------------------------
 */

static void args_and_nomem(void **state) {
  (void)state;
  ws_inflater z;
  ws_deflater d;
  assert_int_equal(ws_inflate_init(&z, NULL, 7), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_inflate_init(&z, NULL, 16), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_deflate_init(&d, NULL, 7, 6), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_deflate_init(&d, NULL, 15, 0), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_deflate_init(&d, NULL, 15, 10), WS_ERR_INVALID_ARGUMENT);
  tu_alloc a;
  tu_alloc_init(&a, 1);
  assert_int_equal(ws_inflate_init(&z, &a.mem, 15), WS_ERR_NOMEM);
  tu_alloc_init(&a, 1);
  assert_int_equal(ws_deflate_init(&d, &a.mem, 15, 6), WS_ERR_NOMEM);
  ws_inflate_free(&z);
  ws_deflate_free(&d);
  tu_alloc_init(&a, 0);
  for (unsigned w = 8; w <= 15; w++) {
    assert_int_equal(ws_inflate_init(&z, &a.mem, w), 0);
    assert_int_equal(a.live_bytes, ws_inflate_memsize(w));
    ws_inflate_free(&z);
    for (int level = 1; level <= 9; level++) {
      assert_int_equal(ws_deflate_init(&d, &a.mem, w, level), 0);
      assert_int_equal(a.live_bytes, ws_deflate_memsize(w, level));
      ws_deflate_free(&d);
    }
    if (getenv("WS_TEST_VERBOSE"))
      printf("window_bits %2u: inflate %6zu B, deflate fast %7zu B, "
             "default %7zu B\n",
             w, ws_inflate_memsize(w), ws_deflate_memsize(w, 1),
             ws_deflate_memsize(w, 6));
  }
  assert_int_equal(a.live_blocks, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc7692_hello),
      cmocka_unit_test(rfc7692_shared_window),
      cmocka_unit_test(rfc7692_stored_two_blocks_bfinal),
      cmocka_unit_test(stored_block_waits_on_no_input),
      cmocka_unit_test(rfc7692_deflate_hello),
      cmocka_unit_test(zlib_to_ours),
      cmocka_unit_test(zlib_to_ours_large),
      cmocka_unit_test(zlib_to_ours_takeover),
      cmocka_unit_test(ours_roundtrip),
      cmocka_unit_test(ours_roundtrip_large),
      cmocka_unit_test(ours_takeover),
      cmocka_unit_test(deflate_flush_retries),
      cmocka_unit_test(inflate_null_input),
      cmocka_unit_test(window_limits),
      cmocka_unit_test(corrupt_streams),
      cmocka_unit_test(distance_beyond_window),
      cmocka_unit_test(oversubscribed_tables),
      cmocka_unit_test(corrupt_random),
      cmocka_unit_test(bomb),
      cmocka_unit_test(args_and_nomem),
      cmocka_unit_test(match_at_window_edge),
      cmocka_unit_test(longest_matches_258),
      cmocka_unit_test(window8_distances),
      cmocka_unit_test(chains_across_window_moves),
      cmocka_unit_test(incompressible_stays_stored),
      cmocka_unit_test(memsize_exact),
      cmocka_unit_test(firmware_budgets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
