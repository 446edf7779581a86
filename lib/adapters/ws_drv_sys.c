/*
 * The system calls of the loop driver (ws_drv_sys_default), and the plain
 * TCP transport over them. Tests put a simulation in their place.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#  include <sys/random.h>
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

static uint64_t sys_now_ms(void *self) {
  struct timespec ts;
  (void)self;
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

static int sys_rand(void *self, uint8_t *buf, size_t len) {
  (void)self;
  return ws_loop_rand(buf, len, NULL);
}

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

static int no_sigpipe(int fd) {
#ifdef SO_NOSIGPIPE
  int one = 1;
  if (fd >= 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
  return fd;
}

/* socket(), non-blocking and close-on-exec, without SIGPIPE. */
static int sock_open(int family, int type, int proto) {
#ifdef HAVE_SOCK_FLAGS
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
#else
  int fd = socket(family, type, proto);
  if (fd >= 0) fd = set_fd_flags(fd);
#endif
  return no_sigpipe(fd);
}

static void set_nodelay(int fd) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int sys_accept(void *self, int lfd) {
  (void)self;
#ifdef HAVE_SOCK_FLAGS
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
  int fd = accept(lfd, NULL, NULL);
  if (fd >= 0) fd = set_fd_flags(fd);
#endif
  if (fd >= 0) set_nodelay(no_sigpipe(fd));
  return fd;
}

/* A listening socket on one address; -1 with errno set. */
static int listen_one(const struct addrinfo *ai, int backlog, uint32_t flags) {
  int one = 1, fd = sock_open(ai->ai_family, SOCK_STREAM, 0);
  int ok = fd >= 0 &&
           setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0;
  if (ok && (flags & WS_LOOP_REUSEPORT))
    ok = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
  if (ok && ai->ai_family == AF_INET6) {
    int v6only = (flags & WS_LOOP_V6ONLY) ? 1 : 0;
    ok =
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0;
  }
  ok = ok && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
       listen(fd, backlog > 0 ? backlog : SOMAXCONN) == 0;
  if (!ok && fd >= 0) {
    int e = errno;
    close(fd);
    errno = e;
    fd = -1;
  }
  return fd;
}

/* |host| is a numeric address or a name: a name is resolved
 * (getaddrinfo, which blocks) and the first of its addresses that can be
 * bound is used ("localhost": ::1 or 127.0.0.1). A name that does not
 * resolve is EINVAL; a bind failure keeps bind's errno (EADDRINUSE). */
static int sys_listen(void *self, const char *host, uint16_t port, int backlog,
                      uint32_t flags, uint16_t *pport) {
  struct addrinfo hints, *res = NULL;
  char ports[8];
  (void)self;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  (void)snprintf(ports, sizeof(ports), "%u", (unsigned)port);
  if (!host) host = "127.0.0.1";
  if (getaddrinfo(host, ports, &hints, &res) != 0 || !res) {
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE; /* a name */
    res = NULL;
    if (getaddrinfo(host, ports, &hints, &res) != 0 || !res) {
      errno = EINVAL;
      return -1;
    }
  }
  int fd = -1, e = 0;
  for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = listen_one(ai, backlog, flags);
    if (fd < 0 && !e) e = errno; /* the first address's reason */
  }
  freeaddrinfo(res);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (fd < 0) {
    errno = e ? e : EINVAL;
    return -1;
  }
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  *pport = ntohs(ss.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *)&ss)->sin6_port
                     : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

static int sys_resolve(void *self, const char *host, uint16_t port,
                       struct addrinfo **pres) {
  struct addrinfo hints;
  char ports[8];
  (void)self;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  (void)snprintf(ports, sizeof(ports), "%u", (unsigned)port);
  *pres = NULL;
  int gai = getaddrinfo(host, ports, &hints, pres);
  if (gai != 0 || !*pres) {
    /* AI_ADDRCONFIG hides loopback-only setups on some systems */
    hints.ai_flags = AI_NUMERICSERV;
    gai = getaddrinfo(host, ports, &hints, pres);
  }
  return gai != 0 ? gai : *pres ? 0 : EAI_NONAME;
}

