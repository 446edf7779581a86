/*
 * libws mbedTLS adapter: TLS (wss://) between socket bytes and the core.
 * SPDX-License-Identifier: MIT
 *
 * Two layers:
 *
 *  - ws_tls, a sans-IO TLS session over memory buffers (in the style of
 *    BearSSL's engine): bytes read from the socket go into
 *    ws_tls_recv_buf()/ws_tls_recv_ack(), bytes for the socket come from
 *    ws_tls_send_buf()/ws_tls_send_ack(), and the plaintext goes through
 *    ws_tls_read()/ws_tls_write(). It fits any event loop; the caller's
 *    own loop drives it like the core.
 *  - ws_tls_transport(), a ws_loop_transport over ws_tls for the event
 *    loop of <ws/ws_loop.h> (epoll, kqueue): pass it as
 *    ws_loop_listen_params.transport or ws_loop_connect_params.transport.
 *
 * Certificates are verified by default: a client needs a CA (file,
 * directory or PEM in memory) and checks the server's name (also sent as
 * SNI). Turning verification off takes WS_TLS_INSECURE_NO_VERIFY, whose
 * name says what it does.
 *
 * Tested with mbedTLS 2.28.3 (Debian 12), which speaks TLS 1.2 (its TLS
 * 1.3 is not built there). The API differences of mbedTLS 3.x are behind
 * version checks, so that TLS 1.3 is used where the library has it, but
 * no 3.x build has been tested yet.
 *
 * Memory: a session holds about 56 KiB once its handshake is done
 * (mbedTLS's 16 KiB input and output record buffers, a 16 KiB receive
 * buffer here, the session and the peer's certificate), plus up to
 * 32 KiB of records waiting for the socket. It comes from malloc (mbedTLS
 * allocates on its own), not from a ws_mem.
 *
 * Threads: a ws_tls_ctx may be shared by sessions on several threads
 * (mbedTLS built with MBEDTLS_THREADING_C, as Debian's is); one ws_tls is
 * used by one thread at a time.
 */
#ifndef WS_WS_MBEDTLS_H
#define WS_WS_MBEDTLS_H

#include <stddef.h>
#include <stdint.h>

#include <ws/ws.h>
#include <ws/ws_loop.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WS_STATICLIB)
#  define WS_TLS_EXTERN
#elif defined(BUILDING_WS_TLS) && defined(__GNUC__) && __GNUC__ >= 4
#  define WS_TLS_EXTERN __attribute__((visibility("default")))
#else
#  define WS_TLS_EXTERN
#endif

/* Errors of the TLS layer, beside the core's WS_ERR_* codes. */
#define WS_TLS_ERR_SETUP (-401)     /* a certificate, key or CA did not load */
#define WS_TLS_ERR_VERIFY (-402)    /* the peer's certificate was refused */
#define WS_TLS_ERR_HANDSHAKE (-403) /* the TLS handshake failed otherwise */
#define WS_TLS_ERR_PROTOCOL (-404)  /* a TLS error after the handshake */

/* ws_tls_params.flags */
/* DANGER: the client accepts any certificate for any name. Anyone on the
 * path can then read and change the traffic. For tests only. */
#define WS_TLS_INSECURE_NO_VERIFY 0x1u

typedef struct ws_tls_params {
  ws_role role;
  uint32_t flags; /* WS_TLS_* */
  /* Client trust anchors, any combination (at least one unless
   * WS_TLS_INSECURE_NO_VERIFY): a PEM file, a directory of PEM files,
   * PEM text in memory (|ca_pem_len| bytes, NUL not needed). A server
   * given a CA requests and verifies client certificates. */
  const char *ca_file;
  const char *ca_path;
  const void *ca_pem;
  size_t ca_pem_len;
  /* Server identity (required for servers; optional client
   * certificate): the certificate chain and the private key, as PEM files
   * or PEM text in memory. |key_password| for an encrypted key, or NULL. */
  const char *cert_file;
  const char *key_file;
  const void *cert_pem;
  size_t cert_pem_len;
  const void *key_pem;
  size_t key_pem_len;
  const char *key_password;
  /* ALPN protocols, NULL-terminated; NULL means {"http/1.1", NULL}. */
  const char *const *alpn;
  /* Cipher suites, by their IANA numbers (mbedTLS's MBEDTLS_TLS_*
   * macros), 0-terminated, at most 31; copied. NULL: the defaults, which
   * are forward secret and authenticated encryption only: TLS 1.2 ECDHE
   * (ECDSA or RSA certificates) with AES-128/256-GCM or
   * ChaCha20-Poly1305, plus the TLS 1.3 suites when mbedTLS has TLS 1.3.
   * CBC, CCM_8, CAMELLIA, static-RSA and DHE suites need to be listed
   * here explicitly (for old clients). TLS 1.2 is the minimum version
   * either way. Since: 0.2 */
  const int *ciphersuites;
} ws_tls_params;

/* Shared configuration: certificates, keys, trust anchors, the random
 * generator. */
typedef struct ws_tls_ctx ws_tls_ctx;

/*
 * Loads |params| (strings and PEM are read during the call only). On
 * failure, |err| (may be NULL) gets a NUL-terminated explanation naming
 * the file and mbedTLS's reason, truncated to |errlen|. Returns 0,
 * WS_ERR_INVALID_ARGUMENT (e.g. a server without certificate, a client
 * without any CA and without WS_TLS_INSECURE_NO_VERIFY), WS_TLS_ERR_SETUP
 * or WS_ERR_NOMEM.
 */
