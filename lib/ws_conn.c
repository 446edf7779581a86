/*
 * The connection state machine: handshake -> open -> closing -> closed.
 * SPDX-License-Identifier: MIT
 *
 * Input is parsed by ws_conn_feed() until one event is ready; the event
 * waits in a single slot until ws_conn_next_event() takes it, and feed
 * refuses input meanwhile. That one rule gives the ordering guarantees:
 * everything that arrived before a bad frame has been handed out before
 * the frame is even looked at, and event slices can borrow the input.
 *
 * Errors are derived state, not queued events: once |err| is set, the
 * next ws_conn_next_event() with an empty slot reports it once.
 */
#include "ws_int.h"
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
  ws_buf in;        /* the request or response head as it arrives */
  size_t scanned;   /* bytes of |in| already searched for CRLFCRLF */
  ws_header *headers;
  ws_request req;
  ws_response resp;
  char key[24];     /* client: Sec-WebSocket-Key sent */
  uint8_t *offered; /* client: offered subprotocols as one comma list */
  size_t offeredlen;
  uint8_t parsed;   /* head complete and parsed, event produced */
  uint8_t http;     /* server: the request is plain HTTP (WS_EV_HTTP) */
} ws_hs;


/* What a connection reads of its ws_config: copied at ws_conn_new(),
 * without what it does not need (the permessage-deflate configuration
 * lives in conn_z, only when enabled). */
typedef struct conn_cfg {
  uint64_t max_frame_payload;
  uint64_t max_message;
  ws_rand_fn rand;
  void *rand_user_data;
  uint32_t max_fragments;
  uint32_t max_out_queue;
  uint32_t ping_interval_ms;
  uint32_t pong_timeout_ms;
  uint32_t close_timeout_ms;
} conn_cfg;

/* permessage-deflate state (RFC 7692), allocated with the connection
 * only when the configuration enables it. */
typedef struct conn_z {
  ws_pmd_config cfg;  /* as configured */
  uint64_t inflated;  /* inflated bytes of the current message */
  ws_inflater *inf;   /* allocated by the first compressed message */
  ws_deflater *def;
  uint8_t *zbuf;      /* stream mode: inflated data lent to events */
  uint32_t zlen;      /* stream mode: inflated bytes in zbuf */
  uint8_t ztail;      /* bytes of the 00 00 ff ff tail fed (7.2.2) */
  uint8_t zpending;   /* all input given was taken, its output not all
                         out yet */
} conn_z;

struct ws_conn {
  ws_mem mem;
  conn_cfg cfg;
  ws_buf out;  /* queued output */
  ws_hs *hs;   /* non-NULL while connecting (and one event after) */
  ws_buf msg;  /* message mode: the message being assembled */
  /* Allocated on first need, 2 x 125 B: at CTRL_SPLIT a control payload
   * split across feeds, at CTRL_PONG the latest unanswered ping while the
   * output queue is full. */
  uint8_t *ctrlbuf;
  uint8_t *protocol; /* negotiated subprotocol, conn-owned */
  conn_z *z;         /* permessage-deflate configured: its state */
  const char *err_reason;

  /* timers, in caller milliseconds; UINT64_MAX = not armed */
  uint64_t now;
  uint64_t last_rx;
  uint64_t pong_deadline;
  /* The handshake deadline is armed only while connecting, the close
   * deadline only after: they share the field. */
  union {
    uint64_t hs_deadline;
    uint64_t close_deadline;
  };

  ws_stats stats;

  /* receive side */
  ws_frame_header fh;
  uint64_t remaining;  /* payload bytes left in the current frame */
  /* Limits read only while connecting share their storage with the
   * counts and validator of the message being received, which are read
   * only once open, after the first frame of a message has set them. */
  union {
    struct {
      uint32_t max_handshake_bytes;
      uint32_t max_headers;
      uint32_t handshake_timeout_ms;
    };
    struct {
      uint64_t msg_bytes; /* payload bytes so far in the current message */
      uint32_t nfrags;    /* frames so far in the current message */
      ws_utf8 utf8;       /* its validator, when it is text */
    };
  };
  /* The one event waiting to be pulled (ev_ready), kept compactly:
   * ws_conn_next_event() rebuilds the ws_event (its request or response
   * is the handshake state's, its error the sticky one). */
  ws_slice ev_data;
  int err;
  uint32_t protocollen; /* (bounded by max_handshake_bytes) */
  uint16_t close_sent; /* code we sent */
  uint16_t ev_close;   /* the waiting event's close code */
  uint8_t hdr[WS_FRAME_HEADER_MAX];
  uint8_t hdrlen;
  uint8_t rx_state;
  uint8_t msg_op;      /* WS_OP_TEXT/BINARY while a message is open */
  uint8_t mask_off;
  uint8_t ctrllen;
  uint8_t pending_pong_len;
  uint8_t rx_comp;     /* the message being received is compressed */
  uint8_t rsv_allowed; /* RSV bits negotiated by extensions */

  /* configuration (the rest of conn_cfg) */
  uint8_t role;        /* ws_role */
  uint8_t delivery;    /* ws_delivery */
  uint8_t flags;       /* WS_CFG_* */

  /* send side and state */
  uint8_t tx_op;       /* opcode of an unfinished fragmented send */
  uint8_t tx_comp;     /* the fragmented message being sent is compressed */
  uint8_t state;       /* ws_state */
  uint8_t ev_type;     /* the waiting event's ws_event_type */
  uint8_t ev_flags;    /* and its WS_EVF_* */
  ws_pmd_params pmd;   /* negotiated permessage-deflate */

  /* yes/no state, a bit each */
  unsigned msg_started : 1;      /* some data of the message was delivered */
  unsigned has_pending_pong : 1; /* ctrlbuf + CTRL_PONG: a ping to answer */
  unsigned ev_ready : 1;         /* |ev| waits to be pulled */
  unsigned err_reported : 1;
  unsigned release : 1;     /* free conn-owned event storage on next call */
  unsigned rx_activity : 1; /* bytes arrived since the last tick */
  unsigned clock_started : 1;
  unsigned close_sent_flag : 1;
  unsigned linger_done : 1; /* client: waited long enough for server's FIN */
  unsigned ping_outstanding : 1;
  unsigned close_arm : 1;   /* start the close timer at the next tick */
  unsigned ping_wanted : 1; /* a ping was due while the output queue was
                               full: it goes out as soon as there is room */
};

#define NO_DEADLINE UINT64_MAX

/* The two halves of ctrlbuf. */
#define CTRL_SPLIT 0
#define CTRL_PONG WS_CONTROL_MAX

static int ctrlbuf_get(ws_conn *c) {
  if (!c->ctrlbuf) {
    c->ctrlbuf = ws_malloc(&c->mem, (size_t)2 * WS_CONTROL_MAX);
    if (!c->ctrlbuf) return WS_ERR_NOMEM;
  }
  return 0;
}

void ws_config_default(ws_config *cfg, ws_role role) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->size = (uint32_t)sizeof(*cfg);
  cfg->role = role;
  cfg->delivery = WS_DELIVER_STREAM;
  cfg->max_handshake_bytes = 8192;
  cfg->max_headers = 64;
  cfg->max_frame_payload = 1u << 20;
  cfg->max_message = 1u << 20;
  cfg->max_fragments = 65536;
  cfg->max_out_queue = 4u << 20;
  cfg->handshake_timeout_ms = 10000;
  cfg->ping_interval_ms = 25000;
  cfg->pong_timeout_ms = 25000;
  cfg->close_timeout_ms = 5000;
  cfg->pmd.level = 6;
  cfg->pmd.server_max_window_bits = 15;
  cfg->pmd.client_max_window_bits = 15;
  cfg->pmd.min_size = 32;
}

size_t ws_conn_sizeof(void) { return sizeof(ws_conn); }

static int hs_alloc(ws_conn *c) {
  c->hs = ws_malloc(&c->mem, sizeof(ws_hs));
  if (!c->hs) return WS_ERR_NOMEM;
  memset(c->hs, 0, sizeof(ws_hs));
  return 0;
}

static void hs_free(ws_conn *c) {
  if (!c->hs) return;
  ws_buf_free(&c->hs->in, &c->mem);
  ws_free(&c->mem, c->hs->headers);
  ws_free(&c->mem, c->hs->offered);
  ws_free(&c->mem, c->hs);
  c->hs = NULL;
}

