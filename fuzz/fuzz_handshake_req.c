/*
 * Fuzz target: the server side of the opening handshake (RFC 6455 4.2.1).
 * SPDX-License-Identifier: MIT
 *
 * Input: raw bytes as a client would send them.
 * Invariants:
 *  - ws_hs_head_end: fed a byte at a time (and in growing chunks) with
 *    the scanned offset carried, it finds the same end as one call over
 *    the whole input; the end is right after an LF LF or LF CR LF;
 *  - ws_hs_parse_request: fails only with 400/405/426/431 and a reason;
 *    on success every slice lies inside the head; with exactly nheaders
 *    slots it succeeds alike, with one fewer it answers 431;
 *  - accessors: ws_request_header finds every header by its own name,
 *    ws_request_protocol / ws_request_extension / ws_list_next stay in
 *    bounds and terminate;
 *  - ws_hs_write_accept writes a 101 whose Sec-WebSocket-Accept matches
 *    ws_handshake_accept_key, and which the client-side parser and
 *    validator accept for the same key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define MAXH 64

static int inside(ws_slice s, const uint8_t *buf, size_t len) {
  if (s.len == 0) return s.base == NULL || (s.base >= buf && s.base <= buf + len);
  return s.base >= buf && s.base + s.len <= buf + len;
}

static size_t head_end_incremental(const uint8_t *buf, size_t len,
                                   size_t step) {
  size_t scanned = 0;
  for (size_t have = 0; have < len;) {
    have += step;
    if (have > len) have = len;
    size_t e = ws_hs_head_end(buf, have, scanned);
    if (e) return e;
    scanned = have;
    if (step < 64) step++; /* 1, 2, 3, ... byte chunks */
  }
  return 0;
}

/* Walks a comma list; every token is inside it, non-empty, trimmed. */
static void walk_list(ws_slice list) {
  ws_slice tok;
  ws_slice l = list;
  size_t count = 0;
  while (ws_list_next(&l, &tok)) {
    CHECK(tok.len > 0);
    CHECK(tok.base >= list.base && tok.base + tok.len <= list.base + list.len);
    CHECK(tok.base[0] != ' ' && tok.base[0] != '\t');
    CHECK(tok.base[tok.len - 1] != ' ' && tok.base[tok.len - 1] != '\t');
    CHECK(++count <= list.len);
  }
}

/* Copies a slice into a NUL-terminated string; 0 if it holds a NUL or
 * does not fit. */
static int to_cstr(ws_slice s, char *out, size_t cap) {
  if (s.len >= cap || memchr(s.base, 0, s.len)) return 0;
  memcpy(out, s.base, s.len);
  out[s.len] = 0;
  return 1;
}

static void check_accessors(const ws_request *req, const uint8_t *buf,
                            size_t len) {
  ws_slice v;
  char name[256];
  for (size_t i = 0; i < req->nheaders; i++) {
    const ws_header *h = &req->headers[i];
    CHECK(inside(h->name, buf, len) && inside(h->value, buf, len));
    CHECK(h->name.len > 0);
    walk_list(h->value);
    if (!to_cstr(h->name, name, sizeof(name))) continue;
    /* the first header of that name is at or before i; counting them
     * through the index reaches i exactly */
    size_t idx = 0, found = 0;
    while (ws_request_header(req, name, idx, &v)) {
      CHECK(inside(v, buf, len));
      if (v.base == h->value.base && v.len == h->value.len) found = 1;
      CHECK(++idx <= req->nheaders);
    }
    CHECK(found);
  }
  CHECK(!ws_request_header(req, "X-Not-There-At-All", 0, &v));
  for (size_t i = 0; ws_request_protocol(req, i, &v); i++) {
    CHECK(inside(v, buf, len) && v.len > 0);
    CHECK(i < len);
  }
  for (size_t i = 0; ws_request_extension(req, i, &v); i++) {
    CHECK(inside(v, buf, len) && v.len > 0);
    CHECK(i < len);
  }
}

/* RFC 7230 3.2.6 token, as RFC 6455 4.1 requires of subprotocols. */
static int is_token(const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c <= 0x20 || c >= 0x7F || strchr("()<>@,;:\\\"/[]?={}", c))
      return 0;
  }
  return 1;
}

