/*
 * Fuzz target: permessage-deflate parameter negotiation (lib/ws_pmd.c,
 * RFC 7692 5 and 7.1).
 * SPDX-License-Identifier: MIT
 *
 * Input layout:
 *   byte 0   the server's ws_pmd_config: bits 0-2 server_max_window_bits
 *            - 8, bits 3-5 client_max_window_bits - 8, bit 6
 *            server_no_context_takeover, bit 7 client_no_context_takeover
 *   byte 1   the client's, the same way
 *   rest     Sec-WebSocket-Extensions values offered by a client, one
 *            header per line ('\n'), then a NUL and a response value for
 *            the client to check
 *
 * Invariants:
 *  - ws_pmd_parse: 0 exactly when the element's name is not
 *    permessage-deflate; on 1, window bits are 8..15 (client's also
 *    absent or without value) and the parameters written back in
 *    canonical form parse to the same;
 *  - ws_pmd_negotiate picks what the rules in ws.h (ws_pmd_config) say:
 *    the first offer that parses and is acceptable, with exactly the
 *    documented response parameters; its text is one valid element that
 *    says what |params| say;
 *  - the client's own offer (ws_pmd_write_offer) parses back to its
 *    configuration, every server configuration accepts it, and the
 *    client accepts that answer with the very same parameters;
 *  - ws_pmd_check_response on any value: 0 only for one valid element
 *    within what was offered, with parameters that say what it says;
 *    otherwise WS_ERR_EXTENSION with a reason.
 */
#include "fuzz_common.h"
#include "ws_pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXH 16

static void cfg_from(uint8_t b, ws_pmd_config *c) {
  memset(c, 0, sizeof(*c));
  c->enable = 1;
  c->level = 6;
  c->server_max_window_bits = (uint8_t)(8 + (b & 7u));
  c->client_max_window_bits = (uint8_t)(8 + ((b >> 3) & 7u));
  c->server_no_context_takeover = (b >> 6) & 1u;
  c->client_no_context_takeover = (b >> 7) & 1u;
}

static int is_tchar(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The element's name: after optional whitespace, the run of tchars. */
static int named_pmd(ws_slice el) {
  size_t i = 0, start;
  while (i < el.len && (el.base[i] == ' ' || el.base[i] == '\t')) i++;
  start = i;
  while (i < el.len && is_tchar(el.base[i])) i++;
  ws_slice name = {el.base + start, i - start};
  return ws_slice_ieq(name, "permessage-deflate");
}

static int bits_ok(uint8_t b) { return b >= 8 && b <= 15; }

static size_t canonical(const ws_pmd_offer *o, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "permessage-deflate%s%s",
                   o->server_no_context_takeover
                       ? "; server_no_context_takeover" : "",
                   o->client_no_context_takeover
                       ? "; client_no_context_takeover" : "");
  CHECK(n > 0 && (size_t)n < cap);
  size_t len = (size_t)n;
  if (o->server_max_window_bits) {
    n = snprintf(buf + len, cap - len, "; server_max_window_bits=%u",
                 o->server_max_window_bits);
    len += (size_t)n;
  }
  if (o->client_max_window_bits == WS_PMD_BITS_NOVALUE)
    n = snprintf(buf + len, cap - len, "; client_max_window_bits");
  else if (o->client_max_window_bits)
    n = snprintf(buf + len, cap - len, ";client_max_window_bits=\"%u\"",
                 o->client_max_window_bits);
  else
    n = 0;
  len += (size_t)n;
  CHECK(len < cap);
  return len;
}

/* ws_pmd_parse with the invariants above; returns its result. */
static int parse_checked(ws_slice el, ws_pmd_offer *o) {
  int rv = ws_pmd_parse(el, o);
  CHECK(rv == 1 || rv == 0 || rv == -1);
  CHECK((rv == 0) == !named_pmd(el));
  if (rv != 1) return rv;
  CHECK(o->server_no_context_takeover <= 1);
  CHECK(o->client_no_context_takeover <= 1);
  CHECK(o->server_max_window_bits == 0 || bits_ok(o->server_max_window_bits));
  CHECK(o->client_max_window_bits == 0 ||
        o->client_max_window_bits == WS_PMD_BITS_NOVALUE ||
        bits_ok(o->client_max_window_bits));
  char buf[256];
  ws_pmd_offer o2;
  size_t n = canonical(o, buf, sizeof(buf));
  ws_slice s = {(const uint8_t *)buf, n};
  CHECK(ws_pmd_parse(s, &o2) == 1);
  CHECK(memcmp(o, &o2, sizeof(o2)) == 0);
  return 1;
}

