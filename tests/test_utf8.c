/* UTF-8 validator tests. SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "ws_mask.h"
#include "ws_utf8.h"

/*
 * An independent reference, by code point arithmetic rather than by the
 * byte-range table the library uses: after each byte of a sequence, the
 * code points it could still become form an interval; the byte is
 * invalid when that interval misses every valid code point of that
 * sequence length (the shortest form, no surrogates, <= U+10FFFF).
 * Returns the index of the first invalid byte, or |len|; *ptrunc is set
 * when the input ends inside a sequence.
 */
static int interval_ok(uint32_t lo, uint32_t hi, uint32_t min) {
  uint32_t a = lo > min ? lo : min;
  /* [min, D7FF] */
  if (a <= 0xD7FF && a <= hi) return 1;
  /* [max(min, E000), 10FFFF] */
  a = a > 0xE000 ? a : 0xE000;
  return a <= hi && a <= 0x10FFFF;
}

static size_t ref_prefix(const uint8_t *s, size_t len, int *ptrunc) {
  size_t i = 0;
  *ptrunc = 0;
  while (i < len) {
    uint8_t b = s[i];
    size_t n, j;
    uint32_t cp, min;

    if (b < 0x80) {
      i++;
      continue;
    }
    if ((b & 0xE0) == 0xC0) {
      n = 2, cp = b & 0x1Fu, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3, cp = b & 0x0Fu, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4, cp = b & 0x07u, min = 0x10000;
    } else {
      return i; /* continuation byte or F8..FF as a lead */
    }
    for (j = 0;; j++) {
      unsigned rest = (unsigned)(n - 1 - j) * 6;
      uint32_t lo = cp << rest, hi = lo | ((1u << rest) - 1);
      if (!interval_ok(lo, hi, min)) return i + j;
      if (j + 1 == n) break;
      if (i + j + 1 >= len) {
        *ptrunc = 1;
        return len;
      }
      if ((s[i + j + 1] & 0xC0) != 0x80) return i + j + 1;
      cp = cp << 6 | (s[i + j + 1] & 0x3Fu);
    }
    i += n;
  }
  return len;
}

/* Expected outcome: first invalid byte index, or VALID / TRUNC. */
#define VALID ((size_t)-1)
#define TRUNC ((size_t)-2)

/*
 * Every implementation this build and CPU have (ws_utf8.h): the public
 * entry points first (WS_UTF8_IMPL_BEST), then the reference, then the
 * others through ws_utf8_scan_impl(). Each must give the same answers.
 */
static int impls[WS_UTF8_IMPL_COUNT];
static int nimpls;

static void init_impls(void) {
  int k;
  for (k = 0; k < WS_UTF8_IMPL_COUNT; k++) {
    if (ws_utf8_impl_available(k)) impls[nimpls++] = k;
  }
}

static size_t scan_with(int impl, ws_utf8 *u, const uint8_t *s, size_t n) {
  if (impl == WS_UTF8_IMPL_BEST) return ws_utf8_scan(u, s, n);
  if (impl == WS_UTF8_IMPL_REF) return ws_utf8_scan_scalar(u, s, n);
  return ws_utf8_scan_impl(u, s, n, impl);
}

static int feed_with(int impl, ws_utf8 *u, const uint8_t *s, size_t n) {
  if (impl == WS_UTF8_IMPL_BEST) return ws_utf8_feed(u, s, n);
  if (impl == WS_UTF8_IMPL_REF) return ws_utf8_feed_scalar(u, s, n);
  if (u->state == WS_UTF8_FAILED) return WS_ERR_UTF8;
  return ws_utf8_scan_impl(u, s, n, impl) == n ? 0 : WS_ERR_UTF8;
}

/*
 * Checks one input against its expected outcome: whole, split at every
 * position into two chunks, and byte by byte, with the fast path and the
 * reference; a failure must surface on the chunk holding the first
 * invalid byte and not before. Also checks the interval reference agrees.
 */
static void check_bytes(const uint8_t *s, size_t len, size_t expect) {
  size_t bad = (expect == VALID || expect == TRUNC) ? len : expect;
  int k, trunc;
  size_t split, i;

  assert_int_equal(ref_prefix(s, len, &trunc), bad);
  if (expect != VALID && expect != TRUNC) assert_int_equal(trunc, 0);
  else assert_int_equal(trunc, expect == TRUNC);

  assert_int_equal(ws_utf8_validate(s, len),
                   expect == VALID ? 0 : WS_ERR_UTF8);
  for (k = 0; k < nimpls; k++) {
    ws_utf8 u;
    ws_utf8_init(&u);
    assert_int_equal(scan_with(impls[k], &u, s, len), bad);
    assert_int_equal(ws_utf8_finish(&u), expect == VALID ? 0 : WS_ERR_UTF8);

    for (split = 0; split <= len; split++) {
      int r1, r2;
      ws_utf8_init(&u);
      r1 = feed_with(impls[k], &u, s, split);
      r2 = feed_with(impls[k], &u, s + split, len - split);
      if (bad < split) {
        assert_int_equal(r1, WS_ERR_UTF8);
        assert_int_equal(r2, WS_ERR_UTF8); /* stays failed */
      } else if (bad < len) {
        assert_int_equal(r1, 0);
        assert_int_equal(r2, WS_ERR_UTF8);
      } else {
        assert_int_equal(r1, 0);
        assert_int_equal(r2, 0);
      }
      assert_int_equal(ws_utf8_finish(&u), expect == VALID ? 0 : WS_ERR_UTF8);
      /* Scan positions add up across the split. */
      ws_utf8_init(&u);
      {
        size_t v1 = scan_with(impls[k], &u, s, split);
        if (bad < split) {
          assert_int_equal(v1, bad);
        } else {
          assert_int_equal(v1, split);
          assert_int_equal(
              split + scan_with(impls[k], &u, s + split, len - split), bad);
        }
      }
    }

    ws_utf8_init(&u);
    for (i = 0; i < len; i++) {
      int r = feed_with(impls[k], &u, s + i, 1);
      assert_int_equal(r, i < bad ? 0 : WS_ERR_UTF8);
    }
    assert_int_equal(ws_utf8_finish(&u), expect == VALID ? 0 : WS_ERR_UTF8);
  }
}

