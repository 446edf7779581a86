/*
 * The simulated network and clock of sim.h.
 * SPDX-License-Identifier: MIT
 */
#include "sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define FD_BASE 3
#define DEFAULT_RCVBUF (256u << 10)

enum { SK_FREE = 0, SK_LISTEN, SK_STREAM };

typedef struct sock {
  int kind;
  int closed;
  int peer; /* the other end's fd, or -1 */
  uint8_t *rx;
  size_t rxoff, rxlen, rxcap, rcvbuf;
  int eof;     /* the peer will send no more */
  int rst;     /* reset */
  int refused; /* a connect nobody listened to */
  uint16_t port;
  int *acceptq; /* listener: connections waiting */
  size_t nacc, acccap;
  int reuseport;
  int poller;  /* registered with this poller id, 0: none */
  void *tag;
  unsigned interest;
} sock;

typedef struct action {
  uint64_t at, seq;
  sim_fn fn;
  void *arg;
} action;

typedef struct spoll {
  sim *s;
  int id;
} spoll;

struct sim {
  uint64_t now, rng, seq;
  sock *socks;
  int nsocks, cap;
  action *acts;
  size_t nacts, actcap;
  sim_stats st;
  int fail_accepts, fail_err;
  size_t max_read, max_write;
  uint64_t block_limit;
  int next_poller;
  uint16_t next_port;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int woken;
  ws_drv_sys sys;
};

static sock *get(const sim *s, int fd) {
  int i = fd - FD_BASE;
  if (i < 0 || i >= s->nsocks || s->socks[i].kind == SK_FREE) return NULL;
  return &s->socks[i];
}

/* A descriptor known to be open (just made). */
static sock *at(sim *s, int fd) { return &s->socks[fd - FD_BASE]; }

static int new_sock(sim *s, int kind) {
  int i;
  for (i = 0; i < s->nsocks; i++)
    if (s->socks[i].kind == SK_FREE) break;
  if (i == s->nsocks) {
    if (s->nsocks == s->cap) {
      s->cap = s->cap ? s->cap * 2 : 64;
      s->socks = realloc(s->socks, (size_t)s->cap * sizeof(sock));
    }
    s->nsocks++;
  }
  sock *k = &s->socks[i];
  memset(k, 0, sizeof(*k));
  k->kind = kind;
  k->peer = -1;
  k->rcvbuf = DEFAULT_RCVBUF;
  s->st.open_fds++;
  return i + FD_BASE;
}

static void free_sock(sim *s, int fd) {
  sock *k = get(s, fd);
  if (!k) return;
  free(k->rx);
  free(k->acceptq);
  memset(k, 0, sizeof(*k));
  s->st.open_fds--;
}

/* ---- byte queues ---------------------------------------------------------- */

static size_t rx_room(const sock *k) {
  size_t have = k->rxlen - k->rxoff;
  return have >= k->rcvbuf ? 0 : k->rcvbuf - have;
}

static size_t rx_push(sock *k, const uint8_t *p, size_t n) {
  size_t room = rx_room(k);
  if (n > room) n = room;
  if (!n) return 0;
  if (k->rxoff && k->rxoff == k->rxlen) k->rxoff = k->rxlen = 0;
  if (k->rxlen + n > k->rxcap) {
    if (k->rxoff) { /* (k->rx is NULL until the first push) */
      memmove(k->rx, k->rx + k->rxoff, k->rxlen - k->rxoff);
      k->rxlen -= k->rxoff;
      k->rxoff = 0;
    }
    if (k->rxlen + n > k->rxcap) {
      k->rxcap = (k->rxlen + n) * 2;
      k->rx = realloc(k->rx, k->rxcap);
    }
  }
  memcpy(k->rx + k->rxlen, p, n);
  k->rxlen += n;
  return n;
}

static size_t rx_pop(sock *k, uint8_t *p, size_t cap) {
  size_t n = k->rxlen - k->rxoff;
  if (n > cap) n = cap;
  if (n) memcpy(p, k->rx + k->rxoff, n);
  k->rxoff += n;
  return n;
}

/* ---- the clock and the script --------------------------------------------- */

uint64_t sim_now(const sim *s) { return s->now; }

void sim_at(sim *s, uint64_t at, sim_fn fn, void *arg) {
  if (s->nacts == s->actcap) {
    s->actcap = s->actcap ? s->actcap * 2 : 16;
    s->acts = realloc(s->acts, s->actcap * sizeof(action));
  }
  action a = {at, s->seq++, fn, arg};
  s->acts[s->nacts++] = a;
}

/* The index of the next action, or -1. */
static long next_action(const sim *s) {
  long best = -1;
  for (size_t i = 0; i < s->nacts; i++) {
    const action *a = &s->acts[i];
    if (best < 0 || a->at < s->acts[best].at ||
        (a->at == s->acts[best].at && a->seq < s->acts[best].seq))
      best = (long)i;
  }
  return best;
}

