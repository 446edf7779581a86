/*
 * A chat broadcast: CPU per broadcast of one 8 KiB chat-like text message
 * (JSON lines; eight different ones in turn) to 1,000 server connections that negotiated permessage-deflate, the
 * way every connection sends it (before issue 11: ws_conn_send() per
 * connection, which is what ws_loop_broadcast() did) next to one
 * prepared message (ws_prepared_new() + ws_conn_send_prepared() per
 * connection, what it does now), in the same run. Rows:
 *
 *   no context    server_no_context_takeover (and the client's too), as
 *                 the loop's max_pmd_context gives every connection over
 *                 its cap: the message can be compressed once for all
 *     send              ws_conn_send() per connection: each compresses,
 *                       with a compressor allocated for the message
 *     send + shared     the same with a ws_pmd_shared (no allocation, but
 *                       still one compression per connection)
 *     prepared          ws_prepared_new() + ws_conn_send_prepared()
 *   context       context takeover both ways: every connection must
 *                 compress with its own history, prepared or not (no
 *                 gain expected, and no loss)
 *     send, prepared
 *   plain         no deflate, the frame's bytes copied into each queue
 *                 (prepared) next to ws_conn_send_ref() (only the header
 *                 queued, the payload referenced): what a zero-copy
 *                 prepared message could save at most
 *     send, prepared (copy), send_ref (reference)
 *
 * Each broadcast is timed with the process CPU clock around the sends
 * only; the queues are then drained (ws_conn_out_peek/_consume) outside
 * the timing, as a loop's writes would. Rows of one group alternate for
 * MIN_SECONDS and each row's best broadcast counts. The bytes every
 * connection queued are checked: the no-context rows must agree exactly.
 *
 * Instructions per broadcast (callgrind, deterministic whatever the
 * machine's load): the program then runs itself once under valgrind
 * --tool=callgrind, one warm and one counted broadcast per row, and
 * prints the same table in instructions. `bench_broadcast --no-callgrind`
 * skips that part; without valgrind it is skipped with a note. One
 * caveat for the plain rows: callgrind counts every byte a `rep movsb`
 * moves as an instruction, and glibc's memcpy chooses `rep movsb` or a
 * vector loop for an 8 KiB copy by how source and destination are
 * aligned to each other, so two copies of the same size can differ
 * sixfold in instructions at the same CPU time (the prepared plain
 * frame and ws_conn_send()'s payload land on different sides of that
 * choice). Compare the plain rows by CPU.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ws/ws.h>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef WS_BENCH_CALLGRIND
#  include <valgrind/callgrind.h>
#endif

#define NCONN 1000
#define MSG_BYTES 8192
#define MIN_SECONDS 1.0

static void die(const char *what) {
  fprintf(stderr, "bench_broadcast: %s\n", what);
  exit(1);
}

static double cpu_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the message ---------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}

/* A chat relay's batch: JSON lines of who said what, 8 KiB. */
static void make_message(char *out, size_t len) {
  static const char *const names[] = {"alice", "bob", "carol", "dave",
                                      "erin", "frank", "grace", "heidi"};
  static const char *const texts[] = {
      "hello everyone", "anyone up for another round?", "brb, coffee",
      "nice shot!", "meet at the north gate", "who has the flag?",
      "gg, well played", "lag again on the eu server", "lol",
      "can someone invite me to the party?", "afk 5 min",
      "that boss fight took forever"};
  size_t pos = 0;
  unsigned ts = 1700000000u;
  while (pos < len) {
    char line[192];
    /* one draw per statement: argument order is unspecified */
    ts += rnd() % 7;
    const char *who = names[rnd() % 8];
    unsigned room = rnd() % 4;
    const char *what = texts[rnd() % 12];
    int n = snprintf(line, sizeof(line),
                     "{\"user\":\"%s\",\"room\":%u,\"ts\":%u,\"text\":\"%s\"}\n",
                     who, room, ts, what);
    for (int i = 0; i < n && pos < len; i++) out[pos++] = line[i];
  }
}

/* ---- connections -------------------------------------------------------- */

