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
 *   ws_drv_reconnect.c clients that come back: backoff, the next attempt
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
#include <stddef.h>
#include <stdatomic.h>
#include <string.h>

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
#define F_OPEN 0x800u      /* the WebSocket opened (WS_EV_OPEN) */
#define F_SD_CLOSE 0x400u  /* graceful shutdown: close at drv_at */
#define F_GRAVE 0x1000u    /* on the graveyard list */
#define F_RESUME 0x2000u   /* ws_loop_resume() was called */
/* budgets and caps (ws_drv_budget.c) */
#define F_REFUSE 0x4000u  /* over a listener cap: its request gets 503 */
#define F_COUNTED 0x8000u /* counted in its listener's nconns */
#define F_HS 0x10000u     /* counted in its listener's handshakes */
#define F_PMDCTX 0x20000u /* holds one of max_pmd_context */
#define F_BUDGET 0x40000u /* its input was refused by memory_budget */
#define F_BCLOSE 0x80000u /* ... and its 1013 close was written */
/* refusals (ws_loop_set_on_refused) */
#define F_TOLD 0x100000u     /* on_refused was called, or the application
                                heard of it (on_request, on_http): no
                                on_refused for it */
#define F_CAP_CONNS 0x200000u /* F_REFUSE: over max_conns */
#define F_CAP_IP 0x400000u    /* ... over max_conns_per_ip */
#define F_CAP_HS 0x800000u    /* ... over max_handshakes */
#define F_SLOT 0x1000000u     /* holds its slot (id) in the table */
#define F_SHARED 0x2000000u   /* its core is its listener's ws_conn_shared's */
#define F_TP 0x4000000u       /* a transport of its own (aux->tp), not TCP */
/* the block's tail (fixed at conn_new(): conn_block_size() reads them) */
#define F_TAIL_IP 0x8000000u  /* ... holds the peer's hash (max_conns_per_ip) */
#define F_TAIL_HS 0x10000000u /* ... holds the handshake's start
                                 (max_handshakes) */
#define F_FAILED 0x20000000u /* the transport failed: io_fail says how */

typedef struct handle {
  uint8_t kind;
} handle;

/* A listening socket, or the loop's |unlisted| (no socket, no caps):
 * every connection names one (ws_loop_conn.lst), which names the loop. */
