/*
 * permessage-deflate negotiation (RFC 7692 5, 7.1).
 * SPDX-License-Identifier: MIT
 *
 * An element is "permessage-deflate" followed by ";"-separated
 * parameters (RFC 6455 9.1):
 *   extension-param = token [ "=" (token | quoted-string) ]
 * where a quoted value must itself be a token once unquoted.
 */
#include "ws_pmd.h"

/* the whole file: build switches (README "Firmware") */
#if !defined(WS_NO_DEFLATE)

static const char pmd_name[] = "permessage-deflate";

/* The parameters (RFC 7692 7.1), one after the other in the order of
 * the P_* indexes: the parser and the writers share one copy. */
static const char pmd_params[] = "server_no_context_takeover\0"
                                 "client_no_context_takeover\0"
                                 "server_max_window_bits\0"
                                 "client_max_window_bits";
enum { P_SNCT, P_CNCT, P_SMWB, P_CMWB, P_COUNT };

static const char *param_name(unsigned k) {
  const char *p = pmd_params;
  while (k--)
    p += strlen(p) + 1;
  return p;
}

static int is_ows(uint8_t c) { return c == ' ' || c == '\t'; }

/* A cursor over an element. */
typedef struct {
  const uint8_t *p;
  size_t n, i;
} cursor;

static void skip_ows(cursor *c) {
  while (c->i < c->n && is_ows(c->p[c->i])) c->i++;
}

static ws_slice take_token(cursor *c) {
  ws_slice s = {c->p + c->i, 0};
  while (c->i < c->n && ws_is_tchar(c->p[c->i])) c->i++;
  s.len = (size_t)(c->p + c->i - s.base);
  return s;
}

/* A quoted-string whose content is a token: no escapes are needed for
 * tchars, so a quoted-pair is refused along with anything else. */
static int take_quoted(cursor *c, ws_slice *v) {
  c->i++; /* the opening quote */
  *v = take_token(c);
  if (c->i >= c->n || c->p[c->i] != '"' || v->len == 0) return -1;
  c->i++;
  return 0;
}

/* RFC 7692 7.1.2.1/7.1.2.2: 8..15, decimal, no leading zeros. */
static int parse_bits(ws_slice v) {
  if (v.len == 1 && v.base[0] >= '8' && v.base[0] <= '9')
    return v.base[0] - '0';
  if (v.len == 2 && v.base[0] == '1' && v.base[1] >= '0' && v.base[1] <= '5')
    return 10 + (v.base[1] - '0');
  return -1;
}

int ws_pmd_parse(ws_slice element, ws_pmd_offer *o) {
  cursor c = {element.base, element.len, 0};
  memset(o, 0, sizeof(*o));
  skip_ows(&c);
  ws_slice name = take_token(&c);
  if (!ws_slice_ieq(name, pmd_name)) return 0;
  uint8_t seen = 0;
  for (;;) {
    skip_ows(&c);
    if (c.i == c.n) return 1;
    if (c.p[c.i] != ';') return -1;
    c.i++;
    skip_ows(&c);
    ws_slice pn = take_token(&c);
    if (pn.len == 0) return -1;
    skip_ows(&c);
    ws_slice v = {NULL, 0};
    int has_value = 0;
    if (c.i < c.n && c.p[c.i] == '=') {
      c.i++;
      skip_ows(&c);
      if (c.i < c.n && c.p[c.i] == '"') {
        if (take_quoted(&c, &v)) return -1;
      } else {
        v = take_token(&c);
        if (v.len == 0) return -1;
      }
      has_value = 1;
    }
    unsigned k = 0;
    while (k < P_COUNT && !ws_slice_ieq(pn, param_name(k)))
      k++;
    if (k == P_COUNT) return -1; /* RFC 7692 5.1: unknown parameter */
    uint8_t bit = (uint8_t)(1u << k);
    if (k == P_SNCT || k == P_CNCT) {
      if (has_value) return -1;
      if (k == P_SNCT)
        o->server_no_context_takeover = 1;
      else
        o->client_no_context_takeover = 1;
    } else {
      /* server_max_window_bits needs a value */
      int b = has_value      ? parse_bits(v)
              : k == P_SMWB ? -1
                            : WS_PMD_BITS_NOVALUE;
      if (b < 0) return -1;
      if (k == P_SMWB)
        o->server_max_window_bits = (uint8_t)b;
      else
        o->client_max_window_bits = (uint8_t)b;
    }
    if (seen & bit) return -1; /* RFC 7692 5.1: the same parameter twice */
    seen |= bit;
  }
}

