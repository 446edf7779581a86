/*
 * The connection's receive side: frame headers, payload in stream and
 * message mode, control frames, compressed messages (RFC 7692 7.2.2).
 * SPDX-License-Identifier: MIT
 */
/* ws_utf8_finish() in line (ws_utf8.h) */
#define WS_UTF8_FINISH_INLINE 1
#include "ws_conn_int.h"

/* ---- receive ------------------------------------------------------------ */

static int is_control(unsigned op) { return (op & 0x8u) != 0; }

/* Checks a complete header against the message state and limits. */
static int on_header(ws_conn *c) {
  wsc_io *io = IO(c);
  ws_frame_header *fh = &io->fh;
  unsigned rule = ws_frame_check(fh, !is_client(c), c->rsv_allowed);
  /* (the rules' faults come first in the table, in rule order) */
  if (rule) return wsc_fault(c, F_UNMASKED + rule - WS_FRULE_UNMASKED);
  if (!is_control(fh->opcode)) {
    /* RFC 6455 5.4: continuation only inside a message, and a new message
     * only after the previous one ended. */
    if (fh->opcode == WS_OP_CONT && !io->msg_op) return wsc_fault(c, F_CONT);
    if (fh->opcode != WS_OP_CONT && io->msg_op)
      return wsc_fault(c, F_UNFINISHED);
    /* RFC 7692 6.1: RSV1 marks the first frame of a compressed message;
     * on a continuation it is an error (control frames with RSV bits
     * were refused above, and so was any RSV bit without the inflater:
     * only permessage-deflate allows one). */
    if (WS_HAS_INFLATE && fh->opcode == WS_OP_CONT && (fh->rsv & WS_RSV1))
      return wsc_fault(c, F_RSV1_CONT);
    if (fh->opcode != WS_OP_CONT) {
      io->msg_op = fh->opcode;
      io->msg_bytes = 0;
      io->nfrags = 0;
      c->msg_started = 0;
      io->utf8.state = 0; /* (ws_utf8_init(), without the call) */
      /* RSV1 is allowed only with the deflate state (never without
       * deflate: WS_NO_DEFLATE) */
      io->rx_comp = WS_HAS_INFLATE && (fh->rsv & WS_RSV1) != 0;
      if (io->rx_comp) {
        c->z->inflated = 0;
        c->z->ztail = 0;
      }
    }
    if (fh->payload_len > ENV(c)->cfg.max_frame_payload)
      return wsc_fault(c, F_FRAME_BIG);
    if (fh->payload_len > ENV(c)->cfg.max_message - io->msg_bytes)
      return wsc_fault(c, F_MSG_BIG);
    if (ENV(c)->cfg.max_fragments && ++io->nfrags > ENV(c)->cfg.max_fragments)
      return wsc_fault(c, F_FRAGS);
  }
  io->remaining = fh->payload_len;
  io->mask_off = 0;
  io->rx_state = RX_PAYLOAD;
  io->ctrllen = 0;
  return 0;
}

/* Decodes the frame header from |in|, buffering a split header. Returns
 * 0 with *pnread bytes used; the header is complete when rx_state moved
 * to RX_PAYLOAD. */
