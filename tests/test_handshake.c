/* Unit tests for the opening handshake: SHA-1, base64, RFC 6455 section 4
 * request/response parsing, validation and writing.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

/* ---- helpers ------------------------------------------------------------ */

static void assert_slice(ws_slice s, const char *str) {
  size_t n = strlen(str);
  if (s.len != n || (n && memcmp(s.base, str, n) != 0)) {
    fprintf(stderr, "expected \"%s\", got \"%.*s\"\n", str, (int)s.len,
            s.base ? (const char *)s.base : "");
    fail_msg("slice differs");
  }
}

static void assert_buf(const ws_buf *b, const char *str) {
  size_t n = strlen(str);
  ws_slice s = {b->base + b->pos, ws_buf_size(b)};
  if (s.len != n || memcmp(s.base, str, n) != 0) {
    fprintf(stderr, "expected:\n%s\ngot:\n%.*s\n", str, (int)s.len,
            (const char *)s.base);
    fail_msg("output differs");
  }
}

static ws_mem default_mem(void) {
  ws_mem m;
  assert_int_equal(ws_mem_resolve(&m, NULL), 0);
  return m;
}

static void sha1_hex(const void *data, size_t len, const char *hex) {
  ws_sha1_ctx ctx;
  uint8_t d[20];
  ws_sha1_init(&ctx);
  ws_sha1_update(&ctx, data, len);
  ws_sha1_final(&ctx, d);
  tu_assert_hex(d, sizeof(d), hex);
}

#define MAXH 64

/* Parses |len| bytes as a request head; returns 0 or the HTTP status. */
static int req_status_n(const void *buf, size_t len) {
  ws_request req;
  ws_header h[MAXH];
  int status = -1;
  const char *why = NULL;
  int rv = ws_hs_parse_request(&req, h, MAXH, buf, len, &status, &why);
  if (rv == 0) return 0;
  assert_int_equal(rv, WS_ERR_HANDSHAKE);
  assert_non_null(why);
  return status;
}

/* As above for a string; also checks the head framing finds its end. */
static int req_status(const char *s) {
  size_t len = strlen(s);
  assert_int_equal(ws_hs_head_end((const uint8_t *)s, len, 0), len);
  return req_status_n(s, len);
}

/* RFC 6455 1.2 example request, split into lines for the variants. */
#define RL "GET /chat HTTP/1.1\r\n"
#define H_HOST "Host: server.example.com\r\n"
#define H_UPG "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define H_ORIGIN "Origin: http://example.com\r\n"
#define H_PROTO "Sec-WebSocket-Protocol: chat, superchat\r\n"
#define CRLF "\r\n"
#define REQ_OK RL H_HOST H_UPG H_CONN H_KEY H_ORIGIN H_PROTO H_VER CRLF

#define KEY_1_3 "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT_1_3 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* ---- SHA-1, FIPS 180-4 examples ---------------------------------------- */

static void sha1_fips_abc(void **state) {
  (void)state;
  sha1_hex("abc", 3, "a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d");
}

static void sha1_fips_empty(void **state) {
  (void)state;
  sha1_hex("", 0, "da39a3ee 5e6b4b0d 3255bfef 95601890 afd80709");
}

static void sha1_fips_448bit(void **state) {
  (void)state;
  sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
           "84983e44 1c3bd26e baae4aa1 f95129e5 e54670f1");
}

static void sha1_fips_896bit(void **state) {
  (void)state;
  const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                  "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  sha1_hex(m, strlen(m), "a49b2446 a02c645b f419f995 b6709125 3a04a259");
}

/* One million 'a', fed in uneven chunks to cross block boundaries. */
static void sha1_fips_million_a(void **state) {
  (void)state;
  uint8_t chunk[997];
  memset(chunk, 'a', sizeof(chunk));
  ws_sha1_ctx ctx;
  uint8_t d[20];
  size_t left = 1000000, step = 1;
  ws_sha1_init(&ctx);
  while (left) {
    size_t n = WS_MIN(WS_MIN(step, sizeof(chunk)), left);
    ws_sha1_update(&ctx, chunk, n);
    left -= n;
    step = step * 3 + 1;
    if (step > sizeof(chunk)) step = 1;
  }
  ws_sha1_final(&ctx, d);
  tu_assert_hex(d, 20, "34aa973c d4c4daa4 f61eeb2b dbad2731 6534016f");
}

/* Every two-chunk split, and lengths around the 55/56/64 padding edges. */
static void sha1_split_and_padding_edges(void **state) {
  (void)state;
  const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                  "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  size_t len = strlen(m);
  for (size_t k = 0; k <= len; k++) {
    ws_sha1_ctx ctx;
    uint8_t d[20];
    ws_sha1_init(&ctx);
    ws_sha1_update(&ctx, m, k);
    ws_sha1_update(&ctx, m + k, len - k);
    ws_sha1_final(&ctx, d);
    tu_assert_hex(d, 20, "a49b2446 a02c645b f419f995 b6709125 3a04a259");
  }
  /* 55, 56 and 64 bytes of 'a' (lengths checked with sha1sum) */
  uint8_t a[64];
  memset(a, 'a', sizeof(a));
  sha1_hex(a, 55, "c1c8bbdc 22796e28 c0e15163 d20899b6 5621d65a");
  sha1_hex(a, 56, "c2db330f 6083854c 99d4b5bf b6e8f29f 201be699");
  sha1_hex(a, 64, "0098ba82 4b5c1642 7bd7a112 2a5a442a 25ec644d");
}

/* ---- base64, RFC 4648 ------------------------------------------------- */

static void base64_rfc4648_10_vectors(void **state) {
  (void)state;
  static const char *const v[][2] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    char enc[16];
    uint8_t dec[16];
    size_t in = strlen(v[i][0]), declen = 99;
    size_t n = ws_base64_encode((const uint8_t *)v[i][0], in, enc);
    assert_int_equal(n, strlen(v[i][1]));
    assert_memory_equal(enc, v[i][1], n);
    assert_int_equal(ws_base64_decode((const uint8_t *)v[i][1], n, dec,
                                      sizeof(dec), &declen),
                     0);
    assert_int_equal(declen, in);
    if (in) assert_memory_equal(dec, v[i][0], in);
  }
}

static void base64_all_byte_values_roundtrip(void **state) {
  (void)state;
  uint8_t in[256], dec[256];
  char enc[344];
  for (size_t i = 0; i < 256; i++)
    in[i] = (uint8_t)i;
  for (size_t len = 0; len <= 256; len++) {
    size_t n = ws_base64_encode(in, len, enc), declen = 0;
    assert_int_equal(n, (len + 2) / 3 * 4);
    assert_int_equal(
        ws_base64_decode((const uint8_t *)enc, n, dec, len, &declen), 0);
    assert_int_equal(declen, len);
    if (len) assert_memory_equal(dec, in, len);
  }
}

/* RFC 4648 table 1, every value once: these 48 bytes encode to the
 * alphabet in order (size builds work each character out instead of
 * keeping the alphabet: a consistent mistake would still round-trip). */
static void base64_alphabet_in_order(void **state) {
  (void)state;
  static const uint8_t bytes[48] = {
      0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f,
      0x41, 0x14, 0x93, 0x51, 0x55, 0x97, 0x61, 0x96, 0x9b, 0x71, 0xd7, 0x9f,
      0x82, 0x18, 0xa3, 0x92, 0x59, 0xa7, 0xa2, 0x9a, 0xab, 0xb2, 0xdb, 0xaf,
      0xc3, 0x1c, 0xb3, 0xd3, 0x5d, 0xb7, 0xe3, 0x9e, 0xbb, 0xf3, 0xdf, 0xbf};
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char enc[64];
  uint8_t dec[48];
  size_t declen = 0;
  assert_int_equal(ws_base64_encode(bytes, sizeof(bytes), enc), 64);
  assert_memory_equal(enc, alphabet, 64);
  assert_int_equal(ws_base64_decode((const uint8_t *)alphabet, 64, dec,
                                    sizeof(dec), &declen),
                   0);
  assert_int_equal(declen, sizeof(bytes));
  assert_memory_equal(dec, bytes, sizeof(bytes));
}

static int b64_dec(const char *s, size_t cap) {
  uint8_t out[64];
  size_t n = 0;
  assert_true(cap <= sizeof(out));
  return ws_base64_decode((const uint8_t *)s, strlen(s), out, cap, &n);
}

