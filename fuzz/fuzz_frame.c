/*
 * Fuzz target: frame header codec and masking (RFC 6455 5.2, 5.3).
 * SPDX-License-Identifier: MIT
 *
 * Input: a frame header followed by payload bytes, as on the wire.
 * Invariants:
 *  - decoding any prefix shorter than the header gives WOULDBLOCK (or
 *    PROTO for a 64-bit length with the top bit set), never success;
 *  - decode -> encode -> decode gives the same fields; the encoding is the
 *    minimal one, equal to the input when the input was minimal;
 *  - ws_frame_check_header agrees with the RFC rules written out here;
 *  - encode of fuzzer-chosen fields decodes back to them;
 *  - ws_mask whole == ws_mask in fuzzer-chosen chunks == ws_mask_scalar
 *    == ws_copy_mask (at an odd destination), any start offset; masking
 *    twice is the identity; the returned offset is (offset + len) mod 4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_int.h"
#include "ws_mask.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static int same_header(const ws_frame_header *a, const ws_frame_header *b) {
  return a->fin == b->fin && a->rsv == b->rsv && a->opcode == b->opcode &&
         a->masked == b->masked && a->payload_len == b->payload_len &&
         (!a->masked || memcmp(a->mask, b->mask, 4) == 0);
}

/* RFC 6455 5.1, 5.2, 5.5 written out plainly. */
static int ref_check(const ws_frame_header *h, int is_server, unsigned rsv) {
  if (is_server && !h->masked) return WS_ERR_PROTO;
  if (!is_server && h->masked) return WS_ERR_PROTO;
  if (h->opcode <= 2) return (h->rsv & ~rsv & 7u) ? WS_ERR_PROTO : 0;
  if (h->opcode >= 8 && h->opcode <= 10) {
    if (h->rsv || !h->fin || h->payload_len > 125) return WS_ERR_PROTO;
    return 0;
  }
  return WS_ERR_PROTO;
}

static size_t min_header_len(const ws_frame_header *h) {
  size_t n = 2;
  if (h->payload_len > 0xFFFF)
    n += 8;
  else if (h->payload_len > 125)
    n += 2;
  return n + (h->masked ? 4u : 0u);
}

static void check_decode(const uint8_t *data, size_t size) {
  ws_frame_header hd, hd2;
  size_t n = 0, n2 = 0;
  int rv = ws_frame_decode_header(&hd, data, size, &n);
  CHECK(rv == 0 || rv == WS_ERR_WOULDBLOCK || rv == WS_ERR_PROTO);
  if (rv == WS_ERR_PROTO) {
    /* only a 64-bit length with the top bit set */
    CHECK(size > 2 && (data[1] & 0x7Fu) == 127 && (data[2] & 0x80u));
    return;
  }
  if (rv == WS_ERR_WOULDBLOCK) {
    size_t need = 2;
    if (size >= 2) {
      unsigned l7 = data[1] & 0x7Fu;
      need += (l7 == 126 ? 2u : l7 == 127 ? 8u : 0u) +
              ((data[1] & 0x80u) ? 4u : 0u);
    }
    CHECK(size < need);
    return;
  }
  CHECK(n >= 2 && n <= WS_FRAME_HEADER_MAX && n <= size);
  CHECK(hd.fin == (data[0] >> 7));
  CHECK(hd.rsv == ((data[0] >> 4) & 7u));
  CHECK(hd.opcode == (data[0] & 0xFu));
  CHECK(hd.masked == (data[1] >> 7));
  CHECK(hd.payload_len >> 63 == 0);
  if (hd.masked) CHECK(memcmp(hd.mask, data + n - 4, 4) == 0);

  /* every shorter prefix: not yet */
  for (size_t i = 0; i < n; i++) {
    ws_frame_header t;
    size_t tn = 0;
    int r = ws_frame_decode_header(&t, data, i, &tn);
    CHECK(r == WS_ERR_WOULDBLOCK);
  }

  /* re-encode: minimal, and decodes back to the same fields */
  uint8_t enc[WS_FRAME_HEADER_MAX + 1];
  memset(enc, 0xAA, sizeof(enc));
  size_t elen = ws_frame_encode_header(enc, &hd);
  CHECK(elen == min_header_len(&hd));
  CHECK(elen <= n);
  CHECK(enc[WS_FRAME_HEADER_MAX] == 0xAA);
  CHECK(ws_frame_decode_header(&hd2, enc, elen, &n2) == 0 && n2 == elen);
  CHECK(same_header(&hd, &hd2));
  if (elen == n) CHECK(memcmp(enc, data, n) == 0);

  /* stateless RFC checks, both roles, with and without RSV1 allowed */
  for (int server = 0; server <= 1; server++) {
    for (unsigned rsv = 0; rsv <= WS_RSV1; rsv += WS_RSV1) {
      CHECK(ws_frame_check_header(&hd, server, rsv) ==
            ref_check(&hd, server, rsv));
    }
  }
}

