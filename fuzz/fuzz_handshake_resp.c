/*
 * Fuzz target: the client side of the opening handshake (RFC 6455 4.1):
 * ws_hs_parse_response and ws_hs_validate_response with a fixed key.
 * SPDX-License-Identifier: MIT
 *
 * Input: raw bytes as a server would send them (the head is cut at
 * ws_hs_head_end, as the connection does).
 * Invariants: slices lie inside the head; validation passes only for a
 * 101 with exactly one Sec-WebSocket-Accept equal to the accept key of
 * the fixed Sec-WebSocket-Key, a subprotocol that was offered (or none),
 * and no extensions unless offered; WS_ERR_REJECTED exactly for a
 * status other than 101; every failure has a reason.
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

/* RFC 6455 1.3 example */
static const char key[24] = {'d', 'G', 'h', 'l', 'I', 'H', 'N', 'h',
                             'b', 'X', 'B', 's', 'Z', 'S', 'B', 'u',
                             'b', '2', '5', 'j', 'Z', 'Q', '=', '='};
static const char accept_ref[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static int inside(ws_slice s, const uint8_t *buf, size_t len) {
  if (s.len == 0) return 1;
  return s.base >= buf && s.base + s.len <= buf + len;
}

static size_t count_headers(const ws_response *r, const char *name,
                            ws_slice *plast) {
  size_t n = 0;
  for (size_t i = 0; i < r->nheaders; i++) {
    if (ws_slice_ieq(r->headers[i].name, name)) {
      if (plast && n == 0) *plast = r->headers[i].value;
      n++;
    }
  }
  return n;
}

static int in_list(ws_slice list, ws_slice tok) {
  ws_slice t;
  while (ws_list_next(&list, &t))
    if (t.len == tok.len && memcmp(t.base, tok.base, t.len) == 0) return 1;
  return 0;
}

static int same_slice(ws_slice a, ws_slice b) {
  return a.base == b.base && a.len == b.len;
}

/* The connection checks a response in one pass, ws_hs_check_response():
 * the same verdict and reason as the two steps, and the same response. */
static void same_in_one_pass(const ws_response *r1, const uint8_t *head,
                             size_t end, ws_slice offered, int ext, int v1,
                             const char *why1) {
  ws_response r2;
  static ws_header h2[MAXH];
  const char *why2 = NULL;
  ws_slice line = {NULL, 0};
  int v2 = ws_hs_check_response(&r2, h2, MAXH, head, end, key, offered, ext,
                                &why2, &line);
  CHECK(v1 == v2);
  if (v1) {
    CHECK(why2 != NULL && strcmp(why1, why2) == 0);
    return;
  }
  CHECK(r1->status == r2.status && same_slice(r1->reason, r2.reason));
  CHECK(same_slice(r1->protocol, r2.protocol));
  CHECK(same_slice(r1->extensions, r2.extensions));
  CHECK(r1->nheaders == r2.nheaders);
  for (size_t i = 0; i < r1->nheaders; i++)
    CHECK(same_slice(r1->headers[i].name, r2.headers[i].name) &&
          same_slice(r1->headers[i].value, r2.headers[i].value));
  CHECK(!line.len || inside(line, head, end));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char acc[28];
  ws_handshake_accept_key((const uint8_t *)key, 24, acc);
  if (memcmp(acc, accept_ref, 28) != 0) abort();

  size_t end = ws_hs_head_end(data, size, 0);
  if (!end) return 0;
  uint8_t *head = malloc(end);
  CHECK(head);
  memcpy(head, data, end);
  ws_header *headers = malloc(MAXH * sizeof(ws_header));
  CHECK(headers);
  ws_response resp;
  int rv = ws_hs_parse_response(&resp, headers, MAXH, head, end);
  CHECK(rv == 0 || rv == WS_ERR_HANDSHAKE);
  if (rv) { /* malformed for the one pass too */
    ws_slice none = {NULL, 0};
    same_in_one_pass(&resp, head, end, none, 0, rv, "malformed response");
  }
  if (rv == 0) {
    CHECK(resp.status >= 0 && resp.status <= 999);
    CHECK(resp.nheaders <= MAXH);
    CHECK(inside(resp.reason, head, end));
    CHECK(inside(resp.protocol, head, end));
    CHECK(inside(resp.extensions, head, end));
    for (size_t i = 0; i < resp.nheaders; i++) {
      CHECK(inside(resp.headers[i].name, head, end));
      CHECK(inside(resp.headers[i].value, head, end));
      CHECK(resp.headers[i].name.len > 0);
    }
    static const char *const offers[3] = {"", "chat", "chat, superchat"};
    for (int o = 0; o < 3; o++) {
      for (int ext = 0; ext <= 1; ext++) {
        ws_slice offered = {(const uint8_t *)offers[o], strlen(offers[o])};
        const char *why = NULL;
        int v = ws_hs_validate_response(&resp, key, offered, ext, &why);
        same_in_one_pass(&resp, head, end, offered, ext, v, why);
        CHECK(v == 0 || v == WS_ERR_HANDSHAKE || v == WS_ERR_REJECTED);
        CHECK((v == WS_ERR_REJECTED) == (resp.status != 101));
        if (v) {
          CHECK(why != NULL && why[0] != 0);
          continue;
        }
        ws_slice a = {NULL, 0};
        CHECK(count_headers(&resp, "Sec-WebSocket-Accept", &a) == 1);
        CHECK(a.len == 28 && memcmp(a.base, accept_ref, 28) == 0);
        /* at most one subprotocol in all, and one that was offered */
        size_t nproto = 0;
        for (size_t i = 0; i < resp.nheaders; i++) {
          ws_slice list = resp.headers[i].value, t;
          int isproto =
              ws_slice_ieq(resp.headers[i].name, "Sec-WebSocket-Protocol");
          int isext =
              ws_slice_ieq(resp.headers[i].name, "Sec-WebSocket-Extensions");
          while ((isproto || isext) && ws_list_next(&list, &t)) {
            if (isproto) {
              CHECK(in_list(offered, t));
              nproto++;
            }
            /* no extension in use unless one was offered */
            if (isext) CHECK(ext);
          }
        }
        CHECK(nproto <= 1);
        if (resp.protocol.len) CHECK(in_list(offered, resp.protocol));
      }
    }
  }
  free(headers);
  free(head);
  return 0;
}
