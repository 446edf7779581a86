/*
 * The mbedTLS adapter (lib/adapters/ws_mbedtls.c), with certificates made
 * by the test with mbedTLS's own API (nothing checked in):
 *  - the sans-IO session, a client and a server in memory: records go
 *    across one byte at a time; verification failures name their reason;
 *    a WebSocket runs over it end to end;
 *  - ws_tls_transport() in the loop over 127.0.0.1: wss:// echo with
 *    permessage-deflate up to 1 MiB; a wrong name and an unknown CA reach
 *    on_close as WS_TLS_ERR_VERIFY with the reason; a plaintext client on
 *    the TLS port is dropped at once while others are served; a client
 *    waiting for a silent server's handshake does not spin.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <ws/ws_loop.h>
#include <ws/ws_mbedtls.h>

/* ---- certificates ------------------------------------------------------- */

typedef struct {
  char key[1024];
  char crt[2048];
} pem_pair;

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static void gen_key(mbedtls_pk_context *pk, char *pem, size_t cap) {
  mbedtls_pk_init(pk);
  assert_int_equal(
      mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
  assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
                                       mbedtls_pk_ec(*pk),
                                       mbedtls_ctr_drbg_random, &drbg),
                   0);
  assert_int_equal(mbedtls_pk_write_key_pem(pk, (unsigned char *)pem, cap), 0);
}

/* subjectAltName DNS:localhost, IP:127.0.0.1 (DER; mbedTLS 2.28 has no
 * writer for it). */
/* clang-format off */
static const unsigned char san_localhost[] = {
    0x30, 0x11,                                             /* SEQUENCE */
    0x82, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', /* dNSName */
    0x87, 0x04, 127, 0, 0, 1};                              /* iPAddress */
/* clang-format on */

/* A certificate for |subject| signed by |issuer_key| as |issuer| (itself
 * when NULL: a CA), valid from 2024 to 2099, with |san| if not NULL. */
static void gen_cert(pem_pair *out, mbedtls_pk_context *key,
                     const char *subject, mbedtls_pk_context *issuer_key,
                     const char *issuer, int is_ca, int serial,
                     const unsigned char *san, size_t sanlen) {
  mbedtls_x509write_cert w;
  mbedtls_mpi sn;
  mbedtls_x509write_crt_init(&w);
  mbedtls_mpi_init(&sn);
  assert_int_equal(mbedtls_mpi_lset(&sn, serial), 0);
  mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
  assert_int_equal(mbedtls_x509write_crt_set_serial(&w, &sn), 0);
  assert_int_equal(mbedtls_x509write_crt_set_validity(&w, "20240101000000",
                                                      "20991231235959"),
                   0);
  assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, subject), 0);
  assert_int_equal(
      mbedtls_x509write_crt_set_issuer_name(&w, issuer ? issuer : subject), 0);
  mbedtls_x509write_crt_set_subject_key(&w, key);
  mbedtls_x509write_crt_set_issuer_key(&w, issuer_key ? issuer_key : key);
  mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
  assert_int_equal(mbedtls_x509write_crt_set_basic_constraints(&w, is_ca, -1),
                   0);
  if (san)
    assert_int_equal(mbedtls_x509write_crt_set_extension(
                         &w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                         MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, san,
                         sanlen),
                     0);
  assert_int_equal(mbedtls_x509write_crt_pem(&w, (unsigned char *)out->crt,
                                             sizeof(out->crt),
                                             mbedtls_ctr_drbg_random, &drbg),
                   0);
  mbedtls_x509write_crt_free(&w);
  mbedtls_mpi_free(&sn);
}

static pem_pair ca, other_ca, srv, wrong_host, cn_only;

static int setup(void **state) {
  (void)state;
  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0))
    return -1;
  mbedtls_pk_context kca, kother, ksrv, kwrong, kcn;
  gen_key(&kca, ca.key, sizeof(ca.key));
  gen_cert(&ca, &kca, "CN=libws test CA", NULL, NULL, 1, 1, NULL, 0);
  gen_key(&kother, other_ca.key, sizeof(other_ca.key));
  gen_cert(&other_ca, &kother, "CN=libws other CA", NULL, NULL, 1, 2, NULL, 0);
  gen_key(&ksrv, srv.key, sizeof(srv.key));
  gen_cert(&srv, &ksrv, "CN=libws test server", &kca, "CN=libws test CA", 0, 3,
           san_localhost, sizeof(san_localhost));
  gen_key(&kwrong, wrong_host.key, sizeof(wrong_host.key));
  gen_cert(&wrong_host, &kwrong, "CN=wrong.example", &kca, "CN=libws test CA",
           0, 4, NULL, 0);
  /* a name in the CN only: mbedTLS takes it when there is no SAN */
  gen_key(&kcn, cn_only.key, sizeof(cn_only.key));
  gen_cert(&cn_only, &kcn, "CN=localhost", &kca, "CN=libws test CA", 0, 5, NULL,
           0);
  mbedtls_pk_free(&kca);
  mbedtls_pk_free(&kother);
  mbedtls_pk_free(&ksrv);
  mbedtls_pk_free(&kwrong);
  mbedtls_pk_free(&kcn);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_entropy_free(&entropy);
  return 0;
}

