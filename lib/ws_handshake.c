/* Opening handshake (RFC 6455 section 4) over HTTP/1.1 (RFC 7230): head
 * framing, request/response parsing and validation, and writing the
 * request, the 101 answer and error answers. Nothing here allocates
 * except through the ws_buf it appends to.
 * SPDX-License-Identifier: MIT */
#include "ws_handshake.h"

#include <stdarg.h>

#include "ws_switch.h"

/* Functions that each role calls from one place: with one role built
 * (WS_NO_SERVER, WS_NO_CLIENT) a link keeps that one caller, which takes
 * them in line; and those the client calls from one place and the server
 * from more, in line in a client without the server. */
#if defined(WS_NO_SERVER) || defined(WS_NO_CLIENT)
#  define ONE_ROLE_INLINE WS_ALWAYS_INLINE
#else
#  define ONE_ROLE_INLINE
#endif
#if defined(WS_NO_SERVER)
#  define CLIENT_INLINE WS_ALWAYS_INLINE
#else
#  define CLIENT_INLINE
#endif

/* RFC 6455 1.3 / 4.2.2 */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Strings that both roles use, as objects of their own: with
 * -fdata-sections each is its own section, so a one-role link keeps only
 * these and not, with them, every literal of the other role's functions
 * (gcc groups a function's literals in one section).
 * A header name that the code looks for or writes is, where it can be,
 * the token at the start of a string kept anyway, a reason or a whole
 * header line ("Connection: Upgrade missing" names Connection): lookups
 * compare names (and list tokens) with name_is() and writers take them
 * with "%t", both up to the first byte that is no token byte
 * (token_len()). */
/* The client's reasons for refusing a response, one after the other in
 * the order of its checks (ws_hs_check_response() numbers them, enum
 * resp_why); the server shares two. */
#define RR_MALFORMED "malformed response"
#define RR_NOT_101 "server did not answer 101"
#define RR_NO_UPGRADE "Upgrade: websocket missing"
#define RR_NO_CONNECTION "Connection: Upgrade missing"
#define RR_ACCEPT_COUNT "Sec-WebSocket-Accept missing or repeated"
#define RR_ACCEPT_MISMATCH "Sec-WebSocket-Accept mismatch"
#define RR_EXT_NOT_OFFERED "extension not offered"
#define RR_EXT_REPEATED "Sec-WebSocket-Extensions repeated"
#define RR_PROTO_REPEATED "Sec-WebSocket-Protocol repeated"
#define RR_BAD_PROTOCOL "invalid Sec-WebSocket-Protocol"
static const char resp_reasons[] =
    RR_MALFORMED "\0" RR_NOT_101 "\0" RR_NO_UPGRADE "\0" RR_NO_CONNECTION
                 "\0" RR_ACCEPT_COUNT "\0" RR_ACCEPT_MISMATCH
                 "\0" RR_EXT_NOT_OFFERED "\0" RR_EXT_REPEATED
                 "\0" RR_PROTO_REPEATED "\0" RR_BAD_PROTOCOL
                 "\0subprotocol not offered";
/* where each starts */
#define RR_AT_NO_UPGRADE (sizeof(RR_MALFORMED) + sizeof(RR_NOT_101))
#define RR_AT_NO_CONNECTION (RR_AT_NO_UPGRADE + sizeof(RR_NO_UPGRADE))
#define RR_AT_ACCEPT_COUNT (RR_AT_NO_CONNECTION + sizeof(RR_NO_CONNECTION))
#define RR_AT_EXT_REPEATED                                                     \
  (RR_AT_ACCEPT_COUNT + sizeof(RR_ACCEPT_COUNT) + sizeof(RR_ACCEPT_MISMATCH) + \
   sizeof(RR_EXT_NOT_OFFERED))
#define RR_AT_PROTO_REPEATED (RR_AT_EXT_REPEATED + sizeof(RR_EXT_REPEATED))
#define r_no_upgrade (resp_reasons + RR_AT_NO_UPGRADE)
#define r_no_connection (resp_reasons + RR_AT_NO_CONNECTION)
#define h_upgrade r_no_upgrade
#define h_connection r_no_connection
#define h_accept (resp_reasons + RR_AT_ACCEPT_COUNT)
#define h_extensions (resp_reasons + RR_AT_EXT_REPEATED)
#define h_protocol (resp_reasons + RR_AT_PROTO_REPEATED)
/* and so are the list tokens they must hold */
#define t_websocket (r_no_upgrade + 9)
#define t_upgrade (r_no_connection + 12)
/* (the reference checks name the others) */
#define r_accept_mismatch (h_accept + sizeof(RR_ACCEPT_COUNT))
#define r_ext_repeated h_extensions
#define r_bad_protocol (h_protocol + sizeof(RR_PROTO_REPEATED))
/* and lines that both write (a header line as a wr_fmt() format too) */
static const char f_header[] = "%t: %v\r\n";
static const char l_upgrade[] =
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
static const char l_version[] = "Sec-WebSocket-Version: 13\r\n";
static const char l_crlf[] = "\r\n";
/* The server's error answer starts so (emit_reject()); the request
 * check takes the name Content-Length from it. */
#define F_REJECT_TO_LENGTH "HTTP/1.1 %u %s\r\nConnection: close\r\n"
static const char f_reject[] = F_REJECT_TO_LENGTH "Content-Length: %u\r\n";
#define h_content_length (f_reject + sizeof(F_REJECT_TO_LENGTH) - 1)
/* The line a 405 answer carries; the request check takes "GET" from it. */
static const char l_allow[] = "Allow: GET\r\n";
#define t_get (l_allow + 7)

/* ---- character classes ------------------------------------------------- */

/* RFC 7230 3.2.6: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
int ws_is_tchar(uint8_t c) {
  /* one bit per ASCII byte, bit c & 7 of byte c >> 3 */
  static const uint8_t tchar_bits[16] = {0x00, 0x00, 0x00, 0x00, 0xfa, 0x6c,
                                         0xff, 0x03, 0xfe, 0xff, 0xff, 0xc7,
                                         0xff, 0xff, 0xff, 0x57};
  return c < 128 && (tchar_bits[c >> 3] >> (c & 7u) & 1u);
}

/* RFC 7230 3.2.3: OWS = *( SP / HTAB ) */
static int is_ows(uint8_t c) { return c == ' ' || c == '\t'; }

/* RFC 7230 3.2: field-value bytes are HTAB, SP, VCHAR and obs-text; every
 * other control (NUL, CR, LF, DEL, ...) is rejected. */
static int is_field_char(uint8_t c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* RFC 7230 5.3: request-target, any visible byte (no SP, no CTL). */
static int is_target_char(uint8_t c) { return c > 0x20 && c != 0x7f; }

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* ---- public and internal string helpers ------------------------------- */

int ws_ascii_ieq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  if (alen != blen) return 0;
  /* Equal bytes, or a letter in its two cases: those differ in bit 5
   * only (0x20), and with it set are 'a'..'z'. */
  for (size_t i = 0; i < alen; i++) {
    unsigned d = a[i] ^ b[i];
    if (d && (d != 0x20 || (unsigned)((a[i] | 0x20) - 'a') > 25)) return 0;
  }
  return 1;
}

int ws_slice_ieq(ws_slice s, const char *str) {
  if (!str) return 0;
  return ws_ascii_ieq(s.base, s.len, (const uint8_t *)str, strlen(str));
}