typedef struct listener {
  handle h;
  struct listener *next;
  ws_loop *loop;
  int fd;
  uint8_t watching;
  ws_config cfg;
  /* The configuration its connections share, created at the first
   * accept: [1] with both no_context_takeover (max_pmd_context). Each
   * connection holds a reference: they outlive the listener. */
  ws_conn_shared *shared[2];
  void *user_data;
  const ws_loop_transport *tp;
  /* caps (ws_loop_listen_params, Since 0.2) and their counts */
  uint32_t max_conns, max_per_ip, max_hs, max_pmd;
  uint32_t nconns, nhs, npmd;
  uint64_t displace_at; /* no handshake to displace before then */
  const char *const *origins;
  size_t norigins;
  uint32_t origin_flags;
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

/* Per-connection state that only exists while needed: allocated on
 * need (conn_aux_get()), freed by conn_aux_trim() once all of it is idle
 * again (an idle open connection has none). */
typedef struct conn_aux {
  uint8_t *rbuf; /* retained input: [rpos, rlen) not fed yet */
  size_t rpos, rlen, rcap;
  ws_event ev; /* the kept event while paused */
  struct addrinfo *ai_all, *ai_next; /* client: addresses left to try */
  char *server_name;                 /* ... and its host, until attached */
  post *def_head, *def_tail; /* posted sends waiting for queue room */
  /* The reason to report if the core has none (one of the loop's or the
   * core's codes: WS_ERR_REJECTED, WS_LOOP_ERR_STALLED,
   * WS_LOOP_ERR_SLOW_MESSAGE), and ws_loop_reject()'s status; kept to the
   * end (conn_aux_trim()). Set only where the aux is there already, or
   * allocated first (ws_loop_reject() fails without it). */
  int16_t end_err;
  uint16_t http_status;
  /* timers of a busy connection (0: not running) */
  uint64_t drv_at;      /* linger end, or the shutdown close time */
  uint64_t stall_since; /* pending output without progress since */
  uint64_t msg_since;   /* a message is being received since */
  uint64_t drain_since; /* min_drain_rate: the window started then */
  uint64_t drained;     /* ... and this many bytes were written since */
  /* F_TP: the connection's own transport and its context, kept for the
   * connection's life (plain TCP needs neither: the loop's) */
  const ws_loop_transport *tp;
  void *tctx;
} conn_aux;

/* A timer of conn_aux, 0 when |c| has no aux. */
#define AUX_T(c, f) ((c)->aux ? (c)->aux->f : 0)

/* A connection: this struct and its core connection (ws_conn_init(), or
 * ws_conn_init_shared() with its listener's ws_conn_shared: F_SHARED, a
 * smaller core) in one block of conn_block_size() bytes, the core's at
 * CONN_WS_OFF: one allocation, no pointer between them. Kept small: every
 * open connection holds one for its whole life (64 bytes on LP64). What
 * only the caps of some listeners need is in the block's tail, after the
 * core, and only in their connections' blocks (F_TAIL_IP, F_TAIL_HS:
 * conn_peer_hash(), conn_hs_ms()). */
struct ws_loop_conn {
  handle h;
  uint8_t state;
  uint8_t role;
  uint8_t events; /* interest registered with the poller (WS_DRV_*) */
  uint32_t flags;
  int fd;
  uint32_t heap_idx; /* UINT32_MAX: not in the heap */
  /* The heap key while alive; once the transport failed (F_FAILED, out
   * of the heap for good: conn_set_io_err()) how it failed, until the
   * connection ends in the same call; once dead (C_DEAD) the link of the
   * graveyard. */
  union {
    uint64_t deadline;
    /* > 0 WS_LOOP_ERR_IO with this errno (errno values are positive),
     * < 0 the code itself (a transport's own, or WS_LOOP_ERR_IO without
     * an errno). conn_io_err() and conn_sys_errno() read it. */
    int io_fail;
    ws_loop_conn *next_grave;
  };
  uint64_t id; /* the slot + 1 in the low 32 bits (F_SLOT) */
  conn_aux *aux; /* with F_TP, its transport too */
  void *user_data;
  /* Its listener; the loop's |unlisted| for a client, or once its
   * listener was closed (drv_close_listeners()). Never NULL: the loop is
   * its loop (conn_loop()). */
  listener *lst;
  /* The dirty and again lists: the next connection's slot + 1 (the low
   * 32 bits of its id), 0 at the end. A connection on a list keeps its
   * slot until it is freed, dead or not (slot_hold()). */
  uint32_t next_dirty, next_again;
};
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(ws_loop_conn) <= 64, "ws_loop_conn grew (issue 11)");
#endif

/* The loop of connection |c|. */
static inline ws_loop *conn_loop(const ws_loop_conn *c) { return c->lst->loop; }

/* The transport's failure code (0: none) and its errno (0: none). */
static inline int conn_io_err(const ws_loop_conn *c) {
  if (!(c->flags & F_FAILED)) return 0;
  return c->io_fail > 0 ? WS_LOOP_ERR_IO : c->io_fail;
}
static inline int conn_sys_errno(const ws_loop_conn *c) {
  return (c->flags & F_FAILED) && c->io_fail > 0 ? c->io_fail : 0;
}
/* Notes failure |err| (< 0), with |e| the errno of a WS_LOOP_ERR_IO; the
 * first one is kept. Takes |c| out of the heap for good: the connection
 * ends before the loop could wake it up (ws_drv_conn.c). */
void conn_set_io_err(ws_loop_conn *c, int err, int e);

/* The reason to report if the core has none (0: none), and the status
 * of ws_loop_reject() (0: none): see conn_aux. */
static inline int conn_end_err(const ws_loop_conn *c) {
  return c->aux ? c->aux->end_err : 0;
}
static inline int conn_http_status(const ws_loop_conn *c) {
  return c->aux ? c->aux->http_status : 0;
}

/* Where the core's connection lives in a connection's block: aligned as
 * the blocks of the core's own arena, where ws_conn_new() places one
 * too (WS_ARENA_ALIGN; ws_conn_init() checks the alignment it needs). */
