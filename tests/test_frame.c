/* Frame header codec tests (RFC 6455 5). SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "ws_mask.h"

/* Expected decode of one header. */
typedef struct exp_hdr {
  uint8_t fin, rsv, opcode, masked;
  uint32_t mask; /* key as big-endian 0xAABBCCDD */
  uint64_t payload_len;
  size_t hdrlen;
} exp_hdr;

static void assert_hdr(const ws_frame_header *hd, const exp_hdr *e) {
  assert_int_equal(hd->fin, e->fin);
  assert_int_equal(hd->rsv, e->rsv);
  assert_int_equal(hd->opcode, e->opcode);
  assert_int_equal(hd->masked, e->masked);
  if (e->masked) {
    uint8_t k[4] = {(uint8_t)(e->mask >> 24), (uint8_t)(e->mask >> 16),
                    (uint8_t)(e->mask >> 8), (uint8_t)e->mask};
    assert_memory_equal(hd->mask, k, 4);
  }
  assert_true(hd->payload_len == e->payload_len);
}

/*
 * Decodes the header at the start of |hex| from an exact-size heap copy
 * of every prefix (so ASan sees any over-read): WOULDBLOCK until the
 * header is complete, then the expected fields. Re-encodes the header and
 * compares it byte for byte with the input.
 */
static void check_header_bytes(const char *hex, const exp_hdr *e) {
  size_t len, n, nread;
  uint8_t *in = tu_hex(hex, &len);
  ws_frame_header hd;
  uint8_t out[WS_FRAME_HEADER_MAX];

  assert_true(len >= e->hdrlen);
  for (n = 0; n < e->hdrlen; n++) {
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, in, n);
    assert_int_equal(ws_frame_decode_header(&hd, p, n, &nread),
                     WS_ERR_WOULDBLOCK);
    free(p);
  }
  for (n = e->hdrlen; n <= len; n++) {
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, in, n);
    nread = 0;
    memset(&hd, 0xAA, sizeof(hd));
    assert_int_equal(ws_frame_decode_header(&hd, p, n, &nread), 0);
    assert_int_equal(nread, e->hdrlen);
    assert_hdr(&hd, e);
    free(p);
  }
  assert_int_equal(ws_frame_encode_header(out, &hd), e->hdrlen);
  assert_memory_equal(out, in, e->hdrlen);
  free(in);
}

/* Checks the payload after the header: unmasked as needed, == |text|. */
static void check_payload(const char *hex, size_t hdrlen, const char *text) {
  size_t len;
  uint8_t *in = tu_hex(hex, &len);
  ws_frame_header hd;
  size_t nread;

  assert_int_equal(ws_frame_decode_header(&hd, in, len, &nread), 0);
  assert_int_equal(nread, hdrlen);
  assert_int_equal(len - hdrlen, strlen(text));
  assert_true(hd.payload_len == strlen(text));
  if (hd.masked) ws_mask(in + hdrlen, len - hdrlen, hd.mask, 0);
  assert_memory_equal(in + hdrlen, text, len - hdrlen);
  free(in);
}

/* Builds a whole frame with the encoder and compares it to |hex|. */
static void check_encode_frame(const char *hex, uint8_t fin, uint8_t op,
                               const uint8_t *key, const char *text) {
  ws_frame_header hd;
  uint8_t out[WS_FRAME_HEADER_MAX + 125];
  size_t n, tlen = strlen(text);

  memset(&hd, 0, sizeof(hd));
  hd.fin = fin;
  hd.opcode = op;
  hd.payload_len = tlen;
  if (key) {
    hd.masked = 1;
    memcpy(hd.mask, key, 4);
  }
  n = ws_frame_encode_header(out, &hd);
  memcpy(out + n, text, tlen);
  if (key) ws_mask(out + n, tlen, key, 0);
  tu_assert_hex(out, n + tlen, hex);
}

static const uint8_t rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* RFC 6455 5.7: A single-frame unmasked text message. */
static void rfc_5_7_single_frame_unmasked_text(void **state) {
  static const char hex[] = "81 05 48 65 6c 6c 6f";
  exp_hdr e = {1, 0, WS_OP_TEXT, 0, 0, 5, 2};
  ws_frame_header hd;
  size_t nread;
  uint8_t in[] = {0x81, 0x05};
  (void)state;

  check_header_bytes(hex, &e);
  check_payload(hex, 2, "Hello");
  check_encode_frame(hex, 1, WS_OP_TEXT, NULL, "Hello");
  assert_int_equal(ws_frame_decode_header(&hd, in, 2, &nread), 0);
  /* Server to client: unmasked is right; a server must see it masked. */
  assert_int_equal(ws_frame_check_header(&hd, 0, 0), 0);
  assert_int_equal(ws_frame_check_header(&hd, 1, 0), WS_ERR_PROTO);
}

