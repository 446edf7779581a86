/*
 * permessage-deflate codec throughput, side by side with zlib in the
 * same run (zlib is the anchor only; the library never links it).
 *
 * Corpora, generated deterministically:
 *   msgs  chat/game-state JSON messages of 100 B - 4 KiB (~4 MiB in all),
 *         each compressed as one WebSocket message: sync flush, context
 *         kept across messages (RFC 7692 context takeover)
 *   doc   one 1 MiB JSON document, one message
 *
 * Rows, at window bits 15 and 9 (MB/s of uncompressed bytes; zlib's
 * passes and ours alternate for 0.6 s, and each side's best counts):
 *   inflate  ours vs zlib, both inflating zlib level-6 output
 *   fast     ours level 1 vs zlib level 1 (speed, ratio = out/in)
 *   default  ours level 6 vs zlib level 6
 *
 * Then memory at every window: ours from ws_inflate_memsize() and
 * ws_deflate_memsize() plus the object, zlib's from its documented
 * formulas (zlib.h, zconf.h): deflateInit2() takes
 * 2^(windowBits+2) + 2^(memLevel+9) bytes (memLevel 8, window 8 taken as
 * 9) "plus a few kilobytes", inflateInit2() 2^windowBits "plus about
 * 7 KB"; the small objects are left out of zlib's column.
 *
 * Instruction counts, independent of the machine's load:
 *
 *   bench_deflate --once
 *
 * runs every row's passes exactly once (the timings then mean nothing),
 * for valgrind --tool=callgrind: the inclusive counts of ws_deflate and
 * ws_inflate (or ours_pack / ours_unpack) are the same from run to run.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "ws_deflate.h"

#define MIN_SECONDS 0.3
#define MSGS_BYTES (4u << 20)
#define DOC_BYTES (1u << 20)

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}

static int once; /* --once: one pass per row, for callgrind */

static void die(const char *what) {
  fprintf(stderr, "bench_deflate: %s\n", what);
  exit(1);
}

static const char *const names[] = {"alice", "bob",   "carol", "dave", "erin",
                                    "frank", "grace", "heidi", "ivan", "judy"};
static const char *const texts[] = {"hello everyone",
                                    "gg",
                                    "anyone up for another round?",
                                    "lol",
                                    "brb, getting coffee",
                                    "nice shot!",
                                    "that was close",
                                    "meet at the north gate",
                                    "who has the flag?",
                                    "ok"};

/* Appends one JSON object (chat line or game state) at |p|, at most
 * |cap| bytes; returns its length. */
