/*
 * The connection object, its state, input and events, timers and queries.
 * SPDX-License-Identifier: MIT
 *
 * Input is parsed by ws_conn_feed() until one event is ready; the event
 * waits in a single slot until ws_conn_next_event() takes it, and feed
 * refuses input meanwhile. That one rule gives the ordering guarantees:
 * everything that arrived before a bad frame has been handed out before
 * the frame is even looked at, and event slices can borrow the input.
 *
 * Errors are derived state, not queued events: once |err| is set, the
 * next ws_conn_next_event() with an empty slot reports it once.
 *
 * The rest of the connection: ws_conn_hs.c (the opening handshake and
 * plain HTTP), ws_conn_rx.c (frames, payload, control frames, compressed
 * input), ws_conn_tx.c (sending, compression, the shared compressor);
 * the struct is in ws_conn_int.h.
 */
#include "ws_conn_int.h"
#include "ws_utf8_simd.h" /* WS_UTF8_AVX2, k256_short_a() */

/* The receive fast path (whole uncompressed frames straight to their
 * event) only saves time: it is left out when optimizing for size
 * (-Os). */
#if defined(__OPTIMIZE_SIZE__)
#  define WS_HAS_FAST_PATH 0
#else
#  define WS_HAS_FAST_PATH 1
#endif

/* On x86 CPUs with AVX2, ws_conn_feed_events() unmasks and checks
 * 16..31-byte text frames that start a character in one pass with the
 * short AVX2 kernel of ws_utf8_simd.c, not through unmask_small(),
 * ascii_small() and ws_utf8_scan()'s dispatch. The CPU is asked at such
 * a frame only (its feature bits are the compiler runtime's: a load and
 * a test), so other frames pay nothing. Builds without the vector
 * kernels (size, freestanding, other CPUs) keep the scalar way. */
#if WS_HAS_FAST_PATH && defined(WS_UTF8_AVX2) && !WS_SMALL_CODE
#  define WS_CONN_AVX2 1
#else
#  define WS_CONN_AVX2 0
#endif

int wsc_ctrlbuf_get(ws_conn *c) {
  wsc_io *io = IO(c);
  if (!io->ctrlbuf) {
    io->ctrlbuf = ws_malloc(&ENV(c)->mem, (size_t)2 * WS_CONTROL_MAX);
    if (!io->ctrlbuf) return WS_ERR_NOMEM;
  }
  return 0;
}

void ws_config_default(ws_config *cfg, ws_role role) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->size = (uint32_t)sizeof(*cfg);
  cfg->role = role;
  cfg->delivery = WS_DELIVER_STREAM;
  cfg->max_handshake_bytes = 8192;
  cfg->max_headers = 64;
  cfg->max_frame_payload = 1u << 20;
  cfg->max_message = 1u << 20;
  cfg->max_fragments = 65536;
  cfg->max_out_queue = 4u << 20;
  cfg->handshake_timeout_ms = 10000;
  cfg->ping_interval_ms = 25000;
  cfg->pong_timeout_ms = 25000;
  cfg->close_timeout_ms = 5000;
  cfg->pmd.level = 6;
  cfg->pmd.server_max_window_bits = 15;
  cfg->pmd.client_max_window_bits = 15;
  cfg->pmd.min_size = 32;
}

#if WS_SMALL_CODE
int wsc_out_full(const ws_conn *c) {
  return out_size(c) >= ENV(c)->cfg.max_out_queue;
}
#endif

/* With the private environment of ws_conn_new() and ws_conn_init() (inside
 * the object without ws_conn_shared). */
size_t ws_conn_sizeof(void) {
  return sizeof(ws_conn) + (WS_HAS_SHARED ? sizeof(conn_env) : 0);
}

#if WS_CONN_SPLIT
wsc_io *wsc_io_alloc(ws_conn *c) {
  wsc_io *io = ws_malloc(&ENV(c)->mem, sizeof(*io));
  if (!io) return NULL;
  memset(io, 0, sizeof(*io)); /* at rest: between frames, nothing queued */
  io->pong_deadline = io->hs_deadline = NO_DEADLINE;
  c->io = io;
  return io;
}
#endif

int wsc_hs_alloc(ws_conn *c) {
  ws_hs *hs = ws_malloc(&ENV(c)->mem, sizeof(ws_hs));
  if (!hs) return WS_ERR_NOMEM;
  memset(hs, 0, sizeof(ws_hs));
  IO(c)->hs = hs;
  return 0;
}

void wsc_hs_free(ws_conn *c) {
  ws_hs *hs = HAS_IO(c) ? IO(c)->hs : NULL;
  if (!hs) return;
  ws_buf_free(&hs->in, &ENV(c)->mem);
  ws_free(&ENV(c)->mem, hs->headers);
  ws_free(&ENV(c)->mem, hs->offered);
  ws_free(&ENV(c)->mem, hs);
  IO(c)->hs = NULL;
}

/* The checks ws_conn_new() and ws_conn_init() share. */
static int check_config(const ws_config *cfg) {
  /* ABI: 0 is the 0.2 layout; no other layout exists yet */
  if (cfg->size != 0 && cfg->size != sizeof(ws_config))
    return WS_ERR_INVALID_ARGUMENT;
  if (cfg->role != WS_ROLE_SERVER && cfg->role != WS_ROLE_CLIENT)
    return WS_ERR_INVALID_ARGUMENT;
  /* parts left out of the build (WS_NO_SERVER, WS_NO_CLIENT,
   * WS_NO_DEFLATE) */
  if ((!WS_HAS_SERVER && cfg->role == WS_ROLE_SERVER) ||
      (!WS_HAS_CLIENT && cfg->role == WS_ROLE_CLIENT) ||
      (!WS_HAS_INFLATE && cfg->pmd.enable))
    return WS_ERR_INVALID_ARGUMENT;
  if (cfg->role == WS_ROLE_CLIENT && !cfg->rand) return WS_ERR_INVALID_ARGUMENT;
  if (cfg->max_handshake_bytes < 64 || cfg->max_headers == 0 ||
      cfg->max_out_queue < 1024)
    return WS_ERR_INVALID_ARGUMENT;
  return 0;
}

/* Fills in the environment |e| from |cfg| and the resolved |m|. */
_Static_assert(sizeof(conn_cfg) == 6 * sizeof(uint32_t) + sizeof(ws_rand_fn) +
                                       sizeof(void *) + 2 * sizeof(uint64_t),
               "env_setup() sets each field of conn_cfg");
