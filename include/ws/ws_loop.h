/*
 * libws event loop: a small loop over the sans-IO core for servers and
 * clients. The backend (epoll on Linux, <ws/ws_epoll.h>; kqueue on the
 * BSDs and macOS, <ws/ws_kqueue.h>) only creates the loop; everything else
 * is this header, shared by every backend. TLS (wss://) plugs in as a
 * ws_loop_transport (<ws/ws_mbedtls.h>).
 * SPDX-License-Identifier: MIT
 *
 * One loop runs on one thread. Every function here must be called on the
 * loop's thread (inside a callback, or before/after ws_loop_run()), except
 * the ones marked "any thread", which queue work for the loop and wake it.
 *
 * What the loop does for each connection: non-blocking accept/connect,
 * read -> ws_conn_feed(), events -> callbacks, queued output -> writev
 * (write interest only while output is pending), timers from
 * ws_conn_next_deadline(), backpressure (stop reading a connection whose
 * unsent output is over |high_water|, resume under |low_water|, and tell
 * the application through on_writable), and graceful shutdown.
 *
 * Backpressure stops reading, and that holds for both ends: two peers
 * that each stop reading while their own output is over the mark (two
 * loops, or a loop and a peer built the same way) wait on each other once
 * each has more than |high_water| in flight to the other, until
 * write_timeout_ms drops the connection. An echo client should read its
 * echoes as it sends, or keep less than |high_water| in flight.
 *
 * Callbacks return int: 0 to go on; WS_LOOP_PAUSE to pause the connection
 * (see below); a negative value stops the loop and ws_loop_run() returns
 * it. A connection pointer is valid from the first callback that names it
 * (or ws_loop_connect()) until on_close returns.
 */
#ifndef WS_WS_LOOP_H
#define WS_WS_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <ws/ws.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WS_STATICLIB)
#  define WS_LOOP_EXTERN
#elif defined(BUILDING_WS_LOOP) && defined(__GNUC__) && __GNUC__ >= 4
#  define WS_LOOP_EXTERN __attribute__((visibility("default")))
#else
#  define WS_LOOP_EXTERN
#endif

typedef struct ws_loop ws_loop;
typedef struct ws_loop_conn ws_loop_conn;

/* Callback return value: keep the event and stop reading the connection.
 * The same event is delivered again after ws_loop_resume(), or by itself
 * once the connection's pending output has drained under |low_water| if
 * output was pending when it paused (so an echo that got
 * WS_ERR_WOULDBLOCK from ws_loop_send() can simply return WS_LOOP_PAUSE).
 * While paused, the event's data stays valid and the connection's core
 * timers wait. on_request may answer later (ws_loop_accept() or
 * ws_loop_reject(), then ws_loop_resume()): the request is then not
 * delivered again. A paused request waits for ws_loop_resume() only,
 * whatever output is pending (a TLS handshake's last flight, say).
 * Honoured by on_request, on_open, on_message and on_control; elsewhere
 * it means 0. */
#define WS_LOOP_PAUSE 1

/* Errors of the loop itself, beside the core's WS_ERR_* (ws_loop_strerror
 * describes both). */
#define WS_LOOP_ERR_IO (-301)       /* socket error; sys_errno says which */
#define WS_LOOP_ERR_RESOLVE (-302)  /* host name did not resolve */
#define WS_LOOP_ERR_STALLED (-303)  /* no write progress for write_timeout_ms */
#define WS_LOOP_ERR_SHUTDOWN (-304) /* dropped at the end of the drain */
#define WS_LOOP_ERR_ABORTED (-305)  /* the loop was deleted */
/* Refused by memory_budget (close 1013). Since: 0.2 */
#define WS_LOOP_ERR_BUDGET (-306)
/* A message unfinished after message_timeout_ms (close 1008). Since: 0.2 */
#define WS_LOOP_ERR_SLOW_MESSAGE (-307)

/* How a connection ended, for on_close. */
typedef struct ws_loop_close_info {
  uint16_t code;      /* the peer's close code: 1005 if its close frame had
                         none, 1006 if no close frame arrived */
  uint16_t sent_code; /* the close code we sent, 0 if none */
  ws_slice reason;    /* the peer's close reason, borrowed for the call */
  int error;          /* 0 after a close handshake (but one the loop
                         started for a reason of its own keeps it:
                         WS_LOOP_ERR_SLOW_MESSAGE, WS_LOOP_ERR_STALLED);
                         else WS_ERR_*,
                         WS_LOOP_ERR_* (WS_ERR_EOF, WS_ERR_TIMEOUT, ...), or
                         the transport's own code when it failed (TLS:
                         WS_TLS_ERR_*, see <ws/ws_mbedtls.h>) */
  int sys_errno;      /* errno behind WS_LOOP_ERR_IO, else 0 */
  int http_status;    /* client: status of a non-101 answer, else 0 */
  const ws_response *response; /* client: that answer, borrowed; or NULL */
  /* When the transport failed and can say why (its error() callback):
   * its text, e.g. "certificate verification failed: the certificate
   * Common Name (CN) does not match with the expected CN". Borrowed for
   * the call; NULL otherwise. Since: 0.1 */
  const char *transport_error;
} ws_loop_close_info;

