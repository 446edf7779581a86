/*
 * Prepared messages (ws_prepared_new(), ws_conn_send_prepared()): the
 * exact bytes each connection queues, which connections share one
 * compression (RFC 7692 7.1.1.1, 7.1.2.1) and which compress on their
 * own, that every peer decodes what it was sent, the state rules of a
 * normal send with their exact codes, and memory.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include "ws_deflate.h"
#include "ws_prepared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a client and a server connection in memory -------------------------- */

typedef struct pair {
  ws_conn *c, *s;
  uint64_t rng;
} pair;

/* Moves everything |from| has queued into |to| and pulls |to|'s events:
 * requests are accepted; the payload of the last whole message (message
 * delivery) is kept in |*pmsg| (malloc'd, may be NULL to drop it). */
static size_t pump(ws_conn *from, ws_conn *to, uint8_t **pmsg,
                   size_t *pmsglen) {
  ws_iovec iov[4];
  size_t n, moved = 0, msgs = 0;
  while ((n = ws_conn_out_peek(from, iov, 4)) > 0) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
      uint8_t *copy = malloc(iov[i].len + 1);
      memcpy(copy, iov[i].base, iov[i].len);
      size_t off = 0;
      while (off < iov[i].len) {
        size_t used = 0;
        int rv = ws_conn_feed(to, copy + off, iov[i].len - off, &used);
        off += used;
        ws_event ev;
        while (ws_conn_next_event(to, &ev) == 0) {
          if (ev.type == WS_EV_REQUEST)
            assert_int_equal(ws_conn_accept(to, NULL), 0);
          if (ev.type == WS_EV_TEXT || ev.type == WS_EV_BINARY) {
            msgs++;
            if (pmsg) {
              free(*pmsg);
              *pmsg = malloc(ev.data.len + 1);
              if (ev.data.len) memcpy(*pmsg, ev.data.base, ev.data.len);
              *pmsglen = ev.data.len;
            }
          }
          assert_int_not_equal(ev.type, WS_EV_ERROR);
        }
        assert_true(rv == 0 || rv == WS_ERR_WOULDBLOCK);
      }
      free(copy);
      total += iov[i].len;
    }
    ws_conn_out_consume(from, total);
    moved += total;
  }
  (void)moved;
  return msgs;
}

/* Opens a pair: the client offers what |cpmd| asks (NULL: no extension),
 * the server accepts with |spmd| (NULL: none); the server's allocator is
 * |smem| (may be NULL) and its output queue |max_out| (0: default). */
static void pair_open(pair *p, const ws_pmd_config *cpmd,
                      const ws_pmd_config *spmd, const ws_mem *smem,
                      uint32_t max_out) {
  ws_config cc, sc;
  memset(p, 0, sizeof(*p));
  p->rng = 7;
  ws_config_default(&cc, WS_ROLE_CLIENT);
  cc.rand = tu_rand_fn;
  cc.rand_user_data = &p->rng;
  cc.max_message = 1u << 24;
  cc.delivery = WS_DELIVER_MESSAGE; /* one event per message */
  if (cpmd) cc.pmd = *cpmd;
  ws_config_default(&sc, WS_ROLE_SERVER);
  if (spmd) sc.pmd = *spmd;
  if (max_out) sc.max_out_queue = max_out;
  sc.rand = tu_rand_fn;
  sc.rand_user_data = &p->rng;
  sc.delivery = WS_DELIVER_MESSAGE;
  assert_int_equal(ws_conn_new(&p->c, &cc, NULL), 0);
  assert_int_equal(ws_conn_new(&p->s, &sc, smem), 0);
  ws_client_params cp;
  memset(&cp, 0, sizeof(cp));
  cp.host = "h";
  assert_int_equal(ws_conn_connect(p->c, &cp), 0);
  pump(p->c, p->s, NULL, NULL);
  pump(p->s, p->c, NULL, NULL);
  assert_int_equal(ws_conn_state(p->s), WS_STATE_OPEN);
  assert_int_equal(ws_conn_state(p->c), WS_STATE_OPEN);
}

static void pair_close(pair *p) {
  ws_conn_del(p->c);
  ws_conn_del(p->s);
}