/* ---- a client and a server in memory ------------------------------------- */

static ws_tls_ctx *server_ctx(const pem_pair *id) {
  ws_tls_params p;
  memset(&p, 0, sizeof(p));
  p.role = WS_ROLE_SERVER;
  p.cert_pem = id->crt;
  p.cert_pem_len = strlen(id->crt);
  p.key_pem = id->key;
  p.key_pem_len = strlen(id->key);
  ws_tls_ctx *c = NULL;
  char err[256];
  int rv = ws_tls_ctx_new(&c, &p, err, sizeof(err));
  if (rv) fail_msg("server ctx: %d %s", rv, err);
  return c;
}

static ws_tls_ctx *client_ctx(const pem_pair *trust, uint32_t flags) {
  ws_tls_params p;
  memset(&p, 0, sizeof(p));
  p.role = WS_ROLE_CLIENT;
  p.flags = flags;
  if (trust) {
    p.ca_pem = trust->crt;
    p.ca_pem_len = strlen(trust->crt);
  }
  ws_tls_ctx *c = NULL;
  char err[256];
  int rv = ws_tls_ctx_new(&c, &p, err, sizeof(err));
  if (rv) fail_msg("client ctx: %d %s", rv, err);
  return c;
}

/* Moves at most |max| bytes (0: all) of |from|'s records to |to|.
 * Returns the bytes moved. */
static size_t move(ws_tls *from, ws_tls *to, size_t max) {
  size_t n, room, moved = 0;
  for (;;) {
    const uint8_t *p = ws_tls_send_buf(from, &n);
    if (n == 0 || (max && moved == max)) return moved;
    uint8_t *dst = ws_tls_recv_buf(to, &room);
    if (max && n > max - moved) n = max - moved;
    if (n > room) n = room;
    if (n == 0) return moved;
    memcpy(dst, p, n);
    ws_tls_recv_ack(to, n);
    ws_tls_send_ack(from, n);
    moved += n;
  }
}

/* Runs both sides until neither moves; |step| bytes at a time (0: all).
 * Returns the last ws_tls_read() results through |prc| / |prs|. */
static void pump(ws_tls *c, ws_tls *s, size_t step, int *prc, int *prs) {
  for (int rounds = 0; rounds < 1000000; rounds++) {
    uint8_t buf[64];
    size_t got;
    *prc = ws_tls_read(c, buf, sizeof(buf), &got);
    *prs = ws_tls_read(s, buf, sizeof(buf), &got);
    size_t m = move(c, s, step) + move(s, c, step);
    if (m == 0) return;
  }
  fail_msg("no end");
}

static void handshake_byte_at_a_time(void **state) {
  (void)state;
  ws_tls_ctx *sc = server_ctx(&srv), *cc = client_ctx(&ca, 0);
  for (size_t step = 0; step <= 1; step++) {
    ws_tls *s, *c;
    assert_int_equal(ws_tls_new(&s, sc, NULL), 0);
    assert_int_equal(ws_tls_new(&c, cc, "localhost"), 0);
    int rc, rs;
    pump(c, s, step, &rc, &rs);
    assert_int_equal(rc, WS_ERR_WOULDBLOCK);
    assert_int_equal(rs, WS_ERR_WOULDBLOCK);
    assert_true(ws_tls_handshake_done(c));
    assert_true(ws_tls_handshake_done(s));
    assert_string_equal(ws_tls_alpn(c), "http/1.1");
    assert_string_equal(ws_tls_alpn(s), "http/1.1");
    assert_string_equal(ws_tls_error(c), "");
    /* data both ways, every record split to single bytes */
    size_t w;
    assert_int_equal(
        ws_tls_write(c, (const uint8_t *)"GET / HTTP/1.1\r\n", 16, &w), 0);
    assert_int_equal(w, 16);
    move(c, s, step);
    while (move(c, s, step)) {
    }
    uint8_t buf[64];
    size_t got = 0, r;
    while (got < 16) {
      int rv = ws_tls_read(s, buf + got, sizeof(buf) - got, &r);
      if (rv == WS_ERR_WOULDBLOCK) {
        assert_true(move(c, s, step) > 0);
        continue;
      }
      assert_int_equal(rv, 0);
      got += r;
    }
    assert_memory_equal(buf, "GET / HTTP/1.1\r\n", 16);
    /* close_notify ends the peer's reads cleanly */
    assert_int_equal(ws_tls_close(s), 0);
    while (move(s, c, step)) {
    }
    int rv;
    do {
      rv = ws_tls_read(c, buf, sizeof(buf), &r);
    } while (rv == WS_ERR_WOULDBLOCK && move(s, c, step));
    assert_int_equal(rv, WS_ERR_EOF);
    ws_tls_del(c);
    ws_tls_del(s);
  }
  ws_tls_ctx_del(sc);
  ws_tls_ctx_del(cc);
}

