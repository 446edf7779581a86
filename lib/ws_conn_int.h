/*
 * The connection's internal state, shared by ws_conn*.c. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_CONN_INT_H
#define WS_CONN_INT_H

#include "ws_int.h"
#include "ws_switch.h"
#include "ws_deflate.h"
#include "ws_handshake.h"
#include "ws_mask.h"
#include "ws_pmd.h"
#include "ws_utf8.h"

enum rx_state { RX_HEADER = 0, RX_PAYLOAD };

/* permessage-deflate: inflated bytes per stream-mode event, and masked
 * input unmasked ahead of the inflater per step (what it leaves unused is
 * masked back, so the caller's unconsumed bytes stay as they were). */
#define ZCHUNK 16384u
#define ZSTEP 16384u

/* Opening-handshake state, allocated only while connecting. */
typedef struct ws_hs {
  /* (short fields first, as in struct ws_conn) */
  uint8_t parsed; /* head complete and parsed, event produced */
  uint8_t http;   /* server: the request is plain HTTP (WS_EV_HTTP) */
  ws_buf in;      /* the request or response head as it arrives */
  size_t scanned; /* bytes of |in| already searched for CRLFCRLF */
  ws_header *headers;
  uint8_t *offered; /* client: offered subprotocols as one comma list */
  size_t offeredlen;
  char key[24]; /* client: Sec-WebSocket-Key sent */
  ws_request req;
  ws_response resp;
} ws_hs;

/* A build without the server role (WS_NO_SERVER) has no ws_conn_shared
 * (its functions refuse): the environment is inside the object, read
 * without a pointer. Elsewhere the object points to it: shared by a
 * listener's connections, or a private copy right after the object. */
#define WS_HAS_SHARED WS_HAS_SERVER
#if WS_HAS_SHARED
#  define ENV(c) ((c)->env)
#else
#  define ENV(c) (&(c)->env)
#endif

/* What a connection reads of its ws_config after ws_conn_new() (the
 * permessage-deflate configuration lives in conn_z, only when enabled),
 * and its allocator: one copy shared by the connections of a
 * ws_conn_shared, or a connection's private copy right after its object
 * (ws_conn_new(), ws_conn_init()). Read through one pointer. */
typedef struct conn_cfg {
  /* (the words first: see struct ws_conn) */
  uint32_t max_out_queue;
  uint32_t ping_interval_ms;
  uint32_t pong_timeout_ms;
  uint32_t close_timeout_ms;
  uint32_t max_fragments;
  /* ws_conn_shared: references (its creator's and one per connection);
   * 0: a connection's private copy */
  uint32_t refs;
  ws_rand_fn rand;
  void *rand_user_data;
  uint64_t max_frame_payload;
  uint64_t max_message;
} conn_cfg;

/* (Inside the object, without ws_conn_shared, the limits come first:
 * they are read field by field, the allocator only by its address.) */
typedef struct conn_env {
#if WS_HAS_SHARED
  ws_mem mem;
  conn_cfg cfg;
#else
  conn_cfg cfg;
  ws_mem mem;
#endif
} conn_env;

/* ws_conn_shared_new(): the environment its connections point to, and
 * the configuration ws_conn_init_shared() sets a connection up from. */
struct ws_conn_shared {
  conn_env env; /* first: ws_conn_del() finds the struct from it */
  ws_config config;
};

/* permessage-deflate state (RFC 7692), allocated with the connection
 * only when the configuration enables it. */
typedef struct conn_z {
  /* (short fields first, as in struct ws_conn) */
  ws_pmd_config cfg; /* as configured */
  uint8_t ztail;     /* bytes of the 00 00 ff ff tail fed (7.2.2) */
  uint8_t zpending;  /* all input given was taken, its output not all
                        out yet */
  uint32_t zlen;     /* stream mode: inflated bytes in zbuf */
  ws_inflater *inf;  /* allocated by the first compressed message */
  ws_deflater *def;
  uint8_t *zbuf;     /* stream mode: inflated data lent to events */
  uint64_t inflated; /* inflated bytes of the current message */
} conn_z;