#define CONN_WS_OFF                                                            \
  ((sizeof(ws_loop_conn) + WS_ARENA_ALIGN - 1) & ~(size_t)(WS_ARENA_ALIGN - 1))
#define CONN_WS(c) ((ws_conn *)(void *)((char *)(c) + CONN_WS_OFF))

/* Where the tail of a block with |flags| starts: right after the core
 * (not aligned: read and written with memcpy). First the peer's hash
 * (F_TAIL_IP, 8 bytes), then the handshake's start (F_TAIL_HS, 4). */
static inline size_t conn_tail_off(uint32_t flags) {
  return CONN_WS_OFF +
         ((flags & F_SHARED) ? ws_conn_sizeof_shared() : ws_conn_sizeof());
}
/* FNV-1a of the peer's address without its port (budget_admit()), 0
 * without F_TAIL_IP. */
static inline uint64_t conn_peer_hash(const ws_loop_conn *c) {
  uint64_t h = 0;
  if (c->flags & F_TAIL_IP)
    memcpy(&h, (const char *)c + conn_tail_off(c->flags), sizeof(h));
  return h;
}
static inline void conn_set_peer_hash(ws_loop_conn *c, uint64_t h) {
  if (c->flags & F_TAIL_IP)
    memcpy((char *)c + conn_tail_off(c->flags), &h, sizeof(h));
}
/* F_HS: the clock's low 32 bits at accept; 0 without F_TAIL_HS. */
static inline uint32_t conn_hs_ms(const ws_loop_conn *c) {
  uint32_t t = 0;
  size_t off = conn_tail_off(c->flags) + ((c->flags & F_TAIL_IP) ? 8 : 0);
  if (c->flags & F_TAIL_HS) memcpy(&t, (const char *)c + off, sizeof(t));
  return t;
}
static inline void conn_set_hs_ms(ws_loop_conn *c, uint32_t t) {
  size_t off = conn_tail_off(c->flags) + ((c->flags & F_TAIL_IP) ? 8 : 0);
  if (c->flags & F_TAIL_HS) memcpy((char *)c + off, &t, sizeof(t));
}

/* The slot table (id -> connection) and the deadline heap are arrays of
 * pages of PAGE_ENTRIES entries: they grow a page at a time (at most one
 * page partly used, no copy of the whole table), and a slot's entry is
 * either its connection (the pointer, a multiple of WS_ARENA_ALIGN:
 * ws_conn_init() accepts no other block at CONN_WS_OFF), or the pointer
 * | 2 for a dead connection that holds the slot while it is still on the
 * dirty or again list (those link slots), or, when free, its generation
 * and the next free slot: (gen << 32 | next + 1 << 1 | 1). */
#define PAGE_ENTRIES 512u
#define MAX_SLOTS 0x7fffffffu
typedef uint64_t slot_entry;

