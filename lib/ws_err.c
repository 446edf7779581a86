/* Error strings and version.
 * SPDX-License-Identifier: MIT */
#include "ws_int.h"

/* The messages of the codes in |err_codes|, in the same order, one after
 * the other, and the one for any other code last: a table instead of a
 * switch, for size (ws_strerror() is never on a hot path). */
static const int16_t err_codes[] = {WS_OK,
                                    WS_ERR_WOULDBLOCK,
                                    WS_ERR_INVALID_ARGUMENT,
                                    WS_ERR_INVALID_STATE,
                                    WS_ERR_PROTO,
                                    WS_ERR_UTF8,
                                    WS_ERR_TOO_BIG,
                                    WS_ERR_HANDSHAKE,
                                    WS_ERR_REJECTED,
                                    WS_ERR_EXTENSION,
                                    WS_ERR_TIMEOUT,
                                    WS_ERR_EOF,
                                    WS_ERR_CLOSED,
                                    WS_ERR_POLICY,
                                    WS_ERR_DATA,
                                    WS_ERR_NOMEM,
                                    WS_ERR_INTERNAL};
static const char err_msgs[] = "success\0"
                               "would block\0"
                               "invalid argument\0"
                               "invalid state for this call\0"
                               "protocol error\0"
                               "invalid UTF-8\0"
                               "size limit exceeded\0"
                               "invalid opening handshake\0"
                               "handshake rejected by the server\0"
                               "extension negotiation failed\0"
                               "timed out\0"
                               "connection closed without close frame\0"
                               "connection closed\0"
                               "policy limit exceeded\0"
                               "invalid compressed data\0"
                               "out of memory\0"
                               "internal error\0"
                               "unknown error";

const char *ws_strerror(int err) {
  const char *p = err_msgs;
  for (size_t k = 0; k < sizeof(err_codes) / sizeof(err_codes[0]); k++) {
    if (err_codes[k] == err) break;
    p += strlen(p) + 1;
  }
  return p;
}

int ws_err_is_fatal(int err) { return err <= WS_ERR_FATAL; }

uint32_t ws_version(void) { return WS_VERSION_NUM; }