/* Runs every action due at the current time. */
static void run_due(sim *s) {
  for (;;) {
    long i = next_action(s);
    if (i < 0 || s->acts[i].at > s->now) return;
    action a = s->acts[i];
    s->acts[i] = s->acts[--s->nacts];
    a.fn(s, a.arg);
  }
}

/* ---- the poller ------------------------------------------------------------- */

static unsigned readiness(const sim *s, const sock *k) {
  if (k->kind == SK_LISTEN) return k->nacc ? WS_DRV_IN : 0;
  if (k->refused) return WS_DRV_OUT | WS_DRV_ERR;
  unsigned r = 0;
  if (k->rxlen > k->rxoff || k->eof || k->rst) r |= WS_DRV_IN;
  if (k->rst) return r | WS_DRV_OUT | WS_DRV_ERR;
  const sock *p = k->peer >= 0 ? get(s, k->peer) : NULL;
  if (!p || p->closed) return r | WS_DRV_OUT | (k->eof ? WS_DRV_ERR : 0);
  if (rx_room(p)) r |= WS_DRV_OUT;
  return r;
}

static int collect(sim *s, int id, ws_drv_event *out, int cap) {
  int n = 0;
  for (int i = 0; i < s->nsocks && n < cap; i++) {
    const sock *k = &s->socks[i];
    if (k->kind == SK_FREE || k->closed || k->poller != id) continue;
    unsigned r = readiness(s, k);
    unsigned ev = (r & k->interest) | (r & WS_DRV_ERR);
    if (!ev) continue;
    out[n].tag = k->tag;
    out[n].events = ev;
    n++;
  }
  return n;
}

static int take_wake(sim *s) {
  pthread_mutex_lock(&s->mu);
  int w = s->woken;
  s->woken = 0;
  pthread_mutex_unlock(&s->mu);
  return w;
}

/* wait(-1) with nothing scripted: only another thread can wake us. */
static int block_for_wake(sim *s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(s->block_limit / 1000);
  ts.tv_nsec += (long)(s->block_limit % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  while (!s->woken && rc == 0) rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  int w = s->woken;
  pthread_mutex_unlock(&s->mu);
  return w;
}

static int sp_wait(void *self, int timeout, ws_drv_event *out, int cap) {
  spoll *sp = self;
  sim *s = sp->s;
  uint64_t start = s->now;
  s->st.waits++;
  for (;;) {
    int n = collect(s, sp->id, out, cap);
    if (n > 0 || take_wake(s)) return n;
    uint64_t end = timeout < 0 ? UINT64_MAX : start + (uint64_t)timeout;
    long i = next_action(s);
    if (i >= 0 && s->acts[i].at <= end) {
      if (s->acts[i].at > s->now) s->now = s->acts[i].at;
      run_due(s);
      continue;
    }
    if (timeout >= 0) {
      if (end == start) s->st.idle_waits++; /* nothing, and no time */
      s->now = end;
      return collect(s, sp->id, out, cap);
    }
    if (!block_for_wake(s)) {
      errno = EDEADLK; /* nothing could ever happen: a test bug */
      return -1;
    }
  }
}

static int sp_add(void *self, int fd, void *tag, unsigned events) {
  spoll *sp = self;
  sock *k = get(sp->s, fd);
  if (!k || k->closed) {
    errno = EBADF;
    return -1;
  }
  k->poller = sp->id;
  k->tag = tag;
  k->interest = events;
  return 0;
}

static void sp_remove(void *self, int fd) {
  spoll *sp = self;
  sock *k = get(sp->s, fd);
  if (k) k->poller = 0;
}

static void sp_wake(void *self) {
  spoll *sp = self;
  pthread_mutex_lock(&sp->s->mu);
  sp->s->woken = 1;
  pthread_cond_signal(&sp->s->cv);
  pthread_mutex_unlock(&sp->s->mu);
}

static void sp_del(void *self) { free(self); }

ws_drv_poller sim_poller(sim *s) {
  spoll *sp = malloc(sizeof(*sp));
  sp->s = s;
  sp->id = ++s->next_poller;
  ws_drv_poller p = {sp, sp_add, sp_add, sp_remove, sp_wait, sp_wake, sp_del};
  return p;
}

/* ---- the system calls ----------------------------------------------------- */

static uint64_t sys_now(void *self) { return ((sim *)self)->now; }

static uint64_t next_rand(sim *s) {
  s->rng ^= s->rng << 13;
  s->rng ^= s->rng >> 7;
  s->rng ^= s->rng << 17;
  return s->rng;
}

static int sys_rand(void *self, uint8_t *buf, size_t len) {
  sim *s = self;
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)next_rand(s);
  return 0;
}

