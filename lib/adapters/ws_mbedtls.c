/*
 * TLS over mbedTLS, driven through memory buffers (see <ws/ws_mbedtls.h>).
 * SPDX-License-Identifier: MIT
 *
 * mbedTLS reads and writes through our BIO callbacks: bio_recv() takes
 * socket bytes from |rbuf|, bio_send() appends records to |sbuf|. The
 * send buffer always takes a whole record, so mbedTLS never has to retry
 * a partial write; ws_tls_write() holds plaintext back instead once
 * SEND_HIGH bytes wait for the socket.
 */
/* A feature-test macro: POSIX has the application define it. */
#define _POSIX_C_SOURCE 200809L /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp) */
#include <ws/ws_mbedtls.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/asn1.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#  define WS_MBEDTLS3 1
#  if defined(MBEDTLS_PSA_CRYPTO_C)
#    include <psa/crypto.h> /* 3.x: TLS 1.3 needs psa_crypto_init() */
#  endif
#endif
#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0 /* macOS: the loop sets SO_NOSIGPIPE */
#endif

#define RBUF_SIZE 16384u /* socket bytes waiting for mbedTLS */
#define SEND_HIGH 32768u /* ciphertext that stops ws_tls_write() */
#define ERR_MAX 400
#define NAME_CAP 256 /* DNS names end at 253 bytes */

struct ws_tls_ctx {
  ws_role role;
  uint32_t flags;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  mbedtls_x509_crt cert;
  mbedtls_pk_context key;
  mbedtls_ssl_config conf;
  const char *alpn[8]; /* pointers into alpn_text */
  char alpn_text[256];
  int suites[32]; /* ws_tls_params.ciphersuites, 0-terminated */
};

/* The default cipher suites: ECDHE with AEAD only (ws_tls_params). */
static const int aead_suites[] = {
#ifdef MBEDTLS_SSL_PROTO_TLS1_3
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
#endif
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0};

struct ws_tls {
  ws_tls_ctx *ctx;
  mbedtls_ssl_context ssl;
  uint8_t rbuf[RBUF_SIZE];
  size_t rpos, rlen; /* unread socket bytes are rbuf[rpos, rlen) */
  uint8_t *sbuf;     /* records for the socket */
  size_t spos, slen, scap;
  int eof; /* the socket ended */
  int hs_done;
  int failed; /* sticky WS_TLS_ERR_* or WS_ERR_EOF */
  char err[ERR_MAX];
  char name[NAME_CAP]; /* client: the name checked, for the error text */
  uint8_t ip[16];      /* ... when it is an IP address: its bytes */
  size_t iplen;        /* 4 or 16; 0 for a DNS name */
};

/* ---- errors -------------------------------------------------------------- */

static void set_err(char *dst, size_t cap, const char *what, int mret) {
  char reason[128] = "";
  if (!dst || cap == 0) return;
  if (mret) mbedtls_strerror(mret, reason, sizeof(reason));
  (void)snprintf(dst, cap, "%s%s%s", what, mret ? ": " : "", reason);
}

const char *ws_tls_strerror(int err) {
  switch (err) {
  case WS_TLS_ERR_SETUP: return "TLS setup failed (certificate, key or CA)";
  case WS_TLS_ERR_VERIFY: return "TLS certificate verification failed";
  case WS_TLS_ERR_HANDSHAKE: return "TLS handshake failed";
  case WS_TLS_ERR_PROTOCOL: return "TLS protocol error";
  default: return ws_strerror(err);
  }
}

/* ---- shared configuration ------------------------------------------------ */

static int parse_key_file(ws_tls_ctx *c, const char *path, const char *pw) {
#ifdef WS_MBEDTLS3
  return mbedtls_pk_parse_keyfile(&c->key, path, pw, mbedtls_ctr_drbg_random,
                                  &c->drbg);
#else
  return mbedtls_pk_parse_keyfile(&c->key, path, pw);
#endif
}

/* mbedTLS parses PEM only with the terminating NUL counted. */
static int with_nul(const void *pem, size_t len, unsigned char **pout,
                    size_t *poutlen) {
  unsigned char *p = malloc(len + 1);
  if (!p) return -1;
  memcpy(p, pem, len);
  p[len] = 0;
  *pout = p;
  *poutlen = len + 1;
  return 0;
}

