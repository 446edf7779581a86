/*
 * TEST DOUBLE, Linux only: a small kqueue(2)/kevent(2) over epoll(7), so
 * that lib/adapters/ws_kqueue.c can be built and its loop tested on this
 * machine. It is not a kqueue implementation for use elsewhere.
 *
 * What it implements, following the kqueue(2) manual page for the flags
 * the adapter uses:
 *   - filters EVFILT_READ and EVFILT_WRITE on descriptors (sockets,
 *     pipes), level-triggered (no EV_CLEAR, no EV_ONESHOT);
 *   - EV_ADD (creates the knote, or updates its udata; enabled unless
 *     EV_DISABLE is given with it), EV_DELETE (ENOENT if there is no such
 *     knote), EV_ENABLE, EV_DISABLE;
 *   - on output: EV_EOF when the peer shut its side (read filter) or the
 *     connection is gone (write filter), a pending socket error in fflags
 *     with EV_EOF, |data| the bytes readable (read filter);
 *   - changelist errors as EV_ERROR entries in the eventlist when it has
 *     room, else -1 and errno (kqueue(2), RETURN VALUES);
 *   - the timeout (NULL: wait forever; {0, 0}: poll), and nevents 0 to
 *     apply changes without waiting.
 * Anything else (other filters, EV_RECEIPT, EV_CLEAR, EV_ONESHOT, NOTE_*)
 * fails with EINVAL, so the adapter cannot come to rely on it unseen.
 * One difference it cannot hide: kqueue drops a descriptor's knotes when
 * the descriptor is closed, and the shim does not see close(2); so
 * EV_DELETE them first (the adapter does). tests/kqueue-shim/
 * test_kqueue_shim.c checks these semantics.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_KQUEUE_SHIM_SYS_EVENT_H
#define WS_KQUEUE_SHIM_SYS_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct kevent {
  uintptr_t ident;
  short filter;
  unsigned short flags;
  unsigned int fflags;
  intptr_t data;
  void *udata;
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

#define EV_SET(kevp, a, b, c, d, e, f)                                         \
  do {                                                                         \
    struct kevent *ev_set_p_ = (kevp);                                         \
    ev_set_p_->ident = (a);                                                    \
    ev_set_p_->filter = (short)(b);                                            \
    ev_set_p_->flags = (unsigned short)(c);                                    \
    ev_set_p_->fflags = (d);                                                   \
    ev_set_p_->data = (e);                                                     \
    ev_set_p_->udata = (f);                                                    \
  } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents,
           const struct timespec *timeout);

#endif
