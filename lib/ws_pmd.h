/*
 * permessage-deflate negotiation (RFC 7692 5 and 7.1): offers, responses
 * and their parameters. Pure functions over header text; the codec is in
 * ws_deflate.h and the framing in ws_conn.c. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_PMD_H
#define WS_PMD_H

#include "ws_int.h"

/* Longest text ws_pmd_write_offer() / ws_pmd_negotiate() produce:
 * "permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover; server_max_window_bits=15;
 * client_max_window_bits=15" (128 bytes) and a NUL. */
#define WS_PMD_TEXT_MAX 160

/* The parameters of one offer or response, as parsed. Window bits are 0
 * when the parameter is absent, WS_PMD_BITS_NOVALUE when present without
 * a value (client_max_window_bits in an offer only). */
#define WS_PMD_BITS_NOVALUE 0xff
typedef struct ws_pmd_offer {
  uint8_t server_no_context_takeover;
  uint8_t client_no_context_takeover;
  uint8_t server_max_window_bits;
  uint8_t client_max_window_bits;
} ws_pmd_offer;

/*
 * Parses one extension element of a Sec-WebSocket-Extensions list (name
 * and ";"-separated parameters, RFC 6455 9.1). Returns 1 and fills |o|
 * if it is a well-formed permessage-deflate element whose parameters are
 * all known, each at most once, with valid values (RFC 7692 7: flags
 * without a value; window bits 8..15 in decimal without leading zeros,
 * as a token or a quoted string; client_max_window_bits may lack a
 * value); 0 if it names another extension; -1 if it is a
 * permessage-deflate element that breaks one of those rules.
 */
int ws_pmd_parse(ws_slice element, ws_pmd_offer *o);

/*
 * Server: picks the first acceptable permessage-deflate offer among the
 * extension elements of |req| (in order, across all
 * Sec-WebSocket-Extensions headers), as configured by |cfg| (see
 * ws_pmd_config in ws.h). Returns 1 and fills |params| and the response
 * element |text| (NUL-terminated, at most WS_PMD_TEXT_MAX bytes), or 0
 * if no offer is acceptable (then the extension is simply not used).
 */
int ws_pmd_negotiate(const ws_pmd_config *cfg, const ws_request *req,
                     ws_pmd_params *params, char text[WS_PMD_TEXT_MAX]);

/*
 * The same, with the server's WS_CFG_* |flags| (ws_config.flags): with
 * WS_CFG_PMD_SYMMETRIC the client is held to a window no larger than
 * the server's and to client_no_context_takeover when the server takes
 * server_no_context_takeover; an offer that cannot be held to that
 * window (no client_max_window_bits) is declined. Other bits are
 * ignored; ws_pmd_negotiate() is this with |flags| 0.
 */
int ws_pmd_negotiate_flags(const ws_pmd_config *cfg, uint32_t flags,
                           const ws_request *req, ws_pmd_params *params,
                           char text[WS_PMD_TEXT_MAX]);

/* Client: writes the offer for |cfg| into |text| (NUL-terminated). */
void ws_pmd_write_offer(const ws_pmd_config *cfg, char text[WS_PMD_TEXT_MAX]);

/*
 * Client: checks the server's Sec-WebSocket-Extensions value |ext| (the
 * whole header value: one element) against the offer |cfg| produced
 * (RFC 7692 5 and 7.1.1-7.1.2, the client's side). Returns 0 and fills
 * |params|, or WS_ERR_EXTENSION with |*preason| set: another extension,
 * several, an unknown or repeated parameter, an invalid value,
 * server_max_window_bits missing or above the offer's, or
 * client_max_window_bits without a value or above the offer's.
 */
int ws_pmd_check_response(const ws_pmd_config *cfg, ws_slice ext,
                          ws_pmd_params *params, const char **preason);

#endif /* WS_PMD_H */