struct ws_loop {
  ws_loop_config cfg;
  ws_mem mem;  /* counting: ws_drv_budget.c */
  ws_mem umem; /* the application's (or malloc) */
  /* bytes held: posts allocate from any thread (budget_malloc_posted) */
  _Atomic uint64_t mem_now, mem_peak;
  ws_loop_conn *feeding; /* the connection whose input is being fed */
  uint32_t nrefusing;    /* F_REFUSE connections alive */
  ws_drv_poller poller;
  ws_drv_sys sys;
  ws_loop_transport plain; /* TCP through |sys| */
  uint8_t *rbuf;
  uint64_t now;
  listener *listeners;
  /* The listener of the connections that have none: clients, and those
   * whose listener was closed. No socket (fd -1), no caps, no counts. */
  listener unlisted;
  size_t nconns;
  /* slot table: id -> connection; slots [0, nslots) were handed out,
   * the free ones chained from free_head (slot + 1, 0: none) */
  void **spages; /* of slot_entry */
  uint32_t nspages, spcap; /* pages allocated, room in |spages| */
  uint32_t nslots;
  uint32_t free_head;
  /* deadline heap, |heaplen| entries in |nhpages| pages */
  void **hpages; /* of ws_loop_conn * */
  uint32_t heaplen, nhpages, hpcap;
  uint32_t dirty, again; /* lists: the first one's slot + 1, 0: empty */
  /* Blocks of the common size, slab_n bytes (a listener's connection
   * without a tail), come from slabs (ws_drv_budget.c): |slabs| sorted by
   * address, |partial| the ones with room. */
  size_t slab_n;
  void **slabs; /* (of struct drv_slab) */
  uint32_t nslabs, slabcap;
  struct drv_slab *partial;
  ws_loop_conn *grave;
  ws_drv_event ready[MAX_READY];
  int nready; /* entries of |ready| being dispatched */
  /* the connection whose on_open runs, and its 101 (client) */
  const ws_loop_conn *open_conn;
  const ws_response *open_resp;
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
  struct drv_reconnect *rc; /* clients that come back (ws_drv_reconnect.c) */
  /* ws_loop_set_on_refused() */
  ws_loop_refused_fn on_refused;
  void *on_refused_ud;
  uint32_t listen_epoch; /* counts drv_close_listeners() that closed any */
  /* ws_loop_stats_get(): the connections freed so far (open ones are
   * added at query time) */
  ws_loop_stats freed;
  /* Masking keys of client connections that use the loop's random source
   * (drv_mask_rand): drawn from the system 128 bytes at a time, one
   * system call per 32 frames instead of one per frame; a key handed out
   * is wiped from the pool. */
  uint8_t rpool[128];
  uint8_t rpos; /* bytes of |rpool| used (sizeof: empty) */
};

/* A connection's transport and its context: plain TCP (the loop's, whose
 * context is always its user_data: nothing to attach) unless it has one
 * of its own (F_TP). */
static inline const ws_loop_transport *conn_tp(const ws_loop_conn *c) {
  return (c->flags & F_TP) ? c->aux->tp : &conn_loop(c)->plain;
}
static inline void *conn_tctx(const ws_loop_conn *c) {
  return (c->flags & F_TP) ? c->aux->tctx : conn_loop(c)->plain.user_data;
}

/* ---- ws_drv_loop.c ------------------------------------------------------- */

void *drv_malloc(ws_loop *l, size_t n);
/* A connection's block, conn_block_size(c) bytes, counted (and refused by
 * the budget) like any other allocation but without a size header. */
size_t conn_block_size(const ws_loop_conn *c);
void *drv_block_alloc(ws_loop *l, size_t n);
void drv_block_free(ws_loop *l, void *p, size_t n);
/* Frees the slabs (ws_loop_del(), every block freed). */
void drv_slabs_free(ws_loop *l);
/* Blocks in a slab; its header is at most SLAB_HDR_MAX bytes. */
#define SLAB_BLOCKS 64u
#define SLAB_HDR_MAX 64u
void *drv_realloc(ws_loop *l, void *p, size_t n);
void drv_free(ws_loop *l, void *p);
/* Reads the clock into l->now (never backwards) and returns it. */
uint64_t drv_clock(ws_loop *l);
/* Keeps a callback's negative return: the loop stops with it. */
void drv_note_rv(ws_loop *l, int rv);
/* Frees the graveyard, except connections still on a list of this round. */
void drv_free_grave(ws_loop *l);

/* The live connection in slot |i| (< l->nslots), NULL if the slot is
 * free or held by a dead connection. */
static inline ws_loop_conn *drv_slot_conn(const ws_loop *l, uint32_t i) {
  slot_entry e = ((const slot_entry *)l->spages[i / PAGE_ENTRIES])[i % PAGE_ENTRIES];
  return (e & 3u) ? NULL : (ws_loop_conn *)(uintptr_t)e;
}
/* The connection, dead or alive, that a list link (slot + 1, not 0)
 * names. */
static inline ws_loop_conn *drv_listed_conn(const ws_loop *l, uint32_t link) {
  uint32_t i = link - 1;
  slot_entry e = ((const slot_entry *)l->spages[i / PAGE_ENTRIES])[i % PAGE_ENTRIES];
  return (ws_loop_conn *)(uintptr_t)(e & ~(slot_entry)2u);
}
/* Grows a page table (|*ppages|, |*pn| pages in room for |*pcap|) by one
 * page of |entry| bytes a slot; -1 without memory. */
