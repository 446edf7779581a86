/*
 * ws-proxy: a WebSocket reverse proxy (what a CDN edge runs in front of
 * an origin), on the loop (<ws/ws_loop.h>) and, for wss://, the mbedTLS
 * adapter.
 *
 *   ws-proxy --listen [HOST:]PORT --upstream ws[s]://HOST:PORT[/PATH] ...
 *
 * Each client gets its own connection to an upstream. The client's
 * opening handshake is held (WS_LOOP_PAUSE in on_request) until the
 * upstream answers: its 101 opens the client with the subprotocol it
 * chose, a refusal is passed on with its status (403 stays 403), an
 * upstream that cannot be reached gives 502 and one that does not answer
 * in time 504. Messages then stream through chunk by chunk
 * (WS_DELIVER_STREAM in, ws_loop_send() with WS_SEND_MORE out), so a
 * message of any size passes in constant memory; permessage-deflate is
 * negotiated on each side on its own. Backpressure holds end to end: when
 * one side's pending output goes over the loop's high-water mark
 * (on_writable 0), the proxy stops reading the other side
 * (ws_loop_conn_pause_reading()) until it drains. Close codes and
 * reasons go across; an upstream that vanishes gives the client 1014, a
 * client that vanishes gives the upstream 1001.
 *
 * Metering: one JSON line per connection at its end (stderr or
 * --access-log FILE) and Prometheus counters on --admin HOST:PORT
 * (GET /metrics). SIGTERM (or SIGINT): the listeners close at once (a new
 * process bound to the same port with SO_REUSEPORT takes over), every
 * client gets 1012 and every upstream 1001, and the process exits when
 * they are closed or after --drain-timeout.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/ws_loop.h>
#ifdef WS_EXAMPLES_TLS
#  include <ws/ws_mbedtls.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_UPSTREAMS 32
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

/* ---- configuration --------------------------------------------------------
 */

typedef struct upstream {
  const char *url;
  ws_loop_url u;
  const ws_loop_transport *tp; /* NULL: plain */
  atomic_int open;             /* connections to it now */
  atomic_uint fails;           /* connect failures in a row */
  atomic_uint_fast64_t down_until;
} upstream;

static struct {
  const char *listen_host, *admin_host, *log_path;
  uint16_t listen_port, admin_port;
  int have_admin;
  upstream ups[MAX_UPSTREAMS];
  int nups;
  unsigned threads;
  uint64_t max_message;
  uint32_t ping_ms, idle_ms, up_ping_ms, up_idle_ms, connect_ms, drain_ms;
  uint32_t high_water;
  int deflate_client, deflate_upstream;
  int log_fd;
  const ws_loop_transport *listen_tp;
} opt;

/* ---- metrics (all threads) ------------------------------------------------
 */

#define NCODES 5000
static struct {
  atomic_long open;
  atomic_ulong accepted;
  atomic_ulong refused[600];
  atomic_ulong bytes_to_clients, bytes_to_upstreams; /* payload */
  atomic_ulong msgs_to_clients, msgs_to_upstreams;
  atomic_ulong wire_to_clients, wire_to_upstreams; /* at close */
  atomic_ulong closes_client[NCODES], closes_upstream[NCODES];
} m;

/* ---- connections ----------------------------------------------------------
 */

enum { P_CONNECTING = 0, P_OPEN, P_REFUSED };
enum { SIDE_CLIENT = 0, SIDE_UPSTREAM = 1 };

typedef struct side {
  ws_loop_conn *conn;
  ws_stats st;        /* at its close */
  uint16_t code;      /* the close code it sent us (1006: none) */
  uint16_t sent;      /* the one we sent it */
  char reason[124];   /* its close reason */
  uint8_t done, kept; /* on_close seen; an event kept (queue full) */
} side;

typedef struct worker worker;

typedef struct pair {
  struct pair *prev, *next;
  worker *w;
  side s[2];
  upstream *ups;
  uint32_t tried; /* upstreams tried, a bit each */
  int state, status, attempts;
  uint8_t counted_open, client_gone, ups_counted;
  const char *first; /* who closed first */
  uint64_t t0_ms;    /* monotonic start */
  char peer[64];
  char *path, *proto;
  /* the upstream request, kept until the upstream answers */
  char *arena;
  ws_client_params rq;
} pair;

struct worker {
  ws_loop *loop;
  pair *pairs;
};

static worker workers[MAX_THREADS];
static int nworkers;
static int admin_tag; /* user data of the admin listener's connections */

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *dup_slice(ws_slice s) {
  char *p = malloc(s.len + 1);
  if (!p) return NULL;
  if (s.len) memcpy(p, s.base, s.len);
  p[s.len] = 0;
  return p;
}

/* ---- the access log -------------------------------------------------------
 */

typedef struct sbuf {
  char *b;
  size_t len, cap;
} sbuf;

