/*
 * Opening handshake (RFC 6455 section 4): HTTP/1.1 head parsing,
 * validation and response/request writing. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_HANDSHAKE_H
#define WS_HANDSHAKE_H

#include "ws_int.h"

/*
 * Finds the end of an HTTP head (the CRLFCRLF, or a bare-LF blank line
 * so that ws_hs_parse_request() can answer 400 at once). |buf| holds |len| bytes
 * of which the first |scanned| were already searched by an earlier call
 * without success (pass 0 the first time). Returns the head length
 * including the final CRLFCRLF, or 0 if it has not arrived yet.
 * Incremental: total work over byte-at-a-time arrival is O(len).
 */
size_t ws_hs_head_end(const uint8_t *buf, size_t len, size_t scanned);

/*
 * Server: parses a complete request head buf[0, len) (ending in CRLFCRLF)
 * as HTTP/1.x (RFC 7230 3) and checks it as an opening handshake (RFC
 * 6455 4.2.1), looking at each header line once. Fills |req|, whose
 * slices and headers point into |buf| and |headers| (room for
 * |maxheaders|). The checks, in this order: the request line and header
 * fields (400, 431 too many headers), at most one Host (exactly one for
 * HTTP/1.1) and at most one Origin; then, with |http|, a request whose
 * Upgrade does not list "websocket" is plain HTTP: 1 is returned (the
 * key not set). Then: GET (405), HTTP/1.1 or higher, a Host not empty,
 * Upgrade lists "websocket", Connection lists "Upgrade", no body
 * announced (Content-Length other than 0, Transfer-Encoding: the bytes
 * after the head are frames), one Sec-WebSocket-Key of 16 bytes in
 * base64 (sets |req->key|), Sec-WebSocket-Version 13 (426). Returns 0,
 * 1 (plain HTTP) or WS_ERR_HANDSHAKE with |*pstatus| the HTTP status to
 * answer (400 unless said) and |*preason| a static short explanation.
 */
int ws_hs_check_request(ws_request *req, ws_header *headers, size_t maxheaders,
                        const uint8_t *buf, size_t len, int http,
                        int *pstatus, const char **preason);

/* ws_hs_check_request() without plain HTTP: 0 or WS_ERR_HANDSHAKE. */
static inline int ws_hs_parse_request(ws_request *req, ws_header *headers,
                                      size_t maxheaders, const uint8_t *buf,
                                      size_t len, int *pstatus,
                                      const char **preason) {
  return ws_hs_check_request(req, headers, maxheaders, buf, len, 0, pstatus,
                             preason);
}

#if WS_HAS_REFERENCE
/*
 * The same in steps, the way the library did it before
 * ws_hs_check_request(): kept for the tests, which compare the two
 * (freestanding builds leave them out, WS_HAS_REFERENCE).
 * ws_hs_parse_http(): the request line and header fields, Host and
 * Origin; ws_hs_is_upgrade(): 1 if an Upgrade header lists "websocket";
 * ws_hs_validate_upgrade(): the opening handshake's checks (sets
 * |req->key|). Each returns as ws_hs_check_request() does.
 */
int ws_hs_parse_http(ws_request *req, ws_header *headers, size_t maxheaders,
                     const uint8_t *buf, size_t len, int *pstatus,
                     const char **preason);
int ws_hs_is_upgrade(const ws_request *req);
int ws_hs_validate_upgrade(ws_request *req, int *pstatus,
                           const char **preason);
#endif

/* 1 if the request offers the subprotocol |protocol| (names compare
 * exactly, RFC 6455 4.2.2 (5) /subprotocol/). */
int ws_hs_offered(const ws_request *req, const char *protocol);

/*
 * Server: appends the 101 Switching Protocols response for |req| to
 * |out|: Upgrade, Connection, Sec-WebSocket-Accept, the optional
 * Sec-WebSocket-Protocol |protocol| and Sec-WebSocket-Extensions
 * |extensions| (each NULL for none), then |headers|. Returns 0,
 * WS_ERR_INVALID_ARGUMENT (CR/LF or NUL in a caller header, or an empty
 * name) or WS_ERR_NOMEM. On error |out| is unchanged.
 */
int ws_hs_write_accept(ws_buf *out, const ws_mem *mem, const ws_request *req,
                       const char *protocol, const char *extensions,
                       const ws_kv *headers, size_t nheaders);