int drv_page_add(ws_loop *l, void ***ppages, uint32_t *pn, uint32_t *pcap,
                 size_t entry);
/* Frees a page table. */
void drv_pages_free(ws_loop *l, void **pages, uint32_t n);

/* ---- ws_drv_timer.c ------------------------------------------------------ */

void heap_remove(ws_loop *l, ws_loop_conn *c);
/* Sets |c|'s deadline; -1 only when the heap cannot grow. */
int heap_update(ws_loop *l, ws_loop_conn *c, uint64_t d);
/* The earliest deadline of any connection, or NO_DEADLINE. */
uint64_t heap_first(const ws_loop *l);
/* Handles every connection whose deadline is due at l->now. */
void drv_run_timers(ws_loop *l);

/* ---- ws_drv_conn.c ------------------------------------------------------- */

/* A connection with configuration |cfg|, or that of |sh| when not NULL
 * (its core then holds a reference to it); |tail|: the F_TAIL_* its
 * block has room for. */
ws_loop_conn *conn_new(ws_loop *l, int fd, ws_role role, const ws_config *cfg,
                       ws_conn_shared *sh, const ws_loop_transport *tp,
                       void *ud, uint32_t tail);
/* Ends a connection (on_close if owed, with |err| unless the core or the
 * transport said why already). */
void conn_destroy(ws_loop_conn *c, int err);
/* Frees a destroyed connection (from drv_free_grave()). */
void conn_free_memory(ws_loop_conn *c);
/* |c|'s aux, allocated if it has none (counted, never refused by the
 * budget: it is bookkeeping of bounded size); NULL without memory. */
conn_aux *conn_aux_get(ws_loop_conn *c);
/* Frees |c|'s aux if nothing in it is in use. */
void conn_aux_trim(ws_loop_conn *c);
void conn_mark_dirty(ws_loop_conn *c);
void conn_mark_again(ws_loop_conn *c);
ws_loop_conn *conn_by_id(ws_loop *l, uint64_t id);
size_t conn_pending(const ws_loop_conn *c);
/* Core timers, unless an event is kept. */
void conn_tick(ws_loop_conn *c);
/* Pulls and dispatches core events; 1 if one was kept (paused). */
int conn_pull_events(ws_loop_conn *c);
/* After anything happened: write, backpressure, finish, interest, the
 * core's busy state once quiet (ws_conn_shrink()), deadline. */
void conn_after(ws_loop_conn *c);
/* Readiness of a connection's descriptor. */
void conn_ready(ws_loop_conn *c, unsigned events);
/* A connection from the again list. */
void conn_again(ws_loop_conn *c);
/* The deadline the heap should hold for |c|. */
uint64_t conn_deadline(const ws_loop_conn *c);
/* min_drain_rate: at the end of a window, drops |c| if it drained too
 * little (returns 1), else starts the next window. */
int conn_drain_check(ws_loop_conn *c);
/* message_timeout_ms: closes |c| with 1008 if its message is late. */
void conn_message_timeout(ws_loop_conn *c);
/* Sends the graceful-shutdown close (l->sd_code) if |c| is open. */
void conn_shutdown_close(ws_loop_conn *c);
void post_free(ws_loop *l, post *p);

/* ---- ws_drv_listen.c ----------------------------------------------------- */

/* A listener for |p| (NULL: the defaults), not yet listening; NULL with
 * |*prv| WS_ERR_INVALID_ARGUMENT or WS_ERR_NOMEM. */
listener *drv_listener_new(ws_loop *l, const ws_loop_listen_params *p,
                           int *prv);
/* Watches |fd| for |s| and adds it to the loop; -1 with errno. */
int drv_listener_add(ws_loop *l, listener *s, int fd);
void drv_accept_round(ws_loop *l, listener *s);
void drv_listeners_watch(ws_loop *l, int on);
void drv_close_listeners(ws_loop *l);
/* Tells the application (ws_loop_set_on_refused) that the loop refused
 * the connection on |fd| (-1: unknown peer) by itself: |status| (0: no
 * HTTP answer), |reason| (NUL-terminated), |req| (or NULL), |ud| the
 * listener's user data. */