int wsc_read_header(ws_conn *c, const uint8_t *in, size_t inlen,
                    size_t *pnread) {
  wsc_io *io = IO(c);
  size_t hlen;
  int rv;
  if (!WS_SMALL_CODE && io->hdrlen == 0 && inlen >= 6 && (in[1] & 0x7Fu) < 126) {
    /* The common header: 7-bit length and, if masked, the key; here
     * (ws_frame_decode_header() below does the same, a call away). */
    unsigned b0 = in[0], b1 = in[1];
    io->fh.fin = (uint8_t)(b0 >> 7);
    io->fh.rsv = (uint8_t)((b0 >> 4) & 0x7u);
    io->fh.opcode = (uint8_t)(b0 & 0xFu);
    io->fh.masked = (uint8_t)(b1 >> 7);
    io->fh.payload_len = b1 & 0x7Fu;
    if (b1 & 0x80u) {
      memcpy(io->fh.mask, in + 2, 4);
      *pnread = 6;
    } else {
      memset(io->fh.mask, 0, 4);
      *pnread = 2;
    }
    return on_header(c);
  }
  if (!WS_SMALL_CODE && io->hdrlen == 0) {
    /* Whole in the input: decoded there, nothing copied. */
    rv = ws_frame_decode_header(&io->fh, in, inlen, &hlen);
    if (rv == 0) {
      *pnread = hlen;
      return on_header(c);
    }
    if (rv != WS_ERR_WOULDBLOCK) return wsc_fault(c, F_LENGTH);
  }
  /* A header split across feeds (size builds: any header) is gathered in
   * io->hdr. Taking up to its 14 bytes at once is safe: when they are
   * all there the header is complete, and bytes past its end are not
   * counted as used. The decoder runs on every partial header, so an
   * invalid 64-bit length fails at its first byte however the header
   * was split. */
  size_t have = io->hdrlen, k = WS_MIN(sizeof(io->hdr) - have, inlen);
  memcpy(io->hdr + have, in, k);
  rv = ws_frame_decode_header(&io->fh, io->hdr, have + k, &hlen);
  if (rv == WS_ERR_WOULDBLOCK) {
    io->hdrlen = (uint8_t)(have + k); /* (all of |in|: k == inlen) */
    *pnread = k;
    return 0;
  }
  io->hdrlen = 0;
  if (rv) {
    /* The only fault is the length's top bit, at header byte 2: used are
     * the bytes up to it (none when the header began in this input). */
    *pnread = have ? 3 - have : 0;
    return wsc_fault(c, F_LENGTH);
  }
  *pnread = hlen - have;
  return on_header(c);
}

/* Queues the automatic pong, or keeps the latest ping's payload to answer
 * once the output queue has room (RFC 6455 5.5.3: answering only the
 * most recent ping is allowed). */
static int auto_pong(ws_conn *c, const uint8_t *data, size_t len) {
  wsc_io *io = IO(c);
  if (c->flags & WS_CFG_NO_AUTO_PONG) return 0;
  if (c->close_sent_flag) return 0;
  if (!out_full(c)) {
    c->has_pending_pong = 0;
    return wsc_queue_frame(c, WS_FIN | WS_OP_PONG, data, len);
  }
  if (wsc_ctrlbuf_get(c)) return WS_ERR_NOMEM;
  if (len) memcpy(io->ctrlbuf + CTRL_PONG, data, len);
  io->pending_pong_len = (uint8_t)len;
  c->has_pending_pong = 1;
  return 0;
}

/* A whole control frame: the automatic answer, the state change, and
 * its event (a ping's or pong's payload, a close frame's reason). */
static int on_control(ws_conn *c, const uint8_t *data, size_t len) {
  wsc_io *io = IO(c);
  unsigned type = WS_EV_PONG;
  uint16_t code = 0;
  if (io->fh.opcode == WS_OP_PING) {
    if (auto_pong(c, data, len)) return wsc_nomem(c);
    type = WS_EV_PING;
  } else if (io->fh.opcode == WS_OP_PONG) {
    c->ping_outstanding = 0;
    c->ping_wanted = 0;
    io->pong_deadline = NO_DEADLINE;
  } else {
    /* WS_OP_CLOSE; RFC 6455 7.1.5: 1005, no status code present */
    code = 1005;
    if (len == 1) return wsc_fault(c, F_CLOSE_1);
    if (len >= 2) {
      code = (uint16_t)(data[0] << 8 | data[1]);
      if (!ws_close_code_valid(code)) return wsc_fault(c, F_CLOSE_CODE);
      data += 2; /* the reason */
      len -= 2;
      if (ws_utf8_validate(data, len)) return wsc_fault(c, F_CLOSE_UTF8);
    }
    if (!len) data = NULL; /* an event without a reason has no data */
    if (c->close_sent_flag) {
      c->state = WS_STATE_CLOSED;
      io->close_deadline = NO_DEADLINE;
    } else if (!(c->flags & WS_CFG_NO_AUTO_CLOSE)) {
      /* RFC 6455 5.5.1: echo the status code received (and its reason,
       * as other implementations do). */
      if (wsc_queue_close(c, code == 1005 ? 0 : code, data, len))
        return wsc_nomem(c);
      c->state = WS_STATE_CLOSED;
    } else {
      c->state = WS_STATE_CLOSING_REMOTE;
    }
    if (c->state == WS_STATE_CLOSED && is_client(c)) wsc_arm_close_timer(c);
    ws_buf_free(&io->msg, &ENV(c)->mem);
    type = WS_EV_CLOSE;
  }
  wsc_set_event(c, (ws_event_type)type);
  io->ev_close = code;
  io->ev_data.base = data;
  io->ev_data.len = len;
  return 0;
}