static void sys_free_addrs(void *self, struct addrinfo *res) {
  (void)self;
  if (res) freeaddrinfo(res);
}

static int sys_connect(void *self, const struct addrinfo *ai) {
  (void)self;
  int fd = sock_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
    set_nodelay(fd);
    return fd;
  }
  int e = errno;
  close(fd);
  errno = e;
  return -1;
}

static int sys_connect_result(void *self, int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  (void)self;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  return err;
}

static ssize_t sys_recv(void *self, int fd, uint8_t *buf, size_t cap) {
  (void)self;
  for (;;) {
    ssize_t r = recv(fd, buf, cap, 0);
    if (r >= 0 || errno != EINTR) return r;
  }
}

static ssize_t sys_sendv(void *self, int fd, const ws_iovec *iov, size_t n) {
  struct iovec v[8];
  struct msghdr mh;
  (void)self;
  if (n > 8) n = 8;
  for (size_t i = 0; i < n; i++) {
    v[i].iov_base = (void *)iov[i].base; /* only read */
    v[i].iov_len = iov[i].len;
  }
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = v;
  mh.msg_iovlen = n;
  for (;;) {
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (w >= 0 || errno != EINTR) return w;
  }
}

static void sys_shutdown_wr(void *self, int fd) {
  (void)self;
  shutdown(fd, SHUT_WR);
}

static void sys_close(void *self, int fd) {
  (void)self;
  close(fd);
}

static int sys_peer(void *self, int fd, char *buf, size_t buflen) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  (void)self;
  memset(&ss, 0, sizeof(ss));
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
  if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
    (void)snprintf(buf, buflen, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
    (void)snprintf(buf, buflen, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
  }
  return 0;
}

const ws_drv_sys ws_drv_sys_default = {
    NULL,        sys_now_ms,   sys_rand,           sys_listen,
    sys_accept,  sys_resolve,  sys_free_addrs,     sys_connect,
    sys_connect_result, sys_recv, sys_sendv,       sys_shutdown_wr,
    sys_close,   sys_peer};

/* ---- the plain TCP transport ---------------------------------------------- */

/* (The loop never attaches its own connections: their context is the
 * user_data, conn_tctx(). A transport that wraps this one calls it.) */
static int plain_attach(void *ud, int fd, ws_role role, const char *sn,
                        void **pctx) {
  (void)fd;
  (void)role;
  (void)sn;
  *pctx = ud; /* the ws_drv_sys */
  return 0;
}

static int plain_read(void *ctx, int fd, uint8_t *buf, size_t cap,
                      size_t *pnread) {
  const ws_drv_sys *sys = ctx;
  ssize_t r = sys->recv(sys->self, fd, buf, cap);
  if (r > 0) {
    *pnread = (size_t)r;
    return 0;
  }
  if (r == 0) return WS_ERR_EOF;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return WS_ERR_WOULDBLOCK;
  return WS_LOOP_ERR_IO;
}

static int plain_write(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
                       size_t *pnwritten) {
  const ws_drv_sys *sys = ctx;
  size_t n = iovcnt < 8 ? iovcnt : 8, total = 0;
  *pnwritten = 0;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) total += iov[i].len;
  ssize_t w = sys->sendv(sys->self, fd, iov, n);
  if (w >= 0) {
    *pnwritten = (size_t)w;
    /* A short write means the socket buffer is full. */
    return (size_t)w < total ? WS_ERR_WOULDBLOCK : 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return WS_ERR_WOULDBLOCK;
  return WS_LOOP_ERR_IO;
}

void drv_plain_transport(ws_loop_transport *tp, const ws_drv_sys *sys) {
  memset(tp, 0, sizeof(*tp));
  tp->user_data = (void *)sys; /* only read */
  tp->attach = plain_attach;
  tp->read = plain_read;
  tp->write = plain_write;
}