/* The state only a busy connection needs: the frame being received,
 * the waiting event, the output queue and the message being assembled,
 * the control-frame buffer, the handshake, and the deadlines of a
 * handshake, a ping or a close. A hosted build keeps it in a block of its
 * own (conn_io), which ws_conn_shrink() frees while the connection is open
 * and quiet and the next call that needs it allocates again: an idle
 * connection of a server holds its object alone. A freestanding build
 * (firmware: a connection or two, every byte of code counted) keeps the
 * same fields inside the object. The fields come in three groups, so that
 * the object without conn_io can place each where Thumb's short loads
 * reach it (see struct ws_conn). */
#if defined(WS_FREESTANDING)
#  define WS_CONN_SPLIT 0
#else
#  define WS_CONN_SPLIT 1
#endif

/* bytes: the receive side, the send side, the waiting event */
#define WSC_IO_BYTES                                                           \
  uint8_t rx_state;                                                            \
  uint8_t hdrlen;                                                              \
  uint8_t msg_op; /* WS_OP_TEXT/BINARY while a message is open */              \
  uint8_t mask_off;                                                            \
  uint8_t ctrllen;                                                             \
  uint8_t pending_pong_len;                                                    \
  uint8_t rx_comp; /* the message being received is compressed */              \
  uint8_t tx_op;   /* opcode of an unfinished fragmented send */               \
  uint8_t tx_comp; /* the fragmented message being sent is compressed */       \
  uint8_t ev_type;  /* the waiting event's ws_event_type */                    \
  uint8_t ev_flags; /* and its WS_EVF_* */                                     \
  uint16_t ev_close; /* and its close code */

/* words: the handshake, the buffers, the waiting event's data */
#define WSC_IO_WORDS                                                           \
  ws_hs *hs; /* non-NULL while connecting (and one event after) */             \
  /* Allocated on first need, 2 x 125 B: at CTRL_SPLIT a control payload       \
   * split across feeds, at CTRL_PONG the latest unanswered ping while the    \
   * output queue is full. */                                                  \
  uint8_t *ctrlbuf;                                                            \
  ws_buf out; /* queued output */                                              \
  /* ws_conn_send_ref(): the caller's payload, |ref_len| bytes still to go     \
   * after the first |ref_at| bytes of |out| (both under max_out_queue) */     \
  const uint8_t *ref;                                                          \
  uint32_t ref_len;                                                            \
  uint32_t ref_at;                                                             \
  ws_buf msg; /* message mode: the message being assembled */                  \
  /* The one event waiting to be pulled (ev_ready), kept compactly:            \
   * ws_conn_next_event() rebuilds the ws_event (its request or response is    \
   * the handshake state's, its error the sticky one). */                      \
  ws_slice ev_data;

/* wide: counts, the frame header and deadlines (the counts' words first:
 * in the freestanding object they then stay within a short load's reach,
 * the header's bytes and 64-bit fields are past it anyway) */
#define WSC_IO_WIDE                                                            \
  /* Limits read only while connecting share their storage with the counts    \
   * and validator of the message being received, which are read only once    \
   * open, after the first frame of a message has set them. */                 \
  union {                                                                      \
    struct {                                                                   \
      uint32_t max_handshake_bytes;                                            \
      uint32_t max_headers;                                                    \
      uint32_t handshake_timeout_ms;                                           \
    };                                                                         \
    struct {                                                                   \
      uint64_t msg_bytes; /* payload bytes so far in the current message */    \
      uint32_t nfrags;    /* frames so far in the current message */           \
      ws_utf8 utf8;       /* its validator, when it is text */                 \
    };                                                                         \
  };                                                                           \
  uint8_t hdr[WS_FRAME_HEADER_MAX];                                            \
  ws_frame_header fh;                                                          \
  uint64_t remaining; /* payload bytes left in the current frame */            \
  /* deadlines, in caller milliseconds; UINT64_MAX = not armed */              \
  uint64_t pong_deadline;                                                      \
  /* The handshake deadline is armed only while connecting, the close          \
   * deadline only after: they share the field. */                             \
  union {                                                                      \
    uint64_t hs_deadline;                                                      \
    uint64_t close_deadline;                                                   \
  };