/* Frame payload has ended: update message state. Returns the flags for
 * the data event. */
static uint32_t data_frame_end(ws_conn *c, uint32_t flags) {
  wsc_io *io = IO(c);
  flags |= WS_EVF_FRAME_END;
  if (io->fh.fin) {
    flags |= WS_EVF_FINAL;
    io->msg_op = 0;
    c->stats.msgs_in++;
  }
  return flags;
}

#if !defined(WS_NO_DEFLATE)
/* The inflater and, in stream mode, the chunk buffer, on first need. */
static int inflate_prepare(ws_conn *c, conn_z *z, int stream) {
  if (!z->inf) {
    unsigned bits = is_client(c) ? c->pmd.server_max_window_bits
                                 : c->pmd.client_max_window_bits;
    z->inf = ws_malloc(&ENV(c)->mem, sizeof(*z->inf));
    if (!z->inf) return wsc_nomem(c);
    if (ws_inflate_init(z->inf, &ENV(c)->mem, bits)) {
      ws_free(&ENV(c)->mem, z->inf);
      z->inf = NULL;
      return wsc_nomem(c);
    }
  }
  if (stream && !z->zbuf) {
    z->zbuf = ws_malloc(&ENV(c)->mem, ZCHUNK);
    if (!z->zbuf) return wsc_nomem(c);
  }
  return 0;
}

/* Where the next inflated bytes go: the stream-mode chunk or the message
 * buffer, no more than max_message still allows. At the limit it is
 * |probe|, one byte that shows whether the message goes on. */
static int inflate_window(ws_conn *c, conn_z *z, int stream, uint8_t *probe,
                          uint8_t **pout, size_t *proom) {
  wsc_io *io = IO(c);
  /* (in size_t from here: what is left past SIZE_MAX is no limit that
   * a buffer in memory meets) */
  uint64_t left64 = ENV(c)->cfg.max_message - z->inflated;
  size_t left = left64 > SIZE_MAX ? SIZE_MAX : (size_t)left64;
  if (stream) {
    *pout = z->zbuf + z->zlen;
    *proom = ZCHUNK - z->zlen;
  } else {
    if (io->msg.cap == io->msg.len && left > 0) {
      size_t grow = WS_MIN(left, WS_MAX(io->msg.len, 4096u));
      /* never more than max_message, whatever doubling would do */
      if (ws_buf_reserve_bounded(&io->msg, &ENV(c)->mem, grow,
                                 (size_t)ENV(c)->cfg.max_message))
        return wsc_nomem(c);
    }
    *pout = io->msg.base + io->msg.len;
    *proom = io->msg.cap - io->msg.len;
  }
  if (*proom > left) *proom = left;
  if (*proom == 0) {
    *pout = probe;
    *proom = 1;
  }
  return 0;
}

/* One call of the inflater: on the next step of the payload (unmasked
 * for it; what it leaves unused is masked back), on the tail once the
 * message's payload is all in, or on nothing to drain it. */
