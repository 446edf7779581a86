// <ws/ws.h> must compile on its own as C++ and give C linkage.
// Compiled by scripts/test (stage g). SPDX-License-Identifier: MIT
#include <ws/ws.h>

int header_cxx_check();

int header_cxx_check() {
  ws_config cfg = ws_config();
  ws_event ev = ws_event();
  ws_slice s = {nullptr, 0};
  ws_frame_header hd = ws_frame_header();
  int (*feed)(ws_conn *, uint8_t *, size_t, size_t *) = ws_conn_feed;
  const char *(*str)(int) = ws_strerror;
  ws_state st = WS_STATE_OPEN;
  ws_opcode op = WS_OP_TEXT;
  ws_error err = WS_ERR_PROTO;
  (void)cfg;
  (void)ev;
  (void)s;
  (void)hd;
  (void)feed;
  (void)str;
  return st == WS_STATE_OPEN && op == WS_OP_TEXT && err < WS_OK &&
         WS_VERSION_NUM > 0;
}
