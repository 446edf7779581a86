/*
 * The connection driver: everything of <ws/ws_loop.h> that does not
 * depend on the readiness API. A backend (ws_epoll.c, ws_kqueue.c)
 * supplies the poller; this file owns sockets, connections, timers,
 * backpressure, cross-thread posts and graceful shutdown.
 * SPDX-License-Identifier: MIT
 *
 * Life of a connection: created at accept() or ws_loop_connect(), it is
 * driven by readiness (conn_io), timers (heap of deadlines) and the
 * "again" list (work to do without waiting: resumed pauses, read budget
 * used up). Any code may call conn_destroy(); the memory is only freed at
 * the end of the round (the graveyard), so a pointer taken earlier in the
 * round never dangles.
 *
 * Socket bytes and core bytes meet in exactly two places, conn_read_round
 * (transport read -> core feed) and conn_flush (core out_peek -> transport
 * write): the seam where a TLS transport slots in.
 */
#define _GNU_SOURCE

#include "ws_driver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

/* Sockets are made non-blocking and close-on-exec in the call that
 * creates them (SOCK_NONBLOCK, SOCK_CLOEXEC, accept4: Linux and the BSDs)
 * or else with fcntl() (macOS). WS_LOOP_NO_SOCK_FLAGS forces the fcntl()
 * path; the kqueue tests on Linux build with it, so that path runs. */
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) &&                         \
    !defined(WS_LOOP_NO_SOCK_FLAGS)
#  define HAVE_SOCK_FLAGS 1
#endif
#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE on the socket instead */
#endif

#define NO_DEADLINE UINT64_MAX
#define READ_BUDGET 4    /* reads per connection per round */
#define ACCEPT_BUDGET 64 /* accepts per listener per round */
#define LISTEN_PAUSE_MS 100

enum { H_LISTENER = 1, H_CONN = 2 };

enum cstate {
  C_CONNECTING = 1, /* client: TCP connect in progress */
  C_SNIFF,          /* server with on_http: collecting the request head */
  C_WS,             /* the core drives it */
  C_HTTP,           /* answering a plain HTTP request */
  C_LINGER,         /* our side is shut down; waiting for the peer's FIN */
  C_DEAD
};

/* conn flags */
#define F_KNOWN 0x1u       /* owed an on_close */
#define F_CLOSED_CB 0x2u   /* on_close was called */
#define F_PAUSED 0x4u      /* an event is kept (WS_LOOP_PAUSE) */
#define F_PAUSED_AUTO 0x8u /* ... resume when output drains */
#define F_CONGESTED 0x10u  /* over high_water: not reading */
#define F_DIRTY 0x20u      /* on the dirty list */
#define F_AGAIN 0x40u      /* on the again list */
#define F_HUP 0x80u        /* error/hang-up seen while not reading */
#define F_REG 0x100u       /* registered with the poller */
#define F_SHUT 0x200u      /* transport shutdown() called */
#define F_SD_CLOSE 0x400u  /* graceful shutdown: close at drv_at */
#define F_HTTP_DONE 0x800u /* the HTTP answer is queued */
#define F_GRAVE 0x1000u    /* on the graveyard list */
#define F_RESUME 0x2000u   /* ws_loop_resume() was called */

typedef struct handle {
  uint8_t kind;
} handle;

typedef struct listener {
  handle h;
  struct listener *next;
  int fd;
  uint8_t watching;
  ws_config cfg;
  void *user_data;
  const ws_loop_transport *tp;
} listener;

enum { P_SEND = 1, P_CLOSE, P_CALL };

typedef struct post {
  struct post *next;
  uint8_t kind;
  uint8_t opcode;
  uint16_t code;
  uint32_t flags;
  uint64_t id;
  void (*fn)(ws_loop *, void *);
  void *arg;
  size_t len;
  uint8_t data[];
} post;

/* Per-connection state that only exists while needed. */
typedef struct conn_aux {
  uint8_t *rbuf;      /* retained input: [rpos, rlen) not fed yet */
  size_t rpos, rlen, rcap;
  ws_event ev;        /* the kept event while paused */
  uint8_t *http_out;  /* an HTTP answer being written */
  size_t http_pos, http_len;
  struct addrinfo *ai_all, *ai_next; /* client: addresses left to try */
  char *server_name;
  post *def_head, *def_tail; /* posted sends waiting for queue room */
} conn_aux;

struct ws_loop_conn {
  handle h;
  uint8_t state;
  uint8_t role;
  uint16_t http_status;
  uint32_t flags;
  int fd;
  int io_err; /* the transport's failure: WS_LOOP_ERR_IO (sys_errno
                 says which) or a code of its own */
  int sys_errno;
  int end_err;   /* the reason to report if the core has none */
  unsigned events; /* interest registered with the poller */
  uint32_t slot;
  uint32_t heap_idx; /* UINT32_MAX: not in the heap */
  uint64_t id;
  uint64_t deadline;    /* heap key */
  uint64_t drv_at;      /* linger end, or the shutdown close time */
  uint64_t stall_since; /* pending output without progress since */
  ws_loop *loop;
  ws_conn *ws;
  void *user_data;
  const ws_loop_transport *tp;
  void *tctx;
  conn_aux *aux;
  listener *lst;
  ws_loop_conn *next_dirty, *next_again, *next_grave, *next_due;
};

struct ws_loop {
  ws_loop_config cfg;
  ws_mem mem;
  ws_drv_poller poller;
  uint8_t *rbuf;
  uint64_t now;
  listener *listeners;
  size_t nconns;
  /* slot table: id -> connection */
  ws_loop_conn **slots;
  uint32_t *gens;
  uint32_t nslots, slotcap;
  uint32_t *free_slots;
  uint32_t nfree;
  /* deadline heap */
  ws_loop_conn **heap;
  uint32_t heaplen, heapcap;
  ws_loop_conn *dirty, *again, *grave;
  int stop_rv;
  uint8_t stopped;
  uint8_t draining;
  uint8_t listen_paused;
  uint8_t in_round;
  uint16_t sd_code;
  uint64_t drain_deadline;
  uint64_t listen_resume_at;
  /* any thread */
  pthread_mutex_t mu;
  post *post_head, *post_tail;
  atomic_size_t post_bytes;
  atomic_int posted;
  atomic_int stop_req;
  atomic_int shutdown_req;
  atomic_uint sd_req_code;
  atomic_uint sd_req_spread;
  atomic_uint sd_req_drain;
};

/* ---- small helpers ------------------------------------------------------- */

static void *def_malloc(size_t n, void *ud) {
  (void)ud;
  return malloc(n);
}
static void *def_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  return realloc(p, n);
}
static void def_free(void *p, void *ud) {
  (void)ud;
  free(p);
}

static void *lmalloc(ws_loop *l, size_t n) {
  return l->mem.malloc(n ? n : 1, l->mem.user_data);
}
static void *lrealloc(ws_loop *l, void *p, size_t n) {
  return l->mem.realloc(p, n ? n : 1, l->mem.user_data);
}
static void lfree(ws_loop *l, void *p) {
  if (p) l->mem.free(p, l->mem.user_data);
}

static uint64_t clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int ws_loop_rand(uint8_t *buf, size_t len, void *user_data) {
  (void)user_data;
#if defined(__linux__)
  while (len) {
    ssize_t r = getrandom(buf, len, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += r;
    len -= (size_t)r;
  }
  return 0;
#else
  arc4random_buf(buf, len);
  return 0;
#endif
}

const char *ws_loop_strerror(int err) {
  switch (err) {
  case WS_LOOP_ERR_IO: return "socket error";
  case WS_LOOP_ERR_RESOLVE: return "host name did not resolve";
  case WS_LOOP_ERR_STALLED: return "peer stopped reading (write timeout)";
  case WS_LOOP_ERR_SHUTDOWN: return "dropped at the end of the shutdown";
  case WS_LOOP_ERR_ABORTED: return "the loop was deleted";
  default: return ws_strerror(err);
  }
}

void ws_loop_config_default(ws_loop_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->read_size = 65536;
  cfg->high_water = 1u << 20;
  cfg->low_water = 256u << 10;
  cfg->write_timeout_ms = 30000;
  cfg->linger_ms = 2000;
  cfg->max_post_bytes = 16u << 20;
}

/* ---- deadline heap --------------------------------------------------------- */

static void heap_set(ws_loop *l, uint32_t i, ws_loop_conn *c) {
  l->heap[i] = c;
  c->heap_idx = i;
}

static void heap_up(ws_loop *l, uint32_t i) {
  ws_loop_conn *c = l->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (l->heap[p]->deadline <= c->deadline) break;
    heap_set(l, i, l->heap[p]);
    i = p;
  }
  heap_set(l, i, c);
}

static void heap_down(ws_loop *l, uint32_t i) {
  ws_loop_conn *c = l->heap[i];
  for (;;) {
    uint32_t k = 2 * i + 1;
    if (k >= l->heaplen) break;
    if (k + 1 < l->heaplen && l->heap[k + 1]->deadline < l->heap[k]->deadline)
      k++;
    if (l->heap[k]->deadline >= c->deadline) break;
    heap_set(l, i, l->heap[k]);
    i = k;
  }
  heap_set(l, i, c);
}

