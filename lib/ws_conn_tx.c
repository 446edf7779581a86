/*
 * The connection's send side: data and control frames, compression
 * (RFC 7692 7.2.1), and the compressor shared between connections.
 * SPDX-License-Identifier: MIT
 */
#include "ws_conn_int.h"
#include "ws_prepared.h"

/* ---- send ---------------------------------------------------------------- */

static int can_send_data(const ws_conn *c) {
  return !c->err && !c->close_sent_flag &&
         (c->state == WS_STATE_OPEN || c->state == WS_STATE_CLOSING_REMOTE);
}

#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)
/* ---- the shared compressor ----------------------------------------------- */

struct ws_pmd_shared {
  ws_mem mem;
  int level;
  ws_deflater *z[WS_DEFLATE_MAX_WINDOW_BITS - WS_DEFLATE_MIN_WINDOW_BITS + 1];
};

int ws_pmd_shared_new(ws_pmd_shared **pshared, int level, const ws_mem *mem) {
  ws_mem m;
  if (!pshared || level < 0 || level > 9) return WS_ERR_INVALID_ARGUMENT;
  *pshared = NULL;
  if (ws_mem_resolve(&m, mem)) return WS_ERR_INVALID_ARGUMENT;
  ws_pmd_shared *sh = ws_malloc(&m, sizeof(*sh));
  if (!sh) return WS_ERR_NOMEM;
  memset(sh, 0, sizeof(*sh));
  sh->mem = m;
  sh->level = level ? level : WS_DEFLATE_DEFAULT;
  *pshared = sh;
  return 0;
}

void ws_pmd_shared_del(ws_pmd_shared *sh) {
  if (!sh) return;
  for (size_t i = 0; i < sizeof(sh->z) / sizeof(sh->z[0]); i++) {
    if (!sh->z[i]) continue;
    ws_deflate_free(sh->z[i]);
    ws_free(&sh->mem, sh->z[i]);
  }
  ws_free(&sh->mem, sh);
}

/* The shared compressor for |bits|, created on first use. */
static int shared_get(ws_pmd_shared *sh, unsigned bits, ws_deflater **pz) {
  ws_deflater **slot = &sh->z[bits - WS_DEFLATE_MIN_WINDOW_BITS];
  if (!*slot) {
    ws_deflater *z = ws_malloc(&sh->mem, sizeof(*z));
    if (!z) return WS_ERR_NOMEM;
    if (ws_deflate_init(z, &sh->mem, bits, sh->level)) {
      ws_free(&sh->mem, z);
      return WS_ERR_NOMEM;
    }
    *slot = z;
  }
  *pz = *slot;
  return 0;
}

/* Compresses one fragment of a message into a frame (RFC 7692 7.2.1):
 * RSV1 on the first frame only; the last one ends with a sync flush whose
 * 00 00 ff ff tail is removed. The payload is compressed straight into
 * the output queue behind room for the longest header, which then moves
 * down next to the header once the payload's length is known. */
