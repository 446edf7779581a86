/*
 * The connection's opening handshake (RFC 6455 4) and plain HTTP answers.
 * SPDX-License-Identifier: MIT
 */
#include "ws_conn_int.h"

/* ---- handshake --------------------------------------------------------- */

/* Out of line where both roles call it: -Os would copy it into the
 * callers of each. */
#if WS_HAS_SERVER && WS_HAS_CLIENT
#  define HS_SHARED WS_NOINLINE
#else
#  define HS_SHARED
#endif

/* The handshake is over: the connection is open (WS_EV_OPEN). */
static HS_SHARED void hs_open(ws_conn *c) {
#if !defined(WS_NO_DEFLATE)
  /* permessage-deflate configured but not negotiated (RSV1 stays
   * refused): its state is never read again, and an idle connection of a
   * server that offers compression to peers that do not take it keeps
   * nothing of it. */
  if (c->z && !(c->rsv_allowed & WS_RSV1)) {
    ws_free(&ENV(c)->mem, c->z);
    c->z = NULL;
  }
#endif
  c->state = WS_STATE_OPEN;
  IO(c)->hs_deadline = NO_DEADLINE;
  c->last_rx = c->now;
  wsc_set_event(c, WS_EV_OPEN);
}

static int check_header_kv(const ws_kv *h, size_t n) {
  if (n && !h) return WS_ERR_INVALID_ARGUMENT;
  return 0;
}

/* Counts the bytes a handshake writer queued after the first |before|
 * of the output (one copy of the 64-bit sum for all the callers). */
static HS_SHARED void count_out(ws_conn *c, size_t before) {
  c->stats.wire_out += IO(c)->out.len - before;
}

/* Keeps the negotiated subprotocol, |len| bytes at |name| (under
 * max_handshake_bytes: it was in a head). */
static int keep_protocol(ws_conn *c, const void *name, size_t len) {
  c->protocol = ws_malloc(&ENV(c)->mem, len);
  if (!c->protocol) return WS_ERR_NOMEM;
  memcpy(c->protocol, name, len);
  c->protocollen = (uint32_t)len;
  return 0;
}

int ws_conn_connect(ws_conn *c, const ws_client_params *p) {
  if (!c || !p) return WS_ERR_INVALID_ARGUMENT;
#if defined(WS_NO_CLIENT)
  return WS_ERR_INVALID_STATE; /* (no client connection can exist) */
#else
  if (!is_client(c) || c->state != WS_STATE_CONNECTING || IO(c)->hs)
    return WS_ERR_INVALID_STATE;
  if (!p->host || check_header_kv(p->headers, p->nheaders) ||
      (p->nprotocols && !p->protocols))
    return WS_ERR_INVALID_ARGUMENT;
  uint8_t raw[16];
  if (ENV(c)->cfg.rand(raw, sizeof(raw), ENV(c)->cfg.rand_user_data))
    return WS_ERR_INTERNAL;
  int rv = wsc_hs_alloc(c);
  if (rv) return rv;
  ws_hs *hs = IO(c)->hs;
  ws_base64_encode(raw, sizeof(raw), hs->key);
  /* Keep the offered subprotocols to validate the response against, as a
   * comma list: each name and a comma, the last comma left out of the
   * length. */
  size_t total = 0;
  rv = WS_ERR_INVALID_ARGUMENT;
  for (size_t i = 0; i < p->nprotocols; i++) {
    if (!p->protocols[i]) goto fail;
    total += strlen(p->protocols[i]) + 1;
  }
  if (total) {
    uint8_t *o = hs->offered = ws_malloc(&ENV(c)->mem, total);
    rv = WS_ERR_NOMEM;
    if (!o) goto fail;
    for (size_t i = 0; i < p->nprotocols; i++) {
      size_t n = strlen(p->protocols[i]);
      memcpy(o, p->protocols[i], n);
      o += n;
      *o++ = ',';
    }
    hs->offeredlen = total - 1;
  }
  char offer[WS_PMD_TEXT_MAX];
  const char *poffer = NULL;
#  if !defined(WS_NO_DEFLATE)
  if (c->z) {
    ws_pmd_write_offer(&c->z->cfg, offer);
    poffer = offer;
  }
#  else
  (void)offer;
#  endif
  size_t before = IO(c)->out.len;
  rv = ws_hs_write_request(&IO(c)->out, &ENV(c)->mem, p, hs->key, poffer);
  if (rv) goto fail;
  count_out(c, before);
  return 0;
fail: /* (the handshake state allocated above goes again) */
  wsc_hs_free(c);
  return rv;
#endif /* !WS_NO_CLIENT */
}