static void heap_remove(ws_loop *l, ws_loop_conn *c) {
  uint32_t i = c->heap_idx;
  if (i == UINT32_MAX) return;
  c->heap_idx = UINT32_MAX;
  ws_loop_conn *last = l->heap[--l->heaplen];
  if (i == l->heaplen) return;
  heap_set(l, i, last);
  heap_up(l, i);
  heap_down(l, last->heap_idx);
}

/* Sets |c|'s deadline; returns -1 only when the heap cannot grow (the
 * connection then has no timer, which the caller treats as fatal). */
static int heap_update(ws_loop *l, ws_loop_conn *c, uint64_t d) {
  if (d == NO_DEADLINE) {
    heap_remove(l, c);
    c->deadline = d;
    return 0;
  }
  if (c->heap_idx == UINT32_MAX) {
    if (l->heaplen == l->heapcap) {
      uint32_t cap = l->heapcap ? l->heapcap * 2 : 64;
      ws_loop_conn **h = lrealloc(l, l->heap, cap * sizeof(*h));
      if (!h) return -1;
      l->heap = h;
      l->heapcap = cap;
    }
    c->deadline = d;
    heap_set(l, l->heaplen++, c);
    heap_up(l, c->heap_idx);
    return 0;
  }
  uint64_t old = c->deadline;
  c->deadline = d;
  if (d < old)
    heap_up(l, c->heap_idx);
  else if (d > old)
    heap_down(l, c->heap_idx);
  return 0;
}

/* ---- plain TCP transport --------------------------------------------------- */

static int plain_read(void *ctx, int fd, uint8_t *buf, size_t cap,
                      size_t *pnread) {
  (void)ctx;
  for (;;) {
    ssize_t r = recv(fd, buf, cap, 0);
    if (r > 0) {
      *pnread = (size_t)r;
      return 0;
    }
    if (r == 0) return WS_ERR_EOF;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WS_ERR_WOULDBLOCK;
    return WS_LOOP_ERR_IO;
  }
}

static int plain_write(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
                       size_t *pnwritten) {
  struct iovec v[8];
  size_t n = iovcnt < 8 ? iovcnt : 8, total = 0;
  (void)ctx;
  *pnwritten = 0;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    v[i].iov_base = (void *)(uintptr_t)iov[i].base; /* only read */
    v[i].iov_len = iov[i].len;
    total += iov[i].len;
  }
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = v;
  mh.msg_iovlen = n;
  for (;;) {
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (w >= 0) {
      *pnwritten = (size_t)w;
      /* A short write means the socket buffer is full. */
      return (size_t)w < total ? WS_ERR_WOULDBLOCK : 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WS_ERR_WOULDBLOCK;
    return WS_LOOP_ERR_IO;
  }
}

static const ws_loop_transport plain_transport = {
    NULL, NULL, plain_read, plain_write, NULL, NULL, NULL, NULL};

static size_t tp_pending(const ws_loop_conn *c) {
  return c->tp->pending && c->tctx ? c->tp->pending(c->tctx) : 0;
}

/* The transport's description of its failure, or NULL. */
static const char *tp_error_text(const ws_loop_conn *c) {
  const char *s =
      c->io_err && c->tp->error && c->tctx ? c->tp->error(c->tctx) : NULL;
  return s && *s ? s : NULL;
}

/* Notes that a transport call failed with |rv| (WS_LOOP_ERR_IO: errno
 * says why; any other negative code is the transport's own) and returns
 * the code to report. The first failure is the one kept. */
static int tp_fail(ws_loop_conn *c, int rv) {
  int e = errno;
  if (rv >= WS_ERR_WOULDBLOCK) rv = WS_LOOP_ERR_IO; /* not a failure code */
  if (!c->io_err) {
    c->io_err = rv;
    c->sys_errno = rv == WS_LOOP_ERR_IO ? (e ? e : EIO) : 0;
  }
  return c->io_err;
}

/* ---- connection bookkeeping ------------------------------------------------ */

static conn_aux *get_aux(ws_loop_conn *c) {
  if (!c->aux) {
    c->aux = lmalloc(c->loop, sizeof(conn_aux));
    if (c->aux) memset(c->aux, 0, sizeof(conn_aux));
  }
  return c->aux;
}

static void post_free(ws_loop *l, post *p) {
  atomic_fetch_sub(&l->post_bytes, p->len);
  lfree(l, p);
}

static void aux_free(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  if (!a) return;
  ws_loop *l = c->loop;
  lfree(l, a->rbuf);
  lfree(l, a->http_out);
  if (a->ai_all) freeaddrinfo(a->ai_all);
  lfree(l, a->server_name);
  while (a->def_head) {
    post *p = a->def_head;
    a->def_head = p->next;
    post_free(l, p);
  }
  lfree(l, a);
  c->aux = NULL;
}

static int has_retained(const ws_loop_conn *c) {
  return c->aux && c->aux->rpos < c->aux->rlen;
}

static void mark_dirty(ws_loop_conn *c) {
  if (c->flags & (F_DIRTY | F_GRAVE)) return;
  c->flags |= F_DIRTY;
  c->next_dirty = c->loop->dirty;
  c->loop->dirty = c;
}

static void mark_again(ws_loop_conn *c) {
  if (c->flags & (F_AGAIN | F_GRAVE)) return;
  c->flags |= F_AGAIN;
  c->next_again = c->loop->again;
  c->loop->again = c;
}

static ws_loop_conn *conn_by_id(ws_loop *l, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  if (slot == 0 || slot > l->nslots) return NULL;
  ws_loop_conn *c = l->slots[slot - 1];
  return c && c->id == id ? c : NULL;
}

static int slot_take(ws_loop *l, ws_loop_conn *c) {
  uint32_t s;
  if (l->nfree) {
    s = l->free_slots[--l->nfree];
  } else {
    if (l->nslots == l->slotcap) {
      uint32_t cap = l->slotcap ? l->slotcap * 2 : 64;
      ws_loop_conn **ns = lrealloc(l, l->slots, cap * sizeof(*ns));
      if (!ns) return -1;
      l->slots = ns;
      uint32_t *ng = lrealloc(l, l->gens, cap * sizeof(*ng));
      if (!ng) return -1;
      l->gens = ng;
      uint32_t *nf = lrealloc(l, l->free_slots, cap * sizeof(*nf));
      if (!nf) return -1;
      l->free_slots = nf;
      l->slotcap = cap;
    }
    s = l->nslots++;
    l->gens[s] = 0;
  }
  l->slots[s] = c;
  l->gens[s]++;
  c->slot = s;
  c->id = (uint64_t)l->gens[s] << 32 | (uint64_t)(s + 1);
  return 0;
}

static void slot_release(ws_loop *l, ws_loop_conn *c) {
  if (c->slot == UINT32_MAX) return;
  l->slots[c->slot] = NULL;
  l->free_slots[l->nfree++] = c->slot;
  c->slot = UINT32_MAX;
}

static void conn_set_interest(ws_loop_conn *c);
static int conn_flush(ws_loop_conn *c);

static ws_loop_conn *conn_new(ws_loop *l, int fd, ws_role role,
                              const ws_config *cfg,
                              const ws_loop_transport *tp, void *ud) {
  ws_loop_conn *c = lmalloc(l, sizeof(*c));
  if (!c) return NULL;
  memset(c, 0, sizeof(*c));
  c->h.kind = H_CONN;
  c->fd = fd;
  c->role = (uint8_t)role;
  c->heap_idx = UINT32_MAX;
  c->slot = UINT32_MAX;
  c->deadline = NO_DEADLINE;
  c->loop = l;
  c->user_data = ud;
  c->tp = tp ? tp : &plain_transport;
  if (ws_conn_new(&c->ws, cfg, &l->mem) != 0 || slot_take(l, c) != 0) {
    ws_conn_del(c->ws);
    lfree(l, c);
    return NULL;
  }
  l->nconns++;
  ws_conn_tick(c->ws, l->now); /* starts the handshake timer */
  return c;
}

/* Ends a connection. on_close is called if it is owed (with |err| unless
 * the core reported something already). Memory goes at the round's end. */
static void conn_destroy(ws_loop_conn *c, int err) {
  ws_loop *l = c->loop;
  if (c->state == C_DEAD) return;
  if ((c->flags & (F_KNOWN | F_CLOSED_CB)) == F_KNOWN) {
    c->flags |= F_CLOSED_CB;
    ws_loop_close_info info;
    memset(&info, 0, sizeof(info));
    info.code = 1006;
    info.sent_code = ws_conn_close_code(c->ws);
    info.error = c->end_err ? c->end_err : err;
    info.sys_errno = c->sys_errno;
    info.http_status = c->http_status;
    info.transport_error = tp_error_text(c);
    if (l->cfg.callbacks.on_close) {
      int rv = l->cfg.callbacks.on_close(c, c->user_data, &info);
      if (rv < 0 && !l->stop_rv) l->stop_rv = rv;
    }
  }
  c->state = C_DEAD;
  if (c->flags & F_REG) l->poller.remove(l->poller.self, c->fd);
  c->flags &= ~F_REG;
  if (c->tctx && c->tp->detach) c->tp->detach(c->tctx);
  c->tctx = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  heap_remove(l, c);
  slot_release(l, c);
  l->nconns--;
  c->flags |= F_GRAVE;
  c->next_grave = l->grave;
  l->grave = c;
}