static int queue_compressed(ws_conn *c, unsigned fin, unsigned opcode,
                            const uint8_t *data, size_t len) {
  wsc_io *io = IO(c);
  uint8_t hdr[WS_FRAME_HEADER_MAX], key[4];
  if (is_client(c) && ENV(c)->cfg.rand(key, 4, ENV(c)->cfg.rand_user_data))
    return WS_ERR_INTERNAL;
  unsigned bits = is_client(c) ? c->pmd.client_max_window_bits
                               : c->pmd.server_max_window_bits;
  ws_deflater *z = c->z->def;
  /* A message that starts and ends in this call, with no context to
   * keep, can borrow the thread's shared compressor. */
  int borrowed =
      !z && c->z->cfg.shared && fin && opcode != WS_OP_CONT && we_reset(c);
  if (borrowed) {
    int rv = shared_get(c->z->cfg.shared, bits, &z);
    if (rv) return rv;
  } else if (!z) {
    int level = c->z->cfg.level;
    if (level < 1 || level > 9) level = WS_DEFLATE_DEFAULT;
    z = ws_malloc(&ENV(c)->mem, sizeof(*z));
    if (!z) return WS_ERR_NOMEM;
    if (ws_deflate_init(z, &ENV(c)->mem, bits, level)) {
      ws_free(&ENV(c)->mem, z);
      return WS_ERR_NOMEM;
    }
    c->z->def = z;
  }
  size_t clen = 0, used = 0;
  size_t step = WS_MAX(len / 2, 64u) + 64u; /* most data shrinks */
  int rv;
  do {
    if (ws_buf_reserve_bounded(&io->out, &ENV(c)->mem,
                               WS_FRAME_HEADER_MAX + clen + step,
                               (size_t)ENV(c)->cfg.max_out_queue + 512u)) {
      /* The compressor has taken input it cannot give back: the
       * message cannot go on, so neither can the connection. */
      if (borrowed) ws_deflate_reset(z);
      return wsc_nomem(c);
    }
    uint8_t *dst = io->out.base + io->out.len + WS_FRAME_HEADER_MAX + clen;
    size_t room = io->out.cap - io->out.len - WS_FRAME_HEADER_MAX - clen;
    size_t nin, nout;
    rv = ws_deflate(z, len ? data + used : data, len - used, &nin, dst, room,
                    &nout, fin ? WS_DEFLATE_SYNC_FLUSH : WS_DEFLATE_NO_FLUSH);
    used += nin;
    clen += nout;
    step = WS_MAX(step, clen);
  } while (rv == WS_ERR_WOULDBLOCK);
  if (borrowed) ws_deflate_reset(z); /* clean for its next borrower */
  if (rv) return wsc_fault(c, F_ZFAIL);
  uint8_t *base = io->out.base + io->out.len;
  if (fin) clen -= sizeof(pmd_tail); /* it ends in 00 00 ff ff */
  size_t hlen = ws_frame_put_header(
      hdr,
      (fin ? 0x80u : 0u) | (opcode != WS_OP_CONT ? WS_RSV1 << 4 : 0u) | opcode,
      clen, is_client(c) ? key : NULL);
  memmove(base + hlen, base + WS_FRAME_HEADER_MAX, clen);
  memcpy(base, hdr, hlen);
  if (is_client(c)) ws_mask(base + hlen, clen, key, 0);
  io->out.len += hlen + clen;
  c->stats.wire_out += hlen + clen;
  /* RFC 7692 7.1.1: without context takeover the next message starts
   * afresh, so the compressor's memory is not kept between messages. */
  if (fin && we_reset(c)) wsc_deflater_drop(c);
  return 0;
}

void wsc_deflater_drop(ws_conn *c) {
  if (!c->z || !c->z->def) return;
  ws_deflate_free(c->z->def);
  ws_free(&ENV(c)->mem, c->z->def);
  c->z->def = NULL;
}

size_t wsc_deflater_memsize(void) {
  /* two arena blocks: a header and up to one alignment unit each */
  return sizeof(ws_deflater) + ws_deflate_memsize(15, 9) +
         4 * (size_t)WS_ARENA_ALIGN;
}

#else  /* no compressor (WS_NO_DEFLATE, WS_INFLATE_ONLY) */

void wsc_deflater_drop(ws_conn *c) { (void)c; }

size_t wsc_deflater_memsize(void) { return 0; }

int ws_pmd_shared_new(ws_pmd_shared **pshared, int level, const ws_mem *mem) {
  (void)level;
  (void)mem;
  if (pshared) *pshared = NULL;
  return WS_ERR_INVALID_ARGUMENT;
}

void ws_pmd_shared_del(ws_pmd_shared *sh) { (void)sh; }
#endif /* !WS_NO_DEFLATE && !WS_INFLATE_ONLY */

/* The header of a data frame with a |len|-byte payload (RFC 6455 5.2):
 * the queue's limit counts it. */
static size_t data_hlen(const ws_conn *c, size_t len) {
  return 2u +
         (len < 126       ? 0u
          : len <= 0xffff ? 2u
                          : 8u) +
         (is_client(c) ? 4u : 0u);
}

int ws_conn_send(ws_conn *c, ws_opcode opcode, const void *data, size_t len,
                 uint32_t flags) {
  if (!c || (len && !data)) return WS_ERR_INVALID_ARGUMENT;
  if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY)
    return WS_ERR_INVALID_ARGUMENT;
  wsc_io *io = io_get(c);
  if (!io) return WS_ERR_NOMEM;
  if (io->tx_op && io->tx_op != opcode) return WS_ERR_INVALID_ARGUMENT;
  if (!can_send_data(c)) return WS_ERR_INVALID_STATE;
  /* Data never makes the queue exceed max_out_queue (a compressed
   * message is counted at its uncompressed size). */
  size_t max = ENV(c)->cfg.max_out_queue;
  size_t hlen = data_hlen(c, len);
  if (len > max - hlen) return WS_ERR_TOO_BIG;
  if (io_out_size(io) > max - hlen - len) return WS_ERR_WOULDBLOCK;
  unsigned fin = !(flags & WS_SEND_MORE);
  /* Whether a message is compressed is decided at its first fragment:
   * small single-frame messages are not worth it (min_size). */
  unsigned op = io->tx_op ? WS_OP_CONT : (unsigned)opcode;
