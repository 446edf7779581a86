/*
 * Fuzz target: UTF-8 validation, differential against a deliberately
 * simple reference written here from RFC 3629 section 3 / 4.
 * SPDX-License-Identifier: MIT
 *
 * Input: byte 0 picks chunk sizes, bytes 1-4 are a mask key, the rest is
 * the text. (Inputs under 5 bytes are text with fixed settings.)
 *
 * The reference decides, byte by byte, whether the bytes of the current
 * sequence can still be completed to a well-formed one: a lead byte fixes
 * the sequence length n (RFC 3629 table in section 3), the bits seen so
 * far fix a range of code points, and the prefix is viable iff that range
 * holds a scalar value whose shortest encoding takes n bytes (so no
 * overlongs, no surrogates D800-DFFF, nothing above 10FFFF). The first
 * byte that makes the prefix non-viable is the error position.
 *
 * Compared against it: ws_utf8_validate, ws_utf8_feed and ws_utf8_finish
 * in fuzzer-chosen chunks, ws_utf8_scan / _scan_scalar / _feed_scalar
 * (exact error position), ws_unmask_utf8 over masked input (error
 * position, unmasked bytes, key offset), whole and chunked, and every
 * implementation this build and CPU have (ws_utf8_scan_impl, same state
 * as the reference) with ws_copy_unmask_utf8 into a separate buffer;
 * and the short paths on every window of up to 66 bytes against the
 * byte-at-a-time reference (check_short()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_int.h"
#include "ws_mask.h"
#include "ws_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* ---- reference ---------------------------------------------------------- */

typedef struct ref_result {
  size_t fail;  /* position of the first invalid byte, or len */
  int complete; /* no failure and the text ends between characters */
} ref_result;

/* Is there a code point in [lo, hi] that is a Unicode scalar value whose
 * shortest UTF-8 form is |n| bytes long? */
static int viable(uint32_t lo, uint32_t hi, size_t n) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  static const uint32_t max_cp[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  uint32_t a = lo > min_cp[n] ? lo : min_cp[n];
  uint32_t b = hi < max_cp[n] ? hi : max_cp[n];
  if (a > b) return 0;
  if (a >= 0xD800 && b <= 0xDFFF) return 0; /* only surrogates */
  return 1;
}

static ref_result ref_validate(const uint8_t *s, size_t len) {
  ref_result r = {len, 1};
  size_t i = 0;
  while (i < len) {
    uint8_t b = s[i];
    size_t n;
    uint32_t cp;
    if (b < 0x80) {
      i++;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2;
      cp = b & 0x1Fu;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3;
      cp = b & 0x0Fu;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4;
      cp = b & 0x07u;
    } else { /* continuation byte as a lead, or F8..FF */
      r.fail = i;
      r.complete = 0;
      return r;
    }
    for (size_t k = 0; k < n; k++) {
      if (k > 0) {
        if (i + k >= len) { /* cut off: a valid prefix */
          r.complete = 0;
          return r;
        }
        if ((s[i + k] & 0xC0) != 0x80) {
          r.fail = i + k;
          r.complete = 0;
          return r;
        }
        cp = cp << 6 | (s[i + k] & 0x3Fu);
      }
      unsigned rest = (unsigned)(6 * (n - 1 - k));
      uint32_t lo = cp << rest;
      uint32_t hi = lo | ((1u << rest) - 1u);
      if (!viable(lo, hi, n)) {
        r.fail = i + k;
        r.complete = 0;
        return r;
      }
    }
    i += n;
  }
  return r;
}

/* ---- library under test ------------------------------------------------- */

typedef struct splitter {
  uint32_t r;
  uint8_t mode;
} splitter;

static size_t next_chunk(splitter *sp, size_t left) {
  sp->r ^= sp->r << 13;
  sp->r ^= sp->r >> 17;
  sp->r ^= sp->r << 5;
  size_t n;
  switch (sp->mode & 3u) {
  case 0: n = 1; break;
  case 1: n = 1 + sp->r % 4u; break;
  case 2: n = 1 + sp->r % 33u; break;
  default: n = (sp->r & 1u) ? 0 : 1 + sp->r % 200u; break; /* empty too */
  }
  return n < left ? n : left;
}

