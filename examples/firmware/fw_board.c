/*
 * The board side of fw_client for a link-size build (scripts/firmware):
 * main() and a transport whose functions a real board would implement
 * over its TCP stack. Here they are minimal stand-ins, so that the image
 * contains exactly what fw_client pulls in from libws.
 * SPDX-License-Identifier: MIT
 */
#include "fw_client.h"

static volatile uint32_t ticks; /* a SysTick handler would count these */

static int board_read(void *ctx, uint8_t *buf, size_t cap) {
  (void)ctx;
  (void)buf;
  (void)cap;
  return 0;
}

static int board_write(void *ctx, const uint8_t *buf, size_t len) {
  (void)ctx;
  (void)buf;
  return (int)len;
}

static uint32_t board_millis(void *ctx) {
  (void)ctx;
  return ticks;
}

static void board_idle(void *ctx) {
  (void)ctx;
  ticks++; /* a real board: __WFI() */
}

static int board_rand(uint8_t *buf, size_t len, void *ctx) {
  static uint32_t x = 2463534242u; /* a real board: its TRNG */
  (void)ctx;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    buf[i] = (uint8_t)x;
  }
  return 0;
}

static uint8_t arena[4096];

int main(void) {
  fw_transport t = {0, board_read, board_write, board_millis, board_idle,
                    board_rand};
  fw_result r;
  return fw_client_run(&t, "device.example", "/", "hello", arena,
                       sizeof(arena), &r);
}