/* Large writes are taken in pieces up to the send buffer's mark, and all
 * of it arrives. */
static void bulk_transfer_and_backpressure(void **state) {
  (void)state;
  ws_tls_ctx *sc = server_ctx(&srv), *cc = client_ctx(&ca, 0);
  ws_tls *s, *c;
  assert_int_equal(ws_tls_new(&s, sc, NULL), 0);
  assert_int_equal(ws_tls_new(&c, cc, "localhost"), 0);
  int rc, rs;
  pump(c, s, 0, &rc, &rs);
  size_t total = 1u << 20, sent = 0, got = 0;
  uint8_t *data = malloc(total), *back = malloc(total);
  for (size_t i = 0; i < total; i++)
    data[i] = (uint8_t)(i * 7 + i / 1000);
  int blocked = 0;
  while (got < total) {
    /* write until it pushes back, then let the records go */
    while (sent < total) {
      size_t w;
      int rv = ws_tls_write(c, data + sent, total - sent, &w);
      if (rv == WS_ERR_WOULDBLOCK) {
        assert_int_equal(w, 0);
        blocked++;
        break;
      }
      assert_int_equal(rv, 0);
      assert_true(w < total); /* never all at once */
      sent += w;
    }
    move(c, s, 0);
    size_t r;
    while (ws_tls_read(s, back + got, total - got, &r) == 0)
      got += r;
  }
  assert_true(blocked > 10);
  assert_memory_equal(data, back, total);
  free(data);
  free(back);
  ws_tls_del(c);
  ws_tls_del(s);
  ws_tls_ctx_del(sc);
  ws_tls_ctx_del(cc);
}

/* The client refuses a certificate for another name or from an unknown
 * CA, and says which. */