static void env_setup(conn_env *e, const ws_config *cfg, const ws_mem *m) {
  /* every field set, none left to a memset */
  e->mem = *m;
  e->cfg.refs = 0;
  e->cfg.max_frame_payload = cfg->max_frame_payload;
  e->cfg.max_message = cfg->max_message;
  e->cfg.rand = cfg->rand;
  e->cfg.rand_user_data = cfg->rand_user_data;
  e->cfg.max_fragments = cfg->max_fragments;
  e->cfg.max_out_queue = cfg->max_out_queue;
  e->cfg.ping_interval_ms = cfg->ping_interval_ms;
  e->cfg.pong_timeout_ms = cfg->pong_timeout_ms;
  e->cfg.close_timeout_ms = cfg->close_timeout_ms;
}

/* The private environment of a connection of ws_conn_new() and
 * ws_conn_init(): right after its object (inside it without
 * ws_conn_shared). */
#if WS_HAS_SHARED
#  define PRIVATE_ENV(c) ((conn_env *)(void *)((char *)(c) + sizeof(ws_conn)))
_Static_assert(sizeof(ws_conn) % _Alignof(conn_env) == 0,
               "the private environment is aligned after the object");
#else
#  define PRIVATE_ENV(c) (&(c)->env)
#endif

/* Fills in a new connection at |c| from |cfg| with environment |e|
 * (filled in); allocates its deflate state and, for a server, its
 * handshake state. */
static int conn_setup(ws_conn *c, const ws_config *cfg, conn_env *e) {
  const ws_mem *m = &e->mem;
#if WS_HAS_SHARED
  memset(c, 0, sizeof(*c));
  c->env = e;
#else /* (the environment, filled in already, is kept) */
  {
    size_t at = offsetof(ws_conn, env), end = at + sizeof(conn_env);
    memset(c, 0, at);
    memset((char *)c + end, 0, sizeof(*c) - end);
  }
#endif
  c->role = (uint8_t)cfg->role;
  /* (any value but WS_DELIVER_STREAM has always meant whole messages) */
  c->delivery =
      (uint8_t)(cfg->delivery == WS_DELIVER_STREAM ? WS_DELIVER_STREAM
                                                   : WS_DELIVER_MESSAGE);
  /* every WS_CFG_* flag fits in the byte */
  c->flags =
      (uint8_t)(cfg->flags & (WS_CFG_NO_AUTO_PONG | WS_CFG_NO_AUTO_CLOSE |
                              WS_CFG_HTTP | WS_CFG_KEEP_BUFFERS |
                              WS_CFG_PMD_SYMMETRIC));
  c->state = WS_STATE_CONNECTING;
#if WS_CONN_SPLIT
  if (!wsc_io_alloc(c)) return WS_ERR_NOMEM;
#else
  c->pong_deadline = c->hs_deadline = NO_DEADLINE;
#endif
  wsc_io *io = IO(c);
  io->max_handshake_bytes = cfg->max_handshake_bytes;
  io->max_headers = cfg->max_headers;
  io->handshake_timeout_ms = cfg->handshake_timeout_ms;
  /* (check_config() refused the parts a build switch left out) */
  if (WS_HAS_INFLATE && cfg->pmd.enable) {
    c->z = ws_malloc(m, sizeof(*c->z));
    if (!c->z) goto nomem;
    memset(c->z, 0, sizeof(*c->z));
    c->z->cfg = cfg->pmd;
  }
  if (!is_client(c) && wsc_hs_alloc(c)) goto nomem;
  return 0;
nomem:
  ws_free(m, c->z);
#if WS_CONN_SPLIT
  ws_free(m, c->io);
#endif
  return WS_ERR_NOMEM;
}

int ws_conn_new(ws_conn **pconn, const ws_config *cfg, const ws_mem *mem) {
  ws_mem m;
  if (!pconn || !cfg) return WS_ERR_INVALID_ARGUMENT;
  *pconn = NULL;
  if (check_config(cfg) || ws_mem_resolve(&m, mem))
    return WS_ERR_INVALID_ARGUMENT;
  ws_conn *c = ws_malloc(&m, ws_conn_sizeof());
  if (!c) return WS_ERR_NOMEM;
  env_setup(PRIVATE_ENV(c), cfg, &m);
  int rv = conn_setup(c, cfg, PRIVATE_ENV(c));
  if (rv) {
    ws_free(&m, c);
    return rv;
  }
  *pconn = c;
  return 0;
}

int ws_conn_init(ws_conn **pconn, void *block, size_t len, const ws_config *cfg,
                 const ws_mem *mem) {
  ws_mem m;
  if (!pconn || !cfg) return WS_ERR_INVALID_ARGUMENT;
  *pconn = NULL;
  if (!block || len < ws_conn_sizeof() ||
      ((uintptr_t)block & (_Alignof(ws_conn) - 1)))
    return WS_ERR_INVALID_ARGUMENT;
  if (check_config(cfg) || ws_mem_resolve(&m, mem))
    return WS_ERR_INVALID_ARGUMENT;
  ws_conn *c = block;
  env_setup(PRIVATE_ENV(c), cfg, &m);
  int rv = conn_setup(c, cfg, PRIVATE_ENV(c));
  if (rv) return rv;
  c->placed = 1;
  *pconn = c;
  return 0;
}

/* ---- connections sharing their configuration ------------------------- */

#if WS_HAS_SHARED

int ws_conn_shared_new(ws_conn_shared **pshared, const ws_config *cfg,
                       const ws_mem *mem) {
  ws_mem m;
  if (!pshared || !cfg) return WS_ERR_INVALID_ARGUMENT;
  *pshared = NULL;
  if (check_config(cfg) || ws_mem_resolve(&m, mem))
    return WS_ERR_INVALID_ARGUMENT;
  ws_conn_shared *sh = ws_malloc(&m, sizeof(*sh));
  if (!sh) return WS_ERR_NOMEM;
  env_setup(&sh->env, cfg, &m);
  sh->env.cfg.refs = 1;
  sh->config = *cfg;
  sh->config.size = (uint32_t)sizeof(ws_config);
  *pshared = sh;
  return 0;
}

/* Drops a reference to a shared environment; the last one frees it. */
static void env_unref(conn_env *e) {
  if (--e->cfg.refs) return;
  ws_mem m = e->mem;
  ws_free(&m, (ws_conn_shared *)(void *)e);
}

void ws_conn_shared_del(ws_conn_shared *sh) {
  if (sh) env_unref(&sh->env);
}

size_t ws_conn_sizeof_shared(void) { return sizeof(ws_conn); }

/* A new connection of |sh| at |c| (placed: in caller storage). */
static int conn_setup_shared(ws_conn *c, ws_conn_shared *sh, int placed) {
  if (sh->env.cfg.refs == UINT32_MAX) return WS_ERR_NOMEM;
  int rv = conn_setup(c, &sh->config, &sh->env);
  if (rv) return rv;
  sh->env.cfg.refs++;
  c->placed = placed ? 1u : 0u;
  return 0;
}