#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)
  int comp = io->tx_op ? io->tx_comp
                      : c->pmd.enabled && !(flags & WS_SEND_NO_COMPRESS) &&
                            (!fin || len >= c->z->cfg.min_size);
  int rv = comp ? queue_compressed(c, fin, op, (const uint8_t *)data, len)
                : wsc_queue_frame(c, (fin ? WS_FIN : 0u) | op, data, len);
#else /* (WS_INFLATE_ONLY: RFC 7692 lets any message go uncompressed) */
  int comp = 0;
  int rv = wsc_queue_frame(c, (fin ? WS_FIN : 0u) | op, data, len);
#endif
  if (rv) return rv;
  io->tx_comp = (uint8_t)(fin ? 0 : comp);
  io->tx_op = fin ? 0 : (uint8_t)opcode;
  c->stats.bytes_out += len;
  if (fin) c->stats.msgs_out++;
  return 0;
}

int ws_conn_send_ref(ws_conn *c, ws_opcode opcode, void *data, size_t len,
                     uint32_t flags) {
  if (!c || (len && !data)) return WS_ERR_INVALID_ARGUMENT;
  if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY)
    return WS_ERR_INVALID_ARGUMENT;
  wsc_io *io = io_get(c);
  if (!io) return WS_ERR_NOMEM;
  if (io->tx_op && io->tx_op != opcode) return WS_ERR_INVALID_ARGUMENT;
  /* (a compressed message goes on compressed: tx_comp is set only with
   * tx_op, and never without a compressor) */
  if (!can_send_data(c) || (WS_HAS_DEFLATE && io->tx_comp))
    return WS_ERR_INVALID_STATE;
  if (io->ref_len) return WS_ERR_WOULDBLOCK; /* one at a time */
  size_t max = ENV(c)->cfg.max_out_queue;
  if (len > max - WS_FRAME_HEADER_MAX) return WS_ERR_TOO_BIG;
  if (io_out_size(io) > max - WS_FRAME_HEADER_MAX - len)
    return WS_ERR_WOULDBLOCK;
  unsigned fin = !(flags & WS_SEND_MORE);
  /* the header alone, with a fresh mask key (no payload given) */
  int rv = wsc_queue_frame(
      c, (fin ? WS_FIN : 0u) | (io->tx_op ? WS_OP_CONT : (unsigned)opcode),
      NULL, len);
  if (rv) return rv;
  if (len) {
    /* masked where it is, with the key the header just queued ends in */
    if (is_client(c)) ws_mask(data, len, io->out.base + io->out.len - 4, 0);
    io->ref = data;
    io->ref_len = (uint32_t)len; /* (both under max_out_queue) */
    io->ref_at = (uint32_t)ws_buf_size(&io->out);
  }
  io->tx_op = fin ? 0 : (uint8_t)opcode; /* (tx_comp is 0: see above) */
  c->stats.wire_out += len;
  c->stats.bytes_out += len;
  if (fin) c->stats.msgs_out++;
  return 0;
}

size_t ws_conn_send_ref_pending(const ws_conn *c) {
  return c && HAS_IO(c) ? IO(c)->ref_len : 0;
}

/* ---- prepared messages (ws_prepared.h) ----------------------------------- */

/* Queues a whole message whose payload |pay| is prepared already: a
 * server copies the frame whose |hlen| header bytes lie before |pay|; a
 * client frames it with a fresh mask key, masking as it copies. */
static int queue_prepared(ws_conn *c, unsigned rsv, unsigned opcode,
                          const uint8_t *pay, size_t len, uint8_t hlen) {
  wsc_io *io = IO(c);
  if (is_client(c)) /* framed like any message, with a fresh key */
    return wsc_queue_frame(c, WS_FIN | rsv << 4 | opcode, pay, len);
  size_t n = hlen + len;
  if (ws_buf_reserve_bounded(&io->out, &ENV(c)->mem, n,
                             (size_t)ENV(c)->cfg.max_out_queue + 512u))
    return WS_ERR_NOMEM;
  memcpy(io->out.base + io->out.len, wsp_frame(pay, hlen), n);
  io->out.len += n;
  c->stats.wire_out += n;
  return 0;
}