#if !defined(WS_NO_SERVER)
/* A server connection whose request has been parsed and waits for the
 * application's answer (and nothing has failed). */
static int hs_waiting(const ws_conn *c) {
  return !is_client(c) && c->state == WS_STATE_CONNECTING && IO(c)->hs &&
         IO(c)->hs->parsed && !c->err;
}
#endif

int ws_conn_accept(ws_conn *c, const ws_accept_params *p) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
#if defined(WS_NO_SERVER)
  (void)p;
  return WS_ERR_INVALID_STATE; /* (no server connection can exist) */
#else
  if (!hs_waiting(c) || IO(c)->hs->http) return WS_ERR_INVALID_STATE;
  const char *proto = p ? p->protocol : NULL;
  if (p && check_header_kv(p->headers, p->nheaders))
    return WS_ERR_INVALID_ARGUMENT;
  if (proto) {
    /* RFC 6455 4.2.2: the selected subprotocol must be one offered. */
    if (!ws_hs_offered(&IO(c)->hs->req, proto)) return WS_ERR_INVALID_ARGUMENT;
    /* (it matched an offer in the head) */
    if (keep_protocol(c, proto, strlen(proto))) return WS_ERR_NOMEM;
  }
  ws_pmd_params pmd;
  char ext[WS_PMD_TEXT_MAX];
  memset(&pmd, 0, sizeof(pmd));
#  if !defined(WS_NO_DEFLATE)
  if (c->z)
    ws_pmd_negotiate_flags(&c->z->cfg, c->flags, &IO(c)->hs->req, &pmd, ext);
#  endif
  size_t before = IO(c)->out.len;
  int rv = ws_hs_write_accept(&IO(c)->out, &ENV(c)->mem, &IO(c)->hs->req, proto,
                              pmd.enabled ? ext : NULL, p ? p->headers : NULL,
                              p ? p->nheaders : 0);
  if (rv) {
    ws_free(&ENV(c)->mem, c->protocol);
    c->protocol = NULL;
    c->protocollen = 0;
    return rv;
  }
  count_out(c, before);
  wsc_hs_free(c);
  if (WS_HAS_INFLATE) { /* (else nothing negotiated: both stay 0) */
    c->pmd = pmd;
    c->rsv_allowed = pmd.enabled ? WS_RSV1 : 0;
  }
  hs_open(c);
  return 0;
#endif /* !WS_NO_SERVER */
}

#if !defined(WS_NO_SERVER)
/* ws_conn_reject() (|http| 0: a refused upgrade, or any request, 400 to
 * 599) and ws_conn_respond() (|http| 1: the answer to a plain HTTP
 * request, 200 to 599): one HTTP answer, then the connection is over.
 * Out of line: -Os would copy it into both, which pass their own
 * arguments on (hence |http| last, and the NULL check here). */
static WS_NOINLINE int answer(ws_conn *c, int status, const ws_kv *headers,
                              size_t nheaders, const void *body,
                              size_t bodylen, int http) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (!hs_waiting(c) || (http && !IO(c)->hs->http)) return WS_ERR_INVALID_STATE;
  /* (NULL headers or body with a count: ws_hs_write_response() refuses
   * those alike, before it writes anything) */
  if (status < (http ? 200 : 400) || status > 599)
    return WS_ERR_INVALID_ARGUMENT;
  const ws_slice m = IO(c)->hs->req.method;
  int head = http && m.len == 4 && memcmp(m.base, "HEAD", 4) == 0;
  size_t before = IO(c)->out.len;
  int rv = ws_hs_write_response(&IO(c)->out, &ENV(c)->mem, status, headers,
                                nheaders, body, bodylen, head);
  if (rv) return rv;
  count_out(c, before);
  wsc_hs_free(c);
  c->err_reported = 1;
  if (http) {
    /* One request per connection: the exchange is over once the answer
     * is written. */
    c->err = WS_ERR_CLOSED;
    IO(c)->err_reason = "plain HTTP request answered";
    c->state = WS_STATE_CLOSED;
    IO(c)->hs_deadline = NO_DEADLINE;
  } else {
    /* A rejection decided by the application is not a peer error, but
     * the connection is over all the same. */
    c->err = WS_ERR_REJECTED;
    IO(c)->err_reason = "rejected by the application";
    c->state = WS_STATE_FAILED;
  }
  return 0;
}
#endif /* !WS_NO_SERVER */

