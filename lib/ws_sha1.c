/* SHA-1 (FIPS 180-4 6.1), used only for Sec-WebSocket-Accept (RFC 6455
 * 4.2.2). Byte-oriented loads and stores keep it endian-neutral.
 * SPDX-License-Identifier: MIT */
#include "ws_int.h"

static uint32_t rol32(uint32_t x, unsigned n) {
  return (uint32_t)(x << n) | (x >> (32u - n));
}

static uint32_t load_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* FIPS 180-4 6.1.2: process one 512-bit block. The message schedule is
 * kept as a rolling 16-word window. */
static void sha1_block(uint32_t h[5], const uint8_t *blk) {
  uint32_t w[16];
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

  for (unsigned t = 0; t < 16; t++)
    w[t] = load_be32(blk + (size_t)t * 4);

  for (unsigned t = 0; t < 80; t++) {
    uint32_t f, k, wt;
    if (t < 16) {
      wt = w[t];
    } else {
      wt = rol32(
          w[(t + 13) & 15] ^ w[(t + 8) & 15] ^ w[(t + 2) & 15] ^ w[t & 15], 1);
      w[t & 15] = wt;
    }
    if (t < 20) {
      f = (b & c) | (~b & d); /* Ch */
      k = 0x5a827999u;
    } else if (t < 40) {
      f = b ^ c ^ d; /* Parity */
      k = 0x6ed9eba1u;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d); /* Maj */
      k = 0x8f1bbcdcu;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6u;
    }
    uint32_t tmp = rol32(a, 5) + f + e + k + wt;
    e = d;
    d = c;
    c = rol32(b, 30);
    b = a;
    a = tmp;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

void ws_sha1_init(ws_sha1_ctx *ctx) {
  /* FIPS 180-4 5.3.1 */
  ctx->h[0] = 0x67452301u;
  ctx->h[1] = 0xefcdab89u;
  ctx->h[2] = 0x98badcfeu;
  ctx->h[3] = 0x10325476u;
  ctx->h[4] = 0xc3d2e1f0u;
  ctx->total = 0;
  ctx->blocklen = 0;
}

void ws_sha1_update(ws_sha1_ctx *ctx, const void *data, size_t len) {
  const uint8_t *p = data;
  ctx->total += len;
  if (ctx->blocklen) {
    size_t n = WS_MIN(64 - ctx->blocklen, len);
    memcpy(ctx->block + ctx->blocklen, p, n);
    ctx->blocklen += n;
    p += n;
    len -= n;
    if (ctx->blocklen < 64) return;
    sha1_block(ctx->h, ctx->block);
    ctx->blocklen = 0;
  }
  while (len >= 64) {
    sha1_block(ctx->h, p);
    p += 64;
    len -= 64;
  }
  if (len) {
    memcpy(ctx->block, p, len);
    ctx->blocklen = len;
  }
}

void ws_sha1_final(ws_sha1_ctx *ctx, uint8_t out[20]) {
  /* FIPS 180-4 5.1.1: a 1 bit, zeros, then the 64-bit message length in
   * bits, so that the padded length is a multiple of 512 bits. A byte
   * at a time (once per hash, speed does not matter). */
  uint64_t bits = ctx->total * 8u;
  size_t n = ctx->blocklen;
  ctx->block[n++] = 0x80;
  for (;;) {
    if (n == 64) {
      sha1_block(ctx->h, ctx->block);
      n = 0;
    }
    if (n == 56) break;
    ctx->block[n++] = 0;
  }
  store_be32(ctx->block + 56, (uint32_t)(bits >> 32));
  store_be32(ctx->block + 60, (uint32_t)bits);
  sha1_block(ctx->h, ctx->block);
  for (unsigned i = 0; i < 5; i++)
    store_be32(out + (size_t)i * 4, ctx->h[i]);
  /* The context holds no secret here, but leave it reusable only via
   * ws_sha1_init(). */
  ctx->blocklen = 0;
  ctx->total = 0;
}