/*
 * Appends an HTTP/1.1 response with |status| (100..599) and its standard
 * reason phrase, "Connection: close", "Content-Length", the caller's
 * |headers|, and |body|; with |omit_body| the body is counted in
 * Content-Length but not written (the answer to HEAD). A 426 also carries
 * "Sec-WebSocket-Version: 13" (RFC 6455 4.4), a 405 "Allow: GET". Returns
 * 0, WS_ERR_INVALID_ARGUMENT (status outside 100..599, bad header) or
 * WS_ERR_NOMEM. On error |out| is unchanged.
 */
int ws_hs_write_response(ws_buf *out, const ws_mem *mem, int status,
                         const ws_kv *headers, size_t nheaders,
                         const void *body, size_t bodylen, int omit_body);

/* ws_hs_write_response() with the body written: an error answer. */
static inline int ws_hs_write_reject(ws_buf *out, const ws_mem *mem, int status,
                                     const ws_kv *headers, size_t nheaders,
                                     const void *body, size_t bodylen) {
  return ws_hs_write_response(out, mem, status, headers, nheaders, body,
                              bodylen, 0);
}

/*
 * Client: appends the opening request (RFC 6455 4.1): GET |path| (or
 * "/"), Host (with ":port" when port != 0), Upgrade, Connection,
 * Sec-WebSocket-Key |key|, Sec-WebSocket-Version: 13, Origin, the
 * offered subprotocols as one Sec-WebSocket-Protocol header, the
 * Sec-WebSocket-Extensions |extensions| offer (NULL for none) and the
 * extra headers. Returns 0, WS_ERR_INVALID_ARGUMENT (no host, CR/LF/NUL,
 * a subprotocol that is not an RFC 7230 token) or WS_ERR_NOMEM.
 */
int ws_hs_write_request(ws_buf *out, const ws_mem *mem,
                        const ws_client_params *p, const char key[24],
                        const char *extensions);

/*
 * Client: parses a complete response head buf[0, len) and checks it (RFC
 * 6455 4.1, the client's checks), looking at each header line once.
 * Fills |resp| (status, reason, headers into |headers|, room for
 * |maxheaders|; protocol and extensions: the first value of their
 * headers). The checks, in this order: well-formed with at most
 * |maxheaders| headers (else "malformed response"), status 101 (else
 * WS_ERR_REJECTED; |resp| is complete), Upgrade token "websocket",
 * Connection token "Upgrade", Sec-WebSocket-Accept matching |key|, no
 * Sec-WebSocket-Extensions unless |extensions_offered| (and then a single
 * header line that lists anything), a Sec-WebSocket-Protocol only if it
 * is one of the comma list |offered_protocols| (and at most one). Returns
 * 0 with |*pext| the value of the extension line (base NULL and len 0 if
 * none), or WS_ERR_REJECTED or WS_ERR_HANDSHAKE with |*preason| a static
 * short explanation.
 */
int ws_hs_check_response(ws_response *resp, ws_header *headers,
                         size_t maxheaders, const uint8_t *buf, size_t len,
                         const char key[24], ws_slice offered_protocols,
                         int extensions_offered, const char **preason,
                         ws_slice *pext);

#if WS_HAS_REFERENCE
/*
 * The same in two steps, the way the library did it before
 * ws_hs_check_response(): kept for the tests and fuzzers, which compare
 * the two (freestanding builds leave them out, WS_HAS_REFERENCE).
 *
 * ws_hs_parse_response(): parses a complete response head buf[0, len).
 * Fills |resp| (status, reason, headers; protocol and extensions from
 * their headers). Returns 0 or WS_ERR_HANDSHAKE (malformed, or more than
 * |maxheaders|).
 *
 * ws_hs_validate_response(): validates a parsed response: status 101
 * (else WS_ERR_REJECTED), then the checks of ws_hs_check_response().
 * Returns 0, WS_ERR_REJECTED, or WS_ERR_HANDSHAKE with |*preason| a
 * static short explanation.
 */
int ws_hs_parse_response(ws_response *resp, ws_header *headers,
                         size_t maxheaders, const uint8_t *buf, size_t len);
int ws_hs_validate_response(const ws_response *resp, const char key[24],
                            ws_slice offered_protocols,
                            int extensions_offered, const char **preason);
#endif

#endif /* WS_HANDSHAKE_H */