/* RFC 4648 3.2, 3.3, 3.5: the strict decoder used for Sec-WebSocket-Key */
static void base64_strict_rejects(void **state) {
  (void)state;
  static const char *const bad[] = {
      "Zg",        /* 3.2: padding required */
      "Zg=",       /* wrong length */
      "Zm9vY",     /* wrong length */
      "Zm9v YmFy", /* 3.3: whitespace */
      "Zm9v\nYmFy",
      "Zm9-", /* url-safe alphabet is not base64 */
      "Zm9_",
      "Zm9v!A==", /* not in the alphabet */
      "Z===",     /* too much padding */
      "====",
      "Zg==Zg==", /* padding in the middle */
      "Zg=a",     /* '=' then data */
      "Zh==",     /* 3.5: non-zero pad bits */
      "Zm9=",     /* 3.5: non-zero pad bits */
      "dGhlIHNhbXBsZSBub25jZR==",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (b64_dec(bad[i], 64) != WS_ERR_INVALID_ARGUMENT)
      fail_msg("accepted \"%s\"", bad[i]);
  }
  assert_int_equal(b64_dec("Zm8=", 64), 0);
  /* over the output capacity */
  assert_int_equal(b64_dec("Zm9vYmFy", 5), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(b64_dec("Zm9vYmFy", 6), 0);
}

/* ---- accept key, RFC 6455 1.3 / 4.2.2 ----------------------------------- */

static void rfc6455_1_3_accept_key(void **state) {
  (void)state;
  char out[28];
  ws_handshake_accept_key((const uint8_t *)KEY_1_3, 24, out);
  assert_memory_equal(out, ACCEPT_1_3, 28);
}

/* ---- ws_list_next, RFC 7230 7 ------------------------------------------ */

static void rfc7230_7_list_skips_empty_and_ows(void **state) {
  (void)state;
  const char *s = " , ,a ,, b\t,\tc d ,";
  ws_slice list = {(const uint8_t *)s, strlen(s)}, el;
  assert_true(ws_list_next(&list, &el));
  assert_slice(el, "a");
  assert_true(ws_list_next(&list, &el));
  assert_slice(el, "b");
  assert_true(ws_list_next(&list, &el));
  assert_slice(el, "c d");
  assert_false(ws_list_next(&list, &el));
  assert_false(ws_list_next(&list, &el));

  ws_slice empty = {NULL, 0};
  assert_false(ws_list_next(&empty, &el));
  const char *commas = " ,, ,";
  ws_slice c = {(const uint8_t *)commas, strlen(commas)};
  assert_false(ws_list_next(&c, &el));
}

static void rfc7230_7_list_keeps_quoted_strings(void **state) {
  (void)state;
  const char *s = "a; p=\"x,y\", b; q=\"\\\",\", c; r=\"open,";
  ws_slice list = {(const uint8_t *)s, strlen(s)}, el;
  assert_true(ws_list_next(&list, &el));
  assert_slice(el, "a; p=\"x,y\"");
  assert_true(ws_list_next(&list, &el));
  assert_slice(el, "b; q=\"\\\",\"");
  assert_true(ws_list_next(&list, &el)); /* unterminated: runs to the end */
  assert_slice(el, "c; r=\"open,");
  assert_false(ws_list_next(&list, &el));
}

static void list_has_token_and_slice_ieq(void **state) {
  (void)state;
  const char *s = "keep-alive, UPGRADE";
  ws_slice l = {(const uint8_t *)s, strlen(s)};
  assert_true(ws_list_has_token(l, "upgrade"));
  assert_true(ws_list_has_token(l, "Keep-Alive"));
  assert_false(ws_list_has_token(l, "upgrad"));
  assert_false(ws_list_has_token(l, "close"));
  ws_slice w = {(const uint8_t *)"WebSocket", 9};
  assert_true(ws_slice_ieq(w, "websocket"));
  assert_false(ws_slice_ieq(w, "websockets"));
  assert_false(ws_slice_ieq(w, NULL));
  assert_true(
      ws_ascii_ieq((const uint8_t *)"a-Z", 3, (const uint8_t *)"A-z", 3));
  /* only ASCII letters fold: '@' (0x40) is not '`' (0x60) */
  assert_false(ws_ascii_ieq((const uint8_t *)"@", 1, (const uint8_t *)"`", 1));
  /* ... nor the bytes just past 'Z'/'z' ('[' 0x5B, '{' 0x7B), nor a
   * non-ASCII pair 0x20 apart (Latin-1 A-grave, a-grave): the XOR test's
   * bounds */
  assert_false(ws_ascii_ieq((const uint8_t *)"[", 1, (const uint8_t *)"{", 1));
  assert_false(
      ws_ascii_ieq((const uint8_t *)"\xC0", 1, (const uint8_t *)"\xE0", 1));
  assert_true(ws_ascii_ieq((const uint8_t *)"Az", 2, (const uint8_t *)"aZ", 2));
}

/* ---- head framing ------------------------------------------------------- */

static void head_end_whole_and_trailing_data(void **state) {
  (void)state;
  const char *r = REQ_OK;
  size_t len = strlen(r);
  assert_int_equal(ws_hs_head_end((const uint8_t *)r, len, 0), len);
  /* frame bytes right behind the head are not part of it */
  char buf[512];
  memcpy(buf, r, len);
  memcpy(buf + len, "\x81\x85", 2);
  assert_int_equal(ws_hs_head_end((const uint8_t *)buf, len + 2, 0), len);
  /* not complete yet */
  assert_int_equal(ws_hs_head_end((const uint8_t *)r, len - 1, 0), 0);
  assert_int_equal(ws_hs_head_end((const uint8_t *)r, 0, 0), 0);
  const char *nohead = "GET / HTTP/1.1\r\nHost: x\r\n";
  assert_int_equal(ws_hs_head_end((const uint8_t *)nohead, strlen(nohead), 0),
                   0);
}

/* DESIGN: byte-at-a-time input behaves like one buffer. */
static void head_end_byte_by_byte(void **state) {
  (void)state;
  const char *r = REQ_OK;
  size_t len = strlen(r), scanned = 0, found = 0;
  for (size_t n = 1; n <= len; n++) {
    found = ws_hs_head_end((const uint8_t *)r, n, scanned);
    if (found) {
      assert_int_equal(n, len);
      break;
    }
    scanned = n;
  }
  assert_int_equal(found, len);
}

static void head_end_split_at_every_position(void **state) {
  (void)state;
  const char *r = REQ_OK;
  size_t len = strlen(r);
  for (size_t k = 0; k < len; k++) {
    assert_int_equal(ws_hs_head_end((const uint8_t *)r, k, 0), 0);
    assert_int_equal(ws_hs_head_end((const uint8_t *)r, len, k), len);
  }
  /* the CRLFCRLF straddling the previous scan end, each way */
  const char *t = "GET / HTTP/1.1\r\n\r\n";
  size_t tl = strlen(t);
  for (size_t k = tl - 4; k < tl; k++)
    assert_int_equal(ws_hs_head_end((const uint8_t *)t, tl, k), tl);
}

/* A bare-LF empty line also ends the head, so the parser can answer 400
 * at once instead of waiting for a CRLFCRLF that never comes. */
static void head_end_bare_lf_ends_head_then_400(void **state) {
  (void)state;
  const char *r = "GET /chat HTTP/1.1\nHost: x\n\n";
  size_t len = strlen(r);
  assert_int_equal(ws_hs_head_end((const uint8_t *)r, len, 0), len);
  assert_int_equal(req_status_n(r, len), 400);
}

/* ---- request parsing, RFC 6455 4.2.1 ----------------------------------- */

static void rfc6455_4_2_1_valid_request_fields(void **state) {
  (void)state;
  const char *r =
      "GET /chat?x=1&y HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_KEY H_ORIGIN
      "X-Pad:   spaced value \t \r\n" H_VER CRLF;
  ws_request req;
  ws_header h[MAXH];
  int status = 0;
  const char *why = NULL;
  assert_int_equal(ws_hs_parse_request(&req, h, MAXH, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   0);
  assert_slice(req.method, "GET");
  assert_slice(req.target, "/chat?x=1&y");
  assert_slice(req.path, "/chat");
  assert_slice(req.query, "x=1&y");
  assert_slice(req.host, "server.example.com");
  assert_slice(req.origin, "http://example.com");
  assert_slice(req.key, KEY_1_3);
  assert_int_equal(req.nheaders, 7);
  assert_ptr_equal(req.headers, h);
  assert_slice(req.headers[0].name, "Host");
  assert_slice(req.headers[5].name, "X-Pad");
  assert_slice(req.headers[5].value, "spaced value"); /* OWS trimmed */
}

static void rfc6455_4_2_1_no_origin_no_query(void **state) {
  (void)state;
  const char *r = RL H_HOST H_UPG H_CONN H_KEY H_VER CRLF;
  ws_request req;
  ws_header h[MAXH];
  int status = 0;
  const char *why = NULL;
  assert_int_equal(ws_hs_parse_request(&req, h, MAXH, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   0);
  assert_null(req.origin.base);
  assert_int_equal(req.origin.len, 0);
  assert_slice(req.path, "/chat");
  assert_int_equal(req.query.len, 0);
}

/* Header names compare case-insensitively (RFC 7230 3.2). */
static void rfc7230_3_2_header_names_case_insensitive(void **state) {
  (void)state;
  assert_int_equal(req_status(RL "host: a\r\nUPGRADE: websocket\r\n"
                                 "connection: upgrade\r\n"
                                 "sec-websocket-key: " KEY_1_3 "\r\n"
                                 "SEC-WEBSOCKET-VERSION: 13\r\n" CRLF),
                   0);
}

/* RFC 6455 4.2.1 (1): GET, HTTP/1.1 or higher */
static void rfc6455_4_2_1_method_post_405(void **state) {
  (void)state;
  assert_int_equal(
      req_status(
          "POST /chat HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_KEY H_VER CRLF),
      405);
  /* methods are case-sensitive, RFC 7230 3.1.1 */
  assert_int_equal(
      req_status("get /chat HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_KEY H_VER CRLF),
      405);
}

static void rfc6455_4_2_1_http_1_0_400(void **state) {
  (void)state;
  assert_int_equal(
      req_status("GET /chat HTTP/1.0\r\n" H_HOST H_UPG H_CONN H_KEY H_VER CRLF),
      400);
  assert_int_equal(
      req_status("GET /chat HTTP/0.9\r\n" H_HOST H_UPG H_CONN H_KEY H_VER CRLF),
      400);
}

static void rfc6455_4_2_1_higher_versions_ok(void **state) {
  (void)state;
  assert_int_equal(
      req_status("GET /chat HTTP/1.2\r\n" H_HOST H_UPG H_CONN H_KEY H_VER CRLF),
      0);
  assert_int_equal(
      req_status("GET /chat HTTP/2.0\r\n" H_HOST H_UPG H_CONN H_KEY H_VER CRLF),
      0);
}

/* RFC 7230 3.1.1: method SP request-target SP HTTP-version CRLF */
static void rfc7230_3_1_1_malformed_request_line_400(void **state) {
  (void)state;
  static const char *const lines[] = {
      "GET  /chat HTTP/1.1\r\n",
      "GET /chat  HTTP/1.1\r\n",
      "GET /chat\r\n",
      "GET /chat HTTP/1.1 x\r\n",
      "GET /chat HTTP/11\r\n",
      "GET /chat http/1.1\r\n",
      "GET /chat HTTP/1.1\n",
      " GET /chat HTTP/1.1\r\n",
      "GET\t/chat HTTP/1.1\r\n",
      "G(T /chat HTTP/1.1\r\n",
      "GET /ch\177at HTTP/1.1\r\n",
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "%s" H_HOST H_UPG H_CONN H_KEY H_VER CRLF, lines[i]);
    if (req_status_n(buf, (size_t)n) != 400)
      fail_msg("request line %zu not 400", i);
  }
  assert_int_equal(req_status_n("\r\n\r\n", 4), 400);
}

/* RFC 6455 4.2.1 (2): Host */
static void rfc6455_4_2_1_missing_host_400(void **state) {
  (void)state;
  assert_int_equal(req_status(RL H_UPG H_CONN H_KEY H_VER CRLF), 400);
}

static void rfc6455_4_2_1_duplicate_host_400(void **state) {
  (void)state;
  assert_int_equal(
      req_status(RL H_HOST
                 "Host: other.example\r\n" H_UPG H_CONN H_KEY H_VER CRLF),
      400);
}

/* RFC 6455 4.2.1 (3): Upgrade contains "websocket", ASCII case-insensitive */
static void rfc6455_4_2_1_upgrade_variants(void **state) {
  (void)state;
  assert_int_equal(
      req_status(RL H_HOST "Upgrade: WebSocket\r\n" H_CONN H_KEY H_VER CRLF),
      0);
  assert_int_equal(
      req_status(RL H_HOST
                 "Upgrade: foo, websocket\r\n" H_CONN H_KEY H_VER CRLF),
      0);
  assert_int_equal(
      req_status(
          RL H_HOST
          "Upgrade: foo\r\nUpgrade: websocket\r\n" H_CONN H_KEY H_VER CRLF),
      0);
  assert_int_equal(req_status(RL H_HOST H_CONN H_KEY H_VER CRLF), 400);
  assert_int_equal(
      req_status(RL H_HOST "Upgrade: websockets\r\n" H_CONN H_KEY H_VER CRLF),
      400);
  assert_int_equal(
      req_status(RL H_HOST "Upgrade: h2c\r\n" H_CONN H_KEY H_VER CRLF), 400);
  assert_int_equal(req_status(RL H_HOST "Upgrade:\r\n" H_CONN H_KEY H_VER CRLF),
                   400);
}

/* RFC 6455 4.2.1 (4): Connection contains "Upgrade" */
static void rfc6455_4_2_1_connection_variants(void **state) {
  (void)state;
  assert_int_equal(req_status(RL H_HOST H_UPG "Connection: keep-alive, Upgrade"
                                              "\r\n" H_KEY H_VER CRLF),
                   0);
  assert_int_equal(
      req_status(RL H_HOST H_UPG "Connection: upgrade\r\n" H_KEY H_VER CRLF),
      0);
  assert_int_equal(req_status(RL H_HOST H_UPG
                              "Connection: keep-alive\r\n"
                              "Connection: Upgrade\r\n" H_KEY H_VER CRLF),
                   0);
  assert_int_equal(req_status(RL H_HOST H_UPG H_KEY H_VER CRLF), 400);
  assert_int_equal(
      req_status(RL H_HOST H_UPG "Connection: keep-alive\r\n" H_KEY H_VER CRLF),
      400);
  assert_int_equal(
      req_status(RL H_HOST H_UPG "Connection: Upgrade-x\r\n" H_KEY H_VER CRLF),
      400);
}

/* RFC 6455 4.2.1 (5): one Sec-WebSocket-Key, base64 of exactly 16 bytes */
static void key_request(char *buf, size_t cap, const char *keyline) {
  int n = snprintf(buf, cap, RL H_HOST H_UPG H_CONN "%s" H_VER CRLF, keyline);
  assert_true(n > 0 && (size_t)n < cap);
}

static void rfc6455_4_2_1_key_lengths(void **state) {
  (void)state;
  uint8_t raw[17];
  memset(raw, 0xA5, sizeof(raw));
  for (size_t n = 14; n <= 17; n++) {
    char enc[32], line[64], buf[512];
    enc[ws_base64_encode(raw, n, enc)] = '\0';
    snprintf(line, sizeof(line), "Sec-WebSocket-Key: %s\r\n", enc);
    key_request(buf, sizeof(buf), line);
    assert_int_equal(req_status(buf), n == 16 ? 0 : 400);
  }
}

static void rfc6455_4_2_1_key_invalid_400(void **state) {
  (void)state;
  static const char *const keys[] = {
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",  /* length */
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=\r\n", /* alphabet */
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n", /* pad bits */
      "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n",
      "Sec-WebSocket-Key:\r\n",
      "",          /* missing */
      H_KEY H_KEY, /* duplicate */
      H_KEY "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
  };
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    char buf[512];
    key_request(buf, sizeof(buf), keys[i]);
    if (req_status(buf) != 400) fail_msg("key case %zu not 400", i);
  }
  /* surrounding OWS is not part of the value */
  char buf[512];
  key_request(buf, sizeof(buf), "Sec-WebSocket-Key: \t" KEY_1_3 " \r\n");
  assert_int_equal(req_status(buf), 0);
}

/* RFC 6455 4.2.1 (6) and 4.4: version 13, else 426 */
static void rfc6455_4_2_1_version_426(void **state) {
  (void)state;
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY CRLF), 426);
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY
                              "Sec-WebSocket-Version: 8\r\n" CRLF),
                   426);
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY
                              "Sec-WebSocket-Version: 13, 8\r\n" CRLF),
                   426);
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY H_VER
                              "Sec-WebSocket-Version: 8\r\n" CRLF),
                   426);
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY
                              "Sec-WebSocket-Version: 013\r\n" CRLF),
                   426);
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY
                              "Sec-WebSocket-Version:  13 \r\n" CRLF),
                   0);
}