static int parse_key_pem(ws_tls_ctx *c, const void *pem, size_t len,
                         const char *pw) {
  unsigned char *buf;
  size_t n;
  if (with_nul(pem, len, &buf, &n)) return MBEDTLS_ERR_PK_ALLOC_FAILED;
  size_t pwlen = pw ? strlen(pw) : 0;
#ifdef WS_MBEDTLS3
  int rv = mbedtls_pk_parse_key(&c->key, buf, n, (const unsigned char *)pw,
                                pwlen, mbedtls_ctr_drbg_random, &c->drbg);
#else
  int rv =
      mbedtls_pk_parse_key(&c->key, buf, n, (const unsigned char *)pw, pwlen);
#endif
  mbedtls_platform_zeroize(buf, n);
  free(buf);
  return rv;
}

static int parse_crt_pem(mbedtls_x509_crt *crt, const void *pem, size_t len) {
  unsigned char *buf;
  size_t n;
  if (with_nul(pem, len, &buf, &n)) return MBEDTLS_ERR_X509_ALLOC_FAILED;
  int rv = mbedtls_x509_crt_parse(crt, buf, n);
  free(buf);
  return rv;
}

void ws_tls_ctx_del(ws_tls_ctx *c) {
  if (!c) return;
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_pk_free(&c->key);
  mbedtls_x509_crt_free(&c->cert);
  mbedtls_x509_crt_free(&c->ca);
  mbedtls_ctr_drbg_free(&c->drbg);
  mbedtls_entropy_free(&c->entropy);
  free(c);
}

/* What a CA parser's |rv| means: 0 if anything was loaded, else the
 * mbedTLS error (or "invalid format" when every certificate failed). */
static int ca_result(const ws_tls_ctx *c, int rv) {
  if (rv == 0 || (rv > 0 && c->ca.version != 0)) return 0;
  return rv < 0 ? rv : MBEDTLS_ERR_X509_INVALID_FORMAT;
}

/* Records |what| (and the mbedTLS error |mret|) in |err|; the setup steps
 * below return this, and ws_tls_ctx_new() then frees the context. */
static int setup_fail(char *err, size_t errlen, const char *what, int mret) {
  set_err(err, errlen, what, mret);
  return WS_TLS_ERR_SETUP;
}

/* The parameters' combination: a server has its own certificate, a
 * client something to verify the server with (or the explicit opt-out),
 * and a certificate comes with its key. */
static int check_params(const ws_tls_params *p, char *err, size_t errlen) {
  int have_ca = p->ca_file || p->ca_path || p->ca_pem;
  int have_cert = p->cert_file || p->cert_pem;
  int have_key = p->key_file || p->key_pem;
  if (have_cert != have_key || (p->role == WS_ROLE_SERVER && !have_cert) ||
      (p->role == WS_ROLE_CLIENT && !have_ca &&
       !(p->flags & WS_TLS_INSECURE_NO_VERIFY))) {
    set_err(err, errlen,
            p->role == WS_ROLE_SERVER
                ? "a TLS server needs a certificate and its key"
            : have_cert != have_key
                ? "a client certificate needs its key"
                : "a TLS client needs a CA to verify the server with "
                  "(or WS_TLS_INSECURE_NO_VERIFY)",
            0);
    return WS_ERR_INVALID_ARGUMENT;
  }
  return 0;
}

/* The random source: the CTR-DRBG seeded from the platform's entropy. */
static int seed_random(ws_tls_ctx *c, char *err, size_t errlen) {
  static const unsigned char pers[] = "libws";
  int rv = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                 pers, sizeof(pers) - 1);
  return rv ? setup_fail(err, errlen, "seeding the random generator", rv) : 0;
}

/* The trust anchors: CA file, directory and PEM, any of them.
 * A bundle (Debian's ca-certificates.crt) may hold a few certificates
 * mbedTLS cannot parse: the parsers then return how many failed, and
 * the rest is used. Only nothing at all is an error. */
