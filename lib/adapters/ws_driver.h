/*
 * The seams of the loop driver, shared by the backends (epoll, kqueue)
 * and by the tests: a backend supplies the poller (readiness), and the
 * system calls the driver makes go through ws_drv_sys, so that a test
 * can run the whole loop over simulated sockets and a simulated clock.
 * Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_DRIVER_H
#define WS_DRIVER_H

/* struct addrinfo: POSIX. Each driver file includes this header first. */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE) &&                      \
    !defined(_DARWIN_C_SOURCE) && !defined(__FreeBSD__) &&                     \
    !defined(__OpenBSD__) && !defined(__NetBSD__)
#  define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): a feature-test macro */
#endif

#include <ws/ws_loop.h>

#include <netdb.h>
#include <sys/types.h>

/* Readiness and interest bits between the driver and a backend. */
#define WS_DRV_IN 0x1u
#define WS_DRV_OUT 0x2u
#define WS_DRV_ERR 0x4u /* error or hang-up; reported whatever the interest */

/* One ready descriptor: the tag it was added with, and what it is ready
 * for. */
typedef struct ws_drv_event {
  void *tag;
  unsigned events;
} ws_drv_event;

typedef struct ws_drv_poller {
  void *self;
  /* Starts watching |fd| for |events| (may be 0); |tag| comes back in
   * ws_drv_event. Returns 0 or -1 with errno. */
  int (*add)(void *self, int fd, void *tag, unsigned events);
  /* Changes the interest of a watched |fd|. */
  int (*mod)(void *self, int fd, void *tag, unsigned events);
  /* Stops watching |fd| (before it is closed). */
  void (*remove)(void *self, int fd);
  /* Waits up to |timeout_ms| (-1: no limit) and stores up to |cap| ready
   * descriptors in |evs|. A wake() ends the wait. Returns how many, or
   * -1 with errno for a failure (EINTR is not one: it returns 0). The
   * driver reads its clock after the wait, then dispatches them. */
  int (*wait)(void *self, int timeout_ms, ws_drv_event *evs, int cap);
  /* Any thread, async-signal-safe: ends a wait, now or the next one. */
  void (*wake)(void *self);
  void (*del)(void *self);
} ws_drv_poller;

/*
 * The system calls of the driver. Descriptors are non-blocking and
 * close-on-exec, and writing to a closed peer raises no SIGPIPE. Each
 * function that can fail returns -1 (or, for resolve, a getaddrinfo()
 * code) and sets errno.
 */
typedef struct ws_drv_sys {
  void *self;
  /* Monotonic milliseconds. */
  uint64_t (*now_ms)(void *self);
  /* Unpredictable bytes; 0 or -1. */
  int (*rand)(void *self, uint8_t *buf, size_t len);
  /* A listening TCP socket on |host| (an address, or a name resolved to
   * the first of its addresses that binds; NULL: 127.0.0.1) and |port|
   * (0: any), with WS_LOOP_REUSEPORT / WS_LOOP_V6ONLY |flags|; sets the
   * bound port. Returns the descriptor. */
  int (*listen)(void *self, const char *host, uint16_t port, int backlog,
                uint32_t flags, uint16_t *pport);
  /* The next pending connection, with TCP_NODELAY. EAGAIN: none. */
  int (*accept)(void *self, int lfd);
  /* getaddrinfo() for a stream socket; 0 or an EAI_* code. */
  int (*resolve)(void *self, const char *host, uint16_t port,
                 struct addrinfo **pres);
  void (*free_addrs)(void *self, struct addrinfo *res);
  /* Starts a non-blocking connect to |ai|: the descriptor, the connect
   * in progress (or done). */
  int (*connect)(void *self, const struct addrinfo *ai);
  /* The outcome of a connect that became writable: 0 or its errno. */
  int (*connect_result)(void *self, int fd);
  /* recv(): bytes, 0 at the end, -1 with errno (EAGAIN: nothing). */
  ssize_t (*recv)(void *self, int fd, uint8_t *buf, size_t cap);
  /* sendmsg() of up to |n| vectors: bytes taken, or -1 with errno. */
  ssize_t (*sendv)(void *self, int fd, const ws_iovec *iov, size_t n);
  void (*shutdown_wr)(void *self, int fd);
  void (*close)(void *self, int fd);
  /* The peer's address as "1.2.3.4:5" or "[::1]:5"; 0 or -1. */
  int (*peer)(void *self, int fd, char *buf, size_t buflen);
} ws_drv_sys;

/* The system's own (ws_drv_sys.c). */
extern const ws_drv_sys ws_drv_sys_default;

/* Creates a loop over |poller|, which it owns from then on (also on
 * failure: poller->del() is called), and |sys| (NULL: the system's; else
 * it must outlive the loop). */
int ws_drv_new(ws_loop **ploop, const ws_loop_config *cfg,
               const ws_drv_poller *poller, const ws_drv_sys *sys);

#endif /* WS_DRIVER_H */