static size_t gen_obj(char *p, size_t cap, uint32_t seq) {
  int n;
  if (rnd() % 3 == 0) {
    n = snprintf(p, cap,
                 "{\"type\":\"chat\",\"seq\":%u,\"room\":\"lobby-%u\","
                 "\"from\":\"%s\",\"text\":\"%s\",\"ts\":%u}",
                 seq, rnd() % 8, names[rnd() % 10], texts[rnd() % 10],
                 1700000000u + seq * 3);
  } else {
    n = snprintf(p, cap,
                 "{\"type\":\"state\",\"tick\":%u,\"player\":{\"id\":%u,"
                 "\"name\":\"%s\",\"pos\":{\"x\":%d.%02u,\"y\":%d.%02u},"
                 "\"hp\":%u,\"ammo\":%u,\"alive\":%s}}",
                 seq, rnd() % 64, names[rnd() % 10], (int)(rnd() % 2000) - 1000,
                 rnd() % 100, (int)(rnd() % 2000) - 1000, rnd() % 100,
                 rnd() % 101, rnd() % 31, rnd() % 8 ? "true" : "false");
  }
  return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* A message of |len| bytes: a JSON array of objects, padded. */
static void gen_msg(uint8_t *p, size_t len, uint32_t *seq) {
  char tmp[512];
  size_t i = 0;
  p[i++] = '[';
  while (i + 2 < len) {
    size_t k = gen_obj(tmp, sizeof(tmp), (*seq)++);
    if (i + k + 2 > len) k = len - 2 - i;
    memcpy(p + i, tmp, k);
    i += k;
    if (i + 2 < len) p[i++] = ',';
  }
  while (i < len - 1)
    p[i++] = ' ';
  p[len - 1] = ']';
}

typedef struct corpus {
  const char *name;
  uint8_t *data;
  size_t *lens; /* message sizes */
  size_t nmsgs, total;
} corpus;

/* ---- compressing a corpus, message by message ---------------------------- */

typedef struct packed {
  uint8_t *data;
  size_t *lens; /* compressed size of each message, tail stripped */
  size_t total;
} packed;

static void zlib_pack(const corpus *c, int level, int wbits, packed *pk) {
  z_stream s;
  memset(&s, 0, sizeof(s));
  if (deflateInit2(&s, level, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY))
    die("deflateInit2");
  const uint8_t *in = c->data;
  uint8_t *out = pk->data;
  for (size_t m = 0; m < c->nmsgs; m++) {
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)c->lens[m];
    s.next_out = out;
    s.avail_out = (uInt)(c->lens[m] + c->lens[m] / 2 + 64);
    if (deflate(&s, Z_SYNC_FLUSH) != Z_OK || s.avail_in) die("deflate");
    size_t n = (size_t)(s.next_out - out) - 4; /* strip 00 00 ff ff */
    pk->lens[m] = n;
    out += n;
    in += c->lens[m];
  }
  pk->total = (size_t)(out - pk->data);
  deflateEnd(&s);
}

static void ours_pack(const corpus *c, ws_deflater *d, packed *pk) {
  const uint8_t *in = c->data;
  uint8_t *out = pk->data;
  for (size_t m = 0; m < c->nmsgs; m++) {
    size_t nin, nout, cap = c->lens[m] + c->lens[m] / 2 + 64;
    if (ws_deflate(d, in, c->lens[m], &nin, out, cap, &nout,
                   WS_DEFLATE_SYNC_FLUSH))
      die("ws_deflate");
    pk->lens[m] = nout - 4;
    out += nout - 4;
    in += c->lens[m];
  }
  pk->total = (size_t)(out - pk->data);
}

static const uint8_t tail[4] = {0, 0, 0xff, 0xff};

static void zlib_unpack(const corpus *c, const packed *pk, int wbits,
                        uint8_t *out) {
  z_stream s;
  memset(&s, 0, sizeof(s));
  if (inflateInit2(&s, -wbits)) die("inflateInit2");
  const uint8_t *in = pk->data;
  for (size_t m = 0; m < c->nmsgs; m++) {
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)pk->lens[m];
    s.next_out = out;
    s.avail_out = (uInt)c->lens[m];
    int rc = inflate(&s, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR) die("inflate");
    s.next_in = (Bytef *)(uintptr_t)tail;
    s.avail_in = 4;
    rc = inflate(&s, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR) die("inflate tail");
    if ((size_t)(s.next_out - out) != c->lens[m]) die("zlib inflate size");
    in += pk->lens[m];
    out += c->lens[m];
  }
  inflateEnd(&s);
}

static void ours_unpack(const corpus *c, const packed *pk, ws_inflater *z,
                        uint8_t *out) {
  const uint8_t *in = pk->data;
  for (size_t m = 0; m < c->nmsgs; m++) {
    size_t nin, nout = 0, nout2 = 0;
    /* one extra byte of room: the inflater must stop short of it */
    if (ws_inflate(z, in, pk->lens[m], &nin, out, c->lens[m] + 1, &nout) ||
        ws_inflate(z, tail, 4, &nin, out + nout, c->lens[m] + 1 - nout,
                   &nout2) ||
        ws_inflate_end_message(z))
      die("ws_inflate");
    if (nout + nout2 != c->lens[m]) die("ws_inflate size");
    in += pk->lens[m];
    out += c->lens[m];
  }
}

