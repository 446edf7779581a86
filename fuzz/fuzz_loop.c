/*
 * Fuzz target: the event-loop driver (lib/adapters/ws_drv_*.c) over the
 * simulated network and clock of tests/adapter/sim.c.
 * SPDX-License-Identifier: MIT
 *
 * A run creates a loop (ws_drv_new() over sim_poller() and sim_sys()) and
 * a listener, configured from the first bytes, and then plays the rest of
 * the input as a script of operations on the simulation: raw clients
 * dial, send bytes (raw, or built by helpers: an opening handshake, masked
 * frames, fragmented and compressed messages, close and ping frames),
 * read some or all of what the server wrote, stop reading, half-close,
 * close and reset; reads and writes go partial; accepts fail; time moves
 * (a bounded wait, or a wait without limit ended by a scripted action);
 * the application acts on its connections (send, ping, close, pause and
 * resume, answer a paused request, posts, broadcast); the loop shuts down
 * gracefully; a client of the loop's own connects to its listener; one
 * allocation of the loop's fails; ws_loop_parse_url() gets a URL; the
 * transport (when there is one) fails. The callbacks act too (echo,
 * pause, close, broadcast, post), as the per-connection mode bits say.
 *
 * Input layout:
 *   byte 0   configuration bits (CF_* below)
 *   byte 1   limits: max_message, max_out_queue, read_size, high/low water
 *   byte 2   timers: handshake, ping/pong, close, write timeout
 *   byte 3   linger, max_post_bytes, permessage-deflate parameters, and
 *            (bit 7) a transport of the target's own (tp_*) under the
 *            listener and the loop clients, as TLS would be
 *   byte 4   the application's initial mode for each connection (M_*)
 *   rest     operations, one byte each (OP_* below) and their arguments;
 *            at most MAX_OPS, and an operation cut short by the end of
 *            the input is not done
 *
 * Invariants (abort() on violation):
 *  - every connection for which on_request or on_open was called, and
 *    every one made by ws_loop_connect(), gets exactly one on_close (by
 *    ws_loop_conn_id()), at the latest from ws_loop_del(); no callback
 *    names a connection after its on_close, on_close comes for no other
 *    connection (not after on_http), and callbacks never see an id twice
 *    as new;
 *  - no busy wakeups: in consecutive rounds where the loop chose its own
 *    wait (no operation in between), at most MAX_IDLE_RUN in a row have
 *    the simulation's idle_waits grown, the clock still, and nothing
 *    done (see round_wait());
 *  - memory: every allocation of the loop and of its connections goes
 *    through a counting ws_mem, and the live bytes stay within
 *    mem_bound() (see there: the loop's fixed part, plus per connection
 *    its driver state, a read buffer of retained input and what the
 *    core's limits allow, for the connections the loop holds, those
 *    ended and not yet freed, and one being made; plus what the posts
 *    may hold), and come back to zero after ws_loop_del();
 *  - descriptors: after ws_loop_del() only the raw clients' own ends are
 *    open in the simulation (the loop closed everything it opened);
 *  - with CF_PARTIAL, the run winds down before ws_loop_del(): once the
 *    peers are gone and time has run on, no connection is left, unless
 *    the loop stopped (a finished shutdown).
 *
 * Each input runs in a few milliseconds: at most MAX_OPS operations, at
 * most MAX_ROUNDS rounds of the loop per time step, and bounded payload
 * sizes. WS_FUZZ_DEBUG=1 prints the operations and callbacks.
 */
#include "ws_drv.h" /* sizes of the driver's structures, for the bound */

#include "sim.h"
#include "ws_deflate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#define T0 1000000u       /* the simulation starts at 1000 s */
#define MAX_OPS 256       /* operations per input */
#define MAX_CLIENTS 12    /* raw clients at a time */
#define MAX_DIALS 32      /* raw clients per input */
#define MAX_LCLIENTS 3    /* clients of the loop's own per input */
#define MAX_TRACK 128     /* connections the application saw */
#define MAX_ROUNDS 24     /* loop rounds per time step */
#define MAX_IDLE_RUN 3    /* busy wakeups in a row (round_wait()) */
#define MAX_PAYLOAD 20000 /* bytes of one built frame */
#define CB_BUDGET 4000    /* callbacks that answer, per input */

/* A bug of the driver whose fix has not landed (fuzz/findings/README.md,
 * fuzz_loop): conn_account() calls on_writable(conn, 0) after on_close
 * when output queued before the close takes the connection over
 * high_water. While it is 1, that one callback is let through (and
 * counted) unless WS_FUZZ_STRICT is set in the environment, so that
 * fuzzing goes on finding other things; set it to 0 with the fix, and
 * move the finding to the corpus. */
#ifndef KNOWN_WRITABLE_AFTER_CLOSE
#  define KNOWN_WRITABLE_AFTER_CLOSE 0 /* fixed: ws_drv_conn.c conn_account() */
#endif
/* Another (fuzz/findings/README.md): without on_request, a connection
 * whose automatic accept fails for lack of memory gets an on_close,
 * though the application never heard of it (no on_open). */
#ifndef KNOWN_CLOSE_UNANNOUNCED
#  define KNOWN_CLOSE_UNANNOUNCED 0 /* fixed: ws_drv_conn.c dispatch_request() */
#endif
/* A third, in the core (fuzz/findings/README.md): a send that runs out
 * of memory while compressing fails the connection, and fail() frees
 * the message buffer that an event lends out: the one being handled (a
 * handler that broadcasts its message, to its own connection too, then
 * reads freed memory in the sends after its own) or one kept by a pause
 * (delivered again from freed memory). Until the fix, no allocation is
 * made to fail with permessage-deflate on, unless WS_FUZZ_STRICT is
 * set. */
#ifndef KNOWN_SEND_FREES_DATA
#  define KNOWN_SEND_FREES_DATA 0 /* fixed: wsc_fail() defers the free */
#endif

/* byte 0 */
enum {
  CF_MESSAGE = 0x01,  /* WS_DELIVER_MESSAGE (else stream) */
  CF_PMD = 0x02,      /* permessage-deflate on */
  CF_HTTP = 0x04,     /* on_http set (WS_CFG_HTTP) */
  CF_LCLIENT = 0x08,  /* a loop client connects at the start */
  CF_REQUEST = 0x10,  /* on_request set */
  CF_NO_CLOSE = 0x20, /* WS_CFG_NO_AUTO_CLOSE: on_close answers */
  CF_CBS = 0x40,      /* on_control and on_writable set */
  CF_PARTIAL = 0x80   /* partial reads and writes from the start, and
                         the wind-down at the end (wind_down()) */
};

/* Application modes, per connection (byte 4, or OP_MODE). */
enum {
  M_PAUSE_REQ = 0x01, /* on_request pauses; OP_APP answers */
  M_REJECT = 0x02,    /* on_request rejects with 403 */
  M_PAUSE_MSG = 0x04, /* on_open and every other message pause */
  M_CLOSE_MSG = 0x08, /* close after the second message */
  M_BIG = 0x10,       /* answer with three copies, and greet on open */
  M_POST = 0x20,      /* echo through ws_loop_post_send() */
  M_BCAST = 0x40,     /* echo through ws_loop_broadcast() */
  M_PROTO = 0x80      /* accept the first offered subprotocol */
};

enum {
  OP_DIAL,
  OP_HANDSHAKE,
  OP_FRAME,
  OP_RAW,
  OP_READ,
  OP_RCVBUF,
  OP_HALFCLOSE,
  OP_CLOSE,
  OP_RESET,
  OP_PARTIAL,
  OP_ADVANCE,
  OP_ADVANCE2,
  OP_ADVANCE3,
  OP_WAIT,
  OP_WAIT2,
  OP_RUN0,
  OP_FAIL_ACCEPTS,
  OP_APP,
  OP_APP2,
  OP_APP3,
  OP_APP4,
  OP_SHUTDOWN,
  OP_LCONNECT,
  OP_BIGFRAME,
  OP_PMDFRAME,
  OP_CLOSEFRAME,
  OP_PINGFRAME,
  OP_FRAGMENTS,
  OP_MODE,
  OP_POSTCALL,
  OP_ADVANCE_LONG,
  OP_SETTLE,
  OP_FAILMALLOC,
  OP_URL,
  OP_TPFAIL,
  OP_COUNT /* 35 */
};

/* ---- counting allocator -------------------------------------------------- */