/* RFC 6455 10.2: a repeated Origin is refused rather than guessed. */
static void rfc6455_10_2_duplicate_origin_400(void **state) {
  (void)state;
  assert_int_equal(req_status(RL H_HOST H_UPG H_CONN H_KEY H_ORIGIN
                              "Origin: http://evil.example\r\n" H_VER CRLF),
                   400);
}

/* RFC 7230 3.2 / 3.2.4: malformed header lines */
static void rfc7230_3_2_malformed_header_lines_400(void **state) {
  (void)state;
  static const char *const lines[] = {
      "NoColon\r\n",
      "Bad Name: x\r\n",
      "X-Space : x\r\n", /* 3.2.4: whitespace before colon */
      "X-Tab\t: x\r\n",
      ": empty-name\r\n",
      "X(paren): x\r\n",          /* not a token */
      "X-A: a\r\n continued\r\n", /* 3.2.4: obs-fold */
      "X-A: a\r\n\tcontinued\r\n",
      "X-A: bare-lf\n",
      "X-A: lone\rcr\r\n",
      "X-A: ctl\x01x\r\n",
      "X-A: del\x7fx\r\n",
      "X-\x80: x\r\n",
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     RL H_HOST "%s" H_UPG H_CONN H_KEY H_VER CRLF, lines[i]);
    if (req_status_n(buf, (size_t)n) != 400)
      fail_msg("header case %zu not 400", i);
  }
  /* obs-text in a value is allowed (RFC 7230 3.2.6) */
  assert_int_equal(
      req_status(RL H_HOST
                 "X-Utf8: caf\xc3\xa9\r\n" H_UPG H_CONN H_KEY H_VER CRLF),
      0);
}

static void rfc7230_3_2_nul_in_header_400(void **state) {
  (void)state;
  const char base[] =
      RL H_HOST "X-A: aXb\r\nX-Bc: v\r\n" H_UPG H_CONN H_KEY H_VER CRLF;
  char buf[sizeof(base)];
  size_t len = sizeof(base) - 1;
  const char *x = strstr(base, "aXb");
  memcpy(buf, base, sizeof(base));
  buf[x - base + 1] = '\0'; /* in a value */
  assert_int_equal(req_status_n(buf, len), 400);
  memcpy(buf, base, sizeof(base));
  buf[strstr(base, "X-Bc") - base + 2] = '\0'; /* in a name */
  assert_int_equal(req_status_n(buf, len), 400);
  memcpy(buf, base, sizeof(base));
  buf[strstr(base, "/chat") - base + 2] = '\0'; /* in the target */
  assert_int_equal(req_status_n(buf, len), 400);
}

