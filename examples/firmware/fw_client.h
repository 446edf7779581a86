/*
 * fw_client: a WebSocket client in a bare-metal loop (see fw_client.c).
 * SPDX-License-Identifier: MIT
 */
#ifndef FW_CLIENT_H
#define FW_CLIENT_H

#include <ws/ws.h>

#include <stddef.h>
#include <stdint.h>

/* What the board provides. read() and write() never block: they return
 * the bytes moved (0: not now), or -1 when the connection is gone. */
typedef struct fw_transport {
  void *ctx;
  int (*read)(void *ctx, uint8_t *buf, size_t cap);
  int (*write)(void *ctx, const uint8_t *buf, size_t len);
  uint32_t (*millis)(void *ctx); /* a free-running millisecond tick */
  void (*idle)(void *ctx);       /* nothing to do: wait for an interrupt */
  int (*rand)(uint8_t *buf, size_t len, void *ctx); /* mask keys */
} fw_transport;

typedef struct fw_result {
  char echo[128];     /* the text that came back */
  uint16_t close_code; /* the server's close code */
  int error;          /* WS_ERR_* of a failure, else 0 */
  size_t peak_memory; /* the most the connection held of |mem| */
  ws_stats stats;
} fw_result;

/* Opens ws://|host||path| over |t|, sends |text|, waits for the echo and
 * closes. All memory comes from |mem| (|memlen| bytes). Returns 0 or -1. */
int fw_client_run(const fw_transport *t, const char *host, const char *path,
                  const char *text, void *mem, size_t memlen, fw_result *r);

#endif /* FW_CLIENT_H */