typedef struct fl_alloc {
  size_t live, peak;
  size_t base;     /* the loop's fixed part */
  size_t per_conn; /* one connection, driver and core */
  size_t post_max; /* max_post_bytes */
  size_t nposts;   /* posts the target made */
  size_t fail_in;  /* 0, or: allocation number fail_in from now fails */
  ws_loop *const *ploop;
} fl_alloc;

#define HDR 16 /* keeps malloc's alignment */

/* Connections that hold memory: the loop's, the ones ended and not freed
 * yet (the graveyard, freed at the end of the round), and one being
 * made (conn_new() allocates before the count grows). */
static size_t mem_conns(const fl_alloc *a) {
  const ws_loop *l = *a->ploop;
  size_t n = 1;
  if (!l) return n;
  n += l->nconns;
  for (const ws_loop_conn *c = l->grave; c; c = c->next_grave)
    n++;
  return n;
}

/* Blocks of the common size come in slabs (ws_drv_budget.c): the slabs
 * there are, one more being made, and their sorted array (a block's own
 * bytes are in per_conn already, so this is more than enough). */
static size_t slab_bound(const fl_alloc *a) {
  const ws_loop *l = *a->ploop;
  if (!l) return 0;
  return (l->nslabs + 1) * (SLAB_HDR_MAX + SLAB_BLOCKS * l->slab_n) +
         2 * (l->slabcap + 16) * sizeof(void *);
}

/* Posts: their bytes within max_post_bytes, and a header each (the
 * target counts the posts it makes, plus one being made). */
static size_t mem_bound(const fl_alloc *a) {
  return a->base + a->per_conn * mem_conns(a) + a->post_max +
         (a->nposts + 1) * (sizeof(post) + 16) + slab_bound(a);
}

static void over(const fl_alloc *a, size_t live) {
  fprintf(stderr,
          "allocation over the configured limits: live %zu > %zu "
          "(base %zu, %zu x %zu per connection, %zu posts)\n",
          live, mem_bound(a), a->base, mem_conns(a), a->per_conn, a->nposts);
  abort();
}

/* Counts down to the allocation that OP_FAILMALLOC made fail. */
static int fail_now(fl_alloc *a) { return a->fail_in && --a->fail_in == 0; }

static void *f_malloc(size_t n, void *ud) {
  fl_alloc *a = ud;
  if (fail_now(a)) return NULL;
  if (n > mem_bound(a) || a->live + n > mem_bound(a)) over(a, a->live + n);
  uint8_t *p = malloc(n + HDR);
  if (!p) return NULL;
  memcpy(p, &n, sizeof(n));
  a->live += n;
  if (a->live > a->peak) a->peak = a->live;
  return p + HDR;
}

static void f_free(void *ptr, void *ud) {
  fl_alloc *a = ud;
  if (!ptr) return;
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t n;
  memcpy(&n, p, sizeof(n));
  CHECK(a->live >= n);
  a->live -= n;
  free(p);
}

static void *f_realloc(void *ptr, size_t n, void *ud) {
  fl_alloc *a = ud;
  if (!ptr) return f_malloc(n, ud);
  if (fail_now(a)) return NULL;
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t old;
  memcpy(&old, p, sizeof(old));
  if (n > mem_bound(a) || a->live - old + n > mem_bound(a))
    over(a, a->live - old + n);
  uint8_t *q = realloc(p, n + HDR);
  if (!q) return NULL;
  memcpy(q, &n, sizeof(n));
  a->live = a->live - old + n;
  if (a->live > a->peak) a->peak = a->live;
  return q + HDR;
}

/* ---- state of one run ---------------------------------------------------- */

typedef struct tconn {
  uint64_t id;
  ws_loop_conn *c; /* NULL once on_close returned */
  uint8_t known;   /* owed an on_close */
  uint8_t closes;
  uint8_t http;   /* came to on_http */
  uint8_t paused; /* we returned WS_LOOP_PAUSE */
  uint8_t req;    /* a paused request not answered yet */
  uint8_t mode;
  uint8_t lclient; /* made by ws_loop_connect() */
  uint8_t opened;  /* on_open was called */
  uint32_t msgs;
} tconn;

typedef struct client {
  int fd; /* -1: none */
} client;

typedef struct run {
  const uint8_t *in;
  size_t len, pos;
  int debug, strict;
  uint8_t cf, lim, tim, misc, mode0;
  sim *s;
  ws_drv_poller pl; /* a copy, for the scripted wake-ups */
  ws_loop *l;
  fl_alloc alloc;
  ws_config scfg, ccfg;
  ws_loop_config lcfg;
  ws_loop_transport tp; /* with byte 3 bit 7: ours (tp_*) */
  int tp_fail;          /* the next read (1), attach (2), write (3) fails */
  uint16_t port;
  uint64_t nrefused; /* on_refused calls */
  client cl[MAX_CLIENTS];
  int ndials, nlclients;
  tconn tc[MAX_TRACK];
  size_t ntc;
  uint32_t rand_state;
  int idle_run;       /* busy wakeups in a row */
  uint64_t ncb;       /* callbacks so far */
  uint64_t known_bug; /* KNOWN_WRITABLE_AFTER_CLOSE seen */
  int guard_live;     /* the scripted wake-up of the current round */
  uint64_t guard_at;
  uint8_t buf[MAX_PAYLOAD + 16];
} run;

#define DBG(R, ...)                                                            \
  do {                                                                         \
    if ((R)->debug) fprintf(stderr, __VA_ARGS__);                              \
  } while (0)

/* ---- input --------------------------------------------------------------- */

static int has(const run *R, size_t n) { return R->len - R->pos >= n; }

static uint8_t u8(run *R) { return R->pos < R->len ? R->in[R->pos++] : 0; }

static uint16_t u16(run *R) {
  uint16_t hi = u8(R);
  return (uint16_t)(hi << 8 | u8(R));
}

/* Up to |max| bytes of the input (fewer if it ends); sets |*pn|. */
static const uint8_t *take(run *R, size_t want, size_t *pn) {
  size_t left = R->len - R->pos;
  if (want > left) want = left;
  const uint8_t *p = R->in + R->pos;
  R->pos += want;
  *pn = want;
  return p;
}

/* ---- connections the application saw ------------------------------------- */

static run *run_of(ws_loop_conn *c) {
  return ws_loop_user_data(ws_loop_conn_loop(c));
}

static tconn *find(run *R, uint64_t id) {
  for (size_t i = 0; i < R->ntc; i++)
    if (R->tc[i].id == id) return &R->tc[i];
  return NULL;
}

/* The record of |c|, made on first sight; never one that had on_close. */
static tconn *track(run *R, ws_loop_conn *c) {
  uint64_t id = ws_loop_conn_id(c);
  CHECK(id != 0);
  tconn *t = find(R, id);
  if (t) {
    CHECK(t->closes == 0); /* a callback after on_close */
    CHECK(t->c == c);
    return t;
  }
  CHECK(R->ntc < MAX_TRACK);
  t = &R->tc[R->ntc++];
  memset(t, 0, sizeof(*t));
  t->id = id;
  t->c = c;
  t->mode = R->mode0;
  return t;
}

/* The |k|-th live connection (modulo their number), or NULL. */
static tconn *pick_conn(run *R, uint8_t k) {
  size_t n = 0;
  for (size_t i = 0; i < R->ntc; i++)
    if (R->tc[i].c) n++;
  if (!n) return NULL;
  size_t want = k % n;
  for (size_t i = 0; i < R->ntc; i++)
    if (R->tc[i].c && want-- == 0) return &R->tc[i];
  return NULL;
}

/* ---- callbacks ----------------------------------------------------------- */

/* A post may be refused for its budget or size, or by a failed
 * allocation (OP_FAILMALLOC). */
static int post_ok(int rv) {
  return rv == 0 || rv == WS_ERR_WOULDBLOCK || rv == WS_ERR_TOO_BIG ||
         rv == WS_ERR_NOMEM;
}