/* RFC 6455 5.7: A single-frame masked text message. */
static void rfc_5_7_single_frame_masked_text(void **state) {
  static const char hex[] = "81 85 37 fa 21 3d 7f 9f 4d 51 58";
  exp_hdr e = {1, 0, WS_OP_TEXT, 1, 0x37fa213d, 5, 6};
  ws_frame_header hd;
  size_t nread, len;
  uint8_t *in = tu_hex(hex, &len);
  (void)state;

  check_header_bytes(hex, &e);
  check_payload(hex, 6, "Hello");
  check_encode_frame(hex, 1, WS_OP_TEXT, rfc_key, "Hello");
  assert_int_equal(ws_frame_decode_header(&hd, in, len, &nread), 0);
  assert_int_equal(ws_frame_check_header(&hd, 1, 0), 0);
  assert_int_equal(ws_frame_check_header(&hd, 0, 0), WS_ERR_PROTO);
  free(in);
}

/* RFC 6455 5.7: A fragmented unmasked text message ("Hel" + "lo"). */
static void rfc_5_7_fragmented_unmasked_text(void **state) {
  exp_hdr e1 = {0, 0, WS_OP_TEXT, 0, 0, 3, 2};
  exp_hdr e2 = {1, 0, WS_OP_CONT, 0, 0, 2, 2};
  ws_frame_header hd;
  size_t nread;
  const uint8_t f1[] = {0x01, 0x03}, f2[] = {0x80, 0x02};
  (void)state;

  check_header_bytes("01 03 48 65 6c", &e1);
  check_payload("01 03 48 65 6c", 2, "Hel");
  check_encode_frame("01 03 48 65 6c", 0, WS_OP_TEXT, NULL, "Hel");
  check_header_bytes("80 02 6c 6f", &e2);
  check_payload("80 02 6c 6f", 2, "lo");
  check_encode_frame("80 02 6c 6f", 1, WS_OP_CONT, NULL, "lo");
  /* A fragmented data frame is fine; only control frames may not be. */
  assert_int_equal(ws_frame_decode_header(&hd, f1, 2, &nread), 0);
  assert_int_equal(ws_frame_check_header(&hd, 0, 0), 0);
  assert_int_equal(ws_frame_decode_header(&hd, f2, 2, &nread), 0);
  assert_int_equal(ws_frame_check_header(&hd, 0, 0), 0);
}

/* RFC 6455 5.7: Unmasked Ping request and masked Ping response (pong). */
static void rfc_5_7_unmasked_ping(void **state) {
  static const char hex[] = "89 05 48 65 6c 6c 6f";
  exp_hdr e = {1, 0, WS_OP_PING, 0, 0, 5, 2};
  (void)state;

  check_header_bytes(hex, &e);
  check_payload(hex, 2, "Hello");
  check_encode_frame(hex, 1, WS_OP_PING, NULL, "Hello");
}

static void rfc_5_7_masked_pong(void **state) {
  static const char hex[] = "8a 85 37 fa 21 3d 7f 9f 4d 51 58";
  exp_hdr e = {1, 0, WS_OP_PONG, 1, 0x37fa213d, 5, 6};
  ws_frame_header hd;
  size_t nread, len;
  uint8_t *in = tu_hex(hex, &len);
  (void)state;

  check_header_bytes(hex, &e);
  check_payload(hex, 6, "Hello");
  check_encode_frame(hex, 1, WS_OP_PONG, rfc_key, "Hello");
  assert_int_equal(ws_frame_decode_header(&hd, in, len, &nread), 0);
  assert_int_equal(ws_frame_check_header(&hd, 1, 0), 0);
  free(in);
}

/* RFC 6455 5.7: 256 bytes binary message in a single unmasked frame. */
static void rfc_5_7_binary_256_single_unmasked(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, 256, 4};
  (void)state;
  check_header_bytes("82 7E 0100", &e);
}