/* Length of the token at the start of |s|. */
static size_t token_len(const char *s) {
  size_t n = 0;
  while (ws_is_tchar((uint8_t)s[n]))
    n++;
  return n;
}

/* |s| is the header name at the start of |name| (see the strings above).
 * Size builds measure the token and compare; the default build compares
 * lengths first, as fast as the whole-string comparison this replaces. */
static int name_is(ws_slice s, const char *name) {
#if WS_SMALL_CODE
  return ws_ascii_ieq(s.base, s.len, (const uint8_t *)name, token_len(name));
#else
  return s.len <= strlen(name) && !ws_is_tchar((uint8_t)name[s.len]) &&
         ws_ascii_ieq(s.base, s.len, (const uint8_t *)name, s.len);
#endif
}

/* RFC 7230 7: #rule lists. Empty elements and OWS around them are skipped;
 * a quoted-string (3.2.6, with quoted-pair escapes) is kept whole so a
 * comma inside it does not split the element. */
int ws_list_next(ws_slice *plist, ws_slice *ptoken) {
  const uint8_t *p = plist->base;
  if (!p) return 0; /* (an empty list ends below, |plist| as it was) */
  const uint8_t *end = p + plist->len;
  while (p < end && (is_ows(*p) || *p == ','))
    p++;
  const uint8_t *start = p;
  /* one pass: a quote opens or closes a quoted-string, in which a
   * backslash takes the next byte with it */
  int quoted = 0;
  for (; p < end && (quoted || *p != ','); p++) {
    if (quoted && *p == '\\' && p + 1 < end)
      p++; /* quoted-pair */
    else if (*p == '"')
      quoted = !quoted;
  }
  const uint8_t *e = p;
  while (e > start && is_ows(e[-1]))
    e--;
  plist->base = p;
  plist->len = (size_t)(end - p);
  if (start == end) return 0; /* only separators */
  ptoken->base = start;
  ptoken->len = (size_t)(e - start);
  return 1;
}

int ws_list_has_token(ws_slice list, const char *token) {
  /* |token| is a token (every caller's is): compared up to its end like a
   * header name, so that it too can be the head of a longer string */
  ws_slice el;
  while (ws_list_next(&list, &el))
    if (name_is(el, token)) return 1;
  return 0;
}

/* The accept value of |key| (RFC 6455 4.2.2 (5)), 28 characters, made
 * in |ctx|'s block, which is free once the hash is final: the digest at
 * its start, its base64 after it. No buffer of its own on the stack: the
 * client's check compares it in place, 28 bytes less on the deepest
 * stack of a client (firmware). */
static ONE_ROLE_INLINE const uint8_t *accept_in(ws_sha1_ctx *ctx,
                                                const uint8_t *key,
                                                size_t keylen) {
  ws_sha1_init(ctx);
  ws_sha1_update(ctx, key, keylen);
  ws_sha1_update(ctx, ws_guid, sizeof(ws_guid) - 1);
  ws_sha1_final(ctx, ctx->block);
  ws_base64_encode(ctx->block, 20, (char *)ctx->block + 20); /* 28 chars */
  return ctx->block + 20;
}

void ws_handshake_accept_key(const uint8_t *key, size_t keylen, char out[28]) {
  ws_sha1_ctx ctx;
  memcpy(out, accept_in(&ctx, key, keylen), 28);
}

/* 1 if |acc| is the accept value of the 24-character |key|. */
static int accept_matches(const char key[24], ws_slice acc) {
  ws_sha1_ctx ctx;
  const uint8_t *expect = accept_in(&ctx, (const uint8_t *)key, 24);
  return acc.len == 28 && memcmp(acc.base, expect, 28) == 0;
}

/* ---- header lookup ---------------------------------------------------- */

#if WS_HAS_REFERENCE /* (the checks look at each header once) */
/* Counts headers named |name|; sets |*pfirst| to the first one's value. */
static size_t header_count(const ws_header *h, size_t n, const char *name,
                           ws_slice *pfirst) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    if (!name_is(h[i].name, name)) continue;
    if (count++ == 0 && pfirst) *pfirst = h[i].value;
  }
  return count;
}

/* 1 if any header named |name| lists |token| (the list may be split over
 * several header lines, RFC 7230 3.2.2). */
static int headers_have_token(const ws_header *h, size_t n, const char *name,
                              const char *token) {
  for (size_t i = 0; i < n; i++)
    if (name_is(h[i].name, name) && ws_list_has_token(h[i].value, token))
      return 1;
  return 0;
}
#endif

/* The |index|-th list element across every header of |req| named
 * |name|. */
static int headers_list_nth(const ws_request *req, const char *name,
                            size_t index, ws_slice *pel) {
  const ws_header *h = req->headers;
  for (size_t i = 0; i < req->nheaders; i++) {
    if (!name_is(h[i].name, name)) continue;
    ws_slice list = h[i].value, el;
    while (ws_list_next(&list, &el)) {
      if (index-- == 0) {
        *pel = el;
        return 1;
      }
    }
  }
  return 0;
}

int ws_request_header(const ws_request *req, const char *name, size_t index,
                      ws_slice *pvalue) {
  for (size_t i = 0; i < req->nheaders; i++) {
    if (!ws_slice_ieq(req->headers[i].name, name)) continue;
    if (index-- == 0) {
      *pvalue = req->headers[i].value;
      return 1;
    }
  }
  return 0;
}

int ws_request_protocol(const ws_request *req, size_t index, ws_slice *pproto) {
  return headers_list_nth(req, h_protocol, index, pproto);
}

int ws_request_extension(const ws_request *req, size_t index, ws_slice *pext) {
  return headers_list_nth(req, h_extensions, index, pext);
}

/* ---- head framing and parsing ----------------------------------------- */

size_t ws_hs_head_end(const uint8_t *buf, size_t len, size_t scanned) {
  /* The head ends at the first empty line. The terminator is at most 3
   * bytes past an LF, so a match can straddle the previous scan end: back
   * up by that much. An LF LF (bare-LF empty line) also ends the head, so
   * that such a request is answered 400 by the parser at once instead of
   * filling the buffer; valid heads always end in CRLFCRLF. */
  size_t i = scanned > 3 ? scanned - 3 : 0;
  while (i < len) {
    const uint8_t *lf = memchr(buf + i, '\n', len - i);
    if (!lf) return 0;
    size_t k = (size_t)(lf - buf);
    if (k + 1 < len && buf[k + 1] == '\n') return k + 2;
    if (k + 2 < len && buf[k + 1] == '\r' && buf[k + 2] == '\n') return k + 3;
    i = k + 1;
  }
  return 0;
}

enum { HDR_OK = 0, HDR_MALFORMED = 1, HDR_TOO_MANY = 2 };

/*
 * Parses header lines from buf[pos, len) up to the empty line, which must
 * end exactly at |len|. RFC 7230 3.2 and 3.2.4: a name is a token
 * directly followed by ':', the value is trimmed of OWS, lines end in
 * CRLF, obs-fold continuation lines are rejected.
 */