int ws_conn_new(ws_conn **pconn, const ws_config *cfg, const ws_mem *mem) {
  ws_mem m;
  if (!pconn || !cfg) return WS_ERR_INVALID_ARGUMENT;
  *pconn = NULL;
  /* ABI: 0 is the 0.2 layout; no other layout exists yet */
  if (cfg->size != 0 && cfg->size != sizeof(ws_config))
    return WS_ERR_INVALID_ARGUMENT;
  if (cfg->role != WS_ROLE_SERVER && cfg->role != WS_ROLE_CLIENT)
    return WS_ERR_INVALID_ARGUMENT;
  if (cfg->role == WS_ROLE_CLIENT && !cfg->rand)
    return WS_ERR_INVALID_ARGUMENT;
  if (cfg->max_handshake_bytes < 64 || cfg->max_headers == 0 ||
      cfg->max_out_queue < 1024)
    return WS_ERR_INVALID_ARGUMENT;
  if (ws_mem_resolve(&m, mem)) return WS_ERR_INVALID_ARGUMENT;
  ws_conn *c = ws_malloc(&m, sizeof(*c));
  if (!c) return WS_ERR_NOMEM;
  memset(c, 0, sizeof(*c));
  c->mem = m;
  c->cfg.max_frame_payload = cfg->max_frame_payload;
  c->cfg.max_message = cfg->max_message;
  c->cfg.rand = cfg->rand;
  c->cfg.rand_user_data = cfg->rand_user_data;
  c->cfg.max_fragments = cfg->max_fragments;
  c->cfg.max_out_queue = cfg->max_out_queue;
  c->max_handshake_bytes = cfg->max_handshake_bytes;
  c->max_headers = cfg->max_headers;
  c->handshake_timeout_ms = cfg->handshake_timeout_ms;
  c->cfg.ping_interval_ms = cfg->ping_interval_ms;
  c->cfg.pong_timeout_ms = cfg->pong_timeout_ms;
  c->cfg.close_timeout_ms = cfg->close_timeout_ms;
  c->role = (uint8_t)cfg->role;
  /* (any value but WS_DELIVER_STREAM has always meant whole messages) */
  c->delivery = (uint8_t)(cfg->delivery == WS_DELIVER_STREAM
                              ? WS_DELIVER_STREAM
                              : WS_DELIVER_MESSAGE);
  /* every WS_CFG_* flag fits in the byte */
  c->flags = (uint8_t)(cfg->flags &
                       (WS_CFG_NO_AUTO_PONG | WS_CFG_NO_AUTO_CLOSE |
                        WS_CFG_HTTP | WS_CFG_KEEP_BUFFERS));
  c->state = WS_STATE_CONNECTING;
  c->hs_deadline = c->pong_deadline = c->close_deadline = NO_DEADLINE;
  if (cfg->pmd.enable) {
    c->z = ws_malloc(&m, sizeof(*c->z));
    if (!c->z) {
      ws_free(&m, c);
      return WS_ERR_NOMEM;
    }
    memset(c->z, 0, sizeof(*c->z));
    c->z->cfg = cfg->pmd;
  }
  if (cfg->role == WS_ROLE_SERVER && hs_alloc(c)) {
    ws_free(&m, c->z);
    ws_free(&m, c);
    return WS_ERR_NOMEM;
  }
  *pconn = c;
  return 0;
}

static void inflater_drop(ws_conn *c) {
  if (!c->z || !c->z->inf) return;
  ws_inflate_free(c->z->inf);
  ws_free(&c->mem, c->z->inf);
  c->z->inf = NULL;
}

static void deflater_drop(ws_conn *c) {
  if (!c->z || !c->z->def) return;
  ws_deflate_free(c->z->def);
  ws_free(&c->mem, c->z->def);
  c->z->def = NULL;
}

void ws_conn_del(ws_conn *c) {
  if (!c) return;
  hs_free(c);
  inflater_drop(c);
  deflater_drop(c);
  if (c->z) ws_free(&c->mem, c->z->zbuf);
  ws_free(&c->mem, c->z);
  ws_buf_free(&c->out, &c->mem);
  ws_buf_free(&c->msg, &c->mem);
  ws_free(&c->mem, c->ctrlbuf);
  ws_free(&c->mem, c->protocol);
  ws_free(&c->mem, c);
}

/* ---- output ------------------------------------------------------------ */

static int is_client(const ws_conn *c) { return c->role == WS_ROLE_CLIENT; }

/* Appends one frame. Client frames get a fresh mask key and masked
 * payload, copied and masked in one pass. */
static int queue_frame(ws_conn *c, unsigned fin, unsigned opcode,
                       const void *data, size_t len) {
  if (!is_client(c) && len < 126) {
    /* The common server frame: a 2-byte header, written in place. */
    if (c->out.cap - c->out.len < 2 + len) {
      int rv = ws_buf_reserve_bounded(&c->out, &c->mem, 2 + len,
                                      (size_t)c->cfg.max_out_queue + 512u);
      if (rv) return rv;
    }
    uint8_t *dst = c->out.base + c->out.len;
    dst[0] = (uint8_t)((fin ? 0x80u : 0u) | (opcode & 0xFu));
    dst[1] = (uint8_t)len; /* RFC 6455 5.2: 7-bit length, no mask */
    if (len) memcpy(dst + 2, data, len);
    c->out.len += 2 + len;
    c->stats.wire_out += 2 + len;
    return 0;
  }
  ws_frame_header fh;
  uint8_t hdr[WS_FRAME_HEADER_MAX];
  memset(&fh, 0, sizeof(fh));
  fh.fin = (uint8_t)(fin ? 1 : 0);
  fh.opcode = (uint8_t)opcode;
  fh.payload_len = len;
  if (is_client(c)) {
    fh.masked = 1;
    if (c->cfg.rand(fh.mask, 4, c->cfg.rand_user_data))
      return WS_ERR_INTERNAL;
  }
  size_t hlen = ws_frame_encode_header(hdr, &fh);
  if (len > SIZE_MAX - hlen) return WS_ERR_NOMEM;
  /* Capacity stays near max_out_queue; the slack covers control frames,
   * which may go over it by a few frames. */
  int rv = ws_buf_reserve_bounded(&c->out, &c->mem, hlen + len,
                                  (size_t)c->cfg.max_out_queue + 512u);
  if (rv) return rv;
  uint8_t *dst = c->out.base + c->out.len;
  memcpy(dst, hdr, hlen);
  if (len) {
    if (fh.masked)
      ws_copy_mask(dst + hlen, data, len, fh.mask, 0);
    else
      memcpy(dst + hlen, data, len);
  }
  c->out.len += hlen + len;
  c->stats.wire_out += hlen + len;
  return 0;
}

static int out_full(const ws_conn *c) {
  return ws_buf_size(&c->out) >= c->cfg.max_out_queue;
}

/* Queues a close frame with |code| (0: empty payload) and |reason|. */
static int queue_close(ws_conn *c, uint16_t code, const void *reason,
                       size_t reasonlen) {
  uint8_t payload[WS_CONTROL_MAX];
  size_t n = 0;
  if (code) {
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reasonlen > WS_CONTROL_MAX - 2) reasonlen = WS_CONTROL_MAX - 2;
    if (reasonlen) memcpy(payload + 2, reason, reasonlen);
    n = 2 + reasonlen;
  }
  int rv = queue_frame(c, 1, WS_OP_CLOSE, payload, n);
  if (rv) return rv;
  c->close_sent_flag = 1;
  c->close_sent = code;
  return 0;
}

/* The close timeout counts from the next ws_conn_tick(): the caller's
 * clock is read there, not when the close was queued (c->now may be the
 * time of a tick long ago). Until then ws_conn_next_deadline() asks for a
 * tick at once. */
static void arm_close_timer(ws_conn *c) {
  if (c->cfg.close_timeout_ms) c->close_arm = 1;
}

/* Fails the connection: records the sticky error, drops message state and
 * queues a close frame with |code| (0: none, e.g. during the handshake). */
static int fail(ws_conn *c, int err, uint16_t code, const char *reason) {
  if (c->err) return c->err;
  c->err = err;
  c->err_reason = reason;
  if (code && !c->close_sent_flag && c->state != WS_STATE_CONNECTING) {
    /* If even the close frame cannot be queued, the transport simply
     * closes: should_close_transport() is true once out drains. */
    (void)queue_close(c, code, reason, strlen(reason));
  }
  c->state = WS_STATE_FAILED;
  ws_buf_free(&c->msg, &c->mem);
  c->has_pending_pong = 0;
  inflater_drop(c);
  deflater_drop(c);
  return err;
}

static int nomem(ws_conn *c) {
  return fail(c, WS_ERR_NOMEM, 1011, "out of memory");
}

/* ---- handshake --------------------------------------------------------- */

static int check_header_kv(const ws_kv *h, size_t n) {
  if (n && !h) return WS_ERR_INVALID_ARGUMENT;
  return 0;
}

int ws_conn_connect(ws_conn *c, const ws_client_params *p) {
  if (!c || !p) return WS_ERR_INVALID_ARGUMENT;
  if (!is_client(c) || c->state != WS_STATE_CONNECTING || c->hs)
    return WS_ERR_INVALID_STATE;
  if (!p->host || check_header_kv(p->headers, p->nheaders) ||
      (p->nprotocols && !p->protocols))
    return WS_ERR_INVALID_ARGUMENT;
  uint8_t raw[16];
  if (c->cfg.rand(raw, sizeof(raw), c->cfg.rand_user_data))
    return WS_ERR_INTERNAL;
  int rv = hs_alloc(c);
  if (rv) return rv;
  ws_base64_encode(raw, sizeof(raw), c->hs->key);
  /* Keep the offered subprotocols to validate the response against. */
  size_t total = 0;
  for (size_t i = 0; i < p->nprotocols; i++) {
    if (!p->protocols[i]) {
      hs_free(c);
      return WS_ERR_INVALID_ARGUMENT;
    }
    total += strlen(p->protocols[i]) + 1;
  }
  if (total) {
    c->hs->offered = ws_malloc(&c->mem, total);
    if (!c->hs->offered) {
      hs_free(c);
      return WS_ERR_NOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < p->nprotocols; i++) {
      size_t n = strlen(p->protocols[i]);
      memcpy(c->hs->offered + off, p->protocols[i], n);
      off += n;
      if (i + 1 < p->nprotocols) c->hs->offered[off++] = ',';
    }
    c->hs->offeredlen = off;
  }
  char offer[WS_PMD_TEXT_MAX];
  if (c->z) ws_pmd_write_offer(&c->z->cfg, offer);
  size_t before = c->out.len;
  rv = ws_hs_write_request(&c->out, &c->mem, p, c->hs->key,
                           c->z ? offer : NULL);
  if (rv) {
    hs_free(c);
    return rv;
  }
  c->stats.wire_out += c->out.len - before;
  return 0;
}

static void set_event(ws_conn *c, ws_event_type type) {
  c->ev_data.base = NULL;
  c->ev_data.len = 0;
  c->ev_close = 0;
  c->ev_type = (uint8_t)type;
  c->ev_flags = 0;
  c->ev_ready = 1;
}