/* The server's choice as ws.h documents it, from the parsed offers. */
static int expected(const ws_pmd_config *cfg, const ws_request *req,
                    ws_pmd_params *p, ws_pmd_offer *chosen) {
  ws_slice el;
  for (size_t i = 0; ws_request_extension(req, i, &el); i++) {
    ws_pmd_offer o;
    if (parse_checked(el, &o) != 1) continue;
    unsigned cb;
    if (o.client_max_window_bits == 0) {
      if (cfg->client_max_window_bits < 15) continue; /* declined */
      cb = 15;
    } else if (o.client_max_window_bits == WS_PMD_BITS_NOVALUE) {
      cb = cfg->client_max_window_bits;
    } else {
      cb = WS_MIN(o.client_max_window_bits, cfg->client_max_window_bits);
    }
    unsigned sb = o.server_max_window_bits
                      ? WS_MIN(o.server_max_window_bits,
                               cfg->server_max_window_bits)
                      : cfg->server_max_window_bits;
    memset(p, 0, sizeof(*p));
    p->enabled = 1;
    p->server_no_context_takeover =
        (uint8_t)(o.server_no_context_takeover ||
                  cfg->server_no_context_takeover);
    p->client_no_context_takeover = cfg->client_no_context_takeover ||
                                            o.client_no_context_takeover
                                        ? 1
                                        : 0;
    p->server_max_window_bits = (uint8_t)sb;
    p->client_max_window_bits = (uint8_t)cb;
    *chosen = o;
    return 1;
  }
  return 0;
}

/* The response text says what |p| says (server_max_window_bits written
 * when below 15 or when offered, client_max_window_bits when below 15). */
static void check_text(const char *text, const ws_pmd_params *p,
                       const ws_pmd_offer *offer) {
  size_t n = strlen(text);
  CHECK(n < WS_PMD_TEXT_MAX);
  ws_slice s = {(const uint8_t *)text, n}, list = s, el;
  CHECK(ws_list_next(&list, &el) && !ws_list_next(&list, &el));
  ws_pmd_offer r;
  CHECK(parse_checked(s, &r) == 1);
  CHECK(r.server_no_context_takeover == p->server_no_context_takeover);
  CHECK(r.client_no_context_takeover == p->client_no_context_takeover);
  if (p->server_max_window_bits < 15 || offer->server_max_window_bits)
    CHECK(r.server_max_window_bits == p->server_max_window_bits);
  else
    CHECK(r.server_max_window_bits == 0);
  if (p->client_max_window_bits < 15)
    CHECK(r.client_max_window_bits == p->client_max_window_bits);
  else
    CHECK(r.client_max_window_bits == 0);
  /* RFC 7692 7.1.2.2: never in the response unless offered */
  if (r.client_max_window_bits) CHECK(offer->client_max_window_bits);
}

static void check_negotiate(const ws_pmd_config *scfg, const ws_request *req) {
  ws_pmd_params got, want;
  ws_pmd_offer chosen;
  char text[WS_PMD_TEXT_MAX];
  memset(text, 0x55, sizeof(text));
  int rv = ws_pmd_negotiate(scfg, req, &got, text);
  int erv = expected(scfg, req, &want, &chosen);
  CHECK(rv == erv);
  if (!rv) return;
  CHECK(memcmp(&got, &want, sizeof(got)) == 0);
  check_text(text, &got, &chosen);
}

/* The client's offer, the server's answer, the client's check. */
static void check_roundtrip(const ws_pmd_config *scfg,
                            const ws_pmd_config *ccfg) {
  char offer[WS_PMD_TEXT_MAX], answer[WS_PMD_TEXT_MAX];
  ws_pmd_write_offer(ccfg, offer);
  ws_slice os = {(const uint8_t *)offer, strlen(offer)};
  ws_pmd_offer o;
  CHECK(os.len < WS_PMD_TEXT_MAX);
  CHECK(parse_checked(os, &o) == 1);
  CHECK(o.server_no_context_takeover == ccfg->server_no_context_takeover);
  CHECK(o.client_no_context_takeover == ccfg->client_no_context_takeover);
  CHECK(o.server_max_window_bits == (ccfg->server_max_window_bits < 15
                                         ? ccfg->server_max_window_bits
                                         : 0));
  CHECK(o.client_max_window_bits == (ccfg->client_max_window_bits < 15
                                         ? ccfg->client_max_window_bits
                                         : WS_PMD_BITS_NOVALUE));

  ws_header h = {{(const uint8_t *)"Sec-WebSocket-Extensions", 24}, os};
  ws_request req;
  memset(&req, 0, sizeof(req));
  req.headers = &h;
  req.nheaders = 1;
  ws_pmd_params sp, cp;
  CHECK(ws_pmd_negotiate(scfg, &req, &sp, answer) == 1);
  check_text(answer, &sp, &o);
  const char *why = NULL;
  ws_slice as = {(const uint8_t *)answer, strlen(answer)};
  int rv = ws_pmd_check_response(ccfg, as, &cp, &why);
  if (rv) fprintf(stderr, "offer '%s', answer '%s': %s\n", offer, answer, why);
  CHECK(rv == 0);
  CHECK(memcmp(&sp, &cp, sizeof(sp)) == 0);
}

