/*
 * ws_load: load and fault test (and benchmark) of examples/echo-server.
 *
 *   ws_load --server PATH [--conns 5000] [--msgs 100] [--window 4]
 *           [--no-faults] [--threads N] [--size BYTES] [--idle]
 *           [--inflight 256]
 *
 * Starts the server (--port 0 --handshake-timeout 3000), opens --conns
 * client connections with the epoll loop (at most --inflight connecting at
 * a time) and keeps them all open; measures the server's RSS per open
 * connection; then every connection echoes --msgs messages of mixed sizes
 * (0 B to 32 KiB, text and binary, --window in flight) and every byte is
 * checked in order. Meanwhile a thread plays the faults with raw sockets:
 * clients that vanish mid-frame (FIN and RST), clients that send and never
 * read (the server's RSS must stay bounded: backpressure), and clients
 * that never finish the opening handshake (the server must drop them
 * within the handshake timeout). Well-behaved clients must lose nothing;
 * the server must stay up and exit 0 on SIGTERM. Prints the figures and
 * "N passed, N failed". --idle stops after the RSS per open connection
 * (the idle-memory benchmark: no echoes, no faults; the server runs with
 * -q, so that its connection log is not counted).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE

#include <ws/ws_epoll.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct client {
  uint32_t idx;
  uint32_t sent, got; /* messages */
  int open;
  ws_loop_conn *conn;
} client;

static int nconns = 5000, nmsgs = 100, window = 4, faults = 1, idle_only;
static int inflight = 256; /* --inflight: handshakes at once */
static int open_target;    /* connect_more() opens this many in all */
static uint16_t port;
static pid_t server;
static ws_loop *loop;
static client *cl;
static int opened, started, closed_clean, connecting, next_conn, failures;
static uint64_t echoes, bytes;
static int passed, failed;
static uint8_t *scratch;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/PID/status in KiB: "VmRSS" (all resident pages),
 * "RssAnon" (the heap and other private memory), "RssFile" (pages of the
 * program and its libraries). -1 if not there. */
static long status_kib(pid_t pid, const char *field) {
  char path[64], line[256], fmt[64];
  long kib = -1;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  snprintf(fmt, sizeof(fmt), "%s: %%ld kB", field);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, fmt, &kib) == 1) break;
#pragma GCC diagnostic pop
  fclose(f);
  return kib;
}

static long rss_kib(pid_t pid) { return status_kib(pid, "VmRSS"); }