static ONE_ROLE_INLINE int parse_headers(const uint8_t *buf, size_t len,
                                         size_t pos, ws_header *headers,
                                         size_t maxheaders,
                                         size_t *pnheaders) {
  size_t n = 0;
  for (;;) {
    if (len - pos < 2) return HDR_MALFORMED;
    if (buf[pos] == '\r') {
      if (buf[pos + 1] != '\n' || pos + 2 != len) return HDR_MALFORMED;
      *pnheaders = n;
      return HDR_OK;
    }
    size_t name = pos;
    while (pos < len && ws_is_tchar(buf[pos]))
      pos++;
    /* empty name (also an obs-fold line, RFC 7230 3.2.4, since SP and
     * HTAB are no token bytes), a non-token byte, or whitespace before
     * the colon (RFC 7230 3.2.4) */
    if (pos == name || pos == len || buf[pos] != ':') return HDR_MALFORMED;
    size_t namelen = pos - name;
    pos++;
    while (pos < len && is_ows(buf[pos]))
      pos++;
    size_t val = pos;
    while (pos < len && is_field_char(buf[pos]))
      pos++;
    size_t end = pos;
    while (end > val && is_ows(buf[end - 1]))
      end--;
    /* only CRLF may end the value: bare LF, lone CR, NUL and the other
     * controls stop the scan above and land here */
    if (len - pos < 2 || buf[pos] != '\r' || buf[pos + 1] != '\n')
      return HDR_MALFORMED;
    pos += 2;
    if (n == maxheaders) return HDR_TOO_MANY;
    headers[n].name.base = buf + name;
    headers[n].name.len = namelen;
    headers[n].value.base = buf + val;
    headers[n].value.len = end - val;
    n++;
  }
}

/* RFC 7230 2.6: HTTP-version = "HTTP/" DIGIT "." DIGIT. Returns the
 * number of bytes (8) or 0, with the version as major*10+minor. */
static ONE_ROLE_INLINE size_t parse_version(const uint8_t *p, size_t n,
                                            int *pver) {
  if (n < 8 || memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' ||
      !is_digit(p[7]))
    return 0;
  *pver = (p[5] - '0') * 10 + (p[7] - '0');
  return 8;
}

/* The |k|-th of the NUL-separated strings at |p|. */
static CLIENT_INLINE const char *nth_str(const char *p, unsigned k) {
  while (k--)
    p += strlen(p) + 1;
  return p;
}

/*
 * Why the server refuses a request (ws_hs_parse_http() and
 * ws_hs_validate_upgrade()): one string after the other, numbered by
 * enum srv_why, the status going with the number (srv_fail()). A failing
 * check then only loads a small number. The first names the header
 * looked up as Sec-WebSocket-Key (srv_reasons + 8), and two later ones
 * the headers Host and Origin (h_host, h_origin).
 */
#define SR_TO_HOST                                                             \
  "missing Sec-WebSocket-Key\0"                                                \
  "duplicate Sec-WebSocket-Key\0"                                              \
  "invalid Sec-WebSocket-Key\0"                                                \
  "malformed request line\0"                                                   \
  "malformed header field\0"                                                   \
  "duplicate "
#define SR_TO_ORIGIN                                                           \
  "Host\0"                                                                     \
  "missing Host\0"                                                             \
  "duplicate "
static const char srv_reasons[] =
    SR_TO_HOST SR_TO_ORIGIN "Origin\0"
                            "HTTP/1.1 or higher required\0"
                            "empty Host\0"
                            "request with a body\0"
                            "method is not GET\0"
                            "Sec-WebSocket-Version must be 13\0"
                            "too many header fields";
#define h_host (srv_reasons + sizeof(SR_TO_HOST) - 1)
#define h_origin (h_host + sizeof(SR_TO_ORIGIN) - 1)
enum srv_why {
  W_NO_KEY,
  W_DUP_KEY,
  W_BAD_KEY,
  W_LINE,
  W_FIELD,
  W_DUP_HOST,
  W_NO_HOST,
  W_DUP_ORIGIN,
  W_HTTP11,
  W_EMPTY_HOST,
  W_BODY,
  W_METHOD,
  W_VERSION,
  W_TOO_MANY, /* 405, 426, 431; the others 400 */
  /* reasons the client shares, kept as strings of their own */
  W_NO_UPGRADE,
  W_NO_CONNECTION
};

static WS_NOINLINE int srv_fail(unsigned why, int *pstatus,
                                 const char **preason) {
  static const uint8_t over_400[3] = {5, 26, 31}; /* 405, 426, 431 */
  if (pstatus)
    *pstatus = 400 + (why - W_METHOD < 3 ? over_400[why - W_METHOD] : 0);
  /* the two shared reasons follow each other in resp_reasons too */
  const char *r = srv_reasons;
  if (why >= W_NO_UPGRADE) {
    r = r_no_upgrade;
    why -= W_NO_UPGRADE;
  }
  if (preason) *preason = nth_str(r, why);
  return WS_ERR_HANDSHAKE;
}

/* Failures go to the function's one exit (label |fail|), which stores
 * the status and reason: less code than storing them at every check. */
#define HS_FAIL(w)                                                             \
  do {                                                                         \
    why = (w);                                                                 \
    goto fail;                                                                 \
  } while (0)

/* RFC 7230 3.1.1: method SP request-target SP HTTP-version CRLF, at the
 * start of |buf|, into |req| (zeroed first; with the path and query).
 * Returns the length of the line with its CRLF, 0 if it is malformed. */
static size_t parse_request_line(ws_request *req, const uint8_t *buf,
                                 size_t len) {
  size_t pos = 0;
  int ver;

  memset(req, 0, sizeof(*req));
  while (pos < len && ws_is_tchar(buf[pos]))
    pos++;
  if (pos == 0 || pos == len || buf[pos] != ' ') return 0;
  req->method.base = buf;
  req->method.len = pos;
  size_t tstart = ++pos;
  while (pos < len && is_target_char(buf[pos]))
    pos++;
  if (pos == tstart || pos == len || buf[pos] != ' ') return 0;
  req->target.base = buf + tstart;
  req->target.len = pos - tstart;
  pos++;
  size_t vlen = parse_version(buf + pos, len - pos, &ver);
  if (vlen == 0 || ver < 10) return 0;
  req->version = ver;
  pos += vlen;
  if (len - pos < 2 || buf[pos] != '\r' || buf[pos + 1] != '\n') return 0;

  /* path and query, RFC 6455 3 and RFC 7230 5.3 */
  const uint8_t *q = memchr(buf + tstart, '?', req->target.len);
  size_t plen = q ? (size_t)(q - buf) - tstart : req->target.len;
  req->path.base = buf + tstart;
  req->path.len = plen;
  plen += q != NULL; /* the query starts after the '?', if any */
  req->query.base = buf + tstart + plen;
  req->query.len = req->target.len - plen;
  return pos + 2;
}

/* The headers the server looks at. The first five: the first value and
 * whether repeated; Transfer-Encoding: whether there; Upgrade and
 * Connection: whether they list their tokens. */
enum {
  Q_HOST,
  Q_ORIGIN,
  Q_LENGTH,
  Q_KEY,
  Q_VERSION,
  Q_TRANSFER,
  Q_UPGRADE,
  Q_CONNECTION,
  Q_N
};