int ws_conn_new_shared(ws_conn **pconn, ws_conn_shared *sh) {
  if (!pconn) return WS_ERR_INVALID_ARGUMENT;
  *pconn = NULL;
  if (!sh) return WS_ERR_INVALID_ARGUMENT;
  ws_conn *c = ws_malloc(&sh->env.mem, sizeof(ws_conn));
  if (!c) return WS_ERR_NOMEM;
  int rv = conn_setup_shared(c, sh, 0);
  if (rv) {
    ws_free(&sh->env.mem, c);
    return rv;
  }
  *pconn = c;
  return 0;
}

int ws_conn_init_shared(ws_conn **pconn, void *block, size_t len,
                        ws_conn_shared *sh) {
  if (!pconn) return WS_ERR_INVALID_ARGUMENT;
  *pconn = NULL;
  if (!sh || !block || len < sizeof(ws_conn) ||
      ((uintptr_t)block & (_Alignof(ws_conn) - 1)))
    return WS_ERR_INVALID_ARGUMENT;
  ws_conn *c = block;
  int rv = conn_setup_shared(c, sh, 1);
  if (rv) return rv;
  *pconn = c;
  return 0;
}

#else /* no ws_conn_shared without the server role: refused */

int ws_conn_shared_new(ws_conn_shared **pshared, const ws_config *cfg,
                       const ws_mem *mem) {
  (void)cfg;
  (void)mem;
  if (pshared) *pshared = NULL;
  return WS_ERR_INVALID_ARGUMENT;
}

void ws_conn_shared_del(ws_conn_shared *sh) { (void)sh; }

size_t ws_conn_sizeof_shared(void) { return sizeof(ws_conn); }

int ws_conn_new_shared(ws_conn **pconn, ws_conn_shared *sh) {
  (void)sh;
  if (pconn) *pconn = NULL;
  return WS_ERR_INVALID_ARGUMENT;
}

int ws_conn_init_shared(ws_conn **pconn, void *block, size_t len,
                        ws_conn_shared *sh) {
  (void)block;
  (void)len;
  (void)sh;
  if (pconn) *pconn = NULL;
  return WS_ERR_INVALID_ARGUMENT;
}

#endif /* WS_HAS_SHARED */

void ws_conn_fini(ws_conn *c) { ws_conn_del(c); }

/* Arena bytes of a block of |n| bytes, and of a buffer grown by ws_buf to
 * hold |n| (doubling from 256: the copies it leaves behind add up to
 * less than the last block, counted once more). */
static size_t blk(size_t n) {
  return WS_ARENA_ALIGN +
         ((n + WS_ARENA_ALIGN - 1) & ~(size_t)(WS_ARENA_ALIGN - 1));
}

static size_t grown(size_t n, size_t limit) {
  size_t cap = 256;
  while (cap < n)
    cap *= 2;
  if (cap > limit) cap = WS_MAX(n, limit);
  return 2 * blk(cap);
}

size_t ws_conn_memsize(const ws_config *cfg) {
  if (!cfg) return 0;
  size_t hs = cfg->max_handshake_bytes;
  size_t n = blk(ws_conn_sizeof());
#if WS_CONN_SPLIT
  n += blk(sizeof(conn_io));
#endif
  /* handshake: its state, the head, the header table, the offered
   * subprotocols and the request or response in the output queue */
  n += blk(sizeof(ws_hs)) + grown(hs, SIZE_MAX) +
       blk(cfg->max_headers * sizeof(ws_header)) + blk(hs) +
       grown(hs, SIZE_MAX);
  /* open: the output queue (its capacity stays within 512 B of
   * max_out_queue), the message, control payloads, the subprotocol */
  n += grown((size_t)cfg->max_out_queue + 512u,
             (size_t)cfg->max_out_queue + 512u) +
       grown((size_t)WS_MIN(cfg->max_message, (uint64_t)SIZE_MAX / 4),
             (size_t)WS_MIN(cfg->max_message, (uint64_t)SIZE_MAX / 4)) +
       blk((size_t)2 * WS_CONTROL_MAX) + blk(hs);
#if !defined(WS_NO_DEFLATE)
  if (cfg->pmd.enable) {
    n += blk(sizeof(conn_z)) + blk(sizeof(ws_inflater)) +
         blk(ws_inflate_memsize(15)) + blk(ZCHUNK);
    if (WS_HAS_DEFLATE) n += wsc_deflater_memsize(); /* (else 0) */
  }
#endif
  return n;
}

void wsc_inflater_drop(ws_conn *c) {
#if !defined(WS_NO_DEFLATE)
  if (!c->z || !c->z->inf) return;
  ws_inflate_free(c->z->inf);
  ws_free(&ENV(c)->mem, c->z->inf);
  c->z->inf = NULL;
#else
  (void)c;
#endif
}

void ws_conn_del(ws_conn *c) {
  if (!c) return;
  wsc_hs_free(c);
  wsc_inflater_drop(c);
  if (WS_HAS_DEFLATE) wsc_deflater_drop(c); /* (else empty: no call) */
  if (WS_HAS_INFLATE && c->z) { /* (never set without deflate) */
    ws_free(&ENV(c)->mem, c->z->zbuf);
    ws_free(&ENV(c)->mem, c->z);
  }
  if (HAS_IO(c)) {
    ws_buf_free(&IO(c)->out, &ENV(c)->mem);
    ws_buf_free(&IO(c)->msg, &ENV(c)->mem);
    ws_free(&ENV(c)->mem, IO(c)->ctrlbuf);
#if WS_CONN_SPLIT
    ws_free(&ENV(c)->mem, c->io);
#endif
  }
  ws_free(&ENV(c)->mem, c->protocol);
  /* (a private environment goes with the object: read it first) */
  conn_env *e = ENV(c);
  ws_mem m = e->mem;
#if WS_HAS_SHARED
  int shared = e->cfg.refs != 0;
  if (!c->placed) ws_free(&m, c);
  if (shared) env_unref(e);
#else
  if (!c->placed) ws_free(&m, c);
#endif
}

/* ---- output -------------------------------------------------------------- */

/* Appends one frame. Client frames get a fresh mask key and masked
 * payload, copied and masked in one pass. No |data| with a |len|: the
 * header alone (ws_conn_send_ref(), which sends the payload from where
 * it is and counts it). Every caller's |len| plus a header fits a size_t:
 * a data frame's both stay within max_out_queue, a control payload is
 * short, and a prepared variant's length is less than its allocation. */
