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
  listener *s = drv_malloc(l, sizeof(*s));
  if (!s) return WS_ERR_NOMEM;
  memset(s, 0, sizeof(*s));
  s->h.kind = H_LISTENER;
  if (p && p->config) {
    s->cfg = *p->config;
  } else { /* the loop's default, as ws_loop_listen() */
    ws_config_default(&s->cfg, WS_ROLE_SERVER);
    s->cfg.delivery = WS_DELIVER_MESSAGE;
  }
  s->cfg.role = WS_ROLE_SERVER;
  if (l->cfg.callbacks.on_http) s->cfg.flags |= WS_CFG_HTTP;
  if (p) { /* the caps, as ws_loop_listen() */
    s->user_data = p->user_data;
    s->tp = p->transport;
    s->max_conns = p->max_conns;
    s->max_per_ip = p->max_conns_per_ip;
    s->max_hs = p->max_handshakes;
    s->max_pmd = p->max_pmd_context;
    s->origins = p->origins;
    s->norigins = p->norigins;
    s->origin_flags = p->origin_flags;
    if (s->norigins && !s->origins) {
      drv_free(l, s);
      return WS_ERR_INVALID_ARGUMENT;
    }
  }
  s->handed = 1;
  if (l->poller.add(l->poller.self, fd, s, WS_DRV_IN) != 0) {
    int e = errno;
    drv_free(l, s);
    errno = e;
    return WS_LOOP_ERR_IO;
  }
  s->fd = fd;
  s->watching = 1;
  s->next = l->listeners;
  l->listeners = s;
  if (pport) *pport = port;
  return 0;
}