/* A plain HTTP request (not an Upgrade) on a listener, for on_http: the
 * core's parsed request (method, target, path, query, host, headers,
 * version; see ws_request in <ws/ws.h>), parsed by the same parser and
 * under the same limits as an opening handshake. All slices borrow the
 * connection's buffer, valid during the call only. */
typedef ws_request ws_loop_http_request;

typedef struct ws_loop_callbacks {
  /* Server: an Upgrade request. Answer with ws_loop_accept() or
   * ws_loop_reject() here, or later after returning WS_LOOP_PAUSE.
   * Returning 0 without answering accepts with no subprotocol. If NULL,
   * every request is accepted. |req| is valid until answered. */
  int (*on_request)(ws_loop_conn *conn, void *user_data,
                    const ws_request *req);
  /* Server: a request without "Upgrade: websocket" (any method), parsed
   * by the core (WS_CFG_HTTP is set on the listener's connections when
   * this callback is): malformed or oversized heads never get here, they
   * are answered 400 or 431 at once. Answer with ws_loop_http_respond()
   * (else 404; during a shutdown the loop answers 503 itself); the
   * connection then closes. If NULL, such requests are refused with 400.
   * Not followed by on_close. */
  int (*on_http)(ws_loop_conn *conn, void *user_data,
                 const ws_loop_http_request *req);
  /* The WebSocket is open (both roles). */
  int (*on_open)(ws_loop_conn *conn, void *user_data);
  /* Text or binary data: |ev| is the core's WS_EV_TEXT/WS_EV_BINARY event:
   * a whole message with WS_DELIVER_MESSAGE (the loop's default when a
   * listener or a connect has no config), chunks as they arrive with
   * WS_DELIVER_STREAM (see ws_event.flags: WS_EVF_FIRST, WS_EVF_FINAL). |ev->data| is borrowed for the call (or until
   * the event is delivered again, after WS_LOOP_PAUSE). */
  int (*on_message)(ws_loop_conn *conn, void *user_data, const ws_event *ev);
  /* A ping or pong arrived (WS_EV_PING / WS_EV_PONG); pongs to pings are
   * sent by the core. May be NULL. */
  int (*on_control)(ws_loop_conn *conn, void *user_data, const ws_event *ev);
  /* Backpressure: |writable| 0 when the pending output went over
   * |high_water| (reading stopped: slow your producers), 1 when it went
   * back under |low_water|. May be NULL. */
  int (*on_writable)(ws_loop_conn *conn, void *user_data, int writable);
  /* The connection is over: called once for every connection that had
   * on_request or on_open called, or was made by ws_loop_connect(). The
   * pointer is invalid after it returns. During the call only, a
   * connection with WS_CFG_NO_AUTO_CLOSE may still answer the close. */
  int (*on_close)(ws_loop_conn *conn, void *user_data,
                  const ws_loop_close_info *info);
} ws_loop_callbacks;

/*
 * Byte transport between the socket and the core: the seam for TLS
 * (ws_tls_transport() in <ws/ws_mbedtls.h> fills one). The default (NULL)
 * is plain TCP. A transport's read() returns the bytes for the core
 * (plaintext) and its write() takes the core's output; what it puts on
 * and takes off the socket is its own business. Every function returns
 * 0, WS_ERR_WOULDBLOCK (the socket would block: the loop waits for
 * readiness), WS_ERR_EOF (read: orderly end), or a failure:
 * WS_LOOP_ERR_IO with errno set (a socket error), or a negative code of
 * the transport's own (TLS uses -401..-404). A failure ends the
 * connection; on_close gets the code as ws_loop_close_info.error (with
 * sys_errno the errno for WS_LOOP_ERR_IO, else 0) and error()'s text as
 * transport_error. A transport that holds input (decrypted or not) must
 * hand it out on the next read() even when the socket has nothing new:
 * the loop reads again, without waiting for readiness, whenever it
 * resumes reading a connection.
 */
typedef struct ws_loop_transport {
  void *user_data;
  /* A connection starts on connected socket |fd|; |server_name| is the
   * client's host (SNI), NULL for servers. Sets |*pctx|. Returns 0 or a
   * failure (on_close follows for clients). */
  int (*attach)(void *user_data, int fd, ws_role role,
                const char *server_name, void **pctx);
  /* Reads up to |cap| bytes for the core into |buf|, |*pnread| > 0 on 0.
   * The loop reads until WS_ERR_WOULDBLOCK, so bytes buffered inside the
   * transport are never stranded. */
  int (*read)(void *ctx, int fd, uint8_t *buf, size_t cap, size_t *pnread);
  /* Takes up to the |iovcnt| vectors' bytes; |*pnwritten| says how many
   * were taken. |iovcnt| 0 means: flush what you hold. */
  int (*write)(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
               size_t *pnwritten);
  /* Bytes the transport holds for the socket (0 for plain TCP); the loop
   * keeps write interest and calls write(iovcnt 0) while it is nonzero. */
  size_t (*pending)(void *ctx);
  /* The WebSocket is done: queue a closing record (TLS close_notify) if
   * any. The loop flushes it, then shuts the socket down. May be NULL. */
  int (*shutdown)(void *ctx, int fd);
  /* Frees |ctx|. The loop closes the socket. */
  void (*detach)(void *ctx);
  /* Describes the failure that |ctx| last returned, NUL-terminated and
   * valid until the next call on |ctx|; "" or NULL if there is none. May
   * be NULL. Since: 0.1 */
  const char *(*error)(void *ctx);
} ws_loop_transport;