int ws_conn_accept(ws_conn *c, const ws_accept_params *p) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (is_client(c) || c->state != WS_STATE_CONNECTING || !c->hs ||
      !c->hs->parsed || c->hs->http || c->err)
    return WS_ERR_INVALID_STATE;
  const char *proto = p ? p->protocol : NULL;
  if (p && check_header_kv(p->headers, p->nheaders))
    return WS_ERR_INVALID_ARGUMENT;
  if (proto) {
    /* RFC 6455 4.2.2: the selected subprotocol must be one offered. */
    ws_slice s;
    int found = 0;
    for (size_t i = 0; ws_request_protocol(&c->hs->req, i, &s); i++) {
      if (s.len == strlen(proto) && memcmp(s.base, proto, s.len) == 0) {
        found = 1;
        break;
      }
    }
    if (!found) return WS_ERR_INVALID_ARGUMENT;
    /* it matched an offer in the head: under max_handshake_bytes */
    c->protocollen = (uint32_t)strlen(proto);
    c->protocol = ws_malloc(&c->mem, c->protocollen);
    if (!c->protocol) return WS_ERR_NOMEM;
    memcpy(c->protocol, proto, c->protocollen);
  }
  ws_pmd_params pmd;
  char ext[WS_PMD_TEXT_MAX];
  memset(&pmd, 0, sizeof(pmd));
  if (c->z) ws_pmd_negotiate(&c->z->cfg, &c->hs->req, &pmd, ext);
  size_t before = c->out.len;
  int rv = ws_hs_write_accept(&c->out, &c->mem, &c->hs->req, proto,
                              pmd.enabled ? ext : NULL,
                              p ? p->headers : NULL, p ? p->nheaders : 0);
  if (rv) {
    ws_free(&c->mem, c->protocol);
    c->protocol = NULL;
    c->protocollen = 0;
    return rv;
  }
  c->stats.wire_out += c->out.len - before;
  hs_free(c);
  c->pmd = pmd;
  c->rsv_allowed = pmd.enabled ? WS_RSV1 : 0;
  c->state = WS_STATE_OPEN;
  c->hs_deadline = NO_DEADLINE;
  c->last_rx = c->now;
  set_event(c, WS_EV_OPEN);
  return 0;
}

int ws_conn_reject(ws_conn *c, int status, const ws_kv *headers,
                   size_t nheaders, const void *body, size_t bodylen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (is_client(c) || c->state != WS_STATE_CONNECTING || !c->hs ||
      !c->hs->parsed || c->err)
    return WS_ERR_INVALID_STATE;
  if (status < 400 || status > 599 || check_header_kv(headers, nheaders) ||
      (bodylen && !body))
    return WS_ERR_INVALID_ARGUMENT;
  size_t before = c->out.len;
  int rv = ws_hs_write_reject(&c->out, &c->mem, status, headers, nheaders,
                              body, bodylen);
  if (rv) return rv;
  c->stats.wire_out += c->out.len - before;
  hs_free(c);
  /* A rejection decided by the application is not a peer error, but the
   * connection is over all the same. */
  c->err = WS_ERR_REJECTED;
  c->err_reason = "rejected by the application";
  c->err_reported = 1;
  c->state = WS_STATE_FAILED;
  return 0;
}

int ws_conn_respond(ws_conn *c, int status, const ws_kv *headers,
                    size_t nheaders, const void *body, size_t bodylen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (is_client(c) || c->state != WS_STATE_CONNECTING || !c->hs ||
      !c->hs->parsed || !c->hs->http || c->err)
    return WS_ERR_INVALID_STATE;
  if (status < 200 || status > 599 || check_header_kv(headers, nheaders) ||
      (bodylen && !body))
    return WS_ERR_INVALID_ARGUMENT;
  const ws_slice m = c->hs->req.method;
  int head = m.len == 4 && memcmp(m.base, "HEAD", 4) == 0;
  size_t before = c->out.len;
  int rv = ws_hs_write_response(&c->out, &c->mem, status, headers, nheaders,
                                body, bodylen, head);
  if (rv) return rv;
  c->stats.wire_out += c->out.len - before;
  hs_free(c);
  /* One request per connection: the exchange is over once the answer is
   * written. */
  c->err = WS_ERR_CLOSED;
  c->err_reason = "plain HTTP request answered";
  c->err_reported = 1;
  c->state = WS_STATE_CLOSED;
  c->hs_deadline = NO_DEADLINE;
  return 0;
}

/* Server handshake failure: answer with an HTTP error and fail. */
static int hs_fail_http(ws_conn *c, int status, const char *reason) {
  size_t before = c->out.len;
  if (ws_hs_write_reject(&c->out, &c->mem, status, NULL, 0, NULL, 0) == 0)
    c->stats.wire_out += c->out.len - before;
  return fail(c, WS_ERR_HANDSHAKE, 0, reason);
}

/* Collects head bytes; returns 0 with *pdone when the head is complete
 * (and *pnread only counting bytes that belong to it). */
static int hs_collect(ws_conn *c, const uint8_t *in, size_t inlen,
                      size_t *pnread, size_t *phead) {
  ws_hs *hs = c->hs;
  size_t room = c->max_handshake_bytes - ws_buf_size(&hs->in);
  size_t n = WS_MIN(inlen, room);
  *phead = 0;
  int rv = ws_buf_append(&hs->in, &c->mem, in, n);
  if (rv) return rv;
  size_t end = ws_hs_head_end(hs->in.base, hs->in.len, hs->scanned);
  if (end) {
    /* Only the bytes up to the head are ours; the rest are frames. */
    size_t extra = hs->in.len - end;
    hs->in.len = end;
    *pnread = n - extra;
    *phead = end;
    return 0;
  }
  hs->scanned = hs->in.len;
  *pnread = n;
  if (n < inlen || hs->in.len >= c->max_handshake_bytes)
    return WS_ERR_TOO_BIG;
  return 0;
}

static int feed_handshake(ws_conn *c, const uint8_t *in, size_t inlen,
                          size_t *pnread) {
  ws_hs *hs = c->hs;
  size_t head;
  if (hs->parsed) return WS_ERR_WOULDBLOCK; /* waiting for accept/reject */
  int rv = hs_collect(c, in, inlen, pnread, &head);
  c->stats.wire_in += *pnread;
  if (rv == WS_ERR_NOMEM) return nomem(c);
  if (!is_client(c)) {
    if (rv == WS_ERR_TOO_BIG)
      return hs_fail_http(c, 431, "request head too large");
    if (!head) return 0;
    hs->headers = ws_malloc(&c->mem, c->max_headers * sizeof(ws_header));
    if (!hs->headers) return nomem(c);
    int status = 400;
    const char *reason = "invalid request";
    if (ws_hs_parse_http(&hs->req, hs->headers, c->max_headers,
                         hs->in.base, head, &status, &reason))
      return hs_fail_http(c, status, reason);
    hs->parsed = 1;
    if ((c->flags & WS_CFG_HTTP) && !ws_hs_is_upgrade(&hs->req)) {
      hs->http = 1;
      set_event(c, WS_EV_HTTP); /* the request is hs->req */
      return 0;
    }
    if (ws_hs_validate_upgrade(&hs->req, &status, &reason))
      return hs_fail_http(c, status, reason);
    set_event(c, WS_EV_REQUEST); /* the request is hs->req */
    return 0;
  }
  if (rv == WS_ERR_TOO_BIG)
    return fail(c, WS_ERR_HANDSHAKE, 0, "response head too large");
  if (!head) return 0;
  hs->headers = ws_malloc(&c->mem, c->max_headers * sizeof(ws_header));
  if (!hs->headers) return nomem(c);
  if (ws_hs_parse_response(&hs->resp, hs->headers, c->max_headers,
                           hs->in.base, head))
    return fail(c, WS_ERR_HANDSHAKE, 0, "malformed response");
  hs->parsed = 1;
  const char *reason = "invalid response";
  ws_slice offered = {hs->offered, hs->offeredlen};
  rv = ws_hs_validate_response(&hs->resp, hs->key, offered,
                               c->z != NULL, &reason);
  if (rv == WS_ERR_REJECTED) {
    /* The response stays readable through the error event. */
    return fail(c, WS_ERR_REJECTED, 0, "server did not answer 101");
  }
  if (rv) return fail(c, WS_ERR_HANDSHAKE, 0, reason);
  /* Only permessage-deflate can have been offered; validate_response let
   * through at most one extension element. RFC 7692 7.1: a response the
   * offer does not allow fails the connection. */
  for (size_t i = 0; i < hs->resp.nheaders; i++) {
    ws_slice v = hs->resp.headers[i].value, list = v, el;
    if (!ws_slice_ieq(hs->resp.headers[i].name, "Sec-WebSocket-Extensions") ||
        !ws_list_next(&list, &el))
      continue;
    if (ws_pmd_check_response(&c->z->cfg, v, &c->pmd, &reason))
      return fail(c, WS_ERR_EXTENSION, 0, reason);
    c->rsv_allowed = WS_RSV1;
  }
  if (hs->resp.protocol.len) {
    c->protocol = ws_malloc(&c->mem, hs->resp.protocol.len);
    if (!c->protocol) return nomem(c);
    memcpy(c->protocol, hs->resp.protocol.base, hs->resp.protocol.len);
    c->protocollen = (uint32_t)hs->resp.protocol.len; /* from the head */
  }
  c->state = WS_STATE_OPEN;
  c->hs_deadline = NO_DEADLINE;
  c->last_rx = c->now;
  set_event(c, WS_EV_OPEN); /* the response is hs->resp */
  c->release = 1; /* the handshake storage goes at the next call */
  return 0;
}

/* Payloads up to this size are unmasked (and checked for ASCII) inline;
 * longer ones go through ws_mask() / ws_unmask_utf8(). */
#define SMALL_PAYLOAD 128u

#define HIGH_BITS 0x8080808080808080ull

/* XORs a short payload that starts at key offset 0 with |key|, 8 bytes
 * at a time (any alignment, any byte order: both key halves are equal). */
