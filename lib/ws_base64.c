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

  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    int last = i + 4 == len;
    size_t nchars = last ? 4 - pad : 4;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; j++) {
      int d = 0;
      if (j < nchars) {
        d = b64_value(in[i + j]);
        if (d < 0) return WS_ERR_INVALID_ARGUMENT;
      }
      v = v << 6 | (uint32_t)d;
    }
    if (nchars == 4) {
      out[o++] = (uint8_t)(v >> 16);
      out[o++] = (uint8_t)(v >> 8);
      out[o++] = (uint8_t)v;
    } else if (nchars == 3) {
      /* RFC 4648 3.5: the unused low bits must be zero (canonical). */
      if (v & 0xffu) return WS_ERR_INVALID_ARGUMENT;
      out[o++] = (uint8_t)(v >> 16);
      out[o++] = (uint8_t)(v >> 8);
    } else {
      if (v & 0xffffu) return WS_ERR_INVALID_ARGUMENT;
      out[o++] = (uint8_t)(v >> 16);
    }
  }
  *poutlen = o;
  return 0;
}