static int load_trust_anchors(ws_tls_ctx *c, const ws_tls_params *p, char *err,
                              size_t errlen) {
  char what[160];
  int rv;
  if (p->ca_file &&
      (rv = ca_result(c, mbedtls_x509_crt_parse_file(&c->ca, p->ca_file)))) {
    (void)snprintf(what, sizeof(what), "CA file %s", p->ca_file);
    return setup_fail(err, errlen, what, rv);
  }
  if (p->ca_path &&
      (rv = ca_result(c, mbedtls_x509_crt_parse_path(&c->ca, p->ca_path)))) {
    (void)snprintf(what, sizeof(what), "CA directory %s", p->ca_path);
    return setup_fail(err, errlen, what, rv);
  }
  if (p->ca_pem &&
      (rv = ca_result(c, parse_crt_pem(&c->ca, p->ca_pem, p->ca_pem_len))))
    return setup_fail(err, errlen, "CA PEM", rv);
  return 0;
}

/* The own certificate (file or PEM) and its private key (file or PEM). */
static int load_own_cert(ws_tls_ctx *c, const ws_tls_params *p, char *err,
                         size_t errlen) {
  char what[160];
  int rv;
  if (p->cert_file &&
      (rv = mbedtls_x509_crt_parse_file(&c->cert, p->cert_file))) {
    (void)snprintf(what, sizeof(what), "certificate file %s", p->cert_file);
    return setup_fail(err, errlen, what,
                      rv < 0 ? rv : MBEDTLS_ERR_X509_INVALID_FORMAT);
  }
  if (p->cert_pem &&
      (rv = parse_crt_pem(&c->cert, p->cert_pem, p->cert_pem_len)))
    return setup_fail(err, errlen, "certificate PEM",
                      rv < 0 ? rv : MBEDTLS_ERR_X509_INVALID_FORMAT);
  if (p->key_file && (rv = parse_key_file(c, p->key_file, p->key_password))) {
    (void)snprintf(what, sizeof(what), "key file %s", p->key_file);
    return setup_fail(err, errlen, what, rv);
  }
  if (p->key_pem &&
      (rv = parse_key_pem(c, p->key_pem, p->key_pem_len, p->key_password)))
    return setup_fail(err, errlen, "key PEM", rv);
  return 0;
}

/* The cipher suites: the caller's (copied: mbedTLS keeps the pointer),
 * else the AEAD default. */
static int setup_ciphersuites(ws_tls_ctx *c, const ws_tls_params *p, char *err,
                              size_t errlen) {
  if (!p->ciphersuites) {
    mbedtls_ssl_conf_ciphersuites(&c->conf, aead_suites);
    return 0;
  }
  size_t i = 0;
  for (; p->ciphersuites[i]; i++) {
    if (i + 1 >= sizeof(c->suites) / sizeof(c->suites[0])) {
      set_err(err, errlen, "too many cipher suites", 0);
      return WS_ERR_INVALID_ARGUMENT;
    }
    c->suites[i] = p->ciphersuites[i];
  }
  if (i == 0) {
    set_err(err, errlen, "an empty list of cipher suites", 0);
    return WS_ERR_INVALID_ARGUMENT;
  }
  c->suites[i] = 0;
  mbedtls_ssl_conf_ciphersuites(&c->conf, c->suites);
  return 0;
}

/* The protocol: role defaults, TLS 1.2 at least, the random source, the
 * cipher suites, no renegotiation, the verification mode, the CA chain
 * and the own certificate. */