/* Frees the graveyard, except connections still on a list of this round. */
static void free_grave(ws_loop *l) {
  ws_loop_conn **pp = &l->grave;
  while (*pp) {
    ws_loop_conn *c = *pp;
    if (c->flags & (F_DIRTY | F_AGAIN)) {
      pp = &c->next_grave;
      continue;
    }
    *pp = c->next_grave;
    ws_conn_del(c->ws);
    aux_free(c);
    lfree(l, c);
  }
}

static void note_rv(ws_loop *l, int rv) {
  if (rv < 0 && !l->stop_rv) l->stop_rv = rv;
}

/* ---- events -> callbacks ----------------------------------------------- */

static const char *sd_reason(uint16_t code) {
  return code == 1012 ? "service restart" : "going away";
}

/* Hands one core event to the application. Returns WS_LOOP_PAUSE if the
 * event must be kept, else 0. */
static int dispatch(ws_loop_conn *c, const ws_event *ev) {
  ws_loop *l = c->loop;
  const ws_loop_callbacks *cb = &l->cfg.callbacks;
  int rv = 0;
  if (c->flags & F_CLOSED_CB) return 0;
  switch (ev->type) {
  case WS_EV_REQUEST:
    if (l->draining) {
      static const ws_kv ra[] = {{"Retry-After", "5"}};
      ws_conn_reject(c->ws, 503, ra, 1, NULL, 0);
      break;
    }
    c->flags |= F_KNOWN;
    if (cb->on_request) rv = cb->on_request(c, c->user_data, ev->request);
    if (rv == WS_LOOP_PAUSE && ws_conn_state(c->ws) == WS_STATE_CONNECTING)
      return WS_LOOP_PAUSE;
    if (ws_conn_state(c->ws) == WS_STATE_CONNECTING &&
        ws_conn_accept(c->ws, NULL) != 0)
      ws_conn_reject(c->ws, 500, NULL, 0, NULL, 0);
    break;
  case WS_EV_OPEN:
    c->flags |= F_KNOWN;
    if (cb->on_open) rv = cb->on_open(c, c->user_data);
    if (l->draining && ws_conn_state(c->ws) == WS_STATE_OPEN) {
      const char *r = sd_reason(l->sd_code);
      ws_conn_close(c->ws, l->sd_code, r, strlen(r));
    }
    break;
  case WS_EV_TEXT:
  case WS_EV_BINARY:
    if (cb->on_message) rv = cb->on_message(c, c->user_data, ev);
    break;
  case WS_EV_PING:
  case WS_EV_PONG:
    if (cb->on_control) rv = cb->on_control(c, c->user_data, ev);
    break;
  case WS_EV_CLOSE:
  case WS_EV_ERROR: {
    if (!(c->flags & F_KNOWN)) break;
    c->flags |= F_CLOSED_CB;
    ws_loop_close_info info;
    memset(&info, 0, sizeof(info));
    if (ev->type == WS_EV_CLOSE) {
      info.code = ev->close_code;
      info.reason = ev->data;
      info.sent_code = ws_conn_close_code(c->ws);
    } else {
      info.code = 1006;
      info.sent_code = ev->close_code;
      info.error = ev->error;
      if (ev->error == WS_ERR_EOF && c->io_err) info.error = c->io_err;
      info.sys_errno = c->sys_errno;
      info.transport_error = tp_error_text(c);
      if (ev->response) {
        info.response = ev->response;
        info.http_status = ev->response->status;
      }
    }
    if (cb->on_close) {
      note_rv(l, cb->on_close(c, c->user_data, &info));
    }
    return 0;
  }
  default:
    break;
  }
  mark_dirty(c);
  if (rv == WS_LOOP_PAUSE) return WS_LOOP_PAUSE;
  note_rv(l, rv);
  return 0;
}

static size_t conn_pending(const ws_loop_conn *c) {
  size_t n = ws_conn_out_pending(c->ws) + tp_pending(c);
  if (c->aux && c->aux->http_out) n += c->aux->http_len - c->aux->http_pos;
  return n;
}

/* Keeps |ev| for later. */
static int keep_event(ws_loop_conn *c, const ws_event *ev) {
  conn_aux *a = get_aux(c);
  if (!a) return -1;
  a->ev = *ev;
  c->flags |= F_PAUSED;
  if (conn_pending(c) > 0)
    c->flags |= F_PAUSED_AUTO;
  else
    c->flags &= ~F_PAUSED_AUTO;
  return 0;
}

/* Pulls and dispatches events until none is left. Returns 1 if an event
 * was kept (paused). */
static int pull_events(ws_loop_conn *c) {
  ws_event ev;
  while (c->state == C_WS && !(c->flags & F_PAUSED)) {
    if (ws_conn_next_event(c->ws, &ev) != 0) return 0;
    if (dispatch(c, &ev) == WS_LOOP_PAUSE) {
      if (keep_event(c, &ev) != 0) {
        ws_conn_close(c->ws, 1011, NULL, 0);
        continue;
      }
      return 1;
    }
  }
  return (c->flags & F_PAUSED) != 0;
}

/* Keeps the unfed input |buf[pos..len)| (and, if an event is kept, the
 * bytes its data may point to, from |fstart|) in the connection. */
static int retain(ws_loop_conn *c, uint8_t *buf, size_t fstart, size_t pos,
                  size_t len, int priv) {
  conn_aux *a = get_aux(c);
  if (!a) return -1;
  if (priv) {
    a->rpos = pos;
    a->rlen = len;
    return 0;
  }
  size_t from = (c->flags & F_PAUSED) ? fstart : pos;
  size_t n = len - from;
  if (n > a->rcap) {
    uint8_t *nb = lrealloc(c->loop, a->rbuf, n);
    if (!nb) return -1;
    a->rbuf = nb;
    a->rcap = n;
  }
  if (n) memcpy(a->rbuf, buf + from, n);
  if (c->flags & F_PAUSED) {
    /* The kept event's data may point into |buf|: move it along. */
    const uint8_t *b = a->ev.data.base;
    if (b && b >= buf + from && b <= buf + len)
      a->ev.data.base = a->rbuf + (b - (buf + from));
  }
  a->rpos = pos - from;
  a->rlen = n;
  return 0;
}

static void retained_done(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  if (!a) return;
  a->rpos = a->rlen = 0;
  if (a->rcap > c->loop->cfg.read_size) { /* do not keep a big buffer */
    lfree(c->loop, a->rbuf);
    a->rbuf = NULL;
    a->rcap = 0;
  }
}

/* Feeds |buf[pos..len)| to the core and dispatches the events, until it is
 * used up, or the connection pauses or congests (the rest is retained).
 * |priv|: |buf| is the connection's own retained buffer. */
static void process_input(ws_loop_conn *c, uint8_t *buf, size_t pos,
                          size_t len, int priv) {
  size_t fstart = pos;
  int stuck = 0;
  for (;;) {
    int paused = pull_events(c);
    if (c->state != C_WS) return;
    if (paused || ((c->flags & F_CONGESTED) && pos < len)) {
      if (retain(c, buf, fstart, pos, len, priv) != 0) {
        /* Out of memory: give the connection up. */
        c->flags &= ~F_PAUSED;
        ws_conn_close(c->ws, 1011, NULL, 0);
        if (priv) retained_done(c);
      }
      return;
    }
    if (pos >= len) {
      if (priv) retained_done(c);
      return;
    }
    size_t n = 0;
    fstart = pos;
    int rv = ws_conn_feed(c->ws, buf + pos, len - pos, &n);
    pos += n;
    if (rv < 0 && rv != WS_ERR_WOULDBLOCK) pos = len; /* the rest is moot */
    /* Nothing taken twice in a row with no event between: give up on the
     * rest rather than spin (the core refuses it for good). */
    stuck = n ? 0 : stuck + 1;
    if (stuck > 2) pos = len;
  }
}

/* Core timers: ws_conn_tick(), unless an event is kept (a tick would
 * release its storage). */
static void conn_tick(ws_loop_conn *c) {
  if (c->state != C_WS && c->state != C_SNIFF && c->state != C_CONNECTING)
    return;
  if (c->flags & F_PAUSED) return;
  ws_conn_tick(c->ws, c->loop->now);
  if (c->state == C_WS) {
    if (pull_events(c)) return;
  } else if (ws_conn_state(c->ws) == WS_STATE_FAILED) {
    conn_destroy(c, WS_ERR_TIMEOUT); /* handshake timeout before the core */
  }
}

/* The transport is gone: ended (|err| 0) or failed (|err| from
 * tp_fail()). Reports it and ends the connection. */
static void conn_lost(ws_loop_conn *c, int err) {
  if (c->state == C_DEAD) return;
  if (c->state == C_WS) {
    if (c->flags & F_PAUSED) { /* the kept event is moot now */
      c->flags &= ~(F_PAUSED | F_PAUSED_AUTO);
    }
    ws_conn_feed_eof(c->ws);
    pull_events(c);
    if (!err) conn_flush(c); /* a close reply, best effort */
  }
  conn_destroy(c, err ? err : WS_ERR_EOF);
}

/* ---- plain HTTP on a WebSocket listener -------------------------------- */

static const char *http_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Status";
  }
}

static int has_crlf(const char *s) { return strpbrk(s, "\r\n") != NULL; }