/* What |c| has queued, taken out (malloc'd). */
static uint8_t *take(ws_conn *c, size_t *plen) {
  ws_iovec iov[4];
  size_t n, len = 0;
  uint8_t *out = malloc(ws_conn_out_pending(c) + 1);
  while ((n = ws_conn_out_peek(c, iov, 4)) > 0) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
      memcpy(out + len, iov[i].base, iov[i].len);
      len += iov[i].len;
      total += iov[i].len;
    }
    ws_conn_out_consume(c, total);
  }
  *plen = len;
  return out;
}

/* Feeds |len| bytes of wire into the client of |p| and checks the one
 * message that arrives is |msg|. */
static void client_gets(pair *p, const uint8_t *wire, size_t len,
                        const void *msg, size_t msglen) {
  uint8_t *copy = malloc(len + 1), *got = NULL;
  size_t gotlen = 0, off = 0, msgs = 0;
  memcpy(copy, wire, len);
  while (off < len) {
    size_t used = 0;
    int rv = ws_conn_feed(p->c, copy + off, len - off, &used);
    assert_true(rv == 0 || rv == WS_ERR_WOULDBLOCK);
    off += used;
    ws_event ev;
    while (ws_conn_next_event(p->c, &ev) == 0) {
      assert_true(ev.type == WS_EV_TEXT || ev.type == WS_EV_BINARY);
      msgs++;
      free(got);
      got = malloc(ev.data.len + 1);
      if (ev.data.len) memcpy(got, ev.data.base, ev.data.len);
      gotlen = ev.data.len;
    }
  }
  assert_int_equal(msgs, 1);
  assert_int_equal(gotlen, msglen);
  if (msglen) assert_memory_equal(got, msg, msglen);
  free(got);
  free(copy);
}

static ws_pmd_config pmd(int server_nct, unsigned server_bits) {
  ws_config cfg;
  ws_config_default(&cfg, WS_ROLE_SERVER);
  cfg.pmd.enable = 1;
  cfg.pmd.server_no_context_takeover = (uint8_t)server_nct;
  cfg.pmd.server_max_window_bits = (uint8_t)server_bits;
  return cfg.pmd;
}

/* Chat-like text, deterministic; with |far|, runs of 40 bytes repeated
 * from |far| bytes back, and from 6 * |far| back where there is that
 * much. */
static uint8_t *chat_text(size_t len, size_t far) {
  static const char *const words[] = {"hello", "anyone", "up", "for", "a",
                                      "round", "meet", "at", "the", "gate"};
  uint8_t *t = malloc(len + 1);
  uint64_t r = 3;
  size_t i = 0;
  while (i < len) {
    if (far && i >= far && tu_rand(&r) % 4 == 0) {
      size_t n = WS_MIN((size_t)40, len - i);
      size_t d = i >= 6 * far && tu_rand(&r) % 2 ? 6 * far : far;
      memmove(t + i, t + i - d, n);
      i += n;
      continue;
    }
    /* (one draw per statement: argument order is unspecified) */
    const char *w = words[tu_rand(&r) % 10];
    char letter = (char)('a' + tu_rand(&r) % 26);
    unsigned num = tu_rand(&r) % 1000;
    char buf[48];
    int n = snprintf(buf, sizeof(buf), "%s%c%u ", w, letter, num);
    for (int k = 0; k < n && i < len; k++) t[i++] = (uint8_t)buf[k];
  }
  return t;
}

/* ---- plain frames ---------------------------------------------------------- */

/* RFC 6455 5.7: "Hello" unmasked is 81 05 48 65 6c 6c 6f, the same bytes
 * for every server connection; a 16-bit length for 200 bytes; a
 * connection that negotiated deflate gets the plain frame under its
 * min_size, and with WS_SEND_NO_COMPRESS. */