static int cb_request(ws_loop_conn *c, void *ud, const ws_request *req) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  CHECK(req != NULL);
  tconn *t = find(R, ws_loop_conn_id(c));
  /* a request comes once, or again after a pause without an answer */
  if (t) CHECK(t->req && t->paused);
  t = track(R, c);
  t->known = 1;
  t->paused = t->req = 0;
  DBG(R, "  on_request %llx mode %x\n", (unsigned long long)t->id, t->mode);
  if (t->mode & M_REJECT) {
    static const ws_kv h[1] = {{"X-Fuzz", "no"}};
    int rv = ws_loop_reject(c, 403, h, 1, "no", 2);
    CHECK(rv == 0 || rv == WS_ERR_NOMEM);
    return 0;
  }
  if (t->mode & M_PAUSE_REQ) {
    t->paused = 1;
    t->req = 1;
    return WS_LOOP_PAUSE;
  }
  if (t->mode & M_PROTO) {
    ws_slice p;
    char proto[32];
    if (ws_request_protocol(req, 0, &p) && p.len < sizeof(proto)) {
      memcpy(proto, p.base, p.len);
      proto[p.len] = 0;
      ws_accept_params ap;
      memset(&ap, 0, sizeof(ap));
      ap.protocol = proto;
      int rv = ws_loop_accept(c, &ap);
      CHECK(rv == 0 || rv == WS_ERR_INVALID_ARGUMENT || rv == WS_ERR_NOMEM);
    }
  }
  return 0;
}

static int cb_http(ws_loop_conn *c, void *ud, const ws_loop_http_request *req) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  CHECK(req != NULL);
  CHECK(find(R, ws_loop_conn_id(c)) == NULL);
  tconn *t = track(R, c);
  t->http = 1;
  DBG(R, "  on_http %llx\n", (unsigned long long)t->id);
  if (t->mode & M_BIG) {
    static const ws_kv h[1] = {{"Content-Type", "text/plain"}};
    int rv = ws_loop_http_respond(c, 200, h, 1, "ok\n", 3);
    CHECK(rv == 0 || rv == WS_ERR_NOMEM);
    if (rv == 0)
      CHECK(ws_loop_http_respond(c, 200, NULL, 0, NULL, 0) ==
            WS_ERR_INVALID_STATE);
  }
  /* A connection that came here is never owed an on_close: it is
   * forgotten now (its pointer is not ours to keep). */
  t->c = NULL;
  return 0;
}

static int cb_open(ws_loop_conn *c, void *ud) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  tconn *t = track(R, c);
  CHECK(!t->http);
  /* once, or again after a pause */
  if (t->opened) CHECK(t->paused);
  /* without on_request, a server connection is first seen here */
  if (!t->lclient && !t->opened && !(R->cf & CF_REQUEST)) CHECK(!t->known);
  t->opened = 1;
  t->paused = 0;
  t->known = 1;
  t->req = 0;
  DBG(R, "  on_open %llx\n", (unsigned long long)t->id);
  if (t->mode & M_BIG) {
    memset(R->buf, 'g', 300);
    int rv = ws_loop_send(c, WS_OP_TEXT, R->buf, 300, 0);
    DBG(R, "  greeting: %d\n", rv);
    CHECK(rv <= 0);
  }
  if ((t->mode & M_PAUSE_MSG) && !(t->msgs & 0x80000000u)) {
    t->msgs |= 0x80000000u; /* once */
    t->paused = 1;
    return WS_LOOP_PAUSE;
  }
  return 0;
}

static int cb_message(ws_loop_conn *c, void *ud, const ws_event *ev) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  tconn *t = track(R, c);
  CHECK(t->known);
  CHECK(ev->type == WS_EV_TEXT || ev->type == WS_EV_BINARY);
  CHECK(ev->data.len == 0 || ev->data.base != NULL);
  CHECK(ev->data.len <= R->scfg.max_message);
  if (R->cf & CF_MESSAGE)
    CHECK(ev->flags == (WS_EVF_FIRST | WS_EVF_FRAME_END | WS_EVF_FINAL));
  uint32_t n = t->msgs & 0x7fffffffu;
  DBG(R, "  on_message %llx len %zu flags %x (#%u)\n",
      (unsigned long long)t->id, ev->data.len, ev->flags, n);
  if ((t->mode & M_PAUSE_MSG) && (n & 1) && !t->paused) {
    t->paused = 1;
    t->msgs++;
    return WS_LOOP_PAUSE;
  }
  t->msgs++;
  t->paused = 0;
  /* Past the budget the application only looks: no more answers, which
   * could feed each other for ever (two loop ends broadcasting). */
  if (R->ncb > CB_BUDGET) return 0;
  ws_opcode op = ev->type == WS_EV_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
  uint32_t sf = (ev->flags & WS_EVF_FINAL) ? 0 : WS_SEND_MORE;
  int copies = (t->mode & M_BIG) ? 3 : 1;
  if (t->mode & M_BCAST) {
    size_t nsent = 0;
    if (sf == 0)
      CHECK(ws_loop_broadcast(R->l, op, ev->data.base, ev->data.len, NULL,
                              &nsent) == 0);
  } else if (t->mode & M_POST) {
    int rv =
        ws_loop_post_send(R->l, t->id, op, ev->data.base, ev->data.len, sf);
    CHECK(post_ok(rv));
    if (rv == 0) R->alloc.nposts++;
  } else {
    for (int i = 0; i < copies; i++) {
      int rv = ws_loop_send(c, op, ev->data.base, ev->data.len,
                            i + 1 < copies ? WS_SEND_MORE : sf);
      if (rv == WS_ERR_WOULDBLOCK && i == 0) {
        t->paused = 1;
        t->msgs--; /* delivered again */
        return WS_LOOP_PAUSE;
      }
      if (rv != 0) break;
    }
  }
  if ((t->mode & M_CLOSE_MSG) && n == 1) {
    int rv = ws_loop_close(c, (uint16_t)(4000u + (t->id & 7u)), "done", 4);
    /* (WS_ERR_NOMEM: the budget refused the frame's room; nothing
     * changed) */
    CHECK(rv == 0 || rv == WS_ERR_INVALID_STATE || rv == WS_ERR_NOMEM);
  }
  return 0;
}

static int cb_control(ws_loop_conn *c, void *ud, const ws_event *ev) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  tconn *t = track(R, c);
  CHECK(t->known);
  CHECK(ev->type == WS_EV_PING || ev->type == WS_EV_PONG);
  CHECK(ev->data.len <= WS_CONTROL_MAX);
  DBG(R, "  on_control %llx %d\n", (unsigned long long)t->id, ev->type);
  if (ev->type == WS_EV_PONG && (t->mode & M_BIG)) {
    int rv = ws_loop_ping(c, "again", 5);
    CHECK(rv <= 0);
  }
  return 0;
}

static int cb_writable(ws_loop_conn *c, void *ud, int writable) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  tconn *t = find(R, ws_loop_conn_id(c));
#if KNOWN_WRITABLE_AFTER_CLOSE
  if (t && t->closes && writable == 0 && !R->strict) {
    DBG(R, "  on_writable %llx 0 after on_close (known)\n",
        (unsigned long long)t->id);
    R->known_bug++;
    return 0;
  }
#endif
  t = track(R, c);
  CHECK(t->known);
  CHECK(writable == 0 || writable == 1);
  DBG(R, "  on_writable %llx %d\n", (unsigned long long)t->id, writable);
  return 0;
}

static int cb_close(ws_loop_conn *c, void *ud, const ws_loop_close_info *in) {
  run *R = run_of(c);
  R->ncb++;
  (void)ud;
  tconn *t = find(R, ws_loop_conn_id(c));
#if KNOWN_CLOSE_UNANNOUNCED
  if (!t && !(R->cf & CF_REQUEST) && !R->strict) {
    DBG(R, "  on_close %llx never announced (known)\n",
        (unsigned long long)ws_loop_conn_id(c));
    R->known_bug++;
    return 0;
  }
#endif
  CHECK(t != NULL); /* on_close only for a connection owed one */
  CHECK(t->known);
  CHECK(!t->http);
  CHECK(t->closes == 0); /* exactly one */
  CHECK(t->c == c);
  t->closes++;
  DBG(R, "  on_close %llx code %u sent %u error %d\n",
      (unsigned long long)t->id, in->code, in->sent_code, in->error);
  CHECK(in->code == 1005 || in->code == 1006 || ws_close_code_valid(in->code));
  CHECK(in->reason.len <= WS_CONTROL_MAX - 2);
  CHECK(in->error <= 0);
  /* (a close handshake the loop started for a reason of its own keeps
   * it: the peer may answer the 1008 of a slow message) */
  if (in->code != 1006)
    CHECK(in->error == 0 || in->error == WS_LOOP_ERR_SLOW_MESSAGE ||
          in->error == WS_LOOP_ERR_STALLED);
  if ((R->cf & CF_NO_CLOSE) && in->code != 1006) {
    int rv = ws_loop_close(c, in->code == 1005 ? 0 : 1000, NULL, 0);
    CHECK(rv <= 0);
  }
  t->c = NULL;
  return 0;
}