static void verification_failures(void **state) {
  (void)state;
  struct {
    const pem_pair *id, *trust;
    const char *name, *why;
    uint32_t flags;
    int want;
  } cases[] = {
      {&wrong_host, &ca, "localhost", "Common Name", 0, WS_TLS_ERR_VERIFY},
      {&srv, &other_ca, "localhost", "not correctly signed", 0,
       WS_TLS_ERR_VERIFY},
      /* IP addresses are checked against the iPAddress entries */
      {&srv, &ca, "127.0.0.2", "the name checked was \"127.0.0.2\"", 0,
       WS_TLS_ERR_VERIFY},
      {&srv, &ca, "::1", "Common Name", 0, WS_TLS_ERR_VERIFY},
      {&cn_only, &ca, "127.0.0.1", "Common Name", 0, WS_TLS_ERR_VERIFY},
      {&srv, &ca, "127.0.0.1", "", 0, 0},
      {&srv, &ca, "localhost", "", 0, 0},
      {&cn_only, &ca, "localhost", "", 0, 0},
      /* with a SAN, the CN does not count (RFC 6125 6.4.4) */
      {&srv, &ca, "libws test server", "Common Name", 0, WS_TLS_ERR_VERIFY},
      /* the loudly named option accepts anything */
      {&wrong_host, NULL, "localhost", "", WS_TLS_INSECURE_NO_VERIFY, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ws_tls_ctx *sc = server_ctx(cases[i].id);
    ws_tls_ctx *cc = client_ctx(cases[i].trust, cases[i].flags);
    ws_tls *s, *c;
    assert_int_equal(ws_tls_new(&s, sc, NULL), 0);
    assert_int_equal(ws_tls_new(&c, cc, cases[i].name), 0);
    int rc, rs;
    pump(c, s, 0, &rc, &rs);
    if (cases[i].want) {
      assert_int_equal(rc, cases[i].want);
      if (!strstr(ws_tls_error(c), cases[i].why))
        fail_msg("case %zu: '%s' does not say '%s'", i, ws_tls_error(c),
                 cases[i].why);
      assert_non_null(
          strstr(ws_tls_error(c), "certificate verification failed"));
      /* sticky */
      size_t w;
      assert_int_equal(ws_tls_write(c, (const uint8_t *)"x", 1, &w),
                       cases[i].want);
    } else {
      if (rc != WS_ERR_WOULDBLOCK)
        fail_msg("case %zu: %d %s", i, rc, ws_tls_error(c));
      assert_true(ws_tls_handshake_done(c));
    }
    ws_tls_del(c);
    ws_tls_del(s);
    ws_tls_ctx_del(sc);
    ws_tls_ctx_del(cc);
  }
}

/* A plaintext client on the TLS port: the server fails at once instead of
 * waiting for more. An end of the socket mid-handshake fails too. */
static void plaintext_and_eof_during_handshake(void **state) {
  (void)state;
  ws_tls_ctx *sc = server_ctx(&srv);
  ws_tls *s;
  assert_int_equal(ws_tls_new(&s, sc, NULL), 0);
  static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t room;
  uint8_t *p = ws_tls_recv_buf(s, &room);
  memcpy(p, req, sizeof(req) - 1);
  ws_tls_recv_ack(s, sizeof(req) - 1);
  uint8_t buf[16];
  size_t r;
  assert_int_equal(ws_tls_read(s, buf, sizeof(buf), &r), WS_TLS_ERR_HANDSHAKE);
  assert_non_null(strstr(ws_tls_error(s), "TLS handshake failed"));
  ws_tls_del(s);

  assert_int_equal(ws_tls_new(&s, sc, NULL), 0);
  ws_tls_recv_eof(s);
  assert_int_equal(ws_tls_read(s, buf, sizeof(buf), &r), WS_TLS_ERR_HANDSHAKE);
  assert_string_equal(ws_tls_error(s),
                      "connection closed during the TLS handshake");
  ws_tls_del(s);
  ws_tls_ctx_del(sc);
}

static void setup_errors(void **state) {
  (void)state;
  ws_tls_params p;
  ws_tls_ctx *c = NULL;
  char err[256];
  memset(&p, 0, sizeof(p));
  p.role = WS_ROLE_CLIENT;
  assert_int_equal(ws_tls_ctx_new(&c, &p, err, sizeof(err)),
                   WS_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(err, "needs a CA"));
  p.role = WS_ROLE_SERVER;
  assert_int_equal(ws_tls_ctx_new(&c, &p, err, sizeof(err)),
                   WS_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(err, "certificate and its key"));
  p.cert_file = "/nonexistent/cert.pem";
  p.key_file = "/nonexistent/key.pem";
  assert_int_equal(ws_tls_ctx_new(&c, &p, err, sizeof(err)), WS_TLS_ERR_SETUP);
  assert_non_null(strstr(err, "certificate file /nonexistent/cert.pem"));
  memset(&p, 0, sizeof(p));
  p.role = WS_ROLE_SERVER;
  p.cert_pem = srv.crt;
  p.cert_pem_len = strlen(srv.crt);
  p.key_pem =
      "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
  p.key_pem_len = strlen(p.key_pem);
  assert_int_equal(ws_tls_ctx_new(&c, &p, err, sizeof(err)), WS_TLS_ERR_SETUP);
  assert_non_null(strstr(err, "key PEM"));
  assert_null(c);
  /* a client needs a name to check, unless told not to check */
  ws_tls_ctx *cc = client_ctx(&ca, 0);
  ws_tls *t;
  assert_int_equal(ws_tls_new(&t, cc, NULL), WS_ERR_INVALID_ARGUMENT);
  ws_tls_ctx_del(cc);
  assert_non_null(strstr(ws_tls_strerror(WS_TLS_ERR_VERIFY), "verification"));
}

/* ---- a WebSocket over TLS, in memory ------------------------------------- */

static int rnd(uint8_t *buf, size_t len, void *ud) {
  uint32_t *s = ud;
  for (size_t i = 0; i < len; i++) {
    *s = *s * 1103515245u + 12345u;
    buf[i] = (uint8_t)(*s >> 16);
  }
  return 0;
}

/* core output -> TLS write, TLS read -> core feed, one byte of records at
 * a time between the two TLS sessions. */
static void ws_side(ws_conn *w, ws_tls *t, int *popen, char *got, size_t *pgot,
                    int echo) {
  ws_iovec v;
  while (ws_conn_out_peek(w, &v, 1) == 1) {
    size_t n;
    int rv = ws_tls_write(t, v.base, v.len, &n);
    if (rv == WS_ERR_WOULDBLOCK) break;
    assert_int_equal(rv, 0);
    ws_conn_out_consume(w, n);
  }
  uint8_t buf[256];
  size_t r;
  while (ws_tls_read(t, buf, sizeof(buf), &r) == 0) {
    size_t off = 0;
    while (off < r) {
      size_t n = 0;
      ws_conn_feed(w, buf + off, r - off, &n);
      off += n;
      ws_event ev;
      while (ws_conn_next_event(w, &ev) == 0) {
        if (ev.type == WS_EV_REQUEST)
          assert_int_equal(ws_conn_accept(w, NULL), 0);
        if (ev.type == WS_EV_OPEN) *popen = 1;
        if (ev.type == WS_EV_TEXT) {
          memcpy(got + *pgot, ev.data.base, ev.data.len);
          *pgot += ev.data.len;
          if (echo && (ev.flags & WS_EVF_FINAL))
            ws_conn_send(w, WS_OP_TEXT, ev.data.base, ev.data.len, 0);
        }
      }
    }
  }
}

static void websocket_over_tls(void **state) {
  (void)state;
  ws_tls_ctx *sc = server_ctx(&srv), *cc = client_ctx(&ca, 0);
  ws_tls *st, *ct;
  assert_int_equal(ws_tls_new(&st, sc, NULL), 0);
  assert_int_equal(ws_tls_new(&ct, cc, "localhost"), 0);
  ws_config scfg, ccfg;
  ws_config_default(&scfg, WS_ROLE_SERVER);
  ws_config_default(&ccfg, WS_ROLE_CLIENT);
  uint32_t seed = 1;
  ccfg.rand = rnd;
  ccfg.rand_user_data = &seed;
  scfg.pmd.enable = ccfg.pmd.enable = 1;
  ws_conn *sw, *cw;
  assert_int_equal(ws_conn_new(&sw, &scfg, NULL), 0);
  assert_int_equal(ws_conn_new(&cw, &ccfg, NULL), 0);
  ws_client_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "localhost";
  assert_int_equal(ws_conn_connect(cw, &cp), 0);
  int sopen = 0, copen = 0, sent = 0;
  char sgot[256], cgot[256];
  size_t sn = 0, cn = 0;
  for (int i = 0; i < 200000 && cn < 39; i++) {
    ws_side(cw, ct, &copen, cgot, &cn, 0);
    ws_side(sw, st, &sopen, sgot, &sn, 1);
    if (copen && !sent) {
      assert_int_equal(ws_conn_send(cw, WS_OP_TEXT,
                                    "hello over TLS, compressed or not", 33, 0),
                       0);
      ws_conn_send(cw, WS_OP_TEXT, "second", 6, 0);
      sent = 1;
    }
    move(ct, st, 1);
    move(st, ct, 1);
  }
  assert_true(sopen && copen);
  assert_int_equal(sn, 39);
  assert_int_equal(cn, 39);
  assert_memory_equal(cgot, "hello over TLS, compressed or notsecond", 39);
  ws_pmd_params pp;
  ws_conn_pmd(cw, &pp);
  assert_int_equal(pp.enabled, 1);
  ws_conn_del(sw);
  ws_conn_del(cw);
  ws_tls_del(st);
  ws_tls_del(ct);
  ws_tls_ctx_del(sc);
  ws_tls_ctx_del(cc);
}

/* ---- wss:// over the loop ------------------------------------------------ */

typedef struct lrec {
  int opened, closed, msgs, error, bad;
  uint16_t code;
  size_t bytes;
  char terr[400];
} lrec;

static lrec lsrv, lcli;
static uint8_t *pattern; /* what the client sends, 1 MiB */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int l_open(ws_loop_conn *c, void *ud) {
  (void)c;
  ((lrec *)ud)->opened++;
  return 0;
}

static int l_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  lrec *r = ud;
  r->msgs++;
  r->bytes += ev->data.len;
  if (r == &lsrv) { /* echo */
    int rv = ws_loop_send(c, WS_OP_BINARY, ev->data.base, ev->data.len, 0);
    return rv == WS_ERR_WOULDBLOCK ? WS_LOOP_PAUSE : 0;
  }
  if (ev->data.len && memcmp(ev->data.base, pattern, ev->data.len) != 0)
    r->bad++;
  return 0;
}

