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

static void negotiate_one_flags(const neg_case *nc, uint32_t flags) {
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
  int rv = flags ? ws_pmd_negotiate_flags(&cfg.pmd, flags, &r, &p, t)
                 : ws_pmd_negotiate(&cfg.pmd, &r, &p, t);
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

static void negotiate_one(const neg_case *nc) { negotiate_one_flags(nc, 0); }

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

/* WS_CFG_PMD_SYMMETRIC: the client is held to no more than the server
 * uses, window (RFC 7692 7.1.2.2) and context (7.1.1.2), or the offer is
 * declined (7.1.2.1). Each case also gives the answer without the flag,
 * the plain rules of negotiate_table. */
typedef struct {
  neg_case with;         /* with the flag */
  const char *without;   /* the answer without it (NULL: declined) */
} sym_case;

static void negotiate_symmetric_table(void **state) {
  (void)state;
  static const sym_case cases[] = {
      /* nothing asked of us: answered as without the flag */
      {{EXT "permessage-deflate\r\n", 0, 0, 0, 0, "permessage-deflate", 0, 0,
        15, 15},
       "permessage-deflate"},
      {{EXT "permessage-deflate; client_max_window_bits\r\n", 0, 0, 0, 0,
        "permessage-deflate", 0, 0, 15, 15},
       "permessage-deflate"},
      /* the amplifying offer: our window 8, the client's 15 and no way to
       * lower it: declined */
      {{EXT "permessage-deflate; server_max_window_bits=8\r\n", 0, 0, 0, 0,
        NULL, 0, 0, 0, 0},
       "permessage-deflate; server_max_window_bits=8"},
      /* ... and with client_max_window_bits too, unless the client
       * offered 8 itself: zlib cannot compress with an 8-bit window */
      {{EXT "permessage-deflate; server_max_window_bits=8; "
            "client_max_window_bits\r\n",
        0, 0, 0, 0, NULL, 0, 0, 0, 0},
       "permessage-deflate; server_max_window_bits=8"},
      {{EXT "permessage-deflate; server_max_window_bits=8; "
            "client_max_window_bits=9\r\n",
        0, 0, 0, 0, NULL, 0, 0, 0, 0},
       "permessage-deflate; server_max_window_bits=8; "
       "client_max_window_bits=9"},
      {{EXT "permessage-deflate; server_max_window_bits=8; "
            "client_max_window_bits=8\r\n",
        0, 0, 0, 0,
        "permessage-deflate; server_max_window_bits=8; "
        "client_max_window_bits=8",
        0, 0, 8, 8},
       "permessage-deflate; server_max_window_bits=8; "
       "client_max_window_bits=8"},
      /* from 9 on the client is held to our window */
      {{EXT "permessage-deflate; server_max_window_bits=9; "
            "client_max_window_bits\r\n",
        0, 0, 0, 0,
        "permessage-deflate; server_max_window_bits=9; "
        "client_max_window_bits=9",
        0, 0, 9, 9},
       "permessage-deflate; server_max_window_bits=9"},
      /* the edge of the decline: server window 14 (below 15), 15 (at) */
      {{EXT "permessage-deflate; server_max_window_bits=14\r\n", 0, 0, 0, 0,
        NULL, 0, 0, 0, 0},
       "permessage-deflate; server_max_window_bits=14"},
      {{EXT "permessage-deflate; server_max_window_bits=15\r\n", 0, 0, 0, 0,
        "permessage-deflate; server_max_window_bits=15", 0, 0, 15, 15},
       "permessage-deflate; server_max_window_bits=15"},
      /* the client's window one below, at and one above ours (12) */
      {{EXT "permessage-deflate; server_max_window_bits=12; "
            "client_max_window_bits=11\r\n",
        0, 0, 0, 0,
        "permessage-deflate; server_max_window_bits=12; "
        "client_max_window_bits=11",
        0, 0, 12, 11},
       "permessage-deflate; server_max_window_bits=12; "
       "client_max_window_bits=11"},
      {{EXT "permessage-deflate; server_max_window_bits=12; "
            "client_max_window_bits=12\r\n",
        0, 0, 0, 0,
        "permessage-deflate; server_max_window_bits=12; "
        "client_max_window_bits=12",
        0, 0, 12, 12},
       "permessage-deflate; server_max_window_bits=12; "
       "client_max_window_bits=12"},
      {{EXT "permessage-deflate; server_max_window_bits=12; "
            "client_max_window_bits=13\r\n",
        0, 0, 0, 0,
        "permessage-deflate; server_max_window_bits=12; "
        "client_max_window_bits=12",
        0, 0, 12, 12},
       "permessage-deflate; server_max_window_bits=12; "
       "client_max_window_bits=13"},
      /* our own smaller window holds the client too; without
       * client_max_window_bits the offer cannot be taken */
      {{EXT "permessage-deflate; client_max_window_bits=12\r\n", 0, 0, 10,
        0, "permessage-deflate; server_max_window_bits=10; "
           "client_max_window_bits=10",
        0, 0, 10, 10},
       "permessage-deflate; server_max_window_bits=10; "
       "client_max_window_bits=12"},
      {{EXT "permessage-deflate\r\n", 0, 0, 10, 0, NULL, 0, 0, 0, 0},
       "permessage-deflate; server_max_window_bits=10"},
      /* declined offers fall through to the next acceptable one */
      {{EXT "permessage-deflate; server_max_window_bits=8, "
            "permessage-deflate\r\n",
        0, 0, 0, 0, "permessage-deflate", 0, 0, 15, 15},
       "permessage-deflate; server_max_window_bits=8"},
      /* 7.1.1.2: when we reset our context, the client resets its own */
      {{EXT "permessage-deflate; server_no_context_takeover\r\n", 0, 0, 0, 0,
        "permessage-deflate; server_no_context_takeover; "
        "client_no_context_takeover",
        1, 1, 15, 15},
       "permessage-deflate; server_no_context_takeover"},
      {{EXT "permessage-deflate; client_max_window_bits\r\n", 1, 0, 0, 0,
        "permessage-deflate; server_no_context_takeover; "
        "client_no_context_takeover",
        1, 1, 15, 15},
       "permessage-deflate; server_no_context_takeover"},
      /* the client resetting alone is no risk: unchanged */
      {{EXT "permessage-deflate; client_no_context_takeover\r\n", 0, 0, 0, 0,
        "permessage-deflate; client_no_context_takeover", 0, 1, 15, 15},
       "permessage-deflate; client_no_context_takeover"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    negotiate_one_flags(&cases[i].with, WS_CFG_PMD_SYMMETRIC);
    /* other bits do not matter; no flag: the plain answer */
    negotiate_one_flags(&cases[i].with, WS_CFG_PMD_SYMMETRIC |
                                            WS_CFG_NO_AUTO_PONG |
                                            WS_CFG_KEEP_BUFFERS);
    neg_case plain = cases[i].with;
    plain.response = cases[i].without;
    ws_pmd_offer o;
    if (plain.response) {
      assert_int_equal(ws_pmd_parse(sl(plain.response), &o), 1);
      plain.r_snct = o.server_no_context_takeover;
      plain.r_cnct = o.client_no_context_takeover;
      plain.r_sbits = o.server_max_window_bits ? o.server_max_window_bits
                                               : 15;
      plain.r_cbits = o.client_max_window_bits ? o.client_max_window_bits
                                               : 15;
    }
    negotiate_one_flags(&plain, 0);
  }
}

/* Every combination of offer parameters gets an answer that a client
 * which made that offer accepts, with matching parameters (server
 * |flags| |sym|: 0 or WS_CFG_PMD_SYMMETRIC). */
static void round_trip_all(uint32_t sym) {
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
               * server never has to decline; but WS_CFG_PMD_SYMMETRIC
               * does not lower a client to 8 (zlib has no such window) */
              int sb8 = WS_MIN(cl.server_max_window_bits,
                               sv.server_max_window_bits) == 8;
              int declined = sym && sb8 && sv.client_max_window_bits > 8 &&
                             cl.client_max_window_bits != 8;
              assert_int_equal(ws_pmd_negotiate_flags(&sv, sym, &r, &sp, t),
                               !declined);
              if (declined) continue;
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
              /* WS_CFG_PMD_SYMMETRIC: the client never keeps more */
              if (sym) {
                assert_true(sp.client_max_window_bits <=
                            sp.server_max_window_bits);
                assert_true(sp.client_no_context_takeover >=
                            sp.server_no_context_takeover);
              }
            }
}

static void negotiate_all_combinations_round_trip(void **state) {
  (void)state;
  round_trip_all(0);
  round_trip_all(WS_CFG_PMD_SYMMETRIC);
}

/* ---- through a connection: ws_config.flags reaches the negotiation ---- */

/* The 101 a server connection with |flags| answers to an offer |ext|. */
static void conn_answer(uint32_t flags, const char *ext, const char *want) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.pmd.enable = 1;
  cfg.flags = flags;
  ws_conn *c = NULL;
  assert_int_equal(ws_conn_new(&c, &cfg, NULL), 0);
  char req[512];
  snprintf(req, sizeof(req),
           "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Extensions: %s\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n",
           ext);
  size_t n = 0;
  assert_int_equal(ws_conn_feed(c, (uint8_t *)req, strlen(req), &n), 0);
  assert_int_equal(n, strlen(req));
  ws_event ev;
  assert_int_equal(ws_conn_next_event(c, &ev), 0);
  assert_int_equal(ev.type, WS_EV_REQUEST);
  assert_int_equal(ws_conn_accept(c, NULL), 0);
  ws_iovec iov[4];
  size_t k = ws_conn_out_peek(c, iov, 4);
  char got[512];
  size_t len = 0;
  for (size_t i = 0; i < k; i++) {
    assert_true(len + iov[i].len < sizeof(got));
    memcpy(got + len, iov[i].base, iov[i].len);
    len += iov[i].len;
  }
  got[len] = 0;
  assert_string_equal(got, want);
  ws_conn_del(c);
}