static void plain_frame_shared(void **state) {
  (void)state;
  pair p[4];
  ws_pmd_config on = pmd(1, 15);
  for (int i = 0; i < 3; i++) pair_open(&p[i], NULL, NULL, NULL, 0);
  pair_open(&p[3], &on, &on, NULL, 0); /* min_size 32 */
  ws_prepared *hello, *big, *nc;
  uint8_t msg[200];
  for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)('a' + i % 26);
  assert_int_equal(ws_prepared_new(&hello, WS_OP_TEXT, "Hello", 5, 0, NULL), 0);
  assert_int_equal(ws_prepared_new(&big, WS_OP_BINARY, msg, 200, 0, NULL), 0);
  assert_int_equal(ws_prepared_new(&nc, WS_OP_BINARY, msg, 200,
                                   WS_SEND_NO_COMPRESS, NULL), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ws_conn_send_prepared(p[i].s, hello), 0);
    size_t n;
    uint8_t *out = take(p[i].s, &n);
    tu_assert_hex(out, n, "81 05 48 65 6c 6c 6f");
    client_gets(&p[i], out, n, "Hello", 5);
    free(out);
    if (i == 3) {
      assert_int_equal(ws_conn_send_prepared(p[i].s, nc), 0);
    } else {
      assert_int_equal(ws_conn_send_prepared(p[i].s, big), 0);
    }
    out = take(p[i].s, &n);
    assert_int_equal(n, 4 + 200);
    tu_assert_hex(out, 4, "82 7e 00 c8");
    assert_memory_equal(out + 4, msg, 200);
    client_gets(&p[i], out, n, msg, 200);
    free(out);
    ws_stats st;
    ws_conn_stats(p[i].s, &st);
    assert_int_equal(st.msgs_out, 2);
    assert_int_equal(st.bytes_out, 205);
  }
  /* an empty message */
  ws_prepared *empty;
  assert_int_equal(ws_prepared_new(&empty, WS_OP_TEXT, NULL, 0, 0, NULL), 0);
  assert_int_equal(ws_conn_send_prepared(p[0].s, empty), 0);
  size_t n;
  uint8_t *out = take(p[0].s, &n);
  tu_assert_hex(out, n, "81 00");
  free(out);
  ws_prepared_del(empty);
  ws_prepared_del(hello);
  ws_prepared_del(big);
  ws_prepared_del(nc);
  for (int i = 0; i < 4; i++) pair_close(&p[i]);
}

/* ---- compressed once ------------------------------------------------------ */

/* RFC 7692 7.2.3.1: "Hello" compressed is c1 07 f2 48 cd c9 c9 07 00 on
 * every connection whose server keeps no context; a 4 KiB chat text is
 * compressed once (the prepared message's allocator sees no more calls
 * after the first connection), its bytes are what ws_conn_send() queues
 * on a twin connection, and every client inflates them to the text. */
static void compressed_once_no_context_takeover(void **state) {
  (void)state;
  enum { N = 5 };
  pair p[N], twin;
  ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
  cp.min_size = sp.min_size = 4;
  for (int i = 0; i < N; i++) {
    pair_open(&p[i], &cp, &sp, NULL, 0);
    ws_pmd_params pp;
    ws_conn_pmd(p[i].s, &pp);
    assert_int_equal(pp.server_no_context_takeover, 1);
    assert_int_equal(pp.server_max_window_bits, 15);
  }
  pair_open(&twin, &cp, &sp, NULL, 0);
  tu_alloc a;
  tu_alloc_init(&a, 0);
  ws_prepared *hello;
  uint64_t wire0[N];
  assert_int_equal(ws_prepared_new(&hello, WS_OP_TEXT, "Hello", 5, 0, &a.mem), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ws_conn_send_prepared(p[i].s, hello), 0);
    size_t n;
    uint8_t *out = take(p[i].s, &n);
    tu_assert_hex(out, n, "c1 07 f2 48 cd c9 c9 07 00");
    ws_stats st;
    ws_conn_stats(p[i].s, &st);
    wire0[i] = st.wire_out;
    client_gets(&p[i], out, n, "Hello", 5);
    free(out);
  }
  ws_prepared_del(hello);

  size_t len = 4096;
  uint8_t *text = chat_text(len, 0);
  ws_prepared *prep;
  assert_int_equal(ws_prepared_new(&prep, WS_OP_TEXT, text, len, 0, &a.mem), 0);
  assert_int_equal(a.live_blocks, 1);
  size_t calls0 = a.calls, calls1 = 0;
  uint8_t *first = NULL;
  size_t firstlen = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(ws_conn_send_prepared(p[i].s, prep), 0);
    if (i == 0) {
      /* a compressor (object and block) came and went; the variant stays */
      assert_true(a.calls >= calls0 + 3);
      assert_int_equal(a.live_blocks, 2);
      calls1 = a.calls;
    } else {
      assert_int_equal(a.calls, calls1); /* not compressed again */
    }
    size_t n;
    uint8_t *out = take(p[i].s, &n);
    if (!first) {
      first = out;
      firstlen = n;
      assert_true(n < len / 2);
      tu_assert_hex(out, 2, "c1 7e"); /* RSV1, 16-bit length */
      assert_int_equal(((size_t)out[2] << 8 | out[3]) + 4, n);
    } else {
      assert_int_equal(n, firstlen);
      assert_memory_equal(out, first, n);
      free(out);
    }
    client_gets(&p[i], first, firstlen, text, len);
    ws_stats st;
    ws_conn_stats(p[i].s, &st);
    assert_int_equal(st.msgs_out, 2);
    assert_int_equal(st.bytes_out, 5 + len);
    assert_int_equal(st.wire_out, wire0[i] + firstlen);
  }
  /* the same as a connection's own send */
  assert_int_equal(ws_conn_send(twin.s, WS_OP_TEXT, text, len, 0), 0);
  size_t n;
  uint8_t *own = take(twin.s, &n);
  assert_int_equal(n, firstlen);
  assert_memory_equal(own, first, n);
  free(own);
  ws_prepared_del(prep);
  assert_int_equal(a.live_blocks, 0);
  free(first);
  free(text);
  for (int i = 0; i < N; i++) pair_close(&p[i]);
  pair_close(&twin);
}