typedef struct ws_loop_config {
  /* ABI: sizeof(ws_loop_config) as the caller's header knew it, set by
   * ws_loop_config_default(); 0 (memset, a designated initializer) means
   * the layout of 0.2. It stays the first field; a later release that
   * appends fields (here or to ws_loop_callbacks) tells the layouts apart
   * by it, and ws_loop_new() refuses a size it does not know with
   * WS_ERR_INVALID_ARGUMENT. See "ABI policy" in README.md. Since: 0.2 */
  uint32_t size;
  ws_loop_callbacks callbacks;
  void *user_data;           /* loop-wide, see ws_loop_user_data() */
  const ws_mem *mem;         /* for the loop and its connections; NULL:
                                malloc */
  uint32_t read_size;        /* the one shared read buffer; 65536 */
  uint32_t high_water;       /* pending output bytes that stop reading;
                                1 MiB */
  uint32_t low_water;        /* ... and that resume it; 256 KiB */
  /* Drop a connection whose pending output stayed above |low_water| for
   * this long, however many bytes trickled out meanwhile (the count
   * restarts only once the queue is down to |low_water|), or, at or under
   * |low_water|, made no progress at all for this long: a reader taking
   * a few KiB now and then is dropped too (since 0.2; before, any byte of
   * progress restarted it). 30000, 0 off */
  uint32_t write_timeout_ms;
  uint32_t linger_ms;        /* server, after the close handshake: wait
                                this long for the peer's FIN; 2000 */
  uint32_t max_post_bytes;   /* payload bytes queued by the ws_loop_post_*
                                functions and not applied yet; 16 MiB */
  /* Every byte the loop and its connections' cores allocate (buffers,
   * messages being assembled or inflated, deflate contexts, output
   * queues) counts toward this; 0: no budget (the default). An
   * allocation that would go over it is refused: when a connection's
   * input asked for it, that connection is closed with 1013 "try again
   * later" (on_close: WS_LOOP_ERR_BUDGET); an application's send gets
   * WS_ERR_NOMEM. While the loop holds more than 90% of it, new
   * requests are answered 503, and sends to a connection whose output is
   * over |high_water| get WS_ERR_WOULDBLOCK (ws_loop_broadcast() skips
   * it): the rest is kept for the connections that read. See
   * ws_loop_memory(). Since: 0.2 */
  uint64_t memory_budget;
  /* A message that has started (its first frame arrived) but not
   * finished within this long, fragments or compressed data still
   * coming, is refused: close 1008 (on_close: WS_LOOP_ERR_SLOW_MESSAGE).
   * It is not counted while the connection is paused or congested (the
   * loop is not reading then). An application streaming long uploads
   * (WS_DELIVER_STREAM) raises it or sets 0. 60000; 0 off. Since: 0.2 */
  uint32_t message_timeout_ms;
  /* Minimum drain rate, bytes per second (0: none, the default): while a
   * connection has output pending, it must have written at least this
   * many bytes per second over each window of write_timeout_ms (counted
   * from when output became pending; a window ends early, and no check
   * is made, when the output drains completely), else it is dropped as
   * stalled (WS_LOOP_ERR_STALLED). Catches readers that trickle just
   * enough to stay under |low_water|. Needs write_timeout_ms.
   * Since: 0.2 */
  uint32_t min_drain_rate;
} ws_loop_config;

/* Fills |cfg| with the defaults above (no callbacks), and |cfg->size|.
 * Since: 0.1 */
WS_LOOP_EXTERN void ws_loop_config_default(ws_loop_config *cfg);

/* Creates a loop with the platform's backend (the library linked in:
 * libws_epoll on Linux). |cfg| is copied. Returns 0, WS_ERR_INVALID_ARGUMENT
 * (e.g. low_water above high_water), WS_LOOP_ERR_IO (the poller could not
 * be made: errno set) or WS_ERR_NOMEM. */
WS_LOOP_EXTERN int ws_loop_new(ws_loop **ploop, const ws_loop_config *cfg);

/* Deletes the loop: every connection is closed at once (on_close is
 * called with WS_LOOP_ERR_ABORTED for those it is owed to) and every
 * listener. NULL is fine. Not from a callback. */
WS_LOOP_EXTERN void ws_loop_del(ws_loop *loop);

/* The loop-wide user data from the config. */
WS_LOOP_EXTERN void *ws_loop_user_data(const ws_loop *loop);

/* ---- listening and connecting ------------------------------------------ */

#define WS_LOOP_REUSEPORT 0x1u /* SO_REUSEPORT: one loop per core */
#define WS_LOOP_V6ONLY 0x2u    /* IPV6_V6ONLY on an IPv6 address */
/* See |max_handshakes| below. Since: 0.2 */
#define WS_LOOP_HANDSHAKE_DISPLACE_MS 500u

