/*
 * No heap: a client and a server, each in a static pool of exactly
 * ws_conn_memsize() bytes through the library's arena (the client's
 * object in caller storage, ws_conn_init()), do the opening handshake,
 * exchange 100 text messages of 4 KiB each way and close. malloc,
 * realloc and free are wrapped at link time (-Wl,--wrap) to abort: any
 * use of the heap by the library or this test fails it.
 *
 * With a build switch (README "Firmware") it checks the switch instead:
 * the part left out is WS_ERR_INVALID_ARGUMENT.
 *
 * No cmocka (it allocates): a failed check prints and exits nonzero.
 * SPDX-License-Identifier: MIT
 */
#include <ws/ws.h>

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* While |armed| (the tests themselves), any call aborts. Outside them
 * the C library's run: a coverage or sanitizer runtime may allocate
 * before main() or at exit. */
static int armed;
void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
void *__wrap_malloc(size_t n) {
  if (armed) abort();
  return __real_malloc(n);
}
void *__wrap_realloc(void *p, size_t n) {
  if (armed) abort();
  return __real_realloc(p, n);
}
void __wrap_free(void *p) {
  if (armed && p) abort();
  __real_free(p);
}

#define CHECK(x)                                                               \
  do {                                                                         \
    if (!(x)) {                                                                \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);    \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define MSGS 100
#define MSGLEN 4096

static int test_rand(uint8_t *buf, size_t len, void *ud) {
  uint32_t *s = ud;
  for (size_t i = 0; i < len; i++) {
    *s = *s * 1103515245u + 12345u;
    buf[i] = (uint8_t)(*s >> 16);
  }
  return 0;
}

static void config(ws_config *cfg, ws_role role, uint32_t *seed) {
  ws_config_default(cfg, role);
  cfg->rand = test_rand;
  cfg->rand_user_data = seed;
  cfg->delivery = WS_DELIVER_MESSAGE;
  cfg->max_message = cfg->max_frame_payload = MSGLEN;
  cfg->max_out_queue = 2 * MSGLEN;
  cfg->max_handshake_bytes = 1024;
  cfg->max_headers = 16;
}

#if !defined(WS_NO_SERVER) && !defined(WS_NO_CLIENT)

typedef struct peer {
  ws_conn *c;
  int open, closed, error;
  unsigned rx;
} peer;

static void fill(uint8_t *p, unsigned i) {
  for (size_t j = 0; j < MSGLEN; j++)
    p[j] = (uint8_t)('a' + (i + j) % 26);
}

static void on_events(peer *p) {
  ws_event ev;
  static uint8_t want[MSGLEN];
  while (ws_conn_next_event(p->c, &ev) == 0) {
    switch (ev.type) {
    case WS_EV_REQUEST: CHECK(ws_conn_accept(p->c, NULL) == 0); break;
    case WS_EV_OPEN: p->open = 1; break;
    case WS_EV_TEXT:
      CHECK(ev.flags & WS_EVF_FINAL);
      CHECK(ev.data.len == MSGLEN);
      fill(want, p->rx);
      CHECK(memcmp(ev.data.base, want, MSGLEN) == 0);
      p->rx++;
      break;
    case WS_EV_CLOSE: p->closed = 1; break;
    case WS_EV_ERROR: p->error = ev.error; break;
    default: break;
    }
  }
}

/* Moves everything |from| has queued into |to|, handling |to|'s events.
 * Returns the bytes moved. */
static size_t pump(peer *from, peer *to) {
  static uint8_t wire[2048];
  ws_iovec v;
  size_t total = 0;
  while (ws_conn_out_peek(from->c, &v, 1) == 1) {
    size_t n = v.len < sizeof(wire) ? v.len : sizeof(wire), off = 0;
    memcpy(wire, v.base, n);
    ws_conn_out_consume(from->c, n);
    total += n;
    while (off < n) {
      size_t used = 0;
      int rv = ws_conn_feed(to->c, wire + off, n - off, &used);
      off += used;
      on_events(to);
      if (rv && rv != WS_ERR_WOULDBLOCK) return total;
    }
  }
  return total;
}

static void pump_all(peer *a, peer *b) {
  while (pump(a, b) + pump(b, a)) {
  }
}

static void send_msg(peer *p, peer *q, unsigned i) {
  static uint8_t msg[MSGLEN];
  fill(msg, i);
  int rv;
  while ((rv = ws_conn_send(p->c, WS_OP_TEXT, msg, MSGLEN, 0)) ==
         WS_ERR_WOULDBLOCK)
    pump_all(p, q);
  CHECK(rv == 0);
}

static alignas(max_align_t) uint8_t pool_c[1 << 16];
static alignas(max_align_t) uint8_t pool_s[1 << 16];
static alignas(max_align_t) uint8_t conn_block[1024];

static void test_pair(void) {
  uint32_t seed = 1;
  ws_config cc, sc;
  ws_arena ac, as;
  ws_mem mc, ms;
  peer cl = {0}, sv = {0};
  config(&cc, WS_ROLE_CLIENT, &seed);
  config(&sc, WS_ROLE_SERVER, &seed);
  size_t need_c = ws_conn_memsize(&cc), need_s = ws_conn_memsize(&sc);
  /* the client's object is in conn_block, not in its pool */
  size_t obj = ws_conn_sizeof() + WS_ARENA_ALIGN;
  CHECK(ws_conn_sizeof() <= sizeof(conn_block));
  CHECK(need_c > obj && need_c - obj <= sizeof(pool_c));
  CHECK(need_s <= sizeof(pool_s));
  CHECK(ws_arena_init(&ac, pool_c, need_c - obj, &mc) == 0);
  CHECK(ws_arena_init(&as, pool_s, need_s, &ms) == 0);
  CHECK(ws_conn_init(&cl.c, conn_block, sizeof(conn_block), &cc, &mc) == 0);
  CHECK(ws_conn_new(&sv.c, &sc, &ms) == 0);

  ws_client_params p;
  memset(&p, 0, sizeof(p));
  p.host = "example.com";
  p.path = "/chat";
  CHECK(ws_conn_connect(cl.c, &p) == 0);
  pump_all(&cl, &sv);
  CHECK(cl.open && sv.open);

  for (unsigned i = 0; i < MSGS; i++) {
    send_msg(&cl, &sv, i);
    send_msg(&sv, &cl, i);
    pump_all(&cl, &sv);
  }
  CHECK(cl.rx == MSGS && sv.rx == MSGS);

  /* zero-copy sends: the payload stays in |ref| until it is consumed,
   * and what is queued after it (a ping) goes out after it */
  static uint8_t ref[MSGLEN];
  for (unsigned i = MSGS; i < MSGS + 10; i++) {
    peer *from = (i & 1) ? &sv : &cl, *to = (i & 1) ? &cl : &sv;
    unsigned before = to->rx;
    fill(ref, to->rx);
    CHECK(ws_conn_send_ref(from->c, WS_OP_TEXT, ref, MSGLEN, 0) == 0);
    CHECK(ws_conn_send_ref_pending(from->c) == MSGLEN);
    CHECK(ws_conn_send_ref(from->c, WS_OP_TEXT, ref, MSGLEN, 0) ==
          WS_ERR_WOULDBLOCK);
    CHECK(ws_conn_ping(from->c, "p", 1) == 0);
    ws_iovec v[3];
    CHECK(ws_conn_out_peek(from->c, v, 3) == 3);
    CHECK(v[1].base == ref && v[1].len == MSGLEN);
    CHECK(v[0].len == 4 + ((i & 1) ? 0u : 4u)); /* header (+ mask key) */
    CHECK(ws_conn_out_pending(from->c) == v[0].len + MSGLEN + v[2].len);
    pump_all(&cl, &sv);
    CHECK(ws_conn_send_ref_pending(from->c) == 0);
    CHECK(to->rx == before + 1 && !to->error);
  }
  CHECK(ws_conn_close(cl.c, 1000, "bye", 3) == 0);
  pump_all(&cl, &sv);
  CHECK(sv.closed && cl.closed);
  CHECK(!cl.error || cl.error == WS_ERR_CLOSED);
  CHECK(!sv.error || sv.error == WS_ERR_CLOSED);

  printf("noheap: client pool %zu B (peak %zu), server pool %zu B "
         "(peak %zu), ws_conn_sizeof %zu B\n",
         need_c - obj, ws_arena_peak(&ac), need_s, ws_arena_peak(&as),
         ws_conn_sizeof());
  ws_conn_fini(cl.c);
  ws_conn_del(sv.c);
  CHECK(ac.used == 0 && as.used == 0);
}
#endif

/* The parts a build switch leaves out are refused. */
static void test_switches(void) {
  uint32_t seed = 1;
  ws_config cfg;
  ws_conn *c = NULL;
  ws_arena a;
  ws_mem m;
  static alignas(max_align_t) uint8_t pool[1 << 14];
  CHECK(ws_arena_init(&a, pool, sizeof(pool), &m) == 0);
#if defined(WS_NO_DEFLATE)
  config(&cfg, WS_ROLE_CLIENT, &seed);
  cfg.pmd.enable = 1;
  CHECK(ws_conn_new(&c, &cfg, &m) == WS_ERR_INVALID_ARGUMENT && !c);
#endif
#if defined(WS_NO_DEFLATE) || defined(WS_INFLATE_ONLY)
  ws_pmd_shared *sh = NULL;
  CHECK(ws_pmd_shared_new(&sh, 6, &m) == WS_ERR_INVALID_ARGUMENT && !sh);
#endif
#if defined(WS_NO_SERVER)
  config(&cfg, WS_ROLE_SERVER, &seed);
  CHECK(ws_conn_new(&c, &cfg, &m) == WS_ERR_INVALID_ARGUMENT && !c);
  /* no ws_conn_shared without the server role: its functions refuse, and
   * the environment lives inside the object */
  {
    ws_conn_shared *csh = (ws_conn_shared *)&seed;
    static alignas(max_align_t) uint8_t blk[1024];
    config(&cfg, WS_ROLE_CLIENT, &seed);
    CHECK(ws_conn_shared_new(&csh, &cfg, &m) == WS_ERR_INVALID_ARGUMENT && !csh);
    c = (ws_conn *)&seed;
    CHECK(ws_conn_new_shared(&c, NULL) == WS_ERR_INVALID_ARGUMENT && !c);
    c = (ws_conn *)&seed;
    CHECK(ws_conn_init_shared(&c, blk, sizeof(blk), NULL) ==
              WS_ERR_INVALID_ARGUMENT &&
          !c);
    ws_conn_shared_del(NULL);
    CHECK(ws_conn_sizeof_shared() == ws_conn_sizeof());
  }
#else
  /* a listener's connections share one environment */
  {
    ws_conn_shared *lsh = NULL;
    config(&cfg, WS_ROLE_SERVER, &seed);
    CHECK(ws_conn_shared_new(&lsh, &cfg, &m) == 0 && lsh);
    CHECK(ws_conn_new_shared(&c, lsh) == 0 && c);
    CHECK(ws_conn_sizeof_shared() < ws_conn_sizeof());
    ws_conn_shared_del(lsh);
    ws_conn_del(c); /* frees the environment too */
    c = NULL;
    CHECK(a.used == 0);
  }
#endif
#if defined(WS_NO_CLIENT)
  config(&cfg, WS_ROLE_CLIENT, &seed);
  CHECK(ws_conn_new(&c, &cfg, &m) == WS_ERR_INVALID_ARGUMENT && !c);
#endif
  /* what is built works, in the arena */
#if !defined(WS_NO_CLIENT)
  config(&cfg, WS_ROLE_CLIENT, &seed);
#else
  config(&cfg, WS_ROLE_SERVER, &seed);
#endif
  CHECK(ws_conn_new(&c, &cfg, &m) == 0);
  ws_conn_del(c);
  CHECK(a.used == 0);
}

int main(void) {
  armed = 1;
  test_switches();
#if !defined(WS_NO_SERVER) && !defined(WS_NO_CLIENT)
  test_pair();
#endif
  armed = 0;
  printf("test_noheap: ok\n");
  return 0;
}