static inline void unmask_small(uint8_t *p, size_t n, const uint8_t *key) {
  uint32_t k32;
  uint64_t k64, w;
  size_t i = 0;
  memcpy(&k32, key, 4);
  k64 = (uint64_t)k32 << 32 | k32;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    w ^= k64;
    memcpy(p + i, &w, 8);
  }
  for (; i < n; i++) p[i] = (uint8_t)(p[i] ^ key[i & 3u]);
}

/* 1 if the |n| bytes at |p| are all ASCII. */
static inline int ascii_small(const uint8_t *p, size_t n) {
  uint64_t acc = 0, w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= p[i];
  return (acc & HIGH_BITS) == 0;
}

/* ---- receive ------------------------------------------------------------ */

static int is_control(unsigned op) { return (op & 0x8u) != 0; }

/* Checks a complete header against the message state and limits. */
static int on_header(ws_conn *c) {
  ws_frame_header *fh = &c->fh;
  const char *why;
  if (ws_frame_check(fh, !is_client(c), c->rsv_allowed, &why))
    return fail(c, WS_ERR_PROTO, 1002, why);
  if (!is_control(fh->opcode)) {
    /* RFC 6455 5.4: continuation only inside a message, and a new message
     * only after the previous one ended. */
    if (fh->opcode == WS_OP_CONT && !c->msg_op)
      return fail(c, WS_ERR_PROTO, 1002, "continuation without message");
    if (fh->opcode != WS_OP_CONT && c->msg_op)
      return fail(c, WS_ERR_PROTO, 1002, "message not finished");
    /* RFC 7692 6.1: RSV1 marks the first frame of a compressed message;
     * on a continuation it is an error (control frames with RSV bits
     * were refused above). */
    if (fh->opcode == WS_OP_CONT && (fh->rsv & WS_RSV1))
      return fail(c, WS_ERR_PROTO, 1002, "RSV1 set on a continuation frame");
    if (fh->opcode != WS_OP_CONT) {
      c->msg_op = fh->opcode;
      c->msg_bytes = 0;
      c->nfrags = 0;
      c->msg_started = 0;
      ws_utf8_init(&c->utf8);
      c->rx_comp = (fh->rsv & WS_RSV1) != 0;
      if (c->rx_comp) { /* RSV1 is allowed only with the deflate state */
        c->z->inflated = 0;
        c->z->ztail = 0;
      }
    }
    if (fh->payload_len > c->cfg.max_frame_payload)
      return fail(c, WS_ERR_TOO_BIG, 1009, "frame too big");
    if (fh->payload_len > c->cfg.max_message - c->msg_bytes)
      return fail(c, WS_ERR_TOO_BIG, 1009, "message too big");
    if (c->cfg.max_fragments && ++c->nfrags > c->cfg.max_fragments)
      return fail(c, WS_ERR_TOO_BIG, 1009, "too many fragments");
  }
  c->remaining = fh->payload_len;
  c->mask_off = 0;
  c->rx_state = RX_PAYLOAD;
  c->ctrllen = 0;
  return 0;
}

/* Decodes the frame header from |in|, buffering a split header. Returns
 * 0 with *pnread bytes used; the header is complete when rx_state moved
 * to RX_PAYLOAD. */
static int read_header(ws_conn *c, const uint8_t *in, size_t inlen,
                       size_t *pnread) {
  size_t hlen;
  int rv;
  if (c->hdrlen == 0 && inlen >= 6 && (in[1] & 0x7Fu) < 126) {
    /* The common header: 7-bit length and, if masked, the key; here. */
    unsigned b0 = in[0], b1 = in[1];
    c->fh.fin = (uint8_t)(b0 >> 7);
    c->fh.rsv = (uint8_t)((b0 >> 4) & 0x7u);
    c->fh.opcode = (uint8_t)(b0 & 0xFu);
    c->fh.masked = (uint8_t)(b1 >> 7);
    c->fh.payload_len = b1 & 0x7Fu;
    if (b1 & 0x80u) {
      memcpy(c->fh.mask, in + 2, 4);
      *pnread = 6;
    } else {
      memset(c->fh.mask, 0, 4);
      *pnread = 2;
    }
    return on_header(c);
  }
  if (c->hdrlen == 0) {
    rv = ws_frame_decode_header(&c->fh, in, inlen, &hlen);
    if (rv == 0) {
      *pnread = hlen;
      return on_header(c);
    }
    if (rv != WS_ERR_WOULDBLOCK)
      return fail(c, WS_ERR_PROTO, 1002, "invalid frame length");
  }
  /* Slow path: copy just enough bytes to complete the header. The
   * decoder runs on every partial header too, so an invalid 64-bit
   * length fails at its first byte however the header was split. */
  size_t used = 0;
  for (;;) {
    if (c->hdrlen > 0) {
      rv = ws_frame_decode_header(&c->fh, c->hdr, c->hdrlen, &hlen);
      if (rv != WS_ERR_WOULDBLOCK) {
        *pnread = used;
        c->hdrlen = 0;
        if (rv) return fail(c, WS_ERR_PROTO, 1002, "invalid frame length");
        return on_header(c);
      }
    }
    size_t need = 2;
    if (c->hdrlen >= 2) {
      unsigned l7 = c->hdr[1] & 0x7fu;
      /* 64-bit length: take its first byte alone, to check its top bit */
      need = l7 == 127 && c->hdrlen == 2
                 ? 3u
                 : 2u + (l7 == 126 ? 2u : l7 == 127 ? 8u : 0u) +
                       ((c->hdr[1] & 0x80u) ? 4u : 0u);
    }
    size_t n = WS_MIN(need - c->hdrlen, inlen - used);
    if (n == 0) {
      *pnread = used;
      return 0;
    }
    memcpy(c->hdr + c->hdrlen, in + used, n);
    c->hdrlen = (uint8_t)(c->hdrlen + n);
    used += n;
  }
}

/* Queues the automatic pong, or keeps the latest ping's payload to answer
 * once the output queue has room (RFC 6455 5.5.3: answering only the
 * most recent ping is allowed). */
static int auto_pong(ws_conn *c, const uint8_t *data, size_t len) {
  if (c->flags & WS_CFG_NO_AUTO_PONG) return 0;
  if (c->close_sent_flag) return 0;
  if (!out_full(c)) {
    c->has_pending_pong = 0;
    return queue_frame(c, 1, WS_OP_PONG, data, len);
  }
  if (ctrlbuf_get(c)) return WS_ERR_NOMEM;
  if (len) memcpy(c->ctrlbuf + CTRL_PONG, data, len);
  c->pending_pong_len = (uint8_t)len;
  c->has_pending_pong = 1;
  return 0;
}

static int on_control(ws_conn *c, const uint8_t *data, size_t len) {
  int rv;
  switch (c->fh.opcode) {
  case WS_OP_PING:
    rv = auto_pong(c, data, len);
    if (rv) return nomem(c);
    set_event(c, WS_EV_PING);
    break;
  case WS_OP_PONG:
    c->ping_outstanding = 0;
    c->ping_wanted = 0;
    c->pong_deadline = NO_DEADLINE;
    set_event(c, WS_EV_PONG);
    break;
  default: { /* WS_OP_CLOSE */
    uint16_t code = 1005; /* RFC 6455 7.1.5: no status code present */
    if (len == 1)
      return fail(c, WS_ERR_PROTO, 1002, "close payload of 1 byte");
    if (len >= 2) {
      code = (uint16_t)(data[0] << 8 | data[1]);
      if (!ws_close_code_valid(code))
        return fail(c, WS_ERR_PROTO, 1002, "invalid close code");
      if (ws_utf8_validate(data + 2, len - 2))
        return fail(c, WS_ERR_UTF8, 1007, "invalid UTF-8 in close reason");
    }
    if (c->close_sent_flag) {
      c->state = WS_STATE_CLOSED;
      c->close_deadline = NO_DEADLINE;
    } else if (!(c->flags & WS_CFG_NO_AUTO_CLOSE)) {
      /* RFC 6455 5.5.1: echo the status code received (and its reason,
       * as other implementations do). */
      rv = queue_close(c, code == 1005 ? 0 : code, len > 2 ? data + 2 : NULL,
                       len > 2 ? len - 2 : 0);
      if (rv) return nomem(c);
      c->state = WS_STATE_CLOSED;
    } else {
      c->state = WS_STATE_CLOSING_REMOTE;
    }
    if (c->state == WS_STATE_CLOSED && is_client(c)) arm_close_timer(c);
    ws_buf_free(&c->msg, &c->mem);
    set_event(c, WS_EV_CLOSE);
    c->ev_close = code;
    if (len > 2) {
      c->ev_data.base = data + 2;
      c->ev_data.len = len - 2;
    }
    return 0;
  }
  }
  c->ev_data.base = data;
  c->ev_data.len = len;
  return 0;
}

/* Frame payload has ended: update message state. Returns the flags for
 * the data event. */
static uint32_t data_frame_end(ws_conn *c, uint32_t flags) {
  flags |= WS_EVF_FRAME_END;
  if (c->fh.fin) {
    flags |= WS_EVF_FINAL;
    c->msg_op = 0;
    c->stats.msgs_in++;
  }
  return flags;
}

static int peer_resets(const ws_conn *c) {
  return is_client(c) ? c->pmd.server_no_context_takeover
                      : c->pmd.client_no_context_takeover;
}

static int we_reset(const ws_conn *c) {
  return is_client(c) ? c->pmd.client_no_context_takeover
                      : c->pmd.server_no_context_takeover;
}

/* RFC 7692 7.2.2: appended to the compressed data of every message. */
static const uint8_t pmd_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Compressed data frames (RFC 7692 7.2.2): the payload is unmasked a step
 * at a time and inflated into the stream-mode chunk or the message
 * buffer. The inflated size counts against max_message as it is
 * produced, so a bomb stops at the limit. Once the last frame's payload
 * is in, the tail is fed and the output drained, across as many events
 * as it takes: ws_conn_next_event() resumes the drain, which needs no
 * more input. */