/* ---- a transport -------------------------------------------------------- */

/* A transport of the target's own between the socket and the core, as
 * TLS is (ws_loop_transport): it reads into a buffer of its own and hands
 * the bytes out a few at a time (input held with nothing new on the
 * socket), takes output into a buffer and writes it out later
 * (pending(), write() with no vectors), queues a closing record at
 * shutdown, and fails once when the script says (OP_TPFAIL). */
typedef struct tp_ctx {
  run *R;
  const ws_drv_sys *sys;
  uint8_t in[700], out[600];
  size_t inpos, inlen, outlen;
  int failed;
} tp_ctx;

#define TP_ERR_READ (-451) /* the transport's own failure codes */
#define TP_ERR_WRITE (-452)

static int tp_attach(void *ud, int fd, ws_role role, const char *sn,
                     void **pctx) {
  run *R = ud;
  (void)fd;
  CHECK(role == WS_ROLE_SERVER ? sn == NULL : sn != NULL);
  if (R->tp_fail == 2) {
    R->tp_fail = 0;
    errno = ECONNRESET;
    return WS_LOOP_ERR_IO;
  }
  tp_ctx *t = calloc(1, sizeof(*t));
  CHECK(t != NULL);
  t->R = R;
  t->sys = sim_sys(R->s);
  *pctx = t;
  return 0;
}

static int tp_sys_err(void) {
  return errno == EAGAIN ? WS_ERR_WOULDBLOCK : WS_LOOP_ERR_IO;
}

static int tp_read(void *ctx, int fd, uint8_t *buf, size_t cap,
                   size_t *pnread) {
  tp_ctx *t = ctx;
  CHECK(cap > 0);
  if (t->R->tp_fail == 1) {
    t->R->tp_fail = 0;
    t->failed = 1;
    return TP_ERR_READ;
  }
  if (t->inpos == t->inlen) {
    ssize_t r = t->sys->recv(t->sys->self, fd, t->in, sizeof(t->in));
    if (r == 0) return WS_ERR_EOF;
    if (r < 0) return tp_sys_err();
    t->inpos = 0;
    t->inlen = (size_t)r;
  }
  size_t n = t->inlen - t->inpos;
  if (n > 97) n = 97; /* the rest is held */
  if (n > cap) n = cap;
  memcpy(buf, t->in + t->inpos, n);
  t->inpos += n;
  *pnread = n;
  return 0;
}

/* Writes out what it holds; 0, or a failure. */
static int tp_flush(tp_ctx *t, int fd) {
  while (t->outlen) {
    ws_iovec v = {t->out, t->outlen};
    ssize_t w = t->sys->sendv(t->sys->self, fd, &v, 1);
    if (w < 0) return errno == EAGAIN ? 0 : WS_LOOP_ERR_IO;
    memmove(t->out, t->out + w, t->outlen - (size_t)w);
    t->outlen -= (size_t)w;
  }
  return 0;
}

static int tp_write(void *ctx, int fd, const ws_iovec *iov, size_t iovcnt,
                    size_t *pnwritten) {
  tp_ctx *t = ctx;
  size_t took = 0, total = 0;
  *pnwritten = 0;
  if (t->R->tp_fail == 3) {
    t->R->tp_fail = 0;
    t->failed = 1;
    return TP_ERR_WRITE;
  }
  int rv = tp_flush(t, fd);
  if (rv) return rv;
  for (size_t i = 0; i < iovcnt; i++) {
    total += iov[i].len;
    size_t n = iov[i].len, room = sizeof(t->out) - t->outlen;
    if (n > room) n = room;
    memcpy(t->out + t->outlen, iov[i].base, n);
    t->outlen += n;
    took += n;
  }
  *pnwritten = took;
  rv = tp_flush(t, fd);
  if (rv) return rv;
  return took < total || (iovcnt == 0 && t->outlen) ? WS_ERR_WOULDBLOCK : 0;
}

static size_t tp_pending(void *ctx) { return ((tp_ctx *)ctx)->outlen; }

static int tp_shutdown(void *ctx, int fd) {
  tp_ctx *t = ctx;
  static const uint8_t rec[2] = {0x15, 0x03}; /* a "closing record" */
  (void)fd;
  if (sizeof(t->out) - t->outlen >= sizeof(rec)) {
    memcpy(t->out + t->outlen, rec, sizeof(rec));
    t->outlen += sizeof(rec);
  }
  return 0;
}

static void tp_detach(void *ctx) { free(ctx); }

static const char *tp_error(void *ctx) {
  return ((tp_ctx *)ctx)->failed ? "the script made it fail" : "";
}

static void tp_init(run *R) {
  ws_loop_transport *tp = &R->tp;
  memset(tp, 0, sizeof(*tp));
  tp->user_data = R;
  tp->attach = tp_attach;
  tp->read = tp_read;
  tp->write = tp_write;
  tp->pending = tp_pending;
  tp->shutdown = tp_shutdown;
  tp->detach = tp_detach;
  tp->error = tp_error;
}

/* ---- configuration ------------------------------------------------------- */

static int det_rand(uint8_t *buf, size_t len, void *ud) {
  uint32_t *st = ud;
  for (size_t i = 0; i < len; i++) {
    uint32_t x = *st;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *st = x;
    buf[i] = (uint8_t)(x >> 11);
  }
  return 0;
}

static void configure(run *R) {
  static const uint32_t max_msg[4] = {125, 1000, 4096, 16384};
  static const uint32_t max_outq[4] = {1024, 4096, 8192, 65536};
  static const uint32_t rsize[4] = {1024, 1500, 4096, 65536};
  static const uint32_t hw[4] = {256, 2048, 8192, 1u << 20};
  static const uint32_t lw[4] = {64, 512, 1024, 256u << 10};
  static const uint32_t hs_to[4] = {0, 50, 500, 10000};
  static const uint32_t ping[4] = {0, 100, 1000, 25000};
  static const uint32_t pong[4] = {0, 50, 0, 25000};
  static const uint32_t close_to[4] = {0, 30, 300, 5000};
  static const uint32_t write_to[4] = {0, 40, 400, 30000};
  static const uint32_t linger[4] = {0, 20, 200, 2000};
  static const uint32_t post_max[4] = {0, 64, 4096, 16u << 20};
  static const uint8_t wbits[4] = {8, 9, 12, 15};

  for (int role = 0; role < 2; role++) {
    ws_config *cfg = role ? &R->ccfg : &R->scfg;
    ws_config_default(cfg, role ? WS_ROLE_CLIENT : WS_ROLE_SERVER);
    cfg->delivery =
        (R->cf & CF_MESSAGE) ? WS_DELIVER_MESSAGE : WS_DELIVER_STREAM;
    cfg->max_message = max_msg[R->lim & 3];
    cfg->max_frame_payload = cfg->max_message;
    cfg->max_out_queue = max_outq[(R->lim >> 2) & 3];
    cfg->max_handshake_bytes = 1024;
    cfg->max_headers = 16;
    cfg->handshake_timeout_ms = hs_to[R->tim & 3];
    cfg->ping_interval_ms = ping[(R->tim >> 2) & 3];
    cfg->pong_timeout_ms = pong[(R->tim >> 2) & 3];
    cfg->close_timeout_ms = close_to[(R->tim >> 4) & 3];
    if (R->cf & CF_NO_CLOSE) cfg->flags |= WS_CFG_NO_AUTO_CLOSE;
    if (R->cf & CF_PMD) {
      cfg->pmd.enable = 1;
      cfg->pmd.level = (R->misc & 0x10) ? 1 : 6;
      cfg->pmd.server_max_window_bits = wbits[(R->misc >> 5) & 3];
      cfg->pmd.client_max_window_bits = cfg->pmd.server_max_window_bits;
      cfg->pmd.client_no_context_takeover = (R->misc & 0x10) != 0;
      /* all messages, or (cheaper: compressing is most of the time) only
       * the longer ones */
      cfg->pmd.min_size = (R->misc & 0x10) ? 0 : 100;
    }
  }
  R->ccfg.rand = det_rand;
  R->ccfg.rand_user_data = &R->rand_state;

  ws_loop_config *lc = &R->lcfg;
  ws_loop_config_default(lc);
  lc->callbacks.on_open = cb_open;
  lc->callbacks.on_message = cb_message;
  lc->callbacks.on_close = cb_close;
  if (R->cf & CF_REQUEST) lc->callbacks.on_request = cb_request;
  if (R->cf & CF_HTTP) lc->callbacks.on_http = cb_http;
  if (R->cf & CF_CBS) {
    lc->callbacks.on_control = cb_control;
    lc->callbacks.on_writable = cb_writable;
  }
  lc->user_data = R;
  lc->mem = NULL; /* set by the caller */
  lc->read_size = rsize[(R->lim >> 4) & 3];
  lc->high_water = hw[(R->lim >> 6) & 3];
  lc->low_water = lw[(R->lim >> 6) & 3];
  lc->write_timeout_ms = write_to[(R->tim >> 6) & 3];
  lc->linger_ms = linger[R->misc & 3];
  lc->max_post_bytes = post_max[(R->misc >> 2) & 3];
}