WS_TLS_EXTERN int ws_tls_ctx_new(ws_tls_ctx **pctx, const ws_tls_params *params,
                                 char *err, size_t errlen);

/* Frees it; every session made from it must be deleted first. */
WS_TLS_EXTERN void ws_tls_ctx_del(ws_tls_ctx *ctx);

/* One TLS session. */
typedef struct ws_tls ws_tls;

/*
 * Starts a session. |server_name| (client role: required unless
 * WS_TLS_INSECURE_NO_VERIFY) is sent as SNI and checked against the
 * certificate; it is copied. Returns 0, WS_ERR_INVALID_ARGUMENT,
 * WS_TLS_ERR_SETUP or WS_ERR_NOMEM.
 */
WS_TLS_EXTERN int ws_tls_new(ws_tls **ptls, ws_tls_ctx *ctx,
                             const char *server_name);

WS_TLS_EXTERN void ws_tls_del(ws_tls *tls);

/*
 * Socket side. ws_tls_recv_buf() returns where to put bytes read from
 * the socket and sets |*plen| to the room there (0: nothing can be taken
 * until ws_tls_read() has used what is buffered); ws_tls_recv_ack() says
 * how many were put. ws_tls_send_buf() returns the bytes to write to the
 * socket and their count (0: none); ws_tls_send_ack() says how many were
 * written. Pointers stay valid until the next call on |tls|.
 */
WS_TLS_EXTERN uint8_t *ws_tls_recv_buf(ws_tls *tls, size_t *plen);
WS_TLS_EXTERN void ws_tls_recv_ack(ws_tls *tls, size_t n);
WS_TLS_EXTERN const uint8_t *ws_tls_send_buf(const ws_tls *tls, size_t *plen);
WS_TLS_EXTERN void ws_tls_send_ack(ws_tls *tls, size_t n);

/* The peer ended the socket (read returned 0). */
WS_TLS_EXTERN void ws_tls_recv_eof(ws_tls *tls);

/*
 * Application side. ws_tls_read() runs the handshake as needed and
 * returns up to |cap| bytes of plaintext: 0 with |*pnread| > 0; or
 * WS_ERR_WOULDBLOCK when it needs more socket bytes (look at
 * ws_tls_send_buf() too: the handshake may have something to send);
 * WS_ERR_EOF once the peer's close_notify (or, after the handshake, a bare
 * end of the socket) arrived; or a WS_TLS_ERR_* failure, described by
 * ws_tls_error().
 *
 * ws_tls_write() encrypts plaintext into the send buffer, taking what fits
 * (|*pnwritten|), and returns 0, WS_ERR_WOULDBLOCK (nothing taken: the
 * handshake is not done or the send buffer is full; drain it and retry),
 * or a failure as ws_tls_read().
 */
WS_TLS_EXTERN int ws_tls_read(ws_tls *tls, uint8_t *buf, size_t cap,
                              size_t *pnread);
WS_TLS_EXTERN int ws_tls_write(ws_tls *tls, const uint8_t *data, size_t len,
                               size_t *pnwritten);

/* Queues close_notify. Returns 0 or a failure as ws_tls_read(). */
WS_TLS_EXTERN int ws_tls_close(ws_tls *tls);

/* 1 once the handshake is complete. */
WS_TLS_EXTERN int ws_tls_handshake_done(const ws_tls *tls);

/* A description of the last failure ("certificate verification failed:
 * The certificate Common Name (CN) does not match with the expected CN
 * (the name checked was "example.org")", "certificate verification
 * failed: The certificate is not correctly signed by the trusted CA",
 * "connection closed during the TLS handshake", "TLS handshake failed:
 * ..." with mbedTLS's reason), or "" if none. Valid until the next call
 * on |tls|. */
WS_TLS_EXTERN const char *ws_tls_error(const ws_tls *tls);

/* The negotiated ALPN protocol, or NULL. */
WS_TLS_EXTERN const char *ws_tls_alpn(const ws_tls *tls);

/*
 * Fills |tp| with a transport for <ws/ws_loop.h> whose sessions come from
 * |ctx| (which must outlive every connection using it, and whose role
 * must be the connection's). The client's SNI and name check use the host
 * given to ws_loop_connect(). A session's failure ends the connection:
 * on_close gets the WS_TLS_ERR_* code as ws_loop_close_info.error and
 * ws_tls_error()'s text as ws_loop_close_info.transport_error. A server
 * connection that fails before its opening request (a plaintext client
 * on the TLS port, a failed handshake) is dropped at once, without a
 * callback. Before the TLS handshake is done, the core's output (the
 * client's opening request) waits inside the transport, so the loop has
 * no write interest while it waits for the peer. The loop keeps the
 * pointer it is given, so |*tp| must outlive the listener or connection
 * (a static or the loop's lifetime).
 */
WS_TLS_EXTERN void ws_tls_transport(ws_loop_transport *tp, ws_tls_ctx *ctx);

/* Describes a WS_TLS_ERR_* code, or any other code as ws_strerror(). The
 * text of one failure is ws_tls_error() (or transport_error in the
 * loop's on_close). */
WS_TLS_EXTERN const char *ws_tls_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* WS_WS_MBEDTLS_H */