/* max_headers bound -> 431 (RFC 6585 5) */
static void rfc6585_5_too_many_headers_431(void **state) {
  (void)state;
  const char *r = RL H_HOST H_UPG H_CONN H_KEY H_VER CRLF; /* 5 headers */
  ws_request req;
  ws_header h[5];
  int status = 0;
  const char *why = NULL;
  assert_int_equal(ws_hs_parse_request(&req, h, 5, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   0);
  assert_int_equal(ws_hs_parse_request(&req, h, 4, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   WS_ERR_HANDSHAKE);
  assert_int_equal(status, 431);
  assert_int_equal(ws_hs_parse_request(&req, h, 0, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   WS_ERR_HANDSHAKE);
  assert_int_equal(status, 431);
}

/* The head must end exactly at the empty line handed in. */
static void parse_request_needs_complete_head(void **state) {
  (void)state;
  const char *r = REQ_OK;
  size_t len = strlen(r);
  for (size_t k = 0; k < len; k++)
    if (req_status_n(r, k) != 400) fail_msg("prefix %zu accepted", k);
  char buf[512];
  memcpy(buf, r, len);
  buf[len] = 'x';
  assert_int_equal(req_status_n(buf, len + 1), 400);
}

/* ---- request accessors -------------------------------------------------- */

static void request_accessors(void **state) {
  (void)state;
  const char *r = RL H_HOST H_UPG H_CONN H_KEY
      "X-Multi: one\r\n"
      "Sec-WebSocket-Protocol: chat, superchat\r\n"
      "x-multi: two\r\n"
      "Sec-WebSocket-Protocol: ,v2.proto,\r\n"
      "Sec-WebSocket-Extensions: permessage-deflate; "
      "client_max_window_bits, x-ext; p=\"a,b\\\"c\"\r\n"
      "Sec-WebSocket-Extensions: y\r\n" H_VER CRLF;
  ws_request req;
  ws_header h[MAXH];
  int status = 0;
  const char *why = NULL;
  ws_slice v;
  assert_int_equal(ws_hs_parse_request(&req, h, MAXH, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   0);
  assert_true(ws_request_header(&req, "x-MULTI", 0, &v));
  assert_slice(v, "one");
  assert_true(ws_request_header(&req, "X-Multi", 1, &v));
  assert_slice(v, "two");
  assert_false(ws_request_header(&req, "X-Multi", 2, &v));
  assert_false(ws_request_header(&req, "X-None", 0, &v));

  assert_true(ws_request_protocol(&req, 0, &v));
  assert_slice(v, "chat");
  assert_true(ws_request_protocol(&req, 1, &v));
  assert_slice(v, "superchat");
  assert_true(ws_request_protocol(&req, 2, &v));
  assert_slice(v, "v2.proto");
  assert_false(ws_request_protocol(&req, 3, &v));

  assert_true(ws_request_extension(&req, 0, &v));
  assert_slice(v, "permessage-deflate; client_max_window_bits");
  assert_true(ws_request_extension(&req, 1, &v));
  assert_slice(v, "x-ext; p=\"a,b\\\"c\"");
  assert_true(ws_request_extension(&req, 2, &v));
  assert_slice(v, "y");
  assert_false(ws_request_extension(&req, 3, &v));
}

/* ---- 101 response, RFC 6455 4.2.2 --------------------------------------- */

static void parse_ok(ws_request *req, ws_header *h, const char *r) {
  int status = 0;
  const char *why = NULL;
  assert_int_equal(ws_hs_parse_request(req, h, MAXH, (const uint8_t *)r,
                                       strlen(r), &status, &why),
                   0);
}

static void rfc6455_4_2_2_accept_exact_bytes(void **state) {
  (void)state;
  ws_request req;
  ws_header h[MAXH];
  ws_mem mem = default_mem();
  ws_buf out = {0};
  parse_ok(&req, h, REQ_OK);
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, NULL, NULL, NULL, 0),
                   0);
  assert_buf(&out, "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: " ACCEPT_1_3 "\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

static void rfc6455_4_2_2_accept_with_subprotocol(void **state) {
  (void)state;
  ws_request req;
  ws_header h[MAXH];
  ws_mem mem = default_mem();
  ws_buf out = {0};
  parse_ok(&req, h, REQ_OK);
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, "chat", NULL, NULL, 0),
                   0);
  assert_buf(&out, "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: " ACCEPT_1_3 "\r\n"
                   "Sec-WebSocket-Protocol: chat\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

static void rfc6455_4_2_2_accept_with_extensions_and_headers(void **state) {
  (void)state;
  ws_request req;
  ws_header h[MAXH];
  ws_mem mem = default_mem();
  ws_buf out = {0};
  const ws_kv kv[] = {{"X-Server", "libws"}, {"Set-Cookie", "a=b; Path=/"}};
  parse_ok(&req, h, REQ_OK);
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, "superchat",
                                      "permessage-deflate", kv, 2),
                   0);
  assert_buf(&out, "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: " ACCEPT_1_3 "\r\n"
                   "Sec-WebSocket-Protocol: superchat\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                   "X-Server: libws\r\n"
                   "Set-Cookie: a=b; Path=/\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

/* Bad caller input leaves |out| untouched. */
static void accept_invalid_arguments_leave_out_unchanged(void **state) {
  (void)state;
  ws_request req;
  ws_header h[MAXH];
  ws_mem mem = default_mem();
  ws_buf out = {0};
  parse_ok(&req, h, REQ_OK);
  assert_int_equal(ws_buf_append(&out, &mem, "prior", 5), 0);
  const ws_kv bad[][1] = {
      {{"X-A", "a\r\nInjected: 1"}},
      {{"X-A", "a\nb"}},
      {{"X-A", "a\rb"}},
      {{"", "v"}},
      {{"Bad Name", "v"}},
      {{"X:", "v"}},
      {{NULL, "v"}},
      {{"X-A", NULL}},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (ws_hs_write_accept(&out, &mem, &req, NULL, NULL, bad[i], 1) !=
        WS_ERR_INVALID_ARGUMENT)
      fail_msg("bad header %zu accepted", i);
    assert_buf(&out, "prior");
  }
  /* RFC 6455 4.2.2: the subprotocol must be one the client offered */
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, "other", NULL, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, "Chat", NULL, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, "", NULL, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      ws_hs_write_accept(&out, &mem, &req, NULL, "x\r\ny", NULL, 0),
      WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, NULL, NULL, NULL, 1),
                   WS_ERR_INVALID_ARGUMENT);
  assert_buf(&out, "prior");
  ws_buf_free(&out, &mem);
}

/* Allocation failure: WS_ERR_NOMEM and the buffer unchanged. */
static void accept_nomem_leaves_out_unchanged(void **state) {
  (void)state;
  ws_request req;
  ws_header h[MAXH];
  tu_alloc a;
  ws_buf out = {0};
  parse_ok(&req, h, REQ_OK);
  tu_alloc_init(&a, 2);
  assert_int_equal(ws_buf_append(&out, &a.mem, "prior", 5), 0); /* call 1 */
  /* grow beyond the first 256 bytes so the write needs call 2 */
  char big[300];
  memset(big, 'v', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  const ws_kv kv[] = {{"X-Big", big}};
  assert_int_equal(ws_hs_write_accept(&out, &a.mem, &req, NULL, NULL, kv, 1),
                   WS_ERR_NOMEM);
  assert_buf(&out, "prior");
  assert_int_equal(ws_hs_write_reject(&out, &a.mem, 500, kv, 1, NULL, 0), 0);
  ws_buf_free(&out, &a.mem);
  assert_int_equal(a.live_blocks, 0);
}

/* Every refusal of ws_hs_parse_request() with its exact status and
 * reason: they come from tables (and the header names looked up from
 * the same strings), so each entry is pinned here. */
static void request_refusals_exact_status_and_reason(void **state) {
  (void)state;
  static const struct {
    const char *req;
    size_t maxh;
    int status;
    const char *why;
  } v[] = {
      {"GET  /chat HTTP/1.1\r\n" H_HOST CRLF, MAXH, 400,
       "malformed request line"},
      {"GET /chat HTTP/1.1 \r\n" H_HOST CRLF, MAXH, 400,
       "malformed request line"},
      {RL "X Y: z\r\n" CRLF, MAXH, 400, "malformed header field"},
      {RL H_HOST H_UPG CRLF, 1, 431, "too many header fields"},
      {RL H_HOST H_HOST CRLF, MAXH, 400, "duplicate Host"},
      {RL H_UPG CRLF, MAXH, 400, "missing Host"},
      {RL H_HOST H_ORIGIN H_ORIGIN CRLF, MAXH, 400, "duplicate Origin"},
      {"POST /chat HTTP/1.1\r\n" H_HOST CRLF, MAXH, 405, "method is not GET"},
      {"GET /chat HTTP/1.0\r\n" H_HOST CRLF, MAXH, 400,
       "HTTP/1.1 or higher required"},
      {RL "Host:\r\n" CRLF, MAXH, 400, "empty Host"},
      {RL H_HOST H_CONN H_KEY H_VER CRLF, MAXH, 400,
       "Upgrade: websocket missing"},
      {RL H_HOST H_UPG "Connection: keep-alive\r\n" H_KEY H_VER CRLF, MAXH, 400,
       "Connection: Upgrade missing"},
      {RL H_HOST H_UPG H_CONN "Content-Length: 5\r\n" H_KEY H_VER CRLF, MAXH,
       400, "request with a body"},
      {RL H_HOST H_UPG H_CONN "Transfer-Encoding: chunked\r\n" H_KEY H_VER CRLF,
       MAXH, 400, "request with a body"},
      {RL H_HOST H_UPG H_CONN H_VER CRLF, MAXH, 400,
       "missing Sec-WebSocket-Key"},
      {RL H_HOST H_UPG H_CONN H_KEY H_KEY H_VER CRLF, MAXH, 400,
       "duplicate Sec-WebSocket-Key"},
      {RL H_HOST H_UPG H_CONN "sec-websocket-key: AAAA\r\n" H_VER CRLF, MAXH,
       400, "invalid Sec-WebSocket-Key"},
      {RL H_HOST H_UPG H_CONN H_KEY CRLF, MAXH, 426,
       "Sec-WebSocket-Version must be 13"},
      {RL H_HOST H_UPG H_CONN H_KEY "SEC-WEBSOCKET-VERSION: 8\r\n" CRLF, MAXH,
       426, "Sec-WebSocket-Version must be 13"},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    ws_request req;
    ws_header h[MAXH];
    int status = -1;
    const char *why = NULL;
    assert_int_equal(ws_hs_parse_request(&req, h, v[i].maxh,
                                         (const uint8_t *)v[i].req,
                                         strlen(v[i].req), &status, &why),
                     WS_ERR_HANDSHAKE);
    assert_int_equal(status, v[i].status);
    assert_string_equal(why, v[i].why);
  }
  /* the same without room for the status and reason */
  ws_request req;
  ws_header h[MAXH];
  const char *r = RL H_HOST H_UPG H_CONN H_KEY CRLF;
  assert_int_equal(ws_hs_parse_request(&req, h, MAXH, (const uint8_t *)r,
                                       strlen(r), NULL, NULL),
                   WS_ERR_HANDSHAKE);
}

/* ---- error responses ---------------------------------------------------- */

/* RFC 6455 10.2: rejecting an unwanted Origin with 403 */
static void reject_403_with_body_exact_bytes(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  const ws_kv kv[] = {{"Content-Type", "text/plain"}};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 403, kv, 1, "origin", 6), 0);
  assert_buf(&out, "HTTP/1.1 403 Forbidden\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 6\r\n"
                   "Content-Type: text/plain\r\n"
                   "\r\n"
                   "origin");
  ws_buf_free(&out, &mem);
}

/* RFC 6455 4.4: a 426 names the supported version */
static void rfc6455_4_4_reject_426_carries_version(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 426, NULL, 0, NULL, 0), 0);
  assert_buf(&out, "HTTP/1.1 426 Upgrade Required\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 0\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

/* RFC 7231 6.5.5: a 405 carries Allow */
static void rfc7231_6_5_5_reject_405_allow_get(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 405, NULL, 0, NULL, 0), 0);
  assert_buf(&out, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 0\r\n"
                   "Allow: GET\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

static void reject_reason_phrases_and_ranges(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *line;
  } v[] = {
      {400, "HTTP/1.1 400 Bad Request\r\n"},
      {404, "HTTP/1.1 404 Not Found\r\n"},
      {429, "HTTP/1.1 429 Too Many Requests\r\n"},
      {431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
      {500, "HTTP/1.1 500 Internal Server Error\r\n"},
      {503, "HTTP/1.1 503 Service Unavailable\r\n"},
      {499, "HTTP/1.1 499 Error\r\n"},
      {599, "HTTP/1.1 599 Error\r\n"},
  };
  ws_mem mem = default_mem();
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    ws_buf out = {0};
    assert_int_equal(
        ws_hs_write_reject(&out, &mem, v[i].status, NULL, 0, NULL, 0), 0);
    assert_true(ws_buf_size(&out) > strlen(v[i].line));
    assert_memory_equal(out.base, v[i].line, strlen(v[i].line));
    ws_buf_free(&out, &mem);
  }
  ws_buf out = {0};
  const ws_kv bad[] = {{"X", "a\r\nb"}};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 99, NULL, 0, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_hs_write_reject(&out, &mem, 600, NULL, 0, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_hs_write_reject(&out, &mem, 400, bad, 1, NULL, 0),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_hs_write_reject(&out, &mem, 400, NULL, 0, NULL, 3),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_buf_size(&out), 0);
  /* a body long enough for a multi-digit Content-Length */
  char body[12345];
  memset(body, 'b', sizeof(body));
  assert_int_equal(
      ws_hs_write_reject(&out, &mem, 400, NULL, 0, body, sizeof(body)), 0);
  const char *head = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                     "Content-Length: 12345\r\n\r\n";
  assert_int_equal(ws_buf_size(&out), strlen(head) + sizeof(body));
  assert_memory_equal(out.base, head, strlen(head));
  ws_buf_free(&out, &mem);
}

/* The status line of every status with a reason phrase, and of some
 * without (below 400 "Status", else "Error"). */
static void reject_every_reason_phrase_exact(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *phrase;
  } v[] = {
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {204, "No Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {426, "Upgrade Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {100, "Status"},
      {199, "Status"},
      {203, "Status"},
      {305, "Status"},
      {399, "Status"},
      {402, "Error"},
      {406, "Error"},
      {430, "Error"},
      {505, "Error"},
      {599, "Error"},
  };
  ws_mem mem = default_mem();
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    ws_buf out = {0};
    char line[80];
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\nConnection: close\r\n",
             v[i].status, v[i].phrase);
    assert_int_equal(
        ws_hs_write_response(&out, &mem, v[i].status, NULL, 0, NULL, 0, 0), 0);
    assert_true(ws_buf_size(&out) > strlen(line));
    assert_memory_equal(out.base, line, strlen(line));
    ws_buf_free(&out, &mem);
  }
}

/* Content-Length in decimal at every digit count up to SIZE_MAX (the
 * body left out, as for HEAD), and the port in Host. */