/* What one connection may hold, by the configured limits:
 *  - the driver's own: its ws_loop_conn and the tail of its block (the
 *    caps' state, 12 bytes at most), the conn_aux of a pause or of
 *    retained input, and retained input itself (never more than one
 *    read, read_size), plus the client's server name;
 *  - the core's (as fuzz/conn_driver.c): the message buffer and the
 *    output queue, each a doubling buffer and so up to twice its bound
 *    (the queue with a frame header of slack), the handshake buffer and
 *    header table, and 4 KiB for the fixed parts (the ws_conn, control
 *    frames, the HTTP answer); with permessage-deflate, an inflater and
 *    a compressor of the largest window configured, and the 16 KiB
 *    stream-mode chunk. */
static size_t conn_bound(const run *R) {
  const ws_config *cfg = &R->scfg;
  size_t n = sizeof(ws_loop_conn) + 12 + sizeof(conn_aux) + R->lcfg.read_size +
             64;
  n += 2 * (size_t)cfg->max_message + 2 * ((size_t)cfg->max_out_queue + 1024) +
       2 * (size_t)cfg->max_handshake_bytes +
       (size_t)cfg->max_headers * sizeof(ws_header) + 4096;
  if (cfg->pmd.enable) {
    unsigned b = cfg->pmd.server_max_window_bits;
    if (cfg->pmd.client_max_window_bits > b)
      b = cfg->pmd.client_max_window_bits;
    n += sizeof(ws_inflater) + ws_inflate_memsize(b) + sizeof(ws_deflater) +
         ws_deflate_memsize(b, cfg->pmd.level) + 16384;
  }
  return n;
}

/* ---- the loop's rounds --------------------------------------------------- */

/* Callbacks never return a negative value, and the poller never fails
 * (a scripted wake-up ends every wait without a limit). */
static void note_round(int rv) { CHECK(rv == 0 || rv == 1); }

/* One round that waits as long as the loop wants, at most |timeout_ms|
 * (or without limit: -1, a scripted wake-up is due). Returns run_once's
 * value.
 *
 * Checks for busy wakeups. A round is one when its wait came back with
 * nothing (the simulation's idle_waits grew: the loop asked not to wait
 * and nothing was ready), the clock did not move, and the round then did
 * nothing either: no callback, no bytes written, no accept. (A round
 * that works off the loop's own list of work, a paused event delivered
 * again say, waits for nothing and does something: that is not one.)
 * More than MAX_IDLE_RUN of them in a row, with no operation between,
 * is a spin. */
static int round_wait(run *R, int timeout_ms) {
  sim_stats a, b;
  sim_get_stats(R->s, &a);
  uint64_t t0 = sim_now(R->s), ncb = R->ncb;
  int rv = ws_loop_run_once(R->l, timeout_ms);
  note_round(rv);
  sim_get_stats(R->s, &b);
  int idle = b.idle_waits > a.idle_waits && sim_now(R->s) == t0;
  int did = R->ncb != ncb || b.accepts != a.accepts ||
            b.sends - b.eagain_sends != a.sends - a.eagain_sends;
  DBG(R, " round(%d): %llu -> %llu, idle %d, did %d\n", timeout_ms,
      (unsigned long long)t0, (unsigned long long)sim_now(R->s), idle, did);
  if (idle && !did) {
    R->idle_run++;
    if (R->idle_run > MAX_IDLE_RUN) {
      fprintf(stderr, "busy wakeups: %d idle rounds in a row at %llu\n",
              R->idle_run, (unsigned long long)t0);
      abort();
    }
  } else if (b.waits > a.waits) {
    R->idle_run = 0;
  }
  return rv;
}

/* A scripted wake-up; one left from an earlier round does nothing. */
static void guard_fire(sim *s, void *arg) {
  run *R = arg;
  if (R->guard_live && sim_now(s) >= R->guard_at) R->pl.wake(R->pl.self);
}

/* Time moves by |delta| ms (at least 1), in rounds of the loop that wait
 * for what they want, at most MAX_ROUNDS of them. With |unlimited|, each
 * round waits without a limit and a scripted action wakes the loop at
 * the end; else the rounds wait at most the time left. */
static void advance(run *R, uint64_t delta, int unlimited) {
  uint64_t end = sim_now(R->s) + (delta ? delta : 1);
  for (int i = 0; i < MAX_ROUNDS && sim_now(R->s) < end; i++) {
    int rv;
    if (unlimited) {
      R->guard_live = 1;
      R->guard_at = end;
      sim_at(R->s, end, guard_fire, R);
      rv = round_wait(R, -1);
      R->guard_live = 0;
    } else {
      uint64_t left = end - sim_now(R->s);
      rv = round_wait(R, left > 1000000 ? 1000000 : (int)left);
    }
    if (rv == 1) break;
  }
}

/* Rounds without waiting, as long as something happens (at most 8). */
static void settle(run *R) {
  for (int i = 0; i < 8; i++) {
    sim_stats a, b;
    sim_get_stats(R->s, &a);
    int rv = ws_loop_run_once(R->l, 0);
    note_round(rv);
    sim_get_stats(R->s, &b);
    if (rv == 1 ||
        (a.recvs == b.recvs && a.sends == b.sends && a.accepts == b.accepts))
      break;
  }
}

/* ---- the raw clients ----------------------------------------------------- */

static client *pick_client(run *R, uint8_t k) {
  int n = 0;
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (R->cl[i].fd >= 0) n++;
  if (!n) return NULL;
  int want = k % n;
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (R->cl[i].fd >= 0 && want-- == 0) return &R->cl[i];
  return NULL;
}

static void csend(run *R, client *c, const void *p, size_t n) {
  size_t w = sim_send(R->s, c->fd, p, n);
  DBG(R, "  client %d sends %zu of %zu\n", c->fd, w, n);
}

/* A frame from a client: masked with |key| unless |unmasked|. */
static void send_frame(run *R, client *c, uint8_t b0, const uint8_t *payload,
                       size_t n, const uint8_t key[4], int unmasked) {
  uint8_t *f = R->buf;
  size_t h = 0;
  if (n > MAX_PAYLOAD) n = MAX_PAYLOAD;
  f[h++] = b0;
  uint8_t mbit = unmasked ? 0 : 0x80;
  if (n < 126) {
    f[h++] = (uint8_t)(mbit | n);
  } else if (n < 65536) {
    f[h++] = (uint8_t)(mbit | 126);
    f[h++] = (uint8_t)(n >> 8);
    f[h++] = (uint8_t)n;
  } else {
    f[h++] = (uint8_t)(mbit | 127);
    for (int i = 7; i >= 0; i--)
      f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  if (!unmasked) {
    memcpy(f + h, key, 4);
    h += 4;
  }
  if (payload != f + h) memmove(f + h, payload, n);
  if (!unmasked)
    for (size_t i = 0; i < n; i++)
      f[h + i] ^= key[i & 3];
  csend(R, c, f, h + n);
}

static const char hs_head[] = "GET /chat?x=1 HTTP/1.1\r\n"
                              "Host: loop.test\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n";

static void op_handshake(run *R, client *c, uint8_t v) {
  char req[512];
  size_t n = 0;
  if ((v & 0x0c) == 0x04) { /* plain HTTP */
    n = (size_t)snprintf(req, sizeof(req),
                         "%s / HTTP/1.1\r\nHost: loop.test\r\n\r\n",
                         (v & 0x10) ? "HEAD" : "GET");
  } else if ((v & 0x0c) == 0x08) { /* an upgrade with a body: 400 */
    n = (size_t)snprintf(req, sizeof(req), "%sContent-Length: 3\r\n\r\nabc",
                         hs_head);
  } else {
    n = (size_t)snprintf(
        req, sizeof(req), "%s%s%s\r\n", hs_head,
        (v & 0x01) ? "Sec-WebSocket-Protocol: chat, superchat\r\n" : "",
        (v & 0x02) ? "Sec-WebSocket-Extensions: permessage-deflate; "
                     "client_max_window_bits\r\n"
                   : "");
  }
  if (v & 0x20) { /* the head in two writes: the first now, a round between */
    size_t half = n / 2;
    csend(R, c, req, half);
    settle(R);
    csend(R, c, req + half, n - half);
  } else {
    csend(R, c, req, n);
  }
}

/* ---- operations ---------------------------------------------------------- */

static void op_dial(run *R) {
  if (R->ndials >= MAX_DIALS) return;
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (R->cl[i].fd >= 0) continue;
    int fd = sim_dial(R->s, R->port);
    if (fd < 0) return; /* the listener is closed */
    R->cl[i].fd = fd;
    R->ndials++;
    DBG(R, "  dial: client %d\n", fd);
    return;
  }
}