/* ---- writing ------------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len;
} text_buf;

static void put(text_buf *t, const char *s) {
  size_t n = strlen(s);
  if (t->len + n >= WS_PMD_TEXT_MAX) return; /* cannot happen: sized */
  memcpy(t->p + t->len, s, n + 1);
  t->len += n;
}

/* "; " and the parameter |k| */
/* "; " and parameter |k|, with "=" and |bits| (8..15) unless 0. */
static void put_param(text_buf *t, unsigned k, unsigned bits) {
  char num[4] = {'=', (char)('0' + bits), 0, 0};
  put(t, "; ");
  put(t, param_name(k));
  if (!bits) return;
  if (bits >= 10) {
    num[1] = '1';
    num[2] = (char)('0' + bits - 10);
  }
  put(t, num);
}

static unsigned clamp_bits(unsigned b) {
  return b < 8 ? 8 : b > 15 ? 15 : b;
}

void ws_pmd_write_offer(const ws_pmd_config *cfg,
                        char text[WS_PMD_TEXT_MAX]) {
  text_buf t = {text, 0};
  text[0] = 0;
  put(&t, pmd_name);
  if (cfg->server_no_context_takeover) put_param(&t, P_SNCT, 0);
  if (cfg->client_no_context_takeover) put_param(&t, P_CNCT, 0);
  unsigned sb = clamp_bits(cfg->server_max_window_bits);
  unsigned cb = clamp_bits(cfg->client_max_window_bits);
  if (sb < 15) put_param(&t, P_SMWB, sb);
  /* Always say we can be held to a client window (RFC 7692 7.1.2.2). */
  put_param(&t, P_CMWB, cb < 15 ? cb : 0);
}

/* ---- server ------------------------------------------------------------- */

int ws_pmd_negotiate(const ws_pmd_config *cfg, const ws_request *req,
                     ws_pmd_params *params, char text[WS_PMD_TEXT_MAX]) {
  return ws_pmd_negotiate_flags(cfg, 0, req, params, text);
}

int ws_pmd_negotiate_flags(const ws_pmd_config *cfg, uint32_t flags,
                           const ws_request *req, ws_pmd_params *params,
                           char text[WS_PMD_TEXT_MAX]) {
  ws_slice el;
  unsigned want_s = clamp_bits(cfg->server_max_window_bits);
  unsigned want_c = clamp_bits(cfg->client_max_window_bits);
  int symmetric = (flags & WS_CFG_PMD_SYMMETRIC) != 0;
  for (size_t i = 0; ws_request_extension(req, i, &el); i++) {
    ws_pmd_offer o;
    if (ws_pmd_parse(el, &o) != 1) continue; /* other or invalid: decline */
    /* RFC 7692 7.1.2.1: accept the offer's limit, or one of our own. */
    unsigned sb = o.server_max_window_bits
                      ? WS_MIN(want_s, o.server_max_window_bits)
                      : want_s;
    /* WS_CFG_PMD_SYMMETRIC: the client's window no larger than ours, so
     * that it cannot send what we could only echo many times larger. */
    unsigned wc = symmetric ? WS_MIN(want_c, sb) : want_c;
    unsigned cb = 15;
    if (o.client_max_window_bits == 0) {
      /* RFC 7692 7.1.2.2: without the parameter in the offer the response
       * must not carry it, so the client could not be held to a smaller
       * window than 15: decline when we need one. */
      if (wc < 15) continue;
    } else {
      cb = o.client_max_window_bits == WS_PMD_BITS_NOVALUE
               ? wc
               : WS_MIN(wc, o.client_max_window_bits);
      /* zlib, which most clients compress with, has no raw 8-bit window
       * (deflateInit2() refuses it): a client is held to 8 only if it
       * offered 8 itself, else the offer is declined. */
      if (cb == 8 && wc < want_c && o.client_max_window_bits != 8) continue;
    }
    memset(params, 0, sizeof(*params));
    params->enabled = 1;
    /* RFC 7692 7.1.1.1: a server that accepts an offer with
     * server_no_context_takeover includes it; it may add it unasked. */
    params->server_no_context_takeover =
        (uint8_t)(o.server_no_context_takeover ||
                  cfg->server_no_context_takeover);
    /* RFC 7692 7.1.1.2: the server may always ask for it; when the client
     * offered it, taking it up lets us drop the inflater between
     * messages. WS_CFG_PMD_SYMMETRIC asks it whenever we reset too, so
     * that a message cannot lean on a history we no longer have. */
    params->client_no_context_takeover =
        (uint8_t)(o.client_no_context_takeover ||
                  cfg->client_no_context_takeover ||
                  (symmetric && params->server_no_context_takeover));
    params->server_max_window_bits = (uint8_t)sb;
    params->client_max_window_bits = (uint8_t)cb;

    text_buf t = {text, 0};
    text[0] = 0;
    put(&t, pmd_name);
    if (params->server_no_context_takeover) put_param(&t, P_SNCT, 0);
    if (params->client_no_context_takeover) put_param(&t, P_CNCT, 0);
    if (sb < 15 || o.server_max_window_bits) put_param(&t, P_SMWB, sb);
    if (cb < 15) put_param(&t, P_CMWB, cb);
    return 1;
  }
  return 0;
}

