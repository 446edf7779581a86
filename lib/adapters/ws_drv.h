/*
 * The loop driver's own declarations, shared by its files. Not installed.
 * SPDX-License-Identifier: MIT
 *
 * Where things are:
 *   ws_drv_loop.c      the loop: creation, the round, waiting, the clock
 *   ws_drv_timer.c     the deadline heap and the connections' timers
 *   ws_drv_conn.c      a connection: events to callbacks, reading,
 *                      writing, backpressure, pauses
 *   ws_drv_api.c       what the application calls on a connection
 *   ws_drv_listen.c    listening sockets and accept
 *   ws_drv_connect.c   client connections: resolve, connect, URLs
 *   ws_drv_post.c      work queued from other threads
 *   ws_drv_shutdown.c  ws_loop_stop() and the graceful shutdown
 *   ws_drv_activate.c  ws_loop_listen_fd(): sockets from systemd or an
 *                      old process
 *   ws_drv_sys.c       the system calls, and the plain TCP transport
 *
 * Life of a connection: created at accept() or ws_loop_connect(), it is
 * driven by readiness (conn_ready), timers (the heap of deadlines) and
 * the "again" list (work to do without waiting: resumed pauses, input
 * kept back, a read budget used up). Any code may call conn_destroy();
 * the memory is only freed at the end of the round (the graveyard), so a
 * pointer taken earlier in the round never dangles.
 *
 * Time: l->now is read from the clock after every wait and before
 * anything that starts or checks a deadline (drv_clock()).
 */
#ifndef WS_DRV_H
#define WS_DRV_H

#include "ws_driver.h"

#include <pthread.h>
#include <stdatomic.h>

#define NO_DEADLINE UINT64_MAX
#define READ_BUDGET 4    /* reads per connection per round */
#define ACCEPT_BUDGET 64 /* accepts per listener per round */
#define LISTEN_PAUSE_MS 100
#define MAX_READY 256 /* descriptors handled per wait */

enum { H_LISTENER = 1, H_CONN = 2 };

enum cstate {
  C_CONNECTING = 1, /* client: TCP connect in progress */
  C_WS,             /* the core drives it (handshake included) */
  C_LINGER,         /* our side is shut down; waiting for the peer's FIN */
  C_DEAD
};

/* connection flags */
#define F_KNOWN 0x1u       /* owed an on_close */
#define F_CLOSED_CB 0x2u   /* on_close was called */
#define F_PAUSED 0x4u      /* an event is kept (WS_LOOP_PAUSE) */
#define F_PAUSED_AUTO 0x8u /* ... resume when output drains */
#define F_CONGESTED 0x10u  /* over high_water: not reading */
#define F_DIRTY 0x20u      /* on the dirty list */
#define F_AGAIN 0x40u      /* on the again list */
#define F_HUP 0x80u        /* error/hang-up seen while not reading */
#define F_REG 0x100u       /* registered with the poller */
#define F_SHUT 0x200u      /* transport shutdown() called */
#define F_SD_CLOSE 0x400u  /* graceful shutdown: close at drv_at */
#define F_GRAVE 0x1000u    /* on the graveyard list */
#define F_RESUME 0x2000u   /* ws_loop_resume() was called */

typedef struct handle {
  uint8_t kind;
} handle;

typedef struct listener {
  handle h;
  struct listener *next;
  int fd;
  uint8_t watching;
  ws_config cfg;
  void *user_data;
  const ws_loop_transport *tp;
  uint8_t handed; /* ws_loop_listen_fd(): does not hold a drain open */
} listener;

enum { P_SEND = 1, P_CLOSE, P_CALL };

typedef struct post {
  struct post *next;
  uint8_t kind;
  uint8_t opcode;
  uint16_t code;
  uint32_t flags;
  uint64_t id;
  void (*fn)(ws_loop *, void *);
  void *arg;
  size_t len;
  uint8_t data[];
} post;

/* Per-connection state that only exists while needed. */
typedef struct conn_aux {
  uint8_t *rbuf; /* retained input: [rpos, rlen) not fed yet */
  size_t rpos, rlen, rcap;
  ws_event ev; /* the kept event while paused */
  struct addrinfo *ai_all, *ai_next; /* client: addresses left to try */
  char *server_name;
  post *def_head, *def_tail; /* posted sends waiting for queue room */
} conn_aux;

struct ws_loop_conn {
  handle h;
  uint8_t state;
  uint8_t role;
  uint16_t http_status;
  uint32_t flags;
  int fd;
  int io_err; /* the transport's failure: WS_LOOP_ERR_IO (sys_errno
                 says which) or a code of its own */
  int sys_errno;
  int end_err;     /* the reason to report if the core has none */
  unsigned events; /* interest registered with the poller */
  uint32_t slot;
  uint32_t heap_idx; /* UINT32_MAX: not in the heap */
  uint64_t id;
  uint64_t deadline;    /* heap key */
  uint64_t drv_at;      /* linger end, or the shutdown close time */
  uint64_t stall_since; /* pending output without progress since */
  ws_loop *loop;
  ws_conn *ws;
  void *user_data;
  const ws_loop_transport *tp;
  void *tctx;
  conn_aux *aux;
  listener *lst;
  ws_loop_conn *next_dirty, *next_again, *next_grave, *next_due;
};