static void op_frame(run *R, client *c) {
  static const uint8_t ops[8] = {0, 1, 2, 8, 9, 10, 3, 1};
  uint8_t h = u8(R);
  uint8_t ln = u8(R);
  uint8_t key[4] = {u8(R), u8(R), u8(R), u8(R)};
  size_t n;
  const uint8_t *p = take(R, ln, &n);
  memcpy(R->buf + 16, p, n);
  uint8_t b0 =
      (uint8_t)(ops[h & 7] | ((h & 0x08) ? 0 : 0x80) | ((h & 0x10) ? 0x40 : 0) |
                ((h & 0x60) == 0x60 ? 0x20 : 0));
  send_frame(R, c, b0, R->buf + 16, n, key, (h & 0xe0) == 0xe0);
}

static void op_bigframe(run *R, client *c) {
  uint8_t h = u8(R);
  size_t n = (size_t)u16(R) % MAX_PAYLOAD;
  uint8_t fill = u8(R);
  uint8_t key[4] = {0x12, 0x34, 0x56, (uint8_t)h};
  uint8_t op = (h & 1) ? 2 : 1;
  if (op == 1) fill = (uint8_t)('a' + fill % 26); /* valid UTF-8 */
  memset(R->buf + 16, fill, n);
  send_frame(R, c, (uint8_t)(0x80 | op), R->buf + 16, n, key, 0);
}

/* A compressed message (RSV1) in one frame: a raw DEFLATE stored block,
 * without the final 00 00 ff ff (RFC 7692 7.2.1). */
static void op_pmdframe(run *R, client *c) {
  uint8_t h = u8(R);
  uint8_t ln = u8(R);
  size_t n;
  const uint8_t *p = take(R, ln, &n);
  uint8_t *d = R->buf + 16;
  d[0] = 0x00;
  d[1] = (uint8_t)n;
  d[2] = (uint8_t)(n >> 8);
  d[3] = (uint8_t)~n;
  d[4] = (uint8_t)(~n >> 8);
  memcpy(d + 5, p, n);
  if (h & 1) /* text: keep it UTF-8 */
    for (size_t i = 0; i < n; i++)
      d[5 + i] &= 0x7f;
  uint8_t key[4] = {h, 1, 2, 3};
  send_frame(R, c, (uint8_t)(0xc0 | ((h & 1) ? 1 : 2)), d, n + 5, key, 0);
}

static void op_closeframe(run *R, client *c) {
  static const uint16_t codes[8] = {1000, 1001, 1002, 1005,
                                    1006, 3000, 4999, 999};
  uint8_t h = u8(R);
  uint8_t *d = R->buf + 16;
  size_t n = 0;
  if (h & 0x08) {
    uint16_t code = codes[h & 7];
    d[n++] = (uint8_t)(code >> 8);
    d[n++] = (uint8_t)code;
    size_t rl = (h >> 4) * 9u;
    memset(d + n, 'r', rl);
    n += rl;
  }
  uint8_t key[4] = {9, 8, 7, h};
  send_frame(R, c, 0x88, d, n, key, 0);
}

static void op_pingframe(run *R, client *c) {
  uint8_t h = u8(R);
  size_t n = h % 130u; /* over 125 is a protocol error */
  memset(R->buf + 16, 'p', n);
  uint8_t key[4] = {1, 2, 3, h};
  send_frame(R, c, (h & 0x80) ? 0x8a : 0x89, R->buf + 16, n, key, 0);
}

/* A message in 2..5 fragments, a ping between two of them maybe. */
static void op_fragments(run *R, client *c) {
  uint8_t h = u8(R);
  int k = 2 + (h & 3);
  for (int i = 0; i < k; i++) {
    size_t n = u8(R) % 64u;
    memset(R->buf + 16, 'f', n);
    uint8_t b0 = (uint8_t)(i == 0 ? ((h & 4) ? 2 : 1) : 0);
    if (i == k - 1) b0 |= 0x80;
    uint8_t key[4] = {(uint8_t)i, 5, 6, h};
    send_frame(R, c, b0, R->buf + 16, n, key, 0);
    if ((h & 8) && i == 0) send_frame(R, c, 0x89, R->buf, 0, key, 0);
  }
}

static void op_read(run *R, client *c, uint8_t amount) {
  uint8_t sink[4096];
  size_t want = amount ? (size_t)amount * 16u : SIZE_MAX, got = 0;
  while (got < want) {
    size_t cap = want - got < sizeof(sink) ? want - got : sizeof(sink);
    size_t n = sim_recv(R->s, c->fd, sink, cap);
    if (!n) break;
    got += n;
  }
  DBG(R, "  client %d reads %zu\n", c->fd, got);
}

/* The application, from outside the callbacks, on connection |t|. */
static void op_app(run *R, tconn *t) {
  uint8_t a = u8(R);
  uint8_t arg = u8(R);
  ws_loop_conn *c = t->c;
  int rv;
  DBG(R, "  app %llx action %u arg %u\n", (unsigned long long)t->id, a % 14u,
      arg);
  switch (a % 14u) {
  case 0:
    memset(R->buf, 't', arg);
    rv = ws_loop_send(c, WS_OP_TEXT, R->buf, arg, 0);
    CHECK(rv <= 0);
    break;
  case 1:
    memset(R->buf, 0xb5, (size_t)arg * 64u);
    rv = ws_loop_send(c, WS_OP_BINARY, R->buf, (size_t)arg * 64u, 0);
    CHECK(rv <= 0);
    break;
  case 2:
    rv = ws_loop_ping(c, "p", (size_t)(arg & 1));
    CHECK(rv <= 0);
    break;
  case 3: {
    static const uint16_t codes[4] = {1000, 1001, 1011, 4000};
    rv = ws_loop_close(c, (arg & 4) ? 0 : codes[arg & 3], "x", 1);
    CHECK(rv <= 0);
    break;
  }
  case 4: ws_loop_resume(c); break;
  case 5:
  case 6:
    if (t->req) {
      if (a % 14u == 5)
        rv = ws_loop_accept(c, NULL);
      else
        rv =
            ws_loop_reject(c, 400 + arg % 200, NULL, 0, "b", (size_t)(arg & 1));
      CHECK(rv <= 0);
      if (rv == 0) t->req = 0; /* else (out of memory) it comes again */
    }
    ws_loop_resume(c);
    break;
  case 7:
    memset(R->buf, 'q', arg);
    rv = ws_loop_post_send(R->l, t->id, WS_OP_TEXT, R->buf, arg,
                           (arg & 0x80) ? WS_SEND_MORE : 0);
    CHECK(post_ok(rv));
    if (rv == 0) R->alloc.nposts++;
    break;
  case 8:
    rv = ws_loop_post_close(R->l, t->id, (arg & 1) ? 1000 : 0,
                            (arg & 2) ? "bye" : NULL);
    /* a reason over the post budget waits (WS_ERR_WOULDBLOCK), a failed
     * allocation is WS_ERR_NOMEM */
    CHECK(rv == 0 || rv == WS_ERR_WOULDBLOCK || rv == WS_ERR_NOMEM);
    if (rv == 0) R->alloc.nposts++;
    break;
  case 9:
    memset(R->buf, 'B', arg);
    rv = ws_loop_post_send(R->l, 0, WS_OP_BINARY, R->buf, arg, 0);
    CHECK(post_ok(rv));
    if (rv == 0) R->alloc.nposts++;
    break;
  case 10: {
    size_t nsent = 0;
    memset(R->buf, 'b', arg);
    CHECK(ws_loop_broadcast(R->l, WS_OP_TEXT, R->buf, arg, c, &nsent) == 0);
    break;
  }
  case 11: /* a message in two sends */
    memset(R->buf, 'm', arg);
    rv = ws_loop_send(c, WS_OP_BINARY, R->buf, arg, WS_SEND_MORE);
    if (rv == 0) rv = ws_loop_send(c, WS_OP_BINARY, R->buf, arg / 2u, 0);
    CHECK(rv <= 0);
    break;
  case 12: {
    char peer[64];
    ws_loop_conn_peer(c, peer, sizeof(peer));
    CHECK(ws_loop_conn_loop(c) == R->l);
    CHECK(ws_loop_conn_ws(c) != NULL);
    (void)ws_loop_conn_pending(c);
    (void)ws_conn_state(ws_loop_conn_ws(c));
    break;
  }
  default: /* a post to a connection that is gone, or never was */
    rv = ws_loop_post_send(R->l, t->id + ((uint64_t)1 << 32), WS_OP_TEXT, "s",
                           1, 0);
    CHECK(post_ok(rv));
    if (rv == 0) R->alloc.nposts++;
    break;
  }
}