static void check_feed(const uint8_t *text, size_t len, const ref_result *ref,
                       uint8_t ctl) {
  splitter sp = {0x12345u ^ (uint32_t)ctl << 8 ^ (uint32_t)len, ctl};
  ws_utf8 u;
  ws_utf8_init(&u);
  size_t pos = 0;
  int failed = 0;
  size_t guard = 0;
  while (pos < len) {
    size_t n = next_chunk(&sp, len - pos);
    if (n == 0 && ++guard > len + 16) n = 1;
    int rv = ws_utf8_feed(&u, text + pos, n);
    CHECK(rv == 0 || rv == WS_ERR_UTF8);
    if (rv) {
      /* the chunk that holds the first invalid byte fails, none earlier */
      CHECK(ref->fail < len && ref->fail >= pos && ref->fail < pos + n);
      failed = 1;
      /* and it stays failed */
      CHECK(ws_utf8_feed(&u, (const uint8_t *)"a", 1) == WS_ERR_UTF8);
      CHECK(ws_utf8_finish(&u) == WS_ERR_UTF8);
      break;
    }
    pos += n;
  }
  if (!failed) {
    CHECK(ref->fail == len);
    CHECK((ws_utf8_finish(&u) == 0) == ref->complete);
  }
}

static void check_scan(const uint8_t *text, size_t len, const ref_result *ref,
                       uint8_t ctl) {
  /* one shot, vectorised and scalar */
  ws_utf8 u, us;
  ws_utf8_init(&u);
  ws_utf8_init(&us);
  CHECK(ws_utf8_scan(&u, text, len) == ref->fail);
  CHECK(ws_utf8_scan_scalar(&us, text, len) == ref->fail);
  CHECK((u.state == us.state) || (ref->fail < len));
  if (ref->fail < len) {
    CHECK(u.state & WS_UTF8_FAILED);
    CHECK(us.state & WS_UTF8_FAILED);
    CHECK(ws_utf8_scan(&u, text, len) == 0);
  } else {
    CHECK((ws_utf8_finish(&u) == 0) == ref->complete);
  }
  ws_utf8_init(&us);
  CHECK((ws_utf8_feed_scalar(&us, text, len) == 0) == (ref->fail == len));

  /* chunked scan: positions add up to the reference's */
  splitter sp = {0xC0FFEEu ^ (uint32_t)ctl ^ (uint32_t)len << 4,
                 (uint8_t)(ctl >> 2)};
  ws_utf8_init(&u);
  size_t pos = 0, guard = 0;
  while (pos < len) {
    size_t n = next_chunk(&sp, len - pos);
    if (n == 0 && ++guard > len + 16) n = 1;
    size_t got = ws_utf8_scan(&u, text + pos, n);
    CHECK(got <= n);
    if (got < n) {
      CHECK(pos + got == ref->fail);
      return;
    }
    pos += n;
  }
  CHECK(ref->fail == len);
  CHECK((ws_utf8_finish(&u) == 0) == ref->complete);
}