#if WS_CONN_SPLIT
typedef struct conn_io {
  WSC_IO_BYTES
  WSC_IO_WORDS
  /* The sticky error's reason (an error without this state, after
   * ws_conn_shrink(), is the transport's end or memory that ran out: see
   * err_reason() in ws_conn.c) */
  const char *err_reason;
  WSC_IO_WIDE
} conn_io;
typedef conn_io wsc_io;
#  define IO(c) ((c)->io)
#  define HAS_IO(c) ((c)->io != NULL)
#else
typedef struct ws_conn wsc_io;
#  define IO(c) (c)
#  define HAS_IO(c) 1
#endif

/* The fields are ordered for Thumb's 16-bit loads and stores, which
 * reach 31 bytes into a struct for a byte, 62 for a halfword and 124 for
 * a word: the bytes and flags first, the words most code touches next,
 * the 64-bit counters and timers (whose loads are long anyway) last. */
struct ws_conn {
  uint8_t state;    /* ws_state */
  uint8_t role;     /* ws_role */
  uint8_t delivery; /* ws_delivery */
  uint8_t flags;    /* WS_CFG_* */
#if !WS_CONN_SPLIT
  WSC_IO_BYTES
#endif
  uint8_t rsv_allowed; /* RSV bits negotiated by extensions */
  ws_pmd_params pmd;   /* negotiated permessage-deflate */
  uint16_t close_sent; /* code we sent */
  /* yes/no state, a bit each */
  unsigned msg_started : 1;      /* some data of the message was delivered */
  unsigned has_pending_pong : 1; /* ctrlbuf + CTRL_PONG: a ping to answer */
  unsigned ev_ready : 1;         /* the waiting event is there to pull */
  unsigned err_reported : 1;
  unsigned release : 1;     /* free conn-owned event storage on next call */
  unsigned rx_activity : 1; /* bytes arrived since the last tick */
  unsigned clock_started : 1;
  /* (the eighth bit: a byte's top bit is tested with a longer signed
   * load on Thumb, so it goes to a flag read once, not to a hot one) */
  unsigned placed : 1; /* in caller storage (ws_conn_init()) */
  unsigned close_sent_flag : 1;
  unsigned linger_done : 1; /* client: waited long enough for server's FIN */
  unsigned ping_outstanding : 1;
  unsigned close_arm : 1; /* start the close timer at the next tick */
  unsigned ping_wanted : 1; /* a ping was due while the output queue was
                               full: it goes out as soon as there is room */
  int err;
  uint32_t protocollen; /* (bounded by max_handshake_bytes) */
#if WS_HAS_SHARED
  conn_env *env; /* allocator and limits: shared, or right after us */
#endif
#if WS_CONN_SPLIT
  conn_io *io; /* NULL after ws_conn_shrink(), until needed again */
#else
  WSC_IO_WORDS
#endif
  uint8_t *protocol; /* negotiated subprotocol, conn-owned */
  conn_z *z;         /* permessage-deflate configured: its state */
#if !WS_CONN_SPLIT
  const char *err_reason; /* (in conn_io where there is one) */
#endif
#if !WS_HAS_SHARED
  conn_env env; /* allocator and limits */
#endif
#if !WS_CONN_SPLIT
  WSC_IO_WIDE
#endif
  /* the clock, in caller milliseconds */
  uint64_t now;
  uint64_t last_rx;
  ws_stats stats;
};

/* The busy-only state again after ws_conn_shrink() (ws_conn.c); NULL if
 * that allocation fails. */
WS_COLD wsc_io *wsc_io_alloc(ws_conn *c);

/* The busy-only state, allocated if ws_conn_shrink() let it go; NULL if
 * that fails. */
static inline wsc_io *io_get(ws_conn *c) {
#if WS_CONN_SPLIT
  if (WS_UNLIKELY(!c->io)) return wsc_io_alloc(c);
#endif
  return IO(c);
}