/* ---- timing ------------------------------------------------------------- */

typedef enum { R_Z_INFLATE, R_INFLATE, R_Z_DEFLATE, R_DEFLATE } row_kind;

/* One pass of |k|; returns its time in seconds. */
static double pass(row_kind k, const corpus *c, int wbits, int level,
                   packed *pk, uint8_t *scratch) {
  double t0 = now_sec();
  switch (k) {
  case R_Z_INFLATE: zlib_unpack(c, pk, wbits, scratch); break;
  case R_INFLATE: {
    ws_inflater z;
    if (ws_inflate_init(&z, NULL, (unsigned)wbits)) die("inflate init");
    ours_unpack(c, pk, &z, scratch);
    ws_inflate_free(&z);
    break;
  }
  case R_Z_DEFLATE: zlib_pack(c, level, wbits, pk); break;
  case R_DEFLATE: {
    ws_deflater d;
    if (ws_deflate_init(&d, NULL, (unsigned)wbits, level)) die("deflate init");
    ours_pack(c, &d, pk);
    ws_deflate_free(&d);
    break;
  }
  }
  return now_sec() - t0;
}

/* zlib's pass and ours in turn, for 2 * MIN_SECONDS in all: the best of
 * each (in MB/s), so that both see the same load of a shared machine.
 * A deflate pass leaves its output in |pk|, its total in |*pz| / |*po|;
 * ours runs last. */
static void run_pair(row_kind zk, row_kind ok, const corpus *c, int wbits,
                     int zlevel, int olevel, packed *pk, uint8_t *scratch,
                     double *pzmbs, double *pombs, size_t *pz, size_t *po) {
  double start = now_sec(), bz = 1e30, bo = 1e30, t;
  do {
    t = pass(zk, c, wbits, zlevel, pk, scratch);
    if (t < bz) bz = t;
    *pz = pk->total;
    t = pass(ok, c, wbits, olevel, pk, scratch);
    if (t < bo) bo = t;
    *po = pk->total;
  } while (!once && now_sec() - start < 2 * MIN_SECONDS);
  *pzmbs = (double)c->total / bz / 1e6;
  *pombs = (double)c->total / bo / 1e6;
}

static void check_roundtrip(const corpus *c, const packed *pk, int wbits,
                            uint8_t *scratch) {
  zlib_unpack(c, pk, wbits < 9 ? 9 : wbits, scratch);
  if (memcmp(scratch, c->data, c->total)) die("zlib round trip differs");
  ws_inflater z;
  if (ws_inflate_init(&z, NULL, (unsigned)wbits)) die("inflate init");
  ours_unpack(c, pk, &z, scratch);
  ws_inflate_free(&z);
  if (memcmp(scratch, c->data, c->total)) die("round trip differs");
}