int ws_loop_http_respond(ws_loop_conn *c, int status, const ws_kv *headers,
                         size_t nheaders, const void *body, size_t bodylen) {
  if (!c || status < 100 || status > 599 || (nheaders && !headers) ||
      (bodylen && !body))
    return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_HTTP || (c->flags & F_HTTP_DONE))
    return WS_ERR_INVALID_STATE;
  size_t need = 128 + bodylen;
  for (size_t i = 0; i < nheaders; i++) {
    if (!headers[i].name || !headers[i].value || has_crlf(headers[i].name) ||
        has_crlf(headers[i].value))
      return WS_ERR_INVALID_ARGUMENT;
    need += strlen(headers[i].name) + strlen(headers[i].value) + 4;
  }
  conn_aux *a = get_aux(c);
  char *out = a ? lmalloc(c->loop, need) : NULL;
  if (!out) return WS_ERR_NOMEM;
  int n = snprintf(out, need,
                   "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n",
                   status, http_reason(status), bodylen);
  size_t len = n > 0 ? (size_t)n : 0;
  for (size_t i = 0; i < nheaders; i++) {
    n = snprintf(out + len, need - len, "%s: %s\r\n", headers[i].name,
                 headers[i].value);
    len += n > 0 ? (size_t)n : 0;
  }
  memcpy(out + len, "\r\n", 2);
  len += 2;
  if (bodylen) memcpy(out + len, body, bodylen);
  len += bodylen;
  a->http_out = (uint8_t *)out;
  a->http_pos = 0;
  a->http_len = len;
  c->flags |= F_HTTP_DONE;
  mark_dirty(c);
  return 0;
}

static ws_slice mkslice(const uint8_t *b, size_t n) {
  ws_slice s;
  s.base = b;
  s.len = n;
  return s;
}

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end) {
  for (; p + 1 < end; p++)
    if (p[0] == '\r' && p[1] == '\n') return p;
  return NULL;
}

