/*
 * libws - an embeddable, sans-IO RFC 6455 WebSocket library.
 * SPDX-License-Identifier: MIT
 *
 * This header is the whole core API. The core does no I/O, reads no clock,
 * has no global state and allocates only through the injected allocator.
 *
 * The caller's loop, in short:
 *
 *   read bytes -> ws_conn_feed() -> ws_conn_next_event() until WOULDBLOCK
 *   ws_conn_send()/ping()/close() queue frames
 *   ws_conn_out_peek() -> write() -> ws_conn_out_consume(n)
 *   ws_conn_tick(now) whenever ws_conn_next_deadline() passes
 *
 * Pointer lifetimes are written next to every function. Slices handed
 * out in events are borrowed: those into the fed buffer stay valid as long
 * as the caller keeps that buffer; those into connection buffers (whole
 * messages, split control payloads, handshake data) stay valid until the
 * next ws_conn_feed(), ws_conn_feed_eof(), ws_conn_next_event(),
 * ws_conn_tick() or ws_conn_del() on the same connection. Sending an
 * event's data back with ws_conn_send() is therefore fine (an echo).
 */
#ifndef WS_WS_H
#define WS_WS_H

#include <stddef.h>
#include <stdint.h>

#include <ws/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WS_STATICLIB)
#  define WS_EXTERN
#elif defined(_WIN32)
#  ifdef BUILDING_WS
#    define WS_EXTERN __declspec(dllexport)
#  else
#    define WS_EXTERN __declspec(dllimport)
#  endif
#elif defined(BUILDING_WS) && defined(__GNUC__) && __GNUC__ >= 4
#  define WS_EXTERN __attribute__((visibility("default")))
#else
#  define WS_EXTERN
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/*
 * Every function returning int returns 0 on success or one of these
 * negative codes. WS_ERR_WOULDBLOCK is a status, never a failure.
 * Codes at or below WS_ERR_FATAL mean the connection cannot be used any
 * more (ws_err_is_fatal()).
 */
typedef enum ws_error {
  WS_OK = 0,
  /* status */
  WS_ERR_WOULDBLOCK = -1, /* nothing to do now: no event, queue full */
  /* API misuse */
  WS_ERR_INVALID_ARGUMENT = -101,
  WS_ERR_INVALID_STATE = -102, /* e.g. send after close */
  /* peer errors; each closes the connection with the code in brackets */
  WS_ERR_PROTO = -201,       /* protocol violation [1002] */
  WS_ERR_UTF8 = -202,        /* invalid UTF-8 in text or reason [1007] */
  WS_ERR_TOO_BIG = -203,     /* over a size limit [1009] */
  WS_ERR_HANDSHAKE = -204,   /* invalid opening handshake (HTTP error) */
  WS_ERR_REJECTED = -205,    /* client: server answered other than 101 */
  WS_ERR_EXTENSION = -206,   /* client: extension response not allowed */
  WS_ERR_TIMEOUT = -207,     /* a timer ran out (pong, close, handshake) */
  WS_ERR_EOF = -208,         /* transport ended without close [1006] */
  WS_ERR_CLOSED = -209,      /* the connection is closed */
  WS_ERR_POLICY = -210,      /* reserved for local rate/count limits
                                [1008]; no function returns it yet */
  WS_ERR_DATA = -211,        /* invalid compressed data [1007] */
  /* fatal */
  WS_ERR_FATAL = -500,
  WS_ERR_NOMEM = -501,
  WS_ERR_INTERNAL = -502
} ws_error;

/* Returns a static, human-readable description of |err|. */
WS_EXTERN const char *ws_strerror(int err);

/* Returns nonzero if |err| is fatal (<= WS_ERR_FATAL). */
WS_EXTERN int ws_err_is_fatal(int err);

/* Returns the runtime library version as 0xMMmmpp. */
WS_EXTERN uint32_t ws_version(void);

/* ------------------------------------------------------------------ */
/* Basic types                                                         */
/* ------------------------------------------------------------------ */

/* A borrowed byte range. Never NUL-terminated unless documented. */
typedef struct ws_slice {
  const uint8_t *base;
  size_t len;
} ws_slice;

/* A header as received: name and value with surrounding whitespace
 * removed. Both are borrowed. */
typedef struct ws_header {
  ws_slice name;
  ws_slice value;
} ws_header;

/* A header to send: NUL-terminated strings owned by the caller, read
 * during the call only. Values must not contain CR or LF. */
typedef struct ws_kv {
  const char *name;
  const char *value;
} ws_kv;

/* Injected allocator. A NULL ws_mem, or one whose three functions are
 * all NULL, means the C library's malloc/realloc/free (not available in
 * WS_FREESTANDING builds). One with only some of them set cannot be
 * mixed with the C library's and is refused (WS_ERR_INVALID_ARGUMENT). */
typedef struct ws_mem {
  void *user_data;
  void *(*malloc)(size_t size, void *user_data);
  void *(*realloc)(void *ptr, size_t size, void *user_data);
  void (*free)(void *ptr, void *user_data);
} ws_mem;

/* Injected randomness: fill |buf| with |len| unpredictable bytes and
 * return 0, or return nonzero on failure (the operation that needed it
 * then fails with WS_ERR_INTERNAL). Used for client mask keys and the
 * Sec-WebSocket-Key. Servers never call it. */
typedef int (*ws_rand_fn)(uint8_t *buf, size_t len, void *user_data);

/* ------------------------------------------------------------------ */
/* Frame codec (RFC 6455 section 5), usable without a connection        */
/* ------------------------------------------------------------------ */

typedef enum ws_opcode {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
} ws_opcode;

#define WS_RSV1 0x4u
#define WS_RSV2 0x2u
#define WS_RSV3 0x1u

/* Largest frame header: 2 + 8 (64-bit length) + 4 (mask key). */
#define WS_FRAME_HEADER_MAX 14
/* RFC 6455 5.5: control frame payloads are at most 125 bytes. */
#define WS_CONTROL_MAX 125