/*
 * check_bytes() on the input alone and behind 0..40 bytes of ASCII, so
 * the sequence lands at every position relative to the 8/16/64-byte
 * blocks of the fast path; and followed by ASCII, which must not change
 * an invalid verdict or rescue a truncated sequence from being an error.
 */
static void check_case(const char *hex, size_t expect) {
  size_t len, pad;
  uint8_t *s = tu_hex(hex, &len);
  uint8_t *buf = malloc(len + 80);

  assert_non_null(buf);
  check_bytes(s, len, expect);
  for (pad = 0; pad <= 40; pad++) {
    size_t e;
    memset(buf, 'a', pad);
    memcpy(buf + pad, s, len);
    e = (expect == VALID || expect == TRUNC) ? expect : expect + pad;
    check_bytes(buf, pad + len, e);
    /* Trailing ASCII: a truncated sequence fails at the first 'b'. */
    memset(buf + pad + len, 'b', 20);
    e = expect == VALID ? VALID : expect == TRUNC ? pad + len : expect + pad;
    check_bytes(buf, pad + len + 20, e);
  }
  free(buf);
  free(s);
}

typedef struct fact {
  const char *hex;
  size_t expect;
} fact;

static void run_facts(const fact *f, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    check_case(f[i].hex, f[i].expect);
  }
}

/* Markus Kuhn's UTF-8-test.txt (sections 1-5), as used by Autobahn 6.x. */
static void kuhn_valid_text(void **state) {
  static const fact f[] = {
      {"68656c6c6f 24 776f726c64", VALID},           /* hello$world */
      {"68656c6c6f c2a2 776f726c64", VALID},         /* U+00A2 */
      {"68656c6c6f e282ac 776f726c64", VALID},       /* U+20AC */
      {"68656c6c6f f0a4ada2 776f726c64", VALID},     /* U+24B62 */
      {"ceba e1bdb9 cf83 cebc ceb5", VALID},         /* kosme */
      {"c2b5 40 c39f c3b6 c3a4 c3bc c3a0 c3a1", VALID},
  };
  (void)state;
  run_facts(f, sizeof(f) / sizeof(f[0]));
}

static void kuhn_valid_text_prefixes(void **state) {
  /* Every prefix of "kosme": valid at character ends, else truncated. */
  static const uint8_t k[] = {0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
                              0x83, 0xce, 0xbc, 0xce, 0xb5};
  static const int ends[] = {0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1};
  size_t n;
  (void)state;

  for (n = 0; n <= sizeof(k); n++) {
    check_bytes(k, n, ends[n] || n == 0 ? VALID : TRUNC);
  }
}

static void kuhn_boundaries(void **state) {
  static const fact f[] = {
      /* 2.1 first possible sequence of each length */
      {"00", VALID},
      {"c280", VALID},
      {"e0a080", VALID},
      {"f0908080", VALID},
      {"f888808080", 0},
      {"fc8480808080", 0},
      /* 2.2 last possible sequence of each length */
      {"7f", VALID},
      {"dfbf", VALID},
      {"efbfbf", VALID},
      {"f48fbfbf", VALID},
      {"f7bfbfbf", 0},
      {"fbbfbfbfbf", 0},
      {"fdbfbfbfbfbf", 0},
      /* 2.3 other boundary conditions */
      {"ed9fbf", VALID},
      {"ee8080", VALID},
      {"efbfbd", VALID},
      {"f48fbfbf", VALID},
      {"f4908080", 1},
  };
  (void)state;
  run_facts(f, sizeof(f) / sizeof(f[0]));
}

static void kuhn_malformed(void **state) {
  static const fact f[] = {
      /* 3.1 unexpected continuation bytes */
      {"80", 0},
      {"bf", 0},
      {"80bf", 0},
      {"80bf80", 0},
      {"80bf80bf", 0},
      {"80bf80bf80", 0},
      {"80bf80bf80bf", 0},
      {"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
       "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbe",
       0},
      /* 3.2 lonely start characters, each followed by a space */
      {"c020 c120 c220 c320", 0},
      {"c220 c320", 1},
      {"df20", 1},
      {"e020 e120 e220", 1},
      {"ef20", 1},
      {"f020 f120", 1},
      {"f420", 1},
      {"f520 f620 f720", 0},
      {"f820 f920 fa20", 0},
      {"fc20 fd20", 0},
      /* 3.3 sequences with the last continuation byte missing */
      {"c0", 0},
      {"e080", 1},
      {"f08080", 1},
      {"f8808080", 0},
      {"fc80808080", 0},
      {"df", TRUNC},
      {"efbf", TRUNC},
      {"f7bfbf", 0},
      {"fbbfbfbf", 0},
      {"fdbfbfbfbf", 0},
      {"e1", TRUNC},
      {"e180", TRUNC},
      {"f1", TRUNC},
      {"f18080", TRUNC},
      {"f48fbf", TRUNC},
      /* 3.4 concatenation of the above */
      {"c0 e080 f08080 f8808080 fc80808080 df efbf f7bfbf fbbfbfbf fdbfbfbfbf",
       0},
      {"df efbf", 1},
      /* 3.5 impossible bytes */
      {"fe", 0},
      {"ff", 0},
      {"fefeffff", 0},
      {"41 fe", 1},
  };
  (void)state;
  run_facts(f, sizeof(f) / sizeof(f[0]));
}