static int inflate_step(ws_conn *c, conn_z *z, uint8_t *in, size_t n,
                        size_t *ppos, uint8_t *out, size_t room, size_t *pused,
                        size_t *pproduced) {
  wsc_io *io = IO(c);
  const uint8_t *key = io->fh.masked ? io->fh.mask : NULL;
  uint8_t *p = NULL; /* (|in| is NULL when draining: no NULL + 0) */
  const uint8_t *src = NULL;
  size_t k = 0;
  int payload = *ppos < n, rv;
  if (payload) {
    p = in + *ppos;
    k = WS_MIN(n - *ppos, ZSTEP);
    /* (ws_copy_mask() in place: the masking entry point clients link
     * anyway) */
    if (key) ws_copy_mask(p, p, k, key, io->mask_off);
    src = p;
  } else if (io->remaining == 0 && io->fh.fin && z->ztail < sizeof(pmd_tail)) {
    src = pmd_tail + z->ztail;
    k = sizeof(pmd_tail) - z->ztail;
  }
  rv = ws_inflate(z->inf, src, k, pused, out, room, pproduced);
  if (payload) {
    if (key && *pused < k)
      ws_copy_mask(p + *pused, p + *pused, k - *pused, key,
                   (io->mask_off + *pused) & 3u);
    io->mask_off = (uint8_t)((io->mask_off + *pused) & 3u);
    *ppos += *pused;
    io->remaining -= *pused;
  } else if (k) {
    z->ztail = (uint8_t)(z->ztail + *pused);
  }
  return rv;
}

/* Validates |n| more bytes of text: size builds go through the entry
 * point that plain data uses anyway, not a second one (ws_utf8_feed()). */
static int text_feed(ws_conn *c, const uint8_t *p, size_t n) {
  wsc_io *io = IO(c);
#  if WS_SMALL_CODE
  return ws_copy_unmask_utf8(NULL, p, n, NULL, NULL, &io->utf8, NULL);
#  else
  return ws_utf8_feed(&io->utf8, p, n);
#  endif
}

/* Takes |produced| inflated bytes at |out|. What was inflated before an
 * error comes first in the stream, so it is judged first: a split of the
 * input must not change which fault is reported. */
static int inflate_took(ws_conn *c, conn_z *z, int stream, int text,
                        const uint8_t *out, size_t produced,
                        const uint8_t *probe) {
  wsc_io *io = IO(c);
  if (!produced) return 0;
  if (out == probe) return wsc_fault(c, F_MSG_BIG);
  if (text && text_feed(c, out, produced)) return wsc_fault(c, F_UTF8);
  z->inflated += produced;
  c->stats.bytes_in += produced;
  if (stream)
    z->zlen += (uint32_t)produced;
  else
    io->msg.len += produced;
  return 0;
}

/* The end of a compressed message: its text ends on a character, and
 * without context takeover (RFC 7692 7.1.1) nothing carries over, so the
 * inflater's memory goes until the next compressed message. */
static int inflate_finish(ws_conn *c, int text) {
  wsc_io *io = IO(c);
  if (text && ws_utf8_finish(&io->utf8)) return wsc_fault(c, F_UTF8_END);
  io->rx_state = RX_HEADER;
  io->rx_comp = 0;
  io->msg_op = 0;
  c->stats.msgs_in++;
  if (peer_resets(c)) wsc_inflater_drop(c);
  return 0;
}

/* The event for what was inflated: a stream-mode chunk, or the whole
 * message once it is done. */
static void inflate_event(ws_conn *c, conn_z *z, int stream, int text,
                          int done) {
  wsc_io *io = IO(c);
  /* (a whole message is its own first chunk) */
  uint32_t flags = c->msg_started && stream ? 0 : WS_EVF_FIRST;
  if (!done && !(stream && z->zlen)) return; /* nothing to hand out */
  if (done) {
    flags |= WS_EVF_FRAME_END | WS_EVF_FINAL;
    c->release = 1; /* the chunk or message buffer goes at the next call */
  }
  c->msg_started = 1;
  wsc_set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
  io->ev_flags = (uint8_t)flags;
  if (stream) {
    io->ev_data.base = z->zbuf;
    io->ev_data.len = z->zlen;
    z->zlen = 0;
  } else {
    io->ev_data.base = io->msg.base ? io->msg.base + io->msg.pos : NULL;
    io->ev_data.len = ws_buf_size(&io->msg);
  }
}

