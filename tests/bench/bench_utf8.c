/*
 * UTF-8 validation and unmasking throughput, every implementation in the
 * same run, on 16 B, 125 B (the largest control frame) and 64 KiB texts,
 * ASCII and mixed (Greek, Cyrillic, CJK, emoji and ASCII words). Rows:
 *
 *   memcpy      copying the same bytes once: the anchor
 *   validate    ws_utf8_validate (the best implementation for this CPU)
 *   <impl>      ws_utf8_scan_impl with one implementation: the reference,
 *               the scalar DFA, the compact DFA, SSE4.1, AVX2, NEON
 *               (whichever this build and CPU have)
 *   mask        ws_mask alone
 *   2-pass      ws_copy_mask, then ws_utf8_feed over the copy
 *   fused       ws_copy_unmask_utf8: copy, unmask and validate in one pass
 *
 * Small texts are laid out back to back in a 1 MiB pool and validated one
 * call each, so call overhead counts as it does for real messages.
 * Figures are MB/s (10^6 bytes of text per second) and calls per second;
 * compare ratios within one run, not absolute figures across runs.
 *
 * Instruction counts, independent of the machine's load:
 *
 *   bench_utf8 --calls ROW SIZE KIND N   (KIND ascii or mixed)
 *
 * makes N calls of one row and nothing else timed, for
 * valgrind --tool=callgrind --toggle-collect=FUNCTION (instructions per
 * call = total / N, per byte = total / N / SIZE): the library function a
 * row calls (ws_utf8_validate, ws_utf8_scan_impl, ws_mask,
 * ws_copy_unmask_utf8, ...), or 'row_*' to include the row's own glue.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ws/ws.h>

#include "ws_mask.h"
#include "ws_utf8.h"

#define POOL_BYTES (1u << 20)
#define MIN_SECONDS 0.08

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}

static void die(const char *what) {
  fprintf(stderr, "bench_utf8: %s\n", what);
  exit(1);
}

/* Fills |out| with exactly |len| bytes of valid UTF-8 that ends between
 * characters: ASCII words only, or mixed scripts. */
static void make_text(uint8_t *out, size_t len, int mixed) {
  static const char *const words[] = {
      "hello ",
      "world ",
      "websocket ",
      "frame ",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ",     /* Greek */
      "\xce\xb1\xce\xbb\xcf\x86\xce\xb1 ",                 /* Greek */
      "\xe4\xb8\x96\xe7\x95\x8c ",                         /* CJK */
      "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c",              /* CJK */
      "\xf0\x9f\x98\x80 ",                                 /* emoji */
      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ", /* Cyrillic */
  };
  size_t n = 0, nw = mixed ? 10 : 4;

  while (n < len) {
    const char *w = words[rnd() % nw];
    size_t wl = strlen(w);
    if (wl > len - n) {
      memset(out + n, 'x', len - n);
      break;
    }
    memcpy(out + n, w, wl);
    n += wl;
  }
  {
    /* The reference checks, so that counting calls of the entry points
     * under callgrind counts only the rows' calls. */
    ws_utf8 u;
    ws_utf8_init(&u);
    if (ws_utf8_scan_scalar(&u, out, len) != len || u.state != 0) {
      die("generated text is not UTF-8");
    }
  }
}

typedef struct work {
  uint8_t *text;   /* plain texts, back to back */
  uint8_t *masked; /* the same, masked as a client sends them */
  uint8_t *dst;
  size_t size;  /* bytes per text */
  size_t count; /* texts in the pool */
  uint8_t key[4];
} work;

/* One row: processes text number |k| of |w|; 0 on success. Each is a
 * separate function so that callgrind can count it alone. */
typedef int (*row_fn)(work *w, size_t k, int impl);

static __attribute__((noinline)) int row_memcpy(work *w, size_t k, int impl) {
  (void)impl;
  memcpy(w->dst + k * w->size, w->text + k * w->size, w->size);
  return w->dst[k * w->size] == 0xFF;
}

static __attribute__((noinline)) int row_validate(work *w, size_t k, int impl) {
  (void)impl;
  return ws_utf8_validate(w->text + k * w->size, w->size);
}

static __attribute__((noinline)) int row_impl(work *w, size_t k, int impl) {
  ws_utf8 u;
  ws_utf8_init(&u);
  return ws_utf8_scan_impl(&u, w->text + k * w->size, w->size, impl) !=
             w->size ||
         u.state != 0;
}

static __attribute__((noinline)) int row_mask(work *w, size_t k, int impl) {
  (void)impl;
  return (int)ws_mask(w->dst + k * w->size, w->size, w->key, 0);
}

static __attribute__((noinline)) int row_2pass(work *w, size_t k, int impl) {
  ws_utf8 u;
  uint8_t *d = w->dst + k * w->size;
  (void)impl;
  ws_copy_mask(d, w->masked + k * w->size, w->size, w->key, 0);
  ws_utf8_init(&u);
  return ws_utf8_feed(&u, d, w->size) || ws_utf8_finish(&u);
}

