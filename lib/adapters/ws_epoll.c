/*
 * The epoll backend of the loop (Linux): level-triggered epoll(7) for
 * readiness, the wait's timeout for timers, an eventfd to be woken from
 * other threads and from signal handlers. Everything else is the shared
 * driver (ws_drv_*.c).
 * SPDX-License-Identifier: MIT
 */
/* A feature-test macro: glibc has the application define it. */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp) */

#include <ws/ws_epoll.h>

#include "ws_driver.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct epoller {
  int epfd;
  int evfd;
  struct epoll_event evs[MAX_EVENTS];
} epoller;

static uint32_t to_epoll(unsigned events) {
  return (events & WS_DRV_IN ? (uint32_t)EPOLLIN : 0u) |
         (events & WS_DRV_OUT ? (uint32_t)EPOLLOUT : 0u);
}

static int ep_ctl(void *self, int op, int fd, void *tag, unsigned events) {
  epoller *e = self;
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = to_epoll(events);
  ev.data.ptr = tag;
  return epoll_ctl(e->epfd, op, fd, &ev);
}

static int ep_add(void *self, int fd, void *tag, unsigned events) {
  return ep_ctl(self, EPOLL_CTL_ADD, fd, tag, events);
}

static int ep_mod(void *self, int fd, void *tag, unsigned events) {
  return ep_ctl(self, EPOLL_CTL_MOD, fd, tag, events);
}

static void ep_remove(void *self, int fd) {
  epoller *e = self;
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, &ev);
}

static int ep_wait(void *self, int timeout_ms, ws_drv_event *out, int cap) {
  epoller *e = self;
  int max = cap < MAX_EVENTS ? cap : MAX_EVENTS, k = 0;
  int n = epoll_wait(e->epfd, e->evs, max, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) {
    struct epoll_event *ev = &e->evs[i];
    if (ev->data.ptr == NULL) { /* the eventfd: just empty it */
      uint64_t v;
      while (read(e->evfd, &v, sizeof(v)) > 0) {}
      continue;
    }
    unsigned r = 0;
    if (ev->events & EPOLLIN) r |= WS_DRV_IN;
    if (ev->events & EPOLLOUT) r |= WS_DRV_OUT;
    if (ev->events & (EPOLLERR | EPOLLHUP)) r |= WS_DRV_ERR;
    out[k].tag = ev->data.ptr;
    out[k].events = r;
    k++;
  }
  return k;
}

static void ep_wake(void *self) {
  epoller *e = self;
  uint64_t one = 1;
  /* EAGAIN: the counter is full, so a wakeup is pending anyway. */
  ssize_t w = write(e->evfd, &one, sizeof(one));
  (void)w;
}

static void ep_del(void *self) {
  epoller *e = self;
  if (e->evfd >= 0) close(e->evfd);
  if (e->epfd >= 0) close(e->epfd);
  free(e);
}

int ws_epoll_loop_new(ws_loop **ploop, const ws_loop_config *cfg) {
  if (!ploop || !cfg) return WS_ERR_INVALID_ARGUMENT;
  *ploop = NULL;
  epoller *e = malloc(sizeof(*e));
  if (!e) return WS_ERR_NOMEM;
  e->epfd = epoll_create1(EPOLL_CLOEXEC);
  e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  if (e->epfd < 0 || e->evfd < 0 ||
      epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &ev) != 0) {
    int err = errno;
    ep_del(e);
    errno = err;
    return WS_LOOP_ERR_IO;
  }
  ws_drv_poller p = {e, ep_add, ep_mod, ep_remove, ep_wait, ep_wake, ep_del};
  /* ws_drv_new() owns the poller from here on, also when it fails (it
   * calls del()): cppcheck does not follow the pointer into the struct. */
  /* cppcheck-suppress memleak */
  return ws_drv_new(ploop, cfg, &p, NULL);
}

int ws_loop_new(ws_loop **ploop, const ws_loop_config *cfg) {
  return ws_epoll_loop_new(ploop, cfg);
}