int wsc_queue_frame(ws_conn *c, unsigned b0, const void *data, size_t len) {
  wsc_io *io = IO(c);
  if (!WS_SMALL_CODE && !is_client(c) && len < 126 && data) {
    /* The common server frame: a 2-byte header, written in place (a
     * speed path: size builds take the general one, which writes the
     * same bytes). */
    if (io->out.cap - io->out.len < 2 + len) {
      int rv = ws_buf_reserve_bounded(&io->out, &ENV(c)->mem, 2 + len,
                                      (size_t)ENV(c)->cfg.max_out_queue + 512u);
      if (rv) return rv;
    }
    uint8_t *dst = io->out.base + io->out.len;
    dst[0] = (uint8_t)b0;
    dst[1] = (uint8_t)len; /* RFC 6455 5.2: 7-bit length, no mask */
    memcpy(dst + 2, data, len); /* (|data| is not NULL here) */
    io->out.len += 2 + len;
    c->stats.wire_out += 2 + len;
    return 0;
  }
  uint8_t hdr[WS_FRAME_HEADER_MAX], key[4];
  if (is_client(c) && ENV(c)->cfg.rand(key, 4, ENV(c)->cfg.rand_user_data))
    return WS_ERR_INTERNAL;
  size_t hlen = ws_frame_put_header(hdr, b0, len, is_client(c) ? key : NULL);
  size_t n = data ? len : 0; /* the payload bytes queued */
  /* Capacity stays near max_out_queue; the slack covers control frames,
   * which may go over it by a few frames. */
  int rv = ws_buf_reserve_bounded(&io->out, &ENV(c)->mem, hlen + n,
                                  (size_t)ENV(c)->cfg.max_out_queue + 512u);
  if (rv) return rv;
  uint8_t *dst = io->out.base + io->out.len;
  memcpy(dst, hdr, hlen);
  if (n) {
    if (is_client(c))
      ws_copy_mask(dst + hlen, data, n, key, 0);
    else
      memcpy(dst + hlen, data, n);
  }
  io->out.len += hlen + n;
  c->stats.wire_out += hlen + n;
  return 0;
}

/* Queues a close frame with |code| (0: empty payload) and |reason|. */
int wsc_queue_close(ws_conn *c, uint16_t code, const void *reason,
                    size_t reasonlen) {
  uint8_t payload[WS_CONTROL_MAX];
  size_t n = 0;
  if (code) {
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reasonlen > WS_CONTROL_MAX - 2) reasonlen = WS_CONTROL_MAX - 2;
    if (reasonlen) memcpy(payload + 2, reason, reasonlen);
    n = 2 + reasonlen;
  }
  int rv = wsc_queue_frame(c, WS_FIN | WS_OP_CLOSE, payload, n);
  if (rv) return rv;
  c->close_sent_flag = 1;
  c->close_sent = code;
  return 0;
}

/* The close timeout counts from the next ws_conn_tick(): the caller's
 * clock is read there, not when the close was queued (c->now may be the
 * time of a tick long ago). Until then ws_conn_next_deadline() asks for a
 * tick at once. */
void wsc_arm_close_timer(ws_conn *c) {
  if (ENV(c)->cfg.close_timeout_ms) c->close_arm = 1;
}

/* Fails the connection: records the sticky error, drops message state and
 * queues a close frame with |code| (0: none, e.g. during the handshake). */
int wsc_fail(ws_conn *c, int err, uint16_t code, const char *reason) {
  if (c->err) return c->err;
  c->err = err;
  if (HAS_IO(c)) IO(c)->err_reason = reason; /* (else: err_reason()) */
  if (code && !c->close_sent_flag && c->state != WS_STATE_CONNECTING &&
      HAS_IO(c)) {
    /* If even the close frame cannot be queued (or the state to queue it
     * in could not be allocated again after ws_conn_shrink()), the
     * transport simply closes: should_close_transport() is true once out
     * drains. */
    (void)wsc_queue_close(c, code, reason, strlen(reason));
  }
  c->state = WS_STATE_FAILED;
  /* Not the message buffer yet: the data of the event being handled may
   * point into it (a handler sends, the send runs out of memory, and the
   * handler goes on with the data; or a loop keeps the event while
   * paused). It goes at the next ws_conn_next_event(), or with the
   * connection (fuzz_loop finding). */
  c->release = 1;
  c->has_pending_pong = 0;
  wsc_inflater_drop(c);
  if (WS_HAS_DEFLATE) wsc_deflater_drop(c); /* (else empty: no call) */
  return err;
}

/* The reasons of the faults, one after the other in fault order. */
#define WSC_FAULT_TEXT(name, kind, text) text "\0"
static const char fault_text[] = WSC_FAULTS(WSC_FAULT_TEXT)
#if WS_HAS_INFLATE
    WSC_ZFAULTS(WSC_FAULT_TEXT)
#endif
#if WS_HAS_DEFLATE
        WSC_DFAULTS(WSC_FAULT_TEXT)
#endif
    ;
#undef WSC_FAULT_TEXT

/* Fault |f|'s reason. */
static WS_ALWAYS_INLINE const char *fault_reason(unsigned f) {
  const char *s = fault_text;
  for (f &= 31u; f; s++)
    if (!*s) f--;
  return s;
}

int wsc_fault(ws_conn *c, unsigned f) {
  /* by kind (FK_*): the close code, and the error negated */
  static const uint16_t kind[][2] = {
      {1002, -WS_ERR_PROTO}, {1007, -WS_ERR_UTF8},     {1009, -WS_ERR_TOO_BIG},
      {1007, -WS_ERR_DATA},  {1011, -WS_ERR_INTERNAL}, {1011, -WS_ERR_NOMEM},
      {0, -WS_ERR_TIMEOUT},  {1011, -WS_ERR_TIMEOUT}};
  const uint16_t *k = kind[f >> 5];
  return wsc_fail(c, -(int)k[1], k[0], fault_reason(f));
}

/* The reason of the sticky error, kept with the busy-only state. A
 * connection can meet two errors without that state (ws_conn_shrink() let
 * it go): the transport's end, and no memory to get the state back. */
#define EOF_REASON "transport closed without close frame"

#if WS_CONN_SPLIT
/* (out of line: ws_conn_next_event()'s usual path stays lean) */
static WS_NOINLINE const char *err_reason(const ws_conn *c) {
  if (HAS_IO(c)) return IO(c)->err_reason;
  return c->err == WS_ERR_EOF ? EOF_REASON : fault_reason(F_NOMEM);
}
#else
static const char *err_reason(const ws_conn *c) { return c->err_reason; }
#endif

