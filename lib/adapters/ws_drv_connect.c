/*
 * Client connections: name resolution, the non-blocking TCP connect (each
 * address in turn), and ws:// / wss:// URLs.
 * SPDX-License-Identifier: MIT
 */
#include "ws_drv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Tries the remaining addresses until a connect is under way. Returns 0
 * or the errno of the last attempt. */
static int connect_next(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  conn_aux *a = c->aux;
  int err = ECONNREFUSED;
  while (a->ai_next) {
    struct addrinfo *ai = a->ai_next;
    a->ai_next = ai->ai_next;
    errno = 0;
    int fd = l->sys.connect(l->sys.self, ai);
    if (fd >= 0) {
      c->fd = fd;
      c->state = C_CONNECTING;
      return 0;
    }
    err = errno ? errno : ECONNREFUSED;
  }
  return err;
}

void connect_done(ws_loop_conn *c) {
  ws_loop *l = conn_loop(c);
  int err = l->sys.connect_result(l->sys.self, c->fd);
  if (err) {
    if (c->flags & F_REG) l->poller.remove(l->poller.self, c->fd);
    c->flags &= ~F_REG;
    l->sys.close(l->sys.self, c->fd);
    c->fd = -1;
    if (connect_next(c) != 0) {
      conn_set_io_err(c, WS_LOOP_ERR_IO, err);
      conn_destroy(c, WS_LOOP_ERR_IO);
    }
    return;
  }
  conn_aux *a = c->aux;
  l->sys.free_addrs(l->sys.self, a->ai_all);
  a->ai_all = a->ai_next = NULL;
  c->state = C_WS;
  errno = 0;
  const ws_loop_transport *tp = conn_tp(c);
  int rv = (c->flags & F_TP) && tp->attach
               ? tp->attach(tp->user_data, c->fd, WS_ROLE_CLIENT,
                            a->server_name, &a->tctx)
               : 0;
  if (rv != 0) {
    a->tctx = NULL;
    if (rv >= WS_ERR_WOULDBLOCK) rv = WS_LOOP_ERR_IO;
    conn_set_io_err(c, rv, errno ? errno : EIO);
    conn_destroy(c, rv);
  }
  drv_free(l, a->server_name); /* (a transport keeps its own copy) */
  a->server_name = NULL;
}

/* Drops a connection that never got going (no callback is owed). */
static int connect_abort(ws_loop_conn *c, int rv) {
  ws_loop *l = conn_loop(c);
  conn_destroy(c, 0);
  if (!l->in_round) drv_free_grave(l);
  return rv;
}

int ws_loop_connect(ws_loop *l, const ws_loop_connect_params *p,
                    ws_loop_conn **pconn) {
  if (p && p->reconnect) return drv_reconnect_start(l, p, pconn);
  return connect_once(l, p, pconn);
}

int drv_mask_rand(uint8_t *buf, size_t len, void *user_data) {
  ws_loop *l = user_data;
  if (len > sizeof(l->rpool)) return ws_loop_rand(buf, len, NULL);
  if (sizeof(l->rpool) - l->rpos < len) {
    if (ws_loop_rand(l->rpool, sizeof(l->rpool), NULL) != 0) return -1;
    l->rpos = 0;
  }
  memcpy(buf, l->rpool + l->rpos, len);
  memset(l->rpool + l->rpos, 0, len);
  l->rpos = (uint8_t)(l->rpos + len);
  return 0;
}

int connect_once(ws_loop *l, const ws_loop_connect_params *p,
                 ws_loop_conn **pconn) {
  if (pconn) *pconn = NULL;
  if (!l || !p || !p->host || !p->port) return WS_ERR_INVALID_ARGUMENT;
  ws_config cfg;
  if (p->config) {
    cfg = *p->config;
  } else { /* the loop's default: on_message gets whole messages */
    ws_config_default(&cfg, WS_ROLE_CLIENT);
    cfg.delivery = WS_DELIVER_MESSAGE;
  }
  cfg.role = WS_ROLE_CLIENT;
  if (!cfg.rand) {
    cfg.rand = drv_mask_rand;
    cfg.rand_user_data = l;
  }

  struct addrinfo *res = NULL;
  if (l->sys.resolve(l->sys.self, p->host, p->port, &res) != 0 || !res)
    return WS_LOOP_ERR_RESOLVE;
  ws_loop_conn *c =
      conn_new(l, -1, WS_ROLE_CLIENT, &cfg, NULL, p->transport, p->user_data, 0);
  conn_aux *a = c ? conn_aux_get(c) : NULL;
  size_t hl = strlen(p->host) + 1;
  if (a) a->server_name = drv_malloc(l, hl);
  if (!a || !a->server_name) {
    l->sys.free_addrs(l->sys.self, res);
    return c ? connect_abort(c, WS_ERR_NOMEM) : WS_ERR_NOMEM;
  }
  memcpy(a->server_name, p->host, hl);
  a->ai_all = a->ai_next = res;

  ws_client_params rq = p->request;
  if (!rq.host) rq.host = p->host;
  if (!rq.port && p->port != 80) rq.port = p->port;
  int rv = ws_conn_connect(CONN_WS(c), &rq);
  if (rv) return connect_abort(c, rv);
  int err = connect_next(c);
  if (err) {
    connect_abort(c, 0);
    errno = err;
    return WS_LOOP_ERR_IO;
  }
  conn_after(c);
  if (c->state == C_DEAD) {
    if (!l->in_round) drv_free_grave(l);
    return WS_LOOP_ERR_IO;
  }
  c->flags |= F_KNOWN;
  if (pconn) *pconn = c;
  return 0;
}

int ws_loop_parse_url(const char *url, ws_loop_url *purl) {
  ws_loop_url *u = purl;
  if (!url || !u) return WS_ERR_INVALID_ARGUMENT;
  memset(u, 0, sizeof(*u));
  const char *p;
  if (strncmp(url, "ws://", 5) == 0) {
    p = url + 5;
    u->port = 80;
  } else if (strncmp(url, "wss://", 6) == 0) {
    p = url + 6;
    u->port = 443;
    u->secure = 1;
  } else {
    return WS_ERR_INVALID_ARGUMENT;
  }
  const char *hend, *rest;
  if (*p == '[') {
    hend = strchr(p, ']');
    if (!hend) return WS_ERR_INVALID_ARGUMENT;
    p++;
    rest = hend + 1;
  } else {
    hend = p + strcspn(p, ":/?#");
    rest = hend;
  }
  size_t hl = (size_t)(hend - p);
  if (hl == 0 || hl >= sizeof(u->host)) return WS_ERR_INVALID_ARGUMENT;
  memcpy(u->host, p, hl);
  if (*rest == ':') {
    char *end;
    unsigned long port = strtoul(rest + 1, &end, 10);
    if (end == rest + 1 || port == 0 || port > 65535)
      return WS_ERR_INVALID_ARGUMENT;
    u->port = (uint16_t)port;
    rest = end;
  }
  if (*rest == '#' || (*rest && *rest != '/' && *rest != '?'))
    return WS_ERR_INVALID_ARGUMENT;
  u->path = *rest == '/' ? rest : "/";
  if (*rest == '?') u->path = rest; /* "ws://h?x": the core needs a path */
  return 0;
}