static const char REQ[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

/* The connection sets: the two context rows have one each, so that both
 * see the same messages after the same history. */
enum { NOCTX, SHARED, CTX, CTX2, PLAIN, NSETS };

static ws_pmd_shared *shared;

static ws_conn *open_conn(int set) {
  ws_config cfg;
  ws_conn *c;
  ws_event ev;
  char req[sizeof(REQ)];
  size_t pos = 0, len = sizeof(REQ) - 1, n;
  int opened = 0;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.ping_interval_ms = cfg.pong_timeout_ms = cfg.handshake_timeout_ms = 0;
  cfg.pmd.enable = set != PLAIN;
  if (set == NOCTX || set == SHARED) {
    /* what max_pmd_context gives a connection over its cap */
    cfg.pmd.server_no_context_takeover = 1;
    cfg.pmd.client_no_context_takeover = 1;
  }
  if (set == SHARED) cfg.pmd.shared = shared;
  if (ws_conn_new(&c, &cfg, NULL) != 0) die("conn: new");
  memcpy(req, REQ, len);
  while (!opened) {
    if (pos < len) {
      int rv = ws_conn_feed(c, (uint8_t *)req + pos, len - pos, &n);
      if (rv != 0 && rv != WS_ERR_WOULDBLOCK) die("conn: handshake");
      pos += n;
    } else if (ws_conn_state(c) != WS_STATE_OPEN) {
      die("conn: not open");
    }
    while (ws_conn_next_event(c, &ev) == 0) {
      if (ev.type == WS_EV_REQUEST && ws_conn_accept(c, NULL) != 0)
        die("conn: accept");
      if (ev.type == WS_EV_OPEN) opened = 1;
    }
  }
  ws_iovec iov[4];
  while ((n = ws_conn_out_peek(c, iov, 4)) > 0) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += iov[i].len;
    ws_conn_out_consume(c, total);
  }
  ws_pmd_params pp;
  ws_conn_pmd(c, &pp);
  if (pp.enabled != (set != PLAIN) ||
      pp.server_no_context_takeover != (set == NOCTX || set == SHARED))
    die("conn: negotiated the wrong thing");
  return c;
}

static ws_conn *conns[NSETS][NCONN];
/* Broadcasts cycle through NMSG different messages (a connection that
 * keeps context would compress a repeat to almost nothing); every row
 * starts at the first. */
#define NMSG 8
static char msgs[NMSG][MSG_BYTES];
static char *msg; /* not const: ws_conn_send_ref() takes it */
#define MSG_LEN ((size_t)MSG_BYTES)

/* The bytes connection 0 queued in the last broadcast of a row, and
 * the total over all connections. */
static uint8_t wire0[MSG_BYTES * 2];
static size_t wire0_len;
static uint64_t wire_total;

/* Empties every queue of |set|, as the writes would. */
static void drain(int set) {
  wire_total = 0;
  for (int i = 0; i < NCONN; i++) {
    ws_iovec iov[4];
    size_t n;
    ws_conn *c = conns[set][i];
    if (i == 0) wire0_len = 0;
    while ((n = ws_conn_out_peek(c, iov, 4)) > 0) {
      size_t total = 0;
      for (size_t k = 0; k < n; k++) {
        if (i == 0 && wire0_len + iov[k].len <= sizeof(wire0)) {
          memcpy(wire0 + wire0_len, iov[k].base, iov[k].len);
          wire0_len += iov[k].len;
        }
        total += iov[k].len;
      }
      ws_conn_out_consume(c, total);
      wire_total += total;
    }
  }
}

/* ---- one broadcast per row ------------------------------------------------ */

typedef void (*bcast_fn)(int set);

static void b_send(int set) {
  for (int i = 0; i < NCONN; i++)
    if (ws_conn_send(conns[set][i], WS_OP_TEXT, msg, MSG_LEN, 0) != 0)
      die("ws_conn_send");
}

static void b_prepared(int set) {
  ws_prepared *p;
  if (ws_prepared_new(&p, WS_OP_TEXT, msg, MSG_LEN, 0, NULL) != 0)
    die("ws_prepared_new");
  for (int i = 0; i < NCONN; i++)
    if (ws_conn_send_prepared(conns[set][i], p) != 0)
      die("ws_conn_send_prepared");
  ws_prepared_del(p);
}