static int read_compressed(ws_conn *c, uint8_t *in, size_t inlen,
                           size_t *pnread) {
  size_t n = (size_t)WS_MIN((uint64_t)inlen, c->remaining);
  const uint8_t *key = c->fh.masked ? c->fh.mask : NULL;
  int text = c->msg_op == WS_OP_TEXT;
  int stream = c->delivery == WS_DELIVER_STREAM;
  size_t pos = 0;
  int done = 0, drained = 0;

  *pnread = 0;
  if (!c->z->inf) {
    unsigned bits = is_client(c) ? c->pmd.server_max_window_bits
                                 : c->pmd.client_max_window_bits;
    c->z->inf = ws_malloc(&c->mem, sizeof(*c->z->inf));
    if (!c->z->inf) return nomem(c);
    if (ws_inflate_init(c->z->inf, &c->mem, bits)) {
      ws_free(&c->mem, c->z->inf);
      c->z->inf = NULL;
      return nomem(c);
    }
  }
  if (stream && !c->z->zbuf) {
    c->z->zbuf = ws_malloc(&c->mem, ZCHUNK);
    if (!c->z->zbuf) return nomem(c);
  }
  for (;;) {
    int at_end = c->remaining == 0 && c->fh.fin;
    if (stream && c->z->zlen == ZCHUNK) break; /* hand out a full chunk */
    uint8_t *out, probe;
    size_t room;
    uint64_t left = c->cfg.max_message - c->z->inflated;
    if (stream) {
      out = c->z->zbuf + c->z->zlen;
      room = ZCHUNK - c->z->zlen;
    } else {
      if (c->msg.cap == c->msg.len && left > 0) {
        size_t grow =
            (size_t)WS_MIN(left, (uint64_t)WS_MAX(c->msg.len, 4096u));
        /* never more than max_message, whatever doubling would do */
        if (ws_buf_reserve_bounded(&c->msg, &c->mem, grow,
                                   (size_t)c->cfg.max_message))
          return nomem(c);
      }
      out = c->msg.base + c->msg.len;
      room = c->msg.cap - c->msg.len;
    }
    if (room > left) room = (size_t)left;
    if (room == 0) { /* at the limit: one more byte would be too many */
      out = &probe;
      room = 1;
    }
    size_t used = 0, produced = 0;
    int rv;
    if (pos < n) {
      size_t k = WS_MIN(n - pos, ZSTEP);
      uint8_t *p = in + pos;
      if (key) ws_mask(p, k, key, c->mask_off);
      rv = ws_inflate(c->z->inf, p, k, &used, out, room, &produced);
      if (key && used < k)
        ws_mask(p + used, k - used, key, (c->mask_off + used) & 3u);
      c->mask_off = (uint8_t)((c->mask_off + used) & 3u);
      pos += used;
      c->remaining -= used;
    } else if (at_end && c->z->ztail < sizeof(pmd_tail)) {
      rv = ws_inflate(c->z->inf, pmd_tail + c->z->ztail, sizeof(pmd_tail) - c->z->ztail,
                      &used, out, room, &produced);
      c->z->ztail = (uint8_t)(c->z->ztail + used);
    } else {
      /* no input left: drain what the inflater still holds */
      rv = ws_inflate(c->z->inf, NULL, 0, &used, out, room, &produced);
    }
    /* What was inflated before an error comes first in the stream, so it
     * is judged first: a split of the input must not change which fault
     * is reported. */
    if (produced) {
      if (out == &probe) return fail(c, WS_ERR_TOO_BIG, 1009, "message too big");
      if (text && ws_utf8_feed(&c->utf8, out, produced))
        return fail(c, WS_ERR_UTF8, 1007, "invalid UTF-8 in text");
      c->z->inflated += produced;
      c->stats.bytes_in += produced;
      if (stream)
        c->z->zlen += (uint32_t)produced;
      else
        c->msg.len += produced;
    }
    if (rv) return fail(c, WS_ERR_DATA, 1007, "invalid compressed data");
    if (produced < room && at_end && c->z->ztail == sizeof(pmd_tail)) {
      if (ws_inflate_end_message(c->z->inf))
        return fail(c, WS_ERR_DATA, 1007, "invalid compressed data");
      done = 1;
      break;
    }
    /* All input so far used and all its output out: wait for more (but
     * if that input ended the message, go on to its tail at once). */
    if (!(c->remaining == 0 && c->fh.fin) && pos == n && produced < room) {
      drained = 1;
      break;
    }
    if (!used && !produced) /* cannot happen: the inflater moved nothing */
      return fail(c, WS_ERR_INTERNAL, 1011, "inflater stalled");
  }
  *pnread = pos;
  /* All the input given was taken but the inflater was not drained (a
   * chunk filled up): ws_conn_next_event() goes on, as the caller may
   * have nothing more to feed. */
  c->z->zpending = (uint8_t)(!(done || drained) && pos == n);
  if (done) {
    if (text && ws_utf8_finish(&c->utf8))
      return fail(c, WS_ERR_UTF8, 1007, "text ends inside a character");
    c->rx_state = RX_HEADER;
    c->rx_comp = 0;
    c->msg_op = 0;
    c->stats.msgs_in++;
    /* RFC 7692 7.1.1: without context takeover nothing carries over, so
     * the inflater's memory goes until the next compressed message. */
    if (peer_resets(c)) inflater_drop(c);
  } else if (c->remaining == 0 && !c->fh.fin && drained) {
    c->rx_state = RX_HEADER; /* a non-final frame is over, output and all */
  }
  uint32_t flags = c->msg_started ? 0 : WS_EVF_FIRST;
  if (done) flags |= WS_EVF_FRAME_END | WS_EVF_FINAL;
  if (stream && (done || c->z->zlen)) {
    c->msg_started = 1;
    set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
    c->ev_flags = (uint8_t)flags;
    c->ev_data.base = c->z->zbuf;
    c->ev_data.len = c->z->zlen;
    c->z->zlen = 0;
    if (done) c->release = 1; /* the chunk buffer goes at the next call */
  } else if (done) {
    set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
    c->ev_flags = (uint8_t)(flags | WS_EVF_FIRST);
    c->ev_data.base = c->msg.base ? c->msg.base + c->msg.pos : NULL;
    c->ev_data.len = ws_buf_size(&c->msg);
    c->release = 1;
  }
  return 0;
}

/* A compressed message whose data is all in but whose inflated output is
 * not all out yet: the drain goes on without input. */
static int draining(const ws_conn *c) {
  return c->rx_comp && c->rx_state == RX_PAYLOAD &&
         (c->remaining == 0 || c->z->zpending) && !c->err;
}

/* A control frame's payload (RFC 6455 5.5). One arriving whole is used in
 * place; a split one is gathered in a small conn buffer. */
static int read_control(ws_conn *c, uint8_t *in, size_t inlen,
                        size_t *pnread) {
  size_t n = (size_t)WS_MIN((uint64_t)inlen, c->remaining);
  const uint8_t *key = c->fh.masked ? c->fh.mask : NULL;
  const uint8_t *data;
  if (c->ctrllen == 0 && n == c->remaining) {
    if (key) ws_mask(in, n, key, 0);
    data = in;
  } else {
    if (ctrlbuf_get(c)) return nomem(c);
    if (key)
      ws_copy_mask(c->ctrlbuf + CTRL_SPLIT + c->ctrllen, in, n, key,
                   c->ctrllen & 3u);
    else
      memcpy(c->ctrlbuf + CTRL_SPLIT + c->ctrllen, in, n);
    c->ctrllen = (uint8_t)(c->ctrllen + n);
    data = c->ctrlbuf + CTRL_SPLIT;
  }
  *pnread = n;
  c->remaining -= n;
  if (c->remaining) return 0;
  c->rx_state = RX_HEADER;
  return on_control(c, data, (size_t)c->fh.payload_len);
}

/* Uncompressed data, WS_DELIVER_STREAM: unmasked (and validated) in place
 * and lent out as it arrives. */
static int read_stream(ws_conn *c, uint8_t *in, size_t inlen,
                       size_t *pnread) {
  size_t n = (size_t)WS_MIN((uint64_t)inlen, c->remaining);
  const uint8_t *key = c->fh.masked ? c->fh.mask : NULL;
  int text = c->msg_op == WS_OP_TEXT;
  uint32_t flags = c->msg_started ? 0 : WS_EVF_FIRST;
  size_t off = c->mask_off;
  if (text) {
    size_t valid;
    if (ws_unmask_utf8(in, n, key, &off, &c->utf8, &valid))
      return fail(c, WS_ERR_UTF8, 1007, "invalid UTF-8 in text");
  } else if (key && off == 0 && n <= SMALL_PAYLOAD) {
    unmask_small(in, n, key);
    off = n & 3u;
  } else if (key) {
    off = ws_mask(in, n, key, off);
  }
  c->mask_off = (uint8_t)off;
  *pnread = n;
  c->remaining -= n;
  c->msg_bytes += n;
  c->stats.bytes_in += n;
  if (c->remaining == 0) {
    c->rx_state = RX_HEADER;
    if (c->fh.fin && text && ws_utf8_finish(&c->utf8))
      return fail(c, WS_ERR_UTF8, 1007, "text ends inside a character");
    flags = data_frame_end(c, flags);
  } else if (n == 0) {
    return 0; /* nothing to report yet */
  }
  c->msg_started = 1;
  set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
  c->ev_flags = (uint8_t)flags;
  c->ev_data.base = in;
  c->ev_data.len = n;
  return 0;
}

/* Uncompressed data, WS_DELIVER_MESSAGE. A message that is one frame,
 * whole in this input, is unmasked and validated in place and lent out
 * from the input like a stream chunk: no copy, no allocation. Otherwise
 * each piece is copied and unmasked into the message buffer in one pass
 * and validated while hot; the event comes with the last frame. */
