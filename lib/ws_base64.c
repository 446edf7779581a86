/* Base64 (RFC 4648 section 4, standard alphabet, padded).
 * SPDX-License-Identifier: MIT */
#include "ws_int.h"

static const char b64_alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws_base64_encode(const uint8_t *in, size_t len, char *out) {
  /* Three bytes to four characters; a short last group is padded with
   * '=' (one or two). Only handshake keys go through here: one loop for
   * every group keeps it small. */
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3, o += 4) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[o] = b64_alphabet[v >> 18];
    out[o + 1] = b64_alphabet[(v >> 12) & 63];
    out[o + 2] = '=';
    out[o + 3] = '=';
    if (i + 1 < len) out[o + 2] = b64_alphabet[(v >> 6) & 63];
    if (i + 2 < len) out[o + 3] = b64_alphabet[v & 63];
  }
  return o;
}

/* Value of one alphabet character, or -1. */
static int b64_value(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int ws_base64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t outcap,
                     size_t *poutlen) {
  /* RFC 4648 3.2/3.3: padded input only, no whitespace or other
   * characters outside the alphabet. */
  if (len % 4 != 0) return WS_ERR_INVALID_ARGUMENT;
  size_t pad = 0;
  if (len >= 4 && in[len - 1] == '=') pad = in[len - 2] == '=' ? 2 : 1;
  size_t outlen = len / 4 * 3 - pad;
  if (outlen > outcap) return WS_ERR_INVALID_ARGUMENT;

  /* Six bits per character into an accumulator, a byte out whenever it
   * holds eight: one loop for every group, as in the encoder. */
  uint32_t acc = 0;
  unsigned nbits = 0;
  size_t o = 0;
  for (size_t i = 0; i < len - pad; i++) {
    int d = b64_value(in[i]); /* '=' before the padding too */
    if (d < 0) return WS_ERR_INVALID_ARGUMENT;
    acc = acc << 6 | (uint32_t)d;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out[o++] = (uint8_t)(acc >> nbits);
    }
  }
  /* RFC 4648 3.5: the bits left unused before the padding must be zero
   * (canonical). */
  if (acc & ((1u << nbits) - 1)) return WS_ERR_INVALID_ARGUMENT;
  *poutlen = o;
  return 0;
}