int ws_hs_check_request(ws_request *req, ws_header *headers, size_t maxheaders,
                        const uint8_t *buf, size_t len, int http,
                        int *pstatus, const char **preason) {
  static const char *const req_names[Q_N] = {
      h_host,          h_origin,    h_content_length,
      srv_reasons + 8, l_version,   "Transfer-Encoding",
      h_upgrade,       h_connection};
  unsigned why = W_LINE;
  size_t nh = 0;

  size_t pos = parse_request_line(req, buf, len);
  if (!pos) goto fail;
  switch (parse_headers(buf, len, pos, headers, maxheaders, &nh)) {
  case HDR_OK: break;
  case HDR_TOO_MANY: HS_FAIL(W_TOO_MANY);
  default: HS_FAIL(W_FIELD);
  }
  req->headers = headers;
  req->nheaders = nh;

  /* one look at each header line */
  ws_slice first[Q_TRANSFER];
  memset(first, 0, sizeof(first));
  unsigned dup = 0, found = 0; /* bits Q_* */
  for (size_t i = 0; i < nh; i++) {
    unsigned k = 0;
    while (k < Q_N && !name_is(headers[i].name, req_names[k]))
      k++;
    ws_slice v = headers[i].value;
    if (k >= Q_UPGRADE) {
      if (k < Q_N &&
          ws_list_has_token(v, k == Q_UPGRADE ? t_websocket : t_upgrade))
        found |= 1u << k;
      continue;
    }
    /* (a value's base is never NULL: set is seen) */
    if (k == Q_TRANSFER || first[k].base)
      dup |= 1u << k;
    else
      first[k] = v;
  }
  req->host = first[Q_HOST];
  req->origin = first[Q_ORIGIN];

  /* RFC 7230 5.4: at most one Host; an HTTP/1.1 request must have one */
  if (dup & 1u << Q_HOST) HS_FAIL(W_DUP_HOST);
  if (!req->host.base && req->version >= 11) HS_FAIL(W_NO_HOST);
  /* A repeated Origin is refused so that the application checks the
   * only one there is (RFC 6455 10.2). */
  if (dup & 1u << Q_ORIGIN) HS_FAIL(W_DUP_ORIGIN);

  /* RFC 6455 4.2.1 (3): Upgrade lists "websocket", case-insensitively;
   * a request that does not is plain HTTP, if the caller takes those */
  if (http && !(found & 1u << Q_UPGRADE)) return 1;

  /* RFC 6455 4.2.1 (1): an HTTP/1.1 or higher GET request. The method is
   * case-sensitive (RFC 7230 3.1.1). */
  if (!(req->method.len == 3 && memcmp(req->method.base, t_get, 3) == 0))
    HS_FAIL(W_METHOD);
  if (req->version < 11) HS_FAIL(W_HTTP11);

  /* RFC 6455 4.2.1 (2): a Host header, not empty (len 0 if none) */
  if (req->host.len == 0) HS_FAIL(W_EMPTY_HOST);

  if (!(found & 1u << Q_UPGRADE)) HS_FAIL(W_NO_UPGRADE);
  /* RFC 6455 4.2.1 (4): Connection lists "Upgrade", case-insensitively */
  if (!(found & 1u << Q_CONNECTION)) HS_FAIL(W_NO_CONNECTION);

  /* The bytes after the head are frames. A request that says a body
   * follows (RFC 7230 3.3) is refused: a proxy that believed the body
   * would read those frames as the next request (request smuggling). */
  ws_slice cl = first[Q_LENGTH];
  if ((dup & (1u << Q_LENGTH | 1u << Q_TRANSFER)) ||
      (cl.base && !(cl.len == 1 && cl.base[0] == '0')))
    HS_FAIL(W_BODY);

  /* RFC 6455 4.2.1 (5): one Sec-WebSocket-Key, base64 of 16 bytes */
  req->key = first[Q_KEY];
  if (!req->key.base) HS_FAIL(W_NO_KEY);
  if (dup & 1u << Q_KEY) HS_FAIL(W_DUP_KEY);
  {
    uint8_t nonce[16];
    size_t noncelen = 0;
    if (ws_base64_decode(req->key.base, req->key.len, nonce, sizeof(nonce),
                         &noncelen) != 0 ||
        noncelen != 16)
      HS_FAIL(W_BAD_KEY);
  }

  /* RFC 6455 4.2.1 (6) and 4.4: exactly version 13, else 426 with the
   * versions we support */
  ws_slice v = first[Q_VERSION]; /* (len 0 if none) */
  if ((dup & 1u << Q_VERSION) ||
      !(v.len == 2 && v.base[0] == '1' && v.base[1] == '3'))
    HS_FAIL(W_VERSION);
  return 0;
fail:
  return srv_fail(why, pstatus, preason);
}

#if WS_HAS_REFERENCE
/* ---- the request checks in two steps (tests and fuzzers) --------------- */

int ws_hs_parse_http(ws_request *req, ws_header *headers, size_t maxheaders,
                     const uint8_t *buf, size_t len, int *pstatus,
                     const char **preason) {
  unsigned why = W_LINE;
  size_t pos = parse_request_line(req, buf, len);
  if (!pos) goto fail;
  int ver = req->version;

  size_t nh = 0;
  switch (parse_headers(buf, len, pos, headers, maxheaders, &nh)) {
  case HDR_OK: break;
  case HDR_TOO_MANY: HS_FAIL(W_TOO_MANY);
  default: HS_FAIL(W_FIELD);
  }
  req->headers = headers;
  req->nheaders = nh;

  /* RFC 7230 5.4: at most one Host; an HTTP/1.1 request must have one */
  size_t cnt = header_count(headers, nh, h_host, &req->host);
  if (cnt > 1) HS_FAIL(W_DUP_HOST);
  if (cnt == 0 && ver >= 11) HS_FAIL(W_NO_HOST);
  /* A repeated Origin is refused so that the application checks the
   * only one there is (RFC 6455 10.2). */
  cnt = header_count(headers, nh, h_origin, &req->origin);
  if (cnt > 1) HS_FAIL(W_DUP_ORIGIN);
  return 0;
fail:
  return srv_fail(why, pstatus, preason);
}

int ws_hs_is_upgrade(const ws_request *req) {
  return headers_have_token(req->headers, req->nheaders, h_upgrade,
                            t_websocket);
}

int ws_hs_validate_upgrade(ws_request *req, int *pstatus,
                           const char **preason) {
  const ws_header *headers = req->headers;
  size_t nh = req->nheaders;
  unsigned why;

  /* RFC 6455 4.2.1 (1): an HTTP/1.1 or higher GET request. The method is
   * case-sensitive (RFC 7230 3.1.1). */
  if (!(req->method.len == 3 && memcmp(req->method.base, t_get, 3) == 0))
    HS_FAIL(W_METHOD);
  if (req->version < 11) HS_FAIL(W_HTTP11);

  /* RFC 6455 4.2.1 (2): a Host header, not empty */
  if (!req->host.base || req->host.len == 0) HS_FAIL(W_EMPTY_HOST);

  /* RFC 6455 4.2.1 (3): Upgrade lists "websocket", case-insensitively */
  if (!ws_hs_is_upgrade(req)) HS_FAIL(W_NO_UPGRADE);

  /* RFC 6455 4.2.1 (4): Connection lists "Upgrade", case-insensitively */
  if (!headers_have_token(headers, nh, h_connection, t_upgrade))
    HS_FAIL(W_NO_CONNECTION);

  /* The bytes after the head are frames. A request that says a body
   * follows (RFC 7230 3.3) is refused: a proxy that believed the body
   * would read those frames as the next request (request smuggling). */
  ws_slice cl = {NULL, 0};
  size_t ncl = header_count(headers, nh, h_content_length, &cl);
  if (ncl > 1 || (ncl == 1 && !(cl.len == 1 && cl.base[0] == '0')))
    HS_FAIL(W_BODY);
  if (header_count(headers, nh, "Transfer-Encoding", NULL)) HS_FAIL(W_BODY);

  /* RFC 6455 4.2.1 (5): one Sec-WebSocket-Key, base64 of 16 bytes */
  size_t cnt = header_count(headers, nh, srv_reasons + 8, &req->key);
  if (cnt == 0) HS_FAIL(W_NO_KEY);
  if (cnt > 1) HS_FAIL(W_DUP_KEY);
  {
    uint8_t nonce[16];
    size_t noncelen = 0;
    if (ws_base64_decode(req->key.base, req->key.len, nonce, sizeof(nonce),
                         &noncelen) != 0 ||
        noncelen != 16)
      HS_FAIL(W_BAD_KEY);
  }

  /* RFC 6455 4.2.1 (6) and 4.4: exactly version 13, else 426 with the
   * versions we support */
  {
    ws_slice v = {NULL, 0};
    if (header_count(headers, nh, l_version, &v) != 1) HS_FAIL(W_VERSION);
    if (!(v.len == 2 && v.base[0] == '1' && v.base[1] == '3'))
      HS_FAIL(W_VERSION);
  }
  return 0;
fail:
  return srv_fail(why, pstatus, preason);
}
#endif /* WS_HAS_REFERENCE */