/* CPU seconds (user + system) the process |pid| has used. */
static double cpu_s(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Prints "ok WHAT" or "FAIL WHAT" after the detail line printed before. */
static void result(int ok, const char *what) {
  if (ok) passed++;
  else failed++;
  printf("%s %s\n", ok ? "ok" : "FAIL", what);
  fflush(stdout);
}

/* Message |m| of client |i|: its size, kind and bytes are a function of
 * (i, m), so the echo can be checked without keeping what was sent. */
static long fixed_size = -1; /* --size: every message this long */

static size_t msg_size(uint32_t i, uint32_t m) {
  if (fixed_size >= 0) return (size_t)fixed_size;
  uint32_t h = (i * 2654435761u) ^ (m * 40503u + 0x9e37u);
  h ^= h >> 13;
  uint32_t k = h % 100;
  if (k < 70) return h % 126;              /* 0..125: 7-bit length */
  if (k < 97) return 126 + h % 3970;       /* 16-bit length, up to 4 KiB */
  return 4096 + h % (28 * 1024);           /* up to 32 KiB */
}

static void msg_fill(uint32_t i, uint32_t m, uint8_t *p, size_t n, int text) {
  uint32_t x = i * 7919u + m * 104729u + 1;
  for (size_t k = 0; k < n; k++) {
    x = x * 1103515245u + 12345u;
    p[k] = text ? (uint8_t)('a' + (x >> 16) % 26) : (uint8_t)(x >> 16);
  }
}

static int msg_text(uint32_t i, uint32_t m) { return ((i + m) & 1) == 0; }

static void send_next(client *c) {
  uint32_t m = c->sent++;
  size_t n = msg_size(c->idx, m);
  int text = msg_text(c->idx, m);
  msg_fill(c->idx, m, scratch, n, text);
  int rv = ws_loop_send(c->conn, text ? WS_OP_TEXT : WS_OP_BINARY, scratch, n,
                        0);
  if (rv != 0) failures++;
}

static void connect_more(void);

static int on_open(ws_loop_conn *conn, void *ud) {
  client *c = ud;
  (void)conn;
  c->open = 1;
  connecting--;
  opened++;
  connect_more();
  if (started)
    for (int k = 0; k < window && c->sent < (uint32_t)nmsgs; k++) send_next(c);
  return 0;
}

static int on_message(ws_loop_conn *conn, void *ud, const ws_event *ev) {
  client *c = ud;
  uint32_t m = c->got++;
  size_t n = msg_size(c->idx, m);
  int text = msg_text(c->idx, m);
  msg_fill(c->idx, m, scratch, n, text);
  if (ev->data.len != n || (ev->type == WS_EV_TEXT) != text ||
      (n && memcmp(ev->data.base, scratch, n) != 0))
    failures++;
  echoes++;
  bytes += n;
  if (c->sent < (uint32_t)nmsgs)
    send_next(c);
  else if (c->got == (uint32_t)nmsgs)
    ws_loop_close(conn, 1000, NULL, 0);
  return 0;
}

static int on_close(ws_loop_conn *conn, void *ud,
                    const ws_loop_close_info *in) {
  client *c = ud;
  (void)conn;
  if (!c->open) connecting--;
  if (!in->error && in->code == 1000 && c->got == (uint32_t)nmsgs)
    closed_clean++;
  else
    failures++;
  c->conn = NULL;
  return 0;
}

static void connect_more(void) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.delivery = WS_DELIVER_MESSAGE;
  cfg.ping_interval_ms = 0; /* measure echoes, not keepalive */
  cfg.handshake_timeout_ms = 30000;
  while (connecting < inflight && next_conn < open_target) {
    client *c = &cl[next_conn];
    c->idx = (uint32_t)next_conn++;
    ws_loop_connect_params cp;
    memset(&cp, 0, sizeof(cp));
    cp.host = "127.0.0.1";
    cp.port = port;
    cp.request.path = "/load";
    cp.config = &cfg;
    cp.user_data = c;
    if (ws_loop_connect(loop, &cp, &c->conn) != 0) {
      failures++;
      continue;
    }
    connecting++;
  }
}

static void start_all(ws_loop *l, void *arg) {
  (void)l;
  (void)arg;
  started = 1;
  for (int i = 0; i < nconns; i++)
    if (cl[i].conn)
      for (int k = 0; k < window && cl[i].sent < (uint32_t)nmsgs; k++)
        send_next(&cl[i]);
}

/* ---- faults, with raw sockets on their own thread ---------------------- */

typedef struct fault_result {
  int vanished, stalled, half, half_dropped;
  long rss_before, rss_stalled;
  double drop_secs;
} fault_result;