typedef struct ws_loop_listen_params {
  const char *host;  /* IPv4 or IPv6 address, or a host name resolved
                        with getaddrinfo() (which blocks; the first of its
                        addresses that binds is used); NULL: 127.0.0.1 */
  uint16_t port;     /* 0: any free port, see |*pport| */
  int backlog;       /* 0: SOMAXCONN */
  uint32_t flags;    /* WS_LOOP_REUSEPORT, WS_LOOP_V6ONLY */
  const ws_config *config; /* server config of each connection (copied);
                              NULL: ws_config_default() with
                              WS_DELIVER_MESSAGE */
  void *user_data;   /* initial user data of each accepted connection */
  const ws_loop_transport *transport; /* NULL: plain TCP. Not copied: it
                                         MUST stay valid as long as the
                                         loop (listeners live as long) */
  /* Caps, 0 = none (the defaults). Over one, a plain connection's request
   * (Upgrade or plain HTTP) is answered 503 with Retry-After, and a
   * connection over a transport (TLS) is closed at once, before any
   * handshake work. |max_conns|: connections of this listener at once;
   * |max_conns_per_ip|: of them, from one peer address;
   * |max_handshakes|: of them, still in their opening handshake (TLS
   * handshake included) at once; at this cap a new connection takes the
   * place of the oldest handshake that has run at least
   * WS_LOOP_HANDSHAKE_DISPLACE_MS and that the application has not heard
   * of (no on_request yet), which is closed at once (told to on_refused
   * as 0 "displaced (max_handshakes)"), so that peers that start
   * handshakes and stall cannot hold the cap against everyone for a
   * whole handshake timeout; it still bounds the handshakes at once, and
   * the handshake work to |max_handshakes| per
   * WS_LOOP_HANDSHAKE_DISPLACE_MS. Since: 0.2 */
  uint32_t max_conns;
  uint32_t max_conns_per_ip;
  uint32_t max_handshakes;
  /* Origin allowlist (RFC 6455 10.2), checked before on_request: see
   * ws_request_origin_allowed() in <ws/ws.h> for the patterns and
   * |origin_flags| (WS_ORIGIN_*). Off when |norigins| and |origin_flags|
   * are both 0. A refused request is answered 403. The strings are not
   * copied: they MUST stay valid as long as the loop. Since: 0.2 */
  const char *const *origins;
  size_t norigins;
  uint32_t origin_flags;
  /* Compression context (RFC 7692 7.1.1): a connection that keeps its
   * deflate context between messages holds up to ~2^window_bits bytes
   * per direction plus the compressor's tables for its whole life (~64 +
   * 64 KiB at 15 bits), one that does not only while a message is in
   * flight. At most |max_pmd_context| connections of this listener keep
   * one (0: no limit): later ones negotiate server_no_context_takeover
   * and client_no_context_takeover. Since: 0.2 */
  uint32_t max_pmd_context;
} ws_loop_listen_params;

/*
 * Listens. |*pport| (may be NULL) gets the bound port. During a graceful
 * shutdown, new Upgrade requests are rejected with 503. Returns 0,
 * WS_ERR_INVALID_ARGUMENT (bad address, a name that does not resolve,
 * or a bad config), WS_LOOP_ERR_IO (bind, listen: errno set, e.g.
 * EADDRINUSE) or WS_ERR_NOMEM.
 */
WS_LOOP_EXTERN int ws_loop_listen(ws_loop *loop,
                                  const ws_loop_listen_params *params,
                                  uint16_t *pport);

/*
 * Listens on |fd|, a listening TCP socket made by someone else: systemd
 * socket activation (LISTEN_FDS, descriptors from 3 on), or an old
 * process handing its socket to a new one. |params| (may be NULL: the
 * defaults) is used as by ws_loop_listen(), but for host, port, backlog
 * and flags, which are the socket's own. The socket is made
 * non-blocking and close-on-exec. On success the loop owns |fd| and
 * closes it with its listeners; on failure it is left to the caller,
 * open. |*pport| (may be NULL) gets
 * its port. During a graceful shutdown such a listener does not hold
 * the drain open (see ws_loop_shutdown()): whoever passed it keeps it
 * and its queued connections for the next process. Returns 0,
 * WS_ERR_INVALID_ARGUMENT (|fd| is not a listening stream socket, or a
 * bad config), WS_LOOP_ERR_IO (errno set) or WS_ERR_NOMEM. Since: 0.2
 */
WS_LOOP_EXTERN int ws_loop_listen_fd(ws_loop *loop, int fd,
                                     const ws_loop_listen_params *params,
                                     uint16_t *pport);