static void kuhn_overlong(void **state) {
  static const fact f[] = {
      /* 4.1 overlong "/" */
      {"c0af", 0},
      {"e080af", 1},
      {"f08080af", 1},
      {"f8808080af", 0},
      {"fc80808080af", 0},
      /* 4.2 maximum overlong sequences */
      {"c1bf", 0},
      {"e09fbf", 1},
      {"f08fbfbf", 1},
      {"f887bfbfbf", 0},
      {"fc83bfbfbfbf", 0},
      /* 4.3 overlong NUL */
      {"c080", 0},
      {"e08080", 1},
      {"f0808080", 1},
      {"f880808080", 0},
      {"fc8080808080", 0},
  };
  (void)state;
  run_facts(f, sizeof(f) / sizeof(f[0]));
}

static void kuhn_surrogates_and_noncharacters(void **state) {
  static const fact f[] = {
      /* 5.1 single UTF-16 surrogates */
      {"eda080", 1},
      {"edadbf", 1},
      {"edae80", 1},
      {"edafbf", 1},
      {"edb080", 1},
      {"edbe80", 1},
      {"edbfbf", 1},
      /* 5.2 paired surrogates */
      {"eda080 edb080", 1},
      {"eda080 edbfbf", 1},
      {"edadbf edb080", 1},
      {"edadbf edbfbf", 1},
      {"edae80 edb080", 1},
      {"edae80 edbfbf", 1},
      {"edafbf edb080", 1},
      {"edafbf edbfbf", 1},
      /* 5.3 noncharacters are valid UTF-8 */
      {"efbfbe", VALID},
      {"efbfbf", VALID},
      {"f08fbfbe", 1}, /* but this one is overlong */
      {"f09fbfbe f09fbfbf f0afbfbe f0afbfbf f0bfbfbe f0bfbfbf", VALID},
      {"f18fbfbe f18fbfbf f39fbfbe f3bfbfbf f48fbfbe f48fbfbf", VALID},
      /* Unicode specials */
      {"efbfb9 efbfba efbfbb efbfbc efbfbd", VALID},
  };
  (void)state;
  run_facts(f, sizeof(f) / sizeof(f[0]));
}

/* Autobahn 6.3.x / 6.4.x payloads: "kosme" (11 bytes), then an invalid
 * sequence, then "edited". Fail-fast means the error comes on byte 11
 * (0-based), i.e. with the chunk holding it, whatever the split. */
static void autobahn_6_3_and_6_4(void **state) {
  static const fact f[] = {
      /* 6.3.1/6.3.2: a surrogate, invalid on its second byte (a0) */
      {"cebae1bdb9cf83cebcceb5 eda080 656469746564", 12},
      /* 6.4.1-6.4.4: 0x110000, invalid on its second byte (90) */
      {"cebae1bdb9cf83cebcceb5 f4908080 656469746564", 12},
      /* the parts the 6.4.x cases send in separate frames */
      {"cebae1bdb9cf83cebcceb5", VALID},
      {"cebae1bdb9cf83cebcceb5 f4", TRUNC},
      {"cebae1bdb9cf83cebcceb5 f490", 12},
      /* autobahn's own incremental validator checks */
      {"f5", 0},
      {"656469746564 eda080", 7},
      {"6564 6974 6564 ed a080", 7},
  };
  (void)state;
  run_facts(f, sizeof(f) / sizeof(f[0]));
}

/* 6.4.1 exactly as sent: three frames to one validator; the error is
 * reported on the second call and not earlier. */
static void autobahn_6_4_1_fail_fast_across_frames(void **state) {
  static const uint8_t p1[] = {0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
                               0x83, 0xce, 0xbc, 0xce, 0xb5};
  static const uint8_t p2[] = {0xf4, 0x90, 0x80, 0x80};
  static const uint8_t p2b[] = {0xf4};
  static const uint8_t p2c[] = {0x90};
  static const uint8_t p3[] = {0x65, 0x64, 0x69, 0x74, 0x65, 0x64};
  ws_utf8 u;
  (void)state;

  ws_utf8_init(&u);
  assert_int_equal(ws_utf8_feed(&u, p1, sizeof(p1)), 0);
  assert_int_equal(ws_utf8_feed(&u, p2, sizeof(p2)), WS_ERR_UTF8);
  assert_int_equal(ws_utf8_feed(&u, p3, sizeof(p3)), WS_ERR_UTF8);
  assert_int_equal(ws_utf8_finish(&u), WS_ERR_UTF8);

  /* 6.4.2: second frame is just f4 (still valid), then 90 fails. */
  ws_utf8_init(&u);
  assert_int_equal(ws_utf8_feed(&u, p1, sizeof(p1)), 0);
  assert_int_equal(ws_utf8_feed(&u, p2b, 1), 0);
  assert_int_equal(ws_utf8_finish(&u), WS_ERR_UTF8);
  assert_int_equal(ws_utf8_feed(&u, p2c, 1), WS_ERR_UTF8);
  /* Failed state: even empty input and valid ASCII keep failing. */
  assert_int_equal(ws_utf8_feed(&u, p3, 0), WS_ERR_UTF8);
  assert_int_equal(ws_utf8_feed(&u, p3, sizeof(p3)), WS_ERR_UTF8);
  assert_int_equal(ws_utf8_scan(&u, p3, sizeof(p3)), 0);
}

