/*
 * ws-proxy: the order of the end. A client's close frame, or a frame its
 * connection would fail on (reserved bits or opcodes, a continuation out
 * of place, a bad control frame), must not reach the client's core while
 * the upstream may still be answering what came before it: the core would
 * answer (or fail) at once, and the upstream's replies to the earlier
 * messages would be lost. So the client side runs over this transport,
 * which wraps the real one (plain TCP or TLS) and watches the frame
 * headers going in. At such a frame it stops handing bytes to the core
 * and tells the proxy (gate_held() in relay.c), which closes the
 * upstream with the client's code (1001 for a bad frame) and relays what
 * the upstream still sends. When the upstream has closed, the proxy
 * opens the gate: the core reads the frame and answers the close, or
 * fails the connection, after the upstream's last messages.
 * SPDX-License-Identifier: MIT
 */
#define _DEFAULT_SOURCE

#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

enum { G_HEAD = 0, G_FRAMES, G_HELD, G_OPEN };

struct gate {
  const ws_loop_transport *in;
  void *ictx;
  uint8_t *b; /* read from |in|, not handed out yet */
  size_t len, cap;
  size_t ok;      /* b[0..ok) may go to the core */
  uint64_t skip;  /* payload bytes of the current frame not scanned */
  unsigned crlf;  /* G_HEAD: how much of "\r\n\r\n" was seen */
  int state, eof; /* eof: |in| ended after |b| */
  uint8_t in_msg; /* a fragmented message is open */
  gate_info info; /* for the proxy */
};

/* Judges the frame at |d| (|n| bytes): its header size if it may pass,
 * 0 if more bytes are needed, -1 if the gate closes here. */
static int judge(gate *g, const uint8_t *d, size_t n) {
  ws_frame_header hd;
  size_t hl = 0;
  int rv = ws_frame_decode_header(&hd, d, n, &hl);
  if (rv == WS_ERR_WOULDBLOCK) return 0;
  unsigned rsv = g->info.pmd ? WS_RSV1 : 0;
  int bad = rv != 0 || ws_frame_check_header(&hd, 1, rsv) != 0;
  if (!bad && hd.opcode == WS_OP_CONT)
    bad = !g->in_msg || (hd.rsv & WS_RSV1);
  else if (!bad && hd.opcode < WS_OP_CLOSE)
    bad = g->in_msg;
  else if (!bad && hd.opcode == WS_OP_CLOSE)
    bad = hd.payload_len == 1; /* RFC 6455 5.5.1: a code is 2 bytes */
  if (bad || hd.opcode == WS_OP_CLOSE) {
    if (!bad && hl + hd.payload_len > n) return 0; /* the whole close */
    g->info.bad = (uint8_t)bad;
    g->info.code = 1005;
    g->info.reasonlen = 0;
    if (!bad && hd.payload_len >= 2) {
      uint8_t p[125];
      memcpy(p, d + hl, (size_t)hd.payload_len);
      ws_mask(p, (size_t)hd.payload_len, hd.mask, 0);
      g->info.code = (uint16_t)(p[0] << 8 | p[1]);
      g->info.reasonlen = (size_t)hd.payload_len - 2;
      memcpy(g->info.reason, p + 2, g->info.reasonlen);
    }
    return -1;
  }
  if (hd.opcode < WS_OP_CLOSE) g->in_msg = !hd.fin;
  g->skip = hd.payload_len;
  return (int)hl;
}

/* Moves |*pok| over what of |d| (|n| bytes) may go to the core. */
static void scan(gate *g, const uint8_t *d, size_t n, size_t *pok) {
  size_t ok = *pok;
  while (ok < n && g->state != G_HELD) {
    if (g->state == G_OPEN) {
      ok = n;
    } else if (g->state == G_HEAD) {
      uint8_t c = d[ok++];
      g->crlf = c == "\r\n\r\n"[g->crlf] ? g->crlf + 1 : (c == '\r');
      if (g->crlf == 4) g->state = G_FRAMES;
    } else if (g->skip) {
      uint64_t k = n - ok;
      k = k < g->skip ? k : g->skip;
      ok += (size_t)k;
      g->skip -= k;
    } else {
      int j = judge(g, d + ok, n - ok);
      if (j == 0) break;
      if (j < 0)
        g->state = G_HELD;
      else
        ok += (size_t)j;
    }
  }
  *pok = ok;
}

/* Keeps |d| (|n| bytes) after the bytes held. */
static int keep(gate *g, const uint8_t *d, size_t n) {
  if (g->cap - g->len < n) {
    uint8_t *nb = realloc(g->b, g->len + n);
    if (!nb) return WS_ERR_NOMEM;
    g->b = nb;
    g->cap = g->len + n;
  }
  memcpy(g->b + g->len, d, n);
  g->len += n;
  return 0;
}

/* Nothing held: reads straight into |buf| and hands out what may pass
 * (the common case: no copy); keeps the rest. Returns 1 when nothing
 * may pass yet. */
static int read_direct(gate *g, int fd, uint8_t *buf, size_t cap,
                       size_t *pnread, int *prv) {
  size_t n = 0, ok = 0;
  *prv = g->in->read(g->ictx, fd, buf, cap, &n);
  if (*prv != 0) return 0;
  scan(g, buf, n, &ok);
  if (ok < n && (*prv = keep(g, buf + ok, n - ok)) != 0) return 0;
  *pnread = ok;
  return ok == 0;
}