#define NO_DEADLINE UINT64_MAX

/* The two halves of ctrlbuf. */
#define CTRL_SPLIT 0
#define CTRL_PONG WS_CONTROL_MAX

/* Payloads up to this size are unmasked (and checked for ASCII) inline;
 * longer ones go through ws_mask() / ws_unmask_utf8(). */
#define SMALL_PAYLOAD 128u

/* Words of the width the target handles natively: 64-bit arithmetic on a
 * 32-bit core costs library helpers and registers. */
#if SIZE_MAX > 0xffffffffu
typedef uint64_t wsc_word;
#  define HIGH_BITS 0x8080808080808080ull
#else
typedef uint32_t wsc_word;
#  define HIGH_BITS 0x80808080u
#endif

/* XORs a short payload that starts at key offset 0 with |key|, a word at
 * a time (any alignment, any byte order: the key repeats in the word). */
static WS_ALWAYS_INLINE void unmask_small(uint8_t *p, size_t n, const uint8_t *key) {
  wsc_word k, w;
  size_t i;
  for (i = 0; i < sizeof(k); i += 4)
    memcpy((uint8_t *)&k + i, key, 4);
  for (i = 0; i + sizeof(w) <= n; i += sizeof(w)) {
    memcpy(&w, p + i, sizeof(w));
    w ^= k;
    memcpy(p + i, &w, sizeof(w));
  }
  for (; i < n; i++)
    p[i] = (uint8_t)(p[i] ^ key[i & 3u]);
}

/* 1 if the |n| bytes at |p| are all ASCII. */
static WS_ALWAYS_INLINE int ascii_small(const uint8_t *p, size_t n) {
  wsc_word acc = 0, w;
  size_t i = 0;
  for (; i + sizeof(w) <= n; i += sizeof(w)) {
    memcpy(&w, p + i, sizeof(w));
    acc |= w;
  }
  for (; i < n; i++)
    acc |= p[i];
  return (acc & HIGH_BITS) == 0;
}

/* ---- small helpers -------------------------------------------------- */

/* A constant when only one role is built (WS_NO_SERVER, WS_NO_CLIENT), so
 * the other role's paths compile away. */
static inline int is_client(const ws_conn *c) {
#if defined(WS_NO_SERVER)
  (void)c;
  return 1;
#elif defined(WS_NO_CLIENT)
  (void)c;
  return 0;
#else
  /* (the role, as check_config() let it in, is 1 or 0: a test of it) */
  return c->role;
#endif
}
_Static_assert(WS_ROLE_CLIENT == 1 && WS_ROLE_SERVER == 0,
               "is_client() reads the role as it is");

/* Bytes queued for output, a ws_conn_send_ref() payload included. */
static inline size_t io_out_size(const wsc_io *io) {
  return ws_buf_size(&io->out) + io->ref_len;
}

static inline size_t out_size(const ws_conn *c) {
  return HAS_IO(c) ? io_out_size(IO(c)) : 0;
}

#if WS_SMALL_CODE
/* Size builds: one copy of the test for its seven callers. */
int wsc_out_full(const ws_conn *c);
#  define out_full(c) wsc_out_full(c)
#else
static inline int out_full(const ws_conn *c) {
  return out_size(c) >= ENV(c)->cfg.max_out_queue;
}
#endif

static inline int peer_resets(const ws_conn *c) {
  return is_client(c) ? c->pmd.server_no_context_takeover
                      : c->pmd.client_no_context_takeover;
}

static inline int we_reset(const ws_conn *c) {
  return is_client(c) ? c->pmd.client_no_context_takeover
                      : c->pmd.server_no_context_takeover;
}

/* A compressed message whose data is all in but whose inflated output is
 * not all out yet: the drain goes on without input. */
static WS_ALWAYS_INLINE int draining(const ws_conn *c) {
#if defined(WS_NO_DEFLATE)
  (void)c;
  return 0;
#endif
  return HAS_IO(c) && IO(c)->rx_comp && IO(c)->rx_state == RX_PAYLOAD &&
         (IO(c)->remaining == 0 || c->z->zpending) && !c->err;
}

