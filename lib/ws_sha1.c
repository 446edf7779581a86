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

/* |n| words big-endian to |p|: one loop for the length and the digest */
static void store_be32(uint8_t *p, const uint32_t *v, unsigned n) {
  for (unsigned i = 0; i < n * 4; i++)
    p[i] = (uint8_t)(v[i >> 2] >> (24 - 8 * (i & 3)));
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
    /* the function, Parity written once for rounds 20-39 and 60-79 */
    if (t < 20)
      f = d ^ (b & (c ^ d)); /* Ch, (b & c) | (~b & d) with one op less */
    else if (t >= 40 && t < 60)
      f = (b & c) | (d & (b | c)); /* Maj */
    else
      f = b ^ c ^ d; /* Parity */
    k = t < 20   ? 0x5a827999u
        : t < 40 ? 0x6ed9eba1u
        : t < 60 ? 0x8f1bbcdcu
                 : 0xca62c1d6u;
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
#if WS_SMALL_CODE
  /* A byte at a time through the block buffer: the smallest code, and
   * only handshake keys (60 bytes) go through here. */
  while (len--) {
    ctx->block[ctx->blocklen++] = *p++;
    if (ctx->blocklen == 64) {
      sha1_block(ctx->h, ctx->block);
      ctx->blocklen = 0;
    }
  }
#else
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
#endif
}

void ws_sha1_final(ws_sha1_ctx *ctx, uint8_t out[20]) {
  /* FIPS 180-4 5.1.1: a 1 bit, zeros, then the 64-bit message length in
   * bits, so that the padded length is a multiple of 512 bits. */
  uint32_t bits[2] = {(uint32_t)(ctx->total >> 29), (uint32_t)ctx->total << 3};
#if WS_SMALL_CODE
  /* a byte at a time, the block processed when full (not through
   * ws_sha1_update(), whose frame would deepen the stack) */
  uint8_t pad = 0x80;
  do {
    ctx->block[ctx->blocklen++] = pad;
    pad = 0;
    if (ctx->blocklen == 64) {
      sha1_block(ctx->h, ctx->block);
      ctx->blocklen = 0;
    }
  } while (ctx->blocklen != 56);
#else
  size_t n = ctx->blocklen;
  ctx->block[n++] = 0x80;
  if (n > 56) { /* no room for the length: one more block */
    memset(ctx->block + n, 0, 64 - n);
    sha1_block(ctx->h, ctx->block);
    n = 0;
  }
  memset(ctx->block + n, 0, 56 - n);
#endif
  store_be32(ctx->block + 56, bits, 2);
  sha1_block(ctx->h, ctx->block);
  store_be32(out, ctx->h, 5);
  /* (The context is spent: it holds no secret, and is used again only
   * after ws_sha1_init(), so nothing is cleared.) */
}