/* Compressed data frames (RFC 7692 7.2.2): the payload is unmasked a step
 * at a time and inflated into the stream-mode chunk or the message
 * buffer. The inflated size counts against max_message as it is
 * produced, so a bomb stops at the limit. Once the last frame's payload
 * is in, the tail is fed and the output drained, across as many events
 * as it takes: ws_conn_next_event() resumes the drain, which needs no
 * more input. */
int wsc_read_compressed(ws_conn *c, uint8_t *in, size_t inlen, size_t *pnread) {
  wsc_io *io = IO(c);
  conn_z *const z = c->z; /* (in a register across the calls below) */
  size_t n = (size_t)WS_MIN((uint64_t)inlen, io->remaining);
  int text = io->msg_op == WS_OP_TEXT;
  int stream = c->delivery == WS_DELIVER_STREAM;
  size_t pos = 0;
  int done = 0, drained = 0, rv;

  *pnread = 0;
  if ((rv = inflate_prepare(c, z, stream)) != 0) return rv;
  for (;;) {
    uint8_t *out = NULL, probe;
    size_t room = 0, used = 0, produced = 0;
    if (stream && z->zlen == ZCHUNK) break; /* hand out a full chunk */
    if ((rv = inflate_window(c, z, stream, &probe, &out, &room)) != 0)
      return rv;
    rv = inflate_step(c, z, in, n, &pos, out, room, &used, &produced);
    if (inflate_took(c, z, stream, text, out, produced, &probe)) return c->err;
    if (rv) return wsc_fault(c, F_ZDATA);
    int at_end = io->remaining == 0 && io->fh.fin;
    if (produced < room && at_end && z->ztail == sizeof(pmd_tail)) {
      if (ws_inflate_end_message(z->inf)) return wsc_fault(c, F_ZDATA);
      done = 1;
      break;
    }
    /* All input so far used and all its output out: wait for more (but
     * if that input ended the message, go on to its tail at once). */
    if (!at_end && pos == n && produced < room) {
      drained = 1;
      break;
    }
    if (!used && !produced) /* cannot happen: the inflater moved nothing */
      return wsc_fault(c, F_ZSTALL);
  }
  *pnread = pos;
  /* All the input given was taken but the inflater was not drained (a
   * chunk filled up): ws_conn_next_event() goes on, as the caller may
   * have nothing more to feed. */
  z->zpending = (uint8_t)(!(done || drained) && pos == n);
  if (done) {
    if ((rv = inflate_finish(c, text)) != 0) return rv;
  } else if (io->remaining == 0 && !io->fh.fin && drained) {
    io->rx_state = RX_HEADER; /* a non-final frame is over, output and all */
  }
  inflate_event(c, z, stream, text, done);
  return 0;
}
#endif /* !WS_NO_DEFLATE */

/* A control frame's payload (RFC 6455 5.5), |n| more bytes of it. One
 * arriving whole is used in place; a split one is gathered in a small
 * conn buffer. */
static int read_control(ws_conn *c, uint8_t *in, size_t n) {
  wsc_io *io = IO(c);
  const uint8_t *key = io->fh.masked ? io->fh.mask : NULL;
  uint8_t *data = in;
  size_t off = io->ctrllen;
  /* (whole: the first piece leaves nothing of the frame; an empty piece
   * comes only with an empty payload) */
  if (off || io->remaining) {
    if (wsc_ctrlbuf_get(c)) return wsc_nomem(c);
    data = io->ctrlbuf + CTRL_SPLIT;
    io->ctrllen = (uint8_t)(off + n);
  }
  /* unmasked in place or as it is copied (a plain copy without a key) */
  (void)ws_copy_unmask_utf8(data + off, in, n, key, &off, NULL, NULL);
  if (io->remaining) return 0;
  io->rx_state = RX_HEADER;
  return on_control(c, data, (size_t)io->fh.payload_len);
}

#if !WS_SMALL_CODE
/* Uncompressed data, WS_DELIVER_STREAM: unmasked (and validated) in place
 * and lent out as it arrives. */