typedef struct ws_frame_header {
  uint8_t fin;        /* 1 if FIN is set */
  uint8_t rsv;        /* RSV1..3 as WS_RSV1|WS_RSV2|WS_RSV3 */
  uint8_t opcode;     /* ws_opcode value, possibly reserved */
  uint8_t masked;     /* 1 if the MASK bit is set */
  uint8_t mask[4];    /* the masking key when masked */
  uint64_t payload_len;
} ws_frame_header;

/*
 * Decodes a frame header from |in|. Syntax only: it rejects just what can
 * never be valid (a 64-bit length with the top bit set, RFC 6455 5.2).
 * Returns 0 and sets |*pnread| to the header size (2..14), or
 * WS_ERR_WOULDBLOCK if |inlen| is too short, or WS_ERR_PROTO.
 */
WS_EXTERN int ws_frame_decode_header(ws_frame_header *hd, const uint8_t *in,
                                     size_t inlen, size_t *pnread);

/*
 * Checks a decoded header against every RFC 6455 section 5 rule that
 * does not depend on message state: masking direction by role
 * (|is_server| nonzero: frames must be masked), RSV bits not in
 * |rsv_allowed|, reserved opcodes, control frames over 125 bytes or
 * fragmented. |rsv_allowed| applies to data frames only. Returns 0 or
 * WS_ERR_PROTO.
 */
WS_EXTERN int ws_frame_check_header(const ws_frame_header *hd, int is_server,
                                    unsigned rsv_allowed);

/*
 * Encodes a header into |out|, which MUST hold WS_FRAME_HEADER_MAX bytes,
 * using the shortest length encoding. The mask key is written when
 * |hd->masked|. Returns the number of bytes written (2..14).
 */
WS_EXTERN size_t ws_frame_encode_header(uint8_t *out,
                                        const ws_frame_header *hd);

/*
 * XORs |len| bytes of |buf| in place with |key|, starting at key offset
 * |offset| (0..3, the number of payload bytes already masked mod 4).
 * Returns the offset to pass for the next chunk. Any alignment works.
 */
WS_EXTERN size_t ws_mask(uint8_t *buf, size_t len, const uint8_t key[4],
                         size_t offset);

/* ------------------------------------------------------------------ */
/* UTF-8 validation, usable without a connection                       */
/* ------------------------------------------------------------------ */

/* Incremental validator state; zero-initialise (or ws_utf8_init) to
 * start. It carries partial sequences across calls. */
typedef struct ws_utf8 {
  uint32_t state;
} ws_utf8;

WS_EXTERN void ws_utf8_init(ws_utf8 *u);

/*
 * Validates |len| more bytes. Returns 0 if everything so far is valid or
 * a valid prefix (a sequence may be incomplete), or WS_ERR_UTF8 as soon
 * as a byte cannot continue any valid sequence: overlongs, surrogates,
 * code points above U+10FFFF and stray continuation bytes are caught at
 * the first byte that proves them invalid. The state stays failed.
 */
WS_EXTERN int ws_utf8_feed(ws_utf8 *u, const uint8_t *buf, size_t len);

/* Returns 0 if the input so far ends on a character boundary, or
 * WS_ERR_UTF8 if it ends inside a sequence or has failed. */
WS_EXTERN int ws_utf8_finish(const ws_utf8 *u);

