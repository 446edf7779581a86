/*
 * Prepared messages (ws_prepared_new(), ws_conn_send_prepared()): one
 * message framed once and compressed once per window size and level, for
 * broadcasting (size builds, WS_SMALL_CODE, frame the uncompressed
 * message at each send, as ws_conn_send() does). Internal, not
 * installed.
 *
 * Why one compressed payload may go to many connections. RFC 7692
 * 7.1.2.1: server_max_window_bits=w limits the window the server
 * compresses with, and the client inflates with a window of 2^w: any
 * DEFLATE stream whose distances stay within 2^w is valid for it,
 * whatever compressed it. RFC 7692 7.1.1.1: with
 * server_no_context_takeover the server starts every message with an
 * empty history, so a message's compressed bytes depend only on the
 * message, the window and the compressor's level -- not on the
 * connection. Connections that negotiated the same window therefore
 * accept the same bytes; this library compresses once per (window,
 * level) in use, so every connection gets exactly the bytes its own
 * ws_conn_send() would have made (a smaller window would do for all of
 * them, at some cost in ratio; the exactness keeps tests and captures
 * comparable). Where our side keeps context (no
 * server_no_context_takeover), the peer's window holds our earlier
 * messages and our compressor refers back into them: such a connection
 * compresses with its own compressor, as ws_conn_send() does.
 *
 * Why the bytes are copied into each output queue rather than
 * referenced: a compressed chat message is small next to what
 * compressing it costs (tests/bench/bench_broadcast.c measures the copy
 * against ws_conn_send_ref(), which queues only the header), a reference
 * would need the output queue to hold several borrowed buffers and
 * release them as they are written (state in every connection, and a
 * lifetime the caller or a reference count must manage), and a copy
 * lets the caller free the prepared message as soon as the broadcast
 * returns.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_PREPARED_H
#define WS_PREPARED_H

#include "ws_int.h"
#include "ws_deflate.h"

/* Room before a payload for the longest unmasked header (2 + 8). */
#define WSP_ROOM 10u

/* A compressed payload for one window size and level. */
typedef struct wsp_variant {
  struct wsp_variant *next;
  size_t len;     /* compressed bytes, the 00 00 ff ff tail removed */
  uint8_t bits;   /* window bits it was compressed with */
  uint8_t level;  /* and level */
  uint8_t hlen;   /* its unmasked header, written just before it */
  uint8_t data[]; /* WSP_ROOM bytes of room, then the payload */
} wsp_variant;

struct ws_prepared {
  ws_mem mem;
  wsp_variant *variants; /* made on first need */
  size_t len;            /* payload bytes */
  uint8_t opcode;        /* WS_OP_TEXT or WS_OP_BINARY */
  uint8_t no_compress;   /* WS_SEND_NO_COMPRESS */
  uint8_t hlen;          /* the plain frame's header (size builds,
                            WS_SMALL_CODE, frame it when sending: 0) */
  uint8_t data[];        /* WSP_ROOM bytes of room, then the payload */
};

/* The payload (as given to ws_prepared_new()). */
static inline const uint8_t *wsp_payload(const ws_prepared *p) {
  return p->data + WSP_ROOM;
}

/* A server frame: its |hlen| header bytes lie just before |payload|. */
static inline const uint8_t *wsp_frame(const uint8_t *payload, uint8_t hlen) {
  return payload - hlen;
}

/* The variant of |p| compressed with window |bits| and |level|, or NULL
 * if none was made yet. */
const wsp_variant *wsp_find(const ws_prepared *p, unsigned bits, int level);

/*
 * The variant of |p| compressed with window |bits| and |level|: found,
 * or made now with |z| (a clean compressor for |bits|, borrowed, and
 * reset again before returning) or, if |z| is NULL, with a compressor
 * of its own allocated from |p|'s allocator and freed before returning.
 * Sets |*pv|. Returns 0, WS_ERR_NOMEM or WS_ERR_INTERNAL; on failure
 * |p| is as it was. (Builds without a compressor have none.)
 */
int wsp_compressed(ws_prepared *p, unsigned bits, int level, ws_deflater *z,
                   const wsp_variant **pv);

#endif /* WS_PREPARED_H */