static int read_stream(ws_conn *c, uint8_t *in, size_t n) {
  wsc_io *io = IO(c);
  const uint8_t *key = io->fh.masked ? io->fh.mask : NULL;
  int text = io->msg_op == WS_OP_TEXT;
  uint32_t flags = c->msg_started ? 0 : WS_EVF_FIRST;
  size_t off = io->mask_off;
  if (text) {
    size_t valid;
    if (ws_unmask_utf8(in, n, key, &off, &io->utf8, &valid))
      return wsc_fault(c, F_UTF8);
  } else if (!WS_SMALL_CODE && key && off == 0 && n <= SMALL_PAYLOAD) {
    unmask_small(in, n, key); /* (saves a call; not in size builds) */
    off = n & 3u;
  } else if (key) {
    off = ws_mask(in, n, key, off);
  }
  io->mask_off = (uint8_t)off;
  io->msg_bytes += n;
  c->stats.bytes_in += n;
  if (io->remaining == 0) {
    io->rx_state = RX_HEADER;
    if (io->fh.fin && text && ws_utf8_finish(&io->utf8))
      return wsc_fault(c, F_UTF8_END);
    flags = data_frame_end(c, flags);
  } else if (n == 0) {
    return 0; /* nothing to report yet */
  }
  c->msg_started = 1;
  wsc_set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
  io->ev_flags = (uint8_t)flags;
  io->ev_data.base = in;
  io->ev_data.len = n;
  return 0;
}

/* Uncompressed data, WS_DELIVER_MESSAGE. A message that is one frame,
 * whole in this input, is unmasked and validated in place and lent out
 * from the input like a stream chunk: no copy, no allocation. Otherwise
 * each piece is copied and unmasked into the message buffer in one pass
 * and validated while hot; the event comes with the last frame. */
static int read_message(ws_conn *c, uint8_t *in, size_t n) {
  wsc_io *io = IO(c);
  const uint8_t *key = io->fh.masked ? io->fh.mask : NULL;
  int text = io->msg_op == WS_OP_TEXT;
  if (io->fh.fin && io->fh.opcode != WS_OP_CONT && n == io->fh.payload_len && n &&
      ws_buf_size(&io->msg) == 0) {
    /* the whole payload of a single-frame message is here */
    if (text) {
      size_t off = 0, valid;
      if (ws_unmask_utf8(in, n, key, &off, &io->utf8, &valid))
        return wsc_fault(c, F_UTF8);
    } else if (key) {
      (void)ws_mask(in, n, key, 0);
    }
  } else if (n) {
    /* Never hold more than the limit, whatever the doubling would do. */
    size_t limit = ENV(c)->cfg.max_message > SIZE_MAX
                       ? SIZE_MAX
                       : (size_t)ENV(c)->cfg.max_message;
    if (ws_buf_reserve_bounded(&io->msg, &ENV(c)->mem, n, limit))
      return wsc_nomem(c);
    uint8_t *dst = io->msg.base + io->msg.len;
    io->msg.len += n;
    if (text) {
      /* copied, unmasked and validated in one pass */
      size_t off = io->mask_off, valid;
      int bad = ws_copy_unmask_utf8(dst, in, n, key, &off, &io->utf8, &valid);
      io->mask_off = (uint8_t)off;
      if (bad) return wsc_fault(c, F_UTF8);
    } else if (key) {
      io->mask_off = (uint8_t)ws_copy_mask(dst, in, n, key, io->mask_off);
    } else {
      memcpy(dst, in, n);
    }
  }
  io->msg_bytes += n;
  c->stats.bytes_in += n;
  if (io->remaining) return 0;
  io->rx_state = RX_HEADER;
  if (!io->fh.fin) return 0;
  if (text && ws_utf8_finish(&io->utf8)) return wsc_fault(c, F_UTF8_END);
  wsc_set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
  io->ev_flags = (uint8_t)data_frame_end(c, WS_EVF_FIRST);
  if (ws_buf_size(&io->msg) == 0) { /* in place (or empty) */
    io->ev_data.base = n ? in : NULL;
    io->ev_data.len = n;
    return 0;
  }
  io->ev_data.base = io->msg.base + io->msg.pos;
  io->ev_data.len = ws_buf_size(&io->msg);
  c->release = 1; /* the message buffer goes at the next call */
  return 0;
}
#endif /* !WS_SMALL_CODE */