/* ---- response parsing (client) ----------------------------------------- */

/* RFC 7230 3.1.2: HTTP-version SP status-code SP reason-phrase CRLF, at
 * the start of |buf|, into |resp| (zeroed first). Returns the length of
 * the line with its CRLF, 0 if it is malformed. */
static size_t parse_status_line(ws_response *resp, const uint8_t *buf,
                                size_t len) {
  size_t pos = 0;
  int ver;

  memset(resp, 0, sizeof(*resp));
  size_t vlen = parse_version(buf, len, &ver);
  if (vlen == 0 || ver < 11) return 0;
  pos = vlen;
  if (len - pos < 4 || buf[pos++] != ' ') return 0;
  for (size_t end = pos + 3; pos < end; pos++) { /* three digits */
    if (!is_digit(buf[pos])) return 0;
    resp->status = resp->status * 10 + (buf[pos] - '0');
  }
  /* SP reason-phrase; the SP before an empty reason is often left out */
  if (pos < len && buf[pos] == ' ')
    pos++;
  else if (pos == len || buf[pos] != '\r')
    return 0;
  size_t rstart = pos;
  while (pos < len && is_field_char(buf[pos]))
    pos++;
  resp->reason.base = buf + rstart;
  resp->reason.len = pos - rstart;
  if (len - pos < 2 || buf[pos] != '\r' || buf[pos + 1] != '\n') return 0;
  return pos + 2;
}

/* The refusals, numbered as resp_reasons lists them. */
enum resp_why {
  RW_MALFORMED,
  RW_NOT_101,
  RW_NO_UPGRADE,
  RW_NO_CONNECTION,
  RW_ACCEPT_COUNT,
  RW_ACCEPT_MISMATCH,
  RW_EXT_NOT_OFFERED,
  RW_EXT_REPEATED,
  RW_PROTO_REPEATED,
  RW_BAD_PROTOCOL,
  RW_PROTO_NOT_OFFERED
};

/* The headers the client looks at: where their names are in
 * resp_reasons, and their numbers (bits of a mask). */
enum { K_UPGRADE, K_CONNECTION, K_ACCEPT, K_EXTENSIONS, K_PROTOCOL, K_N };
static const uint8_t resp_name_at[K_N] = {
    RR_AT_NO_UPGRADE, RR_AT_NO_CONNECTION, RR_AT_ACCEPT_COUNT,
    RR_AT_EXT_REPEATED, RR_AT_PROTO_REPEATED};
_Static_assert(RR_AT_PROTO_REPEATED < 256, "name offsets fit in a byte");

/* 1 if a list lists anything: a byte other than OWS and comma (what
 * ws_list_next() finds an element in). */
static WS_ALWAYS_INLINE int list_nonempty(ws_slice v) {
  for (size_t i = 0; i < v.len; i++)
    if (v.base[i] != ',' && !is_ows(v.base[i])) return 1;
  return 0;
}

int ws_hs_check_response(ws_response *resp, ws_header *headers,
                         size_t maxheaders, const uint8_t *buf, size_t len,
                         const char key[24], ws_slice offered_protocols,
                         int extensions_offered, const char **preason,
                         ws_slice *pext) {
  size_t nh = 0;
  unsigned why = RW_MALFORMED;

  size_t pos = parse_status_line(resp, buf, len);
  if (!pos || parse_headers(buf, len, pos, headers, maxheaders, &nh) != HDR_OK)
    goto fail;
  resp->headers = headers;
  resp->nheaders = nh;

  /* One look at each header line: whether Upgrade and Connection list
   * their tokens (over all their lines, RFC 7230 3.2.2), the first value
   * of the others and whether they are repeated, and the extension lines
   * that list something. */
  ws_slice acc = {NULL, 0};
  size_t next = 0;
  pext->base = NULL;
  pext->len = 0;
  unsigned found = 0, dup = 0; /* tokens found; bits K_* repeated */
  for (size_t i = 0; i < nh; i++) {
    unsigned k = 0;
    while (k < K_N && !name_is(headers[i].name, resp_reasons + resp_name_at[k]))
      k++;
    ws_slice v = headers[i].value;
    if (k <= K_CONNECTION) {
      if (ws_list_has_token(v, k == K_UPGRADE ? t_websocket : t_upgrade))
        found |= k + 1u; /* Upgrade 1, Connection 2 */
      continue;
    }
    if (k == K_N) continue;
    if (k == K_EXTENSIONS && list_nonempty(v)) {
      next++;
      *pext = v;
    }
    /* (a value's base is never NULL: set is seen) */
    ws_slice *first = k == K_ACCEPT       ? &acc
                      : k == K_EXTENSIONS ? &resp->extensions
                                          : &resp->protocol;
    if (first->base)
      dup |= 1u << k;
    else
      *first = v;
  }

  /* RFC 6455 4.1, client step 1 after sending: anything but 101 */
  why = RW_NOT_101;
  if (resp->status != 101) goto fail;
  /* steps 2 and 3 */
  why = RW_NO_UPGRADE;
  if (!(found & 1u)) goto fail;
  why = RW_NO_CONNECTION;
  if (!(found & 2u)) goto fail;

  /* step 4: exactly one Sec-WebSocket-Accept, equal to the expected */
  why = RW_ACCEPT_COUNT;
  if (!acc.base || (dup & 1u << K_ACCEPT)) goto fail;
  why = RW_ACCEPT_MISMATCH;
  if (!accept_matches(key, acc)) goto fail;

  /* step 5: extensions only if we offered some. Split over several header
   * lines they cannot be passed on as one slice, so refuse that. */
  why = RW_EXT_NOT_OFFERED;
  if (next > 0 && !extensions_offered) goto fail;
  why = RW_EXT_REPEATED;
  if (next > 1) goto fail;

  /* step 6: a subprotocol only if offered, and a single one. Subprotocol
   * names compare exactly. */
  why = RW_PROTO_REPEATED;
  if (dup & 1u << K_PROTOCOL) goto fail;
  ws_slice proto = resp->protocol;
  if (proto.base) {
    /* one token, nothing else: no list, no quotes, not empty (the value
     * is already trimmed of OWS, and in the head it is followed by OWS
     * or CR, no token bytes: token_len() stops there at the latest) */
    why = RW_BAD_PROTOCOL;
    if (proto.len == 0 || token_len((const char *)proto.base) != proto.len)
      goto fail;
    int match = 0;
    ws_slice list = offered_protocols, o;
    while (!match && ws_list_next(&list, &o))
      match = o.len == proto.len && memcmp(o.base, proto.base, o.len) == 0;
    why = RW_PROTO_NOT_OFFERED;
    if (!match) goto fail;
  }
  return 0;
fail:
  *preason = nth_str(resp_reasons, why);
  return why == RW_NOT_101 ? WS_ERR_REJECTED : WS_ERR_HANDSHAKE;
}

