/*
 * ws-proxy: what its files share. One job per file:
 *
 *   main.c       start: flags to configs, TLS, the loops and their
 *                threads, signals and the drain
 *   flags.c      the command line
 *   handshake.c  the opening handshake: the client's request to the
 *                upstream, the upstream's answer back to the client
 *   relay.c      open connections: messages, backpressure, closes
 *   upstream.c   which upstream to try, and backing off a failing one
 *   metrics.c    the counters and GET /metrics
 *   access_log.c one JSON line per connection
 *   gate.c       the client side's transport: holds a client's close (or
 *                a frame it fails on) until the upstream has closed
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_PROXY_H
#define WS_PROXY_H

#include <ws/ws_loop.h>

#include <stdatomic.h>
#include <stdint.h>

#define MAX_THREADS 64
#define MAX_UPSTREAMS 32

/* ---- configuration (flags.c) ----------------------------------------------
 */

typedef struct upstream {
  const char *url;
  ws_loop_url u;
  const ws_loop_transport *tp; /* NULL: plain */
  atomic_int open;             /* connections to it now */
  atomic_uint fails;           /* connect failures in a row */
  atomic_uint_fast64_t down_until;
} upstream;

typedef struct proxy_opt {
  const char *listen_host, *admin_host, *log_path;
  const char *cert, *key, *ca; /* TLS files, or NULL */
  uint16_t listen_port, admin_port;
  int have_admin;
  upstream ups[MAX_UPSTREAMS];
  int nups;
  unsigned threads;
  uint64_t max_message;
  uint32_t ping_ms, idle_ms, up_ping_ms, up_idle_ms, connect_ms, drain_ms;
  uint32_t high_water;
  uint32_t max_pmd; /* --max-pmd-context: per loop, 0 no cap */
  int deflate_client, deflate_upstream;
  int autobahn; /* --autobahn: every RFC 7692 offer, no context cap */
  int log_fd;
  const ws_loop_transport *listen_tp;
} proxy_opt;

extern proxy_opt opt;
extern ws_config up_cfg, cl_cfg; /* each side's connections */

/* Parses the command line into |opt|. Returns -1 to go on, else the exit
 * status (usage, --help, a bad value). */
int flags_parse(int argc, char **argv);

/* ---- metrics (metrics.c), from every thread -------------------------------
 */

#define NCODES 5000
typedef struct proxy_metrics {
  atomic_long open;
  atomic_ulong accepted;
  atomic_ulong refused[600];
  atomic_ulong bytes_to_clients, bytes_to_upstreams; /* payload */
  atomic_ulong msgs_to_clients, msgs_to_upstreams;
  atomic_ulong wire_to_clients, wire_to_upstreams; /* at close */
  atomic_ulong closes_client[NCODES], closes_upstream[NCODES];
} proxy_metrics;

extern proxy_metrics m;
extern int admin_tag; /* user data of the admin listener's connections */

void count_close(atomic_ulong *arr, uint16_t code);
/* on_http: GET /metrics on the admin listener, 404 elsewhere. */
int on_http(ws_loop_conn *conn, void *ud, const ws_request *req);

/* ---- a client and its upstream ---------------------------------------------
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
typedef struct gate gate;

typedef struct pair {
  struct pair *prev, *next;
  worker *w;
  side s[2];
  upstream *ups;
  uint32_t tried; /* upstreams tried, a bit each */
  int state, status, attempts;
  uint8_t counted_open, client_gone, ups_counted;
  uint8_t open_kept; /* the upstream's open event is kept (handshake.c) */
  uint8_t held;      /* the client's gate is held (gate.c) */
  gate *gate;        /* the client connection's transport */
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

extern worker workers[MAX_THREADS];
extern int nworkers;

uint64_t mono_ms(void);
char *dup_slice(ws_slice s);
int side_of(const pair *p, const ws_loop_conn *c);
/* Frees |p| once both sides are over (and logs it). */
void pair_maybe_end(pair *p);

/* ---- handshake.c -----------------------------------------------------------
 */

int on_request(ws_loop_conn *conn, void *ud, const ws_request *req);
int on_open(ws_loop_conn *conn, void *ud);
/* Refuses the client (if still there) with |status| and |h|. */
void refuse(pair *p, int status, const ws_kv *h, size_t nh);
/* The upstream ended before it opened: its refusal goes to the client,
 * or the next upstream is tried. */
void upstream_not_opened(pair *p, const ws_loop_close_info *info);
/* Copies the end-to-end headers of |r| (at most |cap|) into |h|, their
 * text into one block returned (free it), for the client's answer. */
char *end_to_end_headers(const ws_response *r, ws_kv *h, size_t cap,
                         size_t *pnh);

/* ---- relay.c ---------------------------------------------------------------
 */

int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev);
int on_writable(ws_loop_conn *conn, void *ud, int writable);
int on_close(ws_loop_conn *conn, void *ud, const ws_loop_close_info *info);
/* SIGTERM: 1012 to the clients, 1001 to the upstreams, then the drain. */
void drain(ws_loop *loop, void *arg);

/* ---- upstream.c ------------------------------------------------------------
 */

/* Starts the connection to the next upstream to try. Returns 0, or -1
 * when none could be started. */
int start_upstream(pair *p);
void upstream_failed(upstream *u);
void upstream_ok(upstream *u);

/* ---- gate.c ----------------------------------------------------------------
 */

/* What a gate tells the proxy about the frame it holds. */
typedef struct gate_info {
  void *pair;       /* the proxy's, set in on_request */
  uint8_t pmd;      /* permessage-deflate on: RSV1 allowed */
  uint8_t bad;      /* 1: a frame the core fails on; 0: a close frame */
  uint8_t told;     /* gate_held() was called */
  uint16_t code;    /* close: its code (1005: none) */
  size_t reasonlen; /* ... and its reason, unchecked */
  char reason[123];
} gate_info;

/* Fills |tp| with the gate over |inner| (NULL: plain TCP). */
void gate_transport(ws_loop_transport *tp, const ws_loop_transport *inner);
/* The gate of a connection made over it. */
gate *gate_of(ws_loop_conn *conn);
gate_info *gate_get_info(gate *g);
/* Lets the held frame and everything after it through, for good. */
void gate_open(gate *g);
/* relay.c: the gate of |info->pair|'s client holds a frame, and the core
 * has had everything before it. */
void gate_held(gate_info *info);

/* ---- access_log.c ----------------------------------------------------------
 */

typedef struct sbuf {
  char *b;
  size_t len, cap;
} sbuf;

void sb_printf(sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void access_log(const pair *p);
/* The same line for a connection the loop refused by itself ("status"
 * 0: closed without an answer), with its "reason": the
 * ws_loop_set_on_refused() callback. */
int access_log_refused(ws_loop *loop, void *ud, const ws_loop_refusal *r);

#endif /* WS_PROXY_H */