static void check_unmask(const uint8_t *text, size_t len,
                         const ref_result *ref, const uint8_t key[4],
                         uint8_t ctl) {
  size_t off0 = (ctl >> 4) & 3u;
  uint8_t *masked = malloc(len + 1);
  CHECK(masked);
  if (len) memcpy(masked, text, len);
  ws_mask_scalar(masked, len, key, off0);

  /* whole */
  uint8_t *buf = malloc(len + 1);
  CHECK(buf);
  if (len) memcpy(buf, masked, len);
  ws_utf8 u;
  ws_utf8_init(&u);
  size_t off = off0, valid = 12345;
  int rv = ws_unmask_utf8(buf, len, key, &off, &u, &valid);
  if (ref->fail == len) {
    CHECK(rv == 0 && valid == len);
    CHECK(off % 4 == (off0 + len) % 4);
    if (len) CHECK(memcmp(buf, text, len) == 0);
    CHECK((ws_utf8_finish(&u) == 0) == ref->complete);
  } else {
    CHECK(rv == WS_ERR_UTF8);
    CHECK(valid == ref->fail);
    /* some d >= valid+1 bytes are unmasked, the rest untouched, and the
     * key offset moved by d: buf[0, d) == text, buf[d, len) == masked */
    size_t p = 0, s = len;
    while (p < len && buf[p] == text[p])
      p++;
    while (s > 0 && buf[s - 1] == masked[s - 1])
      s--;
    size_t lo = s > valid + 1 ? s : valid + 1;
    int found = 0;
    for (size_t d = lo; d <= p && d <= lo + 3; d++)
      if ((off0 + d) % 4 == off % 4) found = 1;
    CHECK(found);
    /* a failed validator unmasks nothing more */
    size_t off2 = off, v2 = 99;
    CHECK(ws_unmask_utf8(buf, len, key, &off2, &u, &v2) == WS_ERR_UTF8);
    CHECK(v2 == 0 && off2 == off);
  }

  /* chunked, key offset carried across */
  memcpy(buf, masked, len);
  ws_utf8_init(&u);
  splitter sp = {0xBADC0DEu ^ (uint32_t)len ^ (uint32_t)ctl << 16,
                 (uint8_t)(ctl >> 6)};
  size_t pos = 0, guard = 0;
  off = off0;
  while (pos < len) {
    size_t n = next_chunk(&sp, len - pos);
    if (n == 0 && ++guard > len + 16) n = 1;
    size_t before = off;
    rv = ws_unmask_utf8(buf + pos, n, key, &off, &u, &valid);
    if (rv) {
      CHECK(rv == WS_ERR_UTF8);
      CHECK(pos + valid == ref->fail);
      CHECK(memcmp(buf + pos, text + pos, valid + 1) == 0);
      break;
    }
    CHECK(valid == n && off % 4 == (before + n) % 4);
    pos += n;
  }
  if (pos >= len) {
    CHECK(ref->fail == len);
    if (len) CHECK(memcmp(buf, text, len) == 0);
  }

  /* no key: validation only, buffer untouched */
  memcpy(buf, text, len);
  ws_utf8_init(&u);
  rv = ws_unmask_utf8(buf, len, NULL, NULL, &u, &valid);
  CHECK((rv == 0) == (ref->fail == len));
  CHECK(valid == ref->fail);
  if (len) CHECK(memcmp(buf, text, len) == 0);

  /* no validator: plain unmasking */
  memcpy(buf, masked, len);
  off = off0;
  CHECK(ws_unmask_utf8(buf, len, key, &off, NULL, NULL) == 0);
  if (len) CHECK(memcmp(buf, text, len) == 0);

  free(buf);
  free(masked);
}

/* Every implementation (reference, DFAs, vector kernels this CPU has):
 * same position and same state as the reference, whole and chunked; and
 * ws_copy_unmask_utf8 into a separate exact-size buffer. */
static void check_impls(const uint8_t *text, size_t len, const ref_result *ref,
                        const uint8_t key[4], uint8_t ctl) {
  ws_utf8 r;
  ws_utf8_init(&r);
  CHECK(ws_utf8_scan_scalar(&r, text, len) == ref->fail);
  for (int k = 0; k < WS_UTF8_IMPL_COUNT; k++) {
    if (!ws_utf8_impl_available(k)) continue;
    ws_utf8 u;
    ws_utf8_init(&u);
    CHECK(ws_utf8_scan_impl(&u, text, len, k) == ref->fail);
    CHECK(u.state == r.state);

    splitter sp = {0xFACEu ^ (uint32_t)k << 20 ^ (uint32_t)len,
                   (uint8_t)(ctl + k)};
    size_t pos = 0, guard = 0, got = 0;
    ws_utf8_init(&u);
    while (pos < len) {
      size_t n = next_chunk(&sp, len - pos);
      if (n == 0 && ++guard > len + 16) n = 1;
      got = ws_utf8_scan_impl(&u, text + pos, n, k);
      if (got < n) break;
      pos += n;
    }
    CHECK((pos < len ? pos + got : len) == ref->fail);
    CHECK(u.state == r.state);

    /* copy, unmask and validate in one pass */
    size_t off0 = (size_t)(ctl & 3u), off = off0, valid = 777;
    uint8_t *masked = malloc(len ? len : 1), *dst = malloc(len ? len : 1);
    CHECK(masked && dst);
    if (len) memcpy(masked, text, len);
    ws_mask_scalar(masked, len, key, off0);
    memset(dst, 0, len ? len : 1);
    ws_utf8_init(&u);
    int rv = (k & 1)
                 ? ws_copy_unmask_utf8_impl(dst, masked, len, key, &off, &u,
                                            &valid, k)
                 : ws_copy_unmask_utf8(dst, masked, len, key, &off, &u, &valid);
    CHECK(valid == ref->fail);
    CHECK((rv == 0) == (ref->fail == len));
    if (rv == 0) {
      CHECK(off == (off0 + len) % 4);
      if (len) CHECK(memcmp(dst, text, len) == 0);
      CHECK(u.state == r.state);
    } else {
      CHECK(memcmp(dst, text, valid + 1) == 0);
    }
    free(masked);
    free(dst);
  }
}