#define RESP101_HEAD                                                       \
  "HTTP/1.1 101 Switching Protocols\r\n"                                    \
  "Upgrade: websocket\r\n"                                                 \
  "Connection: Upgrade\r\n"                                                \
  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

/* RFC 7692 7.1.2.1: the server declines the offer of a window it will
 * not use; 7.1.2.2: or holds the client to it; both as exact bytes. */
static void conn_symmetric_answers(void **state) {
  (void)state;
  const char *amp = "permessage-deflate; server_max_window_bits=8";
  conn_answer(0, amp,
              RESP101_HEAD "Sec-WebSocket-Extensions: permessage-deflate; "
                           "server_max_window_bits=8\r\n\r\n");
  conn_answer(WS_CFG_PMD_SYMMETRIC, amp, RESP101_HEAD "\r\n");
  conn_answer(WS_CFG_PMD_SYMMETRIC,
              "permessage-deflate; server_max_window_bits=9; "
              "client_max_window_bits",
              RESP101_HEAD "Sec-WebSocket-Extensions: permessage-deflate; "
                           "server_max_window_bits=9; "
                           "client_max_window_bits=9\r\n\r\n");
  conn_answer(WS_CFG_PMD_SYMMETRIC,
              "permessage-deflate; client_max_window_bits",
              RESP101_HEAD "Sec-WebSocket-Extensions: "
                           "permessage-deflate\r\n\r\n");
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
      cmocka_unit_test(negotiate_symmetric_table),
      cmocka_unit_test(conn_symmetric_answers),
      cmocka_unit_test(negotiate_all_combinations_round_trip),
      cmocka_unit_test(check_response_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