static void response_and_request_decimal_numbers(void **state) {
  (void)state;
  static const size_t lens[] = {
      0, 9, 10, 99, 100, 65535, 1000000, 4294967295u, SIZE_MAX - 1, SIZE_MAX};
  ws_mem mem = default_mem();
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    ws_buf out = {0};
    char want[128];
    snprintf(want, sizeof(want),
             "HTTP/1.1 204 No Content\r\nConnection: close\r\n"
             "Content-Length: %zu\r\n\r\n",
             lens[i]);
    assert_int_equal(
        ws_hs_write_response(&out, &mem, 204, NULL, 0, "x", lens[i], 1), 0);
    assert_buf(&out, want);
    ws_buf_free(&out, &mem);
  }
  static const uint16_t ports[] = {1, 9, 10, 80, 443, 8080, 65535};
  for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
    ws_buf out = {0};
    ws_client_params p = {0};
    char want[64];
    p.host = "h";
    p.port = ports[i];
    snprintf(want, sizeof(want), "GET / HTTP/1.1\r\nHost: h:%u\r\n",
             (unsigned)ports[i]);
    assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL), 0);
    assert_true(ws_buf_size(&out) > strlen(want));
    assert_memory_equal(out.base, want, strlen(want));
    ws_buf_free(&out, &mem);
  }
}

/* A caller's own Allow (405) or Sec-WebSocket-Version (426), in any case,
 * replaces the default line; a longer name does not. */
static void reject_caller_allow_and_version_replace_defaults(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  const ws_kv allow[] = {{"allow", "GET, HEAD"}};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 405, allow, 1, NULL, 0), 0);
  assert_buf(&out, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 0\r\n"
                   "allow: GET, HEAD\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
  const ws_kv allowed[] = {{"Allowed", "x"}};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 405, allowed, 1, NULL, 0), 0);
  assert_buf(&out, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 0\r\n"
                   "Allow: GET\r\n"
                   "Allowed: x\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
  const ws_kv ver[] = {{"SEC-WEBSOCKET-VERSION", "13, 8"}};
  assert_int_equal(ws_hs_write_reject(&out, &mem, 426, ver, 1, "v", 1), 0);
  assert_buf(&out, "HTTP/1.1 426 Upgrade Required\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 1\r\n"
                   "SEC-WEBSOCKET-VERSION: 13, 8\r\n"
                   "\r\n"
                   "v");
  ws_buf_free(&out, &mem);
  /* the other default only goes with its own status */
  assert_int_equal(ws_hs_write_reject(&out, &mem, 405, ver, 1, NULL, 0), 0);
  assert_buf(&out, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 0\r\n"
                   "Allow: GET\r\n"
                   "SEC-WEBSOCKET-VERSION: 13, 8\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

/* ---- client request, RFC 6455 4.1 -------------------------------------- */

static void rfc6455_4_1_client_request_exact_bytes(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  const char *protos[] = {"chat", "superchat"};
  const ws_kv kv[] = {{"User-Agent", "libws-test"}};
  ws_client_params p = {0};
  p.host = "server.example.com";
  p.port = 8080;
  p.path = "/chat?x=1";
  p.origin = "http://example.com";
  p.protocols = protos;
  p.nprotocols = 2;
  p.headers = kv;
  p.nheaders = 1;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3,
                                       "permessage-deflate; "
                                       "client_max_window_bits"),
                   0);
  assert_buf(&out, "GET /chat?x=1 HTTP/1.1\r\n"
                   "Host: server.example.com:8080\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " KEY_1_3 "\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "Origin: http://example.com\r\n"
                   "Sec-WebSocket-Protocol: chat, superchat\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate; "
                   "client_max_window_bits\r\n"
                   "User-Agent: libws-test\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

static void rfc6455_4_1_client_request_minimal(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  ws_client_params p = {0};
  p.host = "h";
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL), 0);
  assert_buf(&out, "GET / HTTP/1.1\r\n"
                   "Host: h\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " KEY_1_3 "\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "\r\n");
  ws_buf_free(&out, &mem);
}

static void rfc6455_4_1_client_request_invalid(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  const char *bad_proto[] = {"chat", "two words"};
  const char *empty_proto[] = {""};
  const ws_kv bad_kv[] = {{"X", "a\r\nb"}};
  ws_client_params p = {0};
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT); /* no host */
  p.host = "";
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.host = "a\r\nX-Injected: 1";
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.host = "ok";
  p.path = "/a b";
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.path = "/";
  p.origin = "http://x\r\n";
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.origin = NULL;
  p.protocols = bad_proto; /* RFC 6455 4.1 (10): tokens only */
  p.nprotocols = 2;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.protocols = empty_proto;
  p.nprotocols = 1;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.protocols = NULL;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.nprotocols = 0;
  p.headers = bad_kv;
  p.nheaders = 1;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.headers = NULL;
  p.nheaders = 0;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, "a\nb"),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_buf_size(&out), 0);
  ws_buf_free(&out, &mem);
}

/* ---- client response, RFC 6455 4.1 (the client's checks) --------------- */

#define R101 "HTTP/1.1 101 Switching Protocols\r\n"
#define RH_UPG "Upgrade: websocket\r\n"
#define RH_CONN "Connection: Upgrade\r\n"
#define RH_ACC "Sec-WebSocket-Accept: " ACCEPT_1_3 "\r\n"

/* The extension line the connection took before ws_hs_check_response()
 * told it: the first Sec-WebSocket-Extensions header that lists
 * something. */
static ws_slice ext_line(const ws_response *r) {
  ws_slice none = {NULL, 0};
  for (size_t i = 0; i < r->nheaders; i++) {
    ws_slice list = r->headers[i].value, el;
    if (ws_slice_ieq(r->headers[i].name, "Sec-WebSocket-Extensions") &&
        ws_list_next(&list, &el))
      return r->headers[i].value;
  }
  return none;
}

static int same_slice(ws_slice a, ws_slice b) {
  return a.base == b.base && a.len == b.len;
}

/* ws_hs_check_response() against ws_hs_parse_response() then
 * ws_hs_validate_response() (the two steps the connection took before):
 * the same code, reason and response, headers and all, and the extension
 * line the connection then looked for. Returns the code. */
static int check_resp_both(const uint8_t *buf, size_t len, size_t maxh,
                           ws_slice off, int ext_offered) {
  ws_response r1, r2;
  ws_header h1[MAXH], h2[MAXH];
  const char *why1 = NULL, *why2 = NULL;
  ws_slice ext = {(const uint8_t *)"x", 1};
  int rv1 = ws_hs_parse_response(&r1, h1, maxh, buf, len);
  int parsed = rv1 == 0;
  if (parsed)
    rv1 = ws_hs_validate_response(&r1, KEY_1_3, off, ext_offered, &why1);
  else
    why1 = "malformed response";
  int rv2 = ws_hs_check_response(&r2, h2, maxh, buf, len, KEY_1_3, off,
                                 ext_offered, &why2, &ext);
  if (rv1 != rv2 || (rv1 && strcmp(why1, why2) != 0)) {
    fprintf(stderr, "two steps: %d %s, one: %d %s, response:\n%.*s\n", rv1,
            rv1 ? why1 : "", rv2, rv2 ? why2 : "", (int)len,
            (const char *)buf);
    fail_msg("ws_hs_check_response() decides otherwise");
  }
  if (!parsed) return rv2;
  int same = r1.status == r2.status && same_slice(r1.reason, r2.reason) &&
             same_slice(r1.protocol, r2.protocol) &&
             same_slice(r1.extensions, r2.extensions) &&
             r1.nheaders == r2.nheaders && r1.headers == h1 &&
             r2.headers == h2;
  for (size_t i = 0; same && i < r1.nheaders; i++)
    same = same_slice(h1[i].name, h2[i].name) &&
           same_slice(h1[i].value, h2[i].value);
  if (!same) fail_msg("ws_hs_check_response() fills the response otherwise");
  if (rv2 == 0 && !same_slice(ext, ext_line(&r1)))
    fail_msg("ws_hs_check_response() gives another extension line");
  return rv2;
}

static int check_resp(const char *r, const char *offered, int ext_offered,
                      ws_response *presp) {
  ws_response resp;
  ws_header h[MAXH];
  const char *why = NULL;
  size_t len = strlen(r);
  assert_int_equal(ws_hs_head_end((const uint8_t *)r, len, 0), len);
  ws_slice off = {(const uint8_t *)offered, offered ? strlen(offered) : 0};
  int both = check_resp_both((const uint8_t *)r, len, MAXH, off, ext_offered);
  int rv = ws_hs_parse_response(&resp, h, MAXH, (const uint8_t *)r, len);
  if (rv) {
    assert_int_equal(both, rv);
    return rv;
  }
  rv = ws_hs_validate_response(&resp, KEY_1_3, off, ext_offered, &why);
  if (rv) assert_non_null(why);
  assert_int_equal(both, rv);
  if (presp) *presp = resp; /* slices point into |r|; headers not kept */
  return rv;
}

static void rfc6455_4_1_response_valid(void **state) {
  (void)state;
  ws_response resp;
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC CRLF, NULL, 0, &resp),
                   0);
  assert_int_equal(resp.status, 101);
  assert_slice(resp.reason, "Switching Protocols");
  assert_int_equal(resp.protocol.len, 0);
  assert_int_equal(resp.extensions.len, 0);
  assert_int_equal(resp.nheaders, 3);
  /* case-insensitive tokens, list forms, no reason phrase */
  assert_int_equal(check_resp("HTTP/1.1 101\r\nupgrade: WebSocket\r\n"
                              "connection: keep-alive, upgrade\r\n" RH_ACC CRLF,
                              NULL, 0, NULL),
                   0);
  assert_int_equal(
      check_resp("HTTP/1.1 101 \r\n" RH_UPG RH_CONN RH_ACC CRLF, NULL, 0, NULL),
      0);
}

static void rfc6455_4_1_response_subprotocol(void **state) {
  (void)state;
  ws_response resp;
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Protocol: superchat\r\n" CRLF,
                              "chat, superchat", 0, &resp),
                   0);
  assert_slice(resp.protocol, "superchat");
  /* not offered */
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Protocol: other\r\n" CRLF,
                              "chat, superchat", 0, NULL),
                   WS_ERR_HANDSHAKE);
  /* a prefix of an offered one */
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Protocol: super\r\n" CRLF,
                              "chat, superchat", 0, NULL),
                   WS_ERR_HANDSHAKE);
  /* none offered */
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Protocol: chat\r\n" CRLF,
                              NULL, 0, NULL),
                   WS_ERR_HANDSHAKE);
  /* more than one selected */
  assert_int_equal(
      check_resp(R101 RH_UPG RH_CONN RH_ACC
                 "Sec-WebSocket-Protocol: chat, superchat\r\n" CRLF,
                 "chat, superchat", 0, NULL),
      WS_ERR_HANDSHAKE);
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Protocol: chat\r\n"
                              "Sec-WebSocket-Protocol: chat\r\n" CRLF,
                              "chat, superchat", 0, NULL),
                   WS_ERR_HANDSHAKE);
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Protocol:\r\n" CRLF,
                              "chat, superchat", 0, NULL),
                   WS_ERR_HANDSHAKE);
}