/*
 * A connection the loop refused by itself, before the application heard
 * of it, for a connection log (see ws_loop_set_on_refused()). |status|
 * and |reason| say why:
 *
 *   400, 405, 426, 431   the request head was malformed, too large
 *                        (431), not a GET (405), not an Upgrade while
 *                        there is no on_http, or not version 13 (426);
 *                        |reason| is the core's text ("malformed request
 *                        line", "method is not GET", "request head too
 *                        large", "Upgrade: websocket missing", ...)
 *   503 "draining"       a graceful shutdown is under way
 *   0 "draining"         ... and the connection had sent no byte of a
 *                        request when it began
 *   503 "over max_conns", "over max_conns_per_ip", "over max_handshakes"
 *                        a cap of the listener
 *   503 "memory budget"  the loop holds over 90% of memory_budget
 *   0 "displaced (max_handshakes)"  a handshake stalled at the
 *                        |max_handshakes| cap, closed for a newer one
 *   403 "origin not allowed"  the listener's Origin allowlist
 *   500 "out of memory" or "memory budget"  no on_request, and the
 *                        accept could not be made
 *   0                    no HTTP answer: the connection is closed at
 *                        once. Over a cap with a transport (TLS), or
 *                        with too many others waiting for their 503 (the
 *                        cap's text); out of memory at accept or while
 *                        the request head came in ("out of memory", or
 *                        "memory budget" when it was the budget's doing)
 *
 * Fields are only ever added at the end; |size| is the library's
 * sizeof(ws_loop_refusal), so a program built against a later header
 * reads a field only if |size| covers it. Since: 0.2
 */
typedef struct ws_loop_refusal {
  uint32_t size;
  int status;          /* the HTTP status answered, or 0 (above) */
  const char *reason;  /* NUL-terminated; valid during the call */
  const char *peer;    /* "1.2.3.4:5" or "[::1]:5"; "" if unknown */
  /* The parsed request (path, Origin, Host, headers; see ws_request in
   * <ws/ws.h>), for a refusal after the head was parsed (the 503s, 403,
   * 500); NULL otherwise. Borrowed for the call. */
  const ws_request *request;
  void *listener_user_data; /* ws_loop_listen_params.user_data */
} ws_loop_refusal;

/* Returns 0, or a negative value that stops the loop (ws_loop_run()
 * returns it), as the callbacks of ws_loop_callbacks. */
typedef int (*ws_loop_refused_fn)(ws_loop *loop, void *user_data,
                                  const ws_loop_refusal *refusal);

/*
 * Sets the function called for each connection the loop refuses by
 * itself (the kinds at ws_loop_refusal), with |user_data|; |fn| NULL
 * turns it off (the default). It is called once per refused connection,
 * on the loop's thread, before the connection is closed (its answer may
 * still be on the way). It is never called for a connection that
 * reached on_request or on_http: a refusal of the application's own
 * (ws_loop_reject(), a 404 after on_http) is the application's to log,
 * and so is the 503 the loop answers during a shutdown to a request
 * that on_request paused (on_close follows for that one). It may call
 * the loop's functions as any callback may. Since: 0.2
 */
WS_LOOP_EXTERN void ws_loop_set_on_refused(ws_loop *loop,
                                           ws_loop_refused_fn fn,
                                           void *user_data);

/*
 * A client that comes back (ws_loop_connect_params.reconnect): after a
 * close with 1001, 1006 (no close frame: the transport ended or failed),
 * 1011, 1012, 1013 or 1014, after a failed connect (refused, timed out,
 * a TLS failure) and after a 5xx answer, the loop connects again after a
 * random delay in [0, bound] ("full jitter"). The bound starts at
 * |initial_ms|, is multiplied by |multiplier_pct| / 100 after each
 * attempt that did not stay up, up to |max_ms|, and goes back to
 * |initial_ms| once a connection has stayed open |reset_after_ms|. No
 * new attempt follows a close with any other code (1000 "normal", 1005,
 * 1002, 4000-4999 ...), a 4xx answer, ws_loop_del(), the loop's graceful
 * shutdown, or ws_loop_conn_reconnect_stop(). A zero field takes its
 * default. Since: 0.2
 */
typedef struct ws_loop_reconnect {
  uint32_t initial_ms;     /* 500 */
  uint32_t max_ms;         /* 30000 */
  uint32_t multiplier_pct; /* 200: the bound doubles */
  uint32_t reset_after_ms; /* 10000 */
  uint32_t max_attempts;   /* attempts in a row that do not stay up; 0:
                              no limit */
} ws_loop_reconnect;

typedef struct ws_loop_connect_params {
  const char *host; /* name or address; a name is resolved with
                       getaddrinfo(), which blocks */
  uint16_t port;
  /* The opening request: path, origin, subprotocols, headers. Its |host|
   * and |port| default to the ones above (port omitted when 80). */
  ws_client_params request;
  const ws_config *config; /* client config (copied); NULL: defaults, with
                              WS_DELIVER_MESSAGE. A NULL |rand| gets the
                              system's random source, through a pool of
                              the loop's (one getrandom(2) per 32 masking
                              keys; a key handed out is wiped) */
  void *user_data;         /* the connection's user data */
  const ws_loop_transport *transport; /* NULL: plain TCP. Not copied: it
                                         MUST stay valid until on_close
                                         returns (with |reconnect|: until
                                         the last attempt's on_close) */
  /* NULL: one attempt. Else the loop reconnects as described at
   * ws_loop_reconnect; everything here is copied for the later attempts
   * (strings and arrays included). Each attempt is a new connection with
   * the same user data: on_open for each open, on_close for each end
   * (ws_loop_conn_reconnect_delay() says there whether and when the next
   * attempt starts). An attempt whose connect fails at once (a name that
   * no longer resolves) is retried silently. Since: 0.2 */
  const ws_loop_reconnect *reconnect;
} ws_loop_connect_params;