/* Random bytes do not shrink: the compressed variant outgrows its first
 * buffer (half the message), is grown, and is still exactly what
 * ws_conn_send() makes (stored blocks, RFC 1951 3.2.4). */
static void incompressible_grows(void **state) {
  (void)state;
  pair p, twin;
  ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
  pair_open(&p, &cp, &sp, NULL, 0);
  pair_open(&twin, &cp, &sp, NULL, 0);
  size_t len = 70000;
  uint8_t *data = malloc(len);
  uint64_t r = 11;
  for (size_t i = 0; i < len; i++) data[i] = (uint8_t)tu_rand(&r);
  ws_prepared *prep;
  assert_int_equal(ws_prepared_new(&prep, WS_OP_BINARY, data, len, 0, NULL), 0);
  assert_int_equal(ws_conn_send_prepared(p.s, prep), 0);
  ws_prepared_del(prep);
  size_t n, m;
  uint8_t *out = take(p.s, &n);
  assert_true(n > len);
  tu_assert_hex(out, 2, "c2 7f"); /* RSV1, 64-bit length */
  assert_int_equal(ws_conn_send(twin.s, WS_OP_BINARY, data, len, 0), 0);
  uint8_t *own = take(twin.s, &m);
  assert_int_equal(n, m);
  assert_memory_equal(out, own, n);
  client_gets(&p, out, n, data, len);
  free(out);
  free(own);
  free(data);
  pair_close(&p);
  pair_close(&twin);
}

/* ---- context takeover ----------------------------------------------------- */

/* A server that keeps context (RFC 7692 7.1.1) compresses with its own
 * compressor, not the prepared message's: "Hello" twice is the RFC
 * 7692 7.2.3.2 pair (the second refers back into the first), here
 * c1 07 f2 48 cd c9 c9 07 00 then c1 04 02 13 00 00, and the prepared
 * message's allocator is never asked for a compressor. Next to it a
 * no-takeover connection gets the shared bytes. Both peers decode
 * every message. */
static void context_takeover_compresses_itself(void **state) {
  (void)state;
  pair kt, nt;
  ws_pmd_config sp = pmd(0, 15), cp_kt = pmd(0, 15), cp_nt = pmd(1, 15);
  sp.min_size = cp_kt.min_size = cp_nt.min_size = 4;
  pair_open(&kt, &cp_kt, &sp, NULL, 0);
  pair_open(&nt, &cp_nt, &sp, NULL, 0);
  ws_pmd_params pp;
  ws_conn_pmd(kt.s, &pp);
  assert_int_equal(pp.server_no_context_takeover, 0);
  tu_alloc a;
  tu_alloc_init(&a, 0);
  ws_prepared *hello;
  assert_int_equal(ws_prepared_new(&hello, WS_OP_TEXT, "Hello", 5, 0, &a.mem), 0);
  static const char *const kt_wire[2] = {"c1 07 f2 48 cd c9 c9 07 00",
                                         "c1 04 02 13 00 00"};
  for (int k = 0; k < 2; k++) {
    size_t n, calls0 = a.calls;
    assert_int_equal(ws_conn_send_prepared(kt.s, hello), 0);
    assert_int_equal(a.calls, calls0);
    uint8_t *out = take(kt.s, &n);
    tu_assert_hex(out, n, kt_wire[k]);
    client_gets(&kt, out, n, "Hello", 5);
    free(out);
    assert_int_equal(ws_conn_send_prepared(nt.s, hello), 0);
    out = take(nt.s, &n);
    tu_assert_hex(out, n, "c1 07 f2 48 cd c9 c9 07 00");
    client_gets(&nt, out, n, "Hello", 5);
    free(out);
  }
  /* a long text in between and after: the context connection's peer
   * decodes each against its own window */
  uint8_t *text = chat_text(6000, 0);
  ws_prepared *t;
  assert_int_equal(ws_prepared_new(&t, WS_OP_TEXT, text, 6000, 0, &a.mem), 0);
  for (int k = 0; k < 3; k++) {
    size_t n;
    assert_int_equal(ws_conn_send_prepared(kt.s, k == 1 ? hello : t), 0);
    uint8_t *out = take(kt.s, &n);
    if (k == 1)
      client_gets(&kt, out, n, "Hello", 5);
    else
      client_gets(&kt, out, n, text, 6000);
    free(out);
  }
  ws_stats st;
  ws_conn_stats(kt.s, &st);
  assert_int_equal(st.msgs_out, 5);
  assert_int_equal(st.bytes_out, 4 * 5 + 2 * 6000 - 5);
  ws_prepared_del(t);
  ws_prepared_del(hello);
  assert_int_equal(a.live_blocks, 0);
  free(text);
  pair_close(&kt);
  pair_close(&nt);
}