/* RFC 6455 5.7: 64KiB binary message in a single unmasked frame. */
static void rfc_5_7_binary_64k_single_unmasked(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, 65536, 10};
  (void)state;
  check_header_bytes("82 7F 0000000000010000", &e);
}

/* Length encodings at their edges, unmasked and masked. */
static void recv_payload125(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, 125, 2};
  exp_hdr m = {1, 0, WS_OP_BINARY, 1, 0x01020304, 125, 6};
  (void)state;
  check_header_bytes("82 7D", &e);
  check_header_bytes("82 FD 01020304", &m);
}

static void recv_minimum_ext_payload16(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, 126, 4};
  exp_hdr m = {1, 0, WS_OP_BINARY, 1, 0xA1B2C3D4, 126, 8};
  (void)state;
  check_header_bytes("82 7E 007E", &e);
  check_header_bytes("82 FE 007E A1B2C3D4", &m);
}

static void recv_maximum_ext_payload16(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, 65535, 4};
  (void)state;
  check_header_bytes("82 7E FFFF", &e);
}

static void recv_minimum_ext_payload64(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, 65536, 10};
  exp_hdr m = {0, 0, WS_OP_CONT, 1, 0xDEADBEEF, 65536, 14};
  (void)state;
  check_header_bytes("82 7F 0000000000010000", &e);
  check_header_bytes("00 FF 0000000000010000 DEADBEEF", &m);
}

static void recv_maximum_ext_payload64(void **state) {
  exp_hdr e = {1, 0, WS_OP_BINARY, 0, 0, UINT64_C(0x7FFFFFFFFFFFFFFF), 10};
  (void)state;
  check_header_bytes("82 7F 7FFFFFFFFFFFFFFF", &e);
}

/* RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0. */
static void recv_ext_payload64_msb_set(void **state) {
  static const char *bad[] = {
      "82 7F 8000000000000000",
      "82 7F FFFFFFFFFFFFFFFF",
      "82 FF 8000000000000001 01020304",
  };
  size_t i, n, len, nread;
  ws_frame_header hd;
  (void)state;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint8_t *in = tu_hex(bad[i], &len);
    assert_int_equal(ws_frame_decode_header(&hd, in, 2, &nread),
                     WS_ERR_WOULDBLOCK);
    /* Rejected from the first length byte on, whatever follows. */
    for (n = 3; n <= len; n++) {
      assert_int_equal(ws_frame_decode_header(&hd, in, n, &nread),
                       WS_ERR_PROTO);
    }
    free(in);
  }
}

/* Non-minimal length encodings are accepted on receive (see ws_frame.c);
 * the encoder never produces them. */
static void recv_nonminimal_length_accepted(void **state) {
  exp_hdr e16 = {1, 0, WS_OP_TEXT, 0, 0, 5, 4};
  exp_hdr e64 = {1, 0, WS_OP_TEXT, 0, 0, 300, 10};
  ws_frame_header hd;
  size_t nread;
  uint8_t in[] = {0x81, 0x7E, 0x00, 0x05};
  uint8_t out[WS_FRAME_HEADER_MAX];
  (void)state;

  assert_int_equal(ws_frame_decode_header(&hd, in, sizeof(in), &nread), 0);
  assert_int_equal(nread, e16.hdrlen);
  assert_hdr(&hd, &e16);
  assert_int_equal(ws_frame_encode_header(out, &hd), 2);
  tu_assert_hex(out, 2, "81 05");

  {
    uint8_t in64[] = {0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0x01, 0x2C};
    assert_int_equal(ws_frame_decode_header(&hd, in64, sizeof(in64), &nread),
                     0);
    assert_int_equal(nread, e64.hdrlen);
    assert_hdr(&hd, &e64);
    assert_int_equal(ws_frame_encode_header(out, &hd), 4);
    tu_assert_hex(out, 4, "81 7E 012C");
  }
}