static int setup_protocol(ws_tls_ctx *c, const ws_tls_params *p, char *err,
                          size_t errlen) {
  int have_ca = p->ca_file || p->ca_path || p->ca_pem;
  int have_cert = p->cert_file || p->cert_pem;
  int rv = mbedtls_ssl_config_defaults(
      &c->conf,
      p->role == WS_ROLE_SERVER ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
      MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rv) return setup_fail(err, errlen, "TLS defaults", rv);
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
  mbedtls_ssl_conf_min_tls_version(&c->conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
#endif
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  if ((rv = setup_ciphersuites(c, p, err, errlen))) return rv;
#if defined(MBEDTLS_SSL_RENEGOTIATION)
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
  if (p->role == WS_ROLE_CLIENT)
    mbedtls_ssl_conf_authmode(&c->conf, (p->flags & WS_TLS_INSECURE_NO_VERIFY)
                                            ? MBEDTLS_SSL_VERIFY_NONE
                                            : MBEDTLS_SSL_VERIFY_REQUIRED);
  else
    mbedtls_ssl_conf_authmode(&c->conf, have_ca ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                : MBEDTLS_SSL_VERIFY_NONE);
  if (have_ca) mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
  if (have_cert &&
      (rv = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)))
    return setup_fail(err, errlen, "certificate and key", rv);
  return 0;
}

/* ALPN: copied, mbedTLS keeps the pointers. */
static int setup_alpn(ws_tls_ctx *c, const ws_tls_params *p, char *err,
                      size_t errlen) {
  static const char *const http11[] = {"http/1.1", NULL};
  const char *const *alpn = p->alpn ? p->alpn : http11;
  size_t used = 0, k = 0;
  for (; alpn[k]; k++) {
    size_t n = strlen(alpn[k]);
    if (k + 1 >= sizeof(c->alpn) / sizeof(c->alpn[0]) || n == 0 || n > 255 ||
        used + n + 1 > sizeof(c->alpn_text)) {
      set_err(err, errlen, "too many or too long ALPN protocols", 0);
      return WS_ERR_INVALID_ARGUMENT;
    }
    memcpy(c->alpn_text + used, alpn[k], n + 1);
    c->alpn[k] = c->alpn_text + used;
    used += n + 1;
  }
  c->alpn[k] = NULL;
  int rv;
  if (k && (rv = mbedtls_ssl_conf_alpn_protocols(&c->conf, c->alpn)))
    return setup_fail(err, errlen, "ALPN", rv);
  return 0;
}

int ws_tls_ctx_new(ws_tls_ctx **pctx, const ws_tls_params *p, char *err,
                   size_t errlen) {
  int rv;
  if (err && errlen) err[0] = 0;
  if (!pctx || !p || (p->role != WS_ROLE_SERVER && p->role != WS_ROLE_CLIENT))
    return WS_ERR_INVALID_ARGUMENT;
  *pctx = NULL;
  if ((rv = check_params(p, err, errlen))) return rv;
#if defined(WS_MBEDTLS3) && defined(MBEDTLS_PSA_CRYPTO_C)
  if (psa_crypto_init() != PSA_SUCCESS) {
    set_err(err, errlen, "psa_crypto_init failed", 0);
    return WS_TLS_ERR_SETUP;
  }
#endif
  ws_tls_ctx *c = calloc(1, sizeof(*c));
  if (!c) return WS_ERR_NOMEM;
  c->role = p->role;
  c->flags = p->flags;
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  mbedtls_x509_crt_init(&c->ca);
  mbedtls_x509_crt_init(&c->cert);
  mbedtls_pk_init(&c->key);
  mbedtls_ssl_config_init(&c->conf);
  if ((rv = seed_random(c, err, errlen)) ||
      (rv = load_trust_anchors(c, p, err, errlen)) ||
      (rv = load_own_cert(c, p, err, errlen)) ||
      (rv = setup_protocol(c, p, err, errlen)) ||
      (rv = setup_alpn(c, p, err, errlen))) {
    ws_tls_ctx_del(c);
    return rv;
  }
  *pctx = c;
  return 0;
}

/* ---- memory BIO ---------------------------------------------------------- */

static int bio_recv(void *arg, unsigned char *buf, size_t len) {
  ws_tls *t = arg;
  size_t n = t->rlen - t->rpos;
  if (n == 0) return t->eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
  if (n > len) n = len;
  memcpy(buf, t->rbuf + t->rpos, n);
  t->rpos += n;
  if (t->rpos == t->rlen) t->rpos = t->rlen = 0;
  return (int)n;
}

