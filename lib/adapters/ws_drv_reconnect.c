/*
 * Clients that come back: ws_loop_connect() with |reconnect| set. Each
 * attempt is an ordinary client connection (connect_once()); this file
 * keeps a copy of the parameters, sits between the loop and the
 * application's on_open/on_close (wrappers installed in the loop's
 * callbacks when the first such client starts) to decide after each end
 * whether and when to try again, and starts the attempts that are due
 * from the loop's round (drv_run_reconnects(); wait_timeout() and
 * nothing_left() ask drv_reconnect_next()).
 *
 * Delay: full jitter, a uniform random delay in [0, bound] from the
 * loop's random source; the bound grows by |multiplier_pct| per attempt
 * that did not stay up |reset_after_ms|, up to |max_ms|.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <string.h>

typedef struct rc_entry {
  struct rc_entry *next;
  ws_loop_conn *conn;    /* the current attempt, NULL while waiting */
  ws_loop_conn *closing; /* in its on_close */
  uint64_t due;          /* next attempt, when waiting */
  uint64_t opened_at;    /* 0: the current attempt is not open */
  uint32_t fails;        /* attempts in a row that did not stay up */
  uint32_t delay;        /* the delay announced in on_close */
  uint8_t waiting, decided, stopped;
  ws_loop_reconnect pol;
  ws_loop_connect_params params; /* pointers into |strings|, |cfg| */
  ws_config cfg;
  char *strings;
} rc_entry;

typedef struct drv_reconnect {
  ws_loop_callbacks app; /* the application's on_open and on_close */
  rc_entry *list;
} drv_reconnect;

static rc_entry *find(const ws_loop *l, const ws_loop_conn *c) {
  if (!l->rc || !c) return NULL;
  for (rc_entry *e = l->rc->list; e; e = e->next)
    if (e->conn == c || e->closing == c) return e;
  return NULL;
}

static void entry_free(ws_loop *l, rc_entry *e) {
  rc_entry **pp = &l->rc->list;
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp) *pp = e->next;
  drv_free(l, e->strings);
  drv_free(l, e);
}

/* RFC 6455 7.4.1 and the IANA registry: the codes after which the server
 * is expected back (going away, abnormal, internal error, restart, try
 * again later, bad gateway). */
static int worth_retrying(const ws_loop_close_info *in) {
  if (in->error == WS_LOOP_ERR_ABORTED || in->error == WS_LOOP_ERR_SHUTDOWN)
    return 0;
  if (in->http_status) return in->http_status >= 500;
  switch (in->code) {
  case 1001:
  case 1006:
  case 1011:
  case 1012:
  case 1013:
  case 1014: return 1;
  default: return 0;
  }
}

/* A uniform delay in [0, bound] for the attempt after |fails| failures. */
static uint32_t pick_delay(ws_loop *l, const rc_entry *e) {
  uint64_t bound = e->pol.initial_ms;
  for (uint32_t i = 0; i < e->fails && bound < e->pol.max_ms; i++)
    bound = bound * e->pol.multiplier_pct / 100u;
  if (bound > e->pol.max_ms) bound = e->pol.max_ms;
  uint32_t r = 0;
  if (l->sys.rand(l->sys.self, (uint8_t *)&r, sizeof(r)) != 0) r = 0;
  return (uint32_t)(r % (bound + 1));
}

static void schedule(ws_loop *l, rc_entry *e) {
  e->delay = pick_delay(l, e);
  e->fails++;
  e->due = drv_clock(l) + e->delay;
  e->waiting = 1;
}

static int rc_on_open(ws_loop_conn *c, void *ud) {
  ws_loop *l = conn_loop(c);
  rc_entry *e = find(l, c);
  if (e) e->opened_at = drv_clock(l);
  return l->rc->app.on_open ? l->rc->app.on_open(c, ud) : 0;
}

static int rc_on_close(ws_loop_conn *c, void *ud,
                       const ws_loop_close_info *info) {
  ws_loop *l = conn_loop(c);
  drv_reconnect *rc = l->rc;
  rc_entry *e = find(l, c);
  if (!e) return rc->app.on_close ? rc->app.on_close(c, ud, info) : 0;
  uint64_t now = drv_clock(l);
  if (e->opened_at && now - e->opened_at >= e->pol.reset_after_ms)
    e->fails = 0; /* it stayed up: start over from the initial bound */
  e->opened_at = 0;
  e->conn = NULL;
  e->closing = c;
  e->decided = !e->stopped && !l->draining && worth_retrying(info) &&
               !(e->pol.max_attempts && e->fails + 1 >= e->pol.max_attempts);
  if (e->decided) schedule(l, e);
  int rv = rc->app.on_close ? rc->app.on_close(c, ud, info) : 0;
  e->closing = NULL;
  if (!e->decided) entry_free(l, e); /* stopped, or not worth it */
  return rv;
}

int ws_loop_conn_reconnect_delay(const ws_loop_conn *c, uint32_t *pdelay) {
  rc_entry *e = c ? find(conn_loop(c), c) : NULL;
  if (!e || e->closing != c || !e->decided) return 0;
  if (pdelay) *pdelay = e->delay;
  return 1;
}

void ws_loop_conn_reconnect_stop(ws_loop_conn *c) {
  rc_entry *e = c ? find(conn_loop(c), c) : NULL;
  if (!e) return;
  e->stopped = 1;
  if (e->closing == c) { /* in on_close: the announced attempt is off */
    e->decided = 0;
    e->waiting = 0;
  }
}