/* ---- mixed windows ---------------------------------------------------------- */

/* RFC 7692 7.1.2.1: each server_max_window_bits in use gets its own
 * compression, shared by the connections with that window; a text whose
 * repeats lie 1,000 and 6,000 bytes back compresses differently at 9
 * bits (512 B window), 12 (4 KiB) and 15 (32 KiB). Each is what ws_conn_send() makes for that window
 * and each client decodes its own. A connection at level 1 and one with a
 * ws_pmd_shared (which compresses for it) are variants too. */
static void mixed_windows(void **state) {
  (void)state;
  static const unsigned bits[] = {9, 15, 9, 12, 15, 9};
  enum { N = sizeof(bits) / sizeof(bits[0]) };
  pair p[N], twin[N];
  size_t len = 12000;
  uint8_t *text = chat_text(len, 1000);
  uint8_t *wire[N];
  size_t wlen[N];
  tu_alloc a;
  tu_alloc_init(&a, 0);
  ws_prepared *prep;
  assert_int_equal(ws_prepared_new(&prep, WS_OP_BINARY, text, len, 0, &a.mem), 0);
  for (int i = 0; i < N; i++) {
    ws_pmd_config cp = pmd(1, bits[i]), sp = pmd(0, 15);
    pair_open(&p[i], &cp, &sp, NULL, 0);
    pair_open(&twin[i], &cp, &sp, NULL, 0);
    ws_pmd_params pp;
    ws_conn_pmd(p[i].s, &pp);
    assert_int_equal(pp.server_max_window_bits, bits[i]);
    assert_int_equal(ws_conn_send_prepared(p[i].s, prep), 0);
    wire[i] = take(p[i].s, &wlen[i]);
    client_gets(&p[i], wire[i], wlen[i], text, len);
    assert_int_equal(ws_conn_send(twin[i].s, WS_OP_BINARY, text, len, 0), 0);
    size_t n;
    uint8_t *own = take(twin[i].s, &n);
    assert_int_equal(n, wlen[i]);
    assert_memory_equal(own, wire[i], n);
    free(own);
  }
  /* three windows, three variants beside the message */
  assert_int_equal(a.live_blocks, 1 + 3);
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < N; j++) {
      int same = wlen[i] == wlen[j] && memcmp(wire[i], wire[j], wlen[i]) == 0;
      assert_int_equal(same, bits[i] == bits[j]);
    }
  }
  /* the 9-bit stream is valid for a 15-bit peer too (7.1.2.1: the
   * window is a limit): the peer with 15 bits decodes the 9-bit bytes */
  client_gets(&p[1], wire[0], wlen[0], text, len);

  /* level 1, and a shared compressor at level 3: two more variants */
  ws_pmd_shared *sh;
  assert_int_equal(ws_pmd_shared_new(&sh, 3, NULL), 0);
  for (int k = 0; k < 2; k++) {
    pair q, qt;
    ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
    if (k == 0) sp.level = 1; else sp.shared = sh;
    pair_open(&q, &cp, &sp, NULL, 0);
    pair_open(&qt, &cp, &sp, NULL, 0);
    size_t calls = a.calls;
    assert_int_equal(ws_conn_send_prepared(q.s, prep), 0);
    /* with the shared compressor, only the variant is allocated */
    if (k == 1) assert_true(a.calls - calls <= 3);
    assert_int_equal(a.live_blocks, 1 + 3 + 1 + (size_t)k);
    size_t n, m;
    uint8_t *out = take(q.s, &n);
    assert_int_equal(ws_conn_send(qt.s, WS_OP_BINARY, text, len, 0), 0);
    uint8_t *own = take(qt.s, &m);
    assert_int_equal(n, m);
    assert_memory_equal(out, own, n);
    assert_false(n == wlen[1] && memcmp(out, wire[1], n) == 0);
    client_gets(&q, out, n, text, len);
    free(out);
    free(own);
    pair_close(&q);
    pair_close(&qt);
  }
  ws_prepared_del(prep);
  ws_pmd_shared_del(sh);
  assert_int_equal(a.live_blocks, 0);
  for (int i = 0; i < N; i++) {
    free(wire[i]);
    pair_close(&p[i]);
    pair_close(&twin[i]);
  }
  free(text);
}