static int read_message(ws_conn *c, uint8_t *in, size_t inlen,
                        size_t *pnread) {
  size_t n = (size_t)WS_MIN((uint64_t)inlen, c->remaining);
  const uint8_t *key = c->fh.masked ? c->fh.mask : NULL;
  int text = c->msg_op == WS_OP_TEXT;
  if (c->fh.fin && c->fh.opcode != WS_OP_CONT && n == c->fh.payload_len && n &&
      ws_buf_size(&c->msg) == 0) {
    /* the whole payload of a single-frame message is here */
    if (text) {
      size_t off = 0, valid;
      if (ws_unmask_utf8(in, n, key, &off, &c->utf8, &valid))
        return fail(c, WS_ERR_UTF8, 1007, "invalid UTF-8 in text");
    } else if (key) {
      (void)ws_mask(in, n, key, 0);
    }
  } else if (n) {
    /* Never hold more than the limit, whatever the doubling would do. */
    size_t limit = c->cfg.max_message > SIZE_MAX ? SIZE_MAX
                                                 : (size_t)c->cfg.max_message;
    if (ws_buf_reserve_bounded(&c->msg, &c->mem, n, limit)) return nomem(c);
    uint8_t *dst = c->msg.base + c->msg.len;
    if (key)
      c->mask_off = (uint8_t)ws_copy_mask(dst, in, n, key, c->mask_off);
    else
      memcpy(dst, in, n);
    c->msg.len += n;
    if (text && ws_utf8_feed(&c->utf8, dst, n))
      return fail(c, WS_ERR_UTF8, 1007, "invalid UTF-8 in text");
  }
  *pnread = n;
  c->remaining -= n;
  c->msg_bytes += n;
  c->stats.bytes_in += n;
  if (c->remaining) return 0;
  c->rx_state = RX_HEADER;
  if (!c->fh.fin) return 0;
  if (text && ws_utf8_finish(&c->utf8))
    return fail(c, WS_ERR_UTF8, 1007, "text ends inside a character");
  set_event(c, text ? WS_EV_TEXT : WS_EV_BINARY);
  c->ev_flags = (uint8_t)data_frame_end(c, WS_EVF_FIRST);
  if (ws_buf_size(&c->msg) == 0) { /* in place (or empty) */
    c->ev_data.base = n ? in : NULL;
    c->ev_data.len = n;
    return 0;
  }
  c->ev_data.base = c->msg.base + c->msg.pos;
  c->ev_data.len = ws_buf_size(&c->msg);
  c->release = 1; /* the message buffer goes at the next call */
  return 0;
}

/* A frame's payload, to the reader for its kind. */
static int read_payload(ws_conn *c, uint8_t *in, size_t inlen,
                        size_t *pnread) {
  if (is_control(c->fh.opcode)) return read_control(c, in, inlen, pnread);
  if (c->rx_comp) return read_compressed(c, in, inlen, pnread);
  if (c->delivery == WS_DELIVER_STREAM)
    return read_stream(c, in, inlen, pnread);
  return read_message(c, in, inlen, pnread);
}

/* How big a drained buffer may stay allocated (WS_CFG_KEEP_BUFFERS). */
static size_t keep_size(const ws_conn *c) {
  return (c->flags & WS_CFG_KEEP_BUFFERS) ? WS_KEEP_BUFFER_MAX : 0;
}

/* Frees conn-owned storage that the previous event lent out. */
static void release_event_storage(ws_conn *c) {
  if (!c->release) return;
  c->release = 0;
  ws_buf_clear_keep(&c->msg, &c->mem, keep_size(c));
  if (c->z) {
    ws_free(&c->mem, c->z->zbuf);
    c->z->zbuf = NULL;
  }
  if (c->state != WS_STATE_CONNECTING && !(c->err == WS_ERR_REJECTED))
    hs_free(c);
}

static int fast_ready(const ws_conn *c);
static WS_ALWAYS_INLINE size_t fast_frames(ws_conn *c, uint8_t *in,
                                           size_t inlen, ws_event_fn fn,
                                           void *ud, int *pstop);

/* ws_conn_feed()'s use of the fast path: the frame's event goes to the
 * slot, and the fast path stops there. */
static int slot_event(ws_conn *c, const ws_event *ev, void *ud) {
  (void)ud;
  c->ev_type = (uint8_t)ev->type;
  c->ev_flags = (uint8_t)ev->flags;
  c->ev_data = ev->data;
  c->ev_close = 0;
  c->ev_ready = 1;
  return 1;
}

int ws_conn_feed(ws_conn *c, uint8_t *in, size_t inlen, size_t *pnread) {
  size_t dummy;
  if (!pnread) pnread = &dummy;
  *pnread = 0;
  if (!c || (!in && inlen)) return WS_ERR_INVALID_ARGUMENT;
  if (c->ev_ready) return WS_ERR_WOULDBLOCK;
  release_event_storage(c);
  if (c->err) return c->err;
  switch (c->state) {
  case WS_STATE_CONNECTING:
    if (!c->hs) return WS_ERR_INVALID_STATE; /* client before connect() */
    {
      int rv = feed_handshake(c, in, inlen, pnread);
      if (*pnread) c->rx_activity = 1;
      return rv;
    }
  case WS_STATE_CLOSED:
  case WS_STATE_CLOSING_REMOTE:
    /* RFC 6455 5.5.1: nothing after a close frame is processed. */
    *pnread = inlen;
    return WS_ERR_CLOSED;
  default:
    break;
  }
  size_t pos = 0;
  if (inlen) c->rx_activity = 1;
  if (inlen && fast_ready(c)) {
    /* A whole uncompressed data frame: its event straight to the slot
     * (the fast path counts the bytes in the stats itself). */
    int stop = 0;
    size_t n = fast_frames(c, in, inlen, slot_event, NULL, &stop);
    if (n) {
      *pnread = n;
      return 0;
    }
  }
  while ((pos < inlen || draining(c)) && !c->ev_ready && !c->err) {
    size_t n = 0;
    int rv;
    if (c->rx_state == RX_HEADER) {
      rv = read_header(c, in + pos, inlen - pos, &n);
      pos += n;
      if (rv) break;
      /* Zero-length payloads complete right away. */
      if (c->rx_state == RX_PAYLOAD && c->remaining == 0)
        rv = read_payload(c, in + pos, 0, &n);
    } else {
      rv = read_payload(c, in + pos, inlen - pos, &n);
      pos += n;
    }
    if (rv) break;
  }
  *pnread = pos;
  c->stats.wire_in += pos;
  return c->err;
}

int ws_conn_feed_eof(ws_conn *c) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->err) return c->err;
  if (c->state == WS_STATE_CLOSED) {
    /* A client waiting for the server's FIN (RFC 6455 7.1.1) has it. */
    c->linger_done = 1;
    c->close_deadline = NO_DEADLINE;
    return 0;
  }
  c->state = WS_STATE_FAILED;
  c->err = WS_ERR_EOF;
  c->err_reason = "transport closed without close frame";
  ws_buf_free(&c->msg, &c->mem);
  return WS_ERR_EOF;
}

/* Hands the waiting event out. */
static void take_event(ws_conn *c, ws_event *ev) {
  ev->type = (ws_event_type)c->ev_type;
  ev->flags = c->ev_flags;
  ev->data = c->ev_data;
  ev->close_code = c->ev_close;
  ev->error = 0;
  ev->request = NULL;
  ev->response = NULL;
  if (c->hs) {
    if (ev->type == WS_EV_REQUEST || ev->type == WS_EV_HTTP)
      ev->request = &c->hs->req;
    else if (ev->type == WS_EV_OPEN && is_client(c))
      ev->response = &c->hs->resp;
  }
  c->ev_ready = 0;
}

int ws_conn_next_event(ws_conn *c, ws_event *ev) {
  if (!c || !ev) return WS_ERR_INVALID_ARGUMENT;
  if (c->ev_ready) {
    take_event(c, ev);
    return 0;
  }
  release_event_storage(c);
  if (draining(c)) {
    size_t n;
    (void)read_compressed(c, NULL, 0, &n);
    if (c->ev_ready) {
      take_event(c, ev);
      return 0;
    }
  }
  if (c->err && !c->err_reported) {
    c->err_reported = 1;
    memset(ev, 0, sizeof(*ev));
    ev->type = WS_EV_ERROR;
    ev->error = c->err;
    ev->close_code = c->err == WS_ERR_EOF ? 1006 : c->close_sent;
    ev->data.base = (const uint8_t *)c->err_reason;
    ev->data.len = c->err_reason ? strlen(c->err_reason) : 0;
    if (c->err == WS_ERR_REJECTED && c->hs) {
      ev->response = &c->hs->resp;
      c->release = 1;
    }
    return 0;
  }
  return WS_ERR_WOULDBLOCK;
}

/* ---- batch receive -------------------------------------------------------- */

/* Unmasks and validates a whole text frame's payload with |u| (the
 * message's state so far); |fin|: the message must end on a character.
 * On failure the payload is masked again, as it arrived, and 0 returned:
 * the caller then leaves the frame to the general path, which reports the
 * fault exactly as it would for any split. */
static WS_ALWAYS_INLINE int fast_text(uint8_t *p, size_t n,
                                      const uint8_t *key, ws_utf8 *u,
                                      unsigned fin) {
  if (n <= SMALL_PAYLOAD) {
    if (key) unmask_small(p, n, key);
    if (u->state == 0 && ascii_small(p, n)) return 1;
    if (ws_utf8_scan(u, p, n) == n && (!fin || ws_utf8_finish(u) == 0))
      return 1;
    if (key) unmask_small(p, n, key);
    return 0;
  }
  if (key) (void)ws_mask(p, n, key, 0);
  if (ws_utf8_scan(u, p, n) == n && (!fin || ws_utf8_finish(u) == 0))
    return 1;
  if (key) (void)ws_mask(p, n, key, 0);
  return 0;
}