/* the plain frame's payload, referenced by every queue */
static void b_ref(int set) {
  for (int i = 0; i < NCONN; i++)
    if (ws_conn_send_ref(conns[set][i], WS_OP_TEXT, msg, MSG_LEN, 0) != 0)
      die("ws_conn_send_ref");
}

typedef struct row {
  const char *group, *name;
  int set;
  bcast_fn fn;
  int base; /* index of the row it is compared with, -1: none */
} row;

static const row rows[] = {
    {"no context", "send (before)", NOCTX, b_send, -1},
    {"no context", "send + ws_pmd_shared", SHARED, b_send, 0},
    {"no context", "prepared (after)", NOCTX, b_prepared, 0},
    {"context", "send (before)", CTX, b_send, -1},
    {"context", "prepared (after)", CTX2, b_prepared, 3},
    {"plain", "send (before)", PLAIN, b_send, -1},
    {"plain", "prepared (copy)", PLAIN, b_prepared, 5},
    {"plain", "send_ref (reference)", PLAIN, b_ref, 5},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* rows [first, last) alternate */
static const int groups[][2] = {{0, 3}, {3, 5}, {5, 8}};

static double best[NROWS];
static uint64_t wire_of[NROWS];
static uint8_t *wire0_of[NROWS];
static size_t wire0_len_of[NROWS];

static unsigned next_msg[NROWS];

static void run_row(int r) {
  msg = msgs[next_msg[r]++ % NMSG];
  rows[r].fn(rows[r].set);
}

static void check_row(int r) {
  if (!wire0_of[r]) wire0_of[r] = malloc(sizeof(wire0));
  memcpy(wire0_of[r], wire0, wire0_len);
  wire0_len_of[r] = wire0_len;
}

static void verify(void) {
  /* the no-context rows queue the same bytes, on every connection */
  for (int r = 1; r <= 2; r++)
    if (wire0_len_of[r] != wire0_len_of[0] ||
        memcmp(wire0_of[r], wire0_of[0], wire0_len_of[0]) != 0 ||
        wire_of[r] != wire_of[0])
      die("no-context rows queued different bytes");
  if (wire_of[5] != wire_of[6] || wire_of[5] != wire_of[7])
    die("plain rows queued different sizes");
}

static void timed(void) {
  for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
    int first = groups[g][0], last = groups[g][1];
    for (int r = first; r < last; r++) { /* warm */
      run_row(r);
      drain(rows[r].set);
      check_row(r);
      best[r] = 1e9;
    }
    double start = wall_sec();
    int passes = 0;
    while (passes < 3 || wall_sec() - start < MIN_SECONDS) {
      for (int r = first; r < last; r++) {
        double t0 = cpu_sec();
        run_row(r);
        double t = cpu_sec() - t0;
        drain(rows[r].set);
        wire_of[r] = wire_total;
        if (t < best[r]) best[r] = t;
      }
      passes++;
    }
  }
  verify();
  printf("libws broadcast: one %u-byte chat text to %u permessage-deflate "
         "connections (level 6, window 15)\n",
         (unsigned)MSG_BYTES, (unsigned)NCONN);
  printf("CPU per broadcast (best of >= %.1f s per group, sends only)\n",
         MIN_SECONDS);
  printf("%-11s %-22s %12s %10s %14s\n", "group", "row", "us/bcast",
         "x before", "wire B/conn");
  for (size_t r = 0; r < NROWS; r++) {
    printf("%-11s %-22s %12.1f", rows[r].group, rows[r].name, best[r] * 1e6);
    if (rows[r].base >= 0)
      printf(" %10.3f", best[r] / best[rows[r].base]);
    else
      printf(" %10s", "-");
    printf(" %14.1f\n", (double)wire_of[r] / NCONN);
  }
  printf("(x before: this row's CPU over the first row of its group; "
         "below 1 is faster. wire: bytes queued per connection in the "
         "last broadcast)\n");
}

/* ---- instruction counts (callgrind) --------------------------------------- */