/* One-shot check of a whole buffer. Returns 0 or WS_ERR_UTF8. */
WS_EXTERN int ws_utf8_validate(const uint8_t *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Handshake helpers, usable without a connection                      */
/* ------------------------------------------------------------------ */

/* Writes base64(SHA-1(key || "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
 * (RFC 6455 4.2.2) into |out|: 28 characters, no NUL. */
WS_EXTERN void ws_handshake_accept_key(const uint8_t *key, size_t keylen,
                                       char out[28]);

/*
 * Iterates a comma-separated HTTP list (RFC 7230 7): returns 1 and sets
 * |*ptoken| to the next non-empty element, trimmed of whitespace, and
 * advances |*plist|; returns 0 at the end. Quoted strings are skipped
 * intact, so commas inside them do not split.
 */
WS_EXTERN int ws_list_next(ws_slice *plist, ws_slice *ptoken);

/* Case-insensitive comparison of a slice with a NUL-terminated ASCII
 * string. Returns 1 if equal. */
WS_EXTERN int ws_slice_ieq(ws_slice s, const char *str);

/* A parsed request (server role): an opening handshake (WS_EV_REQUEST)
 * or, with WS_CFG_HTTP, a plain HTTP request (WS_EV_HTTP). Every slice
 * borrows the connection's handshake buffer: valid until
 * ws_conn_accept(), ws_conn_reject() or ws_conn_respond() returns or the
 * connection is deleted. */
typedef struct ws_request {
  ws_slice method;
  ws_slice target;   /* request-target as sent: path and query */
  ws_slice path;     /* target up to '?' */
  ws_slice query;    /* after '?', without it; empty if none */
  ws_slice host;     /* Host header value */
  ws_slice origin;   /* Origin header value; base NULL if absent */
  ws_slice key;      /* Sec-WebSocket-Key; empty for plain HTTP */
  const ws_header *headers; /* all headers, in order */
  size_t nheaders;
  int version;       /* HTTP version as 10 * major + minor: 10, 11. Since: 0.2 */
} ws_request;

/*
 * Looks up the |index|-th (0-based) header named |name| (case-insensitive)
 * in |req|. Returns 1 and sets |*pvalue|, or 0 if there is none.
 */
WS_EXTERN int ws_request_header(const ws_request *req, const char *name,
                                size_t index, ws_slice *pvalue);

/* The |index|-th subprotocol offered in any Sec-WebSocket-Protocol header.
 * Returns 1 and sets |*pproto|, or 0 past the end. */
WS_EXTERN int ws_request_protocol(const ws_request *req, size_t index,
                                  ws_slice *pproto);

/* The |index|-th extension offer (name and its ;parameters, raw) in any
 * Sec-WebSocket-Extensions header. Returns 1 or 0 past the end. */
WS_EXTERN int ws_request_extension(const ws_request *req, size_t index,
                                   ws_slice *pext);

/* A parsed handshake response (client role). Slices borrow the
 * connection's handshake buffer: valid until the next call on the
 * connection after the event that carries it. */
typedef struct ws_response {
  int status;          /* HTTP status code */
  ws_slice reason;     /* reason phrase */
  ws_slice protocol;   /* selected subprotocol; len 0 if none */
  ws_slice extensions; /* Sec-WebSocket-Extensions; len 0 if none */
  const ws_header *headers;
  size_t nheaders;
} ws_response;

/* ------------------------------------------------------------------ */
/* Connection                                                          */
/* ------------------------------------------------------------------ */

typedef struct ws_conn ws_conn;

typedef enum ws_role { WS_ROLE_SERVER = 0, WS_ROLE_CLIENT = 1 } ws_role;

/* How received message data is delivered. */
typedef enum ws_delivery {
  /* Chunks as they arrive, borrowing the fed buffer: no copy, bounded
   * memory, any message size up to max_message. */
  WS_DELIVER_STREAM = 0,
  /* Whole messages, assembled in a connection buffer up to max_message. */
  WS_DELIVER_MESSAGE = 1
} ws_delivery;

/* ws_config.flags */
#define WS_CFG_NO_AUTO_PONG 0x1u  /* do not answer pings automatically */
#define WS_CFG_NO_AUTO_CLOSE 0x2u /* do not echo a received close */
/* Server: a request without "Upgrade: websocket" (a page, a health check)
 * is handed to the application as WS_EV_HTTP, to be answered with
 * ws_conn_respond(), instead of being refused with 400. It is parsed by
 * the same parser, under the same limits. Since: 0.2 */
#define WS_CFG_HTTP 0x4u
/* Keep the output queue's buffer when it drains, and the whole-message
 * buffer after its event, while each is at most WS_KEEP_BUFFER_MAX bytes,
 * instead of freeing them: a server that answers every message (an echo,
 * a chat relay) then allocates nothing per message. The price is up to
 * twice WS_KEEP_BUFFER_MAX bytes held by a connection that has sent or
 * assembled a message, even while idle. Since: 0.2 */
#define WS_CFG_KEEP_BUFFERS 0x8u
#define WS_KEEP_BUFFER_MAX 4096u
/* Server, permessage-deflate: never let the client compress with more
 * than we do, so that what we send back is not many times what we
 * received. Without it, a client that asks us for server_max_window_bits=8
 * and sends a 1 KiB random block repeated (~170:1 at its window of 15)
 * gets an echo ~170 times the bytes it sent, since a 256-byte window
 * cannot find the repeats. With it, an offer is taken only with
 *   client_max_window_bits=N  N no larger than the server_max_window_bits
 *                             granted, whenever that is below 15 (RFC 7692
 *                             7.1.2.2); an offer without
 *                             client_max_window_bits cannot be held to
 *                             it, and is declined (7.1.2.1 lets a server
 *                             decline a server_max_window_bits it does
 *                             not support), and so is one that would
 *                             have to be held to 8 without offering
 *                             client_max_window_bits=8 itself (zlib, in
 *                             most clients, cannot compress with 8);
 *   client_no_context_takeover  whenever server_no_context_takeover is
 *                             granted (7.1.1.2: the server may ask it).
 * A client that asks nothing smaller than our configuration is answered
 * as without it. For a public server; Autobahn's cases 13.x expect the
 * plain answers. Since: 0.2 */
#define WS_CFG_PMD_SYMMETRIC 0x10u

/*
 * permessage-deflate (RFC 7692), the |pmd| member of ws_config. Off
 * unless |enable| is set. The DEFLATE codec is built in (no zlib).
 *
 * Server role: the first acceptable offer in the request is taken (an
 * offer with an unknown or repeated parameter or an invalid value is
 * declined, never fatal); the response then carries
 *   server_no_context_takeover  if offered, or if set here;
 *   client_no_context_takeover  if set here (the client resets its
 *                               compressor per message);
 *   server_max_window_bits=N    N = the smaller of the offer's value and
 *                               |server_max_window_bits|, written when
 *                               below 15 or when offered;
 *   client_max_window_bits=N    only if offered: N = the smaller of the
 *                               offer's value (15 if none) and
 *                               |client_max_window_bits|, written when
 *                               below 15 or when offered with a value.
 * An offer without client_max_window_bits when |client_max_window_bits|
 * is below 15 is declined (the client could not be held to it).
 *
 * Client role: the offer is built from these fields (each parameter only
 * when it asks for something: a flag set, or window bits below 15;
 * client_max_window_bits is always offered, with a value when below 15)
 * and the response is checked strictly (RFC 7692 7.1): an unknown,
 * repeated or unoffered parameter, or an invalid value, fails the
 * handshake with WS_ERR_EXTENSION.
 *
 * Memory: a connection compresses with a 2^server/client_max_window_bits
 * history (see README, "Memory per connection"). Where no context is
 * kept for a direction, that direction's codec state exists only while a
 * message is being compressed or inflated.
 */
typedef struct ws_pmd_shared ws_pmd_shared;

typedef struct ws_pmd_config {
  uint8_t enable;                     /* 1: offer / accept */
  uint8_t level;                      /* 1 (fast) .. 9; default 6 */
  uint8_t server_max_window_bits;     /* 8..15; default 15 */
  uint8_t client_max_window_bits;     /* 8..15; default 15 */
  uint8_t server_no_context_takeover; /* ask for / grant it; default 0 */
  uint8_t client_no_context_takeover; /* ask for / grant it; default 0 */
  uint32_t min_size; /* messages shorter than this are sent uncompressed;
                        default 32 */
  /* NULL, or a compressor shared by the connections of one thread (see
   * ws_pmd_shared_new()): used for single-frame messages where our side
   * keeps no context, instead of a compressor allocated per message. */
  ws_pmd_shared *shared;
} ws_pmd_config;

/*
 * Creates a compressor state to share among connections that are only
 * ever used from one thread at a time (an event loop's). It holds one
 * compressor per window size, created on first use (see README for the
 * sizes); each message borrows it for the ws_conn_send() call that
 * compresses it. |level| is 1..9 (0: 6). |mem| may be NULL; it is
 * copied. Returns 0, WS_ERR_INVALID_ARGUMENT or WS_ERR_NOMEM.
 */
WS_EXTERN int ws_pmd_shared_new(ws_pmd_shared **pshared, int level,
                                const ws_mem *mem);

/* Frees it; every connection using it must be deleted first. */
WS_EXTERN void ws_pmd_shared_del(ws_pmd_shared *shared);

typedef struct ws_config {
  ws_role role;
  ws_delivery delivery;
  uint32_t flags;               /* WS_CFG_* */
  uint32_t max_handshake_bytes; /* request/response head; 8192; -> 431 */
  uint32_t max_headers;         /* header lines; 64; -> 431 */
  /* ABI: sizeof(ws_config) as the caller's header knew it, set by
   * ws_config_default(); 0 (memset, a designated initializer) means the
   * layout of 0.2. A later release that appends fields keeps this field
   * where it is and tells the layouts apart by it; ws_conn_new() refuses
   * a size it does not know (a program built against a newer header)
   * with WS_ERR_INVALID_ARGUMENT. See "ABI policy" in README.md.
   * Since: 0.2 */
  uint32_t size;
  uint64_t max_frame_payload;   /* per frame; 1 MiB; -> 1009 */
  uint64_t max_message;         /* per message; 1 MiB; -> 1009 */
  uint32_t max_fragments;       /* frames per message; 65536; 0 = none */
  uint32_t max_out_queue;       /* queued output bytes; 4 MiB */
  /* Timers in caller milliseconds; 0 disables. */
  uint32_t handshake_timeout_ms; /* 10000 */
  uint32_t ping_interval_ms;     /* idle time before a ping; 25000 */
  uint32_t pong_timeout_ms;      /* 25000 */
  uint32_t close_timeout_ms;     /* close handshake; 5000 */
  ws_rand_fn rand;               /* required in client role */
  void *rand_user_data;
  ws_pmd_config pmd;             /* permessage-deflate; off by default */
} ws_config;

/* Fills |cfg| with the defaults documented above for |role|, and
 * |cfg->size|. */
WS_EXTERN void ws_config_default(ws_config *cfg, ws_role role);

/*
 * Creates a connection. |cfg| is copied. |mem| may be NULL; it is copied.
 * Returns 0, WS_ERR_INVALID_ARGUMENT (e.g. client without rand, or a
 * |cfg->size| this library does not know) or WS_ERR_NOMEM.
 */
WS_EXTERN int ws_conn_new(ws_conn **pconn, const ws_config *cfg,
                          const ws_mem *mem);

/* Frees the connection and everything it owns. NULL is fine. */
WS_EXTERN void ws_conn_del(ws_conn *conn);

/* Returns sizeof the connection object: the memory of an idle
 * connection after ws_conn_shrink(), without buffers in flight. */
WS_EXTERN size_t ws_conn_sizeof(void);

/* Frees the state only a busy connection needs (the frame parser, the
 * waiting event, the output queue's and the message's buffer headers,
 * the control-frame buffer, the timers of a ping or a close) when the
 * connection is open and quiet: no output queued, no frame or message
 * partly received, no event waiting, no ping waiting for its pong, no
 * error, and no buffer kept by WS_CFG_KEEP_BUFFERS. Returns 1 if it freed
 * it, 0 otherwise (then nothing changed). Any later call allocates it
 * again when it needs it; if that fails, the call fails with
 * WS_ERR_NOMEM as any allocation failure. A server with many idle
 * connections calls it when one goes quiet (ws_loop does). In a
 * WS_FREESTANDING build that state is inside the object: this returns 0.
 * Since: 0.2 */
WS_EXTERN int ws_conn_shrink(ws_conn *conn);

/* ---- memory without a heap (README "Firmware") ---- */

/* As ws_conn_new(), but the connection object is placed in the caller's
 * |block| of |len| >= ws_conn_sizeof() bytes, aligned for any object
 * (e.g. a static array of max_align_t); only its buffers come from
 * |mem|. End it with ws_conn_fini() (ws_conn_del() does the same and
 * leaves the block alone). */
WS_EXTERN int ws_conn_init(ws_conn **pconn, void *block, size_t len,
                           const ws_config *cfg, const ws_mem *mem);

/* Frees what a connection owns, but not the object itself when it lives
 * in caller storage (ws_conn_init()). NULL is fine. */
WS_EXTERN void ws_conn_fini(ws_conn *conn);

/* ---- connections sharing their configuration ---- */

/* The configuration and allocator of many connections (a server's
 * listener), held once instead of in every connection object: a
 * connection of ws_conn_new_shared() or ws_conn_init_shared() keeps one
 * pointer to it (ws_conn_sizeof_shared() bytes an object instead of
 * ws_conn_sizeof()). It is reference-counted: ws_conn_shared_del() may
 * come before its connections are deleted, and the last of them frees
 * it. The count is not atomic: use the connections of one ws_conn_shared
 * from one thread at a time (an event loop's). A build without the server
 * role (WS_NO_SERVER) has none: the functions below that make one or a
 * connection of one return WS_ERR_INVALID_ARGUMENT, and
 * ws_conn_sizeof_shared() is ws_conn_sizeof(). Since: 0.2 */
typedef struct ws_conn_shared ws_conn_shared;

/* Creates one from |cfg| (copied) and |mem| (may be NULL; copied); the
 * same checks as ws_conn_new(). Returns 0, WS_ERR_INVALID_ARGUMENT or
 * WS_ERR_NOMEM. */
WS_EXTERN int ws_conn_shared_new(ws_conn_shared **pshared,
                                 const ws_config *cfg, const ws_mem *mem);

/* Drops the caller's reference; freed once its connections are deleted
 * too. NULL is fine. */
WS_EXTERN void ws_conn_shared_del(ws_conn_shared *shared);

/* As ws_conn_new() with the configuration and allocator of |shared|. */
WS_EXTERN int ws_conn_new_shared(ws_conn **pconn, ws_conn_shared *shared);

/* As ws_conn_init() with the configuration and allocator of |shared|:
 * |block| needs |len| >= ws_conn_sizeof_shared() bytes. */
WS_EXTERN int ws_conn_init_shared(ws_conn **pconn, void *block, size_t len,
                                  ws_conn_shared *shared);

/* The size of the object of a connection of a ws_conn_shared (less than
 * ws_conn_sizeof(), which includes a private copy of the
 * configuration). */
WS_EXTERN size_t ws_conn_sizeof_shared(void);

/* An upper bound on the bytes a connection with |cfg| allocates through
 * a ws_arena at any moment: its object (unless placed by ws_conn_init(),
 * then subtract ws_conn_sizeof() + WS_ARENA_ALIGN), the handshake, the
 * output queue at max_out_queue, the message at max_message, control
 * frames, and the compressor and decompressor when enabled, with the
 * arena's block headers and the copies a growing buffer can leave
 * behind. A pool of this size never runs out (tests/test_noheap.c).
 * 0 if |cfg| is NULL. */
WS_EXTERN size_t ws_conn_memsize(const ws_config *cfg);

/* A fixed arena: an allocator over the caller's buffer, for a build with
 * no heap at all. First fit with coalescing; every block has a header of
 * WS_ARENA_ALIGN bytes and is aligned to it. The struct is the caller's
 * storage; its fields are private. */
#define WS_ARENA_ALIGN 8u
typedef struct ws_arena {
  uint8_t *base;
  size_t len;
  size_t used; /* bytes in blocks in use, headers included */
  size_t peak; /* the most |used| has been */
} ws_arena;

/* Sets up |arena| over |buf| (|len| bytes, any alignment) and fills
 * |*pmem| with an allocator that uses it (for ws_conn_new(),
 * ws_conn_init(), ws_pmd_shared_new()). Returns 0, or
 * WS_ERR_INVALID_ARGUMENT when |buf| is too small for one block. */
WS_EXTERN int ws_arena_init(ws_arena *arena, void *buf, size_t len,
                            ws_mem *pmem);

/* The most bytes the arena has had in use (block headers included). */
WS_EXTERN size_t ws_arena_peak(const ws_arena *arena);

/* Client role: the request to send. Strings are NUL-terminated and read
 * during ws_conn_connect() only. */
typedef struct ws_client_params {
  const char *host;   /* required: Host header */
  uint16_t port;      /* 0: omit from Host */
  const char *path;   /* request-target; NULL means "/" */
  const char *origin; /* NULL: no Origin header */
  const char *const *protocols; /* offered subprotocols */
  size_t nprotocols;
  const ws_kv *headers; /* extra request headers */
  size_t nheaders;
} ws_client_params;

/*
 * Client role: queues the opening handshake request (RFC 6455 4.1) with a
 * fresh Sec-WebSocket-Key from the injected random source. Returns 0,
 * WS_ERR_INVALID_STATE (not a fresh client connection),
 * WS_ERR_INVALID_ARGUMENT (missing host, CR/LF in a value, an invalid
 * subprotocol token), WS_ERR_INTERNAL (rand failed) or WS_ERR_NOMEM.
 */
WS_EXTERN int ws_conn_connect(ws_conn *conn, const ws_client_params *params);

/* Server role: how to accept a WS_EV_REQUEST. */
typedef struct ws_accept_params {
  const char *protocol; /* NULL or one of the offered subprotocols */
  const ws_kv *headers; /* extra response headers */
  size_t nheaders;
} ws_accept_params;

/*
 * Server role: accepts the pending request: queues the 101 response and
 * opens the connection; a WS_EV_OPEN event follows. |params| may be NULL.
 * Returns 0, WS_ERR_INVALID_STATE (no request pending),
 * WS_ERR_INVALID_ARGUMENT (protocol not offered, CR/LF in a header) or
 * WS_ERR_NOMEM.
 */
WS_EXTERN int ws_conn_accept(ws_conn *conn, const ws_accept_params *params);

/*
 * Server role: rejects the pending request with HTTP |status| (400..599),
 * extra |headers| and |body| (may be NULL), e.g. 403 for an Origin not
 * allowed (RFC 6455 10.2). The connection then only drains the response;
 * ws_conn_should_close_transport() turns true when it is written.
 */
WS_EXTERN int ws_conn_reject(ws_conn *conn, int status, const ws_kv *headers,
                             size_t nheaders, const void *body,
                             size_t bodylen);

/*
 * Server role: answers a plain HTTP request (WS_EV_HTTP) with |status|
 * (200..599), extra |headers| (a Content-Type, say) and |body| (copied;
 * may be NULL). "Content-Length" and "Connection: close" are added; the
 * answer to HEAD carries no body (RFC 7231 4.3.2). The connection then
 * only drains the answer: ws_conn_should_close_transport() turns 1 once
 * it is written, and the state is WS_STATE_CLOSED. Returns 0,
 * WS_ERR_INVALID_STATE (no plain request pending),
 * WS_ERR_INVALID_ARGUMENT (status, CR/LF in a header) or WS_ERR_NOMEM.
 * Since: 0.2
 */
WS_EXTERN int ws_conn_respond(ws_conn *conn, int status, const ws_kv *headers,
                              size_t nheaders, const void *body,
                              size_t bodylen);

/*
 * Feeds received bytes. Parses until one event is ready or |inlen| bytes
 * are used, and sets |*pnread| to the bytes consumed; feed the rest after
 * pulling the events. The buffer is modified in place (payload is
 * unmasked) and event slices may point into it: it MUST stay valid and
 * unmodified until ws_conn_next_event() returns WS_ERR_WOULDBLOCK.
 *
 * Returns 0; WS_ERR_WOULDBLOCK if an event is still waiting to be pulled
 * (nothing consumed); WS_ERR_CLOSED once a close was received or the
 * connection ended cleanly (input after it is ignored); or the sticky
 * peer error (WS_ERR_PROTO, WS_ERR_UTF8, WS_ERR_TOO_BIG,
 * WS_ERR_HANDSHAKE, ...) after which a close frame or HTTP error is
 * queued and a WS_EV_ERROR event describes it; or WS_ERR_NOMEM.
 */
WS_EXTERN int ws_conn_feed(ws_conn *conn, uint8_t *in, size_t inlen,
                           size_t *pnread);

/* The transport reached EOF. Yields WS_EV_ERROR with WS_ERR_EOF and
 * close code 1006 unless the close handshake had completed; after it, a
 * client that was waiting for the server to close the connection (RFC
 * 6455 7.1.1) is then done: ws_conn_should_close_transport() turns 1. */
WS_EXTERN int ws_conn_feed_eof(ws_conn *conn);

typedef enum ws_event_type {
  WS_EV_NONE = 0,
  WS_EV_REQUEST, /* server: request parsed; answer accept/reject */
  WS_EV_OPEN,    /* handshake complete; client: |response| is set */
  WS_EV_TEXT,    /* text data (valid UTF-8 so far) */
  WS_EV_BINARY,  /* binary data */
  WS_EV_PING,    /* data: the ping payload (pong queued unless disabled) */
  WS_EV_PONG,    /* data: the pong payload */
  WS_EV_CLOSE,   /* peer's close: close_code (1005 if none), data: reason */
  WS_EV_ERROR,   /* the connection failed: error, close_code sent (0 if
                    none), data: reason; client rejects carry response */
  WS_EV_HTTP     /* server, WS_CFG_HTTP: a plain HTTP request (any method,
                    no "Upgrade: websocket"); answer with ws_conn_respond()
                    or ws_conn_reject(). Since: 0.2 */
} ws_event_type;

/* ws_event.flags for WS_EV_TEXT / WS_EV_BINARY. A compressed message
 * (permessage-deflate) is delivered as inflated data, in chunks of at
 * most 16 KiB in WS_DELIVER_STREAM mode, that do not follow its frames:
 * for it WS_EVF_FRAME_END comes only with WS_EVF_FINAL. */
#define WS_EVF_FIRST 0x1u     /* first data of a message */
#define WS_EVF_FRAME_END 0x2u /* last data of a frame */
#define WS_EVF_FINAL 0x4u     /* last data of a message */

typedef struct ws_event {
  ws_event_type type;
  uint32_t flags;
  ws_slice data;        /* borrowed, see ws_conn_feed() */
  uint16_t close_code;  /* WS_EV_CLOSE, WS_EV_ERROR */
  int error;            /* WS_EV_ERROR: a WS_ERR_* */
  const ws_request *request;   /* WS_EV_REQUEST, WS_EV_HTTP */
  const ws_response *response; /* client WS_EV_OPEN, WS_EV_ERROR reject */
} ws_event;

/* Takes the next event. Returns 0, or WS_ERR_WOULDBLOCK if none. Once a
 * compressed message's data is all in, this call inflates its next chunk
 * itself, without more input: pull until WS_ERR_WOULDBLOCK before
 * waiting for the transport. */
WS_EXTERN int ws_conn_next_event(ws_conn *conn, ws_event *ev);

/*
 * The receive callback of ws_conn_feed_events(): handles one event, which
 * is only valid during the call (its slices as in ws_conn_next_event()).
 * Returns 0 to go on, or nonzero to stop after this event. Since: 0.2
 */
typedef int (*ws_event_fn)(ws_conn *conn, const ws_event *ev,
                           void *user_data);

/*
 * Feeds received bytes and hands every event they produce to |fn|, in
 * order, without stopping at each one: the batch form of ws_conn_feed()
 * followed by ws_conn_next_event() until WS_ERR_WOULDBLOCK, with the same
 * events, the same order (everything before a bad frame first), the same
 * result for any split of the input, and the same buffer contract (|in|
 * is unmasked in place; event slices may point into it). Events waiting
 * from an earlier ws_conn_feed() come first; compressed data is inflated
 * to the end.
 *
 * It returns when all |inlen| bytes are used and no event is left, when
 * |fn| returns nonzero (the event it was given is consumed; feed the rest,
 * from |in| + |*pnread|, later), or when the connection waits for the
 * application (a WS_EV_REQUEST or WS_EV_HTTP not yet answered: with
 * |*pnread| < |inlen|). |fn| may call ws_conn_send(), ws_conn_ping(),
 * ws_conn_pong(), ws_conn_close(), ws_conn_accept(), ws_conn_reject(),
 * ws_conn_respond(), the ws_conn_out_*() calls and the queries; it MUST
 * NOT call ws_conn_feed(), ws_conn_feed_events(), ws_conn_feed_eof(),
 * ws_conn_next_event(), ws_conn_tick() or ws_conn_del() on |conn|.
 *
 * Returns 0; WS_ERR_CLOSED (input after a close is ignored, as in
 * ws_conn_feed()); or the sticky error, after |fn| was given the
 * WS_EV_ERROR event that describes it; WS_ERR_INVALID_ARGUMENT (NULL
 * |conn| or |fn|) or WS_ERR_INVALID_STATE (a client before
 * ws_conn_connect()). Since: 0.2
 */
WS_EXTERN int ws_conn_feed_events(ws_conn *conn, uint8_t *in, size_t inlen,
                                  size_t *pnread, ws_event_fn fn,
                                  void *user_data);

/* ws_conn_send() flags */
#define WS_SEND_MORE 0x1u        /* not the last fragment of the message */
#define WS_SEND_NO_COMPRESS 0x2u /* send this message uncompressed even if
                                    permessage-deflate is on (given on its
                                    first fragment) */

/*
 * Queues a text or binary message (or, with WS_SEND_MORE, a fragment of
 * one; later fragments pass the same |opcode|). |data| is copied (and
 * masked in client role); the caller keeps ownership. Text is not
 * validated. Returns 0, WS_ERR_WOULDBLOCK (output queue would exceed
 * max_out_queue: drain and retry), WS_ERR_TOO_BIG (larger than
 * max_out_queue even when empty), WS_ERR_INVALID_STATE (not open, or a
 * close was sent), WS_ERR_INVALID_ARGUMENT, WS_ERR_INTERNAL (rand) or
 * WS_ERR_NOMEM.
 */
WS_EXTERN int ws_conn_send(ws_conn *conn, ws_opcode opcode, const void *data,
                           size_t len, uint32_t flags);

/*
 * As ws_conn_send(), without copying the payload: only the frame header
 * is queued, and ws_conn_out_peek() hands out |data| itself, as its own
 * iovec between the header and whatever was queued after it. The frame
 * is never compressed (RFC 7692 lets any message go uncompressed; not
 * allowed inside a fragmented compressed message: WS_ERR_INVALID_STATE).
 * A client masks |data| in place: its bytes are the wire bytes after the
 * call. |data| must stay valid and untouched until
 * ws_conn_send_ref_pending() is 0 (every byte consumed by
 * ws_conn_out_consume()), and one such payload is pending at a time
 * (another is WS_ERR_WOULDBLOCK). The text of a WS_OP_TEXT message is
 * the caller's to keep valid UTF-8. Returns as ws_conn_send().
 */
WS_EXTERN int ws_conn_send_ref(ws_conn *conn, ws_opcode opcode, void *data,
                               size_t len, uint32_t flags);

/* Bytes of the ws_conn_send_ref() payload not yet consumed (0: the
 * caller's buffer is free again). */
WS_EXTERN size_t ws_conn_send_ref_pending(const ws_conn *conn);

/* ---- one message to many connections (broadcast) ---- */

/*
 * A prepared message: one text or binary message framed once, and
 * compressed at most once per window size and level, for sending to any
 * number of connections with ws_conn_send_prepared(). Server frames are
 * not masked, so one frame's bytes are right for every connection that
 * negotiated the same thing; see ws_conn_send_prepared() for which
 * connections share which bytes. Opaque; owned by the caller, who frees
 * it with ws_prepared_del(). Not thread-safe: like a connection, it is
 * used by one thread at a time (a loop's). Since: 0.2
 */
typedef struct ws_prepared ws_prepared;

/*
 * Prepares a message of |len| bytes at |data| (copied: the caller keeps
 * its buffer) with |opcode| WS_OP_TEXT or WS_OP_BINARY. |flags| is 0 or
 * WS_SEND_NO_COMPRESS (never compressed, for any connection);
 * WS_SEND_MORE is refused: a prepared message is always whole. |mem| (may
 * be NULL; copied) allocates the message and its compressed variants,
 * and the compressor that makes them when the connection that needs one
 * has no ws_pmd_shared. Text is not validated. Returns 0, or
 * WS_ERR_INVALID_ARGUMENT or WS_ERR_NOMEM (|*pprep| is then NULL).
 * Since: 0.2
 */
WS_EXTERN int ws_prepared_new(ws_prepared **pprep, ws_opcode opcode,
                              const void *data, size_t len, uint32_t flags,
                              const ws_mem *mem);

/* Frees it and its variants. NULL is fine. Connections it was sent to
 * hold copies of its bytes, so it may be freed as soon as the last
 * ws_conn_send_prepared() call returns. Since: 0.2 */
WS_EXTERN void ws_prepared_del(ws_prepared *prep);

/*
 * Queues |prep| on |conn|, as ws_conn_send() would queue its message
 * (same state rules, same max_out_queue accounting at the uncompressed
 * size, same stats), but without framing or compressing it again when
 * that was done for another connection:
 *   - server, no permessage-deflate, or a message shorter than |conn|'s
 *     pmd.min_size, or prepared with WS_SEND_NO_COMPRESS: the one plain
 *     frame, copied into the output queue;
 *   - server with permessage-deflate where our side keeps no context
 *     (server_no_context_takeover negotiated): the compressed frame for
 *     |conn|'s server_max_window_bits and compression level, made by the
 *     first connection that needs it and copied by the others. Its bytes
 *     are what ws_conn_send() on that connection would queue;
 *   - our side keeps context (RFC 7692 7.1.1: the next message may refer
 *     to this one): compressed by |conn|'s own compressor, exactly
 *     ws_conn_send(conn, opcode, data, len, 0);
 *   - client role: the shared payload (plain or compressed, as above)
 *     masked with a fresh key as it is copied.
 * |prep| is borrowed for the call only; it keeps the compressed variant
 * it made, for the next connection (hence not const). Returns 0, or one
 * of:
 *   WS_ERR_INVALID_ARGUMENT  NULL |conn| or |prep|
 *   WS_ERR_INVALID_STATE     not open, a close was sent, the connection
 *                            failed, or a fragmented message (WS_SEND_MORE)
 *                            is unfinished: a whole message cannot go
 *                            between its fragments (RFC 6455 5.4)
 *   WS_ERR_TOO_BIG           over max_out_queue even with an empty queue
 *   WS_ERR_WOULDBLOCK        the output queue cannot take it now
 *   WS_ERR_NOMEM             nothing was queued; |conn| is unchanged
 *   WS_ERR_INTERNAL          rand failed (client)
 * and, where |conn| compresses with its own context, as ws_conn_send().
 * Since: 0.2
 */
WS_EXTERN int ws_conn_send_prepared(ws_conn *conn, ws_prepared *prep);

/* Queues a ping / pong with up to 125 bytes of payload. Returns as
 * ws_conn_send(), and WS_ERR_INVALID_ARGUMENT over 125 bytes. */
WS_EXTERN int ws_conn_ping(ws_conn *conn, const void *data, size_t len);
WS_EXTERN int ws_conn_pong(ws_conn *conn, const void *data, size_t len);

/*
 * Starts (or answers, with WS_CFG_NO_AUTO_CLOSE) the close handshake:
 * queues a close frame with |code| (0: no code and no reason) and
 * |reason| (at most 123 bytes, valid UTF-8). After it no data can be
 * sent. The close timeout (close_timeout_ms) counts from the next
 * ws_conn_tick(), for which ws_conn_next_deadline() asks at once. Returns
 * 0, WS_ERR_INVALID_ARGUMENT (code not sendable per RFC 6455 7.4, reason
 * too long or not UTF-8), WS_ERR_INVALID_STATE, or WS_ERR_NOMEM (no
 * memory for the frame, or for the state ws_conn_shrink() let go of:
 * nothing changed, the call may be made again).
 */
WS_EXTERN int ws_conn_close(ws_conn *conn, uint16_t code, const void *reason,
                            size_t reasonlen);

/* An I/O vector for the bytes to write. */
typedef struct ws_iovec {
  const uint8_t *base;
  size_t len;
} ws_iovec;

/*
 * Fills up to |iovcnt| vectors with the queued output, in order, and
 * returns how many were filled (0 if there is nothing to write). The
 * bytes stay valid until ws_conn_out_consume() or any call that queues
 * output.
 */
WS_EXTERN size_t ws_conn_out_peek(const ws_conn *conn, ws_iovec *iov,
                                  size_t iovcnt);

/* Marks |n| bytes of the output as written. */
WS_EXTERN void ws_conn_out_consume(ws_conn *conn, size_t n);

/* Bytes queued for output. */
WS_EXTERN size_t ws_conn_out_pending(const ws_conn *conn);

/*
 * Time. |now_ms| is the caller's monotonic clock in milliseconds. Call
 * ws_conn_tick() once when the connection starts, after reading, and
 * whenever ws_conn_next_deadline() has passed; it may queue a ping, fail
 * the connection (WS_ERR_TIMEOUT with a WS_EV_ERROR event) or end a close
 * handshake the peer did not finish. Returns 0 or the sticky error.
 */
WS_EXTERN int ws_conn_tick(ws_conn *conn, uint64_t now_ms);

/* The next absolute time ws_conn_tick() must be called, or UINT64_MAX. */
WS_EXTERN uint64_t ws_conn_next_deadline(const ws_conn *conn);

typedef enum ws_state {
  WS_STATE_CONNECTING = 0, /* handshake in progress */
  WS_STATE_OPEN,
  WS_STATE_CLOSING_LOCAL,  /* we sent close, waiting for the peer's */
  WS_STATE_CLOSING_REMOTE, /* peer sent close, ours not queued yet */
  WS_STATE_CLOSED,         /* close handshake complete */
  WS_STATE_FAILED          /* failed: error, EOF, timeout, rejected */
} ws_state;

/* The state; WS_STATE_FAILED for a NULL |conn|. */
WS_EXTERN ws_state ws_conn_state(const ws_conn *conn);

/* 1 if the caller should read: not failed/closed and the output queue is
 * under max_out_queue (backpressure). */
WS_EXTERN int ws_conn_want_read(const ws_conn *conn);

/* 1 if output is queued. */
WS_EXTERN int ws_conn_want_write(const ws_conn *conn);

/* 1 when the output is drained and the transport should be closed: after
 * the close handshake, a failure, or an HTTP rejection. (A client waits
 * for the server to close first, RFC 6455 7.1.1, unless failed.) */
WS_EXTERN int ws_conn_should_close_transport(const ws_conn *conn);

/* The close code we sent (0 if none). */
WS_EXTERN uint16_t ws_conn_close_code(const ws_conn *conn);

/* The selected subprotocol after the handshake; len 0 if none. The slice
 * is valid until the connection is deleted. */
WS_EXTERN ws_slice ws_conn_protocol(const ws_conn *conn);

/* What permessage-deflate negotiated: |enabled| 0 if it is off. */
typedef struct ws_pmd_params {
  uint8_t enabled;
  uint8_t server_no_context_takeover;
  uint8_t client_no_context_takeover;
  uint8_t server_max_window_bits; /* 8..15 */
  uint8_t client_max_window_bits; /* 8..15 */
} ws_pmd_params;

/* Fills |params| with the negotiated permessage-deflate parameters (all
 * zero before the connection is open or when it was not negotiated). */
WS_EXTERN void ws_conn_pmd(const ws_conn *conn, ws_pmd_params *params);

typedef struct ws_stats {
  uint64_t msgs_in, msgs_out;       /* data messages */
  uint64_t bytes_in, bytes_out;     /* data payload bytes */
  uint64_t wire_in, wire_out;       /* all bytes, handshake included */
} ws_stats;

WS_EXTERN void ws_conn_stats(const ws_conn *conn, ws_stats *pstats);

/* Returns nonzero if |code| may appear in a close frame: RFC 6455
 * 7.4.1/7.4.2 1000-1003 and 1007-1011, the IANA-registered 1012-1014
 * (service restart, try again later, bad gateway), and 3000-4999. */
WS_EXTERN int ws_close_code_valid(uint16_t code);

/* ---- Origin allowlist (RFC 6455 10.2) ----------------------------------- */

/* Allow the origin whose host[:port] is the request's Host. */
#define WS_ORIGIN_SAME_HOST 0x1u
/* Refuse a request without Origin. */
#define WS_ORIGIN_REQUIRE 0x2u

/*
 * Whether |req|'s Origin is allowed: a browser sends the page's origin,
 * so a server that only serves its own pages refuses the others
 * (cross-site WebSocket hijacking). Each of the |n| |origins| is either
 *   "https://chat.example.com:8443"  an origin, matched exactly (scheme
 *                                    and host case-insensitively, the
 *                                    port as written);
 *   the same with "*." as the host's first label (any subdomain, not
 *                                    the domain itself), same scheme
 *                                    and port;
 *   "*.example.com", "example.com"   a host pattern: any scheme, any port;
 *   "*"                              anything.
 * With WS_ORIGIN_SAME_HOST, an origin whose host and port (80/443 when
 * absent, by its scheme) are those of the Host header is allowed too. A
 * request without Origin (not from a browser) is allowed unless
 * WS_ORIGIN_REQUIRE; "null" only if listed. Returns 1 or 0.
 * Since: 0.2
 */
WS_EXTERN int ws_request_origin_allowed(const ws_request *req,
                                        const char *const *origins, size_t n,
                                        uint32_t flags);

/* ---- for the loop's message timeout ------------------------------------ */

/*
 * Whether a data message is being received (its first frame arrived,
 * its last has not), and if so the payload bytes received for it so far
 * (after inflation when compressed) in |*pbytes| (may be NULL).
 * Since: 0.2
 */
WS_EXTERN int ws_conn_rx_message(const ws_conn *conn, uint64_t *pbytes);

#ifdef __cplusplus
}
#endif

#endif /* WS_WS_H */