static void check_response(const ws_pmd_config *ccfg, ws_slice ext) {
  ws_pmd_params p;
  const char *why = NULL;
  memset(&p, 0xAA, sizeof(p));
  int rv = ws_pmd_check_response(ccfg, ext, &p, &why);
  if (rv) {
    CHECK(rv == WS_ERR_EXTENSION && why != NULL && strlen(why) > 0);
    return;
  }
  ws_slice list = ext, el, more;
  CHECK(ws_list_next(&list, &el));
  CHECK(!ws_list_next(&list, &more));
  ws_pmd_offer r;
  CHECK(parse_checked(el, &r) == 1);
  CHECK(p.enabled == 1);
  CHECK(bits_ok(p.server_max_window_bits) && bits_ok(p.client_max_window_bits));
  CHECK(p.server_max_window_bits <= ccfg->server_max_window_bits);
  CHECK(p.client_max_window_bits <= ccfg->client_max_window_bits);
  CHECK(p.server_no_context_takeover == r.server_no_context_takeover);
  if (ccfg->server_no_context_takeover) CHECK(p.server_no_context_takeover);
  CHECK(p.client_no_context_takeover ==
        (r.client_no_context_takeover || ccfg->client_no_context_takeover));
  CHECK(r.client_max_window_bits != WS_PMD_BITS_NOVALUE);
  if (r.server_max_window_bits)
    CHECK(p.server_max_window_bits == r.server_max_window_bits);
  else
    CHECK(p.server_max_window_bits == 15);
  if (r.client_max_window_bits)
    CHECK(p.client_max_window_bits == r.client_max_window_bits);
  else
    CHECK(p.client_max_window_bits == ccfg->client_max_window_bits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  ws_pmd_config scfg, ccfg;
  cfg_from(data[0], &scfg);
  cfg_from(data[1], &ccfg);
  const uint8_t *rest = data + 2;
  size_t n = size - 2;
  const uint8_t *nul = memchr(rest, 0, n);
  size_t olen = nul ? (size_t)(nul - rest) : n;

  /* the offers, one header per line, in an exact-size copy */
  uint8_t *copy = malloc(olen ? olen : 1);
  CHECK(copy);
  if (olen) memcpy(copy, rest, olen);
  ws_header h[MAXH];
  size_t nh = 0, start = 0;
  for (size_t i = 0; i <= olen && nh < MAXH; i++) {
    if (i < olen && copy[i] != '\n') continue;
    /* every fourth line goes under another name, to be ignored */
    static const char *const names[2] = {"Sec-WebSocket-Extensions",
                                         "Sec-WebSocket-Extension"};
    const char *nm = names[(nh % 4) == 3];
    h[nh].name.base = (const uint8_t *)nm;
    h[nh].name.len = strlen(nm);
    h[nh].value.base = copy + start;
    h[nh].value.len = i - start;
    nh++;
    start = i + 1;
  }
  ws_request req;
  memset(&req, 0, sizeof(req));
  req.headers = h;
  req.nheaders = nh;
  ws_slice el;
  for (size_t i = 0; ws_request_extension(&req, i, &el) && i < 1000; i++) {
    ws_pmd_offer o;
    (void)parse_checked(el, &o);
  }
  check_negotiate(&scfg, &req);
  check_roundtrip(&scfg, &ccfg);
  free(copy);

  if (nul) {
    size_t rlen = n - olen - 1;
    uint8_t *r = malloc(rlen ? rlen : 1);
    CHECK(r);
    if (rlen) memcpy(r, nul + 1, rlen);
    ws_slice ext = {r, rlen};
    check_response(&ccfg, ext);
    free(r);
  }
  return 0;
}