static ws_slice trim(ws_slice s) {
  while (s.len && (s.base[0] == ' ' || s.base[0] == '\t')) {
    s.base++;
    s.len--;
  }
  while (s.len && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
    s.len--;
  return s;
}

/* Splits a complete request head (ending in CRLFCRLF) into |req|, with up
 * to |maxh| headers in |hdrs|. Returns 0, or -1 if it is not a request. */
static int parse_http_head(const uint8_t *head, size_t len,
                           ws_loop_http_request *req, ws_header *hdrs,
                           size_t maxh) {
  const uint8_t *end = head + len, *eol = find_crlf(head, end);
  memset(req, 0, sizeof(*req));
  if (!eol) return -1;
  const uint8_t *sp1 = memchr(head, ' ', (size_t)(eol - head));
  if (!sp1) return -1;
  const uint8_t *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
  if (!sp2) return -1;
  req->method = mkslice(head, (size_t)(sp1 - head));
  req->target = mkslice(sp1 + 1, (size_t)(sp2 - sp1 - 1));
  const uint8_t *q = memchr(req->target.base, '?', req->target.len);
  if (q) {
    req->path = mkslice(req->target.base, (size_t)(q - req->target.base));
    req->query = mkslice(q + 1, req->target.len - req->path.len - 1);
  } else {
    req->path = req->target;
  }
  size_t n = 0;
  for (const uint8_t *p = eol + 2; p < end;) {
    const uint8_t *e = find_crlf(p, end);
    if (!e || e == p) break;
    const uint8_t *colon = memchr(p, ':', (size_t)(e - p));
    if (colon && n < maxh) {
      hdrs[n].name = trim(mkslice(p, (size_t)(colon - p)));
      hdrs[n].value = trim(mkslice(colon + 1, (size_t)(e - colon - 1)));
      n++;
    }
    p = e + 2;
  }
  req->headers = hdrs;
  req->nheaders = n;
  return 0;
}

static int is_upgrade(const ws_loop_http_request *req) {
  for (size_t i = 0; i < req->nheaders; i++) {
    if (!ws_slice_ieq(req->headers[i].name, "upgrade")) continue;
    ws_slice list = req->headers[i].value, tok;
    while (ws_list_next(&list, &tok))
      if (ws_slice_ieq(tok, "websocket")) return 1;
  }
  return 0;
}

static void start_http_answer(ws_loop_conn *c, int status) {
  c->state = C_HTTP;
  ws_loop_http_respond(c, status, NULL, 0, NULL, 0);
}

/* C_SNIFF: collects the request head, then hands it to the core (an
 * Upgrade) or to on_http. */
static void sniff_input(ws_loop_conn *c, const uint8_t *in, size_t n) {
  ws_loop *l = c->loop;
  conn_aux *a = get_aux(c);
  size_t max = c->lst->cfg.max_handshake_bytes;
  if (!a) {
    conn_destroy(c, WS_ERR_NOMEM);
    return;
  }
  if (a->rlen + n > a->rcap) {
    size_t cap = a->rlen + n;
    if (cap < 1024) cap = 1024;
    uint8_t *nb = lrealloc(l, a->rbuf, cap);
    if (!nb) {
      conn_destroy(c, WS_ERR_NOMEM);
      return;
    }
    a->rbuf = nb;
    a->rcap = cap;
  }
  memcpy(a->rbuf + a->rlen, in, n);
  size_t from = a->rlen >= 3 ? a->rlen - 3 : 0, head = 0;
  a->rlen += n;
  for (size_t i = from; i + 3 < a->rlen; i++) {
    if (memcmp(a->rbuf + i, "\r\n\r\n", 4) == 0) {
      head = i + 4;
      break;
    }
  }
  if (!head) {
    if (a->rlen >= max) start_http_answer(c, 431);
    return;
  }
  if (head > max) {
    start_http_answer(c, 431);
    return;
  }
  size_t maxh = c->lst->cfg.max_headers;
  ws_header *hdrs = lmalloc(l, maxh * sizeof(ws_header));
  if (!hdrs) {
    conn_destroy(c, WS_ERR_NOMEM);
    return;
  }
  ws_loop_http_request req;
  int bad = parse_http_head(a->rbuf, head, &req, hdrs, maxh);
  if (!bad && is_upgrade(&req)) {
    lfree(l, hdrs);
    c->state = C_WS;
    a->rpos = 0;
    process_input(c, a->rbuf, 0, a->rlen, 1);
    return;
  }
  c->state = C_HTTP;
  if (bad) {
    ws_loop_http_respond(c, 400, NULL, 0, NULL, 0);
  } else {
    note_rv(l, l->cfg.callbacks.on_http(c, c->user_data, &req));
    if (!(c->flags & F_HTTP_DONE)) {
      static const ws_kv ct[] = {{"Content-Type", "text/plain"}};
      ws_loop_http_respond(c, 404, ct, 1, "not found\n", 10);
    }
  }
  lfree(l, hdrs);
  a->rpos = a->rlen = 0;
}

/* ---- reading and writing ---------------------------------------------------- */

static int can_read(const ws_loop_conn *c) {
  switch (c->state) {
  case C_SNIFF:
  case C_LINGER: return 1;
  case C_WS:
    return !(c->flags & (F_PAUSED | F_CONGESTED)) && !has_retained(c) &&
           ws_conn_want_read(c->ws);
  default: return 0;
  }
}

/* Reads and processes up to READ_BUDGET buffers. */
static void conn_read_round(ws_loop_conn *c) {
  ws_loop *l = c->loop;
  int i, got = 0;
  for (i = 0; i < READ_BUDGET && can_read(c); i++) {
    size_t n = 0;
    errno = 0;
    int rv = c->tp->read(c->tctx, c->fd, l->rbuf, l->cfg.read_size, &n);
    if (rv == WS_ERR_WOULDBLOCK) break;
    if (rv == WS_ERR_EOF) {
      conn_lost(c, 0);
      return;
    }
    if (rv < 0 || n == 0 || n > l->cfg.read_size) {
      /* n out of range: the transport broke its contract */
      conn_lost(c, tp_fail(c, rv < 0 ? rv : WS_ERR_INTERNAL));
      return;
    }
    got = 1;
    if (c->state == C_SNIFF)
      sniff_input(c, l->rbuf, n);
    else if (c->state == C_WS)
      process_input(c, l->rbuf, 0, n, 0);
    /* C_LINGER: the bytes are dropped */
  }
  if (got && c->state == C_WS) conn_tick(c);
  if (i == READ_BUDGET && can_read(c)) mark_again(c);
}

/* Writes what is pending. Returns 0, or the failure from tp_fail(). */
static int conn_flush(ws_loop_conn *c) {
  for (;;) {
    ws_iovec iov[2];
    size_t n = 0, w = 0;
    conn_aux *a = c->aux;
    if (a && a->http_out) {
      iov[0].base = a->http_out + a->http_pos;
      iov[0].len = a->http_len - a->http_pos;
      n = iov[0].len ? 1 : 0;
    } else {
      n = ws_conn_out_peek(c->ws, iov, 2);
    }
    if (n == 0 && tp_pending(c) == 0) return 0;
    errno = 0;
    int rv = c->tp->write(c->tctx, c->fd, iov, n, &w);
    if (w) {
      c->stall_since = c->loop->now;
      if (a && a->http_out)
        a->http_pos += w;
      else
        ws_conn_out_consume(c->ws, w);
    }
    if (rv == WS_ERR_WOULDBLOCK) return 0;
    if (rv < 0) return tp_fail(c, rv);
    if (w == 0) return 0; /* nothing taken and no error: wait */
  }
}

/* Retries posted sends that were waiting for queue room. */
static void retry_deferred(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  while (a && a->def_head && c->state == C_WS) {
    post *p = a->def_head;
    int rv = ws_conn_send(c->ws, (ws_opcode)p->opcode, p->data, p->len,
                          p->flags);
    if (rv == WS_ERR_WOULDBLOCK) return;
    a->def_head = p->next;
    if (!a->def_head) a->def_tail = NULL;
    post_free(c->loop, p);
  }
}

static void start_linger(ws_loop_conn *c) {
  ws_loop *l = c->loop;
  shutdown(c->fd, SHUT_WR);
  if (l->cfg.linger_ms == 0 || c->role == WS_ROLE_CLIENT) {
    conn_destroy(c, 0);
    return;
  }
  c->state = C_LINGER;
  c->drv_at = l->now + l->cfg.linger_ms;
}

/* Ends the transport once everything is written. */
static void maybe_finish(ws_loop_conn *c) {
  int done = 0;
  if (c->state == C_WS)
    done = ws_conn_should_close_transport(c->ws);
  else if (c->state == C_HTTP)
    done = (c->flags & F_HTTP_DONE) != 0;
  if (!done || conn_pending(c) > 0) return;
  if (!(c->flags & F_SHUT)) {
    c->flags |= F_SHUT;
    if (c->tp->shutdown && c->tctx) {
      c->tp->shutdown(c->tctx, c->fd);
      int e = conn_flush(c);
      if (e) {
        conn_destroy(c, e);
        return;
      }
      if (tp_pending(c) > 0) return; /* the closing record is on its way */
    }
  }
  start_linger(c);
}

static void conn_set_interest(ws_loop_conn *c) {
  ws_loop *l = c->loop;
  unsigned ev = 0;
  if (c->state == C_DEAD || (c->flags & F_HUP)) return;
  if (c->state == C_CONNECTING)
    ev = WS_DRV_OUT;
  else {
    if (can_read(c)) ev |= WS_DRV_IN;
    if (conn_pending(c) > 0) ev |= WS_DRV_OUT;
  }
  if ((c->flags & F_REG) && ev == c->events) return;
  /* Reading starts or resumes: read once without waiting, since the
   * transport (TLS) may hold input that no readiness will announce. */
  if ((ev & WS_DRV_IN) && c->state == C_WS &&
      !((c->flags & F_REG) && (c->events & WS_DRV_IN)))
    mark_again(c);
  int rv;
  if (c->flags & F_REG)
    rv = l->poller.mod(l->poller.self, c->fd, c, ev);
  else
    rv = l->poller.add(l->poller.self, c->fd, c, ev);
  if (rv != 0) {
    c->sys_errno = errno;
    c->io_err = WS_LOOP_ERR_IO;
    conn_destroy(c, WS_LOOP_ERR_IO);
    return;
  }
  c->flags |= F_REG;
  c->events = ev;
}

static uint64_t conn_deadline(const ws_loop_conn *c) {
  const ws_loop *l = c->loop;
  uint64_t d = NO_DEADLINE;
  if ((c->state == C_WS || c->state == C_SNIFF || c->state == C_CONNECTING) &&
      !(c->flags & F_PAUSED))
    d = ws_conn_next_deadline(c->ws);
  if (c->state == C_LINGER || (c->flags & F_SD_CLOSE))
    d = c->drv_at < d ? c->drv_at : d;
  if (l->cfg.write_timeout_ms && c->stall_since) {
    uint64_t s = c->stall_since + l->cfg.write_timeout_ms;
    d = s < d ? s : d;
  }
  return d;
}

/* After anything happened to |c|: write, account backpressure, end the
 * transport when due, and update interest and deadline. */
static void conn_after(ws_loop_conn *c) {
  ws_loop *l = c->loop;
  const ws_loop_callbacks *cb = &l->cfg.callbacks;
  if (c->state == C_DEAD) return;
  if (c->state != C_CONNECTING) {
    for (int round = 0; round < 4 && c->state != C_DEAD; round++) {
      int e = conn_flush(c);
      if (e) {
        conn_lost(c, e);
        return;
      }
      retry_deferred(c);
      size_t pend = conn_pending(c);
      int again = 0;
      if (c->state == C_WS && !(c->flags & F_CONGESTED) &&
          pend > l->cfg.high_water) {
        c->flags |= F_CONGESTED;
        if (cb->on_writable && (c->flags & F_KNOWN))
          note_rv(l, cb->on_writable(c, c->user_data, 0));
      } else if ((c->flags & F_CONGESTED) && pend <= l->cfg.low_water) {
        c->flags &= ~F_CONGESTED;
        if (has_retained(c)) mark_again(c);
        if (cb->on_writable && (c->flags & F_KNOWN) &&
            !(c->flags & F_CLOSED_CB))
          note_rv(l, cb->on_writable(c, c->user_data, 1));
        again = 1; /* the callback may have queued output */
      }
      if ((c->flags & (F_PAUSED | F_PAUSED_AUTO)) ==
              (F_PAUSED | F_PAUSED_AUTO) &&
          pend <= l->cfg.low_water)
        mark_again(c); /* auto-resume */
      if (!again || conn_pending(c) == 0) break;
    }
    if (c->state == C_DEAD) return;
    if (conn_pending(c) == 0) c->stall_since = 0;
    else if (!c->stall_since) c->stall_since = l->now;
    maybe_finish(c);
    if (c->state == C_DEAD) return;
  }
  conn_set_interest(c);
  if (c->state == C_DEAD) return;
  if (heap_update(l, c, conn_deadline(c)) != 0) conn_destroy(c, WS_ERR_NOMEM);
}

/* ---- client connect ---------------------------------------------------------- */

#ifndef HAVE_SOCK_FLAGS
static int set_fd_flags(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}
#endif

/* socket(), non-blocking and close-on-exec, without SIGPIPE. */
static int sock_open(int family, int type, int proto) {
#ifdef HAVE_SOCK_FLAGS
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
#else
  int fd = socket(family, type, proto);
  if (fd >= 0) fd = set_fd_flags(fd);
#endif
#ifdef SO_NOSIGPIPE
  int one = 1;
  if (fd >= 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

/* accept(), the same way. */
static int sock_accept(int lfd) {
#ifdef HAVE_SOCK_FLAGS
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
  int fd = accept(lfd, NULL, NULL);
  if (fd >= 0) fd = set_fd_flags(fd);
#endif
#ifdef SO_NOSIGPIPE
  int one = 1;
  if (fd >= 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

static int set_nodelay(int fd) {
  int one = 1;
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Tries the remaining addresses until a connect is under way. Returns 0
 * or the errno of the last attempt. */
static int connect_next(ws_loop_conn *c) {
  conn_aux *a = c->aux;
  int err = ECONNREFUSED;
  while (a->ai_next) {
    struct addrinfo *ai = a->ai_next;
    a->ai_next = ai->ai_next;
    int fd = sock_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
      c->fd = fd;
      c->state = C_CONNECTING;
      return 0;
    }
    err = errno;
    close(fd);
  }
  return err;
}

static void connect_done(ws_loop_conn *c) {
  ws_loop *l = c->loop;
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err) {
    if (c->flags & F_REG) l->poller.remove(l->poller.self, c->fd);
    c->flags &= ~F_REG;
    close(c->fd);
    c->fd = -1;
    int e2 = connect_next(c);
    if (e2) {
      c->io_err = WS_LOOP_ERR_IO;
      c->sys_errno = err;
      conn_destroy(c, WS_LOOP_ERR_IO);
    }
    return;
  }
  conn_aux *a = c->aux;
  freeaddrinfo(a->ai_all);
  a->ai_all = a->ai_next = NULL;
  set_nodelay(c->fd);
  if (c->tp->attach) {
    errno = 0;
    int rv = c->tp->attach(c->tp->user_data, c->fd, WS_ROLE_CLIENT,
                           a->server_name, &c->tctx);
    if (rv != 0) {
      c->tctx = NULL;
      conn_destroy(c, tp_fail(c, rv));
      return;
    }
  }
  c->state = C_WS;
}

int ws_loop_connect(ws_loop *l, const ws_loop_connect_params *p,
                    ws_loop_conn **pconn) {
  if (pconn) *pconn = NULL;
  if (!l || !p || !p->host || !p->port) return WS_ERR_INVALID_ARGUMENT;
  ws_config cfg;
  if (p->config)
    cfg = *p->config;
  else
    ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.role = WS_ROLE_CLIENT;
  if (!cfg.rand) cfg.rand = ws_loop_rand;

  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  char port[8];
  snprintf(port, sizeof(port), "%u", (unsigned)p->port);
  int gai = getaddrinfo(p->host, port, &hints, &res);
  if (gai != 0 || !res) {
    /* AI_ADDRCONFIG hides loopback-only setups on some systems */
    hints.ai_flags = AI_NUMERICSERV;
    gai = getaddrinfo(p->host, port, &hints, &res);
    if (gai != 0 || !res) return WS_LOOP_ERR_RESOLVE;
  }
  l->now = clock_ms();
  ws_loop_conn *c = conn_new(l, -1, WS_ROLE_CLIENT, &cfg, p->transport,
                             p->user_data);
  conn_aux *a = c ? get_aux(c) : NULL;
  size_t hl = strlen(p->host) + 1;
  if (a) a->server_name = lmalloc(l, hl);
  if (!a || !a->server_name) {
    freeaddrinfo(res);
    if (c) {
      conn_destroy(c, 0);
      if (!l->in_round) free_grave(l);
    }
    return WS_ERR_NOMEM;
  }
  memcpy(a->server_name, p->host, hl);
  a->ai_all = a->ai_next = res;

  ws_client_params rq = p->request;
  if (!rq.host) rq.host = p->host;
  if (!rq.port && p->port != 80) rq.port = p->port;
  int rv = ws_conn_connect(c->ws, &rq);
  int err = rv ? 0 : connect_next(c);
  if (rv || err) {
    conn_destroy(c, 0);
    if (!l->in_round) free_grave(l);
    if (rv) return rv;
    errno = err;
    return WS_LOOP_ERR_IO;
  }
  conn_after(c);
  if (c->state == C_DEAD) {
    if (!l->in_round) free_grave(l);
    return WS_LOOP_ERR_IO;
  }
  c->flags |= F_KNOWN;
  if (pconn) *pconn = c;
  return 0;
}

int ws_loop_parse_url(const char *url, ws_loop_url *u) {
  if (!url || !u) return WS_ERR_INVALID_ARGUMENT;
  memset(u, 0, sizeof(*u));
  const char *p;
  if (strncmp(url, "ws://", 5) == 0) {
    p = url + 5;
    u->port = 80;
  } else if (strncmp(url, "wss://", 6) == 0) {
    p = url + 6;
    u->port = 443;
    u->secure = 1;
  } else {
    return WS_ERR_INVALID_ARGUMENT;
  }
  const char *hend, *rest;
  if (*p == '[') {
    hend = strchr(p, ']');
    if (!hend) return WS_ERR_INVALID_ARGUMENT;
    p++;
    rest = hend + 1;
  } else {
    hend = p + strcspn(p, ":/?#");
    rest = hend;
  }
  size_t hl = (size_t)(hend - p);
  if (hl == 0 || hl >= sizeof(u->host)) return WS_ERR_INVALID_ARGUMENT;
  memcpy(u->host, p, hl);
  if (*rest == ':') {
    char *end;
    unsigned long port = strtoul(rest + 1, &end, 10);
    if (end == rest + 1 || port == 0 || port > 65535)
      return WS_ERR_INVALID_ARGUMENT;
    u->port = (uint16_t)port;
    rest = end;
  }
  if (*rest == '#' || (*rest && *rest != '/' && *rest != '?'))
    return WS_ERR_INVALID_ARGUMENT;
  u->path = *rest == '/' ? rest : "/";
  if (*rest == '?') u->path = rest; /* "ws://h?x": the core needs a path */
  return 0;
}

/* ---- listening -------------------------------------------------------------- */

static void listener_watch(ws_loop *l, listener *s, int on) {
  if (s->watching == on) return;
  if (l->poller.mod(l->poller.self, s->fd, s, on ? WS_DRV_IN : 0) == 0)
    s->watching = (uint8_t)on;
}

int ws_loop_listen(ws_loop *l, const ws_loop_listen_params *p,
                   uint16_t *pport) {
  if (!l || !p) return WS_ERR_INVALID_ARGUMENT;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  char port[8];
  snprintf(port, sizeof(port), "%u", (unsigned)p->port);
  if (getaddrinfo(p->host ? p->host : "127.0.0.1", port, &hints, &res) != 0 ||
      !res)
    return WS_ERR_INVALID_ARGUMENT;
  listener *s = lmalloc(l, sizeof(*s));
  if (!s) {
    freeaddrinfo(res);
    return WS_ERR_NOMEM;
  }
  memset(s, 0, sizeof(*s));
  s->h.kind = H_LISTENER;
  if (p->config)
    s->cfg = *p->config;
  else
    ws_config_default(&s->cfg, WS_ROLE_SERVER);
  s->cfg.role = WS_ROLE_SERVER;
  s->user_data = p->user_data;
  s->tp = p->transport;
  int one = 1, fd = sock_open(res->ai_family, SOCK_STREAM, 0);
  int ok = fd >= 0 &&
           setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0;
  if (ok && (p->flags & WS_LOOP_REUSEPORT))
    ok = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
  if (ok && res->ai_family == AF_INET6) {
    int v6only = (p->flags & WS_LOOP_V6ONLY) ? 1 : 0;
    ok = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                    sizeof(v6only)) == 0;
  }
  ok = ok && bind(fd, res->ai_addr, res->ai_addrlen) == 0 &&
       listen(fd, p->backlog > 0 ? p->backlog : SOMAXCONN) == 0;
  freeaddrinfo(res);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  ok = ok && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0;
  ok = ok && l->poller.add(l->poller.self, fd, s, WS_DRV_IN) == 0;
  if (!ok) {
    int e = errno;
    if (fd >= 0) close(fd);
    lfree(l, s);
    errno = e;
    return WS_LOOP_ERR_IO;
  }
  s->fd = fd;
  s->watching = 1;
  s->next = l->listeners;
  l->listeners = s;
  if (pport)
    *pport = ntohs(ss.ss_family == AF_INET6
                       ? ((struct sockaddr_in6 *)&ss)->sin6_port
                       : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

static void accept_round(ws_loop *l, listener *s) {
  for (int i = 0; i < ACCEPT_BUDGET; i++) {
    int fd = sock_accept(s->fd);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* Out of descriptors: stop accepting for a moment, not spin. */
        for (listener *t = l->listeners; t; t = t->next)
          listener_watch(l, t, 0);
        l->listen_paused = 1;
        l->listen_resume_at = l->now + LISTEN_PAUSE_MS;
      }
      return;
    }
    set_nodelay(fd);
    ws_loop_conn *c =
        conn_new(l, fd, WS_ROLE_SERVER, &s->cfg, s->tp, s->user_data);
    if (!c) {
      close(fd);
      continue;
    }
    c->lst = s;
    c->state = l->cfg.callbacks.on_http ? C_SNIFF : C_WS;
    if (c->tp->attach && c->tp->attach(c->tp->user_data, fd, WS_ROLE_SERVER,
                                       NULL, &c->tctx) != 0) {
      c->tctx = NULL;
      conn_destroy(c, WS_LOOP_ERR_IO); /* owed no on_close yet */
      continue;
    }
    conn_after(c);
  }
}

/* ---- readiness ------------------------------------------------------------------ */

void ws_drv_ready(ws_loop *l, void *tag, unsigned events) {
  /* Both kinds start with a handle: its first byte says which. */
  if (*(const uint8_t *)tag == H_LISTENER) {
    accept_round(l, tag);
    return;
  }
  ws_loop_conn *c = tag;
  if (c->state == C_DEAD) return;
  if (c->state == C_CONNECTING) {
    if (events & (WS_DRV_OUT | WS_DRV_ERR)) connect_done(c);
    if (c->state == C_DEAD) return;
    conn_after(c);
    return;
  }
  if (events & WS_DRV_OUT) {
    int e = conn_flush(c);
    if (e) {
      conn_lost(c, e);
      return;
    }
  }
  if (events & (WS_DRV_IN | WS_DRV_ERR)) {
    if (can_read(c)) {
      conn_read_round(c);
    } else if (events & WS_DRV_ERR) {
      /* Not reading now: stop watching, or the hang-up repeats; the next
       * read (after a resume) finds out what happened. */
      int e = conn_pending(c) ? conn_flush(c) : 0;
      if (e) {
        conn_lost(c, e);
        return;
      }
      if (c->flags & F_REG) l->poller.remove(l->poller.self, c->fd);
      c->flags &= ~F_REG;
      c->flags |= F_HUP;
    }
  }
  conn_after(c);
}

/* ---- pauses ---------------------------------------------------------------------- */

/* Runs a connection from the again list: a resumed pause, retained input,
 * or a read budget that ran out. */
static void conn_again(ws_loop_conn *c) {
  ws_loop *l = c->loop;
  if (c->state == C_DEAD) return;
  if (c->flags & F_PAUSED) {
    int go = (c->flags & F_RESUME) ||
             ((c->flags & F_PAUSED_AUTO) && conn_pending(c) <= l->cfg.low_water);
    if (!go) {
      conn_after(c);
      return;
    }
    c->flags &= ~(F_PAUSED | F_PAUSED_AUTO | F_RESUME);
    ws_event ev = c->aux->ev;
    /* A request answered meanwhile is not delivered again. */
    int redeliver = !(ev.type == WS_EV_REQUEST &&
                      ws_conn_state(c->ws) != WS_STATE_CONNECTING);
    if (redeliver && dispatch(c, &ev) == WS_LOOP_PAUSE) {
      if (keep_event(c, &ev) != 0) ws_conn_close(c->ws, 1011, NULL, 0);
      conn_after(c);
      return;
    }
  }
  c->flags &= ~F_RESUME;
  if (c->state == C_WS) {
    if (has_retained(c)) {
      if (!(c->flags & F_CONGESTED)) {
        conn_aux *a = c->aux;
        process_input(c, a->rbuf, a->rpos, a->rlen, 1);
        conn_tick(c);
      }
    } else {
      pull_events(c);
    }
  }
  c->flags &= ~F_HUP; /* hung up while not reading: look again */
  if (can_read(c)) conn_read_round(c);
  conn_after(c);
}

void ws_loop_resume(ws_loop_conn *c) {
  if (!c || c->state == C_DEAD || !(c->flags & F_PAUSED)) return;
  c->flags |= F_RESUME;
  mark_again(c);
}

/* ---- timers ---------------------------------------------------------------------- */

static void run_timers(ws_loop *l) {
  /* Take the due connections first: handling one may re-arm it. */
  ws_loop_conn *due = NULL;
  while (l->heaplen && l->heap[0]->deadline <= l->now) {
    ws_loop_conn *c = l->heap[0];
    heap_remove(l, c);
    c->next_due = due;
    due = c;
  }
  while (due) {
    ws_loop_conn *c = due;
    due = c->next_due;
    c->next_due = NULL;
    if (c->state == C_DEAD) continue;
    const ws_loop_config *cfg = &l->cfg;
    if (c->state == C_LINGER && l->now >= c->drv_at) {
      conn_destroy(c, 0);
      continue;
    }
    if (cfg->write_timeout_ms && c->stall_since &&
        l->now >= c->stall_since + cfg->write_timeout_ms) {
      c->end_err = WS_LOOP_ERR_STALLED;
      conn_destroy(c, WS_LOOP_ERR_STALLED);
      continue;
    }
    if ((c->flags & F_SD_CLOSE) && l->now >= c->drv_at) {
      c->flags &= ~F_SD_CLOSE;
      if (c->state == C_WS && ws_conn_state(c->ws) == WS_STATE_OPEN) {
        const char *r = sd_reason(l->sd_code);
        ws_conn_close(c->ws, l->sd_code, r, strlen(r));
      }
    }
    if (!(c->flags & F_PAUSED) && ws_conn_next_deadline(c->ws) <= l->now)
      conn_tick(c);
    conn_after(c);
  }
}

/* ---- posts from other threads ------------------------------------------------ */

static int post_push(ws_loop *l, post *p) {
  pthread_mutex_lock(&l->mu);
  p->next = NULL;
  if (l->post_tail)
    l->post_tail->next = p;
  else
    l->post_head = p;
  l->post_tail = p;
  pthread_mutex_unlock(&l->mu);
  atomic_store(&l->posted, 1);
  l->poller.wake(l->poller.self);
  return 0;
}

static post *post_alloc(ws_loop *l, size_t len) {
  size_t before = atomic_fetch_add(&l->post_bytes, len);
  if (len && before + len > l->cfg.max_post_bytes) {
    atomic_fetch_sub(&l->post_bytes, len);
    return NULL;
  }
  post *p = lmalloc(l, sizeof(post) + len);
  if (!p) {
    atomic_fetch_sub(&l->post_bytes, len);
    return NULL;
  }
  memset(p, 0, sizeof(*p));
  p->len = len;
  return p;
}

int ws_loop_post_send(ws_loop *l, uint64_t id, ws_opcode opcode,
                      const void *data, size_t len, uint32_t flags) {
  if (!l || (len && !data) || (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY))
    return WS_ERR_INVALID_ARGUMENT;
  if (len > l->cfg.max_post_bytes) return WS_ERR_TOO_BIG;
  post *p = post_alloc(l, len);
  if (!p) {
    /* Tell a full budget from a failed allocation. */
    return atomic_load(&l->post_bytes) + len > l->cfg.max_post_bytes
               ? WS_ERR_WOULDBLOCK
               : WS_ERR_NOMEM;
  }
  p->kind = P_SEND;
  p->id = id;
  p->opcode = (uint8_t)opcode;
  p->flags = flags;
  if (len) memcpy(p->data, data, len);
  return post_push(l, p);
}

int ws_loop_post_close(ws_loop *l, uint64_t id, uint16_t code,
                       const char *reason) {
  size_t rl = reason ? strlen(reason) : 0;
  if (!l || rl > WS_CONTROL_MAX - 2 || (code && !ws_close_code_valid(code)))
    return WS_ERR_INVALID_ARGUMENT;
  post *p = post_alloc(l, rl);
  if (!p) return WS_ERR_NOMEM;
  p->kind = P_CLOSE;
  p->id = id;
  p->code = code;
  if (rl) memcpy(p->data, reason, rl);
  return post_push(l, p);
}

int ws_loop_post_call(ws_loop *l, void (*fn)(ws_loop *, void *), void *arg) {
  if (!l || !fn) return WS_ERR_INVALID_ARGUMENT;
  post *p = post_alloc(l, 0);
  if (!p) return WS_ERR_NOMEM;
  p->kind = P_CALL;
  p->fn = fn;
  p->arg = arg;
  return post_push(l, p);
}

static void run_posts(ws_loop *l) {
  if (!atomic_exchange(&l->posted, 0)) return;
  pthread_mutex_lock(&l->mu);
  post *p = l->post_head;
  l->post_head = l->post_tail = NULL;
  pthread_mutex_unlock(&l->mu);
  while (p) {
    post *next = p->next;
    p->next = NULL;
    if (p->kind == P_CALL) {
      p->fn(l, p->arg);
      post_free(l, p);
    } else if (p->kind == P_CLOSE) {
      ws_loop_conn *c = conn_by_id(l, p->id);
      if (c) ws_loop_close(c, p->code, p->data, p->len);
      post_free(l, p);
    } else if (p->id == 0) {
      ws_loop_broadcast(l, (ws_opcode)p->opcode, p->data, p->len, NULL, NULL);
      post_free(l, p);
    } else {
      ws_loop_conn *c = conn_by_id(l, p->id);
      conn_aux *a = c && c->state == C_WS ? c->aux : NULL;
      int rv = WS_ERR_INVALID_STATE;
      if (c && c->state == C_WS && !(a && a->def_head)) {
        rv = ws_loop_send(c, (ws_opcode)p->opcode, p->data, p->len, p->flags);
      } else if (c && c->state == C_WS) {
        rv = WS_ERR_WOULDBLOCK; /* keep the order behind the waiting ones */
      }
      if (rv == WS_ERR_WOULDBLOCK && (a || (a = get_aux(c)) != NULL)) {
        if (a->def_tail)
          a->def_tail->next = p;
        else
          a->def_head = p;
        a->def_tail = p;
        mark_dirty(c);
      } else {
        post_free(l, p);
      }
    }
    p = next;
  }
}

/* ---- shutdown -------------------------------------------------------------------- */

void ws_loop_stop(ws_loop *l) {
  if (!l) return;
  atomic_store(&l->stop_req, 1);
  l->poller.wake(l->poller.self);
}

void ws_loop_shutdown(ws_loop *l, uint16_t code, uint32_t spread_ms,
                      uint32_t drain_ms) {
  if (!l) return;
  atomic_store(&l->sd_req_code, code ? code : 1001u);
  atomic_store(&l->sd_req_spread, spread_ms);
  atomic_store(&l->sd_req_drain, drain_ms);
  atomic_store(&l->shutdown_req, 1);
  l->poller.wake(l->poller.self);
}

static void close_listeners(ws_loop *l) {
  while (l->listeners) {
    listener *s = l->listeners;
    l->listeners = s->next;
    l->poller.remove(l->poller.self, s->fd);
    close(s->fd);
    lfree(l, s);
  }
}

static void start_drain(ws_loop *l) {
  unsigned code = atomic_load(&l->sd_req_code);
  uint32_t spread = atomic_load(&l->sd_req_spread);
  l->draining = 1;
  l->sd_code = (uint16_t)(code == 1012 ? 1012 : code == 1001 ? 1001
                          : ws_close_code_valid((uint16_t)code) ? code
                                                                : 1001);
  l->drain_deadline = l->now + atomic_load(&l->sd_req_drain);
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = l->slots[i];
    if (!c || c->state != C_WS) continue;
    ws_state st = ws_conn_state(c->ws);
    if (st == WS_STATE_OPEN) {
      uint32_t r = 0;
      if (spread) {
        ws_loop_rand((uint8_t *)&r, sizeof(r), NULL);
        r %= spread;
      }
      if (r == 0) {
        const char *why = sd_reason(l->sd_code);
        ws_conn_close(c->ws, l->sd_code, why, strlen(why));
        mark_dirty(c);
      } else {
        c->flags |= F_SD_CLOSE;
        c->drv_at = l->now + r;
        heap_update(l, c, conn_deadline(c));
      }
    } else if (st == WS_STATE_CONNECTING && (c->flags & F_PAUSED) &&
               c->aux->ev.type == WS_EV_REQUEST) {
      /* a request the application has not answered yet */
      static const ws_kv ra[] = {{"Retry-After", "5"}};
      ws_conn_reject(c->ws, 503, ra, 1, NULL, 0);
      mark_again(c);
    }
  }
}

static void finish_drain(ws_loop *l) {
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = l->slots[i];
    if (c) conn_destroy(c, WS_LOOP_ERR_SHUTDOWN);
  }
  close_listeners(l);
  l->stopped = 1;
}

/* ---- the round ------------------------------------------------------------------- */

static void drain_lists(ws_loop *l) {
  /* The again list: this round's snapshot; additions go to the next. */
  ws_loop_conn *c = l->again;
  l->again = NULL;
  while (c) {
    ws_loop_conn *next = c->next_again;
    c->flags &= ~F_AGAIN;
    c->next_again = NULL;
    conn_again(c);
    c = next;
  }
  while (l->dirty) {
    c = l->dirty;
    l->dirty = c->next_dirty;
    c->flags &= ~F_DIRTY;
    conn_after(c);
  }
}

static int wait_timeout(ws_loop *l, int timeout_ms) {
  if (l->again || l->dirty || atomic_load(&l->posted) ||
      atomic_load(&l->stop_req) || atomic_load(&l->shutdown_req))
    return 0;
  uint64_t d = l->heaplen ? l->heap[0]->deadline : NO_DEADLINE;
  if (l->draining && l->drain_deadline < d) d = l->drain_deadline;
  if (l->listen_paused && l->listen_resume_at < d) d = l->listen_resume_at;
  uint64_t now = clock_ms();
  int t;
  if (d == NO_DEADLINE)
    t = -1;
  else if (d <= now)
    t = 0;
  else
    t = d - now > INT_MAX ? INT_MAX : (int)(d - now);
  if (timeout_ms >= 0 && (t < 0 || timeout_ms < t)) t = timeout_ms;
  return t;
}

int ws_loop_run_once(ws_loop *l, int timeout_ms) {
  if (!l) return WS_ERR_INVALID_ARGUMENT;
  if (l->stopped) return 1;
  if (l->nconns == 0 && !l->listeners && !atomic_load(&l->posted) &&
      !atomic_load(&l->stop_req) && !atomic_load(&l->shutdown_req))
    return 1; /* nothing left: do not wait for ever */
  int t = wait_timeout(l, timeout_ms);
  l->in_round = 1;
  int rv = l->poller.wait(l->poller.self, l, t);
  l->now = clock_ms();
  int rc = 0;
  if (rv != 0) rc = WS_LOOP_ERR_IO;
  if (atomic_exchange(&l->stop_req, 0)) l->stopped = 1;
  run_posts(l);
  if (atomic_exchange(&l->shutdown_req, 0) && !l->draining) start_drain(l);
  if (l->listen_paused && l->now >= l->listen_resume_at) {
    l->listen_paused = 0;
    for (listener *s = l->listeners; s; s = s->next) listener_watch(l, s, 1);
  }
  run_timers(l);
  drain_lists(l);
  if (l->draining && (l->nconns == 0 || l->now >= l->drain_deadline))
    finish_drain(l);
  free_grave(l);
  l->in_round = 0;
  if (rc) return rc;
  if (l->stop_rv) {
    rc = l->stop_rv;
    l->stop_rv = 0;
    l->stopped = 1;
    return rc;
  }
  if (l->stopped) return 1;
  if (l->nconns == 0 && !l->listeners && !atomic_load(&l->posted)) return 1;
  return 0;
}

int ws_loop_run(ws_loop *l) {
  if (!l) return WS_ERR_INVALID_ARGUMENT;
  l->stopped = 0;
  for (;;) {
    int rv = ws_loop_run_once(l, -1);
    if (rv == 1) return 0;
    if (rv != 0) return rv;
  }
}

/* ---- connection API -------------------------------------------------------------- */

int ws_loop_accept(ws_loop_conn *c, const ws_accept_params *params) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_accept(c->ws, params);
  if (rv == 0) {
    mark_dirty(c);
    if (c->flags & F_PAUSED) mark_again(c); /* the open event is waiting */
  }
  return rv;
}