int ws_conn_reject(ws_conn *c, int status, const ws_kv *headers,
                   size_t nheaders, const void *body, size_t bodylen) {
#if defined(WS_NO_SERVER)
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  (void)status;
  (void)headers;
  (void)nheaders;
  (void)body;
  (void)bodylen;
  return WS_ERR_INVALID_STATE; /* (no server connection can exist) */
#else
  return answer(c, status, headers, nheaders, body, bodylen, 0);
#endif
}

int ws_conn_respond(ws_conn *c, int status, const ws_kv *headers,
                    size_t nheaders, const void *body, size_t bodylen) {
#if defined(WS_NO_SERVER)
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  (void)status;
  (void)headers;
  (void)nheaders;
  (void)body;
  (void)bodylen;
  return WS_ERR_INVALID_STATE; /* (no server connection can exist) */
#else
  return answer(c, status, headers, nheaders, body, bodylen, 1);
#endif
}

#if !defined(WS_NO_SERVER)
/* Server handshake failure: answer with an HTTP error and fail. */
static int hs_fail_http(ws_conn *c, int status, const char *reason) {
  size_t before = IO(c)->out.len;
  if (ws_hs_write_reject(&IO(c)->out, &ENV(c)->mem, status, NULL, 0, NULL, 0) == 0)
    count_out(c, before);
  return wsc_fail(c, WS_ERR_HANDSHAKE, 0, reason);
}
#endif

/* Collects head bytes, counted in the stats; returns 0 with *phead, the
 * head's length, when it is complete (and *pnread only counting bytes
 * that belong to it; left as it was when the bytes cannot be kept). */
static int hs_collect(ws_conn *c, const uint8_t *in, size_t inlen,
                      size_t *pnread, size_t *phead) {
  ws_hs *hs = IO(c)->hs;
  size_t room = IO(c)->max_handshake_bytes - ws_buf_size(&hs->in);
  size_t n = WS_MIN(inlen, room);
  *phead = 0;
  int rv = ws_buf_append(&hs->in, &ENV(c)->mem, in, n);
  if (rv) return rv;
  size_t end = ws_hs_head_end(hs->in.base, hs->in.len, hs->scanned);
  if (end) {
    /* Only the bytes up to the head are ours; the rest are frames. */
    n -= hs->in.len - end;
    hs->in.len = end;
    *phead = end;
  } else {
    hs->scanned = hs->in.len;
    if (n < inlen || hs->in.len >= IO(c)->max_handshake_bytes)
      rv = WS_ERR_TOO_BIG;
  }
  *pnread = n;
  c->stats.wire_in += n;
  return rv;
}

#if !defined(WS_NO_SERVER)
/* The request head: a WebSocket upgrade (WS_EV_REQUEST) or, with
 * WS_CFG_HTTP, a plain request (WS_EV_HTTP). |rv| is hs_collect()'s. */
static int feed_request(ws_conn *c, int rv, size_t head) {
  ws_hs *hs = IO(c)->hs;
  if (rv == WS_ERR_TOO_BIG)
    return hs_fail_http(c, 431, "request head too large");
  if (!head) return 0;
  int status = 400;
  const char *reason = NULL; /* both set with every failure */
  rv = ws_hs_check_request(&hs->req, hs->headers, IO(c)->max_headers, hs->in.base,
                           head, (c->flags & WS_CFG_HTTP) != 0, &status,
                           &reason);
  if (rv < 0) return hs_fail_http(c, status, reason);
  /* 1: plain HTTP, WS_CFG_HTTP (WS_EV_HTTP) */
  hs->parsed = 1;
  hs->http = (uint8_t)rv;
  wsc_set_event(c, rv ? WS_EV_HTTP : WS_EV_REQUEST); /* the request: hs->req */
  return 0;
}
#endif /* !WS_NO_SERVER */