/* Reads from |in| after the bytes held. */
static int fill(gate *g, int fd, size_t want) {
  if (g->cap - g->len < want) {
    uint8_t *nb = realloc(g->b, g->len + want);
    if (!nb) return WS_ERR_NOMEM;
    g->b = nb;
    g->cap = g->len + want;
  }
  size_t n = 0;
  int rv = g->in->read(g->ictx, fd, g->b + g->len, want, &n);
  if (rv == 0) g->len += n;
  return rv;
}

static int gate_read(void *ctx, int fd, uint8_t *buf, size_t cap,
                     size_t *pnread) {
  gate *g = ctx;
  if (g->state == G_OPEN && g->len == 0) /* pass-through */
    return g->eof ? WS_ERR_EOF : g->in->read(g->ictx, fd, buf, cap, pnread);
  if (g->len == 0 && g->state == G_FRAMES) {
    int rv = 0;
    if (!read_direct(g, fd, buf, cap, pnread, &rv)) return rv;
  }
  while (g->ok == 0) {
    if (g->state == G_HELD && g->ok == 0) {
      if (!g->info.told) {
        g->info.told = 1;
        if (g->info.pair)
          gate_held(&g->info); /* the core has had everything before it */
        else
          gate_open(g); /* not a proxied connection (any more) */
      }
      if (g->state == G_OPEN) continue; /* nobody to wait for */
      return WS_ERR_WOULDBLOCK;
    }
    if (g->eof) return WS_ERR_EOF;
    int rv = fill(g, fd, cap);
    if (rv == WS_ERR_EOF) {
      g->eof = 1;
      g->ok = g->len; /* the rest goes as it is: the core sees the end */
      g->state = G_OPEN;
      continue;
    }
    if (rv != 0) return rv;
    scan(g, g->b, g->len, &g->ok);
  }
  size_t n = g->ok < cap ? g->ok : cap;
  memcpy(buf, g->b, n);
  memmove(g->b, g->b + n, g->len - n);
  g->len -= n;
  g->ok -= n;
  *pnread = n;
  return 0;
}

gate *gate_of(ws_loop_conn *conn) { return ws_loop_conn_transport_ctx(conn); }

gate_info *gate_get_info(gate *g) { return &g->info; }

void gate_open(gate *g) {
  if (!g || g->state == G_OPEN) return;
  g->state = G_OPEN;
  g->ok = g->len;
}

/* ---- the rest of the transport: |in|'s ------------------------------------
 */

static int gate_attach(void *ud, int fd, ws_role role, const char *sn,
                       void **pctx) {
  const ws_loop_transport *in = ud;
  gate *g = calloc(1, sizeof(*g));
  if (!g) return WS_ERR_NOMEM;
  g->in = in;
  int rv = in->attach(in->user_data, fd, role, sn, &g->ictx);
  if (rv != 0) {
    free(g);
    return rv;
  }
  *pctx = g;
  return 0;
}

static int gate_write(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
                      size_t *pnwritten) {
  gate *g = ctx;
  return g->in->write(g->ictx, fd, iov, iovcnt, pnwritten);
}

static size_t gate_pending(void *ctx) {
  gate *g = ctx;
  return g->in->pending ? g->in->pending(g->ictx) : 0;
}

static int gate_shutdown(void *ctx, int fd) {
  gate *g = ctx;
  return g->in->shutdown ? g->in->shutdown(g->ictx, fd) : 0;
}

static void gate_detach(void *ctx) {
  gate *g = ctx;
  if (g->in->detach) g->in->detach(g->ictx);
  free(g->b);
  free(g);
}

static const char *gate_error(void *ctx) {
  gate *g = ctx;
  return g->in->error ? g->in->error(g->ictx) : NULL;
}

/* Plain TCP, for the gate to wrap when the listener has no TLS. */
static int tcp_attach(void *ud, int fd, ws_role role, const char *sn,
                      void **pctx) {
  (void)ud, (void)fd, (void)role, (void)sn;
  *pctx = NULL;
  return 0;
}

static int tcp_read(void *ctx, int fd, uint8_t *buf, size_t cap,
                    size_t *pnread) {
  (void)ctx;
  ssize_t r = recv(fd, buf, cap, 0);
  if (r > 0) {
    *pnread = (size_t)r;
    return 0;
  }
  if (r == 0) return WS_ERR_EOF;
  return errno == EAGAIN || errno == EWOULDBLOCK ? WS_ERR_WOULDBLOCK
                                                 : WS_LOOP_ERR_IO;
}

static int tcp_write(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
                     size_t *pnwritten) {
  struct iovec v[8];
  size_t n = iovcnt < 8 ? iovcnt : 8, total = 0;
  (void)ctx;
  *pnwritten = 0;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    v[i].iov_base = (void *)(uintptr_t)iov[i].base;
    v[i].iov_len = iov[i].len;
    total += iov[i].len;
  }
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = v;
  mh.msg_iovlen = n;
  ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
  if (w >= 0) {
    *pnwritten = (size_t)w;
    return (size_t)w < total ? WS_ERR_WOULDBLOCK : 0;
  }
  return errno == EAGAIN || errno == EWOULDBLOCK ? WS_ERR_WOULDBLOCK
                                                 : WS_LOOP_ERR_IO;
}

static const ws_loop_transport tcp = {NULL, tcp_attach, tcp_read, tcp_write,
                                      NULL, NULL,       NULL,     NULL};

void gate_transport(ws_loop_transport *tp, const ws_loop_transport *inner) {
  memset(tp, 0, sizeof(*tp));
  tp->user_data = (void *)(uintptr_t)(inner ? inner : &tcp);
  tp->attach = gate_attach;
  tp->read = gate_read;
  tp->write = gate_write;
  tp->pending = gate_pending;
  tp->shutdown = gate_shutdown;
  tp->detach = gate_detach;
  tp->error = gate_error;
}