static int bio_send(void *arg, const unsigned char *buf, size_t len) {
  ws_tls *t = arg;
  if (t->spos > 0 && t->spos == t->slen) t->spos = t->slen = 0;
  if (t->scap - t->slen < len) {
    if (t->spos > 0) { /* compact */
      memmove(t->sbuf, t->sbuf + t->spos, t->slen - t->spos);
      t->slen -= t->spos;
      t->spos = 0;
    }
    if (t->scap - t->slen < len) {
      size_t cap = t->scap ? t->scap : 4096;
      while (cap - t->slen < len)
        cap *= 2;
      uint8_t *p = realloc(t->sbuf, cap);
      if (!p) return MBEDTLS_ERR_SSL_ALLOC_FAILED;
      t->sbuf = p;
      t->scap = cap;
    }
  }
  memcpy(t->sbuf + t->slen, buf, len);
  t->slen += len;
  return (int)len;
}

/* ---- sessions ------------------------------------------------------------ */

/* An IP address as the server's name: mbedTLS 2.28 checks names against
 * dNSName entries only, and RFC 6066 forbids an IP address as SNI. So the
 * session sends no SNI and checks the certificate's iPAddress entries
 * itself (RFC 6125 section 6.2, RFC 5280 section 4.2.1.6), as part of
 * verification: a mismatch is reported like a wrong DNS name. */
