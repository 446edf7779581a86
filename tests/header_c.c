/* <ws/ws.h> must compile on its own as C11: nothing included before it.
 * Compiled by scripts/test (stage g). SPDX-License-Identifier: MIT */
#include <ws/ws.h>

/* Touch a type from each part of the header so a missing declaration
 * or an incomplete type shows up. */
int header_c_check(void);

int header_c_check(void) {
  ws_config cfg;
  ws_event ev;
  ws_frame_header hd;
  ws_utf8 u;
  ws_stats st;
  ws_iovec iov;
  ws_mem mem = {0, 0, 0, 0};
  ws_client_params cp;
  ws_accept_params ap;
  ws_request req;
  ws_response resp;
  ws_kv kv = {"a", "b"};
  int (*feed)(ws_conn *, uint8_t *, size_t, size_t *) = ws_conn_feed;
  void (*defaults)(ws_config *, ws_role) = ws_config_default;
  (void)cfg;
  (void)ev;
  (void)hd;
  (void)u;
  (void)st;
  (void)iov;
  (void)mem;
  (void)cp;
  (void)ap;
  (void)req;
  (void)resp;
  (void)kv;
  (void)feed;
  (void)defaults;
  return WS_VERSION_NUM > 0 && WS_ERR_FATAL < 0 && WS_OP_PONG == 0xA &&
         WS_FRAME_HEADER_MAX == 14 && sizeof WS_VERSION > 1;
}