/*
 * Starts a client connection: resolves |host|, connects (non-blocking,
 * each address in turn) and sends the opening request. The core's
 * handshake timeout covers the TCP connect too. Afterwards on_open, or
 * on_close with the reason it failed (WS_LOOP_ERR_IO for a refused
 * connection, WS_ERR_REJECTED with |http_status| for a non-101 answer).
 * Returns 0 and sets |*pconn| (may be NULL), or WS_ERR_INVALID_ARGUMENT,
 * WS_LOOP_ERR_RESOLVE, WS_LOOP_ERR_IO or WS_ERR_NOMEM (no callback
 * follows then).
 */
WS_LOOP_EXTERN int ws_loop_connect(ws_loop *loop,
                                   const ws_loop_connect_params *params,
                                   ws_loop_conn **pconn);

/* In on_close of a connection made with |reconnect|: returns 1 and sets
 * |*pdelay_ms| (may be NULL) to the delay after which the next attempt
 * starts, or returns 0 if none will. 0 for any other connection or
 * outside on_close. Since: 0.2 */
WS_LOOP_EXTERN int ws_loop_conn_reconnect_delay(const ws_loop_conn *conn,
                                                uint32_t *pdelay_ms);

/* Ends reconnecting for the connection |conn| came from (made with
 * |reconnect|): no attempt follows its end. Also in on_close, where it
 * cancels the attempt ws_loop_conn_reconnect_delay() announced.
 * Since: 0.2 */
WS_LOOP_EXTERN void ws_loop_conn_reconnect_stop(ws_loop_conn *conn);

/* A parsed ws:// or wss:// URL. |path| points into the URL (or is "/"). */
typedef struct ws_loop_url {
  int secure;      /* 1 for wss:// */
  char host[256];  /* NUL-terminated, IPv6 without brackets */
  uint16_t port;   /* 80 / 443 when absent */
  const char *path;
} ws_loop_url;

/* Parses |url|. Returns 0 or WS_ERR_INVALID_ARGUMENT. */
WS_LOOP_EXTERN int ws_loop_parse_url(const char *url, ws_loop_url *purl);

/* ---- running -------------------------------------------------------------- */

/*
 * Runs until ws_loop_stop(), the end of a graceful shutdown, a callback's
 * negative return, or until there is nothing left (no listener, no
 * connection). Returns 0, that callback's value, or WS_LOOP_ERR_IO if the
 * poller failed.
 */
WS_LOOP_EXTERN int ws_loop_run(ws_loop *loop);

/* One round: waits up to |timeout_ms| (-1: until something happens) and
 * handles what is ready. Returns as ws_loop_run(), plus 1 if the loop has
 * nothing left or was stopped. */
WS_LOOP_EXTERN int ws_loop_run_once(ws_loop *loop, int timeout_ms);

/* Any thread, and async-signal-safe: makes ws_loop_run() return soon.
 * Connections stay as they are. */
WS_LOOP_EXTERN void ws_loop_stop(ws_loop *loop);

/*
 * Any thread, and async-signal-safe: graceful shutdown. The loop stops
 * accepting upgrades (new requests get 503), sends close |code| (1001
 * "going away" if 0, or 1012 "service restart") to every open connection
 * at a random moment within |spread_ms| (so clients do not all come back
 * at once), waits up to |drain_ms| for the close handshakes, drops what
 * is left (WS_LOOP_ERR_SHUTDOWN), closes the listeners and makes
 * ws_loop_run() return 0. A request the application holds (on_request
 * paused) is answered 503; an accepted connection that has not sent a
 * byte of a request yet (a browser's speculative connection) is closed
 * at once (on_refused: 0 "draining"), so it does not hold the drain
 * open to its deadline.
 *
 * The listening sockets stay open, and new connections are answered 503
 * (with Retry-After), until |drain_ms| has passed, even once every
 * connection has closed: a proxy in front (nginx with proxy_next_upstream
 * http_503) retries another server instead of meeting a refused
 * connection. The drain ends earlier, as soon as every connection has
 * closed, only when every listener was handed over (ws_loop_listen_fd():
 * systemd keeps the socket and its queue for the next process).
 */
WS_LOOP_EXTERN void ws_loop_shutdown(ws_loop *loop, uint16_t code,
                                     uint32_t spread_ms, uint32_t drain_ms);

/* The loop's clock (monotonic milliseconds), as given to the core. */
WS_LOOP_EXTERN uint64_t ws_loop_now(const ws_loop *loop);

/* Connections the loop holds (any state). */
WS_LOOP_EXTERN size_t ws_loop_conn_count(const ws_loop *loop);

/* Bytes the loop and its connections hold now, and the most they held
 * at once (either pointer may be NULL). Counted whether or not a
 * memory_budget is set; allocation headers included. Since: 0.2 */