static __attribute__((noinline)) int row_fused(work *w, size_t k, int impl) {
  ws_utf8 u;
  size_t off = 0, valid;
  (void)impl;
  ws_utf8_init(&u);
  return ws_copy_unmask_utf8(w->dst + k * w->size, w->masked + k * w->size,
                             w->size, w->key, &off, &u, &valid) ||
         ws_utf8_finish(&u);
}

typedef struct row {
  const char *name;
  row_fn fn;
  int impl;
} row;

static size_t make_rows(row *rows) {
  size_t n = 0;
  int k;

  rows[n++] = (row){"memcpy", row_memcpy, 0};
  rows[n++] = (row){"validate", row_validate, 0};
  for (k = WS_UTF8_IMPL_REF; k < WS_UTF8_IMPL_COUNT; k++) {
    if (ws_utf8_impl_available(k)) {
      rows[n++] = (row){ws_utf8_impl_name(k), row_impl, k};
    }
  }
  rows[n++] = (row){"mask", row_mask, 0};
  rows[n++] = (row){"2-pass", row_2pass, 0};
  rows[n++] = (row){"fused", row_fused, 0};
  return n;
}

static void make_work(work *w, size_t size, int mixed) {
  size_t k;

  w->size = size;
  w->count = size >= POOL_BYTES ? 1 : POOL_BYTES / size;
  w->text = malloc(w->count * size);
  w->masked = malloc(w->count * size);
  w->dst = malloc(w->count * size);
  if (!w->text || !w->masked || !w->dst) die("out of memory");
  for (k = 0; k < w->count; k++)
    make_text(w->text + k * size, size, mixed);
  w->key[0] = 0x37;
  w->key[1] = 0xFA;
  w->key[2] = 0x21;
  w->key[3] = 0x3D;
  memcpy(w->masked, w->text, w->count * size);
  for (k = 0; k < w->count; k++) {
    /* The reference, so that callgrind counts only the rows' ws_mask. */
    ws_mask_scalar(w->masked + k * size, size, w->key, 0);
  }
  memcpy(w->dst, w->text, w->count * size);
}

static void free_work(work *w) {
  free(w->text);
  free(w->masked);
  free(w->dst);
}

/* Bytes per second of one row on |w|, over at least MIN_SECONDS. */
static double run_row(const row *r, work *w) {
  double t0 = now_sec(), t;
  size_t passes = 0, k;

  do {
    for (k = 0; k < w->count; k++) {
      if (r->fn(w, k, r->impl) && r->fn != row_mask) die("row failed");
    }
    passes++;
    t = now_sec() - t0;
  } while (t < MIN_SECONDS);
  return (double)passes * (double)w->count * (double)w->size / t;
}

static int calls_mode(int argc, char **argv) {
  row rows[16];
  size_t nrows = make_rows(rows), i, n, size;
  long calls, c;
  work w;

  if (argc != 6) die("usage: --calls ROW SIZE ascii|mixed N");
  size = strtoul(argv[3], NULL, 10);
  calls = strtol(argv[5], NULL, 10);
  if (size == 0 || calls <= 0) die("bad SIZE or N");
  for (i = 0; i < nrows && strcmp(rows[i].name, argv[2]) != 0; i++)
    continue;
  if (i == nrows) die("no such row here");
  make_work(&w, size, strcmp(argv[4], "mixed") == 0);
  for (c = 0, n = 0; c < calls; c++) {
    if (rows[i].fn(&w, n, rows[i].impl) && rows[i].fn != row_mask) {
      die("row failed");
    }
    if (++n == w.count) n = 0;
  }
  free_work(&w);
  return 0;
}

int main(int argc, char **argv) {
  static const size_t sizes[] = {16, 125, 65536};
  row rows[16];
  size_t nrows = make_rows(rows), i, s;
  double rate[16][6];
  int mixed;

  if (argc > 1 && strcmp(argv[1], "--calls") == 0) {
    return calls_mode(argc, argv);
  }
  for (mixed = 0; mixed < 2; mixed++) {
    for (s = 0; s < 3; s++) {
      work w;
      make_work(&w, sizes[s], mixed);
      for (i = 0; i < nrows; i++) {
        rate[i][(size_t)mixed * 3 + s] = run_row(&rows[i], &w);
      }
      free_work(&w);
    }
  }
  printf("bench_utf8: MB/s of text (and vs the reference)\n");
  printf("%-10s |%21s%21s%21s |%21s%21s%21s\n", "", "ascii 16 B", "ascii 125 B",
         "ascii 64 KiB", "mixed 16 B", "mixed 125 B", "mixed 64 KiB");
  for (i = 0; i < nrows; i++) {
    size_t c;
    printf("%-10s |", rows[i].name);
    for (c = 0; c < 6; c++) {
      double ref = rate[2][c]; /* the reference's row */
      printf("%13.0f (%5.1fx)", rate[i][c] / 1e6, rate[i][c] / ref);
      if (c == 2) printf(" |");
    }
    printf("\n");
  }
  printf("calls/s, 16 B: validate %.1f M ascii, %.1f M mixed; "
         "fused %.1f M mixed\n",
         rate[1][0] / 16 / 1e6, rate[1][3] / 16 / 1e6,
         rate[nrows - 1][3] / 16 / 1e6);
  return 0;
}