/* ---- client ------------------------------------------------------------- */

/* The one exit of a refusal: less code than one at every check. */
#define FAIL(reason)                                                           \
  do {                                                                         \
    why = (reason);                                                            \
    goto fail;                                                                 \
  } while (0)

int ws_pmd_check_response(const ws_pmd_config *cfg, ws_slice ext,
                          ws_pmd_params *params, const char **preason) {
  ws_slice list = ext, el, more;
  ws_pmd_offer r;
  const char *why;
  memset(params, 0, sizeof(*params));
  if (!ws_list_next(&list, &el))
    FAIL("empty Sec-WebSocket-Extensions");
  if (ws_list_next(&list, &more))
    FAIL("more than one extension accepted");
  int rv = ws_pmd_parse(el, &r);
  if (rv == 0)
    FAIL("extension not offered");
  if (rv < 0)
    FAIL("invalid permessage-deflate parameters");
  unsigned sb = clamp_bits(cfg->server_max_window_bits);
  unsigned cb = clamp_bits(cfg->client_max_window_bits);
  /* RFC 7692 7.1.1.1: a server accepts server_no_context_takeover by
   * answering it; it may also add it unasked. */
  if (cfg->server_no_context_takeover && !r.server_no_context_takeover)
    FAIL("server_no_context_takeover not accepted");
  /* RFC 7692 7.1.2.1: the server accepts our limit by answering it with
   * the same or a smaller value; it may limit itself unasked. */
  if (r.server_max_window_bits) {
    if (r.server_max_window_bits > sb)
      FAIL("server_max_window_bits above the offer");
    sb = r.server_max_window_bits;
  } else if (sb < 15)
    FAIL("server_max_window_bits not accepted");
  /* RFC 7692 7.1.2.2: in a response the parameter needs a value, no
   * larger than the offer's. */
  if (r.client_max_window_bits == WS_PMD_BITS_NOVALUE)
    FAIL("client_max_window_bits without a value");
  if (r.client_max_window_bits) {
    if (r.client_max_window_bits > cb)
      FAIL("client_max_window_bits above the offer");
    cb = r.client_max_window_bits;
  }
  params->enabled = 1;
  params->server_no_context_takeover = r.server_no_context_takeover;
  /* What we offered we keep to, whether or not the server echoed it. */
  params->client_no_context_takeover =
      (uint8_t)(r.client_no_context_takeover ||
                cfg->client_no_context_takeover);
  params->server_max_window_bits = (uint8_t)sb;
  params->client_max_window_bits = (uint8_t)cb;
  return 0;
fail:
  *preason = why;
  return WS_ERR_EXTENSION;
}

#undef FAIL

#else
typedef int ws_pmd_left_out; /* (an empty file is not ISO C) */
#endif /* !WS_NO_DEFLATE */