/* ---- client role ------------------------------------------------------------ */

/* A client masks every frame with a fresh key (RFC 6455 5.3): the
 * prepared payload, plain or compressed once, is masked as it is copied,
 * and the server decodes it. */
static void client_masks_each_copy(void **state) {
  (void)state;
  pair p[2];
  ws_pmd_config cp = pmd(0, 15), sp = pmd(0, 15);
  cp.client_no_context_takeover = 1;
  pair_open(&p[0], &cp, &sp, NULL, 0);
  pair_open(&p[1], NULL, NULL, NULL, 0);
  size_t len = 3000;
  uint8_t *text = chat_text(len, 0);
  ws_prepared *prep;
  assert_int_equal(ws_prepared_new(&prep, WS_OP_TEXT, text, len, 0, NULL), 0);
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < 2; i++) {
      assert_int_equal(ws_conn_send_prepared(p[i].c, prep), 0);
      uint8_t *got = NULL;
      size_t gotlen = 0;
      ws_iovec v;
      assert_int_equal(ws_conn_out_peek(p[i].c, &v, 1), 1);
      assert_int_equal(v.base[0], i == 0 ? 0xc1 : 0x81);
      assert_int_equal(v.base[1] & 0x80, 0x80); /* masked */
      assert_int_equal(pump(p[i].c, p[i].s, &got, &gotlen), 1);
      assert_int_equal(gotlen, len);
      assert_memory_equal(got, text, len);
      free(got);
    }
  }
  ws_prepared_del(prep);
  free(text);
  pair_close(&p[0]);
  pair_close(&p[1]);
}

/* ---- state rules ------------------------------------------------------------ */

/* The codes of ws_conn_send() for the same situations: before the
 * handshake, after a close was sent, after the connection failed, inside
 * a fragmented message (RFC 6455 5.4: WS_ERR_INVALID_STATE, where
 * ws_conn_send() would continue the message), a full queue and a message
 * larger than the queue; then the queue drains and it goes. */