static int verify_ip(void *arg, mbedtls_x509_crt *crt, int depth,
                     uint32_t *flags) {
  const ws_tls *t = arg;
  if (depth != 0) return 0; /* the server's own certificate only */
  const uint8_t tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7; /* iPAddress */
  for (const mbedtls_x509_sequence *n = &crt->subject_alt_names; n && n->buf.p;
       n = n->next) {
    if (n->buf.tag == tag && n->buf.len == t->iplen &&
        memcmp(n->buf.p, t->ip, t->iplen) == 0)
      return 0;
  }
  *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

int ws_tls_new(ws_tls **pt, ws_tls_ctx *ctx, const char *server_name) {
  if (!pt || !ctx) return WS_ERR_INVALID_ARGUMENT;
  *pt = NULL;
  if (ctx->role == WS_ROLE_CLIENT && !server_name &&
      !(ctx->flags & WS_TLS_INSECURE_NO_VERIFY))
    return WS_ERR_INVALID_ARGUMENT;
  if (server_name && strlen(server_name) >= NAME_CAP)
    return WS_ERR_INVALID_ARGUMENT;
  ws_tls *t = calloc(1, sizeof(*t));
  if (!t) return WS_ERR_NOMEM;
  t->ctx = ctx;
  if (server_name) memcpy(t->name, server_name, strlen(server_name) + 1);
  mbedtls_ssl_init(&t->ssl);
  int rv = mbedtls_ssl_setup(&t->ssl, &ctx->conf);
  if (rv == 0 && ctx->role == WS_ROLE_CLIENT && server_name) {
    if (inet_pton(AF_INET, server_name, t->ip) == 1)
      t->iplen = 4;
    else if (inet_pton(AF_INET6, server_name, t->ip) == 1)
      t->iplen = 16;
    if (t->iplen) {
      /* NULL on purpose: no SNI, and (mbedTLS 3.6.3 and later) no
       * "verification without a host name" error. */
      rv = mbedtls_ssl_set_hostname(&t->ssl, NULL);
      mbedtls_ssl_set_verify(&t->ssl, verify_ip, t);
    } else {
      rv = mbedtls_ssl_set_hostname(&t->ssl, server_name); /* SNI + check */
    }
  }
  if (rv) {
    mbedtls_ssl_free(&t->ssl);
    free(t);
    return rv == MBEDTLS_ERR_SSL_ALLOC_FAILED ? WS_ERR_NOMEM : WS_TLS_ERR_SETUP;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  *pt = t;
  return 0;
}

void ws_tls_del(ws_tls *t) {
  if (!t) return;
  mbedtls_ssl_free(&t->ssl);
  free(t->sbuf);
  free(t);
}

uint8_t *ws_tls_recv_buf(ws_tls *t, size_t *plen) {
  if (t->rpos > 0) { /* keep the room at the end */
    memmove(t->rbuf, t->rbuf + t->rpos, t->rlen - t->rpos);
    t->rlen -= t->rpos;
    t->rpos = 0;
  }
  *plen = RBUF_SIZE - t->rlen;
  return t->rbuf + t->rlen;
}

void ws_tls_recv_ack(ws_tls *t, size_t n) {
  if (n > RBUF_SIZE - t->rlen) n = RBUF_SIZE - t->rlen;
  t->rlen += n;
}

void ws_tls_recv_eof(ws_tls *t) { t->eof = 1; }

const uint8_t *ws_tls_send_buf(const ws_tls *t, size_t *plen) {
  *plen = t->slen - t->spos;
  return *plen ? t->sbuf + t->spos : NULL;
}

void ws_tls_send_ack(ws_tls *t, size_t n) {
  if (n > t->slen - t->spos) n = t->slen - t->spos;
  t->spos += n;
  if (t->spos == t->slen) {
    t->spos = t->slen = 0;
    if (t->scap > (size_t)4 * SEND_HIGH) { /* give back what a burst took */
      free(t->sbuf);
      t->sbuf = NULL;
      t->scap = 0;
    }
  }
}

/* Records a failure and returns its code. */
static int fail(ws_tls *t, int code, int mret) {
  if (t->failed) return t->failed;
  if (mret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    char info[256] = "";
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
    char *nl = strchr(info, '\n');
    if (nl) *nl = 0; /* the first reason is the one to show */
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) /* say which name */
      (void)snprintf(t->err, sizeof(t->err),
               "certificate verification failed: %s (the name checked was "
               "\"%s\")",
               info, t->name);
    else
      (void)snprintf(t->err, sizeof(t->err), "certificate verification failed: %s",
               info[0] ? info : "unknown reason");
    code = WS_TLS_ERR_VERIFY;
  } else if (code == WS_TLS_ERR_HANDSHAKE && mret == 0) {
    (void)snprintf(t->err, sizeof(t->err),
             "connection closed during the TLS handshake");
  } else {
    set_err(t->err, sizeof(t->err),
            code == WS_TLS_ERR_HANDSHAKE ? "TLS handshake failed" : "TLS error",
            mret);
  }
  t->failed = code;
  return code;
}

static int want(int r) {
  return r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE;
}

/* Advances the handshake. Returns 0 once done, WS_ERR_WOULDBLOCK, or a
 * failure. */
static int handshake(ws_tls *t) {
  if (t->hs_done) return 0;
  if (t->failed) return t->failed;
  int r = mbedtls_ssl_handshake(&t->ssl);
  if (r == 0) {
    t->hs_done = 1;
    return 0;
  }
  if (want(r)) {
    if (t->eof && t->rpos == t->rlen) return fail(t, WS_TLS_ERR_HANDSHAKE, 0);
    return WS_ERR_WOULDBLOCK;
  }
  if (r == MBEDTLS_ERR_SSL_CONN_EOF) return fail(t, WS_TLS_ERR_HANDSHAKE, 0);
  return fail(t, WS_TLS_ERR_HANDSHAKE, r);
}

int ws_tls_read(ws_tls *t, uint8_t *buf, size_t cap, size_t *pnread) {
  *pnread = 0;
  if (t->failed) return t->failed;
  int rv = handshake(t);
  if (rv) return rv;
  if (cap == 0) return WS_ERR_WOULDBLOCK;
  for (;;) {
    int r = mbedtls_ssl_read(&t->ssl, buf, cap);
    if (r > 0) {
      *pnread = (size_t)r;
      return 0;
    }
    if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      t->failed = WS_ERR_EOF;
      return WS_ERR_EOF;
    }
    if (want(r)) {
      /* A bare end of the socket after the handshake: the WebSocket
       * close handshake tells a clean end, so report EOF. */
      if (t->eof && t->rpos == t->rlen) {
        t->failed = WS_ERR_EOF;
        return WS_ERR_EOF;
      }
      return WS_ERR_WOULDBLOCK;
    }
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
    if (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue;
#endif
    return fail(t, WS_TLS_ERR_PROTOCOL, r);
  }
}

int ws_tls_write(ws_tls *t, const uint8_t *data, size_t len,
                 size_t *pnwritten) {
  *pnwritten = 0;
  if (t->failed) return t->failed;
  int rv = handshake(t);
  if (rv) return rv;
  size_t done = 0;
  while (done < len && t->slen - t->spos < SEND_HIGH) {
    int r = mbedtls_ssl_write(&t->ssl, data + done, len - done);
    if (r > 0) {
      done += (size_t)r;
      continue;
    }
    if (want(r)) break;
    return fail(t, WS_TLS_ERR_PROTOCOL, r);
  }
  *pnwritten = done;
  return done || len == 0 ? 0 : WS_ERR_WOULDBLOCK;
}

int ws_tls_close(ws_tls *t) {
  if (t->failed && t->failed != WS_ERR_EOF) return t->failed;
  int r = mbedtls_ssl_close_notify(&t->ssl);
  if (r == 0 || want(r)) return 0;
  return fail(t, WS_TLS_ERR_PROTOCOL, r);
}

int ws_tls_handshake_done(const ws_tls *t) { return t->hs_done; }

const char *ws_tls_error(const ws_tls *t) { return t->err; }

const char *ws_tls_alpn(const ws_tls *t) {
  return mbedtls_ssl_get_alpn_protocol(&t->ssl);
}

/* ---- the event-loop transport -------------------------------------------- */

/* Plaintext the core queued before the handshake finished (the client's
 * opening request) waits here, so the loop does not keep write interest
 * while TLS waits for the peer. */
#define EARLY_MAX 65536u

typedef struct tp_sess {
  ws_tls *tls;
  uint8_t *early;
  size_t early_len;
} tp_sess;

static int tp_attach(void *ud, int fd, ws_role role, const char *server_name,
                     void **pctx) {
  ws_tls_ctx *ctx = ud;
  (void)fd;
  if (role != ctx->role) return WS_ERR_INVALID_ARGUMENT;
  tp_sess *s = calloc(1, sizeof(*s));
  if (!s) return WS_ERR_NOMEM;
  int rv = ws_tls_new(&s->tls, ctx, server_name);
  if (rv) {
    free(s);
    return rv;
  }
  *pctx = s;
  return 0;
}

static void tp_detach(void *arg) {
  tp_sess *s = arg;
  if (!s) return;
  ws_tls_del(s->tls);
  free(s->early);
  free(s);
}

/* Writes ciphertext to the socket until it would block. */
static int tp_send(tp_sess *s, int fd) {
  for (;;) {
    size_t n;
    const uint8_t *p = ws_tls_send_buf(s->tls, &n);
    if (n == 0) return 0;
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      ws_tls_send_ack(s->tls, (size_t)w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return WS_ERR_WOULDBLOCK;
    return WS_LOOP_ERR_IO;
  }
}

/* Moves early plaintext into TLS once the handshake is done. */
static int tp_early(tp_sess *s) {
  if (!s->early_len || !ws_tls_handshake_done(s->tls)) return 0;
  size_t w;
  int rv = ws_tls_write(s->tls, s->early, s->early_len, &w);
  if (rv && rv != WS_ERR_WOULDBLOCK) return rv;
  memmove(s->early, s->early + w, s->early_len - w);
  s->early_len -= w;
  return 0;
}

/* Reads socket bytes into the session. Returns 0 when some came (or the
 * socket ended), WS_ERR_WOULDBLOCK, or WS_LOOP_ERR_IO. */
static int tp_recv(tp_sess *s, int fd) {
  size_t room;
  uint8_t *p = ws_tls_recv_buf(s->tls, &room);
  /* mbedTLS asks for more (WANT_READ) only once it has taken every byte
   * held here, so a full buffer now is a bug: fail rather than spin. */
  if (room == 0) return WS_ERR_INTERNAL;
  for (;;) {
    ssize_t r = recv(fd, p, room, 0);
    if (r > 0) {
      ws_tls_recv_ack(s->tls, (size_t)r);
      return 0;
    }
    if (r == 0) {
      ws_tls_recv_eof(s->tls);
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WS_ERR_WOULDBLOCK;
    return WS_LOOP_ERR_IO;
  }
}

/* A failure of the session: what mbedTLS queued for the peer (a fatal
 * alert, which tells it why) goes out first, best effort. */
static int tp_failed(tp_sess *s, int fd, int rv) {
  if (rv != WS_LOOP_ERR_IO) (void)tp_send(s, fd);
  return rv;
}

static int tp_read(void *arg, int fd, uint8_t *buf, size_t cap,
                   size_t *pnread) {
  tp_sess *s = arg;
  *pnread = 0;
  for (;;) {
    int rv = ws_tls_read(s->tls, buf, cap, pnread);
    int e = tp_early(s);
    if (e) return tp_failed(s, fd, e);
    if (rv == WS_ERR_EOF || rv == 0) return rv;
    if (rv != WS_ERR_WOULDBLOCK) return tp_failed(s, fd, rv);
    /* The handshake may have a flight to send before more can come. */
    e = tp_send(s, fd);
    if (e == WS_LOOP_ERR_IO) return e;
    e = tp_recv(s, fd);
    if (e) return e;
  }
}

static int tp_write(void *arg, int fd, const ws_iovec *iov, size_t iovcnt,
                    size_t *pnwritten) {
  tp_sess *s = arg;
  size_t total = 0;
  *pnwritten = 0;
  int rv = tp_send(s, fd);
  if (rv == WS_LOOP_ERR_IO) return rv;
  if (!ws_tls_handshake_done(s->tls)) {
    /* Keep the plaintext for later (the core has nothing but its opening
     * request before the handshake, far below EARLY_MAX), and drive the
     * handshake: the client's first call sends its ClientHello here. */
    for (size_t i = 0; i < iovcnt; i++) {
      size_t n = iov[i].len;
      if (n > EARLY_MAX - s->early_len) n = EARLY_MAX - s->early_len;
      if (n == 0) break;
      if (!s->early) {
        s->early = malloc(EARLY_MAX);
        if (!s->early) return WS_ERR_NOMEM;
      }
      memcpy(s->early + s->early_len, iov[i].base, n);
      s->early_len += n;
      total += n;
    }
    *pnwritten = total;
    size_t dummy;
    int h = ws_tls_read(s->tls, NULL, 0, &dummy);
    if (h && h != WS_ERR_WOULDBLOCK) return tp_failed(s, fd, h);
    if ((rv = tp_early(s)) != 0) return tp_failed(s, fd, rv);
    rv = tp_send(s, fd);
    return rv == WS_LOOP_ERR_IO ? rv : 0;
  }
  if ((rv = tp_early(s)) != 0) return tp_failed(s, fd, rv);
  for (size_t i = 0; i < iovcnt && !s->early_len; i++) {
    size_t w = 0;
    rv = ws_tls_write(s->tls, iov[i].base, iov[i].len, &w);
    total += w;
    if (rv == WS_ERR_WOULDBLOCK || w < iov[i].len) break;
    if (rv) {
      *pnwritten = total;
      return tp_failed(s, fd, rv);
    }
  }
  *pnwritten = total;
  rv = tp_send(s, fd);
  if (rv == WS_LOOP_ERR_IO) return rv;
  size_t pend;
  ws_tls_send_buf(s->tls, &pend);
  return pend ? WS_ERR_WOULDBLOCK : 0;
}

static size_t tp_pending(void *arg) {
  tp_sess *s = arg;
  size_t n;
  ws_tls_send_buf(s->tls, &n);
  return n;
}

static int tp_shutdown(void *arg, int fd) {
  tp_sess *s = arg;
  (void)fd;
  return ws_tls_close(s->tls);
}

static const char *tp_error(void *arg) {
  tp_sess *s = arg;
  return ws_tls_error(s->tls);
}

void ws_tls_transport(ws_loop_transport *tp, ws_tls_ctx *ctx) {
  memset(tp, 0, sizeof(*tp));
  tp->user_data = ctx;
  tp->attach = tp_attach;
  tp->read = tp_read;
  tp->write = tp_write;
  tp->pending = tp_pending;
  tp->shutdown = tp_shutdown;
  tp->detach = tp_detach;
  tp->error = tp_error;
}