static int l_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  lrec *r = ud;
  (void)c;
  r->closed++;
  r->code = in->code;
  r->error = in->error;
  snprintf(r->terr, sizeof(r->terr), "%s",
           in->transport_error ? in->transport_error : "");
  return 0;
}

static ws_loop *tls_loop(void) {
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = l_open;
  lc.callbacks.on_message = l_message;
  lc.callbacks.on_close = l_close;
  ws_loop *l = NULL;
  assert_int_equal(ws_loop_new(&l, &lc), 0);
  memset(&lsrv, 0, sizeof(lsrv));
  memset(&lcli, 0, sizeof(lcli));
  return l;
}

static ws_config big_cfg(ws_role role) {
  ws_config cfg;
  ws_config_default(&cfg, role);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = 4u << 20;
  cfg.pmd.enable = 1;
  return cfg;
}

static uint16_t tls_listen(ws_loop *l, const ws_loop_transport *tp) {
  static ws_config cfg;
  cfg = big_cfg(WS_ROLE_SERVER);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = &cfg;
  lp.user_data = &lsrv;
  lp.transport = tp;
  uint16_t port = 0;
  assert_int_equal(ws_loop_listen(l, &lp, &port), 0);
  return port;
}

static ws_loop_conn *tls_connect(ws_loop *l, const char *host, uint16_t port,
                                 const ws_loop_transport *tp) {
  ws_config cfg = big_cfg(WS_ROLE_CLIENT);
  ws_loop_connect_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = host;
  cp.port = port;
  cp.config = &cfg;
  cp.user_data = &lcli;
  cp.transport = tp;
  ws_loop_conn *c = NULL;
  assert_int_equal(ws_loop_connect(l, &cp, &c), 0);
  return c;
}