static void recv_all_first_two_bytes(void **state) {
  /* Every value of the first two bytes, with enough bytes after them. */
  uint8_t in[WS_FRAME_HEADER_MAX];
  unsigned b0, b1;
  (void)state;

  memset(in, 0x11, sizeof(in));
  for (b0 = 0; b0 < 256; b0++) {
    for (b1 = 0; b1 < 256; b1++) {
      ws_frame_header hd;
      size_t nread = 0, exp;
      unsigned l7 = b1 & 0x7F;
      in[0] = (uint8_t)b0;
      in[1] = (uint8_t)b1;
      exp = 2u + (l7 == 126 ? 2u : l7 == 127 ? 8u : 0u) + (b1 & 0x80 ? 4u : 0u);
      assert_int_equal(ws_frame_decode_header(&hd, in, sizeof(in), &nread), 0);
      assert_int_equal(nread, exp);
      assert_int_equal(hd.fin, b0 >> 7);
      assert_int_equal(hd.rsv, (b0 >> 4) & 7);
      assert_int_equal(hd.opcode, b0 & 15);
      assert_int_equal(hd.masked, b1 >> 7);
      assert_true(hd.payload_len == (l7 == 126   ? 0x1111u
                                     : l7 == 127 ? UINT64_C(0x1111111111111111)
                                                 : l7));
    }
  }
}

/* Encoder: shortest form at each boundary, and the key after it. */
static void send_length_encodings(void **state) {
  static const struct {
    uint64_t len;
    const char *hex;
  } v[] = {
      {0, "82 00"},
      {1, "82 01"},
      {125, "82 7D"},
      {126, "82 7E 007E"},
      {127, "82 7E 007F"},
      {65535, "82 7E FFFF"},
      {65536, "82 7F 0000000000010000"},
      {UINT64_C(0x100000000), "82 7F 0000000100000000"},
      {UINT64_C(0x7FFFFFFFFFFFFFFF), "82 7F 7FFFFFFFFFFFFFFF"},
  };
  size_t i;
  (void)state;

  for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    ws_frame_header hd;
    uint8_t out[WS_FRAME_HEADER_MAX];
    uint8_t *exp;
    size_t n, elen;

    memset(&hd, 0, sizeof(hd));
    hd.fin = 1;
    hd.opcode = WS_OP_BINARY;
    hd.payload_len = v[i].len;
    n = ws_frame_encode_header(out, &hd);
    tu_assert_hex(out, n, v[i].hex);
    /* Masked: MASK bit and the key appended. */
    hd.masked = 1;
    memcpy(hd.mask, rfc_key, 4);
    n = ws_frame_encode_header(out, &hd);
    exp = tu_hex(v[i].hex, &elen);
    assert_int_equal(n, elen + 4);
    assert_int_equal(out[1], exp[1] | 0x80);
    assert_memory_equal(out + 2, exp + 2, elen - 2);
    assert_memory_equal(out + elen, rfc_key, 4);
    free(exp);
  }
}

static void send_flags_roundtrip(void **state) {
  /* Random headers: encode, decode, same fields and size. */
  uint64_t rs = 42;
  int i;
  (void)state;

  for (i = 0; i < 20000; i++) {
    ws_frame_header a, b;
    uint8_t out[WS_FRAME_HEADER_MAX];
    size_t n, nread;
    uint32_t r = tu_rand(&rs);

    memset(&a, 0, sizeof(a));
    a.fin = r & 1;
    a.rsv = (r >> 1) & 7;
    a.opcode = (r >> 4) & 15;
    a.masked = (r >> 8) & 1;
    if (a.masked) tu_rand_fn(a.mask, 4, &rs);
    switch ((r >> 9) & 3) {
    case 0: a.payload_len = tu_rand(&rs) % 126; break;
    case 1: a.payload_len = 126 + tu_rand(&rs) % (65536 - 126); break;
    default:
      a.payload_len = ((uint64_t)tu_rand(&rs) << 32 | tu_rand(&rs)) >>
                      (1 + tu_rand(&rs) % 48);
      break;
    }
    n = ws_frame_encode_header(out, &a);
    assert_int_equal(ws_frame_decode_header(&b, out, n, &nread), 0);
    assert_int_equal(nread, n);
    assert_int_equal(b.fin, a.fin);
    assert_int_equal(b.rsv, a.rsv);
    assert_int_equal(b.opcode, a.opcode);
    assert_int_equal(b.masked, a.masked);
    if (a.masked) assert_memory_equal(b.mask, a.mask, 4);
    assert_true(b.payload_len == a.payload_len);
    assert_int_equal(n, 2 + (a.payload_len > 65535   ? 8
                             : a.payload_len > 125 ? 2
                                                   : 0) +
                            (a.masked ? 4 : 0));
  }
}