static void state_errors(void **state) {
  (void)state;
  ws_prepared *hello, *m1020, *m1021;
  uint8_t buf[1021];
  memset(buf, 'x', sizeof(buf));
  assert_int_equal(ws_prepared_new(&hello, WS_OP_TEXT, "Hello", 5, 0, NULL), 0);
  assert_int_equal(ws_prepared_new(&m1020, WS_OP_BINARY, buf, 1020, 0, NULL), 0);
  assert_int_equal(ws_prepared_new(&m1021, WS_OP_BINARY, buf, 1021, 0, NULL), 0);

  /* arguments */
  ws_prepared *bad = (ws_prepared *)1;
  assert_int_equal(ws_prepared_new(&bad, WS_OP_PING, "x", 1, 0, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_null(bad);
  assert_int_equal(ws_prepared_new(&bad, WS_OP_CONT, "x", 1, 0, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_prepared_new(&bad, WS_OP_TEXT, "x", 1, WS_SEND_MORE, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_prepared_new(&bad, WS_OP_TEXT, NULL, 1, 0, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_prepared_new(NULL, WS_OP_TEXT, "x", 1, 0, NULL),
                   WS_ERR_INVALID_ARGUMENT);
  ws_prepared_del(NULL);

  /* before the handshake */
  ws_config sc;
  ws_config_default(&sc, WS_ROLE_SERVER);
  ws_conn *fresh;
  assert_int_equal(ws_conn_new(&fresh, &sc, NULL), 0);
  assert_int_equal(ws_conn_send_prepared(fresh, hello), WS_ERR_INVALID_STATE);
  assert_int_equal(ws_conn_send_prepared(NULL, hello), WS_ERR_INVALID_ARGUMENT);
  assert_int_equal(ws_conn_send_prepared(fresh, NULL), WS_ERR_INVALID_ARGUMENT);
  ws_conn_del(fresh);

  /* a fragmented message in progress, then finished */
  pair p;
  pair_open(&p, NULL, NULL, NULL, 1024);
  assert_int_equal(ws_conn_send(p.s, WS_OP_TEXT, "a", 1, WS_SEND_MORE), 0);
  assert_int_equal(ws_conn_send_prepared(p.s, hello), WS_ERR_INVALID_STATE);
  assert_int_equal(ws_conn_send(p.s, WS_OP_TEXT, "b", 1, 0), 0);
  assert_int_equal(ws_conn_send_prepared(p.s, hello), 0);
  size_t n;
  uint8_t *out = take(p.s, &n);
  tu_assert_hex(out, n, "01 01 61 80 01 62 81 05 48 65 6c 6c 6f");
  free(out);

  /* max_out_queue 1024 (the least): 4 + 1020 fits once; 4 + 1021 never */
  assert_int_equal(ws_conn_send_prepared(p.s, m1021), WS_ERR_TOO_BIG);
  assert_int_equal(ws_conn_send(p.s, WS_OP_BINARY, buf, 1021, 0), WS_ERR_TOO_BIG);
  assert_int_equal(ws_conn_send_prepared(p.s, m1020), 0);
  assert_int_equal(ws_conn_send_prepared(p.s, hello), WS_ERR_WOULDBLOCK);
  assert_int_equal(ws_conn_send(p.s, WS_OP_TEXT, "Hello", 5, 0),
                   WS_ERR_WOULDBLOCK);
  assert_int_equal(ws_conn_out_pending(p.s), 1024);
  out = take(p.s, &n);
  free(out);
  assert_int_equal(ws_conn_send_prepared(p.s, hello), 0);
  ws_stats st;
  ws_conn_stats(p.s, &st);
  assert_int_equal(st.msgs_out, 4);
  assert_int_equal(st.bytes_out, 1 + 1 + 5 + 1020 + 5);

  /* after our close: nothing more */
  assert_int_equal(ws_conn_close(p.s, 1000, NULL, 0), 0);
  assert_int_equal(ws_conn_send_prepared(p.s, hello), WS_ERR_INVALID_STATE);
  pair_close(&p);

  /* a compressed message counts at its uncompressed size, as with
   * ws_conn_send(): 4 + 1020 in a 1024-byte queue, however small it gets */
  ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
  pair_open(&p, &cp, &sp, NULL, 1024);
  assert_int_equal(ws_conn_send_prepared(p.s, m1020), 0);
  assert_true(ws_conn_out_pending(p.s) < 20);
  assert_int_equal(ws_conn_send_prepared(p.s, m1020), WS_ERR_WOULDBLOCK);
  assert_int_equal(ws_conn_send(p.s, WS_OP_BINARY, buf, 1020, 0),
                   WS_ERR_WOULDBLOCK);
  pair_close(&p);

  /* after the peer's protocol error (a frame without a mask, RFC 6455
   * 5.1): the connection failed */
  pair_open(&p, NULL, NULL, NULL, 0);
  uint8_t unmasked[] = {0x81, 0x01, 0x41};
  size_t used;
  assert_true(ws_conn_feed(p.s, unmasked, sizeof(unmasked), &used) < 0);
  assert_int_equal(ws_conn_send_prepared(p.s, hello), WS_ERR_INVALID_STATE);
  pair_close(&p);

  ws_prepared_del(hello);
  ws_prepared_del(m1020);
  ws_prepared_del(m1021);
}

/* ---- memory --------------------------------------------------------------- */

/* Every allocation of the prepared message failing in turn, then every
 * allocation of the connection's output queue: WS_ERR_NOMEM with nothing
 * queued and the connection still open, and the next try goes through
 * with the same bytes. Everything is freed (ASan, and the counter). */
static void failing_allocations(void **state) {
  (void)state;
  size_t len = 3000;
  uint8_t *text = chat_text(len, 0);
  uint8_t *ref = NULL;
  size_t reflen = 0;
  for (size_t fail = 1;; fail++) {
    pair p;
    ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
    pair_open(&p, &cp, &sp, NULL, 0);
    tu_alloc a;
    tu_alloc_init(&a, fail);
    ws_prepared *prep = NULL;
    int rv = ws_prepared_new(&prep, WS_OP_TEXT, text, len, 0, &a.mem);
    if (rv == 0) rv = ws_conn_send_prepared(p.s, prep);
    if (rv == WS_ERR_NOMEM) {
      assert_int_equal(ws_conn_out_pending(p.s), 0);
      assert_int_equal(ws_conn_state(p.s), WS_STATE_OPEN);
      a.fail_at = 0;
      if (!prep)
        assert_int_equal(ws_prepared_new(&prep, WS_OP_TEXT, text, len, 0,
                                         &a.mem), 0);
      assert_int_equal(ws_conn_send_prepared(p.s, prep), 0);
    } else {
      assert_int_equal(rv, 0);
    }
    size_t n;
    uint8_t *out = take(p.s, &n);
    if (!ref) {
      ref = out;
      reflen = n;
    } else {
      assert_int_equal(n, reflen);
      assert_memory_equal(out, ref, n);
      free(out);
    }
    client_gets(&p, ref, reflen, text, len);
    ws_prepared_del(prep);
    assert_int_equal(a.live_blocks, 0);
    pair_close(&p);
    if (a.calls < fail) break; /* every allocation was failed once */
  }
  /* the connection's own allocator: its output queue, the one
   * allocation on this path */
  ws_prepared *prep;
  assert_int_equal(ws_prepared_new(&prep, WS_OP_TEXT, text, len, 0, NULL), 0);
  {
    pair p;
    tu_alloc a;
    tu_alloc_init(&a, 0);
    ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
    pair_open(&p, &cp, &sp, &a.mem, 0);
    a.fail_at = a.calls + 1;
    int rv = ws_conn_send_prepared(p.s, prep);
    assert_int_equal(rv, WS_ERR_NOMEM);
    assert_int_equal(ws_conn_out_pending(p.s), 0);
    assert_int_equal(ws_conn_state(p.s), WS_STATE_OPEN);
    a.fail_at = 0;
    assert_int_equal(ws_conn_send_prepared(p.s, prep), 0);
    size_t n;
    uint8_t *out = take(p.s, &n);
    assert_int_equal(n, reflen);
    assert_memory_equal(out, ref, n);
    free(out);
    pair_close(&p);
    assert_int_equal(a.live_blocks, 0);
  }
  ws_prepared_del(prep);
  free(ref);
  free(text);
}

/* The prepared message may go before its bytes are written: each queue
 * holds its own copy (ASan would see a use after free otherwise). */
static void freed_before_written(void **state) {
  (void)state;
  pair p[3];
  ws_pmd_config cp = pmd(1, 15), sp = pmd(0, 15);
  pair_open(&p[0], &cp, &sp, NULL, 0);
  pair_open(&p[1], NULL, NULL, NULL, 0);
  cp.server_no_context_takeover = 0;
  pair_open(&p[2], &cp, &sp, NULL, 0);
  size_t len = 2000;
  uint8_t *text = chat_text(len, 0);
  ws_prepared *prep;
  assert_int_equal(ws_prepared_new(&prep, WS_OP_TEXT, text, len, 0, NULL), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(ws_conn_send_prepared(p[i].s, prep), 0);
  ws_prepared_del(prep);
  for (int i = 0; i < 3; i++) {
    uint8_t *got = NULL;
    size_t gotlen = 0;
    assert_int_equal(pump(p[i].s, p[i].c, &got, &gotlen), 1);
    assert_int_equal(gotlen, len);
    assert_memory_equal(got, text, len);
    free(got);
    pair_close(&p[i]);
  }
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(plain_frame_shared),
      cmocka_unit_test(compressed_once_no_context_takeover),
      cmocka_unit_test(incompressible_grows),
      cmocka_unit_test(context_takeover_compresses_itself),
      cmocka_unit_test(mixed_windows),
      cmocka_unit_test(client_masks_each_copy),
      cmocka_unit_test(state_errors),
      cmocka_unit_test(failing_allocations),
      cmocka_unit_test(freed_before_written),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