/* The connection is between frames with nothing waiting: whole frames in
 * the input can take the fast path. */
static int fast_ready(const ws_conn *c) {
  return (c->ev_ready | c->release | c->hdrlen | c->rx_comp) == 0 &&
         c->err == 0 && c->rx_state == RX_HEADER &&
         (c->state == WS_STATE_OPEN || c->state == WS_STATE_CLOSING_LOCAL);
}

/*
 * The fast path of ws_conn_feed_events(): uncompressed data frames with a
 * 2- or 4-byte length header that are whole in |in| and pass every rule,
 * handed to |fn| straight from the input (in WS_DELIVER_MESSAGE mode,
 * single-frame messages, which need no assembly). It stops at the first
 * frame it does not take: a control frame, a frame split across reads, a
 * compressed or over-limit one, any fault. That frame goes through the
 * general path (ws_conn_feed()), from the same state and bytes, so events,
 * errors and their order are those of the general path for any split.
 * Returns the bytes used; sets |*pstop| if |fn| asked to stop.
 */
static WS_ALWAYS_INLINE size_t fast_frames(ws_conn *c, uint8_t *in,
                                           size_t inlen, ws_event_fn fn,
                                           void *ud, int *pstop) {
  const unsigned want_mask = is_client(c) ? 0u : 0x80u;
  const unsigned message = c->delivery == WS_DELIVER_MESSAGE;
  const uint64_t max_frame = c->cfg.max_frame_payload;
  /* A first frame's limit: frame and message limits at once (one frame
   * of a new message never exceeds max_fragments, which is 0 or more). */
  const uint64_t max_first = WS_MIN(max_frame, c->cfg.max_message);
  const uint8_t state = c->state;
  size_t pos = 0;
  ws_event ev;

  memset(&ev, 0, sizeof(ev));
  while (inlen - pos >= 2) {
    uint8_t *h = in + pos;
    unsigned b0 = h[0], b1 = h[1], op = b0 & 0x0Fu, fin = b0 >> 7;
    size_t avail = inlen - pos, hl, plen;
    /* RSV bits, control and reserved opcodes, masking by role (RFC 6455
     * 5.1, 5.2): anything unusual is the general path's. */
    if ((b0 & 0x70u) || op > WS_OP_BINARY || (b1 & 0x80u) != want_mask)
      break;
    plen = b1 & 0x7Fu;
    hl = want_mask ? 6u : 2u;
    if (plen >= 126) {
      if (plen == 127 || avail < 4) break;
      plen = (size_t)h[2] << 8 | h[3];
      hl += 2;
    }
    if (avail < hl + plen) break; /* not whole here (no overflow: both
                                     are at most 16 bits) */
    /* RFC 6455 5.4: continuation only inside a message, a new message
     * only after the previous one ended. */
    unsigned mop;
    uint64_t before = 0;
    uint32_t nfrags = 1;
    if (op != WS_OP_CONT) {
      if (c->msg_op || plen > max_first || message > fin) break;
      mop = op;
    } else {
      if (!c->msg_op || message) break;
      mop = c->msg_op;
      before = c->msg_bytes;
      nfrags = c->nfrags + 1;
      if (plen > max_frame || plen > c->cfg.max_message - before ||
          (c->cfg.max_fragments && nfrags > c->cfg.max_fragments))
        break;
    }
    uint8_t *p = h + hl;
    const uint8_t *key = want_mask ? p - 4 : NULL;
    if (mop == WS_OP_TEXT) {
      ws_utf8 u = c->utf8;
      if (op != WS_OP_CONT) u.state = 0;
      if (!fast_text(p, plen, key, &u, fin)) break;
      c->utf8 = u;
    } else if (key) {
      if (plen <= SMALL_PAYLOAD)
        unmask_small(p, plen, key);
      else
        (void)ws_mask(p, plen, key, 0);
    }
    /* The frame is in: the state the general path would leave (the
     * counts of a message are only read while it is open). */
    c->stats.bytes_in += plen;
    c->stats.wire_in += hl + plen;
    ev.type = mop == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY;
    ev.flags = (op != WS_OP_CONT ? WS_EVF_FIRST : 0u) | WS_EVF_FRAME_END;
    if (fin) {
      ev.flags |= WS_EVF_FINAL;
      c->msg_op = 0;
      c->stats.msgs_in++;
    } else {
      c->msg_op = (uint8_t)mop;
      c->nfrags = nfrags;
      c->msg_bytes = before + plen;
      c->msg_started = 1;
    }
    ev.data.base = p;
    ev.data.len = plen;
    pos += hl + plen;
    if (fn(c, &ev, ud)) {
      *pstop = 1;
      break;
    }
    /* |fn| may close or fail the connection (nothing it may call queues
     * an event or touches the receive state); whatever sets |err| also
     * moves |state| (to FAILED, or CLOSED for ws_conn_respond()). */
    if (c->state != state) break;
  }
  return pos;
}

int ws_conn_feed_events(ws_conn *c, uint8_t *in, size_t inlen,
                        size_t *pnread, ws_event_fn fn, void *user_data) {
  size_t dummy, pos = 0;
  ws_event ev;
  int rv = 0;
  if (!pnread) pnread = &dummy;
  *pnread = 0;
  if (!c || !fn || (!in && inlen)) return WS_ERR_INVALID_ARGUMENT;
  for (;;) {
    /* Events already waiting (or a compressed message's drain, storage
     * to release, an error to report) first. */
    while ((c->ev_ready || c->release || c->rx_comp ||
            (c->err && !c->err_reported)) &&
           ws_conn_next_event(c, &ev) == 0) {
      if (fn(c, &ev, user_data)) {
        *pnread = pos;
        return rv;
      }
    }
    if (rv) break; /* the error event, if any, is out */
    if (pos < inlen && fast_ready(c)) {
      int stop = 0;
      size_t n = fast_frames(c, in + pos, inlen - pos, fn, user_data, &stop);
      if (n) c->rx_activity = 1;
      pos += n;
      if (stop) break;
    }
    if (pos == inlen) break;
    size_t n = 0;
    rv = ws_conn_feed(c, in + pos, inlen - pos, &n);
    pos += n;
    if (rv == WS_ERR_WOULDBLOCK) {
      /* A request waiting for the application's answer. */
      rv = 0;
      if (!c->ev_ready) break;
    } else if (!rv && !n && !c->ev_ready) {
      break; /* nothing taken, nothing to say: do not spin */
    }
  }
  *pnread = pos;
  return rv ? rv : c->err;
}

/* ---- send ----------------------------------------------------------------- */

static int can_send_data(const ws_conn *c) {
  return !c->err && !c->close_sent_flag &&
         (c->state == WS_STATE_OPEN || c->state == WS_STATE_CLOSING_REMOTE);
}

/* ---- the shared compressor ---------------------------------------------- */

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
  ws_frame_header fh;
  uint8_t hdr[WS_FRAME_HEADER_MAX];
  memset(&fh, 0, sizeof(fh));
  fh.fin = (uint8_t)fin;
  fh.opcode = (uint8_t)opcode;
  if (opcode != WS_OP_CONT) fh.rsv = WS_RSV1;
  if (is_client(c)) {
    fh.masked = 1;
    if (c->cfg.rand(fh.mask, 4, c->cfg.rand_user_data))
      return WS_ERR_INTERNAL;
  }
  unsigned bits = is_client(c) ? c->pmd.client_max_window_bits
                               : c->pmd.server_max_window_bits;
  ws_deflater *z = c->z->def;
  /* A message that starts and ends in this call, with no context to
   * keep, can borrow the thread's shared compressor. */
  int borrowed = !z && c->z->cfg.shared && fin && opcode != WS_OP_CONT &&
                 we_reset(c);
  if (borrowed) {
    int rv = shared_get(c->z->cfg.shared, bits, &z);
    if (rv) return rv;
  } else if (!z) {
    int level = c->z->cfg.level;
    if (level < 1 || level > 9) level = WS_DEFLATE_DEFAULT;
    z = ws_malloc(&c->mem, sizeof(*z));
    if (!z) return WS_ERR_NOMEM;
    if (ws_deflate_init(z, &c->mem, bits, level)) {
      ws_free(&c->mem, z);
      return WS_ERR_NOMEM;
    }
    c->z->def = z;
  }
  size_t clen = 0, used = 0;
  size_t step = WS_MAX(len / 2, 64u) + 64u; /* most data shrinks */
  int rv;
  do {
    if (ws_buf_reserve_bounded(&c->out, &c->mem,
                               WS_FRAME_HEADER_MAX + clen + step,
                               (size_t)c->cfg.max_out_queue + 512u)) {
      /* The compressor has taken input it cannot give back: the
       * message cannot go on, so neither can the connection. */
      if (borrowed) ws_deflate_reset(z);
      return nomem(c);
    }
    uint8_t *dst = c->out.base + c->out.len + WS_FRAME_HEADER_MAX + clen;
    size_t room = c->out.cap - c->out.len - WS_FRAME_HEADER_MAX - clen;
    size_t nin, nout;
    rv = ws_deflate(z, len ? data + used : data, len - used, &nin, dst,
                    room, &nout,
                    fin ? WS_DEFLATE_SYNC_FLUSH : WS_DEFLATE_NO_FLUSH);
    used += nin;
    clen += nout;
    step = WS_MAX(step, clen);
  } while (rv == WS_ERR_WOULDBLOCK);
  if (borrowed) ws_deflate_reset(z); /* clean for its next borrower */
  if (rv) return fail(c, WS_ERR_INTERNAL, 1011, "compressor failed");
  uint8_t *base = c->out.base + c->out.len;
  if (fin) clen -= sizeof(pmd_tail); /* it ends in 00 00 ff ff */
  fh.payload_len = clen;
  size_t hlen = ws_frame_encode_header(hdr, &fh);
  memmove(base + hlen, base + WS_FRAME_HEADER_MAX, clen);
  memcpy(base, hdr, hlen);
  if (fh.masked) ws_mask(base + hlen, clen, fh.mask, 0);
  c->out.len += hlen + clen;
  c->stats.wire_out += hlen + clen;
  /* RFC 7692 7.1.1: without context takeover the next message starts
   * afresh, so the compressor's memory is not kept between messages. */
  if (fin && we_reset(c)) deflater_drop(c);
  return 0;
}