int wsc_nomem(ws_conn *c) { return wsc_fault(c, F_NOMEM); }

void wsc_set_event(ws_conn *c, ws_event_type type) {
  wsc_io *io = IO(c);
  io->ev_data.base = NULL;
  io->ev_data.len = 0;
  io->ev_close = 0;
  io->ev_type = (uint8_t)type;
  io->ev_flags = 0;
  c->ev_ready = 1;
}

static size_t keep_size(const ws_conn *c) {
  return (c->flags & WS_CFG_KEEP_BUFFERS) ? WS_KEEP_BUFFER_MAX : 0;
}

/* Frees conn-owned storage that the previous event lent out. */
static void release_event_storage(ws_conn *c) {
  if (!c->release) return;
  c->release = 0;
  if (HAS_IO(c)) ws_buf_clear_keep(&IO(c)->msg, &ENV(c)->mem, keep_size(c));
  if (WS_HAS_INFLATE && c->z) {
    ws_free(&ENV(c)->mem, c->z->zbuf);
    c->z->zbuf = NULL;
  }
  if (c->state != WS_STATE_CONNECTING && !(c->err == WS_ERR_REJECTED))
    wsc_hs_free(c);
}

int ws_conn_shrink(ws_conn *c) {
#if WS_CONN_SPLIT
  if (!c || !c->io || c->ev_ready) return 0;
  release_event_storage(c); /* (the last event's storage goes anyway) */
  const wsc_io *io = c->io;
  /* open and quiet: nothing of a frame, a message, an event, a ping or a
   * close in flight, no buffer kept */
  if (c->state != WS_STATE_OPEN || c->err || io->hs ||
      io->rx_state != RX_HEADER || io->hdrlen || io->msg_op || io->rx_comp ||
      io->tx_op || io->ref_len || io->out.base || io->msg.base ||
      c->has_pending_pong || c->ping_outstanding || c->ping_wanted ||
      c->close_arm || c->close_sent_flag)
    return 0;
  if (WS_HAS_INFLATE && c->z && (c->z->zlen || c->z->zpending)) return 0;
  ws_free(&ENV(c)->mem, io->ctrlbuf);
  ws_free(&ENV(c)->mem, c->io);
  c->io = NULL;
  return 1;
#else
  (void)c;
  return 0;
#endif
}

static WS_ALWAYS_INLINE int fast_ready(const ws_conn *c);
static WS_ALWAYS_INLINE size_t fast_frames(ws_conn *c, uint8_t *in,
                                           size_t inlen, ws_event_fn fn,
                                           void *ud, int *pstop, int avx2);

/* ws_conn_feed()'s use of the fast path: the frame's event goes to the
 * slot, and the fast path stops there. */
static int slot_event(ws_conn *c, const ws_event *ev, void *ud) {
  wsc_io *io = IO(c);
  (void)ud;
  io->ev_type = (uint8_t)ev->type;
  io->ev_flags = (uint8_t)ev->flags;
  io->ev_data = ev->data;
  io->ev_close = 0;
  c->ev_ready = 1;
  return 1;
}

/* ws_conn_feed() of an open connection that ws_conn_shrink() let go of
 * its busy-only state (out of the way of the usual path): 0 once that
 * state is back, 1 if nothing is to be read (it can stay shrunk), or the
 * error of failing to get it back. */
static WS_NOINLINE int feed_shrunk(ws_conn *c, size_t inlen) {
  if (!inlen) return 1;
  return io_get(c) ? 0 : wsc_nomem(c);
}

int ws_conn_feed(ws_conn *c, uint8_t *in, size_t inlen, size_t *pnread) {
  size_t dummy;
  if (!pnread) pnread = &dummy;
  *pnread = 0;
  if (!c || (!in && inlen)) return WS_ERR_INVALID_ARGUMENT;
  if (c->ev_ready) return WS_ERR_WOULDBLOCK;
  release_event_storage(c);
  if (c->err) return c->err;
  switch (c->state) {
  case WS_STATE_CONNECTING:
    if (!IO(c)->hs) return WS_ERR_INVALID_STATE; /* client before connect() */
    {
      int rv = wsc_feed_handshake(c, in, inlen, pnread);
      if (*pnread) c->rx_activity = 1;
      return rv;
    }
  case WS_STATE_CLOSED:
  case WS_STATE_CLOSING_REMOTE:
    /* RFC 6455 5.5.1: nothing after a close frame is processed. */
    *pnread = inlen;
    return WS_ERR_CLOSED;
  default: break;
  }
  size_t pos = 0;
  if (WS_UNLIKELY(!HAS_IO(c))) {
    int rv = feed_shrunk(c, inlen);
    if (rv) return rv > 0 ? 0 : rv;
  }
  wsc_io *io = IO(c);
  if (inlen) c->rx_activity = 1;
  if (WS_HAS_FAST_PATH && inlen && fast_ready(c)) {
    /* A whole uncompressed data frame: its event straight to the slot
     * (the fast path counts the bytes in the stats itself). */
    int stop = 0;
    size_t n = fast_frames(c, in, inlen, slot_event, NULL, &stop, 0);
    if (n) {
      *pnread = n;
      return 0;
    }
  }
  while (!c->ev_ready && !c->err) {
    size_t n = 0;
    int rv;
    if (io->rx_state == RX_HEADER) {
      if (pos == inlen) break;
      rv = wsc_read_header(c, in + pos, inlen - pos, &n);
    } else {
      /* Without input only a zero-length payload (it completes right
       * away, even at the end of the input) and a compressed message's
       * drain go on. */
      if (pos == inlen && io->remaining && !draining(c)) break;
      rv = wsc_read_payload(c, in + pos, inlen - pos, &n);
    }
    pos += n;
    if (rv) break;
  }
  *pnread = pos;
  c->stats.wire_in += pos;
  return c->err;
}

int ws_conn_feed_eof(ws_conn *c) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  if (c->err) return c->err;
  if (c->state == WS_STATE_CLOSED) {
    /* A client waiting for the server's FIN (RFC 6455 7.1.1) has it. */
    c->linger_done = 1;
    if (HAS_IO(c)) IO(c)->close_deadline = NO_DEADLINE;
    return 0;
  }
  c->state = WS_STATE_FAILED;
  c->err = WS_ERR_EOF;
  if (HAS_IO(c)) IO(c)->err_reason = EOF_REASON; /* (else: err_reason()) */
  if (HAS_IO(c)) ws_buf_free(&IO(c)->msg, &ENV(c)->mem);
  return WS_ERR_EOF;
}