static sock *listener_at(sim *s, uint16_t port) {
  for (int i = 0; i < s->nsocks; i++) {
    sock *k = &s->socks[i];
    if (k->kind == SK_LISTEN && !k->closed && k->port == port) return k;
  }
  return NULL;
}

static int sys_listen(void *self, const char *host, uint16_t port,
                      int backlog, uint32_t flags, uint16_t *pport) {
  sim *s = self;
  (void)backlog;
  if (host && strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0) {
    errno = EINVAL;
    return -1;
  }
  if (port == 0) port = s->next_port++;
  sock *old = listener_at(s, port);
  if (old && !(old->reuseport && (flags & WS_LOOP_REUSEPORT))) {
    errno = EADDRINUSE;
    return -1;
  }
  int fd = new_sock(s, SK_LISTEN);
  sock *k = at(s, fd);
  k->port = port;
  k->reuseport = (flags & WS_LOOP_REUSEPORT) != 0;
  *pport = port;
  return fd;
}

static int sys_accept(void *self, int lfd) {
  sim *s = self;
  sock *l = get(s, lfd);
  if (s->fail_accepts > 0) {
    s->fail_accepts--;
    errno = s->fail_err;
    return -1;
  }
  if (!l || l->nacc == 0) {
    errno = EAGAIN;
    return -1;
  }
  int fd = l->acceptq[0];
  memmove(l->acceptq, l->acceptq + 1, --l->nacc * sizeof(int));
  s->st.accepts++;
  return fd;
}

/* A connected pair; the server end waits in |l|'s accept queue. Returns
 * the client end. */
static int make_pair(sim *s, sock *l) {
  ptrdiff_t li = l - s->socks;
  int a = new_sock(s, SK_STREAM);
  int b = new_sock(s, SK_STREAM);
  l = &s->socks[li]; /* new_sock may have moved the table */
  at(s, a)->peer = b;
  at(s, b)->peer = a;
  if (l->nacc == l->acccap) {
    l->acccap = l->acccap ? l->acccap * 2 : 16;
    l->acceptq = realloc(l->acceptq, l->acccap * sizeof(int));
  }
  l->acceptq[l->nacc++] = b;
  return a;
}

int sim_dial(sim *s, uint16_t port) {
  sock *l = listener_at(s, port);
  return l ? make_pair(s, l) : -1;
}

static int sys_resolve(void *self, const char *host, uint16_t port,
                       struct addrinfo **pres) {
  (void)self;
  *pres = NULL;
  if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0)
    return EAI_NONAME;
  struct addrinfo *ai = calloc(1, sizeof(*ai) + sizeof(struct sockaddr_in));
  struct sockaddr_in *sin = (struct sockaddr_in *)(void *)(ai + 1);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  sin->sin_addr.s_addr = htonl(0x7f000001u);
  ai->ai_family = AF_INET;
  ai->ai_socktype = SOCK_STREAM;
  ai->ai_addr = (struct sockaddr *)sin;
  ai->ai_addrlen = sizeof(*sin);
  *pres = ai;
  return 0;
}

static void sys_free_addrs(void *self, struct addrinfo *res) {
  (void)self;
  while (res) {
    struct addrinfo *next = res->ai_next;
    free(res);
    res = next;
  }
}

static int sys_connect(void *self, const struct addrinfo *ai) {
  sim *s = self;
  const struct sockaddr_in *sin = (const struct sockaddr_in *)(void *)ai->ai_addr;
  sock *l = listener_at(s, ntohs(sin->sin_port));
  if (l) return make_pair(s, l);
  int fd = new_sock(s, SK_STREAM);
  at(s, fd)->refused = 1;
  return fd;
}

static int sys_connect_result(void *self, int fd) {
  sock *k = get(self, fd);
  return !k ? EBADF : k->refused ? ECONNREFUSED : 0;
}

static ssize_t sys_recv(void *self, int fd, uint8_t *buf, size_t cap) {
  sim *s = self;
  sock *k = get(s, fd);
  s->st.recvs++;
  if (!k || k->closed) {
    errno = EBADF;
    return -1;
  }
  if (k->rst) {
    errno = ECONNRESET;
    return -1;
  }
  if (s->max_read && cap > s->max_read) cap = s->max_read;
  size_t n = rx_pop(k, buf, cap);
  if (n) return (ssize_t)n;
  if (k->eof) return 0;
  errno = EAGAIN;
  return -1;
}