static void sb_printf(sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void sb_printf(sbuf *sb, const char *fmt, ...) {
  va_list ap;
  if (sb->len >= sb->cap) return;
  va_start(ap, fmt);
  int n = vsnprintf(sb->b + sb->len, sb->cap - sb->len, fmt, ap);
  va_end(ap);
  if (n > 0) sb->len += (size_t)n;
  if (sb->len > sb->cap) sb->len = sb->cap;
}

static void sb_json_str(sbuf *sb, const char *s) {
  sb_printf(sb, "\"");
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      sb_printf(sb, "\\%c", c);
    else if (c < 0x20)
      sb_printf(sb, "\\u%04x", c);
    else
      sb_printf(sb, "%c", c);
  }
  sb_printf(sb, "\"");
}

static void access_log(const pair *p) {
  char line[4096];
  sbuf sb = {line, 0, sizeof(line) - 2};
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  const side *c = &p->s[SIDE_CLIENT], *u = &p->s[SIDE_UPSTREAM];
  sb_printf(&sb, "{\"time\":\"%s.%03ldZ\",\"client\":", when,
            ts.tv_nsec / 1000000);
  sb_json_str(&sb, p->peer);
  sb_printf(&sb, ",\"path\":");
  sb_json_str(&sb, p->path);
  sb_printf(&sb, ",\"subprotocol\":");
  sb_json_str(&sb, p->proto);
  sb_printf(&sb, ",\"upstream\":");
  sb_json_str(&sb, p->ups ? p->ups->url : "");
  sb_printf(&sb,
            ",\"attempts\":%d,\"status\":%d,\"duration_ms\":%" PRIu64
            ",\"msgs_to_upstream\":%" PRIu64 ",\"bytes_to_upstream\":%" PRIu64
            ",\"msgs_to_client\":%" PRIu64 ",\"bytes_to_client\":%" PRIu64
            ",\"wire_client_in\":%" PRIu64 ",\"wire_client_out\":%" PRIu64
            ",\"wire_upstream_in\":%" PRIu64 ",\"wire_upstream_out\":%" PRIu64,
            p->attempts, p->status, mono_ms() - p->t0_ms, c->st.msgs_in,
            c->st.bytes_in, c->st.msgs_out, c->st.bytes_out, c->st.wire_in,
            c->st.wire_out, u->st.wire_in, u->st.wire_out);
  sb_printf(&sb, ",\"client_close\":{\"code\":%u,\"reason\":", c->code);
  sb_json_str(&sb, c->reason);
  sb_printf(&sb, ",\"sent\":%u},\"upstream_close\":{\"code\":%u,\"reason\":",
            c->sent, u->code);
  sb_json_str(&sb, u->reason);
  sb_printf(&sb, ",\"sent\":%u},\"first\":", u->sent);
  sb_json_str(&sb, p->first ? p->first : "");
  sb_printf(&sb, "}");
  line[sb.len++] = '\n';
  ssize_t wr = write(opt.log_fd, line, sb.len); /* one line, one write */
  (void)wr;
}

/* ---- pairs ----------------------------------------------------------------
 */

static void pair_free(pair *p) {
  free(p->path);
  free(p->proto);
  free(p->arena);
  free(p);
}

/* Both sides are over (the client always has one; the upstream only if a
 * connect was started). */
static void pair_maybe_end(pair *p) {
  if (!p->s[SIDE_CLIENT].done || p->s[SIDE_UPSTREAM].conn) return;
  if (p->w) {
    access_log(p);
    if (p->counted_open) atomic_fetch_sub(&m.open, 1);
    if (p->prev)
      p->prev->next = p->next;
    else
      p->w->pairs = p->next;
    if (p->next) p->next->prev = p->prev;
    p->w = NULL;
  }
  pair_free(p);
}

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