static void rfc6455_4_1_response_extensions(void **state) {
  (void)state;
  ws_response resp;
  const char *r = R101 RH_UPG RH_CONN RH_ACC
      "Sec-WebSocket-Extensions: permessage-deflate; "
      "server_no_context_takeover\r\n" CRLF;
  assert_int_equal(check_resp(r, NULL, 0, NULL), WS_ERR_HANDSHAKE);
  assert_int_equal(check_resp(r, NULL, 1, &resp), 0);
  assert_slice(resp.extensions,
               "permessage-deflate; server_no_context_takeover");
  /* an empty header is no extension */
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Extensions:\r\n" CRLF,
                              NULL, 0, NULL),
                   0);
  /* split across two lines cannot be handed on as one slice */
  assert_int_equal(check_resp(R101 RH_UPG RH_CONN RH_ACC
                              "Sec-WebSocket-Extensions: a\r\n"
                              "Sec-WebSocket-Extensions: b\r\n" CRLF,
                              NULL, 1, NULL),
                   WS_ERR_HANDSHAKE);
}

static void rfc6455_4_1_response_status_not_101_rejected(void **state) {
  (void)state;
  ws_response resp;
  assert_int_equal(check_resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" CRLF,
                              NULL, 0, &resp),
                   WS_ERR_REJECTED);
  assert_int_equal(resp.status, 200);
  assert_slice(resp.reason, "OK");
  assert_int_equal(
      check_resp("HTTP/1.1 403 Forbidden\r\n" RH_UPG RH_CONN RH_ACC CRLF, NULL,
                 0, NULL),
      WS_ERR_REJECTED);
}