int ws_conn_send(ws_conn *c, ws_opcode opcode, const void *data, size_t len,
                 uint32_t flags) {
  if (!c || (len && !data)) return WS_ERR_INVALID_ARGUMENT;
  if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY)
    return WS_ERR_INVALID_ARGUMENT;
  if (c->tx_op && c->tx_op != opcode) return WS_ERR_INVALID_ARGUMENT;
  if (!can_send_data(c)) return WS_ERR_INVALID_STATE;
  /* Data never makes the queue exceed max_out_queue (a compressed
   * message is counted at its uncompressed size). */
  size_t max = c->cfg.max_out_queue;
  size_t hlen = 2u + (len < 126 ? 0u : len <= 0xffff ? 2u : 8u) +
                (is_client(c) ? 4u : 0u);
  if (len > max - hlen) return WS_ERR_TOO_BIG;
  if (ws_buf_size(&c->out) > max - hlen - len) return WS_ERR_WOULDBLOCK;
  unsigned fin = !(flags & WS_SEND_MORE);
  /* Whether a message is compressed is decided at its first fragment:
   * small single-frame messages are not worth it (min_size). */
  int comp = c->tx_op ? c->tx_comp
                      : c->pmd.enabled && !(flags & WS_SEND_NO_COMPRESS) &&
                            (!fin || len >= c->z->cfg.min_size);
  unsigned op = c->tx_op ? WS_OP_CONT : (unsigned)opcode;
  int rv = comp ? queue_compressed(c, fin, op, (const uint8_t *)data, len)
                : queue_frame(c, fin, op, data, len);
  if (rv) return rv;
  c->tx_comp = (uint8_t)(fin ? 0 : comp);
  c->tx_op = fin ? 0 : (uint8_t)opcode;
  c->stats.bytes_out += len;
  if (fin) c->stats.msgs_out++;
  return 0;
}

static int send_control(ws_conn *c, unsigned op, const void *data,
                        size_t len) {
  if (!c || (len && !data)) return WS_ERR_INVALID_ARGUMENT;
  if (len > WS_CONTROL_MAX) return WS_ERR_INVALID_ARGUMENT;
  if (!can_send_data(c)) return WS_ERR_INVALID_STATE;
  if (out_full(c)) return WS_ERR_WOULDBLOCK;
  return queue_frame(c, 1, op, data, len);
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
  if (code == 0 && reasonlen) return WS_ERR_INVALID_ARGUMENT;
  if (code && !ws_close_code_valid(code)) return WS_ERR_INVALID_ARGUMENT;
  if (reasonlen > WS_CONTROL_MAX - 2 || ws_utf8_validate(reason, reasonlen))
    return WS_ERR_INVALID_ARGUMENT;
  if (c->err || c->close_sent_flag ||
      (c->state != WS_STATE_OPEN && c->state != WS_STATE_CLOSING_REMOTE))
    return WS_ERR_INVALID_STATE;
  int rv = queue_close(c, code, reason, reasonlen);
  if (rv) return rv;
  if (c->state == WS_STATE_CLOSING_REMOTE) {
    c->state = WS_STATE_CLOSED;
    if (is_client(c)) arm_close_timer(c);
  } else {
    c->state = WS_STATE_CLOSING_LOCAL;
    arm_close_timer(c);
  }
  return 0;
}

/* ---- output draining ----------------------------------------------------- */

size_t ws_conn_out_peek(const ws_conn *c, ws_iovec *iov, size_t iovcnt) {
  if (!c || !iov || iovcnt == 0 || ws_buf_size(&c->out) == 0) return 0;
  iov[0].base = c->out.base + c->out.pos;
  iov[0].len = ws_buf_size(&c->out);
  return 1;
}

void ws_conn_out_consume(ws_conn *c, size_t n) {
  if (!c) return;
  ws_buf_consume_keep(&c->out, &c->mem, n, keep_size(c));
  if (c->has_pending_pong && !out_full(c) && !c->close_sent_flag) {
    if (queue_frame(c, 1, WS_OP_PONG, c->ctrlbuf + CTRL_PONG,
                    c->pending_pong_len) == 0)
      c->has_pending_pong = 0;
  }
  if (c->ping_wanted && !out_full(c) && c->state == WS_STATE_OPEN &&
      !c->err) {
    if (queue_frame(c, 1, WS_OP_PING, NULL, 0) == 0) c->ping_wanted = 0;
  }
}

size_t ws_conn_out_pending(const ws_conn *c) {
  return c ? ws_buf_size(&c->out) : 0;
}

/* ---- time ---------------------------------------------------------------- */

static uint64_t ping_deadline(const ws_conn *c) {
  if (!c->cfg.ping_interval_ms || c->state != WS_STATE_OPEN ||
      c->ping_outstanding || c->ping_wanted || !c->clock_started)
    return NO_DEADLINE;
  return c->last_rx + c->cfg.ping_interval_ms;
}

int ws_conn_tick(ws_conn *c, uint64_t now) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  release_event_storage(c);
  if (!c->clock_started || now > c->now) c->now = now;
  if (!c->clock_started) {
    c->clock_started = 1;
    c->last_rx = now;
    if (c->state == WS_STATE_CONNECTING && c->handshake_timeout_ms)
      c->hs_deadline = now + c->handshake_timeout_ms;
  }
  if (c->close_arm) {
    c->close_arm = 0;
    c->close_deadline = c->now + c->cfg.close_timeout_ms;
  }
  if (c->err) return c->err;
  if (c->rx_activity) {
    c->rx_activity = 0;
    c->last_rx = c->now;
    /* Any bytes from the peer prove it is alive. */
    c->ping_outstanding = 0;
    c->ping_wanted = 0;
    c->pong_deadline = NO_DEADLINE;
  }
  now = c->now;
  if (now >= c->hs_deadline && c->state == WS_STATE_CONNECTING)
    return fail(c, WS_ERR_TIMEOUT, 0, "handshake timeout");
  if (now >= c->close_deadline) {
    c->close_deadline = NO_DEADLINE;
    if (c->state == WS_STATE_CLOSED) {
      c->linger_done = 1; /* client: stop waiting for the server's FIN */
      return 0;
    }
    if (c->state == WS_STATE_CLOSING_LOCAL)
      return fail(c, WS_ERR_TIMEOUT, 0, "close handshake timeout");
  }
  if (now >= c->pong_deadline)
    return fail(c, WS_ERR_TIMEOUT, 1011, "keepalive pong timeout");
  if (now >= ping_deadline(c)) {
    /* With the output queue full the ping waits for room (it goes out
     * from ws_conn_out_consume()), but the pong timeout starts now: a
     * peer that neither reads nor sends is as dead as one that does not
     * answer. Either way the ping deadline is spent, so the next
     * deadline is never one that this call would leave unchanged. */
    if (out_full(c)) {
      c->ping_wanted = 1;
    } else {
      int rv = queue_frame(c, 1, WS_OP_PING, NULL, 0);
      if (rv) return nomem(c);
    }
    c->ping_outstanding = 1;
    if (c->cfg.pong_timeout_ms)
      c->pong_deadline = now + c->cfg.pong_timeout_ms;
  }
  return 0;
}

uint64_t ws_conn_next_deadline(const ws_conn *c) {
  if (!c || c->err) return NO_DEADLINE;
  if (!c->clock_started) return 0; /* tick once to start the clock */
  if (c->close_arm) return c->now; /* tick now to start the close timer */
  uint64_t d = WS_MIN(c->hs_deadline, c->pong_deadline);
  d = WS_MIN(d, c->close_deadline);
  d = WS_MIN(d, ping_deadline(c));
  return d;
}

/* ---- queries ------------------------------------------------------------- */

ws_state ws_conn_state(const ws_conn *c) {
  return c ? (ws_state)c->state : WS_STATE_FAILED;
}

int ws_conn_want_read(const ws_conn *c) {
  if (!c || c->err) return 0;
  if (c->state == WS_STATE_CLOSED) return is_client(c) && !c->linger_done;
  return !out_full(c);
}

int ws_conn_want_write(const ws_conn *c) {
  return c && ws_buf_size(&c->out) > 0;
}

int ws_conn_should_close_transport(const ws_conn *c) {
  if (!c || ws_buf_size(&c->out) > 0) return 0;
  if (c->err) return 1;
  if (c->state == WS_STATE_CLOSED)
    return !is_client(c) || c->linger_done; /* RFC 6455 7.1.1 */
  return 0;
}

uint16_t ws_conn_close_code(const ws_conn *c) { return c ? c->close_sent : 0; }

ws_slice ws_conn_protocol(const ws_conn *c) {
  ws_slice s = {NULL, 0};
  if (c && c->protocol) {
    s.base = c->protocol;
    s.len = c->protocollen;
  }
  return s;
}

void ws_conn_stats(const ws_conn *c, ws_stats *pstats) {
  if (c && pstats) *pstats = c->stats;
}

void ws_conn_pmd(const ws_conn *c, ws_pmd_params *params) {
  if (!params) return;
  memset(params, 0, sizeof(*params));
  if (c) *params = c->pmd;
}

/* ---- h-budget: one getter for the loop's message timeout ---------------- */

int ws_conn_rx_message(const ws_conn *c, uint64_t *pbytes) {
  int on = c && c->msg_op != 0;
  if (pbytes) *pbytes = !on ? 0 : c->rx_comp && c->z ? c->z->inflated : c->msg_bytes;
  return on;
}