static ws_frame_header mkhdr(uint8_t fin, uint8_t rsv, uint8_t op,
                             uint8_t masked, uint64_t len) {
  ws_frame_header hd;
  memset(&hd, 0, sizeof(hd));
  hd.fin = fin;
  hd.rsv = rsv;
  hd.opcode = op;
  hd.masked = masked;
  hd.payload_len = len;
  return hd;
}

/* RFC 6455 5.2: opcodes 3-7 and B-F are reserved. */
static void recv_reserved_opcodes(void **state) {
  unsigned op;
  (void)state;

  for (op = 0; op < 16; op++) {
    int reserved = (op >= 3 && op <= 7) || op >= 0xB;
    int role;
    for (role = 0; role < 2; role++) {
      ws_frame_header hd = mkhdr(1, 0, (uint8_t)op, (uint8_t)role, 0);
      assert_int_equal(ws_frame_check_header(&hd, role, 0),
                       reserved ? WS_ERR_PROTO : 0);
      /* Allowing RSV bits does not make a reserved opcode valid. */
      assert_int_equal(ws_frame_check_header(&hd, role, 7),
                       reserved ? WS_ERR_PROTO : 0);
    }
  }
}

/* RFC 6455 5.2: RSV1-3 only when an extension defines them; control
 * frames never (RFC 7692 6 defines RSV1 for data frames only). */
static void recv_rsv_bits(void **state) {
  static const uint8_t data_ops[] = {WS_OP_CONT, WS_OP_TEXT, WS_OP_BINARY};
  static const uint8_t ctrl_ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
  unsigned rsv, allowed, i;
  (void)state;

  for (rsv = 0; rsv < 8; rsv++) {
    for (allowed = 0; allowed < 8; allowed++) {
      for (i = 0; i < 3; i++) {
        ws_frame_header d = mkhdr(1, (uint8_t)rsv, data_ops[i], 1, 10);
        ws_frame_header c = mkhdr(1, (uint8_t)rsv, ctrl_ops[i], 1, 10);
        assert_int_equal(ws_frame_check_header(&d, 1, allowed),
                         (rsv & ~allowed) ? WS_ERR_PROTO : 0);
        assert_int_equal(ws_frame_check_header(&c, 1, allowed),
                         rsv ? WS_ERR_PROTO : 0);
      }
    }
  }
  {
    /* Each bit by name, as the wire carries it. */
    ws_frame_header hd;
    size_t nread;
    const uint8_t r1[] = {0xC1, 0x80, 1, 2, 3, 4}; /* RSV1 text */
    const uint8_t r2[] = {0xA1, 0x80, 1, 2, 3, 4}; /* RSV2 text */
    const uint8_t r3[] = {0x91, 0x80, 1, 2, 3, 4}; /* RSV3 text */
    assert_int_equal(ws_frame_decode_header(&hd, r1, 6, &nread), 0);
    assert_int_equal(hd.rsv, WS_RSV1);
    assert_int_equal(ws_frame_check_header(&hd, 1, 0), WS_ERR_PROTO);
    assert_int_equal(ws_frame_check_header(&hd, 1, WS_RSV1), 0);
    assert_int_equal(ws_frame_decode_header(&hd, r2, 6, &nread), 0);
    assert_int_equal(hd.rsv, WS_RSV2);
    assert_int_equal(ws_frame_check_header(&hd, 1, WS_RSV1), WS_ERR_PROTO);
    assert_int_equal(ws_frame_check_header(&hd, 1, WS_RSV2), 0);
    assert_int_equal(ws_frame_decode_header(&hd, r3, 6, &nread), 0);
    assert_int_equal(hd.rsv, WS_RSV3);
    assert_int_equal(ws_frame_check_header(&hd, 1, WS_RSV1 | WS_RSV2),
                     WS_ERR_PROTO);
    assert_int_equal(ws_frame_check_header(&hd, 1, WS_RSV3), 0);
  }
}