struct ws_loop {
  ws_loop_config cfg;
  ws_mem mem;
  ws_drv_poller poller;
  ws_drv_sys sys;
  ws_loop_transport plain; /* TCP through |sys| */
  uint8_t *rbuf;
  uint64_t now;
  listener *listeners;
  size_t nconns;
  /* slot table: id -> connection */
  ws_loop_conn **slots;
  uint32_t *gens;
  uint32_t nslots, slotcap;
  uint32_t *free_slots;
  uint32_t nfree;
  /* deadline heap */
  ws_loop_conn **heap;
  uint32_t heaplen, heapcap;
  ws_loop_conn *dirty, *again, *grave;
  ws_drv_event ready[MAX_READY];
  int stop_rv;
  uint8_t stopped;
  uint8_t draining;
  uint8_t listen_paused;
  uint8_t in_round;
  uint16_t sd_code;
  uint64_t drain_deadline;
  uint64_t listen_resume_at;
  /* any thread */
  pthread_mutex_t mu;
  post *post_head, *post_tail;
  atomic_size_t post_bytes;
  atomic_int posted;
  atomic_int stop_req;
  atomic_int shutdown_req;
  atomic_uint sd_req_code;
  atomic_uint sd_req_spread;
  atomic_uint sd_req_drain;
  /* ws_loop_stats_get(): the connections freed so far (open ones are
   * added at query time) */
  ws_loop_stats freed;
};

/* ---- ws_drv_loop.c ------------------------------------------------------- */

void *drv_malloc(ws_loop *l, size_t n);
void *drv_realloc(ws_loop *l, void *p, size_t n);
void drv_free(ws_loop *l, void *p);
/* Reads the clock into l->now (never backwards) and returns it. */
uint64_t drv_clock(ws_loop *l);
/* Keeps a callback's negative return: the loop stops with it. */
void drv_note_rv(ws_loop *l, int rv);
/* Frees the graveyard, except connections still on a list of this round. */
void drv_free_grave(ws_loop *l);

/* ---- ws_drv_timer.c ------------------------------------------------------ */

void heap_remove(ws_loop *l, ws_loop_conn *c);
/* Sets |c|'s deadline; -1 only when the heap cannot grow. */
int heap_update(ws_loop *l, ws_loop_conn *c, uint64_t d);
/* The earliest deadline of any connection, or NO_DEADLINE. */
uint64_t heap_first(const ws_loop *l);
/* Handles every connection whose deadline is due at l->now. */
void drv_run_timers(ws_loop *l);

/* ---- ws_drv_conn.c ------------------------------------------------------- */

ws_loop_conn *conn_new(ws_loop *l, int fd, ws_role role, const ws_config *cfg,
                       const ws_loop_transport *tp, void *ud);
/* Ends a connection (on_close if owed, with |err| unless the core or the
 * transport said why already). */
void conn_destroy(ws_loop_conn *c, int err);
/* Frees a destroyed connection (from drv_free_grave()). */
void conn_free_memory(ws_loop_conn *c);
conn_aux *conn_aux_get(ws_loop_conn *c);
void conn_mark_dirty(ws_loop_conn *c);
void conn_mark_again(ws_loop_conn *c);
ws_loop_conn *conn_by_id(ws_loop *l, uint64_t id);
size_t conn_pending(const ws_loop_conn *c);
/* Core timers, unless an event is kept. */
void conn_tick(ws_loop_conn *c);
/* Pulls and dispatches core events; 1 if one was kept (paused). */
int conn_pull_events(ws_loop_conn *c);
/* After anything happened: write, backpressure, finish, interest,
 * deadline. */
void conn_after(ws_loop_conn *c);
/* Readiness of a connection's descriptor. */
void conn_ready(ws_loop_conn *c, unsigned events);
/* A connection from the again list. */
void conn_again(ws_loop_conn *c);
/* The deadline the heap should hold for |c|. */
uint64_t conn_deadline(const ws_loop_conn *c);
/* Sends the graceful-shutdown close (l->sd_code) if |c| is open. */
void conn_shutdown_close(ws_loop_conn *c);
void post_free(ws_loop *l, post *p);

/* ---- ws_drv_listen.c ----------------------------------------------------- */

void drv_accept_round(ws_loop *l, listener *s);
void drv_listeners_watch(ws_loop *l, int on);
void drv_close_listeners(ws_loop *l);

/* ---- ws_drv_connect.c ---------------------------------------------------- */

/* The TCP connect of |c| finished (writable or failed). */
void connect_done(ws_loop_conn *c);

/* ---- ws_drv_post.c ------------------------------------------------------- */

void drv_run_posts(ws_loop *l);
void drv_free_posts(ws_loop *l);

/* ---- ws_drv_shutdown.c --------------------------------------------------- */

/* Applies a stop or shutdown asked for from any thread. */
void drv_take_requests(ws_loop *l);
/* Ends the drain when everything closed or its time is up. */
void drv_check_drain(ws_loop *l);

/* ---- ws_drv_sys.c -------------------------------------------------------- */

/* The plain TCP transport over |sys| (its user_data). */
void drv_plain_transport(ws_loop_transport *tp, const ws_drv_sys *sys);

#endif /* WS_DRV_H */
