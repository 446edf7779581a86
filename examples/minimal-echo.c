/*
 * minimal-echo: drive a libws connection yourself with POSIX sockets and
 * poll(), for people who bring their own loop (echo-server.c is the same
 * server on the epoll adapter). Every text or binary message is sent back
 * as it came; pings and the close handshake are answered by the core.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <ws/version.h>
#include <ws/ws.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define READ_SIZE 65536

typedef struct client {
  int fd;
  ws_conn *conn;
  uint8_t *in;         /* read buffer; event slices may point into it */
  size_t inpos, inlen; /* bytes [inpos, inlen) are not fed yet */
  uint8_t *held;       /* a message to echo that did not fit the queue */
  size_t heldlen;
  ws_opcode heldop;
} client;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Queues an echo; on a full output queue keeps a copy to retry once the
 * queue drains (the event's slice is only borrowed). */
static void echo(client *c, ws_opcode op, const uint8_t *data, size_t len) {
  int rv = ws_conn_send(c->conn, op, data, len, 0);
  if (rv != WS_ERR_WOULDBLOCK) return; /* sent, or the conn is closing */
  c->held = malloc(len ? len : 1);
  if (c->held == NULL) {
    ws_conn_close(c->conn, 1011, NULL, 0);
    return;
  }
  if (len) memcpy(c->held, data, len);
  c->heldlen = len;
  c->heldop = op;
}

/* Pulls events and feeds buffered input until both are used up or an
 * echo is held back by a full output queue. */
static void process(client *c) {
  for (;;) {
    if (c->held) {
      if (ws_conn_send(c->conn, c->heldop, c->held, c->heldlen, 0) ==
          WS_ERR_WOULDBLOCK)
        return;
      free(c->held);
      c->held = NULL;
    }
    ws_event ev;
    while (ws_conn_next_event(c->conn, &ev) == 0) {
      if (ev.type == WS_EV_REQUEST) {
        ws_conn_accept(c->conn, NULL); /* no subprotocol */
      } else if ((ev.type == WS_EV_TEXT || ev.type == WS_EV_BINARY) &&
                 (ev.flags & WS_EVF_FINAL)) {
        echo(c, ev.type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY,
             ev.data.base, ev.data.len);
        if (c->held) return;
      } /* pings and closes are answered by the core */
    }
    if (c->inpos == c->inlen) return;
    size_t n = 0;
    int rv = ws_conn_feed(c->conn, c->in + c->inpos, c->inlen - c->inpos, &n);
    c->inpos += n;
    if (rv < 0 && rv != WS_ERR_WOULDBLOCK) c->inpos = c->inlen; /* ignored */
  }
}

/* Writes queued output until done or the socket is full. */
static int flush(client *c) {
  while (ws_conn_want_write(c->conn)) {
    ws_iovec wv[16];
    struct iovec iov[16];
    size_t n = ws_conn_out_peek(c->conn, wv, 16);
    for (size_t i = 0; i < n; i++) {
      iov[i].iov_base = (void *)(uintptr_t)wv[i].base; /* only read */
      iov[i].iov_len = wv[i].len;
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    ws_conn_out_consume(c->conn, (size_t)w);
  }
  return 0;
}

/* Process and write; retries a held echo once the queue has drained. */
static int service(client *c) {
  for (;;) {
    process(c);
    if (flush(c) < 0) return -1;
    if (!c->held || ws_conn_want_write(c->conn)) return 0;
  }
}

static int want_read(const client *c) {
  return !c->held && c->inpos == c->inlen && ws_conn_want_read(c->conn);
}

static void drop(client *c) {
  uint8_t junk[4096]; /* read what is left so close() sends FIN, not RST */
  while (recv(c->fd, junk, sizeof junk, 0) > 0) {}
  close(c->fd);
  ws_conn_del(c->conn);
  free(c->in);
  free(c->held);
  c->fd = -1;
}

/* Reads once; returns -1 when the transport is gone. */
static int on_readable(client *c) {
  ssize_t r = recv(c->fd, c->in, READ_SIZE, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0; /* a spurious wakeup */
  if (r <= 0) {
    ws_conn_feed_eof(c->conn);
    process(c);
    return -1;
  }
  c->inpos = 0;
  c->inlen = (size_t)r;
  ws_conn_tick(c->conn, now_ms());
  return 0;
}

static int usage(FILE *f, const char *argv0) {
  fprintf(f,
          "usage: %s [--host ADDR] [--port N] [--max-message BYTES]\n"
          "  --host ADDR          IPv4 address to listen on (127.0.0.1)\n"
          "  --port N             TCP port, 1-65535 (9001)\n"
          "  --max-message BYTES  largest message and frame (67108864)\n",
          argv0);
  return 2;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  unsigned long port = 9001, maxmsg = 64ul << 20;
  for (int i = 1; i < argc; i++) {
    char *end = NULL;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout, argv[0]);
      return 0;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("minimal-echo (libws %s)\n", WS_VERSION);
      return 0;
    } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
      host = argv[++i];
    } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = strtoul(argv[++i], &end, 10);
      if (*end || port < 1 || port > 65535) return usage(stderr, argv[0]);
    } else if (strcmp(argv[i], "--max-message") == 0 && i + 1 < argc) {
      maxmsg = strtoul(argv[++i], &end, 10);
      if (*end || maxmsg < 1 || maxmsg > UINT32_MAX - 65536ul)
        return usage(stderr, argv[0]);
    } else {
      return usage(stderr, argv[0]);
    }
  }
  signal(SIGPIPE, SIG_IGN);

  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "minimal-echo: bad --host %s\n", host);
    return 2;
  }
  int one = 1;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 128) ||
      fcntl(lfd, F_SETFL, O_NONBLOCK)) {
    perror("minimal-echo: listen");
    return 1;
  }
  printf("minimal-echo listening on ws://%s:%lu\n", host, port);
  fflush(stdout);

  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.max_message = cfg.max_frame_payload = maxmsg;
  cfg.max_fragments = 0;                             /* unlimited */
  cfg.max_out_queue = (uint32_t)(maxmsg + 65536u); /* a whole echo fits */

  static client cl[MAX_CLIENTS];
  struct pollfd pfd[MAX_CLIENTS + 1];
  for (int i = 0; i < MAX_CLIENTS; i++) cl[i].fd = -1;

  for (;;) {
    uint64_t now = now_ms(), deadline = UINT64_MAX;
    pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
    for (int i = 0; i < MAX_CLIENTS; i++) {
      client *c = &cl[i];
      pfd[i + 1] = (struct pollfd){.fd = c->fd};
      if (c->fd < 0) continue;
      pfd[i + 1].events = (short)((want_read(c) ? POLLIN : 0) |
                                  (ws_conn_want_write(c->conn) ? POLLOUT : 0));
      uint64_t d = ws_conn_next_deadline(c->conn);
      if (d < deadline) deadline = d;
    }
    int timeout = deadline == UINT64_MAX ? -1
                  : deadline <= now      ? 0
                  : deadline - now > INT_MAX ? INT_MAX
                                         : (int)(deadline - now);
    if (poll(pfd, MAX_CLIENTS + 1, timeout) < 0 && errno != EINTR) {
      perror("minimal-echo: poll");
      return 1;
    }
    now = now_ms();

    if (pfd[0].revents & POLLIN) {
      int fd;
      while ((fd = accept(lfd, NULL, NULL)) >= 0) {
        int i = 0;
        while (i < MAX_CLIENTS && cl[i].fd >= 0) i++;
        client *c = &cl[i < MAX_CLIENTS ? i : 0];
        if (i == MAX_CLIENTS || fcntl(fd, F_SETFL, O_NONBLOCK) ||
            (c->in = malloc(READ_SIZE)) == NULL ||
            ws_conn_new(&c->conn, &cfg, NULL) != 0) {
          if (i < MAX_CLIENTS) free(c->in);
          close(fd);
          continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->inpos = c->inlen = 0;
        c->held = NULL;
        ws_conn_tick(c->conn, now);
      }
    }

    for (int i = 0; i < MAX_CLIENTS; i++) {
      client *c = &cl[i];
      if (c->fd < 0) continue;
      short re = pfd[i + 1].revents;
      int gone = 0;
      if ((re & (POLLIN | POLLHUP | POLLERR)) && want_read(c))
        gone = on_readable(c);
      if (ws_conn_next_deadline(c->conn) <= now) ws_conn_tick(c->conn, now);
      if (service(c) < 0 || gone || ws_conn_should_close_transport(c->conn))
        drop(c);
    }
  }
}