/* RFC 7692 7.2.2: appended to the compressed data of every message. */
static const uint8_t pmd_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* ---- faults ------------------------------------------------------------ */

/* The faults the connection detects itself, each an error, a close code
 * and a reason: a call site passes one small constant, not three
 * arguments and a string address (firmware size; the reasons are one
 * string table, so none is stored twice). A fault's value is its kind in
 * the top three bits and its reason's place in the table in the low
 * five. */
enum {
  FK_PROTO,     /* WS_ERR_PROTO, 1002 */
  FK_UTF8,      /* WS_ERR_UTF8, 1007 */
  FK_BIG,       /* WS_ERR_TOO_BIG, 1009 */
  FK_DATA,      /* WS_ERR_DATA, 1007 */
  FK_INTERNAL,  /* WS_ERR_INTERNAL, 1011 */
  FK_NOMEM,     /* WS_ERR_NOMEM, 1011 */
  FK_TIMEOUT,   /* WS_ERR_TIMEOUT, no close frame */
  FK_KEEPALIVE, /* WS_ERR_TIMEOUT, 1011 */
};

#define WSC_FAULTS(X)                                                          \
  X(F_UNMASKED, FK_PROTO, "unmasked frame from client")                        \
  X(F_MASKED, FK_PROTO, "masked frame from server")                            \
  X(F_RSV, FK_PROTO, "reserved bits set")                                      \
  X(F_CONTROL, FK_PROTO, "invalid control frame")                              \
  X(F_OPCODE, FK_PROTO, "reserved opcode")                                     \
  X(F_LENGTH, FK_PROTO, "invalid frame length")                                \
  X(F_CONT, FK_PROTO, "continuation without message")                          \
  X(F_UNFINISHED, FK_PROTO, "message not finished")                            \
  X(F_RSV1_CONT, FK_PROTO, "RSV1 set on a continuation frame")                 \
  X(F_CLOSE_1, FK_PROTO, "close payload of 1 byte")                            \
  X(F_CLOSE_CODE, FK_PROTO, "invalid close code")                              \
  X(F_CLOSE_UTF8, FK_UTF8, "invalid UTF-8 in close reason")                    \
  X(F_UTF8, FK_UTF8, "invalid UTF-8 in text")                                  \
  X(F_UTF8_END, FK_UTF8, "text ends inside a character")                       \
  X(F_FRAME_BIG, FK_BIG, "frame too big")                                      \
  X(F_MSG_BIG, FK_BIG, "message too big")                                      \
  X(F_FRAGS, FK_BIG, "too many fragments")                                     \
  X(F_NOMEM, FK_NOMEM, "out of memory")                                        \
  X(F_HS_TIMEOUT, FK_TIMEOUT, "handshake timeout")                             \
  X(F_CLOSE_TIMEOUT, FK_TIMEOUT, "close handshake timeout")                    \
  X(F_PONG_TIMEOUT, FK_KEEPALIVE, "keepalive pong timeout")
/* Last, so that builds without them leave their reasons out: the
 * inflater's, then the compressor's. */
#define WSC_ZFAULTS(X)                                                         \
  X(F_ZDATA, FK_DATA, "invalid compressed data")                               \
  X(F_ZSTALL, FK_INTERNAL, "inflater stalled")
#define WSC_DFAULTS(X) X(F_ZFAIL, FK_INTERNAL, "compressor failed")

#define WSC_FAULT_INDEX(name, kind, text) name##_AT,
enum {
  WSC_FAULTS(WSC_FAULT_INDEX) WSC_ZFAULTS(WSC_FAULT_INDEX)
      WSC_DFAULTS(WSC_FAULT_INDEX)
};
#undef WSC_FAULT_INDEX
#define WSC_FAULT_VALUE(name, kind, text) name = (kind) << 5 | name##_AT,
enum {
  WSC_FAULTS(WSC_FAULT_VALUE) WSC_ZFAULTS(WSC_FAULT_VALUE)
      WSC_DFAULTS(WSC_FAULT_VALUE)
};
#undef WSC_FAULT_VALUE
/* on_header() maps a failed frame rule (ws_int.h) to its fault by
 * offset; five bits hold a reason's place */