static uint64_t load64(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* Fields taken from the input bytes: encode, then decode. */
static void check_encode(const uint8_t *data, size_t size) {
  if (size < 14) return;
  ws_frame_header hd, hd2;
  memset(&hd, 0, sizeof(hd));
  hd.fin = (uint8_t)(data[0] >> 7);
  hd.rsv = (uint8_t)((data[0] >> 4) & 7u);
  hd.opcode = (uint8_t)(data[0] & 0xFu);
  hd.masked = (uint8_t)(data[1] >> 7);
  /* lengths around the encoding boundaries are the interesting ones */
  uint64_t len = load64(data + 2, 8) & 0x7FFFFFFFFFFFFFFFu;
  switch (data[1] & 3u) {
  case 0: len &= 0xFF; break;
  case 1: len &= 0x1FFFF; break;
  default: break;
  }
  hd.payload_len = len;
  if (hd.masked) memcpy(hd.mask, data + 10, 4);
  uint8_t enc[WS_FRAME_HEADER_MAX];
  size_t n = ws_frame_encode_header(enc, &hd), n2 = 0;
  CHECK(n == min_header_len(&hd));
  CHECK(ws_frame_decode_header(&hd2, enc, n, &n2) == 0 && n2 == n);
  CHECK(same_header(&hd, &hd2));
}

static void check_mask(const uint8_t *data, size_t size) {
  if (size < 6) return;
  uint8_t key[4];
  memcpy(key, data, 4);
  size_t off0 = data[4] & 3u;
  uint8_t seed = data[5];
  const uint8_t *payload = data + 6;
  size_t len = size - 6;

  /* +1: room to place buffers at an odd address */
  uint8_t *whole = malloc(len + 1);
  uint8_t *chunked = malloc(len + 1);
  uint8_t *scalar = malloc(len + 1);
  uint8_t *copied = malloc(len + 1);
  CHECK(whole && chunked && scalar && copied);
  uint8_t *w = whole + (seed & 1u);
  uint8_t *ch = chunked + ((seed >> 1) & 1u);
  uint8_t *cp = copied + ((seed >> 2) & 1u);
  memcpy(w, payload, len);
  memcpy(ch, payload, len);
  memcpy(scalar, payload, len);

  size_t o1 = ws_mask(w, len, key, off0);
  CHECK(o1 == (off0 + len) % 4);
  size_t o2 = ws_mask_scalar(scalar, len, key, off0);
  CHECK(o2 == o1);
  CHECK(memcmp(w, scalar, len) == 0);
  for (size_t i = 0; i < len; i++)
    CHECK(w[i] == (uint8_t)(payload[i] ^ key[(off0 + i) & 3u]));

  /* chunks of fuzzer-chosen sizes, offset carried across */
  uint32_t r = 0x9E3779B9u ^ seed ^ (uint32_t)len;
  size_t pos = 0, off = off0;
  while (pos < len) {
    r ^= r << 13;
    r ^= r >> 17;
    r ^= r << 5;
    size_t n = 1 + (r % ((seed & 0x80u) ? 67u : 7u));
    if (n > len - pos) n = len - pos;
    off = ws_mask(ch + pos, n, key, off);
    pos += n;
  }
  CHECK(off == o1);
  CHECK(memcmp(ch, w, len) == 0);

  size_t o3 = ws_copy_mask(cp, payload, len, key, off0);
  CHECK(o3 == o1);
  CHECK(memcmp(cp, w, len) == 0);
  /* in place, as ws_mask */
  ws_copy_mask(cp, cp, len, key, off0);
  CHECK(memcmp(cp, payload, len) == 0);

  /* masking twice gives the input back */
  ws_mask(w, len, key, off0);
  CHECK(memcmp(w, payload, len) == 0);

  free(whole);
  free(chunked);
  free(scalar);
  free(copied);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_decode(data, size);
  check_encode(data, size);
  check_mask(data, size);
  return 0;
}