/* Runs |l| until |*flag| reaches |want| or 10 s pass. */
static void run_until(ws_loop *l, const int *flag, int want) {
  uint64_t end = now_ms() + 10000;
  while (*flag < want && now_ms() < end)
    ws_loop_run_once(l, 10);
  assert_int_equal(*flag, want);
}

static void wss_echo_over_the_loop(void **state) {
  (void)state;
  ws_tls_ctx *sc = server_ctx(&srv), *cc = client_ctx(&ca, 0);
  ws_loop_transport stp, ctp;
  ws_tls_transport(&stp, sc);
  ws_tls_transport(&ctp, cc);
  ws_loop *l = tls_loop();
  uint16_t port = tls_listen(l, &stp);
  /* an IP address: checked against the certificate's iPAddress entry */
  ws_loop_conn *c = tls_connect(l, "127.0.0.1", port, &ctp);
  run_until(l, &lcli.opened, 1);
  ws_pmd_params pp;
  ws_conn_pmd(ws_loop_conn_ws(c), &pp);
  assert_int_equal(pp.enabled, 1);
  static const size_t sizes[] = {0, 1, 125, 126, 16383, 16384, 65536, 1u << 20};
  size_t total = 0;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    assert_int_equal(ws_loop_send(c, WS_OP_BINARY, pattern, sizes[i], 0), 0);
    total += sizes[i];
  }
  run_until(l, &lcli.msgs, 8);
  assert_int_equal(lcli.bytes, total);
  assert_int_equal(lcli.bad, 0);
  assert_int_equal(ws_loop_close(c, 1000, "done", 4), 0);
  run_until(l, &lsrv.closed, 1);
  run_until(l, &lcli.closed, 1);
  assert_int_equal(lsrv.code, 1000);
  assert_int_equal(lsrv.error, 0);
  assert_int_equal(lcli.code, 1000);
  assert_int_equal(lcli.error, 0);
  ws_loop_del(l);
  ws_tls_ctx_del(sc);
  ws_tls_ctx_del(cc);
}

/* The client's verification failures reach on_close with the reason; the
 * server never sees a request. */
static void wss_verification_failures_reach_on_close(void **state) {
  (void)state;
  struct {
    const pem_pair *id, *trust;
    const char *host, *why;
  } cases[] = {
      /* the certificate is for wrong.example */
      {&wrong_host, &ca, "127.0.0.1",
       "Common Name (CN) does not match with the expected CN (the name "
       "checked was \"127.0.0.1\")"},
      {&srv, &other_ca, "localhost", "not correctly signed"},
  };
  for (size_t i = 0; i < 2; i++) {
    ws_tls_ctx *sc = server_ctx(cases[i].id);
    ws_loop_transport stp;
    ws_tls_transport(&stp, sc);
    ws_tls_ctx *cc = client_ctx(cases[i].trust, 0);
    ws_loop_transport ctp;
    ws_tls_transport(&ctp, cc);
    ws_loop *l = tls_loop();
    uint16_t port = tls_listen(l, &stp);
    tls_connect(l, cases[i].host, port, &ctp);
    run_until(l, &lcli.closed, 1);
    assert_int_equal(lcli.opened, 0);
    assert_int_equal(lcli.error, WS_TLS_ERR_VERIFY);
    if (!strstr(lcli.terr, cases[i].why) ||
        !strstr(lcli.terr, "certificate verification failed"))
      fail_msg("case %zu: '%s' does not say '%s'", i, lcli.terr, cases[i].why);
    assert_string_equal(ws_tls_strerror(lcli.error),
                        "TLS certificate verification failed");
    for (int k = 0; k < 10; k++)
      ws_loop_run_once(l, 5);
    assert_int_equal(lsrv.opened + lsrv.closed, 0);
    assert_int_equal(ws_loop_conn_count(l), 0); /* the server dropped it */
    ws_loop_del(l);
    ws_tls_ctx_del(cc);
    ws_tls_ctx_del(sc);
  }
}