/* The short paths (under 16 bytes: the scalar DFA; 16..64: the short
 * vector kernels, 16..31 as one 32-byte block on AVX2) against the
 * byte-at-a-time reference, differentially, on every window of up to 66
 * bytes at the first few offsets, each in an exact-size copy so that a
 * load past either end is caught: ws_utf8_scan (position and state),
 * ws_utf8_validate, and ws_unmask_utf8 (verdict, valid count, bytes). */
static void check_short(const uint8_t *text, size_t len, const uint8_t key[4],
                        uint8_t ctl) {
  size_t starts = len < 4 ? len : 4;
  for (size_t st = 0; st < starts || (st == 0 && len == 0); st++) {
    size_t max = len - st < 66 ? len - st : 66;
    for (size_t n = 0; n <= max; n++) {
      uint8_t *w = malloc(n ? n : 1), *m = malloc(n ? n : 1);
      CHECK(w && m);
      if (n) memcpy(w, text + st, n);
      ws_utf8 r, u;
      ws_utf8_init(&r);
      ws_utf8_init(&u);
      size_t exp = ws_utf8_scan_scalar(&r, w, n);
      CHECK(ws_utf8_scan(&u, w, n) == exp);
      CHECK(u.state == r.state);
      CHECK((ws_utf8_validate(w, n) == 0) == (exp == n && r.state == 0));
      size_t off0 = (size_t)(ctl + n) & 3u, off = off0, valid = 555;
      if (n) memcpy(m, w, n);
      ws_mask_scalar(m, n, key, off0);
      ws_utf8_init(&u);
      int rv = ws_unmask_utf8(m, n, key, &off, &u, &valid);
      CHECK(valid == exp);
      CHECK((rv == 0) == (exp == n));
      if (rv == 0) {
        CHECK(u.state == r.state);
        CHECK(off == (off0 + n) % 4);
        if (n) CHECK(memcmp(m, w, n) == 0);
      } else {
        CHECK(u.state == WS_UTF8_FAILED);
        CHECK(memcmp(m, w, exp + 1) == 0);
      }
      free(w);
      free(m);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t fixed_key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t ctl = 0;
  const uint8_t *key = fixed_key;
  const uint8_t *text = data;
  size_t len = size;
  if (size >= 5) {
    ctl = data[0];
    key = data + 1;
    text = data + 5;
    len = size - 5;
  }
  /* exact-size copy so over-reads are caught */
  uint8_t *t = malloc(len + 1);
  CHECK(t);
  if (len) memcpy(t, text, len);
  t = realloc(t, len ? len : 1);
  CHECK(t);

  ref_result ref = ref_validate(t, len);
  CHECK((ws_utf8_validate(t, len) == 0) == ref.complete);
  check_feed(t, len, &ref, ctl);
  check_scan(t, len, &ref, ctl);
  check_unmask(t, len, &ref, key, ctl);
  check_impls(t, len, &ref, key, ctl);
  check_short(t, len, key, ctl);
  free(t);
  return 0;
}