#if WS_HAS_REFERENCE
/* ---- the response checks in two steps (tests and fuzzers) -------------- */

int ws_hs_parse_response(ws_response *resp, ws_header *headers,
                         size_t maxheaders, const uint8_t *buf, size_t len) {
  size_t pos = parse_status_line(resp, buf, len);
  size_t nh = 0;
  if (!pos || parse_headers(buf, len, pos, headers, maxheaders, &nh) != HDR_OK)
    return WS_ERR_HANDSHAKE;
  resp->headers = headers;
  resp->nheaders = nh;
  header_count(headers, nh, h_protocol, &resp->protocol);
  header_count(headers, nh, h_extensions, &resp->extensions);
  return 0;
}

#  define VR_FAIL(rv, why)                                                     \
    do {                                                                       \
      frv = (rv);                                                              \
      freason = (why);                                                         \
      goto fail;                                                               \
    } while (0)

int ws_hs_validate_response(const ws_response *resp, const char key[24],
                            ws_slice offered_protocols, int extensions_offered,
                            const char **preason) {
  const ws_header *h = resp->headers;
  size_t nh = resp->nheaders;
  int frv;
  const char *freason;

  /* RFC 6455 4.1, client step 1 after sending: anything but 101 */
  if (resp->status != 101)
    VR_FAIL(WS_ERR_REJECTED, "server did not answer 101");
  /* steps 2 and 3 */
  if (!headers_have_token(h, nh, h_upgrade, t_websocket))
    VR_FAIL(WS_ERR_HANDSHAKE, r_no_upgrade);
  if (!headers_have_token(h, nh, h_connection, t_upgrade))
    VR_FAIL(WS_ERR_HANDSHAKE, r_no_connection);

  /* step 4: exactly one Sec-WebSocket-Accept, equal to the expected */
  ws_slice acc = {NULL, 0};
  if (header_count(h, nh, h_accept, &acc) != 1)
    VR_FAIL(WS_ERR_HANDSHAKE, "Sec-WebSocket-Accept missing or repeated");
  char expect[28];
  ws_handshake_accept_key((const uint8_t *)key, 24, expect);
  if (acc.len != 28 || memcmp(acc.base, expect, 28) != 0)
    VR_FAIL(WS_ERR_HANDSHAKE, r_accept_mismatch);

  /* step 5: extensions only if we offered some. Split over several header
   * lines they cannot be passed on as one slice, so refuse that. */
  size_t next = 0;
  for (size_t i = 0; i < nh; i++) {
    ws_slice list = h[i].value, el;
    if (name_is(h[i].name, h_extensions) && ws_list_next(&list, &el)) next++;
  }
  if (next > 0 && !extensions_offered)
    VR_FAIL(WS_ERR_HANDSHAKE, "extension not offered");
  if (next > 1) VR_FAIL(WS_ERR_HANDSHAKE, r_ext_repeated);

  /* step 6: a subprotocol only if offered, and a single one. Subprotocol
   * names compare exactly. */
  ws_slice proto = {NULL, 0};
  size_t nproto = header_count(h, nh, h_protocol, &proto);
  if (nproto > 1) VR_FAIL(WS_ERR_HANDSHAKE, "Sec-WebSocket-Protocol repeated");
  if (nproto == 1) {
    /* one token, nothing else: no list, no quotes, not empty (the value
     * is already trimmed of OWS) */
    size_t i = 0;
    while (i < proto.len && ws_is_tchar(proto.base[i]))
      i++;
    if (i == 0 || i != proto.len) VR_FAIL(WS_ERR_HANDSHAKE, r_bad_protocol);
    int found = 0;
    ws_slice list = offered_protocols, o;
    while (!found && ws_list_next(&list, &o))
      found = o.len == proto.len && memcmp(o.base, proto.base, o.len) == 0;
    if (!found) VR_FAIL(WS_ERR_HANDSHAKE, "subprotocol not offered");
  }
  return 0;
fail:
  if (preason) *preason = freason;
  return frv;
}
#endif /* WS_HAS_REFERENCE */

/* ---- writing ----------------------------------------------------------- */

/*
 * Output is produced in two passes over the same emitter: the first, with
 * |p| NULL, only measures; then the buffer is reserved once and the second
 * pass copies. Nothing can fail after the reservation, so on any error the
 * caller's buffer keeps its contents.
 */
typedef struct wr {
  uint8_t *p;
  size_t n;
  int overflow;
  int bad; /* a caller's string does not fit where it goes */
} wr;

static void wr_mem(wr *w, const void *s, size_t n) {
  if (n > SIZE_MAX - w->n) {
    w->overflow = 1;
    return;
  }
  if (w->p && n) memcpy(w->p + w->n, s, n);
  w->n += n;
}

/* Decimal digits. Where the CPU divides (every host, Cortex-M3/M4), size
 * builds take them from division by ten, the shortest code; elsewhere by
 * subtracting powers of ten, since a core without a divider (Cortex-M0,
 * ARMv6-M) would call a library helper for the division. */