static int raw_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

/* Reads |fd| while running |l| until it ends; returns the bytes read, or
 * -1 if it did not end within |ms|. */
static long drain_until_eof(ws_loop *l, int fd, int ms) {
  uint64_t end = now_ms() + (uint64_t)ms;
  long got = 0;
  while (now_ms() < end) {
    ws_loop_run_once(l, 5);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1) continue;
    char buf[512];
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) return got; /* EOF or reset */
    got += r;
  }
  return -1;
}

/* A plaintext WebSocket client on the TLS port is dropped at once (it is
 * not a TLS record), and the server goes on serving TLS clients. */
static void plaintext_client_is_dropped(void **state) {
  (void)state;
  ws_tls_ctx *sc = server_ctx(&srv), *cc = client_ctx(&ca, 0);
  ws_loop_transport stp, ctp;
  ws_tls_transport(&stp, sc);
  ws_tls_transport(&ctp, cc);
  ws_loop *l = tls_loop();
  uint16_t port = tls_listen(l, &stp);
  int fd = raw_connect(port);
  static const char req[] =
      "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
  uint64_t t0 = now_ms();
  long got = drain_until_eof(l, fd, 2000);
  assert_true(got >= 0);
  assert_true(got < 64); /* at most a TLS alert, never an HTTP answer */
  assert_true(now_ms() - t0 < 1000);
  close(fd);
  assert_int_equal(lsrv.opened + lsrv.closed, 0);
  /* the next TLS client is served */
  ws_loop_conn *c = tls_connect(l, "localhost", port, &ctp);
  run_until(l, &lcli.opened, 1);
  assert_int_equal(ws_loop_send(c, WS_OP_BINARY, pattern, 5, 0), 0);
  run_until(l, &lcli.msgs, 1);
  assert_int_equal(ws_loop_conn_count(l), 2);
  ws_loop_del(l);
  ws_tls_ctx_del(sc);
  ws_tls_ctx_del(cc);
}

/* A wss:// client whose server accepts TCP and then says nothing: while it
 * waits for the handshake the loop sleeps (the opening request waits in
 * the transport, not as write interest), and the end of the socket is
 * reported as a failed TLS handshake. */
static void handshake_wait_does_not_spin(void **state) {
  (void)state;
  ws_tls_ctx *cc = client_ctx(&ca, 0);
  ws_loop_transport ctp;
  ws_tls_transport(&ctp, cc);
  ws_loop *l = tls_loop();
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(ls, 4), 0);
  assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
  tls_connect(l, "localhost", ntohs(sa.sin_port), &ctp);
  int peer = -1;
  for (int i = 0; i < 200 && peer < 0; i++) {
    ws_loop_run_once(l, 5);
    struct pollfd p = {ls, POLLIN, 0};
    if (poll(&p, 1, 0) == 1) peer = accept(ls, NULL, NULL);
  }
  assert_true(peer >= 0);
  char hello[2048];
  ssize_t n = 0;
  for (int i = 0; i < 200 && n <= 0; i++) {
    ws_loop_run_once(l, 5);
    n = recv(peer, hello, sizeof(hello), MSG_DONTWAIT);
  }
  assert_true(n > 5);
  assert_int_equal(hello[0], 22); /* a TLS handshake record: ClientHello */
  for (int i = 0; i < 5; i++)
    ws_loop_run_once(l, 0);
  uint64_t t0 = now_ms();
  for (int i = 0; i < 4; i++)
    ws_loop_run_once(l, 30);
  assert_true(now_ms() - t0 >= 110);
  close(peer);
  run_until(l, &lcli.closed, 1);
  assert_int_equal(lcli.error, WS_TLS_ERR_HANDSHAKE);
  assert_string_equal(lcli.terr, "connection closed during the TLS handshake");
  close(ls);
  ws_loop_del(l);
  ws_tls_ctx_del(cc);
}