int ws_loop_reject(ws_loop_conn *c, int status, const ws_kv *headers,
                   size_t nheaders, const void *body, size_t bodylen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_reject(c->ws, status, headers, nheaders, body, bodylen);
  if (rv == 0) {
    c->end_err = WS_ERR_REJECTED;
    c->http_status = (uint16_t)status;
    mark_dirty(c);
    if (c->flags & F_PAUSED) mark_again(c);
  }
  return rv;
}

int ws_loop_send(ws_loop_conn *c, ws_opcode opcode, const void *data,
                 size_t len, uint32_t flags) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_send(c->ws, opcode, data, len, flags);
  if (rv == 0) mark_dirty(c);
  return rv;
}

int ws_loop_ping(ws_loop_conn *c, const void *data, size_t len) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_ping(c->ws, data, len);
  if (rv == 0) mark_dirty(c);
  return rv;
}

int ws_loop_close(ws_loop_conn *c, uint16_t code, const void *reason,
                  size_t reasonlen) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->state != C_WS) return WS_ERR_INVALID_STATE;
  int rv = ws_conn_close(c->ws, code, reason, reasonlen);
  if (rv == 0) mark_dirty(c);
  return rv;
}

int ws_loop_broadcast(ws_loop *l, ws_opcode opcode, const void *data,
                      size_t len, const ws_loop_conn *except,
                      size_t *pnsent) {
  size_t n = 0;
  if (pnsent) *pnsent = 0;
  if (!l || (len && !data) || (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY))
    return WS_ERR_INVALID_ARGUMENT;
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = l->slots[i];
    if (!c || c == except || c->state != C_WS ||
        ws_conn_state(c->ws) != WS_STATE_OPEN)
      continue;
    if (ws_conn_send(c->ws, opcode, data, len, 0) == 0) {
      mark_dirty(c);
      n++;
    }
  }
  if (pnsent) *pnsent = n;
  return 0;
}