#if WS_SMALL_CODE && !(defined(__arm__) && !defined(__ARM_FEATURE_IDIV))
static void wr_uint(wr *w, size_t v) {
  char d[20]; /* SIZE_MAX has at most 20 digits */
  size_t k = sizeof(d);
  do {
    d[--k] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  wr_mem(w, d + k, sizeof(d) - k);
}
#else
static void wr_uint(wr *w, size_t v) {
  size_t pw[20];
  size_t k = 0;
  char d;
  pw[0] = 1;
  while (k + 1 < 20 && pw[k] <= SIZE_MAX / 10 && pw[k] * 10 <= v) {
    pw[k + 1] = pw[k] * 10;
    k++;
  }
  for (;;) {
    for (d = '0'; v >= pw[k]; d++)
      v -= pw[k];
    wr_mem(w, &d, 1);
    if (k-- == 0) break;
  }
}
#endif

/*
 * Appends |fmt|, in which "%s" stands for a NUL-terminated string, "%t"
 * for the token at its start, "%u" for a size_t in decimal and "%b" for
 * bytes (a pointer, then a size_t count), each taken from the arguments
 * in turn. A caller's string is checked as it is measured: "%v" a header
 * value (RFC 7230 3.2: no CR, LF or other control but HTAB), "%n" a
 * token, not empty (a header name, a subprotocol), "%h" a host or
 * request-target (visible bytes, at least one); NULL or a byte that does
 * not fit sets |bad|, and the writer refuses the call before it writes
 * anything (WS_ERR_INVALID_ARGUMENT). A whole line or more per call:
 * fewer calls, and less code at each, than a call per piece. The strings
 * and bytes are copied as they are, never read as formats.
 */
static void wr_fmt(wr *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  for (;;) {
    size_t n = 0;
    while (fmt[n] && fmt[n] != '%')
      n++;
    wr_mem(w, fmt, n);
    fmt += n;
    if (!*fmt) break;
    char f = fmt[1];
    /* (clang-tidy 14's analyzer takes |ap| for uninitialized below, where
     * va_start() above has set it) */
    if (f == 'u') {
      /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
      wr_uint(w, va_arg(ap, size_t));
    } else {
      /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
      const char *str = va_arg(ap, const char *);
      n = 0;
      if (f == 'b') {
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
        n = va_arg(ap, size_t);
      } else if (f == 't') {
        n = token_len(str);
      } else if (!str) {
        w->bad = 1;
      } else if (f == 's' || w->p) {
        n = strlen(str); /* (a caller's string: checked when measured) */
      } else if (f == 'n') {
        n = token_len(str);
        if (n == 0 || str[n]) w->bad = 1;
      } else {
        /* 'v': HTAB, SP and visible bytes; 'h': visible bytes, one at
         * least (obs-text, 0x80 and up, in both) */
        unsigned lo = f == 'h' ? 0x21u : 0x20u;
        for (; str[n]; n++) {
          uint8_t c = (uint8_t)str[n];
          if ((c < lo || c == 0x7f) && !(f == 'v' && c == '\t')) w->bad = 1;
        }
        if (n == 0 && f == 'h') w->bad = 1;
      }
      wr_mem(w, str, n);
    }
    fmt += 2;
  }
  va_end(ap);
}

/* The caller's headers, each checked (a token name, a value), then the
 * empty line that ends the head: every head ends so. */
static void wr_end_head(wr *w, const ws_kv *kv, size_t n) {
  if (n && !kv) w->bad = 1;
  for (size_t i = 0; i < n && kv; i++)
    wr_fmt(w, "%n: %v\r\n", kv[i].name, kv[i].value);
  wr_fmt(w, l_crlf);
}

typedef void (*emit_fn)(wr *w, const void *arg);

static CLIENT_INLINE int emit_to_buf(ws_buf *out, const ws_mem *mem,
                                     emit_fn emit, const void *arg) {
  wr w = {NULL, 0, 0, 0};
  emit(&w, arg);
  if (w.bad) return WS_ERR_INVALID_ARGUMENT;
  if (w.overflow) return WS_ERR_NOMEM;
  int rv = ws_buf_reserve(out, mem, w.n);
  if (rv) return rv;
  w.p = out->base + out->len; /* (its flags are clear) */
  w.n = 0;
  emit(&w, arg);
  out->len += w.n;
  return 0;
}

int ws_hs_offered(const ws_request *req, const char *protocol) {
  ws_slice offered;
  size_t plen = strlen(protocol);
  for (size_t i = 0; ws_request_protocol(req, i, &offered); i++)
    if (offered.len == plen && memcmp(offered.base, protocol, plen) == 0)
      return 1;
  return 0;
}

typedef struct accept_args {
  const char *accept; /* 28 chars */
  const char *protocol;
  const char *extensions;
  const ws_kv *headers;
  size_t nheaders;
} accept_args;

static void emit_accept(wr *w, const void *arg) {
  const accept_args *a = arg;
  /* RFC 6455 4.2.2 (5) */
  wr_fmt(w, "HTTP/1.1 101 Switching Protocols%s%t: %b\r\n", l_upgrade, h_accept,
         a->accept, (size_t)28);
  if (a->protocol) wr_fmt(w, "%t: %n\r\n", h_protocol, a->protocol);
  if (a->extensions && *a->extensions)
    wr_fmt(w, f_header, h_extensions, a->extensions);
  wr_end_head(w, a->headers, a->nheaders);
}

int ws_hs_write_accept(ws_buf *out, const ws_mem *mem, const ws_request *req,
                       const char *protocol, const char *extensions,
                       const ws_kv *headers, size_t nheaders) {
  if (!req->key.base || req->key.len == 0) return WS_ERR_INVALID_ARGUMENT;
  /* RFC 6455 4.2.2 (5) /subprotocol/: one of the client's values (and a
   * token: the writer checks it, with the headers and extensions) */
  if (protocol && !ws_hs_offered(req, protocol))
    return WS_ERR_INVALID_ARGUMENT;
  char acc[28];
  ws_handshake_accept_key(req->key.base, req->key.len, acc);
  accept_args a = {acc, protocol, extensions, headers, nheaders};
  return emit_to_buf(out, mem, emit_accept, &a);
}

/* Reason phrases (RFC 7231 6.1), each after a byte with the step from
 * the status before (from 0), in one string: a table instead of a
 * switch, for size. The statuses go up, each by a step under 256: 200,
 * 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405,
 * 408, 426, 429, 431, 500, 501, 502, 503, 504. Then "Error" (4xx, 5xx
 * not listed) and "Status" (the others), after a step byte 0. (The
 * steps in octal: an escape of three octal digits ends there.) */
static const char phrases[] = "\310OK\0"
                              "\001Created\0"
                              "\001Accepted\0"
                              "\002No Content\0"
                              "\141Moved Permanently\0"
                              "\001Found\0"
                              "\001See Other\0"
                              "\001Not Modified\0"
                              "\003Temporary Redirect\0"
                              "\001Permanent Redirect\0"
                              "\134Bad Request\0"
                              "\001Unauthorized\0"
                              "\002Forbidden\0"
                              "\001Not Found\0"
                              "\001Method Not Allowed\0"
                              "\003Request Timeout\0"
                              "\022Upgrade Required\0"
                              "\003Too Many Requests\0"
                              "\002Request Header Fields Too Large\0"
                              "\105Internal Server Error\0"
                              "\001Not Implemented\0"
                              "\001Bad Gateway\0"
                              "\001Service Unavailable\0"
                              "\001Gateway Timeout\0"
                              "\000Error\0"
                              "\000Status";

static const char *reason_phrase(int status) {
  const uint8_t *p = (const uint8_t *)phrases;
  int st = 0;
  /* a step 0 ends the list: "Error", or "Status" after it */
  while (*p && (st += *p) != status)
    p += strlen((const char *)p) + 1;
  if (!*p && status < 400) p += sizeof("\000Error");
  return (const char *)p + 1;
}

typedef struct reject_args {
  int status;
  const ws_kv *headers;
  size_t nheaders;
  const void *body;
  size_t bodylen;
  int omit_body;
} reject_args;

/* 1 if a caller header has the name of |line| ("Name: value\r\n"). */
static int kvs_have(const ws_kv *kv, size_t n, const char *line) {
  ws_slice name = {(const uint8_t *)line, token_len(line)};
  for (size_t i = 0; i < n && kv; i++)
    if (ws_slice_ieq(name, kv[i].name)) return 1; /* (0 for NULL) */
  return 0;
}

static void emit_reject(wr *w, const void *arg) {
  const reject_args *a = arg;
  wr_fmt(w, f_reject, (size_t)a->status, reason_phrase(a->status), a->bodylen);
  /* RFC 7231 6.5.5: a 405 lists the allowed methods; RFC 6455 4.4: a
   * 426 says which versions we speak (unless the caller's headers do) */
  const char *line = a->status == 405   ? l_allow
                     : a->status == 426 ? l_version
                                        : NULL;
  if (line && !kvs_have(a->headers, a->nheaders, line)) wr_fmt(w, line);
  wr_end_head(w, a->headers, a->nheaders);
  /* RFC 7231 4.3.2: the answer to HEAD has the headers of GET's, no body */
  wr_mem(w, a->body, a->omit_body ? 0 : a->bodylen);
}

int ws_hs_write_response(ws_buf *out, const ws_mem *mem, int status,
                         const ws_kv *headers, size_t nheaders,
                         const void *body, size_t bodylen, int omit_body) {
  if (status < 100 || status > 599) return WS_ERR_INVALID_ARGUMENT;
  if (bodylen && !body) return WS_ERR_INVALID_ARGUMENT;
  /* (the headers are checked as they are measured) */
  reject_args a = {status, headers, nheaders, body, bodylen, omit_body};
  return emit_to_buf(out, mem, emit_reject, &a);
}

typedef struct request_args {
  const ws_client_params *p;
  const char *key; /* 24 chars */
  const char *extensions;
} request_args;

static void emit_request(wr *w, const void *arg) {
  const request_args *a = arg;
  const ws_client_params *p = a->p;
  /* RFC 6455 4.1: the client's opening handshake */
  wr_fmt(w, "GET %h HTTP/1.1\r\nHost: %h", p->path ? p->path : "/", p->host);
  if (p->port) wr_fmt(w, ":%u", (size_t)p->port);
  wr_fmt(w, "%sSec-WebSocket-Key: %b\r\n%s", l_upgrade, a->key, (size_t)24,
         l_version);
  if (p->origin) wr_fmt(w, "Origin: %v\r\n", p->origin);
  /* RFC 6455 4.1 (10): each subprotocol is a token */
  for (size_t i = 0; i < p->nprotocols; i++)
    wr_fmt(w, i ? ", %n" : "%t: %n", i ? p->protocols[i] : h_protocol,
           p->protocols[i]);
  if (p->nprotocols) wr_fmt(w, l_crlf);
  if (a->extensions && *a->extensions)
    wr_fmt(w, f_header, h_extensions, a->extensions);
  wr_end_head(w, p->headers, p->nheaders);
}

int ws_hs_write_request(ws_buf *out, const ws_mem *mem,
                        const ws_client_params *p, const char key[24],
                        const char *extensions) {
  if (!p || !key) return WS_ERR_INVALID_ARGUMENT;
  if (p->nprotocols && !p->protocols) return WS_ERR_INVALID_ARGUMENT;
  /* (Host is an authority, the path a request-target: visible characters
   * only, at least one; the writer checks them and the other strings as
   * it measures them) */
  request_args a = {p, key, extensions};
  return emit_to_buf(out, mem, emit_request, &a);
}

/* ---- Origin allowlist (RFC 6455 10.2) ------------------------------------ */

/* An origin "scheme://host[:port]" split up. The port is the one
 * written, else the scheme's (80/443), else 0. */
typedef struct origin_parts {
  ws_slice scheme, host;
  unsigned port;
} origin_parts;

/* The port a scheme stands for: 443 for https, 80 for http, else
 * |other|. */
static WS_NOINLINE unsigned scheme_port(ws_slice scheme, unsigned other) {
  /* "http" is "https" without its last letter: one comparison, with
   * the scheme's own length (4 or 5) */
  if (scheme.len - 4 > 1 || !ws_ascii_ieq(scheme.base, scheme.len,
                                          (const uint8_t *)"https", scheme.len))
    return other;
  return scheme.len == 5 ? 443 : 80;
}

/* Splits "host[:port]" (host may be "[v6]"); the port is the one written
 * (1 to 5 digits, at most 65535), else |dflt|. On failure (also an empty
 * host) |o| is not to be used. */
static int split_authority(const uint8_t *p, size_t n, origin_parts *o,
                           unsigned dflt) {
  /* the host ends at the first ':', or a "[v6]" one at its ']' */
  uint8_t stop = n && p[0] == '[' ? ']' : ':';
  size_t h = 0;
  while (h < n && p[h] != stop)
    h++;
  if (stop == ']' && h++ == n) return 0;
  o->host.base = p;
  o->host.len = h;
  o->port = dflt;
  if (h < n) {
    unsigned v = 0;
    size_t i = h + 1;
    if (p[h] != ':' || n - i - 1 > 4) return 0; /* no digit, or over 5 */
    for (; i < n; i++) {
      if (!is_digit(p[i])) return 0;
      v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > 65535) return 0;
    o->port = v;
  }
  return h > 0;
}

/* Splits an origin at its first "://": 1, 0 if it is no origin, -1 if
 * there is no "://" at all (a host pattern, for an allowlist entry). */
static int split_origin(const uint8_t *p, size_t n, origin_parts *o) {
  for (size_t i = 0; i + 2 < n; i++) {
    if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/') {
      o->scheme.base = p;
      o->scheme.len = i;
      return i > 0 && split_authority(p + i + 3, n - i - 3, o,
                                      scheme_port(o->scheme, 0));
    }
  }
  return -1;
}