int main(int argc, char **argv) {
  corpus cs[2];
  uint32_t seq = 0;

  if (argc > 1 && strcmp(argv[1], "--once") == 0) {
    once = 1;
  } else if (argc > 1) {
    die("usage: bench_deflate [--once]");
  }

  /* msgs */
  cs[0].name = "msgs";
  cs[0].data = malloc(MSGS_BYTES);
  cs[0].lens = malloc(sizeof(size_t) * (MSGS_BYTES / 100 + 1));
  cs[0].nmsgs = 0;
  cs[0].total = 0;
  while (cs[0].total + 4096 <= MSGS_BYTES) {
    /* mostly small messages, some up to 4 KiB */
    size_t len = rnd() % 4 ? 100 + rnd() % 700 : 800 + rnd() % 3297;
    gen_msg(cs[0].data + cs[0].total, len, &seq);
    cs[0].lens[cs[0].nmsgs++] = len;
    cs[0].total += len;
  }
  /* doc */
  cs[1].name = "doc";
  cs[1].data = malloc(DOC_BYTES);
  cs[1].lens = malloc(sizeof(size_t));
  gen_msg(cs[1].data, DOC_BYTES, &seq);
  cs[1].lens[0] = DOC_BYTES;
  cs[1].nmsgs = 1;
  cs[1].total = DOC_BYTES;

  size_t maxtotal = MSGS_BYTES;
  uint8_t *scratch = malloc(maxtotal + 1);
  packed pk;
  pk.data = malloc(maxtotal + maxtotal / 2 + 65536);
  pk.lens = malloc(sizeof(size_t) * (MSGS_BYTES / 100 + 1));
  if (!scratch || !pk.data || !pk.lens || !cs[0].data || !cs[1].data)
    die("out of memory");

  printf("%-5s %-4s %-8s %12s %12s %7s %10s %10s %7s\n", "data", "wbit", "row",
         "ours MB/s", "zlib MB/s", "speed", "ours ratio", "zlib ratio", "size");
  static const int wbs[2] = {15, 9};
  for (int ci = 0; ci < 2; ci++) {
    corpus *c = &cs[ci];
    for (int wi = 0; wi < 2; wi++) {
      int wb = wbs[wi];
      /* inflate: both decode zlib level-6 output */
      zlib_pack(c, 6, wb, &pk);
      check_roundtrip(c, &pk, wb, scratch);
      double zi, oi, zd, od;
      size_t zt, ot;
      run_pair(R_Z_INFLATE, R_INFLATE, c, wb, 6, 6, &pk, scratch, &zi, &oi, &zt,
               &ot);
      printf("%-5s %-4d %-8s %12.1f %12.1f %6.2fx\n", c->name, wb, "inflate",
             oi, zi, oi / zi);
      static const int lv[2][2] = {{1, 1}, {6, 6}}; /* ours, zlib */
      static const char *const rn[2] = {"fast/1", "dflt/6"};
      for (int r = 0; r < 2; r++) {
        run_pair(R_Z_DEFLATE, R_DEFLATE, c, wb, lv[r][1], lv[r][0], &pk,
                 scratch, &zd, &od, &zt, &ot);
        double zratio = (double)zt / (double)c->total;
        double oratio = (double)ot / (double)c->total;
        check_roundtrip(c, &pk, wb, scratch);
        printf("%-5s %-4d %-8s %12.1f %12.1f %6.2fx %10.4f %10.4f %+6.1f%%\n",
               c->name, wb, rn[r], od, zd, od / zd, oratio, zratio,
               100.0 * ((double)ot / (double)zt - 1.0));
      }
    }
  }
  printf("\n%-4s %10s %10s %6s %10s %10s %10s %6s\n", "wbit", "inflate", "zlib",
         "ratio", "deflate1", "deflate6", "zlib", "ratio");
  for (unsigned wb = 8; wb <= 15; wb++) {
    size_t oi = sizeof(ws_inflater) + ws_inflate_memsize(wb);
    size_t zi = ((size_t)1 << wb) + 7 * 1024;
    size_t o1 = sizeof(ws_deflater) + ws_deflate_memsize(wb, 1);
    size_t o6 = sizeof(ws_deflater) + ws_deflate_memsize(wb, 6);
    size_t zd = ((size_t)1 << ((wb < 9 ? 9 : wb) + 2)) + ((size_t)1 << 17);
    printf("%-4u %10zu %10zu %5.2fx %10zu %10zu %10zu %5.2fx\n", wb, oi, zi,
           (double)oi / (double)zi, o1, o6, zd, (double)o6 / (double)zd);
  }
  free(scratch);
  free(pk.data);
  free(pk.lens);
  for (int ci = 0; ci < 2; ci++) {
    free(cs[ci].data);
    free(cs[ci].lens);
  }
  return 0;
}