/* RFC 6455 5.5: control frame payloads are at most 125 bytes. */
static void ctrl_frame_too_large_payload(void **state) {
  static const uint8_t ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
  unsigned i;
  (void)state;

  for (i = 0; i < 3; i++) {
    ws_frame_header ok = mkhdr(1, 0, ops[i], 1, 125);
    ws_frame_header big = mkhdr(1, 0, ops[i], 1, 126);
    ws_frame_header huge = mkhdr(1, 0, ops[i], 1, UINT64_C(1) << 40);
    assert_int_equal(ws_frame_check_header(&ok, 1, 0), 0);
    assert_int_equal(ws_frame_check_header(&big, 1, 0), WS_ERR_PROTO);
    assert_int_equal(ws_frame_check_header(&huge, 1, 0), WS_ERR_PROTO);
  }
  {
    /* As bytes: ping with a 16-bit length of 126. */
    ws_frame_header hd;
    size_t nread;
    const uint8_t in[] = {0x89, 0x7E, 0x00, 0x7E};
    assert_int_equal(ws_frame_decode_header(&hd, in, 4, &nread), 0);
    assert_int_equal(ws_frame_check_header(&hd, 0, 0), WS_ERR_PROTO);
  }
  {
    /* Data frames have no such limit here. */
    ws_frame_header d = mkhdr(1, 0, WS_OP_BINARY, 1, 126);
    assert_int_equal(ws_frame_check_header(&d, 1, 0), 0);
  }
}

/* RFC 6455 5.5: control frames MUST NOT be fragmented. */
static void ctrl_frame_fragmented(void **state) {
  static const uint8_t ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
  unsigned i;
  (void)state;

  for (i = 0; i < 3; i++) {
    ws_frame_header hd = mkhdr(0, 0, ops[i], 0, 0);
    assert_int_equal(ws_frame_check_header(&hd, 0, 0), WS_ERR_PROTO);
    hd.fin = 1;
    assert_int_equal(ws_frame_check_header(&hd, 0, 0), 0);
  }
}

/* RFC 6455 5.1: a server fails an unmasked frame, a client a masked one. */
static void recv_mask_by_role(void **state) {
  static const uint8_t ops[] = {WS_OP_CONT,  WS_OP_TEXT, WS_OP_BINARY,
                                WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
  unsigned i;
  (void)state;

  for (i = 0; i < sizeof(ops); i++) {
    ws_frame_header m = mkhdr(1, 0, ops[i], 1, 0);
    ws_frame_header u = mkhdr(1, 0, ops[i], 0, 0);
    assert_int_equal(ws_frame_check_header(&m, 1, 0), 0);
    assert_int_equal(ws_frame_check_header(&u, 1, 0), WS_ERR_PROTO);
    assert_int_equal(ws_frame_check_header(&u, 0, 0), 0);
    assert_int_equal(ws_frame_check_header(&m, 0, 0), WS_ERR_PROTO);
    /* Any nonzero is_server means server. */
    assert_int_equal(ws_frame_check_header(&u, 7, 0), WS_ERR_PROTO);
  }
}

/* RFC 6455 7.4: the codes a close frame may carry. */
static int expected_close_code_valid(unsigned c) {
  static const unsigned valid_named[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                         1009, 1010, 1011, 1012, 1013, 1014};
  size_t i;
  for (i = 0; i < sizeof(valid_named) / sizeof(valid_named[0]); i++) {
    if (c == valid_named[i]) return 1;
  }
  return c >= 3000 && c <= 4999;
}

static void close_code_valid_all(void **state) {
  /* Autobahn 7.7.x (valid) and 7.9.x (invalid), plus the rest of ours. */
  static const uint16_t valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                   1010, 1011, 1012, 1013, 1014, 3000,
                                   3999, 4000, 4999};
  static const uint16_t invalid[] = {0,    999,  1004, 1005, 1006, 1015,
                                     1016, 1100, 2000, 2999, 5000, 65535};
  unsigned c;
  size_t i;
  (void)state;

  for (c = 0; c <= 0xFFFF; c++) {
    assert_int_equal(!!ws_close_code_valid((uint16_t)c),
                     expected_close_code_valid(c));
  }
  for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
    assert_true(ws_close_code_valid(valid[i]));
  }
  for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    assert_false(ws_close_code_valid(invalid[i]));
  }
}

/*
 * A minimal stream reader over the codec, as a connection would drive it:
 * accumulate input, decode a header when enough is there, then take the
 * payload (unmasking with the rolling offset). Records each frame's
 * header fields and payload into |log| so runs with different input
 * splits can be compared.
 */
typedef struct reader {
  uint8_t acc[WS_FRAME_HEADER_MAX];
  size_t acclen;
  int in_payload;
  ws_frame_header hd;
  uint64_t left;
  size_t off;
  uint8_t log[4096];
  size_t loglen;
  int error;
} reader;

static void log_bytes(reader *r, const void *p, size_t n) {
  assert_true(r->loglen + n <= sizeof(r->log));
  memcpy(r->log + r->loglen, p, n);
  r->loglen += n;
}