/* Hands the waiting event out. */
static void take_event(ws_conn *c, ws_event *ev) {
  const wsc_io *io = IO(c); /* (an event waits only with it) */
  ev->type = (ws_event_type)io->ev_type;
  ev->flags = io->ev_flags;
  ev->data = io->ev_data;
  ev->close_code = io->ev_close;
  ev->error = 0;
  ev->request = NULL;
  ev->response = NULL;
  if (io->hs) { /* (requests come to servers, responses to clients) */
    if (!is_client(c)) {
      if (ev->type == WS_EV_REQUEST || ev->type == WS_EV_HTTP)
        ev->request = &io->hs->req;
    } else if (ev->type == WS_EV_OPEN) {
      ev->response = &io->hs->resp;
    }
  }
  c->ev_ready = 0;
}

int ws_conn_next_event(ws_conn *c, ws_event *ev) {
  if (!c || !ev) return WS_ERR_INVALID_ARGUMENT;
  if (!c->ev_ready) {
    release_event_storage(c);
#if !defined(WS_NO_DEFLATE)
    if (draining(c)) {
      size_t n;
      (void)wsc_read_compressed(c, NULL, 0, &n);
    }
#endif
  }
  if (c->ev_ready) {
    take_event(c, ev);
    return 0;
  }
  if (c->err && !c->err_reported) {
    c->err_reported = 1;
    memset(ev, 0, sizeof(*ev));
    ev->type = WS_EV_ERROR;
    ev->error = c->err;
    ev->close_code = c->err == WS_ERR_EOF ? 1006 : c->close_sent;
    const char *why = err_reason(c);
    ev->data.base = (const uint8_t *)why;
    ev->data.len = why ? strlen(why) : 0;
    if (c->err == WS_ERR_REJECTED && HAS_IO(c) && IO(c)->hs) {
      ev->response = &IO(c)->hs->resp;
      c->release = 1;
    }
    return 0;
  }
  return WS_ERR_WOULDBLOCK;
}

/* ---- batch receive ------------------------------------------------------- */

#if WS_CONN_AVX2
/* 16..31 bytes of text: unmasks them in place (without |key|, leaves
 * them) and checks them in one pass with the short AVX2 kernel; 1 only
 * for valid UTF-8 that ends on a character. */
static TGT_AVX2 WS_NOINLINE int text_avx2(uint8_t *p, size_t n,
                                          const uint8_t *key) {
  return k256_short_a(p, p, n, key, 0, 1);
}
#endif

/* Unmasks and validates a whole text frame's payload with |u| (the
 * message's state so far); |fin|: the message must end on a character;
 * |avx2|: the AVX2 kernel may be used if the CPU has it (WS_CONN_AVX2).
 * On failure the payload is masked again, as it arrived, and 0 returned:
 * the caller then leaves the frame to the general path, which reports the
 * fault exactly as it would for any split. */
static WS_ALWAYS_INLINE int fast_text(uint8_t *p, size_t n, const uint8_t *key,
                                      ws_utf8 *u, unsigned fin, int avx2) {
#if WS_CONN_AVX2
  if (avx2 && n - 16 < 16 && u->state == 0 && __builtin_cpu_supports("avx2")) {
    /* Unmasked in place either way; valid, the state stays 0. */
    if (text_avx2(p, n, key)) return 1;
    if (ws_utf8_scan(u, p, n) == n && (!fin || ws_utf8_finish(u) == 0))
      return 1;
    if (key) unmask_small(p, n, key);
    return 0;
  }
#else
  (void)avx2;
#endif
  if (n <= SMALL_PAYLOAD) {
    if (key) unmask_small(p, n, key);
    if (u->state == 0 && ascii_small(p, n)) return 1;
    if (ws_utf8_scan(u, p, n) == n && (!fin || ws_utf8_finish(u) == 0))
      return 1;
    if (key) unmask_small(p, n, key);
    return 0;
  }
  if (key) (void)ws_mask(p, n, key, 0);
  if (ws_utf8_scan(u, p, n) == n && (!fin || ws_utf8_finish(u) == 0)) return 1;
  if (key) (void)ws_mask(p, n, key, 0);
  return 0;
}

/* The connection is between frames with nothing waiting: whole frames in
 * the input can take the fast path. */
static WS_ALWAYS_INLINE int fast_ready(const ws_conn *c) {
  const wsc_io *io = IO(c);
  return HAS_IO(c) &&
         (c->ev_ready | c->release | io->hdrlen | io->rx_comp) == 0 &&
         c->err == 0 && io->rx_state == RX_HEADER &&
         (c->state == WS_STATE_OPEN || c->state == WS_STATE_CLOSING_LOCAL);
}

/*
 * The fast path of ws_conn_feed_events(): uncompressed data frames with a
 * 2- or 4-byte length header that are whole in |in| and pass every rule,
 * handed to |fn| straight from the input (in WS_DELIVER_MESSAGE mode,
 * single-frame messages, which need no assembly). It stops at the first
 * frame it does not take: a control frame, a frame split across reads, a
 * compressed or over-limit one, any fault. That frame goes through the
 * general path (ws_conn_feed()), from the same state and bytes, so events,
 * errors and their order are those of the general path for any split.
 * Returns the bytes used; sets |*pstop| if |fn| asked to stop.
 */