/* Copies what the upstream request needs out of |req| into one block. */
static int build_request(pair *p, const ws_request *req) {
  size_t need = 4096 + req->target.len + req->origin.len + req->host.len * 2;
  for (size_t i = 0; i < req->nheaders; i++)
    need += req->headers[i].name.len + req->headers[i].value.len + 2 +
            sizeof(ws_kv) + sizeof(char *) * 2 + 16;
  char *a = malloc(need);
  if (!a) return -1;
  p->arena = a;
  char *end = a + need;
  ws_kv *kv = (ws_kv *)(void *)a;
  size_t nkv = 0, kvcap = req->nheaders + 4;
  const char **protos = (const char **)(void *)(kv + kvcap);
  size_t nprotos = 0;
  ws_slice pr;
  while (ws_request_protocol(req, nprotos, &pr))
    nprotos++;
  char *s = (char *)(protos + nprotos + 1);
#define PUT(ptr, len)                                                          \
  do {                                                                         \
    if ((size_t)(end - s) < (len) + 1) return -1;                              \
    memcpy(s, (ptr), (len));                                                   \
    s[(len)] = 0;                                                              \
    s += (len) + 1;                                                            \
  } while (0)
  for (size_t i = 0; i < nprotos; i++) {
    ws_request_protocol(req, i, &pr);
    protos[i] = s;
    PUT(pr.base, pr.len);
  }
  ws_slice conn_hdr = {NULL, 0};
  ws_request_header(req, "Connection", 0, &conn_hdr);
  for (size_t i = 0; i < req->nheaders; i++) {
    const ws_header *h = &req->headers[i];
    if (hop_by_hop(h->name, conn_hdr)) continue;
    kv[nkv].name = s;
    PUT(h->name.base, h->name.len);
    kv[nkv].value = s;
    PUT(h->value.base, h->value.len);
    nkv++;
  }
  /* X-Forwarded-For and Forwarded: what came, then the client */
  char ip[64];
  snprintf(ip, sizeof(ip), "%s", p->peer);
  char *colon = strrchr(ip, ':');
  if (colon) *colon = 0; /* "1.2.3.4", "[::1]" */
  char bare[64];
  snprintf(bare, sizeof(bare), "%s", ip[0] == '[' ? ip + 1 : ip);
  if (bare[0] && bare[strlen(bare) - 1] == ']') bare[strlen(bare) - 1] = 0;
  char tmp[2048];
  size_t tl = join_header(req, "X-Forwarded-For", tmp, sizeof(tmp));
  snprintf(tmp + tl, sizeof(tmp) - tl, "%s", bare);
  kv[nkv].name = "X-Forwarded-For";
  kv[nkv].value = s;
  PUT(tmp, strlen(tmp));
  nkv++;
  tl = join_header(req, "Forwarded", tmp, sizeof(tmp));
  snprintf(tmp + tl, sizeof(tmp) - tl,
           ip[0] == '[' ? "for=\"%s\";proto=%s" : "for=%s;proto=%s", ip,
           opt.listen_tp ? "https" : "http");
  if (req->host.len && req->host.len < 256) {
    size_t l = strlen(tmp);
    snprintf(tmp + l, sizeof(tmp) - l, ";host=\"%.*s\"", (int)req->host.len,
             (const char *)req->host.base);
  }
  kv[nkv].name = "Forwarded";
  kv[nkv].value = s;
  PUT(tmp, strlen(tmp));
  nkv++;
  kv[nkv].name = "X-Forwarded-Proto";
  kv[nkv].value = opt.listen_tp ? "wss" : "ws";
  nkv++;
  if (req->host.len) {
    kv[nkv].name = "X-Forwarded-Host";
    kv[nkv].value = s;
    PUT(req->host.base, req->host.len);
    nkv++;
  }
  memset(&p->rq, 0, sizeof(p->rq));
  p->rq.headers = kv;
  p->rq.nheaders = nkv;
  p->rq.protocols = protos;
  p->rq.nprotocols = nprotos;
  if (req->origin.base) {
    p->rq.origin = s;
    PUT(req->origin.base, req->origin.len);
  }
  p->rq.path = s; /* the upstream's path prefix, then the client's target */
  PUT(req->target.base, req->target.len);
#undef PUT
  return 0;
}

/* The upstream with the fewest open connections among those not tried
 * yet and not backing off; if all back off, the one free soonest. */
static upstream *pick_upstream(pair *p) {
  uint64_t now = mono_ms();
  upstream *best = NULL, *soonest = NULL;
  for (int i = 0; i < opt.nups; i++) {
    upstream *u = &opt.ups[i];
    if (p->tried & (1u << i)) continue;
    uint64_t du = atomic_load(&u->down_until);
    if (du > now) {
      if (!soonest || du < atomic_load(&soonest->down_until)) soonest = u;
      continue;
    }
    if (!best || atomic_load(&u->open) < atomic_load(&best->open)) best = u;
  }
  return best ? best : soonest;
}

static void upstream_failed(upstream *u) {
  unsigned f = atomic_fetch_add(&u->fails, 1) + 1;
  uint64_t d = BACKOFF_MIN_MS;
  for (unsigned i = 1; i < f && d < BACKOFF_MAX_MS; i++)
    d *= 2;
  if (d > BACKOFF_MAX_MS) d = BACKOFF_MAX_MS;
  atomic_store(&u->down_until, mono_ms() + d);
}

static void upstream_ok(upstream *u) {
  atomic_store(&u->fails, 0);
  atomic_store(&u->down_until, 0);
}

static ws_config up_cfg, cl_cfg;

/* Starts the upstream connection on the next upstream to try. Returns 0,
 * or -1 when none could be started. */
