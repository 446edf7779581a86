/* Error strings and version.
 * SPDX-License-Identifier: MIT */
#include "ws_int.h"

const char *ws_strerror(int err) {
  switch (err) {
  case WS_OK: return "success";
  case WS_ERR_WOULDBLOCK: return "would block";
  case WS_ERR_INVALID_ARGUMENT: return "invalid argument";
  case WS_ERR_INVALID_STATE: return "invalid state for this call";
  case WS_ERR_PROTO: return "protocol error";
  case WS_ERR_UTF8: return "invalid UTF-8";
  case WS_ERR_TOO_BIG: return "size limit exceeded";
  case WS_ERR_HANDSHAKE: return "invalid opening handshake";
  case WS_ERR_REJECTED: return "handshake rejected by the server";
  case WS_ERR_EXTENSION: return "extension negotiation failed";
  case WS_ERR_TIMEOUT: return "timed out";
  case WS_ERR_EOF: return "connection closed without close frame";
  case WS_ERR_CLOSED: return "connection closed";
  case WS_ERR_POLICY: return "policy limit exceeded";
  case WS_ERR_DATA: return "invalid compressed data";
  case WS_ERR_NOMEM: return "out of memory";
  case WS_ERR_INTERNAL: return "internal error";
  default: return "unknown error";
  }
}

int ws_err_is_fatal(int err) { return err <= WS_ERR_FATAL; }

uint32_t ws_version(void) { return WS_VERSION_NUM; }