_Static_assert(F_MASKED == F_UNMASKED + WS_FRULE_MASKED - WS_FRULE_UNMASKED &&
                   F_RSV == F_UNMASKED + WS_FRULE_RSV - WS_FRULE_UNMASKED &&
                   F_CONTROL ==
                       F_UNMASKED + WS_FRULE_CONTROL - WS_FRULE_UNMASKED &&
                   F_OPCODE == F_UNMASKED + WS_FRULE_OPCODE - WS_FRULE_UNMASKED,
               "frame rules and their faults in one order");
_Static_assert(F_ZFAIL_AT < 32, "fault places fit in five bits");

/* wsc_fail() with fault |f|'s error, close code and reason. */
int wsc_fault(ws_conn *c, unsigned f);

/* ---- ws_conn.c ---------------------------------------------------- */

/* Fails the connection: records the sticky error, drops message state and
 * queues a close frame with |code| (0: none, e.g. during the handshake). */
int wsc_fail(ws_conn *c, int err, uint16_t code, const char *reason);

int wsc_hs_alloc(ws_conn *c);

void wsc_hs_free(ws_conn *c);

int wsc_nomem(ws_conn *c);

void wsc_set_event(ws_conn *c, ws_event_type type);

/* The close timeout counts from the next ws_conn_tick(): the caller's
 * clock is read there, not when the close was queued (c->now may be the
 * time of a tick long ago). Until then ws_conn_next_deadline() asks for a
 * tick at once. */
void wsc_arm_close_timer(ws_conn *c);

int wsc_ctrlbuf_get(ws_conn *c);

void wsc_inflater_drop(ws_conn *c);

/* (ws_conn_tx.c) */
void wsc_deflater_drop(ws_conn *c);

/* Arena bytes of a compressor at its largest (0 without one). */
size_t wsc_deflater_memsize(void);

/* Queues a close frame with |code| (0: empty payload) and |reason|. */
int wsc_queue_close(ws_conn *c, uint16_t code, const void *reason,
                    size_t reasonlen);

/* The first byte of a frame (FIN, RSV, opcode) with FIN set. */
#define WS_FIN 0x80u

/* Appends one frame whose first byte is |b0|. Client frames get a fresh
 * mask key and masked payload, copied and masked in one pass. No |data|
 * with a |len|: the frame's header alone (ws_conn_send_ref()). */
int wsc_queue_frame(ws_conn *c, unsigned b0, const void *data, size_t len);

/* ---- ws_conn_hs.c ---------------------------------------------------- */

int wsc_feed_handshake(ws_conn *c, const uint8_t *in, size_t inlen,
                       size_t *pnread);

/* ---- ws_conn_rx.c ---------------------------------------------------- */

/* Compressed data frames (RFC 7692 7.2.2): the payload is unmasked a step
 * at a time and inflated into the stream-mode chunk or the message
 * buffer. The inflated size counts against max_message as it is
 * produced, so a bomb stops at the limit. Once the last frame's payload
 * is in, the tail is fed and the output drained, across as many events
 * as it takes: ws_conn_next_event() resumes the drain, which needs no
 * more input. */
int wsc_read_compressed(ws_conn *c, uint8_t *in, size_t inlen, size_t *pnread);

/* Decodes the frame header from |in|, buffering a split header. Returns
 * 0 with *pnread bytes used; the header is complete when rx_state moved
 * to RX_PAYLOAD. */
int wsc_read_header(ws_conn *c, const uint8_t *in, size_t inlen,
                    size_t *pnread);

/* A frame's payload, to the reader for its kind. */
int wsc_read_payload(ws_conn *c, uint8_t *in, size_t inlen, size_t *pnread);

#endif /* WS_CONN_INT_H */
