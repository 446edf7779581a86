/*
 * ws-proxy: the opening handshake. The client's request is held
 * (WS_LOOP_PAUSE in on_request) while the same request, less its
 * hop-by-hop headers and plus X-Forwarded-For, Forwarded,
 * X-Forwarded-Proto and X-Forwarded-Host, goes to an upstream. Its 101
 * opens the client with the subprotocol it chose; a refusal is passed
 * on with its status and end-to-end headers; an upstream that cannot be
 * reached gives 502 (after trying the others), one that does not answer
 * in time 504.
 * SPDX-License-Identifier: MIT
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hop_by_hop(ws_slice name, ws_slice connection) {
  static const char *const skip[] = {"host",
                                     "connection",
                                     "upgrade",
                                     "keep-alive",
                                     "proxy-connection",
                                     "proxy-authorization",
                                     "te",
                                     "trailer",
                                     "transfer-encoding",
                                     "content-length",
                                     "origin",
                                     "sec-websocket-key",
                                     "sec-websocket-version",
                                     "sec-websocket-extensions",
                                     "sec-websocket-protocol",
                                     "sec-websocket-accept",
                                     "x-forwarded-for",
                                     "forwarded",
                                     "x-forwarded-proto",
                                     "x-forwarded-host"};
  for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
    if (ws_slice_ieq(name, skip[i])) return 1;
  ws_slice list = connection, tok; /* headers named in Connection */
  char nm[128];
  if (name.len >= sizeof(nm)) return 0;
  memcpy(nm, name.base, name.len);
  nm[name.len] = 0;
  while (ws_list_next(&list, &tok))
    if (ws_slice_ieq(tok, nm)) return 1;
  return 0;
}

/* Writes the values of every |name| header of |req| into |buf|, each
 * followed by ", ", as far as they fit with room to spare (a chain too
 * long is cut). Returns the length written. */
static size_t join_header(const ws_request *req, const char *name, char *buf,
                          size_t cap) {
  size_t tl = 0;
  ws_slice v;
  buf[0] = 0;
  for (size_t i = 0; ws_request_header(req, name, i, &v); i++) {
    if (v.len + 3 + 256 > cap - tl) break; /* keep room for the client */
    memcpy(buf + tl, v.base, v.len);
    tl += v.len;
    buf[tl++] = ',';
    buf[tl++] = ' ';
    buf[tl] = 0;
  }
  return tl;
}

/* The upstream request's text, one block: strings put one after the
 * other. */
typedef struct arena {
  char *s, *end;
  int full;
} arena;

static const char *put(arena *a, const void *ptr, size_t len) {
  if (a->full || (size_t)(a->end - a->s) < len + 1) {
    a->full = 1;
    return "";
  }
  char *r = a->s;
  if (len) memcpy(r, ptr, len);
  r[len] = 0;
  a->s += len + 1;
  return r;
}

/* Appends X-Forwarded-For, Forwarded, X-Forwarded-Proto and
 * X-Forwarded-Host (what came, then this hop) to |kv|. */
static size_t forwarded_headers(const pair *p, const ws_request *req, arena *a,
                                ws_kv *kv) {
  size_t n = 0;
  char ip[64], bare[64], tmp[2048];
  snprintf(ip, sizeof(ip), "%s", p->peer);
  char *colon = strrchr(ip, ':');
  if (colon) *colon = 0; /* "1.2.3.4", "[::1]" */
  snprintf(bare, sizeof(bare), "%s", ip[0] == '[' ? ip + 1 : ip);
  if (bare[0] && bare[strlen(bare) - 1] == ']') bare[strlen(bare) - 1] = 0;
  size_t tl = join_header(req, "X-Forwarded-For", tmp, sizeof(tmp));
  snprintf(tmp + tl, sizeof(tmp) - tl, "%s", bare);
  kv[n].name = "X-Forwarded-For";
  kv[n++].value = put(a, tmp, strlen(tmp));
  tl = join_header(req, "Forwarded", tmp, sizeof(tmp));
  snprintf(tmp + tl, sizeof(tmp) - tl,
           ip[0] == '[' ? "for=\"%s\";proto=%s" : "for=%s;proto=%s", ip,
           opt.listen_tp ? "https" : "http");
  if (req->host.len && req->host.len < 256) {
    size_t l = strlen(tmp);
    snprintf(tmp + l, sizeof(tmp) - l, ";host=\"%.*s\"", (int)req->host.len,
             (const char *)req->host.base);
  }
  kv[n].name = "Forwarded";
  kv[n++].value = put(a, tmp, strlen(tmp));
  kv[n].name = "X-Forwarded-Proto";
  kv[n++].value = opt.listen_tp ? "wss" : "ws";
  if (req->host.len) {
    kv[n].name = "X-Forwarded-Host";
    kv[n++].value = put(a, req->host.base, req->host.len);
  }
  return n;
}