/* |host| matches |pat|: equal, or "*.rest" and host ends with ".rest"
 * after a non-empty label. */
static int host_match(ws_slice host, const uint8_t *pat, size_t plen) {
  if (plen >= 2 && pat[0] == '*' && pat[1] == '.') {
    pat++; /* ".rest", to compare with the end of host */
    plen--;
    if (host.len <= plen) return 0;
    host.base += host.len - plen;
    host.len = plen;
  }
  return ws_ascii_ieq(host.base, host.len, pat, plen);
}

static int origin_entry_match(const origin_parts *o, ws_slice origin,
                              const char *e) {
  size_t elen = strlen(e);
  const uint8_t *ep = (const uint8_t *)e;
  if (elen == 1 && e[0] == '*') return 1;
  if (ws_ascii_ieq(origin.base, origin.len, ep, elen)) return 1;
  if (!o) return 0; /* "null" or malformed: exact only */
  origin_parts pe;
  /* the pattern's own host may start with "*." */
  int split = split_origin(ep, elen, &pe);
  if (split < 0) return host_match(o->host, ep, elen); /* a host pattern */
  return split &&
         ws_ascii_ieq(o->scheme.base, o->scheme.len, pe.scheme.base,
                      pe.scheme.len) &&
         o->port == pe.port && host_match(o->host, pe.host.base, pe.host.len);
}

int ws_request_origin_allowed(const ws_request *req, const char *const *origins,
                              size_t n, uint32_t flags) {
  if (!req || (n && !origins)) return 0;
  ws_slice origin = req->origin;
  if (!origin.base) return !(flags & WS_ORIGIN_REQUIRE);
  origin_parts o;
  int ok = split_origin(origin.base, origin.len, &o) > 0;
  for (size_t i = 0; i < n; i++)
    if (origins[i] && origin_entry_match(ok ? &o : NULL, origin, origins[i]))
      return 1;
  if ((flags & WS_ORIGIN_SAME_HOST) && ok && req->host.base) {
    origin_parts h;
    /* no port written: the scheme's default */
    if (!split_authority(req->host.base, req->host.len, &h,
                         scheme_port(o.scheme, 80)))
      return 0;
    return h.port == o.port &&
           ws_ascii_ieq(h.host.base, h.host.len, o.host.base, o.host.len);
  }
  return 0;
}