WS_LOOP_EXTERN void ws_loop_memory(const ws_loop *loop, uint64_t *pnow,
                                   uint64_t *ppeak);
/* Closes the listening sockets now (for a graceful restart: a new
 * process bound with WS_LOOP_REUSEPORT takes every new connection while
 * this one drains its own). Open connections go on; ws_loop_run()
 * returns once none is left. Since: 0.2 */
WS_LOOP_EXTERN void ws_loop_close_listeners(ws_loop *loop);

/* ---- connections (loop thread) ------------------------------------------- */

/* Server: answers a request (see on_request): ws_conn_accept() and
 * ws_conn_reject() with the loop doing the rest. Same returns. */
WS_LOOP_EXTERN int ws_loop_accept(ws_loop_conn *conn,
                                  const ws_accept_params *params);
WS_LOOP_EXTERN int ws_loop_reject(ws_loop_conn *conn, int status,
                                  const ws_kv *headers, size_t nheaders,
                                  const void *body, size_t bodylen);

/* Server: answers an on_http request with |status| (200..599), extra
 * |headers| (a Content-Type, say) and |body| (copied): ws_conn_respond(),
 * which adds Content-Length and "Connection: close" and sends no body to
 * HEAD. Returns 0, WS_ERR_INVALID_STATE (not an HTTP request or answered
 * already), WS_ERR_INVALID_ARGUMENT, or WS_ERR_NOMEM. */
WS_LOOP_EXTERN int ws_loop_http_respond(ws_loop_conn *conn, int status,
                                        const ws_kv *headers, size_t nheaders,
                                        const void *body, size_t bodylen);

/*
 * Queues a message (as ws_conn_send(): |data| is copied) and schedules
 * the write. Returns 0; WS_ERR_WOULDBLOCK when the core's output queue
 * (max_out_queue) cannot take it now (retry after on_writable, or return
 * WS_LOOP_PAUSE from on_message); WS_ERR_INVALID_STATE when the
 * connection is not open or is closing; or as ws_conn_send().
 */
WS_LOOP_EXTERN int ws_loop_send(ws_loop_conn *conn, ws_opcode opcode,
                                const void *data, size_t len, uint32_t flags);

/* Queues a ping, or starts the close handshake; as ws_conn_ping() and
 * ws_conn_close(). */
WS_LOOP_EXTERN int ws_loop_ping(ws_loop_conn *conn, const void *data,
                                size_t len);
/* Queues an unsolicited pong (RFC 6455 5.5.3: a unidirectional
 * heartbeat); as ws_conn_pong(). Since: 0.2 */
WS_LOOP_EXTERN int ws_loop_pong(ws_loop_conn *conn, const void *data,
                                size_t len);
WS_LOOP_EXTERN int ws_loop_close(ws_loop_conn *conn, uint16_t code,
                                 const void *reason, size_t reasonlen);

/* Sends a message to every open connection except |except| (may be
 * NULL). A connection whose output queue cannot take it is skipped, and
 * so (since 0.2) is one in the middle of a fragmented message of its
 * own. The message is framed once, and compressed once for all the
 * connections that negotiated the same window where the server keeps no
 * deflate context (ws_conn_send_prepared()); |data| is copied. Sets
 * |*pnsent| (may be NULL) to the number that took it. Returns 0 or
 * WS_ERR_INVALID_ARGUMENT. */
WS_LOOP_EXTERN int ws_loop_broadcast(ws_loop *loop, ws_opcode opcode,
                                     const void *data, size_t len,
                                     const ws_loop_conn *except,
                                     size_t *pnsent);

/* Ends a pause (WS_LOOP_PAUSE): the kept event is delivered again, then
 * reading goes on. Harmless if not paused. */
WS_LOOP_EXTERN void ws_loop_resume(ws_loop_conn *conn);

/* A 64-bit id, unique within the loop and never reused, for the
 * ws_loop_post_* functions. */
WS_LOOP_EXTERN uint64_t ws_loop_conn_id(const ws_loop_conn *conn);
WS_LOOP_EXTERN ws_loop *ws_loop_conn_loop(const ws_loop_conn *conn);
WS_LOOP_EXTERN void *ws_loop_conn_user_data(const ws_loop_conn *conn);
WS_LOOP_EXTERN void ws_loop_conn_set_user_data(ws_loop_conn *conn, void *ud);
/* The core connection, for queries (ws_conn_state, ws_conn_protocol,
 * ws_conn_pmd, ws_conn_stats). Send through ws_loop_send() so the loop
 * knows there is output. */
WS_LOOP_EXTERN ws_conn *ws_loop_conn_ws(const ws_loop_conn *conn);
/* Pending output bytes (core queue and transport). */
WS_LOOP_EXTERN size_t ws_loop_conn_pending(const ws_loop_conn *conn);
/* Writes the peer's address as "1.2.3.4:5" or "[::1]:5" into |buf|
 * (NUL-terminated, truncated to |buflen|). */
WS_LOOP_EXTERN void ws_loop_conn_peer(const ws_loop_conn *conn, char *buf,
                                      size_t buflen);