void drv_refused(ws_loop *l, int fd, void *ud, int status, const char *reason,
                 const ws_request *req);

/* ---- ws_drv_budget.c ----------------------------------------------------- */

/* Sets |l->mem| to the counting allocator over |l->umem|. */
void budget_init_mem(ws_loop *l);
/* drv_malloc() for any thread (the ws_loop_post_* functions): counted,
 * never refused by the budget (posts have their own, max_post_bytes). */
void *budget_malloc_posted(ws_loop *l, size_t n);
/* 1 while new requests are refused (over 90% of memory_budget). */
int budget_high(const ws_loop *l);
/* A connection accepted on |s|: the caps. Returns 0 to go on with
 * |*cfg| (possibly adjusted for max_pmd_context) and sets |*pflags|
 * (over a cap: F_REFUSE and the F_CAP_* bit of the cap); -1 to close it
 * at once (|*pflags| says which cap). */
int budget_admit(ws_loop *l, listener *s, int fd, ws_config *cfg,
                 uint32_t *pflags, uint64_t *pip);
/* 1 if a send to |c| must wait: the loop is over 90% of its budget and
 * |c|'s output is over high_water (the last 10% are kept for the
 * connections that read). */
int budget_hold_back(const ws_loop_conn *c);
/* The F_TAIL_* of the connections of |s|: room for what its caps need
 * (conn_peer_hash() for max_conns_per_ip, conn_hs_ms() for
 * max_handshakes). */
uint32_t budget_tail(const listener *s);
/* Counts |c| (its flags from budget_admit(), |c->lst| set) in its
 * listener. */
void budget_count(ws_loop_conn *c);
/* Closes |c|, a server connection the application has not heard of, at
 * once, without an answer: told to on_refused as 0 |reason|
 * (ws_drv_conn.c). */
void conn_drop(ws_loop_conn *c, const char *reason);
/* Whether a request must be refused, and with which status (0: no);
 * |*preason| (may be NULL) gets the text for on_refused. */
int budget_request_status(ws_loop_conn *c, const ws_request *req,
                          const char **preason);
/* The text for on_refused of a connection refused by a cap, from its
 * F_CAP_* bits in |flags|. */
const char *budget_cap_reason(uint32_t flags);
/* ... and of one that ran out of memory: "memory budget" when the
 * budget refused it (F_BUDGET in |flags|) or the loop is over its mark,
 * else "out of memory". */
const char *budget_nomem_reason(const ws_loop *l, uint32_t flags);
/* The opening handshake of |c| is over (answered, or failed). */
void budget_hs_done(ws_loop_conn *c);
/* After WS_EV_OPEN: releases the context slot if none was negotiated. */
void budget_opened(ws_loop_conn *c);
/* |c| ends: its counts are given back. */
void budget_release(ws_loop_conn *c);
/* Writes the 1013 close of a connection refused by the budget, once. */
void budget_close_frame(ws_loop_conn *c);

/* ---- ws_drv_connect.c ---------------------------------------------------- */

/* A ws_rand_fn over the loop's pool (|user_data| is the loop), for client
 * connections whose configuration names no random source. Runs on the
 * loop's thread only, as every send does. */
int drv_mask_rand(uint8_t *buf, size_t len, void *user_data);

/* The TCP connect of |c| finished (writable or failed). */
void connect_done(ws_loop_conn *c);

/* One attempt of ws_loop_connect() (the reconnect's too). */
int connect_once(ws_loop *l, const ws_loop_connect_params *p,
                 ws_loop_conn **pconn);

/* ---- ws_drv_reconnect.c -------------------------------------------------- */

/* ws_loop_connect() with |reconnect| set. */
int drv_reconnect_start(ws_loop *l, const ws_loop_connect_params *p,
                        ws_loop_conn **pconn);
/* Starts the attempts that are due. */
void drv_run_reconnects(ws_loop *l);
/* The time of the next attempt waiting, or NO_DEADLINE. */
uint64_t drv_reconnect_next(const ws_loop *l);
/* Frees what is left (ws_loop_del(), after every connection ended). */
void drv_reconnect_free(ws_loop *l);

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