/* Copies what the upstream request needs out of |req| into one block. */
static int build_request(pair *p, const ws_request *req) {
  size_t need = 4096 + req->target.len + req->origin.len + req->host.len * 2;
  for (size_t i = 0; i < req->nheaders; i++)
    need += req->headers[i].name.len + req->headers[i].value.len + 2 +
            sizeof(ws_kv) + sizeof(char *) * 2 + 16;
  p->arena = malloc(need);
  if (!p->arena) return -1;
  ws_kv *kv = (ws_kv *)(void *)p->arena;
  size_t nkv = 0, kvcap = req->nheaders + 4, nprotos = 0;
  const char **protos = (const char **)(void *)(kv + kvcap);
  ws_slice pr, conn_hdr = {NULL, 0};
  while (ws_request_protocol(req, nprotos, &pr))
    nprotos++;
  arena a = {(char *)(protos + nprotos + 1), p->arena + need, 0};
  for (size_t i = 0; i < nprotos; i++) {
    ws_request_protocol(req, i, &pr);
    protos[i] = put(&a, pr.base, pr.len);
  }
  ws_request_header(req, "Connection", 0, &conn_hdr);
  for (size_t i = 0; i < req->nheaders; i++) {
    const ws_header *h = &req->headers[i];
    if (hop_by_hop(h->name, conn_hdr)) continue;
    kv[nkv].name = put(&a, h->name.base, h->name.len);
    kv[nkv++].value = put(&a, h->value.base, h->value.len);
  }
  nkv += forwarded_headers(p, req, &a, kv + nkv);
  memset(&p->rq, 0, sizeof(p->rq));
  p->rq.headers = kv;
  p->rq.nheaders = nkv;
  p->rq.protocols = protos;
  p->rq.nprotocols = nprotos;
  if (req->origin.base)
    p->rq.origin = put(&a, req->origin.base, req->origin.len);
  /* the upstream's path prefix goes before it (upstream.c) */
  p->rq.path = put(&a, req->target.base, req->target.len);
  return a.full ? -1 : 0;
}

char *end_to_end_headers(const ws_response *r, ws_kv *h, size_t cap,
                         size_t *pnh) {
  size_t need = 1, nh = 0;
  ws_slice none = {NULL, 0};
  for (size_t i = 0; i < r->nheaders; i++)
    need += r->headers[i].name.len + r->headers[i].value.len + 2;
  char *block = malloc(need);
  arena a = {block, block + need, 0};
  for (size_t i = 0; block && i < r->nheaders && nh < cap; i++) {
    const ws_header *hd = &r->headers[i];
    if (hop_by_hop(hd->name, none) || ws_slice_ieq(hd->name, "date") ||
        ws_slice_ieq(hd->name, "server") ||
        ws_slice_ieq(hd->name, "content-type"))
      continue;
    h[nh].name = put(&a, hd->name.base, hd->name.len);
    h[nh++].value = put(&a, hd->value.base, hd->value.len);
  }
  *pnh = nh;
  return block;
}

void refuse(pair *p, int status, const ws_kv *h, size_t nh) {
  if (status < 400 || status > 599) status = 502;
  if (!p->first) p->first = "proxy";
  p->status = status;
  p->state = P_REFUSED;
  atomic_fetch_add(&m.refused[status], 1);
  ws_loop_conn *c = p->s[SIDE_CLIENT].conn;
  if (!c) return;
  if (ws_loop_reject(c, status, h, nh, NULL, 0) != 0)
    ws_loop_reject(c, status, NULL, 0, NULL, 0);
  ws_loop_resume(c);
}

void upstream_not_opened(pair *p, const ws_loop_close_info *info) {
  int status = 502;
  if (info->http_status) {
    status = info->http_status;
    upstream_ok(p->ups);
  } else {
    upstream_failed(p->ups);
    if (info->error == WS_ERR_TIMEOUT) status = 504;
    /* refused, timed out, TLS or handshake failure: the next one */
    if (p->s[SIDE_CLIENT].conn && start_upstream(p) == 0) return;
  }
  ws_kv h[16];
  size_t nh = 0;
  char *block = NULL;
  if (info->response) /* end-to-end headers of the refusal go along */
    block = end_to_end_headers(info->response, h, 16, &nh);
  p->first = info->http_status ? "upstream" : "proxy"; /* refused it */
  if (p->s[SIDE_CLIENT].conn)
    refuse(p, status, h, nh);
  else
    p->status = status;
  free(block);
  pair_maybe_end(p);
}