static void rfc6455_4_1_response_bad_upgrade_connection_accept(void **state) {
  (void)state;
  static const char *const bad[] = {
      R101 RH_CONN RH_ACC CRLF, /* no Upgrade */
      R101 "Upgrade: h2c\r\n" RH_CONN RH_ACC CRLF,
      R101 RH_UPG RH_ACC CRLF, /* no Connection */
      R101 RH_UPG "Connection: close\r\n" RH_ACC CRLF,
      R101 RH_UPG RH_CONN CRLF,               /* no Accept */
      R101 RH_UPG RH_CONN RH_ACC RH_ACC CRLF, /* repeated */
      R101 RH_UPG RH_CONN
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOp=\r\n" CRLF,
      R101 RH_UPG RH_CONN
      "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n" CRLF,
      R101 RH_UPG RH_CONN
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=x\r\n" CRLF,
      R101 RH_UPG RH_CONN "Sec-WebSocket-Accept: " KEY_1_3 "\r\n" CRLF,
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (check_resp(bad[i], NULL, 0, NULL) != WS_ERR_HANDSHAKE)
      fail_msg("response %zu accepted", i);
}

static void rfc7230_3_1_2_response_malformed(void **state) {
  (void)state;
  static const char *const bad[] = {
      "HTTP/1.0 101 Switching Protocols\r\n" RH_UPG RH_CONN RH_ACC CRLF,
      "HTTP/1.1 1011 X\r\n" RH_UPG RH_CONN RH_ACC CRLF,
      "HTTP/1.1 10 X\r\n" RH_UPG RH_CONN RH_ACC CRLF,
      "HTTP/1.1  101 X\r\n" RH_UPG RH_CONN RH_ACC CRLF,
      "HTTP/1.1 101 X\r\n"
      "Upgrade : websocket\r\n" RH_CONN RH_ACC CRLF,
      "HTTP/1.1 101 X\r\n" RH_UPG " folded\r\n" RH_CONN RH_ACC CRLF,
      "ICY 200 OK\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ws_response resp;
    ws_header h[MAXH];
    const char *why = NULL;
    ws_slice off = {NULL, 0}, ext;
    if (ws_hs_parse_response(&resp, h, MAXH, (const uint8_t *)bad[i],
                             strlen(bad[i])) != WS_ERR_HANDSHAKE)
      fail_msg("response %zu parsed", i);
    assert_int_equal(ws_hs_check_response(&resp, h, MAXH,
                                          (const uint8_t *)bad[i],
                                          strlen(bad[i]), KEY_1_3, off, 1,
                                          &why, &ext),
                     WS_ERR_HANDSHAKE);
    assert_string_equal(why, "malformed response");
  }
  /* max_headers */
  const char *r = R101 RH_UPG RH_CONN RH_ACC CRLF;
  ws_response resp;
  ws_header h[3];
  assert_int_equal(
      ws_hs_parse_response(&resp, h, 3, (const uint8_t *)r, strlen(r)), 0);
  assert_int_equal(
      ws_hs_parse_response(&resp, h, 2, (const uint8_t *)r, strlen(r)),
      WS_ERR_HANDSHAKE);
}

/* ---- caller strings the writers check --------------------------------- */

/* The classes, as RFC 7230 has them: a token (3.2.6), a header value's
 * bytes (3.2: HTAB, SP, VCHAR, obs-text), a request-target's or host's
 * (visible, no SP). */
static int oracle_token(const char *s) {
  if (!s || !*s) return 0;
  for (; *s; s++)
    if (!ws_is_tchar((uint8_t)*s)) return 0;
  return 1;
}
static int oracle_value(const char *s) {
  if (!s) return 0;
  for (; *s; s++) {
    uint8_t c = (uint8_t)*s;
    if (!(c == '\t' || (c >= 0x20 && c != 0x7f))) return 0;
  }
  return 1;
}
static int oracle_target(const char *s) {
  if (!s || !*s) return 0;
  for (; *s; s++) {
    uint8_t c = (uint8_t)*s;
    if (c <= 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

/* Every byte in every caller string of the three writers: refused
 * (WS_ERR_INVALID_ARGUMENT, nothing written) exactly where the class does
 * not take it, and NULLs where a string is due. */
static void writers_check_caller_strings_exact(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  ws_buf out = {0};
  ws_request req;
  ws_header h[MAXH];
  int st;
  const char *why;
  const char *r = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY_1_3 "\r\n"
                  "Sec-WebSocket-Protocol: chat\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n";
  assert_int_equal(ws_hs_parse_request(&req, h, MAXH, (const uint8_t *)r,
                                       strlen(r), &st, &why),
                   0);
  for (int c = 0; c < 256; c++) {
    char str[4] = {'a', (char)c, 'b', 0};
    if (c == 0) str[1] = 0; /* "a": the string ends there */
    for (int where = 0; where < 9; where++) {
      ws_client_params p = {0};
      const char *protos[2] = {"chat", str};
      ws_kv kv[2] = {{"X-A", "1"}, {"X-B", "2"}};
      const char *ext = NULL;
      int ok;
      p.host = "h";
      switch (where) {
      case 0: p.host = str; ok = oracle_target(str); break;
      case 1: p.path = str; ok = oracle_target(str); break;
      case 2: p.origin = str; ok = oracle_value(str); break;
      case 3:
        p.protocols = protos;
        p.nprotocols = 2;
        ok = oracle_token(str);
        break;
      case 4: ext = str; ok = oracle_value(str); break;
      case 5:
        kv[1].name = str;
        p.headers = kv;
        p.nheaders = 2;
        ok = oracle_token(str);
        break;
      case 6:
        kv[1].value = str;
        p.headers = kv;
        p.nheaders = 2;
        ok = oracle_value(str);
        break;
      default: continue;
      }
      int rv = ws_hs_write_request(&out, &mem, &p, KEY_1_3, ext);
      if (rv != (ok ? 0 : WS_ERR_INVALID_ARGUMENT))
        fail_msg("request, place %d, byte %d: %d", where, c, rv);
      if (!ok) assert_int_equal(ws_buf_size(&out), 0);
      ws_buf_clear_keep(&out, &mem, 0);
      /* the 101: protocol, extensions, headers */
      const char *proto = NULL;
      ext = NULL;
      const ws_kv *hk = NULL;
      size_t nk = 0;
      switch (where) {
      case 4: ext = str; ok = oracle_value(str); break;
      case 5:
      case 6: hk = kv; nk = 2; break;
      default: ok = 1; break;
      }
      if (where == 3) {
        proto = str; /* not offered (only "chat" is): refused either way */
        ok = 0;
      }
      rv = ws_hs_write_accept(&out, &mem, &req, proto, ext, hk, nk);
      if (rv != (ok ? 0 : WS_ERR_INVALID_ARGUMENT))
        fail_msg("accept, place %d, byte %d: %d", where, c, rv);
      if (!ok) assert_int_equal(ws_buf_size(&out), 0);
      ws_buf_clear_keep(&out, &mem, 0);
      if (where == 5 || where == 6) {
        rv = ws_hs_write_response(&out, &mem, 426, kv, 2, "x", 1, 0);
        if (rv != (ok ? 0 : WS_ERR_INVALID_ARGUMENT))
          fail_msg("response, place %d, byte %d: %d", where, c, rv);
        if (!ok) assert_int_equal(ws_buf_size(&out), 0);
        ws_buf_clear_keep(&out, &mem, 0);
      }
    }
  }
  /* NULLs where a string or array is due */
  ws_client_params p = {0};
  const char *nullproto[2] = {"chat", NULL};
  ws_kv nullname[1] = {{NULL, "v"}}, nullvalue[1] = {{"N", NULL}};
  p.host = "h";
  p.protocols = nullproto;
  p.nprotocols = 2;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.nprotocols = 0;
  p.nheaders = 1;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT); /* headers NULL */
  p.headers = nullname;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  p.headers = nullvalue;
  assert_int_equal(ws_hs_write_request(&out, &mem, &p, KEY_1_3, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  for (int k = 0; k < 3; k++) {
    const ws_kv *kv = k == 0 ? NULL : k == 1 ? nullname : nullvalue;
    assert_int_equal(ws_hs_write_accept(&out, &mem, &req, NULL, NULL, kv, 1),
                     WS_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        ws_hs_write_response(&out, &mem, 405, kv, 1, NULL, 0, 0),
        WS_ERR_INVALID_ARGUMENT);
  }
  assert_int_equal(ws_buf_size(&out), 0);
  /* a valid subprotocol is written */
  assert_int_equal(ws_hs_write_accept(&out, &mem, &req, "chat", NULL, NULL, 0),
                   0);
  {
    /* (the buffer holds no NUL: searched by length) */
    static const char want[] = "\r\nSec-WebSocket-Protocol: chat\r\n";
    int found = 0;
    for (size_t i = 0; !found && i + sizeof(want) - 1 <= out.len; i++)
      found = memcmp(out.base + i, want, sizeof(want) - 1) == 0;
    assert_true(found);
  }
  ws_buf_free(&out, &mem);
}

/* ---- the one-pass response check against the two steps ---------------- */

/* check_resp_both() over every offer and extension choice, with room for
 * every header and for two. */
static void check_resp_all(const uint8_t *buf, size_t len) {
  static const char *const offers[] = {"", "chat", "chat, superchat",
                                       "superchat,\"chat\""};
  size_t end = ws_hs_head_end(buf, len, 0);
  if (!end) return;
  for (size_t o = 0; o < sizeof(offers) / sizeof(offers[0]); o++) {
    ws_slice off = {(const uint8_t *)offers[o], strlen(offers[o])};
    for (int ext = 0; ext <= 1; ext++) {
      (void)check_resp_both(buf, end, MAXH, off, ext);
      (void)check_resp_both(buf, end, 2, off, ext);
    }
  }
}

/* Runs |fn| over every file of fuzz/corpus/NAME, and over it from every
 * line start; returns the number of files, or -1 if the directory is not
 * found. */
static long for_corpus(const char *name,
                       void (*fn)(const uint8_t *buf, size_t len)) {
  /* the source tree from this file's name (as the compiler was given it,
   * absolute or from the build directory), else from the current one */
  char dir[4096];
  const char *file = __FILE__, *slash = strrchr(file, '/');
  const char *tries[3] = {NULL, "../fuzz/corpus", "fuzz/corpus"};
  DIR *d = NULL;
  for (int t = 0; t < 3 && !d; t++) {
    if (t == 0 && slash)
      snprintf(dir, sizeof(dir), "%.*s/../fuzz/corpus/%s", (int)(slash - file),
               file, name);
    else if (t > 0)
      snprintf(dir, sizeof(dir), "%s/%s", tries[t], name);
    else
      continue;
    d = opendir(dir);
  }
  if (!d) return -1;
  long files = 0;
  struct dirent *e;
  static uint8_t data[1 << 16];
  while ((e = readdir(d)) != NULL) {
    char path[8192];
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    files++;
    fn(data, n);
    /* and from every line start, so that heads inside other targets'
     * inputs are read too */
    for (size_t i = 1; i < n; i++)
      if (data[i - 1] == '\n') fn(data + i, n - i);
  }
  closedir(d);
  return files;
}

/* Runs |fn| as for_corpus() over every fuzz target's corpus; returns the
 * number of files (the test fails if no corpus is found). */
static long for_corpora(void (*fn)(const uint8_t *buf, size_t len)) {
  static const char *const corpora[] = {
      "fuzz_handshake_resp", "fuzz_conn_client", "fuzz_handshake_req",
      "fuzz_conn_server",    "fuzz_loop",        "fuzz_frame",
      "fuzz_pmd",            "fuzz_utf8",        "fuzz_inflate",
      "fuzz_deflate"};
  long files = 0, found = 0;
  for (size_t c = 0; c < sizeof(corpora) / sizeof(corpora[0]); c++) {
    long n = for_corpus(corpora[c], fn);
    if (n >= 0) {
      files += n;
      found++;
    }
  }
  if (found == 0) fail_msg("fuzz/corpus not found from %s", __FILE__);
  return files;
}

static void response_check_one_pass_same_as_two_steps(void **state) {
  (void)state;
  /* generated: status lines, a base of header lines, up to two more */
  static const char *const status[] = {
      "HTTP/1.1 101 Switching Protocols\r\n", "HTTP/1.1 101\r\n",
      "HTTP/1.1 200 OK\r\n", "HTTP/1.0 101 X\r\n", "HTTP/1.1 1011\r\n"};
  static const char *const base[] = {
      "", RH_UPG RH_CONN RH_ACC, RH_ACC "connection: keep-alive, UPGRADE\r\n"
      "Upgrade: h2c\r\nupgrade: WebSocket\r\n"};
  static const char *const line[] = {
      RH_UPG, "Upgrade: h2c, websocket\r\n", "Upgrade:\r\n",
      RH_CONN, "Connection: close\r\n", "Connection: \"Upgrade\"\r\n",
      RH_ACC, "Sec-WebSocket-Accept: x\r\n",
      "sec-websocket-accept: \t" ACCEPT_1_3 " \r\n",
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOp=\r\n",
      "Sec-WebSocket-Extensions: permessage-deflate\r\n",
      "Sec-WebSocket-Extensions:\r\n", "Sec-WebSocket-Extensions: , ,\t,\r\n",
      "sec-websocket-extensions: a, b\r\n",
      "Sec-WebSocket-Extensions: \",\"\r\n",
      "Sec-WebSocket-Protocol: chat\r\n", "Sec-WebSocket-Protocol: superchat\r\n",
      "Sec-WebSocket-Protocol:\r\n", "Sec-WebSocket-Protocol: chat, x\r\n",
      "sec-websocket-protocol: Chat\r\n",
      "Sec-WebSocket-Protocol: \"chat\"\r\n",
      "Sec-WebSocket-Protocols: chat\r\n", "X-Upgrade: websocket\r\n",
      "Sec-WebSocket-Extension: a\r\n", "Content-Length: 0\r\n",
      "Upgrade : websocket\r\n", " folded\r\n", "Bad\rLine: x\r\n"};
  const size_t nl = sizeof(line) / sizeof(line[0]);
  char buf[1024];
  long heads = 0;
  for (size_t s = 0; s < sizeof(status) / sizeof(status[0]); s++)
    for (size_t b = 0; b < sizeof(base) / sizeof(base[0]); b++)
      for (size_t i = 0; i <= nl; i++)
        for (size_t j = 0; j <= nl; j++) {
          if (i == nl && j < nl) continue; /* (one extra line: j alone) */
          int n = snprintf(buf, sizeof(buf), "%s%s%s%s\r\n", status[s],
                           base[b], i < nl ? line[i] : "",
                           j < nl ? line[j] : "");
          assert_true(n > 0 && (size_t)n < sizeof(buf));
          check_resp_all((const uint8_t *)buf, (size_t)n);
          heads++;
        }
  assert_true(heads > 4000);
  /* every fuzz corpus: what the fuzzers kept, and heads inside it */
  fprintf(stderr, "checked %ld generated heads, %ld corpus files\n", heads,
          for_corpora(check_resp_all));
}

/* ---- the one-pass request check against the steps ---------------------- */

static int same_req(const ws_request *a, const ws_request *b) {
  return same_slice(a->method, b->method) && same_slice(a->target, b->target) &&
         same_slice(a->path, b->path) && same_slice(a->query, b->query) &&
         same_slice(a->host, b->host) && same_slice(a->origin, b->origin) &&
         same_slice(a->key, b->key) && a->version == b->version &&
         a->nheaders == b->nheaders;
}

/* ws_hs_check_request() against ws_hs_parse_http(), ws_hs_is_upgrade()
 * (with |http|) and ws_hs_validate_upgrade(), as the connection called
 * them before: the same result, status, reason and request. */
static void check_req_both(const uint8_t *buf, size_t len, size_t maxh,
                           int http) {
  ws_request r1, r2;
  ws_header h1[MAXH], h2[MAXH];
  int st1 = -1, st2 = -1;
  const char *why1 = NULL, *why2 = NULL;
  int rv1 = ws_hs_parse_http(&r1, h1, maxh, buf, len, &st1, &why1);
  int parsed = rv1 == 0;
  if (parsed) {
    if (http && !ws_hs_is_upgrade(&r1))
      rv1 = 1;
    else
      rv1 = ws_hs_validate_upgrade(&r1, &st1, &why1);
  }
  int rv2 = ws_hs_check_request(&r2, h2, maxh, buf, len, http, &st2, &why2);
  if (rv1 != rv2 || (rv1 < 0 && (st1 != st2 || strcmp(why1, why2) != 0))) {
    fprintf(stderr, "steps: %d %d %s, one: %d %d %s, request:\n%.*s\n", rv1,
            st1, rv1 < 0 ? why1 : "", rv2, st2, rv2 < 0 ? why2 : "",
            (int)len, (const char *)buf);
    fail_msg("ws_hs_check_request() decides otherwise");
  }
  if (rv1 < 0) return;
  int same = same_req(&r1, &r2) && r1.headers == h1 && r2.headers == h2;
  for (size_t i = 0; same && i < r1.nheaders; i++)
    same = same_slice(h1[i].name, h2[i].name) &&
           same_slice(h1[i].value, h2[i].value);
  if (!same) fail_msg("ws_hs_check_request() fills the request otherwise");
}

static void check_req_all(const uint8_t *buf, size_t len) {
  size_t end = ws_hs_head_end(buf, len, 0);
  if (!end) return;
  for (int http = 0; http <= 1; http++) {
    check_req_both(buf, end, MAXH, http);
    check_req_both(buf, end, 3, http);
  }
}

static void request_check_one_pass_same_as_steps(void **state) {
  (void)state;
  static const char *const line[] = {
      "GET /chat?x=1 HTTP/1.1\r\n", "GET / HTTP/1.0\r\n",
      "POST / HTTP/1.1\r\n", "get / HTTP/1.1\r\n", "GET  / HTTP/1.1\r\n",
      "GET / HTTP/2.0\r\n"};
  static const char *const base[] = {
      "",
      "Host: server.example.com\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY_1_3 "\r\n"
      "Sec-WebSocket-Version: 13\r\n",
      "host: a\r\nupgrade: h2c, WebSocket\r\nconnection: keep-alive, upgrade\r\n"
      "sec-websocket-version: 13\r\nsec-websocket-key: " KEY_1_3 "\r\n"};
  static const char *const extra[] = {
      "Host: b\r\n", "Host:\r\n", "Origin: http://a\r\n", "Origin: x\r\n",
      "Upgrade: websocket\r\n", "Upgrade: h2c\r\n", "Connection: Upgrade\r\n",
      "Connection: close\r\n", "Content-Length: 0\r\n", "Content-Length: 5\r\n",
      "content-length: 00\r\n", "Transfer-Encoding: chunked\r\n",
      "Sec-WebSocket-Key: " KEY_1_3 "\r\n", "Sec-WebSocket-Key: abc\r\n",
      "Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 8\r\n",
      "Sec-WebSocket-Versions: 13\r\n", "Sec-WebSocket-Protocol: chat\r\n",
      "X-Host: a\r\n", "Bad Name: x\r\n", " folded\r\n"};
  const size_t ne = sizeof(extra) / sizeof(extra[0]);
  char buf[1024];
  long heads = 0;
  for (size_t l = 0; l < sizeof(line) / sizeof(line[0]); l++)
    for (size_t b = 0; b < sizeof(base) / sizeof(base[0]); b++)
      for (size_t i = 0; i <= ne; i++)
        for (size_t j = 0; j <= ne; j++) {
          if (i == ne && j < ne) continue;
          int n = snprintf(buf, sizeof(buf), "%s%s%s%s\r\n", line[l], base[b],
                           i < ne ? extra[i] : "", j < ne ? extra[j] : "");
          assert_true(n > 0 && (size_t)n < sizeof(buf));
          check_req_all((const uint8_t *)buf, (size_t)n);
          heads++;
        }
  assert_true(heads > 4000);
  fprintf(stderr, "checked %ld generated requests, %ld corpus files\n", heads,
          for_corpora(check_req_all));
}

/* ---- both roles together ------------------------------------------------ */

/* Every refusal of ws_hs_validate_response() with its exact code and
 * reason (the header names are looked up from the same strings). */
static void response_refusals_exact_reason(void **state) {
  (void)state;
  static const struct {
    const char *resp;
    const char *offered;
    int ext;
    int rv;
    const char *why;
  } v[] = {
      {"HTTP/1.1 403 Forbidden\r\n" RH_UPG RH_CONN RH_ACC CRLF, NULL, 0,
       WS_ERR_REJECTED, "server did not answer 101"},
      {R101 RH_CONN RH_ACC CRLF, NULL, 0, WS_ERR_HANDSHAKE,
       "Upgrade: websocket missing"},
      {R101 "Upgrade: h2c\r\n" RH_CONN RH_ACC CRLF, NULL, 0, WS_ERR_HANDSHAKE,
       "Upgrade: websocket missing"},
      {R101 RH_UPG RH_ACC CRLF, NULL, 0, WS_ERR_HANDSHAKE,
       "Connection: Upgrade missing"},
      {R101 RH_UPG "Connection: Upgraded\r\n" RH_ACC CRLF, NULL, 0,
       WS_ERR_HANDSHAKE, "Connection: Upgrade missing"},
      {R101 RH_UPG RH_CONN CRLF, NULL, 0, WS_ERR_HANDSHAKE,
       "Sec-WebSocket-Accept missing or repeated"},
      {R101 RH_UPG RH_CONN RH_ACC RH_ACC CRLF, NULL, 0, WS_ERR_HANDSHAKE,
       "Sec-WebSocket-Accept missing or repeated"},
      {R101 RH_UPG RH_CONN "sec-websocket-accept: x\r\n" CRLF, NULL, 0,
       WS_ERR_HANDSHAKE, "Sec-WebSocket-Accept mismatch"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Extensions: x\r\n" CRLF, NULL,
       0, WS_ERR_HANDSHAKE, "extension not offered"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Extensions: a\r\n"
                                  "SEC-WEBSOCKET-EXTENSIONS: b\r\n" CRLF,
       NULL, 1, WS_ERR_HANDSHAKE, "Sec-WebSocket-Extensions repeated"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Protocol: chat\r\n"
                                  "sec-websocket-protocol: chat\r\n" CRLF,
       "chat", 0, WS_ERR_HANDSHAKE, "Sec-WebSocket-Protocol repeated"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Protocol: chat, x\r\n" CRLF,
       "chat, x", 0, WS_ERR_HANDSHAKE, "invalid Sec-WebSocket-Protocol"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Protocol: \"chat\"\r\n" CRLF,
       "chat", 0, WS_ERR_HANDSHAKE, "invalid Sec-WebSocket-Protocol"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Protocol:\r\n" CRLF, "chat", 0,
       WS_ERR_HANDSHAKE, "invalid Sec-WebSocket-Protocol"},
      {R101 RH_UPG RH_CONN RH_ACC "Sec-WebSocket-Protocol: Chat\r\n" CRLF,
       "chat", 0, WS_ERR_HANDSHAKE, "subprotocol not offered"},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    ws_response resp;
    ws_header h[MAXH];
    const char *why = NULL;
    const char *r = v[i].resp;
    assert_int_equal(
        ws_hs_parse_response(&resp, h, MAXH, (const uint8_t *)r, strlen(r)), 0);
    ws_slice off = {(const uint8_t *)v[i].offered,
                    v[i].offered ? strlen(v[i].offered) : 0};
    assert_int_equal(
        ws_hs_validate_response(&resp, KEY_1_3, off, v[i].ext, &why), v[i].rv);
    assert_string_equal(why, v[i].why);
    /* the one-pass check, the connection's */
    ws_slice ext;
    why = NULL;
    assert_int_equal(ws_hs_check_response(&resp, h, MAXH, (const uint8_t *)r,
                                          strlen(r), KEY_1_3, off, v[i].ext,
                                          &why, &ext),
                     v[i].rv);
    assert_string_equal(why, v[i].why);
  }
}

/* A client request goes through the server parser, whose 101 the client
 * accepts, for keys from the test PRNG. */
static void roundtrip_client_server(void **state) {
  (void)state;
  ws_mem mem = default_mem();
  uint64_t seed = 12345;
  const char *protos[] = {"v1.chat", "v2.chat"};
  for (int iter = 0; iter < 50; iter++) {
    uint8_t nonce[16];
    char key[24];
    ws_buf req_out = {0}, resp_out = {0};
    ws_client_params p = {0};
    ws_request req;
    ws_header h[MAXH], rh[MAXH];
    ws_response resp;
    int status = 0;
    const char *why = NULL;

    tu_rand_fn(nonce, sizeof(nonce), &seed);
    assert_int_equal(ws_base64_encode(nonce, 16, key), 24);
    p.host = "localhost";
    p.port = (uint16_t)(iter * 1000);
    p.path = "/ws?room=1";
    p.protocols = protos;
    p.nprotocols = 2;
    assert_int_equal(
        ws_hs_write_request(&req_out, &mem, &p, key, "permessage-deflate"), 0);
    size_t len = ws_buf_size(&req_out);
    assert_int_equal(ws_hs_head_end(req_out.base, len, 0), len);
    assert_int_equal(
        ws_hs_parse_request(&req, h, MAXH, req_out.base, len, &status, &why),
        0);
    assert_slice(req.path, "/ws");
    assert_slice(req.query, "room=1");
    assert_int_equal(req.key.len, 24);
    assert_memory_equal(req.key.base, key, 24);
    assert_int_equal(ws_hs_write_accept(&resp_out, &mem, &req, "v2.chat",
                                        "permessage-deflate", NULL, 0),
                     0);
    size_t rlen = ws_buf_size(&resp_out);
    assert_int_equal(ws_hs_head_end(resp_out.base, rlen, 0), rlen);
    assert_int_equal(ws_hs_parse_response(&resp, rh, MAXH, resp_out.base, rlen),
                     0);
    const char *off = "v1.chat, v2.chat";
    ws_slice offs = {(const uint8_t *)off, strlen(off)};
    assert_int_equal(ws_hs_validate_response(&resp, key, offs, 1, &why), 0);
    assert_slice(resp.protocol, "v2.chat");
    assert_slice(resp.extensions, "permessage-deflate");
    /* the accept of another key fails */
    char other[24];
    memcpy(other, key, 24);
    other[0] = other[0] == 'A' ? 'B' : 'A';
    assert_int_equal(ws_hs_validate_response(&resp, other, offs, 1, &why),
                     WS_ERR_HANDSHAKE);
    ws_buf_free(&req_out, &mem);
    ws_buf_free(&resp_out, &mem);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sha1_fips_abc),
      cmocka_unit_test(sha1_fips_empty),
      cmocka_unit_test(sha1_fips_448bit),
      cmocka_unit_test(sha1_fips_896bit),
      cmocka_unit_test(sha1_fips_million_a),
      cmocka_unit_test(sha1_split_and_padding_edges),
      cmocka_unit_test(base64_rfc4648_10_vectors),
      cmocka_unit_test(base64_all_byte_values_roundtrip),
      cmocka_unit_test(base64_alphabet_in_order),
      cmocka_unit_test(base64_strict_rejects),
      cmocka_unit_test(rfc6455_1_3_accept_key),
      cmocka_unit_test(rfc7230_7_list_skips_empty_and_ows),
      cmocka_unit_test(rfc7230_7_list_keeps_quoted_strings),
      cmocka_unit_test(list_has_token_and_slice_ieq),
      cmocka_unit_test(head_end_whole_and_trailing_data),
      cmocka_unit_test(head_end_byte_by_byte),
      cmocka_unit_test(head_end_split_at_every_position),
      cmocka_unit_test(head_end_bare_lf_ends_head_then_400),
      cmocka_unit_test(rfc6455_4_2_1_valid_request_fields),
      cmocka_unit_test(rfc6455_4_2_1_no_origin_no_query),
      cmocka_unit_test(rfc7230_3_2_header_names_case_insensitive),
      cmocka_unit_test(rfc6455_4_2_1_method_post_405),
      cmocka_unit_test(rfc6455_4_2_1_http_1_0_400),
      cmocka_unit_test(rfc6455_4_2_1_higher_versions_ok),
      cmocka_unit_test(rfc7230_3_1_1_malformed_request_line_400),
      cmocka_unit_test(rfc6455_4_2_1_missing_host_400),
      cmocka_unit_test(rfc6455_4_2_1_duplicate_host_400),
      cmocka_unit_test(rfc6455_4_2_1_upgrade_variants),
      cmocka_unit_test(rfc6455_4_2_1_connection_variants),
      cmocka_unit_test(rfc6455_4_2_1_key_lengths),
      cmocka_unit_test(rfc6455_4_2_1_key_invalid_400),
      cmocka_unit_test(rfc6455_4_2_1_version_426),
      cmocka_unit_test(rfc6455_10_2_duplicate_origin_400),
      cmocka_unit_test(rfc7230_3_2_malformed_header_lines_400),
      cmocka_unit_test(rfc7230_3_2_nul_in_header_400),
      cmocka_unit_test(rfc6585_5_too_many_headers_431),
      cmocka_unit_test(parse_request_needs_complete_head),
      cmocka_unit_test(request_accessors),
      cmocka_unit_test(rfc6455_4_2_2_accept_exact_bytes),
      cmocka_unit_test(rfc6455_4_2_2_accept_with_subprotocol),
      cmocka_unit_test(rfc6455_4_2_2_accept_with_extensions_and_headers),
      cmocka_unit_test(accept_invalid_arguments_leave_out_unchanged),
      cmocka_unit_test(accept_nomem_leaves_out_unchanged),
      cmocka_unit_test(reject_403_with_body_exact_bytes),
      cmocka_unit_test(rfc6455_4_4_reject_426_carries_version),
      cmocka_unit_test(rfc7231_6_5_5_reject_405_allow_get),
      cmocka_unit_test(reject_reason_phrases_and_ranges),
      cmocka_unit_test(rfc6455_4_1_client_request_exact_bytes),
      cmocka_unit_test(rfc6455_4_1_client_request_minimal),
      cmocka_unit_test(rfc6455_4_1_client_request_invalid),
      cmocka_unit_test(rfc6455_4_1_response_valid),
      cmocka_unit_test(rfc6455_4_1_response_subprotocol),
      cmocka_unit_test(rfc6455_4_1_response_extensions),
      cmocka_unit_test(rfc6455_4_1_response_status_not_101_rejected),
      cmocka_unit_test(rfc6455_4_1_response_bad_upgrade_connection_accept),
      cmocka_unit_test(rfc7230_3_1_2_response_malformed),
      cmocka_unit_test(roundtrip_client_server),
      cmocka_unit_test(request_refusals_exact_status_and_reason),
      cmocka_unit_test(reject_every_reason_phrase_exact),
      cmocka_unit_test(response_and_request_decimal_numbers),
      cmocka_unit_test(reject_caller_allow_and_version_replace_defaults),
      cmocka_unit_test(response_refusals_exact_reason),
      cmocka_unit_test(writers_check_caller_strings_exact),
      cmocka_unit_test(response_check_one_pass_same_as_two_steps),
      cmocka_unit_test(request_check_one_pass_same_as_steps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