#ifdef WS_BENCH_CALLGRIND
static int count_child(void) {
  for (size_t r = 0; r < NROWS; r++) {
    char desc[64];
    run_row((int)r); /* warm: compressors made, queues sized */
    drain(rows[r].set);
    CALLGRIND_TOGGLE_COLLECT;
    run_row((int)r);
    CALLGRIND_TOGGLE_COLLECT;
    drain(rows[r].set);
    snprintf(desc, sizeof(desc), "row|%zu", r);
    CALLGRIND_DUMP_STATS_AT(desc);
  }
  return 0;
}

static void count_parent(const char *self) {
  char dir[] = "/tmp/bench_broadcast.XXXXXX", out[96], path[128], line[512];
  double instr[NROWS] = {0};
  pid_t pid;
  int status;

  if (!mkdtemp(dir)) die("mkdtemp");
  snprintf(out, sizeof(out), "--callgrind-out-file=%s/cg", dir);
  fflush(stdout);
  pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    execlp("valgrind", "valgrind", "--tool=callgrind", "--quiet",
           "--collect-atstart=no", out, self, "--callgrind", (char *)NULL);
    _exit(127);
  }
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    printf("instructions: skipped (valgrind not found or it failed)\n");
    return;
  }
  for (unsigned k = 1;; k++) {
    FILE *f;
    unsigned long long total = 0;
    long rowi = -1;
    snprintf(path, sizeof(path), "%s/cg.%u", dir, k);
    f = fopen(path, "r");
    if (!f) break;
    while (fgets(line, sizeof(line), f)) {
      if (strncmp(line, "desc: Trigger: Client Request: row|", 35) == 0)
        rowi = strtol(line + 35, NULL, 10);
      else if (strncmp(line, "totals: ", 8) == 0)
        total = strtoull(line + 8, NULL, 10);
    }
    fclose(f);
    remove(path);
    if (rowi >= 0 && (size_t)rowi < NROWS) instr[rowi] = (double)total;
  }
  snprintf(path, sizeof(path), "%s/cg", dir);
  remove(path);
  rmdir(dir);
  printf("\ninstructions per broadcast (callgrind, one counted broadcast "
         "per row)\n");
  printf("%-11s %-22s %14s %10s %12s\n", "group", "row", "instr/bcast",
         "x before", "instr/conn");
  for (size_t r = 0; r < NROWS; r++) {
    printf("%-11s %-22s %14.0f", rows[r].group, rows[r].name, instr[r]);
    if (rows[r].base >= 0 && instr[rows[r].base] > 0)
      printf(" %10.4f", instr[r] / instr[rows[r].base]);
    else
      printf(" %10s", "-");
    printf(" %12.0f\n", instr[r] / NCONN);
  }
}
#endif

int main(int argc, char **argv) {
  int child = argc > 1 && strcmp(argv[1], "--callgrind") == 0;
  int no_cg = argc > 1 && strcmp(argv[1], "--no-callgrind") == 0;
  for (int m = 0; m < NMSG; m++) make_message(msgs[m], MSG_LEN);
  if (ws_pmd_shared_new(&shared, 6, NULL) != 0) die("ws_pmd_shared_new");
  if (!child) {
    for (int s = 0; s < NSETS; s++)
      for (int i = 0; i < NCONN; i++) conns[s][i] = open_conn(s);
    timed();
  }
#ifdef WS_BENCH_CALLGRIND
  if (child) {
    if (!RUNNING_ON_VALGRIND) die("--callgrind: run by the program itself");
    for (int s = 0; s < NSETS; s++)
      for (int i = 0; i < NCONN; i++) conns[s][i] = open_conn(s);
    count_child();
  } else if (!no_cg) {
    count_parent(argv[0]);
  }
#else
  if (child) die("built without valgrind/callgrind.h");
  if (!no_cg) printf("instructions: skipped (no valgrind/callgrind.h)\n");
#endif
  for (int s = 0; s < NSETS; s++)
    for (int i = 0; i < NCONN; i++) ws_conn_del(conns[s][i]);
  ws_pmd_shared_del(shared);
  for (size_t r = 0; r < NROWS; r++) free(wire0_of[r]);
  return 0;
}
