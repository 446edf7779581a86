/*
 * Listening on a socket made by someone else: ws_loop_listen_fd(), for
 * systemd socket activation (LISTEN_FDS) or a socket handed over by an
 * old process.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* A listening stream socket, made non-blocking and close-on-exec; its
 * port in |*pport|. 0, or an error code with errno set. */
static int prepare_fd(int fd, uint16_t *pport) {
  int type = 0, fl;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return errno == ENOTSOCK || errno == EBADF ? WS_ERR_INVALID_ARGUMENT
                                               : WS_LOOP_ERR_IO;
  if (type != SOCK_STREAM) return WS_ERR_INVALID_ARGUMENT;
#ifdef SO_ACCEPTCONN
  int acc = 0;
  len = sizeof(acc);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && !acc)
    return WS_ERR_INVALID_ARGUMENT; /* not listening */
#endif
  struct sockaddr_storage ss;
  len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return WS_LOOP_ERR_IO;
  if (ss.ss_family == AF_INET6)
    *pport = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
  else if (ss.ss_family == AF_INET)
    *pport = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
  else
    *pport = 0; /* a Unix socket: no port */
  if ((fl = fcntl(fd, F_GETFL)) < 0 ||
      fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
      fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
    return WS_LOOP_ERR_IO;
  return 0;
}

int ws_loop_listen_fd(ws_loop *l, int fd, const ws_loop_listen_params *p,
                      uint16_t *pport) {
  uint16_t port = 0;
  if (!l || fd < 0) return WS_ERR_INVALID_ARGUMENT;
  int rv = prepare_fd(fd, &port);
  if (rv != 0) return rv;
  listener *s = drv_listener_new(l, p, &rv); /* as ws_loop_listen() */
  if (!s) return rv;
  s->handed = 1;
  if (drv_listener_add(l, s, fd) != 0) { /* the descriptor stays theirs */
    int e = errno;
    drv_free(l, s);
    errno = e;
    return WS_LOOP_ERR_IO;
  }
  if (pport) *pport = port;
  return 0;
}
