/*
 * The kqueue test double against kqueue(2), for the flags the adapter
 * uses: a filter added with EV_DISABLE reports nothing, not even the
 * peer's hang-up, until EV_ENABLE; EV_ADD on an existing knote updates
 * its udata and keeps its enable state; EVFILT_READ reports the bytes
 * readable and EV_EOF after the peer's shutdown; EV_DELETE of a missing
 * knote is ENOENT (as an EV_ERROR entry when the eventlist has room);
 * unsupported flags are EINVAL; timeouts are honoured.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const struct timespec zero = {0, 0};

static int pair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  return 0;
}

static int change(int kq, int fd, short filter, unsigned short flags,
                  void *udata) {
  struct kevent ch;
  EV_SET(&ch, (uintptr_t)fd, filter, flags, 0, 0, udata);
  return kevent(kq, &ch, 1, NULL, 0, NULL);
}

/* Polls once; returns the number of events, copied to |out|. */
static int poll_kq(int kq, struct kevent *out, int max, int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  return kevent(kq, NULL, 0, out, max, &ts);
}

static void disabled_write_filter_reports_nothing(void **state) {
  (void)state;
  int sv[2], kq = kqueue(), tag = 0;
  struct kevent ev[4];
  pair(sv);
  assert_true(kq >= 0);
  /* A writable socket, but the filter was added disabled. */
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_DISABLE, &tag),
                   0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 0);
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ENABLE, NULL), 0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1);
  assert_int_equal(ev[0].filter, EVFILT_WRITE);
  assert_int_equal(ev[0].ident, (uintptr_t)sv[0]);
  assert_ptr_equal(ev[0].udata, &tag); /* EV_ENABLE keeps the udata */
  assert_int_equal(ev[0].flags & EV_EOF, 0);
  /* Level-triggered: still writable, still reported. */
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1);
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DISABLE, NULL), 0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 0);
  /* Disabled means silent even when the peer goes away (epoll would
   * report EPOLLHUP whatever the interest). */
  close(sv[1]);
  assert_int_equal(poll_kq(kq, ev, 4, 20), 0);
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ENABLE, NULL), 0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1);
  assert_true(ev[0].flags & EV_EOF);
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, NULL), 0);
  close(sv[0]);
  close(kq);
}

static void readable_bytes_and_eof(void **state) {
  (void)state;
  int sv[2], kq = kqueue(), a = 0, b = 0;
  struct kevent ev[4];
  pair(sv);
  assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_ENABLE, &a), 0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 0); /* nothing to read yet */
  assert_int_equal(write(sv[1], "hello", 5), 5);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1);
  assert_int_equal(ev[0].filter, EVFILT_READ);
  assert_int_equal(ev[0].data, 5);
  assert_ptr_equal(ev[0].udata, &a);
  assert_int_equal(ev[0].flags & EV_EOF, 0);
  /* EV_ADD again: new udata, and the knote stays enabled. */
  assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD, &b), 0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1);
  assert_ptr_equal(ev[0].udata, &b);
  /* The peer shuts its side: EV_EOF, and the bytes are still there. */
  shutdown(sv[1], SHUT_WR);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1);
  assert_true(ev[0].flags & EV_EOF);
  assert_int_equal(ev[0].data, 5);
  assert_int_equal(ev[0].fflags, 0); /* no socket error */
  /* Both filters of one descriptor: two events. */
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD, &a), 0);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 2);
  assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, NULL), 0);
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, NULL), 0);
  close(sv[0]);
  close(sv[1]);
  close(kq);
}

static void changelist_errors(void **state) {
  (void)state;
  int sv[2], kq = kqueue();
  struct kevent ch[2], ev[4];
  pair(sv);
  /* No eventlist room: -1 and errno. */
  assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, NULL), -1);
  assert_int_equal(errno, ENOENT);
  assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ENABLE, NULL), -1);
  assert_int_equal(errno, ENOENT);
  /* Room: an EV_ERROR entry with the errno in data, the rest applied. */
  EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
  EV_SET(&ch[1], (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
  assert_int_equal(kevent(kq, ch, 2, ev, 4, &zero), 1);
  assert_true(ev[0].flags & EV_ERROR);
  assert_int_equal(ev[0].data, ENOENT);
  assert_int_equal(poll_kq(kq, ev, 4, 0), 1); /* the EV_ADD happened */
  /* What the shim does not implement is refused, not ignored. */
  assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, NULL), -1);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(change(kq, sv[0], -3 /* EVFILT_AIO */, EV_ADD, NULL), -1);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, NULL), 0);
  close(sv[0]);
  close(sv[1]);
  close(kq);
}

static long elapsed_ms(const struct timespec *a, const struct timespec *b) {
  return (b->tv_sec - a->tv_sec) * 1000L + (b->tv_nsec - a->tv_nsec) / 1000000L;
}

static void timeouts(void **state) {
  (void)state;
  int fds[2], kq = kqueue();
  struct kevent ev[2];
  struct timespec t0, t1;
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(change(kq, fds[0], EVFILT_READ, EV_ADD, NULL), 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(kevent(kq, NULL, 0, ev, 2, &zero), 0); /* a poll */
  assert_int_equal(poll_kq(kq, ev, 2, 60), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_true(elapsed_ms(&t0, &t1) >= 59);
  /* nevents 0: apply changes, do not wait even without a timeout */
  assert_int_equal(kevent(kq, NULL, 0, NULL, 0, NULL), 0);
  assert_int_equal(write(fds[1], "x", 1), 1);
  assert_int_equal(kevent(kq, NULL, 0, ev, 2, NULL), 1);
  assert_null(ev[0].udata);
  assert_int_equal(change(kq, fds[0], EVFILT_READ, EV_DELETE, NULL), 0);
  close(fds[0]);
  close(fds[1]);
  close(kq);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(disabled_write_filter_reports_nothing),
      cmocka_unit_test(readable_bytes_and_eof),
      cmocka_unit_test(changelist_errors),
      cmocka_unit_test(timeouts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