int on_request(ws_loop_conn *conn, void *ud, const ws_request *req) {
  worker *w = ws_loop_user_data(ws_loop_conn_loop(conn));
  if (ud == &admin_tag) {
    ws_loop_reject(conn, 404, NULL, 0, NULL, 0);
    return 0;
  }
  pair *p = calloc(1, sizeof(*p));
  if (!p) {
    ws_loop_reject(conn, 503, NULL, 0, NULL, 0);
    return 0;
  }
  p->w = w;
  p->t0_ms = mono_ms();
  p->s[SIDE_CLIENT].conn = conn;
  p->s[SIDE_CLIENT].code = p->s[SIDE_UPSTREAM].code = 1006;
  p->next = w->pairs;
  if (w->pairs) w->pairs->prev = p;
  w->pairs = p;
  ws_loop_conn_set_user_data(conn, p);
  ws_loop_conn_peer(conn, p->peer, sizeof(p->peer));
  p->gate = gate_of(conn);
  gate_get_info(p->gate)->pair = p;
  p->path = dup_slice(req->target);
  if (!p->path || build_request(p, req) != 0 || start_upstream(p) != 0) {
    refuse(p, 502, NULL, 0);
    return 0;
  }
  return WS_LOOP_PAUSE; /* answered when the upstream answers */
}

/* The upstream is open: the client gets its 101, with the subprotocol
 * and the end-to-end headers of the upstream's (Set-Cookie ...), when
 * |r| is known. */
static void open_client(pair *p, ws_loop_conn *up, const ws_response *r) {
  p->state = P_OPEN;
  upstream_ok(p->ups);
  free(p->arena);
  p->arena = NULL;
  ws_loop_conn *cl = p->s[SIDE_CLIENT].conn;
  if (!cl || p->client_gone) {
    ws_loop_close(up, 1001, "client gone", 11);
    return;
  }
  ws_slice pr = ws_conn_protocol(ws_loop_conn_ws(up));
  if (pr.len) p->proto = dup_slice(pr);
  ws_kv h[32];
  ws_accept_params ap;
  memset(&ap, 0, sizeof(ap));
  ap.protocol = p->proto;
  char *block = r ? end_to_end_headers(r, h, 32, &ap.nheaders) : NULL;
  ap.headers = block ? h : NULL;
  if (!block) ap.nheaders = 0;
  int rv = ws_loop_accept(cl, &ap);
  if (rv == WS_ERR_INVALID_ARGUMENT && ap.nheaders) { /* a header it took */
    ap.nheaders = 0;
    rv = ws_loop_accept(cl, &ap);
  }
  free(block);
  if (rv != 0) {
    refuse(p, 502, NULL, 0);
    ws_loop_close(up, 1001, "client refused", 14);
    return;
  }
  ws_pmd_params pmd;
  ws_conn_pmd(ws_loop_conn_ws(cl), &pmd);
  gate_get_info(p->gate)->pmd = pmd.enabled;
  p->status = 101;
  p->counted_open = 1;
  atomic_fetch_add(&m.open, 1);
  atomic_fetch_add(&m.accepted, 1);
  ws_loop_resume(cl);
}

/* Posted from on_open: the upstreams whose open event is kept have their
 * answer at hand (ws_loop_conn_response()): their clients are opened,
 * then the events are delivered again. */
static void open_kept(ws_loop *loop, void *arg) {
  worker *w = ws_loop_user_data(loop);
  (void)arg;
  for (pair *p = w->pairs; p; p = p->next) {
    ws_loop_conn *up = p->s[SIDE_UPSTREAM].conn;
    if (!p->open_kept || !up) continue;
    p->open_kept = 0;
    if (p->state == P_CONNECTING) open_client(p, up, ws_loop_conn_response(up));
    ws_loop_resume(up);
  }
}

int on_open(ws_loop_conn *conn, void *ud) {
  pair *p = ud;
  if (!p || side_of(p, conn) == SIDE_CLIENT || p->state != P_CONNECTING)
    return 0; /* an upstream's open delivered again: done already */
  /* Keep the event: its answer stays readable until it is resumed. */
  if (ws_loop_post_call(ws_loop_conn_loop(conn), open_kept, NULL) == 0) {
    p->open_kept = 1;
    return WS_LOOP_PAUSE;
  }
  open_client(p, conn, NULL);
  return 0;
}