uint64_t ws_loop_conn_id(const ws_loop_conn *c) { return c ? c->id : 0; }
ws_loop *ws_loop_conn_loop(const ws_loop_conn *c) { return c ? c->loop : NULL; }
void *ws_loop_conn_user_data(const ws_loop_conn *c) {
  return c ? c->user_data : NULL;
}
void ws_loop_conn_set_user_data(ws_loop_conn *c, void *ud) {
  if (c) c->user_data = ud;
}
ws_conn *ws_loop_conn_ws(const ws_loop_conn *c) { return c ? c->ws : NULL; }
size_t ws_loop_conn_pending(const ws_loop_conn *c) {
  return c ? conn_pending(c) : 0;
}

void ws_loop_conn_peer(const ws_loop_conn *c, char *buf, size_t buflen) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (!buf || buflen == 0) return;
  buf[0] = 0;
  memset(&ss, 0, sizeof(ss));
  if (!c || c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &sl) != 0)
    return;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
    port = ntohs(s6->sin6_port);
    snprintf(buf, buflen, "[%s]:%u", host, port);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
    port = ntohs(s4->sin_port);
    snprintf(buf, buflen, "%s:%u", host, port);
  }
}

void *ws_loop_user_data(const ws_loop *l) { return l ? l->cfg.user_data : NULL; }
uint64_t ws_loop_now(const ws_loop *l) { return l ? l->now : 0; }
size_t ws_loop_conn_count(const ws_loop *l) { return l ? l->nconns : 0; }