int ws_conn_send_prepared(ws_conn *c, ws_prepared *p) {
  if (!c || !p) return WS_ERR_INVALID_ARGUMENT;
  if (!io_get(c)) return WS_ERR_NOMEM;
  /* RFC 6455 5.4: no other message between the fragments of one */
  if (!can_send_data(c) || IO(c)->tx_op) return WS_ERR_INVALID_STATE;
  size_t len = p->len;
  const uint8_t *pay = wsp_payload(p);
  int comp = 0, rv;
#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)
  comp = c->pmd.enabled && !p->no_compress && len >= c->z->cfg.min_size;
#endif
  /* Size builds (WS_SMALL_CODE) frame an uncompressed message as
   * ws_conn_send() does, through the same code: the same checks, which
   * pass as far as the ones above, the same bytes as the prepared frame
   * and the same counts. */
  if (WS_SMALL_CODE && !comp)
    return ws_conn_send(c, (ws_opcode)p->opcode, pay, len,
                        WS_SEND_NO_COMPRESS);
  /* the limits of ws_conn_send(), counted at the uncompressed size */
  size_t max = ENV(c)->cfg.max_out_queue;
  size_t hlen = data_hlen(c, len);
  if (len > max - hlen) return WS_ERR_TOO_BIG;
  if (out_size(c) > max - hlen - len) return WS_ERR_WOULDBLOCK;
#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)
  if (comp) {
    /* RFC 7692 7.1.1: with context takeover our next message may refer
     * back into this one, in the window our own compressor keeps */
    if (!we_reset(c)) return ws_conn_send(c, (ws_opcode)p->opcode, pay, len, 0);
    /* RFC 7692 7.1.2: the window the peer inflates with */
    unsigned bits = is_client(c) ? c->pmd.client_max_window_bits
                                 : c->pmd.server_max_window_bits;
    ws_pmd_shared *sh = c->z->cfg.shared;
    ws_deflater *z = NULL;
    /* the level ws_conn_send() would compress with */
    int level = sh ? sh->level : c->z->cfg.level;
    if (level < 1 || level > 9) level = WS_DEFLATE_DEFAULT;
    const wsp_variant *v = wsp_find(p, bits, level);
    if (!v) {
      if (sh) {
        rv = shared_get(sh, bits, &z);
        if (rv) return rv;
      }
      rv = wsp_compressed(p, bits, level, z, &v);
      if (rv) return rv;
    }
    rv = queue_prepared(c, WS_RSV1, p->opcode, v->data + WSP_ROOM, v->len,
                        v->hlen);
  } else
#endif
  {
    rv = queue_prepared(c, 0, p->opcode, pay, len, p->hlen);
  }
  if (rv) return rv;
  c->stats.bytes_out += len;
  c->stats.msgs_out++;
  return 0;
}

static int send_control(ws_conn *c, unsigned op, const void *data, size_t len) {
  if (!c || (len && !data)) return WS_ERR_INVALID_ARGUMENT;
  if (len > WS_CONTROL_MAX) return WS_ERR_INVALID_ARGUMENT;
  if (!can_send_data(c)) return WS_ERR_INVALID_STATE;
  if (out_full(c)) return WS_ERR_WOULDBLOCK;
  if (!io_get(c)) return WS_ERR_NOMEM;
  return wsc_queue_frame(c, WS_FIN | op, data, len);
}

int ws_conn_ping(ws_conn *c, const void *data, size_t len) {
  return send_control(c, WS_OP_PING, data, len);
}

int ws_conn_pong(ws_conn *c, const void *data, size_t len) {
  return send_control(c, WS_OP_PONG, data, len);
}

int ws_conn_close(ws_conn *c, uint16_t code, const void *reason,
                  size_t reasonlen) {
  if (!c || (reasonlen && !reason)) return WS_ERR_INVALID_ARGUMENT;
  /* a valid code, or none and no reason */
  if (code ? !ws_close_code_valid(code) : reasonlen != 0)
    return WS_ERR_INVALID_ARGUMENT;
  if (reasonlen > WS_CONTROL_MAX - 2 || ws_utf8_validate(reason, reasonlen))
    return WS_ERR_INVALID_ARGUMENT;
  if (!can_send_data(c)) return WS_ERR_INVALID_STATE;
  if (!io_get(c)) return WS_ERR_NOMEM;
  int rv = wsc_queue_close(c, code, reason, reasonlen);
  if (rv) return rv;
  if (c->state == WS_STATE_CLOSING_REMOTE) {
    c->state = WS_STATE_CLOSED;
    if (is_client(c)) wsc_arm_close_timer(c);
  } else {
    c->state = WS_STATE_CLOSING_LOCAL;
    wsc_arm_close_timer(c);
  }
  return 0;
}