static WS_ALWAYS_INLINE size_t fast_frames(ws_conn *c, uint8_t *in,
                                           size_t inlen, ws_event_fn fn,
                                           void *ud, int *pstop, int avx2) {
  wsc_io *io = IO(c);
  const unsigned want_mask = is_client(c) ? 0u : 0x80u;
  const unsigned message = c->delivery == WS_DELIVER_MESSAGE;
  const uint64_t max_frame = ENV(c)->cfg.max_frame_payload;
  /* A first frame's limit: frame and message limits at once (one frame
   * of a new message never exceeds max_fragments, which is 0 or more). */
  const uint64_t max_first = WS_MIN(max_frame, ENV(c)->cfg.max_message);
  const uint8_t state = c->state;
  size_t pos = 0;
  ws_event ev;

  memset(&ev, 0, sizeof(ev));
  while (inlen - pos >= 2) {
    uint8_t *h = in + pos;
    unsigned b0 = h[0], b1 = h[1], op = b0 & 0x0Fu, fin = b0 >> 7;
    size_t avail = inlen - pos, hl, plen;
    /* RSV bits, control and reserved opcodes, masking by role (RFC 6455
     * 5.1, 5.2): anything unusual is the general path's. */
    if ((b0 & 0x70u) || op > WS_OP_BINARY || (b1 & 0x80u) != want_mask) break;
    plen = b1 & 0x7Fu;
    hl = want_mask ? 6u : 2u;
    if (plen >= 126) {
      if (plen == 127 || avail < 4) break;
      plen = (size_t)h[2] << 8 | h[3];
      hl += 2;
    }
    if (avail < hl + plen)
      break; /* not whole here (no overflow: both
                are at most 16 bits) */
    /* RFC 6455 5.4: continuation only inside a message, a new message
     * only after the previous one ended. */
    unsigned mop;
    uint64_t before = 0;
    uint32_t nfrags = 1;
    if (op != WS_OP_CONT) {
      if (io->msg_op || plen > max_first || message > fin) break;
      mop = op;
    } else {
      if (!io->msg_op || message) break;
      mop = io->msg_op;
      before = io->msg_bytes;
      nfrags = io->nfrags + 1;
      if (plen > max_frame || plen > ENV(c)->cfg.max_message - before ||
          (ENV(c)->cfg.max_fragments && nfrags > ENV(c)->cfg.max_fragments))
        break;
    }
    uint8_t *p = h + hl;
    const uint8_t *key = want_mask ? p - 4 : NULL;
    if (mop == WS_OP_TEXT) {
      ws_utf8 u = io->utf8;
      if (op != WS_OP_CONT) u.state = 0;
      if (!fast_text(p, plen, key, &u, fin, avx2)) break;
      io->utf8 = u;
    } else if (key) {
      if (plen <= SMALL_PAYLOAD)
        unmask_small(p, plen, key);
      else
        (void)ws_mask(p, plen, key, 0);
    }
    /* The frame is in: the state the general path would leave (the
     * counts of a message are only read while it is open). */
    c->stats.bytes_in += plen;
    c->stats.wire_in += hl + plen;
    ev.type = mop == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY;
    ev.flags = (op != WS_OP_CONT ? WS_EVF_FIRST : 0u) | WS_EVF_FRAME_END;
    if (fin) {
      ev.flags |= WS_EVF_FINAL;
      io->msg_op = 0;
      c->stats.msgs_in++;
    } else {
      io->msg_op = (uint8_t)mop;
      io->nfrags = nfrags;
      io->msg_bytes = before + plen;
      c->msg_started = 1;
    }
    ev.data.base = p;
    ev.data.len = plen;
    pos += hl + plen;
    if (fn(c, &ev, ud)) {
      *pstop = 1;
      break;
    }
    /* |fn| may close or fail the connection (nothing it may call queues
     * an event or touches the receive state); whatever sets |err| also
     * moves |state| (to FAILED, or CLOSED for ws_conn_respond()). */
    if (c->state != state) break;
  }
  return pos;
}

int ws_conn_feed_events(ws_conn *c, uint8_t *in, size_t inlen,
                        size_t *pnread, ws_event_fn fn, void *user_data) {
  size_t dummy, pos = 0;
  ws_event ev;
  int rv = 0;
  if (!pnread) pnread = &dummy;
  *pnread = 0;
  if (!c || !fn || (!in && inlen)) return WS_ERR_INVALID_ARGUMENT;
  /* Input for a connection that ws_conn_shrink() let go of its busy-only
   * state: that state again first, so that the frames take the fast path
   * (failing, the error event goes out below). */
  if (!HAS_IO(c) && inlen && !c->err && !io_get(c)) (void)wsc_nomem(c);
  for (;;) {
    /* Events already waiting (or a compressed message's drain, storage
     * to release, an error to report) first. (rx_comp is never set
     * without the inflater: not even read then.) */
    while ((c->ev_ready || c->release ||
            (WS_HAS_INFLATE && HAS_IO(c) && IO(c)->rx_comp) ||
            (c->err && !c->err_reported)) &&
           ws_conn_next_event(c, &ev) == 0) {
      if (fn(c, &ev, user_data)) {
        *pnread = pos;
        return rv;
      }
    }
    if (rv) break; /* the error event, if any, is out */
    if (WS_HAS_FAST_PATH && pos < inlen && fast_ready(c)) {
      int stop = 0;
      size_t n = fast_frames(c, in + pos, inlen - pos, fn, user_data, &stop, 1);
      if (n) c->rx_activity = 1;
      pos += n;
      if (stop) break;
    }
    if (pos == inlen) break;
    size_t n = 0;
    rv = ws_conn_feed(c, in + pos, inlen - pos, &n);
    pos += n;
    if (rv == WS_ERR_WOULDBLOCK) {
      /* A request waiting for the application's answer. */
      rv = 0;
      if (!c->ev_ready) break;
    } else if (!rv && !n && !c->ev_ready) {
      break; /* nothing taken, nothing to say: do not spin */
    }
  }
  *pnread = pos;
  return rv ? rv : c->err;
}

/* ---- output draining ----------------------------------------------------- */

size_t ws_conn_out_peek(const ws_conn *c, ws_iovec *iov, size_t iovcnt) {
  if (!c || !iov || iovcnt == 0 || out_size(c) == 0) return 0;
  const uint8_t *ob = IO(c)->out.base ? IO(c)->out.base + IO(c)->out.pos : NULL;
  size_t osz = ws_buf_size(&IO(c)->out), k = 0;
  if (!WS_SMALL_CODE && !IO(c)->ref_len) {
    /* (the general way below gives the same: without a payload ref_at
     * is 0; size builds take it) */
    iov[0].base = ob;
    iov[0].len = osz;
    return 1;
  }
  /* out up to the payload, the caller's payload, the rest of out */
  if (IO(c)->ref_at) {
    iov[k].base = ob;
    iov[k++].len = IO(c)->ref_at;
  }
  if (k < iovcnt && IO(c)->ref_len) {
    iov[k].base = IO(c)->ref;
    iov[k++].len = IO(c)->ref_len;
  }
  if (k < iovcnt && osz > IO(c)->ref_at) {
    iov[k].base = ob + IO(c)->ref_at;
    iov[k++].len = osz - IO(c)->ref_at;
  }
  return k;
}

void ws_conn_out_consume(ws_conn *c, size_t n) {
  if (!c || !HAS_IO(c)) return;
  size_t b = 0; /* bytes of the caller's payload among the |n| */
  if (IO(c)->ref_len) {
    /* out up to the payload, then the payload; what is left of |n| is
     * the rest of out (one consume for both parts of out: the payload
     * lies between them only on the wire) */
    size_t a = WS_MIN(n, (size_t)IO(c)->ref_at);
    IO(c)->ref_at -= (uint32_t)a;
    b = IO(c)->ref_at ? 0 : WS_MIN(n - a, (size_t)IO(c)->ref_len);
    IO(c)->ref += b;
    IO(c)->ref_len -= (uint32_t)b;
    if (!IO(c)->ref_len) IO(c)->ref = NULL;
  }
  ws_buf_consume_keep(&IO(c)->out, &ENV(c)->mem, n - b, keep_size(c));
  if (c->has_pending_pong && !out_full(c) && !c->close_sent_flag) {
    if (wsc_queue_frame(c, WS_FIN | WS_OP_PONG, IO(c)->ctrlbuf + CTRL_PONG,
                        IO(c)->pending_pong_len) == 0)
      c->has_pending_pong = 0;
  }
  if (c->ping_wanted && !out_full(c) && c->state == WS_STATE_OPEN && !c->err) {
    if (wsc_queue_frame(c, WS_FIN | WS_OP_PING, NULL, 0) == 0)
      c->ping_wanted = 0;
  }
}