static void reader_feed(reader *r, uint8_t *in, size_t len, int is_server) {
  while (len > 0 && !r->error) {
    if (!r->in_payload) {
      size_t take = WS_MIN(len, sizeof(r->acc) - r->acclen), nread;
      int rv;
      memcpy(r->acc + r->acclen, in, take);
      rv = ws_frame_decode_header(&r->hd, r->acc, r->acclen + take, &nread);
      if (rv == WS_ERR_WOULDBLOCK) {
        r->acclen += take;
        in += take;
        len -= take;
        continue;
      }
      if (rv == 0) rv = ws_frame_check_header(&r->hd, is_server, 0);
      if (rv != 0) {
        r->error = rv;
        return;
      }
      assert_true(nread > r->acclen);
      in += nread - r->acclen;
      len -= nread - r->acclen;
      r->acclen = 0;
      r->in_payload = 1;
      r->left = r->hd.payload_len;
      r->off = 0;
      {
        uint8_t f[4] = {r->hd.fin, r->hd.opcode, r->hd.masked,
                        (uint8_t)r->hd.payload_len};
        log_bytes(r, f, 4);
      }
    }
    {
      size_t n = (size_t)WS_MIN((uint64_t)len, r->left);
      if (r->hd.masked) r->off = ws_mask(in, n, r->hd.mask, r->off);
      log_bytes(r, in, n);
      in += n;
      len -= n;
      r->left -= n;
      if (r->left == 0) r->in_payload = 0;
    }
  }
}

/* RFC 6455 5.7 examples as one stream, parsed whole, byte by byte and at
 * random splits: the same frames and payloads every time. */
static void recv_stream_any_split(void **state) {
  static const char *streams[] = {
      /* server receiving masked frames */
      "81 85 37 fa 21 3d 7f 9f 4d 51 58"
      "8a 85 37 fa 21 3d 7f 9f 4d 51 58"
      "01 83 01 02 03 04 49 67 6f"
      "89 80 01 02 03 04"
      "80 82 05 06 07 08 69 69"
      "82 FE 0000 AABBCCDD",
      /* client receiving unmasked frames */
      "81 05 48 65 6c 6c 6f"
      "01 03 48 65 6c"
      "89 05 48 65 6c 6c 6f"
      "80 02 6c 6f"
      "82 7E 0080" /* 128 bytes of payload follow */
      "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
      "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
      "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
      "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
      "88 02 03 e8",
  };
  uint64_t rs = 7;
  int s;
  (void)state;

  for (s = 0; s < 2; s++) {
    size_t len, i;
    uint8_t *orig = tu_hex(streams[s], &len);
    uint8_t *buf = malloc(len);
    reader whole, r;
    int iter;

    assert_non_null(buf);
    memset(&whole, 0, sizeof(whole));
    memcpy(buf, orig, len);
    reader_feed(&whole, buf, len, s == 0);
    assert_int_equal(whole.error, 0);
    assert_int_equal(whole.in_payload, 0);

    /* Byte by byte. */
    memset(&r, 0, sizeof(r));
    memcpy(buf, orig, len);
    for (i = 0; i < len; i++) reader_feed(&r, buf + i, 1, s == 0);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.loglen, whole.loglen);
    assert_memory_equal(r.log, whole.log, whole.loglen);

    /* Random splits. */
    for (iter = 0; iter < 500; iter++) {
      size_t pos = 0;
      memset(&r, 0, sizeof(r));
      memcpy(buf, orig, len);
      while (pos < len) {
        size_t n = 1 + tu_rand(&rs) % 20;
        if (n > len - pos) n = len - pos;
        reader_feed(&r, buf + pos, n, s == 0);
        pos += n;
      }
      assert_int_equal(r.error, 0);
      assert_int_equal(r.loglen, whole.loglen);
      assert_memory_equal(r.log, whole.log, whole.loglen);
    }
    if (s == 0) {
      /* "Hello", the pong's "Hello", "Hel" (key 01020304), "lo". */
      assert_memory_equal(whole.log + 4, "Hello", 5);
      assert_memory_equal(whole.log + 13, "Hello", 5);
      assert_memory_equal(whole.log + 22, "Hel", 3);
    }
    free(buf);
    free(orig);
  }
}

