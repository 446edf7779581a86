/*
 * The kqueue backend of the loop (BSDs, macOS): EVFILT_READ and
 * EVFILT_WRITE per socket, the write filter enabled only while output is
 * pending, the kevent() timeout for timers, and a non-blocking pipe to be
 * woken from other threads and signal handlers. Everything else is the
 * shared driver (ws_drv_*.c), as for epoll.
 * SPDX-License-Identifier: MIT
 */
#if defined(__APPLE__)
#  define _DARWIN_C_SOURCE /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): a feature-test macro */
#elif !defined(__FreeBSD__) && !defined(__OpenBSD__) && !defined(__NetBSD__)
#  define _DEFAULT_SOURCE /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): a feature-test macro */
#endif

#include <ws/ws_kqueue.h>

#include "ws_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct kqueuer {
  int kq;
  int wake_rd, wake_wr; /* the self-pipe */
  struct kevent evs[MAX_EVENTS];
} kqueuer;

/* Sets both filters of |fd| in one kevent() call: EV_ADD creates or
 * updates a filter, EV_ENABLE / EV_DISABLE turn its reporting on and off
 * (kqueue(2)). */
static int kq_set(void *self, int fd, void *tag, unsigned events) {
  kqueuer *k = self;
  struct kevent ch[2];
  EV_SET(&ch[0], (uintptr_t)fd, EVFILT_READ,
         EV_ADD | (events & WS_DRV_IN ? EV_ENABLE : EV_DISABLE), 0, 0, tag);
  EV_SET(&ch[1], (uintptr_t)fd, EVFILT_WRITE,
         EV_ADD | (events & WS_DRV_OUT ? EV_ENABLE : EV_DISABLE), 0, 0, tag);
  return kevent(k->kq, ch, 2, NULL, 0, NULL) < 0 ? -1 : 0;
}

static void kq_remove(void *self, int fd) {
  kqueuer *k = self;
  struct kevent ch[2];
  EV_SET(&ch[0], (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
  EV_SET(&ch[1], (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
  /* One at a time: a filter that was never added fails alone (ENOENT). */
  (void)kevent(k->kq, &ch[0], 1, NULL, 0, NULL);
  (void)kevent(k->kq, &ch[1], 1, NULL, 0, NULL);
}

static int kq_wait(void *self, int timeout_ms, ws_drv_event *out, int cap) {
  kqueuer *k = self;
  int max = cap < MAX_EVENTS ? cap : MAX_EVENTS, m = 0;
  struct timespec ts, *pts = NULL;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    pts = &ts;
  }
  int n = kevent(k->kq, NULL, 0, k->evs, max, pts);
  if (n < 0) return errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) {
    struct kevent *ev = &k->evs[i];
    if (ev->udata == NULL) { /* the wake pipe: just empty it */
      char buf[64];
      while (read(k->wake_rd, buf, sizeof(buf)) > 0) {}
      continue;
    }
    unsigned r = 0;
    if (ev->flags & EV_ERROR) {
      r = WS_DRV_ERR;
    } else if (ev->filter == EVFILT_READ) {
      /* EV_EOF: the peer shut its side. Whatever is buffered can still
       * be read, and the read of 0 ends the connection; a socket error
       * comes in fflags. */
      r = WS_DRV_IN;
      if ((ev->flags & EV_EOF) && ev->fflags) r |= WS_DRV_ERR;
    } else if (ev->filter == EVFILT_WRITE) {
      /* EV_EOF on the write filter: the peer cannot take any more. */
      r = WS_DRV_OUT;
      if (ev->flags & EV_EOF) r |= WS_DRV_ERR;
    }
    out[m].tag = ev->udata;
    out[m].events = r;
    m++;
  }
  return m;
}

static void kq_wake(void *self) {
  kqueuer *k = self;
  char one = 1;
  /* EAGAIN: the pipe is full, so a wakeup is pending anyway. */
  ssize_t w = write(k->wake_wr, &one, 1);
  (void)w;
}

static void kq_del(void *self) {
  kqueuer *k = self;
  if (k->wake_rd >= 0) close(k->wake_rd);
  if (k->wake_wr >= 0) close(k->wake_wr);
  if (k->kq >= 0) close(k->kq);
  free(k);
}

/* The pipe's ends: non-blocking (a full pipe must not block a waker),
 * and none of the three descriptors leaks into a child. */
static int set_flags(int fd, int nonblock) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -1;
  return nonblock && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

int ws_kqueue_loop_new(ws_loop **ploop, const ws_loop_config *cfg) {
  if (!ploop || !cfg) return WS_ERR_INVALID_ARGUMENT;
  *ploop = NULL;
  kqueuer *k = malloc(sizeof(*k));
  if (!k) return WS_ERR_NOMEM;
  int p[2] = {-1, -1};
  k->kq = kqueue();
  if (k->kq >= 0 && pipe(p) == 0) {
    k->wake_rd = p[0];
    k->wake_wr = p[1];
  } else {
    k->wake_rd = k->wake_wr = -1;
  }
  struct kevent ch;
  EV_SET(&ch, (uintptr_t)k->wake_rd, EVFILT_READ, EV_ADD, 0, 0, NULL);
  if (k->kq < 0 || k->wake_rd < 0 || set_flags(k->kq, 0) != 0 ||
      set_flags(k->wake_rd, 1) != 0 || set_flags(k->wake_wr, 1) != 0 ||
      kevent(k->kq, &ch, 1, NULL, 0, NULL) < 0) {
    int err = errno;
    kq_del(k);
    errno = err;
    return WS_LOOP_ERR_IO;
  }
  ws_drv_poller pl = {k, kq_set, kq_set, kq_remove, kq_wait, kq_wake, kq_del};
  /* ws_drv_new() owns the poller from here on, also when it fails (it
   * calls del()): cppcheck does not follow the pointer into the struct. */
  /* cppcheck-suppress memleak */
  return ws_drv_new(ploop, cfg, &pl, NULL);
}

int ws_loop_new(ws_loop **ploop, const ws_loop_config *cfg) {
  return ws_kqueue_loop_new(ploop, cfg);
}
