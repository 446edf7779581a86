/*
 * TEST DOUBLE: kqueue(2)/kevent(2) over epoll(7); see sys/event.h for
 * what it covers. Each kqueue is an epoll descriptor; its knotes (one per
 * descriptor and filter) live in a small table here, and the epoll
 * registration of a descriptor is the union of its enabled filters.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "sys/event.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct knote {
  int kq, fd;
  int has[2]; /* [0] read, [1] write: the knote exists */
  int enabled[2];
  void *udata[2];
  int registered; /* the fd is in the epoll set */
} knote;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static knote *notes;
static size_t nnotes, capnotes;

static knote *find(int kq, int fd, int create) {
  for (size_t i = 0; i < nnotes; i++)
    if (notes[i].kq == kq && notes[i].fd == fd) return &notes[i];
  if (!create) return NULL;
  if (nnotes == capnotes) {
    size_t cap = capnotes ? capnotes * 2 : 64;
    knote *p = realloc(notes, cap * sizeof(*p));
    if (!p) return NULL;
    notes = p;
    capnotes = cap;
  }
  knote *k = &notes[nnotes++];
  memset(k, 0, sizeof(*k));
  k->kq = kq;
  k->fd = fd;
  return k;
}

static void drop(knote *k) {
  *k = notes[--nnotes];
  if (nnotes == 0) { /* nothing left: nothing for valgrind to find */
    free(notes);
    notes = NULL;
    capnotes = 0;
  }
}

/* Brings the epoll registration of |k| in line with its filters. */
static int sync_epoll(knote *k) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.data.fd = k->fd;
  if (k->has[0] && k->enabled[0]) ev.events |= EPOLLIN | EPOLLRDHUP;
  if (k->has[1] && k->enabled[1]) ev.events |= EPOLLOUT;
  if (!ev.events) {
    /* Nothing enabled: out of the set, or epoll would still report
     * EPOLLHUP for it, which a disabled kqueue filter does not. */
    if (k->registered) epoll_ctl(k->kq, EPOLL_CTL_DEL, k->fd, &ev);
    k->registered = 0;
    return 0;
  }
  int op = k->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(k->kq, op, k->fd, &ev) != 0) {
    /* The descriptor was closed and its number reused: kqueue forgets
     * knotes at close(2), so start over. */
    if (op == EPOLL_CTL_MOD && errno == ENOENT)
      op = EPOLL_CTL_ADD;
    else if (op == EPOLL_CTL_ADD && errno == EEXIST)
      op = EPOLL_CTL_MOD;
    else
      return -1;
    if (epoll_ctl(k->kq, op, k->fd, &ev) != 0) return -1;
  }
  k->registered = 1;
  return 0;
}

static int apply(int kq, const struct kevent *ch) {
  int slot;
  if (ch->filter == EVFILT_READ)
    slot = 0;
  else if (ch->filter == EVFILT_WRITE)
    slot = 1;
  else
    return EINVAL;
  unsigned short known = EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE;
  if ((ch->flags & ~known) || ch->fflags) return EINVAL;
  int fd = (int)ch->ident;
  knote *k = find(kq, fd, (ch->flags & EV_ADD) != 0);
  if (!k) return (ch->flags & EV_ADD) ? ENOMEM : ENOENT;
  if (ch->flags & EV_DELETE) {
    if (!k->has[slot]) return ENOENT;
    k->has[slot] = 0;
  } else {
    if (!k->has[slot] && !(ch->flags & EV_ADD)) return ENOENT;
    if (ch->flags & EV_ADD) {
      if (!k->has[slot]) k->enabled[slot] = 1; /* enabled by default */
      k->has[slot] = 1;
      k->udata[slot] = ch->udata;
    }
    if (ch->flags & EV_ENABLE) k->enabled[slot] = 1;
    if (ch->flags & EV_DISABLE) k->enabled[slot] = 0;
  }
  int rv = sync_epoll(k) ? errno : 0;
  if (!k->has[0] && !k->has[1]) drop(k);
  return rv;
}

/* kqueue(2) forgets everything when the queue is closed; the shim cannot
 * see close(2), so a new queue forgets whatever an old one with the same
 * descriptor number left behind. */
int kqueue(void) {
  int kq = epoll_create1(EPOLL_CLOEXEC);
  if (kq < 0) return -1;
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < nnotes;) {
    if (notes[i].kq == kq)
      drop(&notes[i]);
    else
      i++;
  }
  pthread_mutex_unlock(&lock);
  return kq;
}

int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents,
           const struct timespec *timeout) {
  int out = 0;
  if (nchanges < 0 || nevents < 0) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&lock);
  for (int i = 0; i < nchanges; i++) {
    int e = apply(kq, &changelist[i]);
    if (!e) continue;
    if (out < nevents) {
      eventlist[out] = changelist[i];
      eventlist[out].flags = EV_ERROR;
      eventlist[out].data = e;
      out++;
      continue;
    }
    pthread_mutex_unlock(&lock);
    errno = e;
    return -1;
  }
  pthread_mutex_unlock(&lock);
  if (out > 0 || nevents == 0) return out;

  int ms = -1;
  if (timeout) {
    long long t = (long long)timeout->tv_sec * 1000 +
                  (timeout->tv_nsec + 999999) / 1000000;
    ms = t > 0x7fffffff ? 0x7fffffff : (int)t;
  }
  /* Each descriptor yields up to two kevents. */
  int max = nevents / 2 > 0 ? nevents / 2 : 1;
  if (max > 256) max = 256;
  struct epoll_event evs[256];
  int n = epoll_wait(kq, evs, max, ms);
  if (n < 0) return -1; /* EINTR as kevent(2) */
  pthread_mutex_lock(&lock);
  for (int i = 0; i < n && out < nevents; i++) {
    knote *k = find(kq, evs[i].data.fd, 0);
    if (!k) continue;
    uint32_t e = evs[i].events;
    int soerr = 0;
    if (e & EPOLLERR) {
      socklen_t len = sizeof(soerr);
      if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = 0;
    }
    if (k->has[0] && k->enabled[0] &&
        (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
      struct kevent *ev = &eventlist[out++];
      int avail = 0;
      if (ioctl(k->fd, FIONREAD, &avail) != 0) avail = 1; /* a listener */
      EV_SET(ev, (uintptr_t)k->fd, EVFILT_READ, 0, 0, avail, k->udata[0]);
      if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        ev->flags |= EV_EOF;
        ev->fflags = (unsigned)soerr;
      }
    }
    if (out < nevents && k->has[1] && k->enabled[1] &&
        (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
      struct kevent *ev = &eventlist[out++];
      EV_SET(ev, (uintptr_t)k->fd, EVFILT_WRITE, 0, 0, 0, k->udata[1]);
      if (e & (EPOLLHUP | EPOLLERR)) {
        ev->flags |= EV_EOF;
        ev->fflags = (unsigned)soerr;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  return out;
}