/*
 * Stops reading |conn| (|on| 1) or starts again (|on| 0), from the
 * application: for a relay whose other side is over its high-water mark
 * (see on_writable). Events already parsed wait, and so do the core's
 * timers, as with WS_LOOP_PAUSE; input stays in the socket, so the peer
 * feels the backpressure. Returns 0, WS_ERR_INVALID_STATE (the connection
 * is ending, or paused by WS_LOOP_PAUSE with an event kept: that pause
 * ends with ws_loop_resume()), WS_ERR_INVALID_ARGUMENT or WS_ERR_NOMEM.
 * Since: 0.2
 */
WS_LOOP_EXTERN int ws_loop_conn_pause_reading(ws_loop_conn *conn, int on);

/*
 * Client: the server's 101 answer (status, headers: Set-Cookie and the
 * like), during on_open, and while the connection's open event is kept:
 * after on_open returned WS_LOOP_PAUSE, until ws_loop_resume() delivers
 * it again (run the code that needs it from ws_loop_post_call(), say,
 * then resume). The answer and its slices are borrowed from the core,
 * valid until then. NULL at any other time, and for a server connection. (A relay
 * uses it to pass the upstream's headers on to its own client before
 * accepting it.) Since: 0.2
 */
WS_LOOP_EXTERN const ws_response *
ws_loop_conn_response(const ws_loop_conn *conn);

/*
 * The context |conn|'s transport made in attach() (its |*pctx|), or NULL
 * for a connection not attached yet or over. For an application that
 * brings its own transport (say, one wrapping TLS or TCP that watches
 * the bytes) and must reach that connection's part of it. The plain TCP
 * transport's context is the loop's own: not the application's to use.
 * Since: 0.2
 */
WS_LOOP_EXTERN void *ws_loop_conn_transport_ctx(const ws_loop_conn *conn);

/* ---- from other threads --------------------------------------------------- */

/*
 * Any thread: queues a message for connection |id| (0: every open
 * connection, as ws_loop_broadcast()), copying |data|, and wakes the loop,
 * which sends it on its own thread. Messages posted to one connection go
 * out in the order posted; one its output queue cannot take yet waits for
 * room. Returns 0, WS_ERR_WOULDBLOCK (max_post_bytes are already
 * waiting: retry later), WS_ERR_TOO_BIG (over max_post_bytes on its own),
 * WS_ERR_INVALID_ARGUMENT or WS_ERR_NOMEM. A connection gone by
 * the time the loop gets to it is skipped silently.
 */
WS_LOOP_EXTERN int ws_loop_post_send(ws_loop *loop, uint64_t id,
                                     ws_opcode opcode, const void *data,
                                     size_t len, uint32_t flags);

/* Any thread: starts the close handshake of connection |id| with |code|
 * and the NUL-terminated |reason| (may be NULL). Returns 0,
 * WS_ERR_INVALID_ARGUMENT, WS_ERR_WOULDBLOCK (the reason does not fit
 * in max_post_bytes now: retry later) or WS_ERR_NOMEM. */
WS_LOOP_EXTERN int ws_loop_post_close(ws_loop *loop, uint64_t id,
                                      uint16_t code, const char *reason);

/* Any thread: runs |fn(loop, arg)| on the loop's thread, in post order. */
WS_LOOP_EXTERN int ws_loop_post_call(ws_loop *loop,
                                     void (*fn)(ws_loop *loop, void *arg),
                                     void *arg);

/* ---- helpers ---------------------------------------------------------------- */

/* A ws_rand_fn over the system's random source (getrandom(2) or
 * arc4random_buf). */
WS_LOOP_EXTERN int ws_loop_rand(uint8_t *buf, size_t len, void *user_data);

/* Describes a WS_ERR_* or WS_LOOP_ERR_* code. */
WS_LOOP_EXTERN const char *ws_loop_strerror(int err);

/* ---- totals ------------------------------------------------------------ */

/*
 * What a loop has done since it was created: every connection it
 * accepted or started, and the ws_conn_stats counters of all of them,
 * the closed ones and those open now. Fields are only ever added at the
 * end: ws_loop_stats_get() fills the first |size| bytes, so a program
 * built against an older, smaller struct keeps working. Since: 0.2
 */
typedef struct ws_loop_stats {
  uint64_t accepted;          /* server connections accepted */
  uint64_t connected;         /* client connections started (ws_loop_connect) */
  uint64_t closed;            /* connections ended (both kinds) */
  uint64_t open;              /* connections held now (ws_loop_conn_count) */
  uint64_t msgs_in, msgs_out; /* data messages (ws_stats) */
  uint64_t bytes_in, bytes_out; /* data payload bytes */
  uint64_t wire_in, wire_out;   /* all bytes, handshakes included */
} ws_loop_stats;

/* Fills |pstats| (|size| = sizeof(*pstats), at most sizeof(ws_loop_stats)
 * bytes are written) with the loop's totals. Loop thread; costs one pass
 * over the open connections. Since: 0.2 */
WS_LOOP_EXTERN void ws_loop_stats_get(const ws_loop *loop,
                                      ws_loop_stats *pstats, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* WS_WS_LOOP_H */
