/*
 * permessage-deflate negotiation (lib/ws_pmd.c): RFC 7692 5 and 7.1,
 * the parameter grammar, the server's choice among offers and the
 * client's check of the response. Tables give the exact header text.
 * SPDX-License-Identifier: MIT
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"
#include "ws_pmd.h"

static ws_slice sl(const char *s) {
  ws_slice v = {(const uint8_t *)s, strlen(s)};
  return v;
}

/* ---- parameter grammar (RFC 7692 5.1, 7; RFC 6455 9.1) ---------------- */

typedef struct {
  const char *element;
  int result; /* 1 ok, 0 another extension, -1 invalid */
  uint8_t snct, cnct, sbits, cbits;
} parse_case;

static void parse_table(void **state) {
  (void)state;
  static const parse_case cases[] = {
      {"permessage-deflate", 1, 0, 0, 0, 0},
      {"PerMessage-Deflate", 1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits", 1, 0, 0, 0, 0xff},
      {"permessage-deflate;client_max_window_bits=10", 1, 0, 0, 0, 10},
      {"permessage-deflate ; client_max_window_bits = 8 ", 1, 0, 0, 0, 8},
      {"permessage-deflate; client_max_window_bits=\"15\"", 1, 0, 0, 0, 15},
      {"permessage-deflate; server_max_window_bits=9", 1, 0, 0, 9, 0},
      {"permessage-deflate; server_no_context_takeover; "
       "client_no_context_takeover",
       1, 1, 1, 0, 0},
      {"permessage-deflate; server_no_context_takeover; "
       "client_no_context_takeover; server_max_window_bits=12; "
       "client_max_window_bits=11",
       1, 1, 1, 12, 11},
      {"x-webkit-deflate-frame", 0, 0, 0, 0, 0},
      {"permessage-deflatex", 0, 0, 0, 0, 0},
      {"foo; server_max_window_bits=99", 0, 0, 0, 0, 0},
      /* RFC 7692 5.1: unknown parameter, or the same one twice */
      {"permessage-deflate; foo", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_no_context_takeover; "
       "server_no_context_takeover",
       -1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits; client_max_window_bits=9",
       -1, 0, 0, 0, 0},
      /* 7.1.1.1/7.1.1.2: the no_context_takeover flags have no value */
      {"permessage-deflate; server_no_context_takeover=1", -1, 0, 0, 0, 0},
      {"permessage-deflate; client_no_context_takeover=\"x\"", -1, 0, 0, 0, 0},
      /* 7.1.2.1: server_max_window_bits needs a value, 8..15 */
      {"permessage-deflate; server_max_window_bits", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=7", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=16", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=010", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=08", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=1", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=+9", -1, 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=9a", -1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits=0", -1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits=\"\"", -1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits=\"9", -1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits=\"\\9\"", -1, 0, 0, 0, 0},
      /* syntax */
      {"permessage-deflate;", -1, 0, 0, 0, 0},
      {"permessage-deflate; ;client_max_window_bits", -1, 0, 0, 0, 0},
      {"permessage-deflate client_max_window_bits", -1, 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits=", -1, 0, 0, 0, 0},
      {"permessage-deflate; =9", -1, 0, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const parse_case *pc = &cases[i];
    ws_pmd_offer o;
    int rv = ws_pmd_parse(sl(pc->element), &o);
    if (rv != pc->result)
      fail_msg("'%s': got %d, want %d", pc->element, rv, pc->result);
    if (rv != 1) continue;
    assert_int_equal(o.server_no_context_takeover, pc->snct);
    assert_int_equal(o.client_no_context_takeover, pc->cnct);
    assert_int_equal(o.server_max_window_bits, pc->sbits);
    assert_int_equal(o.client_max_window_bits, pc->cbits);
  }
}

/* ---- client offers ------------------------------------------------------ */

static void offer_text(void **state) {
  (void)state;
  ws_config cfg;
  char t[WS_PMD_TEXT_MAX];
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  ws_pmd_write_offer(&cfg.pmd, t);
  assert_string_equal(t, "permessage-deflate; client_max_window_bits");
  cfg.pmd.server_no_context_takeover = 1;
  cfg.pmd.client_no_context_takeover = 1;
  cfg.pmd.server_max_window_bits = 8;
  cfg.pmd.client_max_window_bits = 10;
  ws_pmd_write_offer(&cfg.pmd, t);
  assert_string_equal(t,
                      "permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=8; "
                      "client_max_window_bits=10");
  /* The longest offer fits; out-of-range bits are clamped to 8..15. */
  cfg.pmd.server_max_window_bits = 14;
  cfg.pmd.client_max_window_bits = 3;
  ws_pmd_write_offer(&cfg.pmd, t);
  assert_string_equal(t,
                      "permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=14; "
                      "client_max_window_bits=8");
  assert_true(strlen(t) < WS_PMD_TEXT_MAX);
  /* Every offer we write parses back to what it asks for. */
  ws_pmd_offer o;
  assert_int_equal(ws_pmd_parse(sl(t), &o), 1);
  assert_int_equal(o.server_max_window_bits, 14);
  assert_int_equal(o.client_max_window_bits, 8);
}

/* ---- server: choosing among offers ------------------------------------- */

typedef struct {
  const char *headers; /* the Sec-WebSocket-Extensions lines */
  /* server configuration */
  uint8_t snct, cnct, sbits, cbits;
  /* expected: NULL declines */
  const char *response;
  uint8_t r_snct, r_cnct, r_sbits, r_cbits;
} neg_case;

static void negotiate_one(const neg_case *nc) {
  char req[2048];
  snprintf(req, sizeof(req),
           "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n%s\r\n",
           nc->headers);
  ws_header hs[32];
  ws_request r;
  int status = 0;
  const char *why = NULL;
  assert_int_equal(ws_hs_parse_request(&r, hs, 32, (const uint8_t *)req,
                                       strlen(req), &status, &why),
                   0);
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.pmd.enable = 1;
  cfg.pmd.server_no_context_takeover = nc->snct;
  cfg.pmd.client_no_context_takeover = nc->cnct;
  if (nc->sbits) cfg.pmd.server_max_window_bits = nc->sbits;
  if (nc->cbits) cfg.pmd.client_max_window_bits = nc->cbits;
  ws_pmd_params p;
  char t[WS_PMD_TEXT_MAX];
  int rv = ws_pmd_negotiate(&cfg.pmd, &r, &p, t);
  if (!nc->response) {
    if (rv != 0) fail_msg("%s: accepted as '%s', want declined", nc->headers, t);
    return;
  }
  if (rv != 1) fail_msg("%s: declined, want '%s'", nc->headers, nc->response);
  if (strcmp(t, nc->response) != 0)
    fail_msg("%s: answered '%s', want '%s'", nc->headers, t, nc->response);
  assert_int_equal(p.enabled, 1);
  assert_int_equal(p.server_no_context_takeover, nc->r_snct);
  assert_int_equal(p.client_no_context_takeover, nc->r_cnct);
  assert_int_equal(p.server_max_window_bits, nc->r_sbits);
  assert_int_equal(p.client_max_window_bits, nc->r_cbits);
}

#define EXT "Sec-WebSocket-Extensions: "
static void negotiate_table(void **state) {
  (void)state;
  static const neg_case cases[] = {
      /* plain offers */
      {EXT "permessage-deflate\r\n", 0, 0, 0, 0, "permessage-deflate", 0, 0,
       15, 15},
      {EXT "permessage-deflate; client_max_window_bits\r\n", 0, 0, 0, 0,
       "permessage-deflate", 0, 0, 15, 15},
      /* 7.1.2.2: the client's value is a hint we take (and must echo to
       * hold the client to it) */
      {EXT "permessage-deflate; client_max_window_bits=10\r\n", 0, 0, 0, 0,
       "permessage-deflate; client_max_window_bits=10", 0, 0, 15, 10},
      /* 7.1.2.1: the offer limits the server's window */
      {EXT "permessage-deflate; server_max_window_bits=9\r\n", 0, 0, 0, 0,
       "permessage-deflate; server_max_window_bits=9", 0, 0, 9, 15},
      {EXT "permessage-deflate; server_max_window_bits=15\r\n", 0, 0, 0, 0,
       "permessage-deflate; server_max_window_bits=15", 0, 0, 15, 15},
      /* 7.1.1.1: accepted by answering it */
      {EXT "permessage-deflate; server_no_context_takeover\r\n", 0, 0, 0, 0,
       "permessage-deflate; server_no_context_takeover", 1, 0, 15, 15},
      /* 7.1.1.2: taken up when offered */
      {EXT "permessage-deflate; client_no_context_takeover\r\n", 0, 0, 0, 0,
       "permessage-deflate; client_no_context_takeover", 0, 1, 15, 15},
      /* the server's own preferences */
      {EXT "permessage-deflate; client_max_window_bits\r\n", 1, 1, 10, 9,
       "permessage-deflate; server_no_context_takeover; "
       "client_no_context_takeover; server_max_window_bits=10; "
       "client_max_window_bits=9",
       1, 1, 10, 9},
      /* the smaller of the two limits wins, both ways */
      {EXT "permessage-deflate; server_max_window_bits=12; "
           "client_max_window_bits=8\r\n",
       0, 0, 10, 9, "permessage-deflate; server_max_window_bits=10; "
                    "client_max_window_bits=8",
       0, 0, 10, 8},
      {EXT "permessage-deflate; server_max_window_bits=8\r\n", 0, 0, 10, 0,
       "permessage-deflate; server_max_window_bits=8", 0, 0, 8, 15},
      /* 7.1.2.2: a smaller client window needs the client's consent */
      {EXT "permessage-deflate\r\n", 0, 0, 0, 12, NULL, 0, 0, 0, 0},
      /* invalid offers are declined; the next acceptable one is taken */
      {EXT "permessage-deflate; foo, permessage-deflate; "
           "client_max_window_bits=9\r\n",
       0, 0, 0, 0, "permessage-deflate; client_max_window_bits=9", 0, 0, 15,
       9},
      {EXT "permessage-deflate; server_max_window_bits=16\r\n", 0, 0, 0, 0,
       NULL, 0, 0, 0, 0},
      {EXT "permessage-deflate; server_no_context_takeover; "
           "server_no_context_takeover\r\n",
       0, 0, 0, 0, NULL, 0, 0, 0, 0},
      {EXT "permessage-deflate; client_no_context_takeover=1\r\n", 0, 0, 0,
       0, NULL, 0, 0, 0, 0},
      /* the first acceptable offer wins, across several headers */
      {EXT "x-foo, permessage-deflate; server_max_window_bits=11\r\n" EXT
           "permessage-deflate\r\n",
       0, 0, 0, 0, "permessage-deflate; server_max_window_bits=11", 0, 0, 11,
       15},
      {EXT "x-foo\r\n" EXT "permessage-deflate; client_max_window_bits\r\n",
       0, 0, 0, 0, "permessage-deflate", 0, 0, 15, 15},
      /* a quoted comma does not split the list */
      {EXT "x-foo; a=\"1,2\", permessage-deflate\r\n", 0, 0, 0, 0,
       "permessage-deflate", 0, 0, 15, 15},
      /* nothing offered */
      {"", 0, 0, 0, 0, NULL, 0, 0, 0, 0},
      {EXT "x-webkit-deflate-frame\r\n", 0, 0, 0, 0, NULL, 0, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    negotiate_one(&cases[i]);
}

/* Every combination of offer parameters gets an answer that a client
 * which made that offer accepts, with matching parameters. */
static void negotiate_all_combinations_round_trip(void **state) {
  (void)state;
  static const uint8_t bits[] = {0, 8, 9, 12, 15};
  for (unsigned flags = 0; flags < 4; flags++)
    for (size_t sb = 0; sb < 5; sb++)
      for (size_t cb = 0; cb < 5; cb++)
        for (unsigned sflags = 0; sflags < 4; sflags++)
          for (size_t ssb = 0; ssb < 5; ssb++)
            for (size_t scb = 0; scb < 5; scb++) {
              ws_pmd_config cl = {0}, sv = {0};
              cl.enable = sv.enable = 1;
              cl.server_no_context_takeover = flags & 1;
              cl.client_no_context_takeover = (flags >> 1) & 1;
              cl.server_max_window_bits = bits[sb] ? bits[sb] : 15;
              cl.client_max_window_bits = bits[cb] ? bits[cb] : 15;
              sv.server_no_context_takeover = sflags & 1;
              sv.client_no_context_takeover = (sflags >> 1) & 1;
              sv.server_max_window_bits = bits[ssb] ? bits[ssb] : 15;
              sv.client_max_window_bits = bits[scb] ? bits[scb] : 15;
              char offer[WS_PMD_TEXT_MAX], req[512], t[WS_PMD_TEXT_MAX];
              ws_pmd_write_offer(&cl, offer);
              snprintf(req, sizeof(req),
                       "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Extensions: %s\r\n\r\n",
                       offer);
              ws_header hs[16];
              ws_request r;
              int status;
              const char *why;
              assert_int_equal(
                  ws_hs_parse_request(&r, hs, 16, (const uint8_t *)req,
                                      strlen(req), &status, &why),
                  0);
              ws_pmd_params sp, cp;
              /* our client always offers client_max_window_bits, so the
               * server never has to decline */
              assert_int_equal(ws_pmd_negotiate(&sv, &r, &sp, t), 1);
              const char *reason = NULL;
              int rv = ws_pmd_check_response(&cl, sl(t), &cp, &reason);
              if (rv) fail_msg("offer '%s', answer '%s': %s", offer, t, reason);
              assert_memory_equal(&sp, &cp, sizeof(sp));
              /* and what was agreed respects both sides' limits */
              assert_true(sp.server_max_window_bits <= cl.server_max_window_bits);
              assert_true(sp.server_max_window_bits <= sv.server_max_window_bits);
              assert_true(sp.client_max_window_bits <= cl.client_max_window_bits);
              assert_true(sp.client_max_window_bits <= sv.client_max_window_bits);
              assert_true(sp.server_no_context_takeover >=
                          (cl.server_no_context_takeover |
                           sv.server_no_context_takeover));
              assert_true(sp.client_no_context_takeover >=
                          (cl.client_no_context_takeover |
                           sv.client_no_context_takeover));
            }
}

/* ---- client: checking the response (7.1, "Fail the WebSocket
 * Connection" on anything the offer does not allow) ---------------------- */

typedef struct {
  const char *response;
  uint8_t snct, cnct, sbits, cbits; /* the client's offer */
  const char *reason;               /* NULL: accepted */
  uint8_t r_snct, r_cnct, r_sbits, r_cbits;
} resp_case;

static void check_response_table(void **state) {
  (void)state;
  static const resp_case cases[] = {
      {"permessage-deflate", 0, 0, 0, 0, NULL, 0, 0, 15, 15},
      {"permessage-deflate; server_no_context_takeover", 0, 0, 0, 0, NULL, 1,
       0, 15, 15},
      /* the server may ask us to reset, and to use a smaller window */
      {"permessage-deflate; client_no_context_takeover; "
       "client_max_window_bits=9",
       0, 0, 0, 0, NULL, 0, 1, 15, 9},
      /* the server may limit itself unasked */
      {"permessage-deflate; server_max_window_bits=10", 0, 0, 0, 0, NULL, 0,
       0, 10, 15},
      {"permessage-deflate; server_max_window_bits=9", 0, 0, 10, 0, NULL, 0,
       0, 9, 15},
      {"permessage-deflate; server_max_window_bits=10", 0, 0, 10, 0, NULL, 0,
       0, 10, 15},
      /* what we offered we keep to even if not echoed */
      {"permessage-deflate", 0, 1, 0, 11, NULL, 0, 1, 15, 11},
      {"permessage-deflate; client_max_window_bits=8", 0, 0, 0, 11, NULL, 0,
       0, 15, 8},
      {"permessage-deflate; server_no_context_takeover", 1, 0, 0, 0, NULL, 1,
       0, 15, 15},
      /* failures */
      {"permessage-deflate; server_max_window_bits=11", 0, 0, 10, 0,
       "server_max_window_bits above the offer", 0, 0, 0, 0},
      {"permessage-deflate", 0, 0, 10, 0,
       "server_max_window_bits not accepted", 0, 0, 0, 0},
      {"permessage-deflate", 1, 0, 0, 0,
       "server_no_context_takeover not accepted", 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits", 0, 0, 0, 0,
       "client_max_window_bits without a value", 0, 0, 0, 0},
      {"permessage-deflate; client_max_window_bits=12", 0, 0, 0, 11,
       "client_max_window_bits above the offer", 0, 0, 0, 0},
      {"permessage-deflate; foo", 0, 0, 0, 0,
       "invalid permessage-deflate parameters", 0, 0, 0, 0},
      {"permessage-deflate; server_max_window_bits=7", 0, 0, 0, 0,
       "invalid permessage-deflate parameters", 0, 0, 0, 0},
      {"permessage-deflate; client_no_context_takeover; "
       "client_no_context_takeover",
       0, 0, 0, 0, "invalid permessage-deflate parameters", 0, 0, 0, 0},
      {"x-webkit-deflate-frame", 0, 0, 0, 0, "extension not offered", 0, 0,
       0, 0},
      {"permessage-deflate, permessage-deflate", 0, 0, 0, 0,
       "more than one extension accepted", 0, 0, 0, 0},
      {" , ", 0, 0, 0, 0, "empty Sec-WebSocket-Extensions", 0, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const resp_case *rc = &cases[i];
    ws_pmd_config cfg = {0};
    cfg.enable = 1;
    cfg.server_no_context_takeover = rc->snct;
    cfg.client_no_context_takeover = rc->cnct;
    cfg.server_max_window_bits = rc->sbits ? rc->sbits : 15;
    cfg.client_max_window_bits = rc->cbits ? rc->cbits : 15;
    ws_pmd_params p;
    const char *reason = NULL;
    int rv = ws_pmd_check_response(&cfg, sl(rc->response), &p, &reason);
    if (rc->reason) {
      if (rv != WS_ERR_EXTENSION)
        fail_msg("'%s': accepted, want '%s'", rc->response, rc->reason);
      assert_string_equal(reason, rc->reason);
      continue;
    }
    if (rv) fail_msg("'%s': refused (%s)", rc->response, reason);
    assert_int_equal(p.enabled, 1);
    assert_int_equal(p.server_no_context_takeover, rc->r_snct);
    assert_int_equal(p.client_no_context_takeover, rc->r_cnct);
    assert_int_equal(p.server_max_window_bits, rc->r_sbits);
    assert_int_equal(p.client_max_window_bits, rc->r_cbits);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_table),
      cmocka_unit_test(offer_text),
      cmocka_unit_test(negotiate_table),
      cmocka_unit_test(negotiate_all_combinations_round_trip),
      cmocka_unit_test(check_response_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