static int start_upstream(pair *p) {
  worker *w = p->w;
  for (;;) {
    upstream *u = pick_upstream(p);
    if (!u) return -1;
    p->tried |= 1u << (u - opt.ups);
    p->ups = u;
    p->attempts++;
    char path[4096];
    const char *base = u->u.path;
    size_t bl = strcspn(base, "?");
    while (bl > 0 && base[bl - 1] == '/')
      bl--;
    snprintf(path, sizeof(path), "%.*s%s", (int)bl, base, p->path);
    ws_loop_connect_params cp;
    memset(&cp, 0, sizeof(cp));
    cp.host = u->u.host;
    cp.port = u->u.port;
    cp.request = p->rq;
    cp.request.path = path;
    cp.config = &up_cfg;
    cp.user_data = p;
    cp.transport = u->tp;
    ws_loop_conn *c = NULL;
    if (ws_loop_connect(w->loop, &cp, &c) == 0) {
      p->s[SIDE_UPSTREAM].conn = c;
      atomic_fetch_add(&u->open, 1);
      p->ups_counted = 1;
      return 0;
    }
    upstream_failed(u);
  }
}

static void refuse(pair *p, int status, const ws_kv *h, size_t nh) {
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

/* ---- callbacks ------------------------------------------------------------
 */

static int side_of(const pair *p, const ws_loop_conn *c) {
  return p->s[SIDE_CLIENT].conn == c ? SIDE_CLIENT : SIDE_UPSTREAM;
}

static int on_request(ws_loop_conn *conn, void *ud, const ws_request *req) {
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
  p->path = dup_slice(req->target);
  if (!p->path || build_request(p, req) != 0 || start_upstream(p) != 0) {
    refuse(p, 502, NULL, 0);
    return 0;
  }
  return WS_LOOP_PAUSE; /* answered when the upstream answers */
}

static int on_open(ws_loop_conn *conn, void *ud) {
  pair *p = ud;
  if (!p || side_of(p, conn) == SIDE_CLIENT) return 0;
  p->state = P_OPEN;
  upstream_ok(p->ups);
  free(p->arena);
  p->arena = NULL;
  ws_loop_conn *cl = p->s[SIDE_CLIENT].conn;
  if (!cl || p->client_gone) {
    ws_loop_close(conn, 1001, "client gone", 11);
    return 0;
  }
  ws_slice pr = ws_conn_protocol(ws_loop_conn_ws(conn));
  if (pr.len) p->proto = dup_slice(pr);
  ws_accept_params ap;
  memset(&ap, 0, sizeof(ap));
  ap.protocol = p->proto;
  if (ws_loop_accept(cl, &ap) != 0) {
    refuse(p, 502, NULL, 0);
    ws_loop_close(conn, 1001, "client refused", 14);
    return 0;
  }
  p->status = 101;
  p->counted_open = 1;
  atomic_fetch_add(&m.open, 1);
  atomic_fetch_add(&m.accepted, 1);
  ws_loop_resume(cl);
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  pair *p = ud;
  int from = side_of(p, conn), to = !from;
  ws_loop_conn *dst = p->s[to].conn;
  if (!dst || p->state != P_OPEN) return 0; /* the other side is gone */
  ws_opcode op = ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
  uint32_t fl = (ev->flags & WS_EVF_FINAL) ? 0 : WS_SEND_MORE;
  int rv = ws_loop_send(dst, op, ev->data.base, ev->data.len, fl);
  if (rv == WS_ERR_WOULDBLOCK) { /* its queue is full: keep the chunk */
    p->s[from].kept = 1;
    return WS_LOOP_PAUSE;
  }
  if (rv != 0) return 0; /* closing: dropped */
  if (to == SIDE_CLIENT) {
    atomic_fetch_add(&m.bytes_to_clients, ev->data.len);
    if (!fl) atomic_fetch_add(&m.msgs_to_clients, 1);
  } else {
    atomic_fetch_add(&m.bytes_to_upstreams, ev->data.len);
    if (!fl) atomic_fetch_add(&m.msgs_to_upstreams, 1);
  }
  return 0;
}

/* Backpressure: one side over its high-water mark stops reading the
 * other, under its low-water mark starts it again. */
static int on_writable(ws_loop_conn *conn, void *ud, int writable) {
  pair *p = ud;
  if (!p || ud == &admin_tag) return 0;
  int other = !side_of(p, conn);
  ws_loop_conn *o = p->s[other].conn;
  if (!o) return 0;
  ws_loop_conn_pause_reading(o, !writable);
  if (writable && p->s[other].kept) {
    p->s[other].kept = 0;
    ws_loop_resume(o);
  }
  return 0;
}

static void copy_reason(char *dst, ws_slice r) {
  size_t n = r.len < 123 ? r.len : 123;
  if (n) memcpy(dst, r.base, n);
  dst[n] = 0;
}

static void count_close(atomic_ulong *arr, uint16_t code) {
  atomic_fetch_add(&arr[code < NCODES ? code : 0], 1);
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *info) {
  pair *p = ud;
  if (!p || ud == &admin_tag) return 0;
  int me = side_of(p, conn), other = !me;
  side *s = &p->s[me];
  ws_conn_stats(ws_loop_conn_ws(conn), &s->st);
  s->code = info->code;
  s->sent = info->sent_code;
  copy_reason(s->reason, info->reason);
  s->conn = NULL;
  s->done = 1;
  if (me == SIDE_CLIENT) {
    atomic_fetch_add(&m.wire_to_clients, s->st.wire_out);
    if (p->state == P_OPEN) count_close(m.closes_client, info->code);
  } else {
    atomic_fetch_add(&m.wire_to_upstreams, s->st.wire_out);
    if (p->ups_counted) atomic_fetch_sub(&p->ups->open, 1);
    p->ups_counted = 0;
    if (p->state == P_OPEN) count_close(m.closes_upstream, info->code);
  }
  ws_loop_conn *o = p->s[other].conn;

  if (me == SIDE_UPSTREAM && p->state == P_CONNECTING) {
    /* The upstream did not open: pass its refusal on, or try another. */
    int status = 502;
    if (info->http_status) {
      status = info->http_status;
      upstream_ok(p->ups);
    } else {
      upstream_failed(p->ups);
      if (info->error == WS_ERR_TIMEOUT) status = 504;
      /* refused, timed out, TLS or handshake failure: the next one */
      if (o && start_upstream(p) == 0) return 0;
    }
    ws_kv h[16];
    size_t nh = 0;
    char *hs = NULL;
    const ws_response *r = info->response;
    if (r) { /* end-to-end headers of the refusal go along */
      size_t need = 0;
      for (size_t i = 0; i < r->nheaders; i++)
        need += r->headers[i].name.len + r->headers[i].value.len + 2;
      hs = malloc(need + 1);
      char *q = hs;
      ws_slice none = {NULL, 0};
      for (size_t i = 0; hs && i < r->nheaders && nh < 16; i++) {
        const ws_header *hd = &r->headers[i];
        if (hop_by_hop(hd->name, none) || ws_slice_ieq(hd->name, "date") ||
            ws_slice_ieq(hd->name, "server") ||
            ws_slice_ieq(hd->name, "content-type"))
          continue;
        h[nh].name = q;
        memcpy(q, hd->name.base, hd->name.len);
        q += hd->name.len;
        *q++ = 0;
        h[nh].value = q;
        memcpy(q, hd->value.base, hd->value.len);
        q += hd->value.len;
        *q++ = 0;
        nh++;
      }
    }
    p->first = info->http_status ? "upstream" : "proxy"; /* refused it */
    if (o) {
      refuse(p, status, h, nh);
    } else {
      p->status = status;
    }
    free(hs);
    pair_maybe_end(p);
    return 0;
  }

  if (!p->first) p->first = me == SIDE_CLIENT ? "client" : "upstream";
  if (me == SIDE_CLIENT && p->state == P_CONNECTING) p->client_gone = 1;
  if (o) {
    /* Let the other side read its close reply, and pass the close on. */
    ws_loop_conn_pause_reading(o, 0);
    if (p->s[other].kept) {
      p->s[other].kept = 0;
      ws_loop_resume(o);
    }
    int clean = info->error == 0 && info->code != 1006;
    if (clean && info->code == 1005)
      ws_loop_close(o, 0, NULL, 0);
    else if (clean && ws_close_code_valid(info->code))
      ws_loop_close(o, info->code, info->reason.base, info->reason.len);
    else if (me == SIDE_CLIENT)
      ws_loop_close(o, 1001, "client gone", 11);
    else
      ws_loop_close(o, 1014, "bad gateway", 11);
  }
  pair_maybe_end(p);
  return 0;
}

/* ---- admin: /metrics ------------------------------------------------------
 */

static int on_http(ws_loop_conn *conn, void *ud, const ws_request *req) {
  static const ws_kv text[] = {
      {"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
  if (ud != &admin_tag || !ws_slice_ieq(req->path, "/metrics"))
    return ws_loop_http_respond(conn, 404, text, 1, "not found\n", 10), 0;
  size_t cap = 1 << 16;
  char *b = malloc(cap);
  if (!b) return ws_loop_http_respond(conn, 503, NULL, 0, NULL, 0), 0;
  sbuf sb = {b, 0, cap};
  sb_printf(&sb,
            "# TYPE wsproxy_connections_open gauge\n"
            "wsproxy_connections_open %ld\n"
            "# TYPE wsproxy_upgrades_accepted_total counter\n"
            "wsproxy_upgrades_accepted_total %lu\n"
            "# TYPE wsproxy_upgrades_refused_total counter\n",
            atomic_load(&m.open), atomic_load(&m.accepted));
  for (int i = 0; i < 600; i++) {
    unsigned long n = atomic_load(&m.refused[i]);
    if (n)
      sb_printf(&sb, "wsproxy_upgrades_refused_total{status=\"%d\"} %lu\n", i,
                n);
  }
  sb_printf(&sb,
            "# TYPE wsproxy_payload_bytes_total counter\n"
            "wsproxy_payload_bytes_total{direction=\"to_client\"} %lu\n"
            "wsproxy_payload_bytes_total{direction=\"to_upstream\"} %lu\n"
            "# TYPE wsproxy_messages_total counter\n"
            "wsproxy_messages_total{direction=\"to_client\"} %lu\n"
            "wsproxy_messages_total{direction=\"to_upstream\"} %lu\n"
            "# TYPE wsproxy_wire_bytes_total counter\n"
            "wsproxy_wire_bytes_total{direction=\"to_client\"} %lu\n"
            "wsproxy_wire_bytes_total{direction=\"to_upstream\"} %lu\n"
            "# TYPE wsproxy_closes_total counter\n",
            atomic_load(&m.bytes_to_clients),
            atomic_load(&m.bytes_to_upstreams), atomic_load(&m.msgs_to_clients),
            atomic_load(&m.msgs_to_upstreams), atomic_load(&m.wire_to_clients),
            atomic_load(&m.wire_to_upstreams));
  for (int sd = 0; sd < 2; sd++)
    for (int i = 0; i < NCODES; i++) {
      unsigned long n =
          atomic_load(sd ? &m.closes_upstream[i] : &m.closes_client[i]);
      if (n)
        sb_printf(&sb, "wsproxy_closes_total{side=\"%s\",code=\"%d\"} %lu\n",
                  sd ? "upstream" : "client", i, n);
    }
  sb_printf(&sb, "# TYPE wsproxy_upstream_open gauge\n");
  for (int i = 0; i < opt.nups; i++)
    sb_printf(&sb, "wsproxy_upstream_open{upstream=\"%s\"} %d\n",
              opt.ups[i].url, atomic_load(&opt.ups[i].open));
  ws_loop_http_respond(conn, 200, text, 1, b, sb.len);
  free(b);
  return 0;
}

/* ---- signals and the drain ------------------------------------------------
 */

static void drain(ws_loop *loop, void *arg) {
  (void)arg;
  worker *w = ws_loop_user_data(loop);
  ws_loop_close_listeners(loop);
  for (pair *p = w->pairs; p; p = p->next) {
    if (!p->first) p->first = "proxy";
    if (p->state != P_OPEN) continue;
    if (p->s[SIDE_CLIENT].conn)
      ws_loop_close(p->s[SIDE_CLIENT].conn, 1012, "service restart", 15);
    if (p->s[SIDE_UPSTREAM].conn)
      ws_loop_close(p->s[SIDE_UPSTREAM].conn, 1001, "going away", 10);
  }
  ws_loop_shutdown(loop, 1012, 0, opt.drain_ms);
}

static void *signal_thread(void *arg) {
  sigset_t *set = arg;
  int sig, n = 0;
  while (sigwait(set, &sig) == 0) {
    for (int i = 0; i < nworkers; i++) {
      if (n == 0)
        ws_loop_post_call(workers[i].loop, drain, NULL);
      else
        ws_loop_stop(workers[i].loop); /* a second signal: now */
    }
    n++;
  }
  return NULL;
}

static void *run(void *arg) { return (void *)(intptr_t)ws_loop_run(arg); }

/* ---- main -----------------------------------------------------------------
 */

static int usage(FILE *f, const char *argv0) {
  fprintf(
      f,
      "usage: %s --listen [HOST:]PORT --upstream ws[s]://HOST:PORT[/PATH] "
      "[options]\n"
      "  --listen [HOST:]PORT     where clients connect (host 127.0.0.1)\n"
      "  --port N                 the same as --listen 127.0.0.1:N\n"
      "  --upstream URL           the origin; several: the least loaded\n"
      "  --upstream-ca FILE       CA bundle for wss:// upstreams (system's)\n"
      "  --tls-cert FILE          serve wss://: certificate chain (PEM)\n"
      "  --tls-key FILE           ... and its private key (PEM)\n"
      "  --admin [HOST:]PORT      GET /metrics (Prometheus text format)\n"
      "  --access-log FILE        JSON lines, one per connection (stderr)\n"
      "  --ping-interval MS       ping an idle peer (25000, 0 off)\n"
      "  --idle-timeout MS        drop a peer silent after a ping (25000)\n"
      "  --upstream-ping-interval MS, --upstream-idle-timeout MS\n"
      "                           the same for upstreams (as above)\n"
      "  --connect-timeout MS     upstream connect + handshake: 504 (10000)\n"
      "  --drain-timeout MS       after SIGTERM, wait this long (10000)\n"
      "  --max-message BYTES      largest message (4294967296)\n"
      "  --high-water BYTES       pending output that pauses the other\n"
      "                           side (1048576)\n"
      "  --no-deflate             no permessage-deflate on either side\n"
      "  --threads N              N loops on one SO_REUSEPORT port (1)\n",
      argv0);
  return f == stdout ? 0 : 2;
}

static int num(const char *s, unsigned long long lo, unsigned long long hi,
               unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* "[HOST:]PORT", "[::1]:PORT" */
static int hostport(char *s, const char **phost, uint16_t *pport) {
  char *c = strrchr(s, ':');
  unsigned long long v;
  if (c && !(s[0] == '[' && strchr(c, ']'))) {
    *c = 0;
    if (num(c + 1, 0, 65535, &v) != 0) return -1;
    if (s[0] == '[') {
      s++;
      char *e = strchr(s, ']');
      if (e) *e = 0;
    }
    *phost = s;
  } else if (num(s, 0, 65535, &v) != 0) {
    return -1;
  }
  *pport = (uint16_t)v;
  return 0;
}

int main(int argc, char **argv) {
  const char *cert = NULL, *key = NULL, *ca = NULL;
  unsigned long long v;
  opt.listen_host = opt.admin_host = "127.0.0.1";
  opt.threads = 1;
  opt.max_message = 4ull << 30;
  opt.ping_ms = opt.idle_ms = 25000;
  opt.up_ping_ms = opt.up_idle_ms = UINT32_MAX;
  opt.connect_ms = 10000;
  opt.drain_ms = 10000;
  opt.high_water = 1u << 20;
  opt.deflate_client = opt.deflate_upstream = 1;
  opt.log_fd = 2;
  int have_listen = 0;
  for (int i = 1; i < argc; i++) {
    char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    int bad = 0;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout, argv[0]);
    if (!strcmp(a, "--no-deflate")) {
      opt.deflate_client = opt.deflate_upstream = 0;
      continue;
    }
    if (!val) return usage(stderr, argv[0]);
    i++;
    if (!strcmp(a, "--listen")) {
      bad = hostport(val, &opt.listen_host, &opt.listen_port);
      have_listen = 1;
    } else if (!strcmp(a, "--port")) {
      bad = num(val, 0, 65535, &v);
      opt.listen_port = (uint16_t)v;
      have_listen = 1;
    } else if (!strcmp(a, "--admin")) {
      bad = hostport(val, &opt.admin_host, &opt.admin_port);
      opt.have_admin = 1;
    } else if (!strcmp(a, "--upstream")) {
      if (opt.nups == MAX_UPSTREAMS) return usage(stderr, argv[0]);
      upstream *u = &opt.ups[opt.nups++];
      u->url = val;
      bad = ws_loop_parse_url(val, &u->u) != 0;
    } else if (!strcmp(a, "--upstream-ca")) {
      ca = val;
    } else if (!strcmp(a, "--tls-cert")) {
      cert = val;
    } else if (!strcmp(a, "--tls-key")) {
      key = val;
    } else if (!strcmp(a, "--access-log")) {
      opt.log_path = val;
    } else {
      uint32_t *t = !strcmp(a, "--ping-interval")            ? &opt.ping_ms
                    : !strcmp(a, "--idle-timeout")           ? &opt.idle_ms
                    : !strcmp(a, "--upstream-ping-interval") ? &opt.up_ping_ms
                    : !strcmp(a, "--upstream-idle-timeout")  ? &opt.up_idle_ms
                    : !strcmp(a, "--connect-timeout")        ? &opt.connect_ms
                    : !strcmp(a, "--drain-timeout")          ? &opt.drain_ms
                    : !strcmp(a, "--high-water")             ? &opt.high_water
                                                             : NULL;
      if (t) {
        bad = num(val, 0, 0x7fffffff, &v);
        *t = (uint32_t)v;
      } else if (!strcmp(a, "--max-message")) {
        bad = num(val, 1, UINT64_MAX, &v);
        opt.max_message = v;
      } else if (!strcmp(a, "--threads")) {
        bad = num(val, 1, MAX_THREADS, &v);
        opt.threads = (unsigned)v;
      } else {
        bad = 1;
      }
    }
    if (bad) {
      fprintf(stderr, "ws-proxy: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  if (!have_listen || opt.nups == 0) return usage(stderr, argv[0]);
  if (opt.up_ping_ms == UINT32_MAX) opt.up_ping_ms = opt.ping_ms;
  if (opt.up_idle_ms == UINT32_MAX) opt.up_idle_ms = opt.idle_ms;
  if (opt.log_path) {
    opt.log_fd = open(opt.log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (opt.log_fd < 0) {
      perror(opt.log_path);
      return 1;
    }
  }

  /* Client side: streaming, large messages, bounded by the high water. */
  ws_config_default(&cl_cfg, WS_ROLE_SERVER);
  cl_cfg.delivery = WS_DELIVER_STREAM;
  cl_cfg.max_message = cl_cfg.max_frame_payload = opt.max_message;
  cl_cfg.max_fragments = 0;
  cl_cfg.max_out_queue = opt.high_water * 4u + (16u << 20);
  cl_cfg.ping_interval_ms = opt.ping_ms;
  cl_cfg.pong_timeout_ms = opt.idle_ms;
  cl_cfg.pmd.enable = (uint8_t)opt.deflate_client;
  up_cfg = cl_cfg;
  up_cfg.role = WS_ROLE_CLIENT;
  up_cfg.ping_interval_ms = opt.up_ping_ms;
  up_cfg.pong_timeout_ms = opt.up_idle_ms;
  up_cfg.handshake_timeout_ms = opt.connect_ms;
  up_cfg.pmd.enable = (uint8_t)opt.deflate_upstream;

#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx *stls = NULL, *ctls = NULL;
  static ws_loop_transport stp, ctp;
  char err[400];
  if (cert || key) {
    ws_tls_params tp;
    memset(&tp, 0, sizeof(tp));
    tp.role = WS_ROLE_SERVER;
    tp.cert_file = cert;
    tp.key_file = key;
    if (ws_tls_ctx_new(&stls, &tp, err, sizeof(err)) != 0) {
      fprintf(stderr, "ws-proxy: %s\n", err);
      return 1;
    }
    ws_tls_transport(&stp, stls);
    opt.listen_tp = &stp;
  }
  for (int i = 0; i < opt.nups; i++) {
    if (!opt.ups[i].u.secure) continue;
    if (!ctls) {
      ws_tls_params tp;
      memset(&tp, 0, sizeof(tp));
      tp.role = WS_ROLE_CLIENT;
      tp.ca_file = ca ? ca : "/etc/ssl/certs/ca-certificates.crt";
      if (ws_tls_ctx_new(&ctls, &tp, err, sizeof(err)) != 0) {
        fprintf(stderr, "ws-proxy: %s\n", err);
        return 1;
      }
      ws_tls_transport(&ctp, ctls);
    }
    opt.ups[i].tp = &ctp;
  }
#else
  (void)ca;
  int secure_up = 0;
  for (int i = 0; i < opt.nups; i++)
    secure_up |= opt.ups[i].u.secure;
  if (cert || key || secure_up) {
    fprintf(stderr, "ws-proxy: TLS is not built in (meson setup "
                    "-Dtls=mbedtls)\n");
    return 2;
  }
#endif

  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_request = on_request;
  lc.callbacks.on_http = on_http;
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_writable = on_writable;
  lc.callbacks.on_close = on_close;
  lc.high_water = opt.high_water;
  lc.low_water = opt.high_water / 4;

  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.host = opt.listen_host;
  lp.port = opt.listen_port;
  lp.config = &cl_cfg;
  lp.flags = WS_LOOP_REUSEPORT; /* a new process can take the port over */
  lp.transport = opt.listen_tp;
  for (unsigned i = 0; i < opt.threads; i++) {
    uint16_t bound = 0;
    lc.user_data = &workers[i];
    int rv = ws_loop_new(&workers[i].loop, &lc);
    if (rv == 0) rv = ws_loop_listen(workers[i].loop, &lp, &bound);
    if (rv == 0 && i == 0 && opt.have_admin) {
      ws_loop_listen_params ap;
      memset(&ap, 0, sizeof(ap));
      ap.host = opt.admin_host;
      ap.port = opt.admin_port;
      ap.user_data = &admin_tag;
      rv = ws_loop_listen(workers[0].loop, &ap, &opt.admin_port);
    }
    if (rv != 0) {
      fprintf(stderr, "ws-proxy: cannot listen: %s\n", ws_loop_strerror(rv));
      return 1;
    }
    nworkers++;
    lp.port = bound;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* the signal thread takes them */
  signal(SIGPIPE, SIG_IGN);
  pthread_t sig_tid, tids[MAX_THREADS];
  pthread_create(&sig_tid, NULL, signal_thread, &set);
  printf("ws-proxy listening on %s://%s:%u/", opt.listen_tp ? "wss" : "ws",
         opt.listen_host, (unsigned)lp.port);
  if (opt.have_admin)
    printf(" admin http://%s:%u/metrics", opt.admin_host,
           (unsigned)opt.admin_port);
  printf("\n");
  fflush(stdout);

  for (int i = 1; i < nworkers; i++)
    pthread_create(&tids[i], NULL, run, workers[i].loop);
  int rv = ws_loop_run(workers[0].loop);
  for (int i = 1; i < nworkers; i++)
    pthread_join(tids[i], NULL);
  for (int i = 0; i < nworkers; i++)
    ws_loop_del(workers[i].loop);
#ifdef WS_EXAMPLES_TLS
  ws_tls_ctx_del(stls);
  ws_tls_ctx_del(ctls);
#endif
  return rv == 0 ? 0 : 1;
}