size_t ws_conn_out_pending(const ws_conn *c) { return c ? out_size(c) : 0; }

/* ---- time ---------------------------------------------------------------- */

/* When the next keepalive ping is due (NO_DEADLINE: none). Out of line:
 * ws_conn_tick() and ws_conn_next_deadline() share one copy. */
static WS_NOINLINE uint64_t ping_deadline(const ws_conn *c) {
  if (!ENV(c)->cfg.ping_interval_ms || c->state != WS_STATE_OPEN ||
      c->ping_outstanding || c->ping_wanted || !c->clock_started)
    return NO_DEADLINE;
  return c->last_rx + ENV(c)->cfg.ping_interval_ms;
}

int ws_conn_tick(ws_conn *c, uint64_t now) {
  if (!c) return WS_ERR_INVALID_ARGUMENT;
  release_event_storage(c);
  if (!c->clock_started) {
    c->clock_started = 1;
    c->now = c->last_rx = now;
    if (c->state == WS_STATE_CONNECTING && IO(c)->handshake_timeout_ms)
      IO(c)->hs_deadline = now + IO(c)->handshake_timeout_ms;
  } else if (now > c->now) {
    c->now = now;
  }
  now = c->now; /* (the clock never goes back) */
  /* (the deadlines other than the ping's are the busy-only state's: a
   * connection that ws_conn_shrink() let go of it has none armed) */
  wsc_io *io = HAS_IO(c) ? IO(c) : NULL;
  if (c->close_arm) {
    c->close_arm = 0;
    if (io) io->close_deadline = now + ENV(c)->cfg.close_timeout_ms;
  }
  if (c->err) return c->err;
  if (c->rx_activity) {
    c->rx_activity = 0;
    c->last_rx = now;
    /* Any bytes from the peer prove it is alive. */
    c->ping_outstanding = 0;
    c->ping_wanted = 0;
    if (io) io->pong_deadline = NO_DEADLINE;
  }
  if (io) {
    if (now >= io->hs_deadline && c->state == WS_STATE_CONNECTING)
      return wsc_fault(c, F_HS_TIMEOUT);
    if (now >= io->close_deadline) {
      io->close_deadline = NO_DEADLINE;
      if (c->state == WS_STATE_CLOSED) {
        c->linger_done = 1; /* client: stop waiting for the server's FIN */
        return 0;
      }
      if (c->state == WS_STATE_CLOSING_LOCAL)
        return wsc_fault(c, F_CLOSE_TIMEOUT);
    }
    if (now >= io->pong_deadline) return wsc_fault(c, F_PONG_TIMEOUT);
  }
  if (now >= ping_deadline(c)) {
    /* With the output queue full the ping waits for room (it goes out
     * from ws_conn_out_consume()), but the pong timeout starts now: a
     * peer that neither reads nor sends is as dead as one that does not
     * answer. Either way the ping deadline is spent, so the next
     * deadline is never one that this call would leave unchanged. */
    if (out_full(c)) {
      c->ping_wanted = 1;
    } else if (!io_get(c) || wsc_queue_frame(c, WS_FIN | WS_OP_PING, NULL, 0)) {
      return wsc_nomem(c);
    }
    c->ping_outstanding = 1;
    if (ENV(c)->cfg.pong_timeout_ms) /* (out_full() or io_get(): there) */
      IO(c)->pong_deadline = now + ENV(c)->cfg.pong_timeout_ms;
  }
  return 0;
}

uint64_t ws_conn_next_deadline(const ws_conn *c) {
  if (!c || c->err) return NO_DEADLINE;
  if (!c->clock_started) return 0; /* tick once to start the clock */
  if (c->close_arm) return c->now; /* tick now to start the close timer */
  uint64_t d = ping_deadline(c);
  if (HAS_IO(c)) {
    d = WS_MIN(d, IO(c)->hs_deadline);
    d = WS_MIN(d, IO(c)->pong_deadline);
    d = WS_MIN(d, IO(c)->close_deadline);
  }
  return d;
}

/* ---- queries ------------------------------------------------------------- */

ws_state ws_conn_state(const ws_conn *c) {
  return c ? (ws_state)c->state : WS_STATE_FAILED;
}

int ws_conn_want_read(const ws_conn *c) {
  if (!c || c->err) return 0;
  if (c->state == WS_STATE_CLOSED) return is_client(c) && !c->linger_done;
  return !out_full(c);
}

int ws_conn_want_write(const ws_conn *c) { return c && out_size(c) > 0; }

int ws_conn_should_close_transport(const ws_conn *c) {
  if (!c || out_size(c) > 0) return 0;
  if (c->err) return 1;
  if (c->state == WS_STATE_CLOSED)
    return !is_client(c) || c->linger_done; /* RFC 6455 7.1.1 */
  return 0;
}

uint16_t ws_conn_close_code(const ws_conn *c) { return c ? c->close_sent : 0; }

ws_slice ws_conn_protocol(const ws_conn *c) {
  ws_slice s = {NULL, 0};
  if (c && c->protocol) {
    s.base = c->protocol;
    s.len = c->protocollen;
  }
  return s;
}

void ws_conn_stats(const ws_conn *c, ws_stats *pstats) {
  if (c && pstats) *pstats = c->stats;
}

void ws_conn_pmd(const ws_conn *c, ws_pmd_params *params) {
  if (!params) return;
  memset(params, 0, sizeof(*params));
  if (c) *params = c->pmd;
}

/* ---- h-budget: one getter for the loop's message timeout ---------------- */

int ws_conn_rx_message(const ws_conn *c, uint64_t *pbytes) {
  int on = c && HAS_IO(c) && IO(c)->msg_op != 0;
  /* (a compressed message: what was inflated; never without inflate) */
  if (pbytes)
    *pbytes = !on                                        ? 0
              : WS_HAS_INFLATE && IO(c)->rx_comp && c->z ? c->z->inflated
                                                         : IO(c)->msg_bytes;
  return on;
}
