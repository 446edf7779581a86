/*
 * Runs fw_client against an echo server (a server-role ws_conn in the
 * same process) over an in-memory transport that moves at most 7 bytes a
 * call, with a tick that advances 1 ms per loop: the bare-metal loop must
 * open, get its echo and close cleanly, within its arena.
 * SPDX-License-Identifier: MIT
 */
#include "fw_client.h"

#include <stdio.h>
#include <string.h>

typedef struct pipe_end {
  uint8_t buf[4096];
  size_t len;
} pipe_end;

typedef struct board {
  pipe_end to_server, to_client;
  ws_conn *server;
  uint32_t ms;
  uint8_t rng;
} board;

static void serve(board *b) {
  size_t used = 0;
  if (b->to_server.len) {
    ws_conn_feed(b->server, b->to_server.buf, b->to_server.len, &used);
    memmove(b->to_server.buf, b->to_server.buf + used,
            b->to_server.len - used);
    b->to_server.len -= used;
  }
  ws_event ev;
  while (ws_conn_next_event(b->server, &ev) == 0) {
    if (ev.type == WS_EV_REQUEST) ws_conn_accept(b->server, NULL);
    if (ev.type == WS_EV_TEXT)
      ws_conn_send(b->server, WS_OP_TEXT, ev.data.base, ev.data.len, 0);
  }
  ws_iovec v;
  while (ws_conn_out_peek(b->server, &v, 1) == 1) {
    size_t room = sizeof(b->to_client.buf) - b->to_client.len;
    size_t n = v.len < room ? v.len : room;
    if (!n) break;
    memcpy(b->to_client.buf + b->to_client.len, v.base, n);
    b->to_client.len += n;
    ws_conn_out_consume(b->server, n);
  }
}

static int b_read(void *ctx, uint8_t *buf, size_t cap) {
  board *b = ctx;
  serve(b);
  size_t n = b->to_client.len < cap ? b->to_client.len : cap;
  if (n > 7) n = 7;
  memcpy(buf, b->to_client.buf, n);
  memmove(b->to_client.buf, b->to_client.buf + n, b->to_client.len - n);
  b->to_client.len -= n;
  if (n == 0 && ws_conn_should_close_transport(b->server)) return -1;
  return (int)n;
}

static int b_write(void *ctx, const uint8_t *buf, size_t len) {
  board *b = ctx;
  size_t room = sizeof(b->to_server.buf) - b->to_server.len;
  size_t n = len < room ? len : room;
  if (n > 7) n = 7;
  memcpy(b->to_server.buf + b->to_server.len, buf, n);
  b->to_server.len += n;
  return (int)n;
}

static uint32_t b_millis(void *ctx) { return ++((board *)ctx)->ms; }
static void b_idle(void *ctx) { (void)ctx; }
static int b_rand(uint8_t *buf, size_t len, void *ctx) {
  board *b = ctx;
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(b->rng += 37);
  return 0;
}

int main(void) {
  static board b;
  static uint8_t arena[8192];
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  if (ws_conn_new(&b.server, &cfg, NULL) != 0) return 1;
  fw_transport t = {&b, b_read, b_write, b_millis, b_idle, b_rand};
  fw_result r;
  int rv = fw_client_run(&t, "device.example", "/echo", "hello from the board",
                         arena, sizeof(arena), &r);
  ws_conn_del(b.server);
  printf("rv %d, echo \"%s\", close %u, error %d, peak %zu bytes of arena, "
         "%llu wire bytes out\n",
         rv, r.echo, (unsigned)r.close_code, r.error, r.peak_memory,
         (unsigned long long)r.stats.wire_out);
  int ok = rv == 0 && strcmp(r.echo, "hello from the board") == 0 &&
           r.close_code == 1000 && r.peak_memory <= sizeof(arena);
  printf("%d passed, %d failed\n", ok, !ok);
  return ok ? 0 : 1;
}
