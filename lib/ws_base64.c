/* Base64 (RFC 4648 section 4, standard alphabet, padded).
 * SPDX-License-Identifier: MIT */
#include "ws_int.h"

#if WS_SMALL_CODE
/* The character of a 6-bit value (RFC 4648 table 1). Size builds work it
 * out rather than keep the alphabet. */
static char b64_char(unsigned v) {
  return (char)(v < 26   ? 'A' + v
                : v < 52 ? 'a' + (v - 26)
                : v < 62 ? '0' + (v - 52)
                : v == 62 ? '+'
                          : '/');
}
#else
static const char b64_alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
#  define b64_char(v) b64_alphabet[v]
#endif

size_t ws_base64_encode(const uint8_t *in, size_t len, char *out) {
  /* Eight bits per byte into an accumulator, a character out whenever it
   * holds six, the last bits padded with zeros; then '=' up to a multiple
   * of four characters. Only handshake keys go through here: one loop, as
   * in the decoder, keeps it small. */
  uint32_t acc = 0;
  unsigned nbits = 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    acc = acc << 8 | in[i];
    nbits += 8;
    while (nbits >= 6) {
      nbits -= 6;
      out[o++] = b64_char((acc >> nbits) & 63);
    }
  }
  if (nbits) out[o++] = b64_char((acc << (6 - nbits)) & 63);
  while (o & 3)
    out[o++] = '=';
  return o;
}

/* Value of one alphabet character, or -1. Size builds search the values
 * for it (smaller, slower; keys are 24 characters). */
static int b64_value(uint8_t c) {
#if WS_SMALL_CODE
  for (unsigned v = 0; v < 64; v++)
    if ((uint8_t)b64_char(v) == c) return (int)v;
  return -1;
#else
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
#endif
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