/* ---- cipher suites (h-budget) ---------------------------------------------
 * RFC 9325 4.2: TLS 1.2 with ECDHE and AEAD only by default; CBC and
 * CCM_8 suites only when listed in ws_tls_params.ciphersuites. */

static ws_tls_ctx *suite_ctx(ws_role role, const int *suites, int *prv) {
  ws_tls_params p;
  memset(&p, 0, sizeof(p));
  p.role = role;
  if (role == WS_ROLE_SERVER) {
    p.cert_pem = srv.crt;
    p.cert_pem_len = strlen(srv.crt);
    p.key_pem = srv.key;
    p.key_pem_len = strlen(srv.key);
  } else {
    p.ca_pem = ca.crt;
    p.ca_pem_len = strlen(ca.crt);
  }
  p.ciphersuites = suites;
  ws_tls_ctx *c = NULL;
  *prv = ws_tls_ctx_new(&c, &p, NULL, 0);
  return c;
}

/* 1 if a client and a server with these suites complete a handshake. */
static int suites_agree(const int *client, const int *server) {
  int rv;
  ws_tls_ctx *cc = suite_ctx(WS_ROLE_CLIENT, client, &rv);
  assert_int_equal(rv, 0);
  ws_tls_ctx *sc = suite_ctx(WS_ROLE_SERVER, server, &rv);
  assert_int_equal(rv, 0);
  ws_tls *s, *c;
  assert_int_equal(ws_tls_new(&s, sc, NULL), 0);
  assert_int_equal(ws_tls_new(&c, cc, "localhost"), 0);
  int rc, rs;
  pump(c, s, 0, &rc, &rs);
  int ok = ws_tls_handshake_done(c) && ws_tls_handshake_done(s);
  if (!ok) assert_true(rc < 0 && rc != WS_ERR_WOULDBLOCK);
  ws_tls_del(c);
  ws_tls_del(s);
  ws_tls_ctx_del(cc);
  ws_tls_ctx_del(sc);
  return ok;
}

static void aead_cipher_suites_by_default(void **state) {
  (void)state;
  static const int cbc[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, 0};
  static const int cbc_sha1[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
                                 0};
  static const int ccm8[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, 0};
  static const int gcm[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0};
  static const int chacha[] = {
      MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0};
  assert_true(suites_agree(NULL, NULL));
  assert_true(suites_agree(gcm, NULL));
  assert_true(suites_agree(chacha, NULL));
  /* a client offering only CBC or CCM_8 is refused by default ... */
  assert_false(suites_agree(cbc, NULL));
  assert_false(suites_agree(cbc_sha1, NULL));
  assert_false(suites_agree(ccm8, NULL));
  /* ... and served by a server that lists it */
  assert_true(suites_agree(cbc, cbc));
  /* a list: empty, 31 entries (the most), 32 */
  int rv, many[33];
  static const int none[] = {0};
  assert_null(suite_ctx(WS_ROLE_SERVER, none, &rv));
  assert_int_equal(rv, WS_ERR_INVALID_ARGUMENT);
  for (int i = 0; i < 32; i++)
    many[i] = gcm[0];
  many[32] = 0;
  assert_null(suite_ctx(WS_ROLE_SERVER, many, &rv));
  assert_int_equal(rv, WS_ERR_INVALID_ARGUMENT);
  many[31] = 0;
  ws_tls_ctx *c = suite_ctx(WS_ROLE_SERVER, many, &rv);
  assert_int_equal(rv, 0);
  ws_tls_ctx_del(c);
}

int main(void) {
  pattern = malloc(1u << 20);
  if (!pattern) return 1;
  for (size_t i = 0; i < (1u << 20); i++)
    pattern[i] = (uint8_t)(i % 251 + (i >> 12)); /* compresses a little */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(handshake_byte_at_a_time),
      cmocka_unit_test(bulk_transfer_and_backpressure),
      cmocka_unit_test(verification_failures),
      cmocka_unit_test(plaintext_and_eof_during_handshake),
      cmocka_unit_test(setup_errors),
      cmocka_unit_test(websocket_over_tls),
      cmocka_unit_test(wss_echo_over_the_loop),
      cmocka_unit_test(wss_verification_failures_reach_on_close),
      cmocka_unit_test(plaintext_client_is_dropped),
      cmocka_unit_test(handshake_wait_does_not_spin),
      cmocka_unit_test(aead_cipher_suites_by_default),
  };
  int rv = cmocka_run_group_tests(tests, setup, teardown);
  free(pattern);
  return rv;
}