static ssize_t sys_sendv(void *self, int fd, const ws_iovec *iov, size_t n) {
  sim *s = self;
  sock *k = get(s, fd);
  s->st.sends++;
  if (!k || k->closed) {
    errno = EBADF;
    return -1;
  }
  sock *p = k->peer >= 0 ? get(s, k->peer) : NULL;
  if (k->rst || !p || p->closed) {
    errno = k->rst ? ECONNRESET : EPIPE;
    return -1;
  }
  size_t total = 0, limit = s->max_write ? s->max_write : SIZE_MAX;
  for (size_t i = 0; i < n && total < limit; i++) {
    size_t want = iov[i].len < limit - total ? iov[i].len : limit - total;
    size_t took = rx_push(p, iov[i].base, want);
    total += took;
    if (took < want) break;
  }
  if (total == 0 && (n == 0 || iov[0].len)) {
    s->st.eagain_sends++;
    errno = EAGAIN;
    return -1;
  }
  return (ssize_t)total;
}

static void sys_shutdown_wr(void *self, int fd) {
  sim *s = self;
  sock *k = get(s, fd);
  sock *p = k && k->peer >= 0 ? get(s, k->peer) : NULL;
  if (p) p->eof = 1;
}

static void sys_close(void *self, int fd) {
  sim *s = self;
  sock *k = get(s, fd);
  if (!k) return;
  sock *p = k->peer >= 0 ? get(s, k->peer) : NULL;
  if (p) {
    p->eof = 1;
    p->peer = -1;
  }
  if (k->kind == SK_LISTEN) { /* pending connections are reset */
    for (size_t i = 0; i < k->nacc; i++) {
      sock *c = get(s, k->acceptq[i]);
      sock *cp = c && c->peer >= 0 ? get(s, c->peer) : NULL;
      if (cp) {
        cp->rst = 1;
        cp->peer = -1;
      }
      free_sock(s, k->acceptq[i]);
    }
  }
  free_sock(s, fd);
}

static int sys_peer(void *self, int fd, char *buf, size_t buflen) {
  sock *k = get(self, fd);
  if (!k) return -1;
  snprintf(buf, buflen, "127.0.0.1:%d", 30000 + fd);
  return 0;
}

const ws_drv_sys *sim_sys(sim *s) { return &s->sys; }

sim *sim_new(uint64_t start_ms, uint64_t seed) {
  sim *s = calloc(1, sizeof(*s));
  s->now = start_ms;
  s->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
  s->block_limit = 10000;
  s->next_port = 9000;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  ws_drv_sys sys = {s,           sys_now,        sys_rand,
                    sys_listen,  sys_accept,     sys_resolve,
                    sys_free_addrs, sys_connect, sys_connect_result,
                    sys_recv,    sys_sendv,      sys_shutdown_wr,
                    sys_close,   sys_peer};
  s->sys = sys;
  return s;
}

void sim_del(sim *s) {
  if (!s) return;
  for (int i = 0; i < s->nsocks; i++) {
    free(s->socks[i].rx);
    free(s->socks[i].acceptq);
  }
  free(s->socks);
  free(s->acts);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

/* ---- the test's end ---------------------------------------------------------- */

size_t sim_send(sim *s, int fd, const void *data, size_t len) {
  sock *k = get(s, fd);
  sock *p = k && k->peer >= 0 ? get(s, k->peer) : NULL;
  if (!p || p->closed || k->rst) return 0;
  return rx_push(p, data, len);
}

size_t sim_recv(sim *s, int fd, void *buf, size_t cap) {
  sock *k = get(s, fd);
  return k ? rx_pop(k, buf, cap) : 0;
}

size_t sim_pending(const sim *s, int fd) {
  const sock *k = get(s, fd);
  return k ? k->rxlen - k->rxoff : 0;
}

int sim_peer_done(const sim *s, int fd) {
  const sock *k = get(s, fd);
  return !k || k->eof || k->rst;
}

int sim_peer_closed(const sim *s, int fd) {
  const sock *k = get(s, fd);
  return !k || k->peer < 0 || k->rst;
}

void sim_close(sim *s, int fd) { sys_close(s, fd); }

void sim_reset(sim *s, int fd) {
  sock *k = get(s, fd);
  sock *p = k && k->peer >= 0 ? get(s, k->peer) : NULL;
  if (p) {
    p->rst = 1;
    p->peer = -1;
  }
  free_sock(s, fd);
}

void sim_set_rcvbuf(sim *s, int fd, size_t cap) {
  sock *k = get(s, fd);
  if (k) k->rcvbuf = cap;
}

void sim_get_stats(const sim *s, sim_stats *st) { *st = s->st; }

void sim_fail_accepts(sim *s, int n, int err) {
  s->fail_accepts = n;
  s->fail_err = err;
}

void sim_set_partial(sim *s, size_t max_read, size_t max_write) {
  s->max_read = max_read;
  s->max_write = max_write;
}

void sim_set_block_limit(sim *s, uint64_t ms) { s->block_limit = ms; }

int sim_all_closed(const sim *s) { return s->st.open_fds == 0; }