#if WS_SMALL_CODE
/* Uncompressed data in either delivery mode, for size builds: the two
 * readers above folded into one, with the same results. Stream mode, and
 * a single-frame message whole in this input, are unmasked (and
 * validated) in place and lent out; other message pieces are copied into
 * the message buffer, unmasked and validated by the same call. */
static int read_data(ws_conn *c, uint8_t *in, size_t n) {
  wsc_io *io = IO(c);
  const uint8_t *key = io->fh.masked ? io->fh.mask : NULL;
  int text = io->msg_op == WS_OP_TEXT;
  int stream = c->delivery == WS_DELIVER_STREAM;
  uint32_t flags = c->msg_started && stream ? 0 : WS_EVF_FIRST;
  uint8_t *dst = in;
  /* (a single-frame message whole in this input: nothing of it left
   * after this piece and none before it, which would be in the buffer) */
  if (n && !stream &&
      !(io->fh.fin && io->fh.opcode != WS_OP_CONT && io->remaining == 0 &&
        ws_buf_size(&io->msg) == 0)) {
    /* Never hold more than the limit, whatever the doubling would do. */
    size_t limit = ENV(c)->cfg.max_message > SIZE_MAX
                       ? SIZE_MAX
                       : (size_t)ENV(c)->cfg.max_message;
    if (ws_buf_reserve_bounded(&io->msg, &ENV(c)->mem, n, limit))
      return wsc_nomem(c);
    dst = io->msg.base + io->msg.len;
    io->msg.len += n;
  }
  size_t off = io->mask_off; /* (0 for a whole frame) */
  if (ws_copy_unmask_utf8(dst, in, n, key, &off, text ? &io->utf8 : NULL, NULL))
    return wsc_fault(c, F_UTF8);
  io->mask_off = (uint8_t)off;
  io->msg_bytes += n;
  c->stats.bytes_in += n;
  if (io->remaining == 0) {
    io->rx_state = RX_HEADER;
    if (io->fh.fin && text && ws_utf8_finish(&io->utf8))
      return wsc_fault(c, F_UTF8_END);
    if (!io->fh.fin && !stream) return 0;
    flags = data_frame_end(c, flags);
  } else if (n == 0 || !stream) {
    return 0; /* nothing to report yet */
  }
  c->msg_started = 1;
  wsc_set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
  io->ev_flags = (uint8_t)flags;
  if (stream || ws_buf_size(&io->msg) == 0) { /* in place (or empty) */
    io->ev_data.base = n || stream ? in : NULL;
    io->ev_data.len = n;
    return 0;
  }
  io->ev_data.base = io->msg.base + io->msg.pos;
  io->ev_data.len = ws_buf_size(&io->msg);
  c->release = 1; /* the message buffer goes at the next call */
  return 0;
}
#endif

/* A frame's payload, to the reader for its kind. Control frames and
 * uncompressed data take all of the frame that is here. */
int wsc_read_payload(ws_conn *c, uint8_t *in, size_t inlen, size_t *pnread) {
  wsc_io *io = IO(c);
  int control = is_control(io->fh.opcode);
#if !defined(WS_NO_DEFLATE)
  if (io->rx_comp && !control) return wsc_read_compressed(c, in, inlen, pnread);
#endif
  size_t n = (size_t)WS_MIN((uint64_t)inlen, io->remaining);
  *pnread = n;
  io->remaining -= n;
  if (control) return read_control(c, in, n);
#if WS_SMALL_CODE
  return read_data(c, in, n);
#else
  if (c->delivery == WS_DELIVER_STREAM) return read_stream(c, in, n);
  return read_message(c, in, n);
#endif
}

/* How big a drained buffer may stay allocated (WS_CFG_KEEP_BUFFERS). */
