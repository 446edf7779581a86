/*
 * Frame header codec (RFC 6455 5.2) and the stateless section 5 checks.
 * SPDX-License-Identifier: MIT
 *
 *   0                   1                   2                   3
 *  |F|R|R|R| opcode|M| len7 | extended length (0, 2 or 8) | key (0 or 4)
 *
 * Length encodings: len7 0..125 is the length; 126 means a 16-bit length
 * follows; 127 a 64-bit one, whose most significant bit MUST be 0.
 *
 * Non-minimal length encodings (e.g. 5 sent as 126 + 0x0005) are accepted
 * on receive. RFC 6455 5.2 says "the minimal number of bytes MUST be used
 * to encode the length", which is a requirement on the sender; the value
 * is still unambiguous, nothing downstream depends on the encoding, and
 * the section 5 list of things a receiver must fail the connection for
 * does not name it. Autobahn does not test it either. The decoder stays a
 * pure syntax check (as documented in ws.h) and the encoder always emits
 * the minimal form.
 */
#include "ws_int.h"

static uint64_t load_be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  size_t i;

  for (i = 0; i < n; i++) {
    v = v << 8 | p[i];
  }
  return v;
}

static void store_be(uint8_t *p, uint64_t v, size_t n) {
  while (n--) {
    p[n] = (uint8_t)v;
    v >>= 8;
  }
}

int ws_frame_decode_header(ws_frame_header *hd, const uint8_t *in,
                           size_t inlen, size_t *pnread) {
  size_t extlen, need;
  unsigned len7;

  if (inlen < 2) {
    return WS_ERR_WOULDBLOCK;
  }
  len7 = in[1] & 0x7Fu;
  extlen = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  /* RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0.
   * Reject it as soon as that byte is here, before the rest arrives. */
  if (extlen == 8 && inlen > 2 && (in[2] & 0x80u)) {
    return WS_ERR_PROTO;
  }
  need = 2 + extlen + ((in[1] & 0x80u) ? 4 : 0);
  if (inlen < need) {
    return WS_ERR_WOULDBLOCK;
  }

  hd->fin = (uint8_t)(in[0] >> 7);
  hd->rsv = (uint8_t)((in[0] >> 4) & 0x7u);
  hd->opcode = (uint8_t)(in[0] & 0xFu);
  hd->masked = (uint8_t)(in[1] >> 7);
  hd->payload_len = extlen ? load_be(in + 2, extlen) : len7;
  if (hd->masked) {
    memcpy(hd->mask, in + 2 + extlen, 4);
  } else {
    memset(hd->mask, 0, 4);
  }
  *pnread = need;
  return 0;
}

/* The rules, for both entry points: in line in each, so that
 * ws_frame_check_header() folds the rule numbers into its result. */
static WS_ALWAYS_INLINE unsigned frame_rule(const ws_frame_header *hd,
                                            int is_server,
                                            unsigned rsv_allowed) {
  /* RFC 6455 5.1: clients mask every frame, servers mask none. */
  if (!hd->masked != !is_server)
    return is_server ? WS_FRULE_UNMASKED : WS_FRULE_MASKED;
  switch (hd->opcode) {
  case WS_OP_CONT:
  case WS_OP_TEXT:
  case WS_OP_BINARY:
    /* RFC 6455 5.2: RSV bits only with an extension that defines them. */
    return (hd->rsv & ~rsv_allowed & 0x7u) ? WS_FRULE_RSV : 0;
  case WS_OP_CLOSE:
  case WS_OP_PING:
  case WS_OP_PONG:
    /* No extension we support defines RSV bits on control frames
     * (RFC 7692 6: RSV1 is for the first frame of a data message). */
    if (hd->rsv) return WS_FRULE_RSV;
    /* RFC 6455 5.5: control frames are not fragmented. */
    /* RFC 6455 5.5: control payload <= 125 */
    if (!hd->fin || hd->payload_len > WS_CONTROL_MAX) return WS_FRULE_CONTROL;
    return 0;
  default:
    /* RFC 6455 5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved. */
    return WS_FRULE_OPCODE;
  }
}

unsigned ws_frame_check(const ws_frame_header *hd, int is_server,
                        unsigned rsv_allowed) {
  return frame_rule(hd, is_server, rsv_allowed);
}

int ws_frame_check_header(const ws_frame_header *hd, int is_server,
                          unsigned rsv_allowed) {
#if WS_SMALL_CODE
  return ws_frame_check(hd, is_server, rsv_allowed) ? WS_ERR_PROTO : 0;
#else
  return frame_rule(hd, is_server, rsv_allowed) ? WS_ERR_PROTO : 0;
#endif
}

size_t ws_frame_put_header(uint8_t *out, unsigned b0, uint64_t len,
                           const uint8_t *mask) {
  /* RFC 6455 5.2: the minimal number of bytes encodes the length: in the
   * 7 bits, or 126 + 16 bits, or 127 + 64 */
  size_t k = len <= 125 ? 0 : len <= 0xFFFF ? 2 : 8;
  size_t n = 2 + k;

  out[0] = (uint8_t)b0;
  out[1] = (uint8_t)((mask ? 0x80u : 0u) |
                     (k == 0 ? (unsigned)len : k == 2 ? 126u : 127u));
  store_be(out + 2, len, k);
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

size_t ws_frame_encode_header(uint8_t *out, const ws_frame_header *hd) {
  return ws_frame_put_header(
      out, (hd->fin ? 0x80u : 0u) | (hd->rsv & 0x7u) << 4 | (hd->opcode & 0xFu),
      hd->payload_len, hd->masked ? hd->mask : NULL);
}

int ws_close_code_valid(uint16_t code) {
  /* RFC 6455 7.4.1/7.4.2: 1004 is reserved, 1005, 1006 and 1015 must not
   * be sent; 1012-1014 (Service Restart, Try Again Later, Bad Gateway)
   * are in the IANA registry and servers use 1012 on deploys, so they are
   * accepted; the rest of 1016-2999 is unassigned; 3000-3999 are
   * registered, 4000-4999 private use; 0-999 and 5000 and up unused. */
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}