/* Copies |p| with its strings and arrays into |e|. */
static int copy_params(ws_loop *l, rc_entry *e,
                       const ws_loop_connect_params *p) {
  const ws_client_params *rq = &p->request;
  size_t n = strlen(p->host) + 1;
  n += rq->host ? strlen(rq->host) + 1 : 0;
  n += rq->path ? strlen(rq->path) + 1 : 0;
  n += rq->origin ? strlen(rq->origin) + 1 : 0;
  for (size_t i = 0; i < rq->nprotocols; i++)
    n += strlen(rq->protocols[i]) + 1 + sizeof(char *);
  for (size_t i = 0; i < rq->nheaders; i++)
    n += strlen(rq->headers[i].name) + strlen(rq->headers[i].value) + 2 +
         sizeof(ws_kv);
  n += sizeof(ws_kv); /* alignment slack */
  char *b = drv_malloc(l, n);
  if (!b) return -1;
  e->strings = b;
  e->params = *p;
  ws_client_params *q = &e->params.request;
  /* the arrays first (aligned), then the strings */
  ws_kv *kv = (ws_kv *)(void *)b;
  const char **pr = (const char **)(void *)(kv + rq->nheaders);
  char *s = (char *)(pr + rq->nprotocols);
#define COPY(dst, src)                                                         \
  do {                                                                         \
    size_t len_ = strlen(src) + 1;                                             \
    memcpy(s, (src), len_);                                                    \
    (dst) = s;                                                                 \
    s += len_;                                                                 \
  } while (0)
  COPY(e->params.host, p->host);
  if (rq->host) COPY(q->host, rq->host);
  if (rq->path) COPY(q->path, rq->path);
  if (rq->origin) COPY(q->origin, rq->origin);
  for (size_t i = 0; i < rq->nprotocols; i++)
    COPY(pr[i], rq->protocols[i]);
  for (size_t i = 0; i < rq->nheaders; i++) {
    COPY(kv[i].name, rq->headers[i].name);
    COPY(kv[i].value, rq->headers[i].value);
  }
#undef COPY
  q->protocols = rq->nprotocols ? pr : NULL;
  q->headers = rq->nheaders ? kv : NULL;
  if (p->config) {
    e->cfg = *p->config;
    e->params.config = &e->cfg;
  }
  e->params.reconnect = NULL; /* each attempt is a single connect */
  return 0;
}

int drv_reconnect_start(ws_loop *l, const ws_loop_connect_params *p,
                        ws_loop_conn **pconn) {
  if (pconn) *pconn = NULL;
  if (!l || !p->host || !p->port) return WS_ERR_INVALID_ARGUMENT;
  if (!l->rc) {
    drv_reconnect *rc = drv_malloc(l, sizeof(*rc));
    if (!rc) return WS_ERR_NOMEM;
    memset(rc, 0, sizeof(*rc));
    rc->app = l->cfg.callbacks;
    l->cfg.callbacks.on_open = rc_on_open;
    l->cfg.callbacks.on_close = rc_on_close;
    l->rc = rc;
  }
  rc_entry *e = drv_malloc(l, sizeof(*e));
  if (!e) return WS_ERR_NOMEM;
  memset(e, 0, sizeof(*e));
  e->pol = *p->reconnect;
  if (!e->pol.initial_ms) e->pol.initial_ms = 500;
  if (!e->pol.max_ms) e->pol.max_ms = 30000;
  if (e->pol.max_ms < e->pol.initial_ms) e->pol.max_ms = e->pol.initial_ms;
  if (!e->pol.multiplier_pct) e->pol.multiplier_pct = 200;
  if (e->pol.multiplier_pct < 100) e->pol.multiplier_pct = 100;
  if (!e->pol.reset_after_ms) e->pol.reset_after_ms = 10000;
  if (copy_params(l, e, p) != 0) {
    drv_free(l, e);
    return WS_ERR_NOMEM;
  }
  e->next = l->rc->list;
  l->rc->list = e;
  int rv = connect_once(l, &e->params, &e->conn);
  if (rv != 0) { /* the first attempt: the caller hears of it */
    entry_free(l, e);
    return rv;
  }
  if (pconn) *pconn = e->conn;
  return 0;
}

void drv_run_reconnects(ws_loop *l) {
  if (!l->rc) return;
  uint64_t now = drv_clock(l);
  for (rc_entry *e = l->rc->list, *next; e; e = next) {
    next = e->next;
    if (!e->waiting || e->due > now) continue;
    e->waiting = 0;
    if (l->draining || e->stopped) {
      entry_free(l, e);
      continue;
    }
    if (connect_once(l, &e->params, &e->conn) != 0) {
      e->conn = NULL;
      if (e->pol.max_attempts && e->fails + 1 >= e->pol.max_attempts)
        entry_free(l, e);
      else
        schedule(l, e); /* failed at once: silently, later */
    }
  }
}

uint64_t drv_reconnect_next(const ws_loop *l) {
  uint64_t d = NO_DEADLINE;
  if (!l->rc) return d;
  for (const rc_entry *e = l->rc->list; e; e = e->next)
    if (e->waiting && e->due < d) d = e->due;
  return d;
}

void drv_reconnect_free(ws_loop *l) {
  if (!l->rc) return;
  while (l->rc->list)
    entry_free(l, l->rc->list);
  drv_free(l, l->rc);
  l->rc = NULL;
}