static size_t encode_cp(uint32_t c, uint8_t *o) {
  if (c < 0x80) {
    o[0] = (uint8_t)c;
    return 1;
  }
  if (c < 0x800) {
    o[0] = (uint8_t)(0xC0 | c >> 6);
    o[1] = (uint8_t)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    o[0] = (uint8_t)(0xE0 | c >> 12);
    o[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
    o[2] = (uint8_t)(0x80 | (c & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | c >> 18);
  o[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
  o[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
  o[3] = (uint8_t)(0x80 | (c & 0x3F));
  return 4;
}

/* Every code point U+0000..U+10FFFF (and past it, in 4-byte form): valid
 * except surrogates, which fail on their second byte, and > U+10FFFF. */
static void all_code_points(void **state) {
  uint32_t c;
  (void)state;

  for (c = 0; c < 0x140000; c++) {
    uint8_t b[4];
    size_t n = encode_cp(c, b), exp = n;
    int k;
    if (c >= 0xD800 && c <= 0xDFFF) exp = 1;
    if (c > 0x10FFFF) exp = 1; /* F4 90.. up to F4 BF.. */
    for (k = 0; k < nimpls; k++) {
      ws_utf8 u;
      ws_utf8_init(&u);
      assert_int_equal(scan_with(impls[k], &u, b, n), exp);
      assert_int_equal(ws_utf8_finish(&u), exp == n ? 0 : WS_ERR_UTF8);
    }
  }
  /* Also all of them in one long stream, fast path vs reference. */
  {
    uint8_t *buf = malloc(0x110000 * 4);
    size_t len = 0;
    ws_utf8 u;
    assert_non_null(buf);
    for (c = 0; c <= 0x10FFFF; c++) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      len += encode_cp(c, buf + len);
    }
    assert_int_equal(ws_utf8_validate(buf, len), 0);
    ws_utf8_init(&u);
    assert_int_equal(ws_utf8_scan_scalar(&u, buf, len), len);
    free(buf);
  }
}

/* Appends a random piece of mostly-UTF-8 to |s|. */
static size_t random_piece(uint64_t *rs, uint8_t *s) {
  uint32_t r = tu_rand(rs) % 100;
  size_t n, i;

  if (r < 40) { /* an ASCII run, sometimes long */
    n = 1 + tu_rand(rs) % (r < 5 ? 80 : 6);
    for (i = 0; i < n; i++) s[i] = (uint8_t)(0x20 + tu_rand(rs) % 0x5F);
    return n;
  }
  if (r < 85) { /* a valid character, weighted to 2 and 3 bytes */
    static const uint32_t lo[] = {0x80, 0x370, 0x800, 0x4E00, 0xE000,
                                  0x10000, 0xD700};
    static const uint32_t span[] = {0x780, 0x100, 0xF800, 0x5200, 0x2000,
                                    0x100000, 0x100};
    uint32_t k = tu_rand(rs) % 7, c = lo[k] + tu_rand(rs) % span[k];
    if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
    return encode_cp(c, s);
  }
  if (r < 92) { /* a truncated or corrupted character */
    uint32_t c = 0x80 + tu_rand(rs) % 0x10FF80;
    n = encode_cp(c, s);
    if (n > 1 && (tu_rand(rs) & 1)) return n - 1 - tu_rand(rs) % (n - 1);
    s[tu_rand(rs) % n] = (uint8_t)tu_rand(rs);
    return n;
  }
  /* a random byte, often a troublesome one */
  {
    static const uint8_t hot[] = {0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                  0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5,
                                  0xFF, 0x9F, 0xA0, 0x8F, 0x90};
    s[0] = (tu_rand(rs) & 1) ? hot[tu_rand(rs) % sizeof(hot)]
                             : (uint8_t)tu_rand(rs);
    return 1;
  }
}

/* Differential: fast path vs byte-at-a-time reference vs the interval
 * reference, on random mostly-UTF-8 input, whole and in random chunks. */
static void differential_random(void **state) {
  uint64_t rs = 2024;
  uint8_t s[1200];
  int iter;
  (void)state;

  for (iter = 0; iter < 40000; iter++) {
    size_t len = 0, target = tu_rand(&rs) % 1000, pos, fastpos, slowpos;
    int trunc;
    ws_utf8 a, b;
    uint32_t mode = tu_rand(&rs) % 8;

    while (len < target) len += random_piece(&rs, s + len);
    if (mode == 0) { /* valid only: drop pieces until valid */
      len = ref_prefix(s, len, &trunc);
    }
    ws_utf8_init(&a);
    ws_utf8_init(&b);
    fastpos = ws_utf8_scan(&a, s, len);
    slowpos = ws_utf8_scan_scalar(&b, s, len);
    assert_int_equal(fastpos, slowpos);
    assert_int_equal(a.state, b.state);
    assert_int_equal(fastpos, ref_prefix(s, len, &trunc));
    if (fastpos == len) {
      assert_int_equal(ws_utf8_finish(&a) != 0, trunc);
    }

    /* Random chunks, state carried across. */
    ws_utf8_init(&a);
    pos = 0;
    fastpos = 0;
    while (pos < len) {
      size_t n = tu_rand(&rs) % 40, v;
      if (n > len - pos) n = len - pos;
      v = ws_utf8_scan(&a, s + pos, n);
      if (v != n) {
        fastpos = pos + v;
        break;
      }
      pos += n;
      fastpos = pos;
    }
    assert_int_equal(fastpos, slowpos);
    assert_int_equal(a.state, b.state);
  }
}

/* ws_unmask_utf8 == ws_mask then the reference validator, including
 * lengths across its internal block size and chunked calls. */
static void unmask_utf8_matches_separate_passes(void **state) {
  uint64_t rs = 77;
  size_t cap = 20000;
  uint8_t *plain = malloc(cap + 100), *wire = malloc(cap + 100),
          *work = malloc(cap + 100), *ref = malloc(cap + 100);
  int iter;
  (void)state;

  assert_non_null(plain);
  assert_non_null(wire);
  assert_non_null(work);
  assert_non_null(ref);
  for (iter = 0; iter < 1500; iter++) {
    size_t len = 0, target, off0, expvalid, pos, off;
    uint8_t key[4];
    ws_utf8 ru, u;
    int clean = (tu_rand(&rs) % 3) != 0, rv = 0;
    size_t valid = 0;

    target = (iter % 10 == 0) ? 4000 + tu_rand(&rs) % 12000
                              : tu_rand(&rs) % 600;
    while (len < target) {
      if (clean) {
        uint8_t piece[100];
        size_t n = random_piece(&rs, piece);
        int trunc;
        if (ref_prefix(piece, n, &trunc) != n || trunc) continue;
        memcpy(plain + len, piece, n);
        len += n;
      } else {
        len += random_piece(&rs, plain + len);
      }
    }
    tu_rand_fn(key, 4, &rs);
    off0 = tu_rand(&rs) % 4;
    memcpy(wire, plain, len);
    ws_mask_scalar(wire, len, key, off0);

    ws_utf8_init(&ru);
    expvalid = ws_utf8_scan_scalar(&ru, plain, len);

    /* One call. */
    memcpy(work, wire, len);
    ws_utf8_init(&u);
    off = off0;
    rv = ws_unmask_utf8(work, len, key, &off, &u, &valid);
    assert_int_equal(valid, expvalid);
    assert_int_equal(rv, expvalid == len ? 0 : WS_ERR_UTF8);
    if (rv == 0) {
      assert_int_equal(off, (off0 + len) % 4);
      assert_memory_equal(work, plain, len);
      assert_int_equal(u.state, ru.state);
    } else {
      /* At least everything up to the bad byte is unmasked. */
      assert_memory_equal(work, plain, valid + 1);
      assert_int_equal(u.state, WS_UTF8_FAILED);
    }

    /* Random chunks carrying offset and state. */
    memcpy(work, wire, len);
    ws_utf8_init(&u);
    off = off0;
    pos = 0;
    rv = 0;
    while (pos < len) {
      size_t n = 1 + tu_rand(&rs) % 5000;
      if (n > len - pos) n = len - pos;
      rv = ws_unmask_utf8(work + pos, n, key, &off, &u, &valid);
      if (rv) {
        assert_int_equal(pos + valid, expvalid);
        break;
      }
      assert_int_equal(valid, n);
      pos += n;
    }
    assert_int_equal(rv, expvalid == len ? 0 : WS_ERR_UTF8);
    if (!rv) assert_memory_equal(work, plain, len);

    /* No key: validation only, buffer untouched. */
    memcpy(work, plain, len);
    ws_utf8_init(&u);
    rv = ws_unmask_utf8(work, len, NULL, NULL, &u, &valid);
    assert_int_equal(valid, expvalid);
    assert_memory_equal(work, plain, len);

    /* No validator: unmasking only. */
    memcpy(work, wire, len);
    off = off0;
    assert_int_equal(ws_unmask_utf8(work, len, key, &off, NULL, &valid), 0);
    assert_int_equal(valid, len);
    assert_int_equal(off, (off0 + len) % 4);
    assert_memory_equal(work, plain, len);
  }
  {
    /* A failed validator fails at once and unmasks nothing. */
    ws_utf8 u;
    uint8_t b[3] = {0x80, 'a', 'b'};
    size_t valid = 99, off = 0;
    const uint8_t key[4] = {1, 1, 1, 1};
    ws_utf8_init(&u);
    assert_int_equal(ws_unmask_utf8(b, 1, NULL, NULL, &u, &valid),
                     WS_ERR_UTF8);
    assert_int_equal(valid, 0);
    assert_int_equal(ws_unmask_utf8(b + 1, 2, key, &off, &u, &valid),
                     WS_ERR_UTF8);
    assert_int_equal(valid, 0);
    assert_memory_equal(b + 1, "ab", 2);
  }
  free(plain);
  free(wire);
  free(work);
  free(ref);
}

/*
 * Checks every implementation against the interval reference on one
 * input: the position of the first invalid byte and, when there is none,
 * the state (which must be the reference's own, so a later call carries
 * on identically whichever implementation left it).
 */
static void check_all_impls(const uint8_t *s, size_t len) {
  int trunc, k;
  size_t exp = ref_prefix(s, len, &trunc);
  ws_utf8 r;

  ws_utf8_init(&r);
  assert_int_equal(ws_utf8_scan_scalar(&r, s, len), exp);
  if (exp == len)
    assert_int_equal(r.state != 0, trunc);
  else
    assert_int_equal(r.state, WS_UTF8_FAILED);
  for (k = 0; k < nimpls; k++) {
    ws_utf8 u;
    ws_utf8_init(&u);
    assert_int_equal(scan_with(impls[k], &u, s, len), exp);
    assert_int_equal(u.state, r.state);
  }
}

/* Bytes at the edges of the ranges in RFC 3629 section 4 (and Unicode
 * Table 3-7): ASCII, each continuation sub-range, the overlong leads C0
 * C1, E0, the surrogate lead ED, F0, F4, and F5..FF that never occur. */
static const uint8_t edge[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                               0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                               0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};

/*
 * Puts |seq| at |pos| in a |len|-byte buffer of |bg| (ASCII, or a run of
 * three-byte characters that the sequence interrupts) and checks it.
 */
static void place(const uint8_t *seq, size_t n, size_t len, size_t pos,
                  int bg) {
  uint8_t b[160];
  size_t i;

  for (i = 0; i < len; i++) {
    static const uint8_t cjk[3] = {0xE4, 0xB8, 0x96}; /* U+4E16 */
    b[i] = bg ? cjk[i % 3] : (uint8_t)('a' + i % 26);
  }
  /* In the CJK background, start the sequence between characters. */
  if (bg) pos -= pos % 3;
  if (pos + n > len) return;
  memcpy(b + pos, seq, n);
  check_all_impls(b, len);
}

/* Where the vector kernels change gear: 16-byte blocks, 32-byte AVX2
 * blocks, 64-byte groups between error checks, and the tail. */
static void place_near_edges(const uint8_t *seq, size_t n, int wide) {
  static const size_t at48[] = {0, 13, 14, 15, 16, 17, 30, 31, 32, 33, 45};
  static const size_t at80[] = {61, 62, 63, 64, 65};
  size_t j;

  for (j = 0; j < sizeof(at48) / sizeof(at48[0]); j++) {
    place(seq, n, 48, at48[j], 0);
  }
  place(seq, n, 48, 48 - n, 0); /* at the very end */
  place(seq, n, 20, 20 - n, 0); /* one block and a short tail */
  place(seq, n, 16, 16 - n, 0); /* exactly one block */
  place(seq, n, 16, 0, 0);
  if (!wide) return;
  place(seq, n, 48, 15, 1);
  place(seq, n, 48, 31, 1);
  for (j = 0; j < sizeof(at80) / sizeof(at80[0]); j++) {
    place(seq, n, 80, at80[j], 0);
  }
  place(seq, n, 80, 80 - n, 1);
  place(seq, n, 150, 150 - n, 0);
  place(seq, n, 150, 127, 1);
}

/*
 * Every 1- and 2-byte sequence, every lead with all pairs of edge bytes
 * after it, and the 4-byte leads with all triples of edge bytes, at every
 * position where the vector kernels could get them wrong: block edges,
 * the tail, the end of input (truncated sequences, RFC 6455 8.1: only a
 * complete message must be valid). Every implementation agrees with the
 * reference.
 */
static void vector_edges_exhaustive(void **state) {
  uint8_t q[4];
  unsigned a, b, c, d;
  (void)state;

  for (a = 0; a < 256; a++) {
    q[0] = (uint8_t)a;
    place_near_edges(q, 1, 1);
    for (b = 0; b < 256; b++) {
      q[1] = (uint8_t)b;
      place_near_edges(q, 2, a >= 0xC0 && (b & 0xC0) == 0x80);
    }
  }
  for (a = 0xC0; a < 256; a++) {
    q[0] = (uint8_t)a;
    for (b = 0; b < sizeof(edge); b++) {
      q[1] = edge[b];
      for (c = 0; c < sizeof(edge); c++) {
        q[2] = edge[c];
        place_near_edges(q, 3, 0);
      }
    }
  }
  {
    static const uint8_t lead4[] = {0xE0, 0xED, 0xEF, 0xF0, 0xF1,
                                    0xF3, 0xF4, 0xF5, 0xFF};
    for (a = 0; a < sizeof(lead4); a++) {
      q[0] = lead4[a];
      for (b = 0; b < sizeof(edge); b++) {
        q[1] = edge[b];
        for (c = 0; c < sizeof(edge); c++) {
          q[2] = edge[c];
          for (d = 0; d < sizeof(edge); d++) {
            q[3] = edge[d];
            place(q, 4, 48, 14, 0);
            place(q, 4, 48, 31, 0);
            place(q, 4, 48, 44, 0);
            place(q, 4, 20, 16, 0);
          }
        }
      }
    }
  }
}

/*
 * Random mostly-UTF-8 text of 0..300 bytes split into two chunks at every
 * position, and into random chunks: each implementation gives the same
 * error position and state as the reference whatever the split (the
 * state carries sequences across calls).
 */
static void impls_agree_at_every_split(void **state) {
  uint64_t rs = 6455;
  uint8_t s[400];
  int iter;
  (void)state;

  for (iter = 0; iter < 600; iter++) {
    size_t len = 0, target = tu_rand(&rs) % 300, exp, split;
    int trunc, k;
    ws_utf8 r;

    while (len < target)
      len += random_piece(&rs, s + len);
    if (iter % 3 == 0) len = ref_prefix(s, len, &trunc); /* valid */
    exp = ref_prefix(s, len, &trunc);
    ws_utf8_init(&r);
    assert_int_equal(ws_utf8_scan_scalar(&r, s, len), exp);
    for (k = 0; k < nimpls; k++) {
      for (split = 0; split <= len; split++) {
        ws_utf8 u;
        size_t v;
        ws_utf8_init(&u);
        v = scan_with(impls[k], &u, s, split);
        if (v == split) v += scan_with(impls[k], &u, s + split, len - split);
        assert_int_equal(v, exp);
        assert_int_equal(u.state, r.state);
      }
      { /* random chunks, some of them empty */
        ws_utf8 u;
        size_t pos = 0, v = 0;
        ws_utf8_init(&u);
        while (pos < len) {
          size_t n = tu_rand(&rs) % 70;
          if (n > len - pos) n = len - pos;
          v = scan_with(impls[k], &u, s + pos, n);
          if (v != n) break;
          pos += n;
        }
        assert_int_equal(pos + (pos < len ? v : 0), exp);
        assert_int_equal(u.state, r.state);
      }
    }
  }
}

/*
 * ws_copy_unmask_utf8 with every implementation: in place and into
 * another buffer, at every alignment of source and destination, every
 * key offset, and lengths around the block sizes. The bytes stored are
 * exactly the unmasked ones (RFC 6455 5.3), the ones after them are left
 * alone, the key offset moves by the number stored, at least one byte
 * past the first invalid one is stored, and the validity verdict is the
 * reference's.
 */
static void fused_copy_unmask_every_impl(void **state) {
  uint64_t rs = 1007;
  static uint8_t plain[700], wire[720], dst[720], orig[720];
  int iter;
  (void)state;

  for (iter = 0; iter < 1200; iter++) {
    size_t len = 0, target, exp, off0, sa, da;
    int trunc, k, inplace = iter & 1;
    uint8_t key[4];

    target = (iter % 7 == 0) ? tu_rand(&rs) % 660 : tu_rand(&rs) % 140;
    while (len < target)
      len += random_piece(&rs, plain + len);
    if (len > 680) len = 680;
    if (iter % 3 == 0) len = ref_prefix(plain, len, &trunc);
    exp = ref_prefix(plain, len, &trunc);
    tu_rand_fn(key, 4, &rs);
    for (k = 0; k < 4; k++)
      key[k] |= 1; /* every byte changes */
    off0 = tu_rand(&rs) % 4;
    sa = tu_rand(&rs) % 8;
    da = tu_rand(&rs) % 8;
    for (k = 0; k < nimpls; k++) {
      ws_utf8 u;
      size_t valid = 12345, off = off0, i, w;
      uint8_t *d;
      const uint8_t *src;
      int rv;

      memcpy(wire + sa, plain, len);
      ws_mask_scalar(wire + sa, len, key, off0);
      if (inplace) {
        d = wire + sa;
        src = wire + sa;
        memcpy(orig, wire + sa, len);
      } else {
        d = dst + da;
        src = wire + sa;
        for (i = 0; i < len; i++)
          d[i] = (uint8_t)(plain[i] ^ 0x5A);
        memcpy(orig, d, len);
      }
      ws_utf8_init(&u);
      rv = impls[k] == WS_UTF8_IMPL_BEST
               ? ws_copy_unmask_utf8(d, src, len, key, &off, &u, &valid)
               : ws_copy_unmask_utf8_impl(d, src, len, key, &off, &u, &valid,
                                          impls[k]);
      assert_int_equal(valid, exp);
      assert_int_equal(rv, exp == len ? 0 : WS_ERR_UTF8);
      /* w = bytes stored: a prefix of plain, then untouched bytes. */
      for (w = 0; w < len && d[w] == plain[w] && d[w] != orig[w]; w++) {
        continue;
      }
      for (i = w; i < len; i++)
        assert_int_equal(d[i], orig[i]);
      if (rv == 0) {
        assert_int_equal(w, len);
        assert_int_equal(u.state != 0, trunc);
      } else {
        assert_true(w >= exp + 1);
        assert_int_equal(u.state, WS_UTF8_FAILED);
      }
      assert_int_equal(off, (off0 + w) % 4);

      /* No destination: validation only, the source is left alone. */
      memcpy(dst + da, plain, len);
      ws_utf8_init(&u);
      off = off0;
      rv = ws_copy_unmask_utf8_impl(NULL, dst + da, len, key, &off, &u, &valid,
                                    impls[k]);
      assert_int_equal(valid, exp);
      assert_int_equal(rv, exp == len ? 0 : WS_ERR_UTF8);
      assert_memory_equal(dst + da, plain, len);

      /* No key: a plain copy. */
      if (!inplace && rv == 0) {
        memset(dst, 0, sizeof(dst));
        ws_utf8_init(&u);
        assert_int_equal(ws_copy_unmask_utf8_impl(dst + da, plain, len, NULL,
                                                  NULL, &u, &valid, impls[k]),
                         0);
        assert_memory_equal(dst + da, plain, len);
      }
    }
  }
}

/*
 * Every entry point on one input against the interval reference: scan
 * (position and state, as the byte-at-a-time reference leaves it), feed,
 * validate, unmask in place at every key offset and copy-unmask into
 * another buffer (verdict, valid count, bytes stored, key offset), and
 * the input split in two at every point (a sequence carried across the
 * cut as across fragments). Used on short inputs, where the short
 * kernels (16..64 bytes) and the scalar DFA (under 16) take over.
 */
static void check_entry_points(const uint8_t *s, size_t len) {
  static const uint8_t key[4] = {0x37, 0xFA, 0x21, 0x3D};
  uint8_t wire[80], dst[80];
  int trunc;
  size_t exp = ref_prefix(s, len, &trunc), off0, split, v;
  ws_utf8 r, u;
  int ok = exp == len, rv, k;

  assert_true(len <= 64);
  ws_utf8_init(&r);
  assert_int_equal(ws_utf8_scan_scalar(&r, s, len), exp);
  for (k = 0; k < nimpls; k++) {
    ws_utf8_init(&u);
    assert_int_equal(scan_with(impls[k], &u, s, len), exp);
    assert_int_equal(u.state, r.state);
  }
  ws_utf8_init(&u);
  assert_int_equal(ws_utf8_feed(&u, s, len), ok ? 0 : WS_ERR_UTF8);
  assert_int_equal(u.state, r.state);
  assert_int_equal(ws_utf8_validate(s, len),
                   ok && !trunc ? 0 : WS_ERR_UTF8);
  for (off0 = 0; off0 < 4; off0++) {
    size_t off = off0, valid = 999, w;
    memcpy(wire, s, len);
    ws_mask_scalar(wire, len, key, off0);
    ws_utf8_init(&u);
    rv = ws_unmask_utf8(wire, len, key, &off, &u, &valid);
    assert_int_equal(rv, ok ? 0 : WS_ERR_UTF8);
    assert_int_equal(valid, exp);
    assert_int_equal(u.state, r.state);
    /* w bytes unmasked, the rest as they were; at least one past the
     * first invalid byte, and the key offset moved by w */
    for (w = 0; w < len && wire[w] == s[w]; w++)
      continue;
    if (ok) assert_int_equal(w, len);
    else assert_true(w >= exp + 1);
    assert_int_equal(off, (off0 + (ok ? len : off - off0 + 4)) % 4);
    if (ok) assert_int_equal(off, (off0 + len) % 4);

    memcpy(wire, s, len);
    ws_mask_scalar(wire, len, key, off0);
    memset(dst, 0xEE, sizeof(dst));
    off = off0;
    ws_utf8_init(&u);
    rv = ws_copy_unmask_utf8(dst, wire, len, key, &off, &u, &valid);
    assert_int_equal(rv, ok ? 0 : WS_ERR_UTF8);
    assert_int_equal(valid, exp);
    if (ok) {
      if (len) assert_memory_equal(dst, s, len);
      assert_int_equal(off, (off0 + len) % 4);
      assert_int_equal(dst[len], 0xEE); /* nothing stored past the end */
    } else {
      assert_memory_equal(dst, s, exp + 1);
    }
  }
  for (split = 0; split <= len; split++) {
    ws_utf8_init(&u);
    v = ws_utf8_scan(&u, s, split);
    if (v == split) v += ws_utf8_scan(&u, s + split, len - split);
    assert_int_equal(v, exp);
    assert_int_equal(u.state, r.state);
  }
}

/*
 * The short paths at their edges: every length 0..40 (under one vector
 * block, one block, the AVX2 short kernel's 16..31, then 32..40 with
 * the kernels for two blocks), in ASCII, Greek, CJK, emoji and mixed
 * text; in each, every position given an invalid byte (a lone
 * continuation, C0, F5, FF), a surrogate or too-big second byte after a
 * lead (ED A0, F4 90), an overlong (C1 BF, E0 9F, F0 8F), a lead cut
 * short by ASCII; and every character left unfinished by the end of the
 * input (by one, two or three bytes), which is a truncation, not an
 * error, until the message ends.
 */
static void short_paths_every_length_and_position(void **state) {
  static const char *const bg[] = {
      "abcdefghij",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
      "\xe4\xb8\x96\xe7\x95\x8c\xe4\xbd\xa0\xe5\xa5\xbd",
      "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xf0\x90\x80\x80",
      "a\xce\xb1\xe4\xb8\x96 \xf0\x9f\x98\x80\xd0\x9f\xef\xbf\xbd",
  };
  static const uint8_t bad[][2] = {
      {0x80, 0},    {0xBF, 0},    {0xC0, 0},    {0xF5, 0},    {0xFF, 0},
      {0xED, 0xA0}, {0xF4, 0x90}, {0xC1, 0xBF}, {0xE0, 0x9F}, {0xF0, 0x8F},
      {0xC3, 0x41}, {0xE1, 0x41}, {0xF1, 0x41},
  };
  static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac",
                                      "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
                                      "\xf4\x8f\xbf\xbf"};
  uint8_t s[64];
  size_t b, len, pos, k, cut;
  (void)state;

  for (b = 0; b < sizeof(bg) / sizeof(bg[0]); b++) {
    size_t bl = strlen(bg[b]);
    for (len = 0; len <= 40; len++) {
      /* background text of exactly |len| bytes (ASCII where the last
       * character would not fit) */
      size_t n = 0, j = 0;
      while (n < len) {
        const uint8_t *c = (const uint8_t *)bg[b] + j;
        size_t cl = *c < 0x80 ? 1 : *c < 0xE0 ? 2 : *c < 0xF0 ? 3 : 4;
        if (n + cl > len) {
          s[n++] = 'x';
          continue;
        }
        memcpy(s + n, c, cl);
        n += cl;
        j = (j + cl) % bl;
      }
      assert_int_equal(ws_utf8_validate(s, len), 0);
      check_entry_points(s, len);
      for (pos = 0; pos < len; pos++) {
        uint8_t t[64];
        for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
          memcpy(t, s, len);
          t[pos] = bad[k][0];
          if (bad[k][1] && pos + 1 < len) t[pos + 1] = bad[k][1];
          check_entry_points(t, len);
        }
        /* a character written over the text from |pos|, cut by the end
         * of the input when it does not fit */
        for (k = 0; k < sizeof(chars) / sizeof(chars[0]); k++) {
          size_t cl = strlen(chars[k]);
          memcpy(t, s, len);
          for (cut = 0; cut < cl && pos + cut < len; cut++)
            t[pos + cut] = (uint8_t)chars[k][cut];
          check_entry_points(t, len);
        }
      }
    }
  }
}

/* The implementation list: the reference, the compact DFA and the best
 * choice are always there; each has its own name; unknown ones are not
 * available and asking for one falls back to the best. */
static void impl_list(void **state) {
  int k, j;
  uint8_t b[20] = "0123456789abcdefghi";
  ws_utf8 u;
  (void)state;

  assert_true(ws_utf8_impl_available(WS_UTF8_IMPL_BEST));
  assert_true(ws_utf8_impl_available(WS_UTF8_IMPL_REF));
  assert_true(ws_utf8_impl_available(WS_UTF8_IMPL_COMPACT));
  assert_false(ws_utf8_impl_available(-1));
  assert_false(ws_utf8_impl_available(WS_UTF8_IMPL_COUNT));
  assert_string_equal(ws_utf8_impl_name(WS_UTF8_IMPL_COUNT), "?");
  for (k = 0; k < WS_UTF8_IMPL_COUNT; k++) {
    for (j = 0; j < k; j++) {
      assert_string_not_equal(ws_utf8_impl_name(k), ws_utf8_impl_name(j));
    }
  }
  ws_utf8_init(&u);
  assert_int_equal(ws_utf8_scan_impl(&u, b, 19, WS_UTF8_IMPL_COUNT), 19);
  assert_int_equal(u.state, 0);
}

/* Zero-initialised state is the initial state; empty input is fine. */
static void init_and_empty(void **state) {
  ws_utf8 u = {0};
  (void)state;

  assert_int_equal(ws_utf8_finish(&u), 0);
  assert_int_equal(ws_utf8_feed(&u, NULL, 0), 0);
  assert_int_equal(ws_utf8_validate(NULL, 0), 0);
  u.state = 12345;
  ws_utf8_init(&u);
  assert_int_equal(u.state, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(init_and_empty),
      cmocka_unit_test(impl_list),
      cmocka_unit_test(kuhn_valid_text),
      cmocka_unit_test(kuhn_valid_text_prefixes),
      cmocka_unit_test(kuhn_boundaries),
      cmocka_unit_test(kuhn_malformed),
      cmocka_unit_test(kuhn_overlong),
      cmocka_unit_test(kuhn_surrogates_and_noncharacters),
      cmocka_unit_test(autobahn_6_3_and_6_4),
      cmocka_unit_test(autobahn_6_4_1_fail_fast_across_frames),
      cmocka_unit_test(all_code_points),
      cmocka_unit_test(differential_random),
      cmocka_unit_test(unmask_utf8_matches_separate_passes),
      cmocka_unit_test(vector_edges_exhaustive),
      cmocka_unit_test(impls_agree_at_every_split),
      cmocka_unit_test(fused_copy_unmask_every_impl),
      cmocka_unit_test(short_paths_every_length_and_position),
  };
  init_impls();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