/* The same stream through a server reader: unmasked frames fail. */
static void recv_stream_unmasked_at_server(void **state) {
  size_t len;
  uint8_t *in = tu_hex("81 05 48 65 6c 6c 6f", &len);
  reader r;
  (void)state;

  memset(&r, 0, sizeof(r));
  reader_feed(&r, in, len, 1);
  assert_int_equal(r.error, WS_ERR_PROTO);
  free(in);
}

/* Each RFC 6455 section 5 rule has its own number (its close reason is
 * the connection's: test_conn.c recv_frame_rule_reasons); the first rule
 * broken is the one reported. */
static void check_names_rule(void **state) {
  (void)state;
  static const struct {
    uint8_t fin, rsv, opcode, masked;
    uint64_t len;
    int is_server;
    unsigned rsv_allowed;
    unsigned rule; /* 0: valid */
  } cases[] = {
      {1, 0, WS_OP_TEXT, 1, 5, 1, 0, 0},
      {1, 0, WS_OP_TEXT, 0, 5, 1, 0, WS_FRULE_UNMASKED},
      {1, 0, WS_OP_TEXT, 1, 5, 0, 0, WS_FRULE_MASKED},
      {1, 4, WS_OP_TEXT, 0, 5, 0, 0, WS_FRULE_RSV},
      {1, 4, WS_OP_TEXT, 0, 5, 0, WS_RSV1, 0},
      {1, 2, WS_OP_BINARY, 0, 5, 0, WS_RSV1, WS_FRULE_RSV},
      {1, 0, 0x3, 0, 5, 0, 0, WS_FRULE_OPCODE},
      {1, 4, 0xB, 0, 5, 0, WS_RSV1, WS_FRULE_OPCODE},
      {1, 0, 0xF, 1, 5, 0, 0, WS_FRULE_MASKED}, /* mask first */
      {1, 4, WS_OP_PING, 0, 5, 0, WS_RSV1, WS_FRULE_RSV},
      {0, 0, WS_OP_PING, 0, 5, 0, 0, WS_FRULE_CONTROL},
      {1, 0, WS_OP_CLOSE, 0, 126, 0, 0, WS_FRULE_CONTROL},
      {1, 0, WS_OP_PONG, 0, 125, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ws_frame_header hd = {0};
    hd.fin = cases[i].fin;
    hd.rsv = cases[i].rsv;
    hd.opcode = cases[i].opcode;
    hd.masked = cases[i].masked;
    hd.payload_len = cases[i].len;
    unsigned rule =
        ws_frame_check(&hd, cases[i].is_server, cases[i].rsv_allowed);
    assert_int_equal(rule, cases[i].rule);
    assert_int_equal(ws_frame_check_header(&hd, cases[i].is_server,
                                           cases[i].rsv_allowed),
                     rule ? WS_ERR_PROTO : 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc_5_7_single_frame_unmasked_text),
      cmocka_unit_test(rfc_5_7_single_frame_masked_text),
      cmocka_unit_test(rfc_5_7_fragmented_unmasked_text),
      cmocka_unit_test(rfc_5_7_unmasked_ping),
      cmocka_unit_test(rfc_5_7_masked_pong),
      cmocka_unit_test(rfc_5_7_binary_256_single_unmasked),
      cmocka_unit_test(rfc_5_7_binary_64k_single_unmasked),
      cmocka_unit_test(recv_payload125),
      cmocka_unit_test(recv_minimum_ext_payload16),
      cmocka_unit_test(recv_maximum_ext_payload16),
      cmocka_unit_test(recv_minimum_ext_payload64),
      cmocka_unit_test(recv_maximum_ext_payload64),
      cmocka_unit_test(recv_ext_payload64_msb_set),
      cmocka_unit_test(recv_nonminimal_length_accepted),
      cmocka_unit_test(recv_all_first_two_bytes),
      cmocka_unit_test(send_length_encodings),
      cmocka_unit_test(send_flags_roundtrip),
      cmocka_unit_test(recv_reserved_opcodes),
      cmocka_unit_test(recv_rsv_bits),
      cmocka_unit_test(ctrl_frame_too_large_payload),
      cmocka_unit_test(ctrl_frame_fragmented),
      cmocka_unit_test(recv_mask_by_role),
      cmocka_unit_test(close_code_valid_all),
      cmocka_unit_test(recv_stream_any_split),
      cmocka_unit_test(recv_stream_unmasked_at_server),
      cmocka_unit_test(check_names_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