#if !defined(WS_NO_CLIENT)
/* The response head: the server's 101 (WS_EV_OPEN), checked against what
 * was offered. |rv| is hs_collect()'s. */
static int feed_response(ws_conn *c, int rv, size_t head) {
  ws_hs *hs = IO(c)->hs;
  if (rv == WS_ERR_TOO_BIG)
    return wsc_fail(c, WS_ERR_HANDSHAKE, 0, "response head too large");
  if (!head) return 0;
  const char *reason = NULL; /* set with every failure */
  ws_slice offered = {hs->offered, hs->offeredlen}, ext;
  rv = ws_hs_check_response(&hs->resp, hs->headers, IO(c)->max_headers,
                            hs->in.base, head, hs->key, offered,
                            WS_HAS_INFLATE && c->z != NULL, &reason,
                            &ext);
  hs->parsed = 1;
  /* WS_ERR_REJECTED (not 101: the response stays readable through the
   * error event) or WS_ERR_HANDSHAKE */
  if (rv) return wsc_fail(c, rv, 0, reason);
#  if !defined(WS_NO_DEFLATE)
  /* Only permessage-deflate can have been offered; the check let through
   * at most one extension line, and none when nothing was offered
   * (always so without deflate: WS_NO_DEFLATE). RFC 7692 7.1: a response
   * the offer does not allow fails the connection. */
  if (ext.base) {
    if (ws_pmd_check_response(&c->z->cfg, ext, &c->pmd, &reason))
      return wsc_fail(c, WS_ERR_EXTENSION, 0, reason);
    c->rsv_allowed = WS_RSV1;
  }
#  else
  (void)ext;
#  endif
  if (hs->resp.protocol.len &&
      keep_protocol(c, hs->resp.protocol.base, hs->resp.protocol.len))
    return wsc_nomem(c);
  hs_open(c);     /* the response is hs->resp */
  c->release = 1; /* the handshake storage goes at the next call */
  return 0;
}
#endif /* !WS_NO_CLIENT */

int wsc_feed_handshake(ws_conn *c, const uint8_t *in, size_t inlen,
                       size_t *pnread) {
  size_t head;
  if (IO(c)->hs->parsed) return WS_ERR_WOULDBLOCK; /* waiting for accept */
  int rv = hs_collect(c, in, inlen, pnread, &head);
  if (rv == WS_ERR_NOMEM) return wsc_nomem(c);
  if (head) {
    /* Complete (then rv is 0): room for its headers. A server's, as many
     * as its lines can hold if that is fewer than max_headers (every line
     * ends in LF, the first is the request line and the last the empty
     * one), so that the many handshakes a server has in flight do not
     * each take max_headers slots; the parse is the same: it finds too
     * many headers only past max_headers. (max_headers is read for this
     * head only. A client has one handshake, and so has a firmware
     * server a few, WS_CONN_SPLIT: no code for them.) */
    ws_hs *hs = IO(c)->hs;
    if (WS_CONN_SPLIT && !is_client(c)) {
      size_t lines = 0;
      for (const uint8_t *p = hs->in.base, *e = p + head;
           (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        lines++;
      size_t most = lines > 2 ? lines - 2 : 1;
      if (most < IO(c)->max_headers) IO(c)->max_headers = (uint32_t)most;
    }
    hs->headers =
        ws_malloc(&ENV(c)->mem, IO(c)->max_headers * sizeof(ws_header));
    if (!hs->headers) return wsc_nomem(c);
  }
#if !defined(WS_NO_SERVER) && !defined(WS_NO_CLIENT)
  return is_client(c) ? feed_response(c, rv, head) : feed_request(c, rv, head);
#elif !defined(WS_NO_SERVER)
  return feed_request(c, rv, head);
#else
  return feed_response(c, rv, head);
#endif
}

/* Payloads up to this size are unmasked (and checked for ASCII) inline;
 * longer ones go through ws_mask() / ws_unmask_utf8(). */