static void op_lconnect(run *R) {
  if (R->nlclients >= MAX_LCLIENTS) return;
  R->nlclients++;
  static const char *const protos[2] = {"chat", "superchat"};
  ws_loop_connect_params p;
  memset(&p, 0, sizeof(p));
  p.host = "127.0.0.1";
  p.port = R->nlclients == 3 ? (uint16_t)(R->port + 1) : R->port; /* refused */
  p.request.path = "/loop";
  p.request.protocols = protos;
  p.request.nprotocols = R->nlclients & 1 ? 2 : 0;
  p.config = &R->ccfg;
  if (R->misc & 0x80) p.transport = &R->tp;
  ws_loop_conn *c = NULL;
  int rv = ws_loop_connect(R->l, &p, &c);
  DBG(R, "  loop client: %d %llx\n", rv,
      (unsigned long long)ws_loop_conn_id(c));
  if (rv != 0) {
    CHECK(c == NULL);
    CHECK(rv == WS_LOOP_ERR_IO || rv == WS_ERR_NOMEM);
    return;
  }
  CHECK(c != NULL);
  tconn *t = track(R, c);
  t->known = 1;
  t->lclient = 1;
}

/* on_refused: once per connection the application never heard of, with
 * one of the documented statuses and a reason. */
static int cb_refused(ws_loop *l, void *ud, const ws_loop_refusal *r) {
  run *R = ud;
  CHECK(l == R->l);
  CHECK(r->size == sizeof(*r) && r->reason && r->reason[0] && r->peer);
  CHECK(r->status == 0 || r->status == 400 || r->status == 403 ||
        r->status == 405 || r->status == 426 || r->status == 431 ||
        r->status == 500 || r->status == 503);
  DBG(R, "  on_refused %d %s\n", r->status, r->reason);
  R->nrefused++;
  R->ncb++;
  return 0;
}

/* Closes the listeners (connections in their handshake, paused or not,
 * outlive them) and listens again with caps, an Origin allowlist and a
 * context cap from the next 4 bytes, which the following dials meet. */
static void op_relisten(run *R) {
  static const char *const origins[] = {"http://a.example", "*.b.example"};
  if (!has(R, 4)) return;
  uint8_t c0 = u8(R), c1 = u8(R), c2 = u8(R), c3 = u8(R);
  ws_loop_close_listeners(R->l);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = &R->scfg;
  lp.user_data = R;
  if (R->misc & 0x80) lp.transport = &R->tp;
  lp.max_conns = c0 & 7;
  lp.max_conns_per_ip = (c0 >> 3) & 7;
  lp.max_handshakes = c1 & 7;
  lp.max_pmd_context = (c1 >> 3) & 7;
  if (c2 & 1) {
    lp.origins = origins;
    lp.norigins = 2;
  }
  lp.origin_flags = (c2 >> 1) & (WS_ORIGIN_SAME_HOST | WS_ORIGIN_REQUIRE);
  (void)c3; /* kept for later caps */
  DBG(R, "  relisten: conns %u per-ip %u hs %u pmd %u origins %u/%u\n",
      lp.max_conns, lp.max_conns_per_ip, lp.max_handshakes,
      lp.max_pmd_context, (unsigned)lp.norigins, lp.origin_flags);
  int rv = ws_loop_listen(R->l, &lp, &R->port);
  CHECK(rv == 0 || rv == WS_ERR_NOMEM);
  if (rv != 0) R->port = 0;
}

static void noop_call(ws_loop *l, void *arg) {
  run *R = arg;
  CHECK(l == R->l);
}

static void one_op(run *R, uint8_t op) {
  client *c = NULL;
  R->idle_run = 0; /* an operation between rounds */
  switch (op % OP_COUNT) {
  case OP_DIAL: op_dial(R); break;
  case OP_HANDSHAKE:
    if (!has(R, 2)) return;
    c = pick_client(R, u8(R));
    if (c) op_handshake(R, c, u8(R));
    break;
  case OP_FRAME:
    if (!has(R, 7)) return;
    c = pick_client(R, u8(R));
    if (c) op_frame(R, c);
    break;
  case OP_RAW: {
    if (!has(R, 2)) return;
    c = pick_client(R, u8(R));
    size_t n;
    const uint8_t *p = take(R, u8(R), &n);
    if (c) csend(R, c, p, n);
    break;
  }
  case OP_READ:
    if (!has(R, 2)) return;
    c = pick_client(R, u8(R));
    if (c) op_read(R, c, u8(R));
    break;
  case OP_RCVBUF: {
    static const size_t sizes[4] = {0, 1, 100, 4096};
    if (!has(R, 2)) return;
    c = pick_client(R, u8(R));
    uint8_t k = u8(R);
    if (c) sim_set_rcvbuf(R->s, c->fd, (k & 4) ? (256u << 10) : sizes[k & 3]);
    break;
  }
  case OP_HALFCLOSE:
    if (!has(R, 1)) return;
    c = pick_client(R, u8(R));
    if (c) sim_sys(R->s)->shutdown_wr(R->s, c->fd);
    break;
  case OP_CLOSE:
  case OP_RESET:
    if (!has(R, 1)) return;
    c = pick_client(R, u8(R));
    if (!c) return;
    if (op % OP_COUNT == OP_CLOSE)
      sim_close(R->s, c->fd);
    else
      sim_reset(R->s, c->fd);
    DBG(R, "  client %d %s\n", c->fd,
        op % OP_COUNT == OP_CLOSE ? "closes" : "resets");
    c->fd = -1;
    break;
  case OP_PARTIAL: {
    static const size_t lim[4] = {0, 1, 7, 500};
    if (!has(R, 1)) return;
    uint8_t k = u8(R);
    sim_set_partial(R->s, lim[k & 3], lim[(k >> 2) & 3]);
    break;
  }
  case OP_ADVANCE:
  case OP_ADVANCE2:
  case OP_ADVANCE3:
    if (!has(R, 1)) return;
    advance(R, u8(R), 0);
    break;
  case OP_WAIT:
  case OP_WAIT2:
    if (!has(R, 1)) return;
    advance(R, (uint64_t)u8(R) * 7u, 1);
    break;
  case OP_ADVANCE_LONG:
    if (!has(R, 1)) return;
    advance(R, (uint64_t)u8(R) * 250u, (R->pos & 1) != 0);
    break;
  case OP_RUN0: note_round(ws_loop_run_once(R->l, 0)); break;
  case OP_SETTLE: settle(R); break;
  case OP_FAIL_ACCEPTS: {
    static const int errs[4] = {EMFILE, ECONNABORTED, ENFILE, EPERM};
    if (!has(R, 1)) return;
    uint8_t k = u8(R);
    sim_fail_accepts(R->s, 1 + (k & 3), errs[(k >> 2) & 3]);
    break;
  }
  case OP_APP:
  case OP_APP2:
  case OP_APP3:
  case OP_APP4: {
    if (!has(R, 3)) return;
    tconn *t = pick_conn(R, u8(R));
    if (t)
      op_app(R, t);
    else
      R->pos += 2;
    break;
  }
  case OP_SHUTDOWN: {
    if (!has(R, 2)) return;
    uint8_t a = u8(R), b = u8(R);
    if (a == 0xff && b == 0xff) { /* rarely: a plain stop */
      DBG(R, "  stop\n");
      ws_loop_stop(R->l);
      break;
    }
    if (a == 0xff && b == 0xfe) { /* rarely: a new listener with caps */
      op_relisten(R);
      break;
    }
    DBG(R, "  shutdown\n");
    ws_loop_shutdown(R->l, (uint16_t)((a & 1) ? 1012 : 0),
                     (uint32_t)(a >> 1) * 10u, (uint32_t)b * 20u);
    break;
  }
  case OP_LCONNECT: op_lconnect(R); break;
  case OP_BIGFRAME:
    if (!has(R, 5)) return;
    c = pick_client(R, u8(R));
    if (c)
      op_bigframe(R, c);
    else
      R->pos += 4;
    break;
  case OP_PMDFRAME:
    if (!has(R, 3)) return;
    c = pick_client(R, u8(R));
    if (c) op_pmdframe(R, c);
    break;
  case OP_CLOSEFRAME:
    if (!has(R, 2)) return;
    c = pick_client(R, u8(R));
    if (c) op_closeframe(R, c);
    break;
  case OP_PINGFRAME:
    if (!has(R, 2)) return;
    c = pick_client(R, u8(R));
    if (c) op_pingframe(R, c);
    break;
  case OP_FRAGMENTS:
    if (!has(R, 7)) return;
    c = pick_client(R, u8(R));
    if (c) op_fragments(R, c);
    break;
  case OP_MODE: {
    if (!has(R, 2)) return;
    tconn *t = pick_conn(R, u8(R));
    uint8_t m = u8(R);
    if (t) t->mode = m;
    break;
  }
  case OP_FAILMALLOC:
    if (!has(R, 1)) return;
    R->alloc.fail_in = 1 + (size_t)u8(R) % 64u;
#if KNOWN_SEND_FREES_DATA
    if ((R->cf & CF_PMD) && !R->strict) R->alloc.fail_in = 0;
#endif
    break;
  case OP_TPFAIL:
    if (!has(R, 1)) return;
    R->tp_fail = u8(R) % 4;
    break;
  case OP_URL: {
    if (!has(R, 1)) return;
    size_t n;
    const uint8_t *p = take(R, u8(R) % 80u, &n);
    char url[96];
    memcpy(url, p, n);
    url[n] = 0;
    ws_loop_url u;
    if (ws_loop_parse_url(url, &u) == 0) {
      CHECK(u.host[0] && strlen(u.host) < sizeof(u.host));
      CHECK(u.port != 0 && u.path != NULL);
      CHECK(u.path[0] == '/' || u.path[0] == '?');
      CHECK(u.secure == (strncmp(url, "wss://", 6) == 0));
    }
    break;
  }
  case OP_POSTCALL:
    if (ws_loop_post_call(R->l, noop_call, R) == 0) R->alloc.nposts++;
    break;
  default: break;
  }
}