static void check_accept(const ws_request *req) {
  static const ws_kv extra[2] = {{"X-Fuzz", "1"}, {"Server", "libws-fuzz"}};
  char proto[128];
  ws_slice p;
  const char *protocol = NULL;
  if (ws_request_protocol(req, 0, &p) && is_token(p.base, p.len) &&
      to_cstr(p, proto, sizeof(proto)))
    protocol = proto;

  ws_mem mem;
  CHECK(ws_mem_resolve(&mem, NULL) == 0);
  ws_buf out = {NULL, 0, 0, 0};
  int rv = ws_hs_write_accept(&out, &mem, req, protocol, NULL, extra, 2);
  CHECK(rv == 0);
  const uint8_t *o = out.base + out.pos;
  size_t olen = ws_buf_size(&out);
  CHECK(olen > 16 && memcmp(o, "HTTP/1.1 101 ", 13) == 0);
  CHECK(ws_hs_head_end(o, olen, 0) == olen);

  /* what a client would do with it */
  CHECK(req->key.len == 24);
  char key[24];
  memcpy(key, req->key.base, 24);
  char accept[28];
  ws_handshake_accept_key(req->key.base, req->key.len, accept);
  ws_header hs[16];
  ws_response resp;
  CHECK(ws_hs_parse_response(&resp, hs, 16, o, olen) == 0);
  CHECK(resp.status == 101);
  int seen = 0;
  for (size_t i = 0; i < resp.nheaders; i++) {
    if (ws_slice_ieq(resp.headers[i].name, "Sec-WebSocket-Accept")) {
      CHECK(resp.headers[i].value.len == 28);
      CHECK(memcmp(resp.headers[i].value.base, accept, 28) == 0);
      seen++;
    }
  }
  CHECK(seen == 1);
  ws_slice offered = {(const uint8_t *)proto, protocol ? strlen(proto) : 0};
  const char *why = NULL;
  rv = ws_hs_validate_response(&resp, key, offered, 0, &why);
  if (rv) fprintf(stderr, "validate: %s\n", why ? why : "?");
  CHECK(rv == 0);
  if (protocol) {
    CHECK(resp.protocol.len == strlen(protocol));
    CHECK(memcmp(resp.protocol.base, protocol, resp.protocol.len) == 0);
  } else {
    CHECK(resp.protocol.len == 0);
  }
  ws_buf_free(&out, &mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* exact-size copy so over-reads are caught */
  uint8_t *buf = malloc(size ? size : 1);
  CHECK(buf);
  if (size) memcpy(buf, data, size);

  size_t end = ws_hs_head_end(buf, size, 0);
  CHECK(end <= size);
  if (end) {
    CHECK(end >= 2 && buf[end - 1] == '\n' &&
          (buf[end - 2] == '\n' ||
           (end >= 3 && buf[end - 2] == '\r' && buf[end - 3] == '\n')));
    /* nothing ends earlier */
    CHECK(ws_hs_head_end(buf, end - 1, 0) == 0);
  }
  CHECK(head_end_incremental(buf, size, 1) == end);
  CHECK(head_end_incremental(buf, size, 7) == end);

  if (end) {
    uint8_t *head = malloc(end);
    CHECK(head);
    memcpy(head, buf, end);
    ws_header *headers = malloc(MAXH * sizeof(ws_header));
    CHECK(headers);
    ws_request req;
    int status = 0;
    const char *reason = NULL;
    int rv = ws_hs_parse_request(&req, headers, MAXH, head, end, &status,
                                 &reason);
    if (rv) {
      CHECK(rv == WS_ERR_HANDSHAKE);
      CHECK(status == 400 || status == 405 || status == 426 || status == 431);
      CHECK(reason != NULL && reason[0] != 0);
    } else {
      CHECK(memcmp(head + end - 4, "\r\n\r\n", 4) == 0);
      CHECK(req.nheaders <= MAXH && req.headers == headers);
      CHECK(inside(req.method, head, end) && inside(req.target, head, end));
      CHECK(inside(req.path, head, end) && inside(req.query, head, end));
      CHECK(inside(req.host, head, end) && inside(req.key, head, end));
      CHECK(inside(req.origin, head, end));
      CHECK(req.host.len > 0);
      CHECK(req.path.len <= req.target.len);
      check_accessors(&req, head, end);

      /* the same with exactly enough, and one too few, header slots */
      ws_header *exact = malloc(req.nheaders * sizeof(ws_header) + 1);
      CHECK(exact);
      ws_request r2;
      CHECK(ws_hs_parse_request(&r2, exact, req.nheaders, head, end, &status,
                                &reason) == 0);
      CHECK(r2.nheaders == req.nheaders);
      if (req.nheaders > 0) {
        status = 0;
        CHECK(ws_hs_parse_request(&r2, exact, req.nheaders - 1, head, end,
                                  &status, &reason) == WS_ERR_HANDSHAKE);
        CHECK(status == 431);
      }
      free(exact);
      check_accept(&req);
    }
    free(headers);
    free(head);
  }
  free(buf);
  return 0;
}