static int raw_connect(void) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static const char request[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* Handshakes on a blocking socket; returns 0 once the 101 is read. */
static int raw_handshake(int fd) {
  char buf[1024];
  size_t len = 0;
  if (write(fd, request, sizeof(request) - 1) != (ssize_t)sizeof(request) - 1)
    return -1;
  while (len < sizeof(buf) - 1) {
    ssize_t r = read(fd, buf + len, 1); /* byte by byte: leave the frames */
    if (r <= 0) return -1;
    len++;
    buf[len] = 0;
    if (len >= 4 && !memcmp(buf + len - 4, "\r\n\r\n", 4))
      return strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
  }
  return -1;
}

/* A masked binary frame header for |n| payload bytes, key 0 (payload as
 * is). */
static size_t frame_hdr(uint8_t *h, size_t n) {
  h[0] = 0x82;
  if (n < 126) {
    h[1] = (uint8_t)(0x80 | n);
    memset(h + 2, 0, 4);
    return 6;
  }
  h[1] = 0x80 | 126;
  h[2] = (uint8_t)(n >> 8);
  h[3] = (uint8_t)n;
  memset(h + 4, 0, 4);
  return 8;
}

static void *fault_thread(void *arg) {
  fault_result *r = arg;
  enum { VANISH = 100, STALL = 16, HALF = 100 };
  int half[HALF], stall[STALL];
  uint8_t frame[8 + 60000];
  size_t hl = frame_hdr(frame, 60000);
  memset(frame + hl, 'x', 60000);

  /* Handshakes that never finish: half a request, or nothing at all. */
  double t0 = now_s();
  for (int i = 0; i < HALF; i++) {
    half[i] = raw_connect();
    if (half[i] >= 0 && (i & 1))
      (void)!write(half[i], request, 40); /* a partial request line */
    if (half[i] >= 0) r->half++;
  }
  /* Vanish mid-frame: half a header or half a payload, then FIN or RST. */
  for (int i = 0; i < VANISH; i++) {
    int fd = raw_connect();
    if (fd < 0 || raw_handshake(fd) != 0) {
      if (fd >= 0) close(fd);
      continue;
    }
    (void)!write(fd, frame, i % 3 == 0 ? 3 : hl + 1000);
    if (i & 1) {
      struct linger lg = {1, 0}; /* close() sends RST */
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd);
    r->vanished++;
  }
  /* Stall: send echo requests as fast as the server takes them, never
   * read. The server must stop reading (backpressure), not buffer it all. */
  r->rss_before = rss_kib(server);
  for (int i = 0; i < STALL; i++) {
    stall[i] = raw_connect();
    if (stall[i] >= 0 && raw_handshake(stall[i]) == 0) {
      fcntl(stall[i], F_SETFL, O_NONBLOCK);
      r->stalled++;
    }
  }
  double end = now_s() + 2.0;
  while (now_s() < end) {
    int progress = 0;
    for (int i = 0; i < STALL; i++) {
      if (stall[i] < 0) continue;
      ssize_t w = write(stall[i], frame, hl + 60000);
      if (w > 0) progress = 1; /* a short write misframes: fine, it stalls */
    }
    if (!progress) usleep(20000);
  }
  r->rss_stalled = rss_kib(server);
  for (int i = 0; i < STALL; i++)
    if (stall[i] >= 0) close(stall[i]);

  /* The half handshakes are dropped at the 3 s timeout; on a loaded
   * machine that can take a while longer, so wait up to 20 s. Well-behaved
   * clients have the same 3 s for their handshake: plenty even with CPU
   * hogs beside the test. */
  for (int i = 0; i < HALF; i++) {
    if (half[i] < 0) continue;
    struct pollfd p = {half[i], POLLIN, 0};
    double left = 20.0 - (now_s() - t0);
    if (poll(&p, 1, left > 0 ? (int)(left * 1000) : 0) == 1) {
      char b[64];
      ssize_t n = read(half[i], b, sizeof(b));
      if (n <= 0 || !strncmp(b, "HTTP/1.1 4", 10)) r->half_dropped++;
    }
    close(half[i]);
  }
  r->drop_secs = now_s() - t0;
  return NULL;
}

/* ---- main ------------------------------------------------------------------ */

static pid_t spawn_server(const char *path, int threads, uint16_t *pport) {
  int pfd[2];
  if (pipe(pfd) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  posix_spawn_file_actions_addclose(&fa, pfd[0]);
  char th[16];
  snprintf(th, sizeof(th), "%d", threads);
  char a0[256], a1[] = "--port", a2[] = "0", a3[] = "--handshake-timeout",
       a4[] = "3000", a5[] = "--threads";
  snprintf(a0, sizeof(a0), "%s", path);
  /* --idle: -q, no connection log, so that the figure is the library's
   * and the loop's (the log keeps ~48 B per connection of its own). */
  char a7[] = "-q";
  char *argv[] = {a0, a1, a2, a3, a4, a5, th, idle_only ? a7 : NULL, NULL};
  pid_t pid;
  /* Under AddressSanitizer, freed memory sits in a quarantine of up to
   * 256 MiB, which would hide what the RSS check looks at. */
  const char *asan = getenv("ASAN_OPTIONS");
  char opts[512];
  snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=0", asan ? asan : "",
           asan && *asan ? ":" : "");
  setenv("ASAN_OPTIONS", opts, 1);
  int rv = posix_spawn(&pid, path, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rv != 0) return -1;
  close(pfd[1]);
  char line[256];
  FILE *f = fdopen(pfd[0], "r");
  if (!f || !fgets(line, sizeof(line), f)) return -1;
  char *p = strstr(line, "127.0.0.1:");
  *pport = p ? (uint16_t)atoi(p + 10) : 0;
  fclose(f);
  return pid;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  int threads = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--server") && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "--conns") && i + 1 < argc) nconns = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--msgs") && i + 1 < argc) nmsgs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--window") && i + 1 < argc) window = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-faults")) faults = 0;
    else if (!strcmp(argv[i], "--idle")) idle_only = 1, faults = 0;
    else if (!strcmp(argv[i], "--inflight") && i + 1 < argc) inflight = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc) fixed_size = atol(argv[++i]);
    else path = NULL, i = argc;
  }
  if (!path || nconns < 1 || nmsgs < 1 || window < 1 || inflight < 1) {
    fprintf(stderr, "usage: ws_load --server PATH [--conns N] [--msgs N] "
                    "[--window N] [--threads N] [--no-faults] [--idle] "
                    "[--inflight N]\n");
    return 2;
  }
  /* Two descriptors per connection on this machine (ours and the
   * server's, which inherits the limit). */
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if ((rlim_t)nconns + 400 > rl.rlim_cur) {
    fprintf(stderr, "ws_load: RLIMIT_NOFILE %lu is too low for %d\n",
            (unsigned long)rl.rlim_cur, nconns);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  server = spawn_server(path, threads, &port);
  if (server <= 0 || port == 0) {
    fprintf(stderr, "ws_load: cannot start %s\n", path);
    return 1;
  }
  scratch = malloc(64 * 1024);
  cl = calloc((size_t)nconns, sizeof(client));
  ws_loop_config lc;
  ws_loop_config_default(&lc);
  lc.callbacks.on_open = on_open;
  lc.callbacks.on_message = on_message;
  lc.callbacks.on_close = on_close;
  if (ws_loop_new(&loop, &lc) != 0) return 1;

  usleep(100000);
  long rss0 = rss_kib(server), anon0 = status_kib(server, "RssAnon"),
       file0 = status_kib(server, "RssFile");
  double t0 = now_s();
  /* --idle: half the connections first, the RSS then, and the rest: the
   * second half's growth is what a connection costs at the margin, the
   * constants (the allocator's top pad, what it keeps of the last
   * handshakes in flight, pages of code) counted once in each figure */
  long rss_half = 0;
  open_target = idle_only ? nconns / 2 : nconns;
  connect_more();
  while (opened + failures < open_target && now_s() - t0 < 30)
    if (ws_loop_run_once(loop, 100) < 0) break;
  if (idle_only) {
    usleep(200000);
    rss_half = rss_kib(server);
    open_target = nconns;
    connect_more();
  }
  while (opened + failures < nconns && now_s() - t0 < 30)
    if (ws_loop_run_once(loop, 100) < 0) break;
  double t_open = now_s() - t0;
  usleep(200000); /* let the server settle */
  long rss_open = rss_kib(server), anon = status_kib(server, "RssAnon"),
       file = status_kib(server, "RssFile");
  printf("  %d of %d open in %.2f s\n", opened, nconns, t_open);
  result(opened == nconns, "all connections open at once");
  printf("server RSS: %ld KiB idle, %ld KiB with %d open: %.0f bytes per "
         "connection\n", rss0, rss_open, opened,
         (double)(rss_open - rss0) * 1024.0 / (opened ? opened : 1));

  if (idle_only) {
    printf("idle: %d connections open after the handshake: %.0f bytes per "
           "idle connection (server RSS growth; echo-server -q: the library "
           "and the loop, no connection log)\n", opened,
           (double)(rss_open - rss0) * 1024.0 / (opened ? opened : 1));
    printf("idle: of which the heap and private memory (RssAnon) %.0f bytes "
           "per connection, pages of the program and its libraries first "
           "used meanwhile (RssFile) %ld KiB in all\n",
           (double)(anon - anon0) * 1024.0 / (opened ? opened : 1),
           file - file0);
    int second = nconns - nconns / 2;
    printf("idle: the second %d connections grew it by %.0f bytes each "
           "(the cost of one more idle connection)\n", second,
           (double)(rss_open - rss_half) * 1024.0 / (second ? second : 1));
    goto end;
  }

  fault_result fr;
  memset(&fr, 0, sizeof(fr));
  pthread_t ft;
  if (faults) pthread_create(&ft, NULL, fault_thread, &fr);
  ws_loop_post_call(loop, start_all, NULL);
  double cpu0 = cpu_s(server);
  double t1 = now_s();
  while (closed_clean + failures < nconns && now_s() - t1 < 40)
    if (ws_loop_run_once(loop, 100) < 0) break;
  double t_echo = now_s() - t1;
  double cpu_echo = cpu_s(server) - cpu0;
  if (faults) pthread_join(ft, NULL);

  printf("  %llu echoes, %d failures, %d clean closes\n",
         (unsigned long long)echoes, failures, closed_clean);
  result(failures == 0 && closed_clean == nconns &&
             echoes == (uint64_t)nconns * (uint64_t)nmsgs,
         "every message echoed in order, byte for byte, clean close");
  printf("echo: %llu messages (%.1f MiB) each way in %.2f s: %.0f messages/s, "
         "%.1f MiB/s each way\n", (unsigned long long)echoes,
         (double)bytes / 1048576.0, t_echo, (double)echoes / t_echo,
         (double)bytes / 1048576.0 / t_echo);
  printf("server CPU: %.2f s for the echoes: %.0f messages per server "
         "CPU-second\n", cpu_echo,
         cpu_echo > 0 ? (double)echoes / cpu_echo : 0.0);
  if (faults) {
    printf("  %d of 100 vanished\n", fr.vanished);
    result(fr.vanished == 100, "clients vanished mid-frame (FIN and RST)");
    long grow = fr.rss_stalled - fr.rss_before;
    /* Per stalled client: high-water (1 MiB) + one echo + one read buffer,
     * with room to spare; without backpressure it would be all it sent. */
    printf("  %d stalled clients: server RSS grew %ld KiB (limit %d KiB)\n",
           fr.stalled, grow, 16 * 3 * 1024);
    result(fr.stalled == 16 && grow < 16 * 3 * 1024,
           "16 clients that never read: server RSS bounded");
    printf("  %d of %d unfinished handshakes dropped within %.1f s\n",
           fr.half_dropped, fr.half, fr.drop_secs);
    result(fr.half_dropped == fr.half && fr.half == 100,
           "unfinished handshakes dropped by the 3 s timeout");
  }
end:
  result(kill(server, 0) == 0, "server still up");
  kill(server, SIGTERM);
  int st = 0;
  waitpid(server, &st, 0);
  printf("  server wait status %d\n", st);
  result(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exits 0 on SIGTERM");
  ws_loop_del(loop);
  free(cl);
  free(scratch);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