/* The end, when byte 0 asks for it: every raw client hangs up, the
 * application resumes what it paused and closes its own clients, and
 * time runs on (partial I/O off). Then no connection may be left,
 * unless the loop stopped (shutdown) first: with its peer gone, every
 * connection ends by itself, through EOF, a failed write or a timer. */
static void wind_down(run *R) {
  sim_set_partial(R->s, 0, 0);
  R->alloc.fail_in = 0;
  R->tp_fail = 0;
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (R->cl[i].fd < 0) continue;
    sim_close(R->s, R->cl[i].fd);
    R->cl[i].fd = -1;
  }
  int rv = 0;
  for (int i = 0; i < 16 && rv == 0 && ws_loop_conn_count(R->l); i++) {
    /* (again each time: a client may have opened since) */
    for (size_t k = 0; k < R->ntc; k++) {
      tconn *t = &R->tc[k];
      if (!t->c) continue;
      t->mode = 0;
      if (t->req && ws_loop_accept(t->c, NULL) == 0) t->req = 0;
      if (t->lclient) (void)ws_loop_close(t->c, 1000, NULL, 0);
      ws_loop_resume(t->c);
    }
    R->idle_run = 0;
    uint64_t end = sim_now(R->s) + 10000;
    for (int k = 0; k < MAX_ROUNDS && rv == 0 && sim_now(R->s) < end; k++)
      rv = round_wait(R, (int)(end - sim_now(R->s)));
  }
  if (rv == 0 && ws_loop_conn_count(R->l)) {
    fprintf(stderr, "%zu connections outlived their peers\n",
            ws_loop_conn_count(R->l));
    abort();
  }
}

/* ---- a run --------------------------------------------------------------- */

static void set_bounds(run *R) {
  fl_alloc *a = &R->alloc;
  /* The loop itself: its struct, the shared read buffer, the listener,
   * and the connection table and deadline heap (16 + 8 bytes a slot,
   * 64 slots, doubled while needed: at most 2 x the connections that
   * can exist at once). */
  size_t most = MAX_DIALS + 2 * MAX_LCLIENTS, slots = 64;
  while (slots < most)
    slots *= 2;
  a->base = sizeof(struct ws_loop) + R->lcfg.read_size + sizeof(listener) +
            slots * (sizeof(ws_loop_conn *) + 2 * sizeof(uint32_t) +
                     sizeof(ws_loop_conn *));
  a->per_conn = conn_bound(R);
  a->post_max = R->lcfg.max_post_bytes;
  a->ploop = &R->l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  run *R = calloc(1, sizeof(run));
  CHECK(R != NULL);
  R->in = data;
  R->len = size;
  R->debug = getenv("WS_FUZZ_DEBUG") != NULL;
  R->strict = getenv("WS_FUZZ_STRICT") != NULL;
  R->cf = u8(R);
  R->lim = u8(R);
  R->tim = u8(R);
  R->misc = u8(R);
  R->mode0 = u8(R);
  R->rand_state = 0x2545F491u ^ (uint32_t)R->lim << 8 ^ R->tim;
  for (int i = 0; i < MAX_CLIENTS; i++)
    R->cl[i].fd = -1;
  configure(R);
  set_bounds(R);

  R->s = sim_new(T0, 0x9e3779b97f4a7c15ull ^ R->misc);
  sim_set_block_limit(R->s, 1); /* a wait nobody wakes is a target bug */
  if (R->cf & CF_PARTIAL) sim_set_partial(R->s, 3, 5);
  ws_mem mem = {&R->alloc, f_malloc, f_realloc, f_free};
  R->lcfg.mem = &mem;
  R->pl = sim_poller(R->s);
  CHECK(ws_drv_new(&R->l, &R->lcfg, &R->pl, sim_sys(R->s)) == 0);
  ws_loop_listen_params lp;
  memset(&lp, 0, sizeof(lp));
  lp.config = &R->scfg;
  lp.user_data = R;
  if (R->misc & 0x80) {
    tp_init(R);
    lp.transport = &R->tp;
  }
  CHECK(ws_loop_listen(R->l, &lp, &R->port) == 0);
  ws_loop_set_on_refused(R->l, cb_refused, R);
  if (R->cf & CF_LCLIENT) op_lconnect(R);

  for (int n = 0; n < MAX_OPS && R->pos < R->len; n++) {
    uint8_t op = u8(R);
    DBG(R, "op %u at %llu\n", op % OP_COUNT, (unsigned long long)sim_now(R->s));
    one_op(R, op);
  }
  if (R->cf & CF_PARTIAL) wind_down(R);

  ws_loop_del(R->l);
  R->l = NULL;
  /* every connection owed an on_close got exactly one */
  for (size_t i = 0; i < R->ntc; i++) {
    const tconn *t = &R->tc[i];
    if (t->known) CHECK(t->closes == 1);
    CHECK(t->c == NULL);
  }
  if (R->debug)
    fprintf(stderr, "peak memory %zu (bound %zu per connection, base %zu)\n",
            R->alloc.peak, R->alloc.per_conn, R->alloc.base);
  CHECK(R->alloc.live == 0); /* nothing leaked */
  /* the loop closed every descriptor it opened */
  sim_stats st;
  sim_get_stats(R->s, &st);
  uint64_t ours = 0;
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (R->cl[i].fd >= 0) ours++;
  if (st.open_fds != ours)
    fprintf(stderr, "open descriptors: %llu, the clients' own %llu\n",
            (unsigned long long)st.open_fds, (unsigned long long)ours);
  CHECK(st.open_fds == ours);
  sim_del(R->s);
  free(R);
  return 0;
}