/* ---- creation ------------------------------------------------------------------------ */

int ws_drv_new(ws_loop **ploop, const ws_loop_config *cfg,
               const ws_drv_poller *poller) {
  ws_mem m;
  if (ploop) *ploop = NULL;
  if (!ploop || !cfg || cfg->read_size < 1024 ||
      cfg->low_water > cfg->high_water) {
    poller->del(poller->self);
    return WS_ERR_INVALID_ARGUMENT;
  }
  if (cfg->mem && (cfg->mem->malloc || cfg->mem->realloc || cfg->mem->free)) {
    if (!cfg->mem->malloc || !cfg->mem->realloc || !cfg->mem->free) {
      poller->del(poller->self);
      return WS_ERR_INVALID_ARGUMENT;
    }
    m = *cfg->mem;
  } else {
    m.user_data = NULL;
    m.malloc = def_malloc;
    m.realloc = def_realloc;
    m.free = def_free;
  }
  ws_loop *l = m.malloc(sizeof(*l), m.user_data);
  if (!l) {
    poller->del(poller->self);
    return WS_ERR_NOMEM;
  }
  memset(l, 0, sizeof(*l));
  l->cfg = *cfg;
  l->mem = m;
  l->poller = *poller;
  l->rbuf = lmalloc(l, cfg->read_size);
  if (!l->rbuf || pthread_mutex_init(&l->mu, NULL) != 0) {
    lfree(l, l->rbuf);
    poller->del(poller->self);
    m.free(l, m.user_data);
    return WS_ERR_NOMEM;
  }
  atomic_init(&l->post_bytes, 0);
  atomic_init(&l->posted, 0);
  atomic_init(&l->stop_req, 0);
  atomic_init(&l->shutdown_req, 0);
  atomic_init(&l->sd_req_code, 1001);
  atomic_init(&l->sd_req_spread, 0);
  atomic_init(&l->sd_req_drain, 0);
  l->now = clock_ms();
  *ploop = l;
  return 0;
}

void ws_loop_del(ws_loop *l) {
  if (!l) return;
  l->in_round = 1;
  for (uint32_t i = 0; i < l->nslots; i++) {
    ws_loop_conn *c = l->slots[i];
    if (c) conn_destroy(c, WS_LOOP_ERR_ABORTED);
  }
  close_listeners(l);
  /* nothing is on a list any more */
  for (ws_loop_conn *c = l->grave; c; c = c->next_grave)
    c->flags &= ~(F_DIRTY | F_AGAIN);
  l->dirty = l->again = NULL;
  free_grave(l);
  post *p = l->post_head;
  while (p) {
    post *next = p->next;
    post_free(l, p);
    p = next;
  }
  pthread_mutex_destroy(&l->mu);
  l->poller.del(l->poller.self);
  lfree(l, l->rbuf);
  lfree(l, l->heap);
  lfree(l, l->slots);
  lfree(l, l->gens);
  lfree(l, l->free_slots);
  ws_mem m = l->mem;
  m.free(l, m.user_data);
}
