/*
 * Public-API tests that need nothing but <ws/ws.h>: error strings and
 * classes, the version, the documented configuration defaults, and the
 * connection object's documented argument and allocation contract.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ws/ws.h>

/* Every code of enum ws_error, WS_ERR_FATAL (a boundary, not a code)
 * excepted. */
static const int all_codes[] = {
    WS_OK,
    WS_ERR_WOULDBLOCK,
    WS_ERR_INVALID_ARGUMENT,
    WS_ERR_INVALID_STATE,
    WS_ERR_PROTO,
    WS_ERR_UTF8,
    WS_ERR_TOO_BIG,
    WS_ERR_HANDSHAKE,
    WS_ERR_REJECTED,
    WS_ERR_EXTENSION,
    WS_ERR_TIMEOUT,
    WS_ERR_EOF,
    WS_ERR_CLOSED,
    WS_ERR_POLICY,
    WS_ERR_DATA,
    WS_ERR_NOMEM,
    WS_ERR_INTERNAL,
};
#define NCODES (sizeof all_codes / sizeof all_codes[0])

static void strerror_every_code_non_null_and_distinct(void **state) {
  (void)state;
  for (size_t i = 0; i < NCODES; i++) {
    const char *s = ws_strerror(all_codes[i]);
    assert_non_null(s);
    assert_true(s[0] != '\0');
    for (size_t j = 0; j < i; j++) {
      if (strcmp(s, ws_strerror(all_codes[j])) == 0) {
        fail_msg("ws_strerror(%d) == ws_strerror(%d) == \"%s\"", all_codes[i],
                 all_codes[j], s);
      }
    }
  }
}

static void strerror_unknown_code_is_not_a_known_one(void **state) {
  static const int unknown[] = {1,    -2,           -100, -103,    -200,   -212,
                                -499, WS_ERR_FATAL, -503, INT_MIN, INT_MAX};
  (void)state;
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *s = ws_strerror(unknown[i]);
    assert_non_null(s);
    assert_true(s[0] != '\0');
    for (size_t j = 0; j < NCODES; j++) {
      if (strcmp(s, ws_strerror(all_codes[j])) == 0) {
        fail_msg("unknown code %d described like %d: \"%s\"", unknown[i],
                 all_codes[j], s);
      }
    }
  }
}

static void err_is_fatal_boundaries(void **state) {
  (void)state;
  assert_true(ws_err_is_fatal(WS_ERR_FATAL));
  assert_false(ws_err_is_fatal(WS_ERR_FATAL + 1));
  assert_true(ws_err_is_fatal(WS_ERR_FATAL - 1));
  assert_true(ws_err_is_fatal(WS_ERR_NOMEM));
  assert_true(ws_err_is_fatal(WS_ERR_INTERNAL));
  assert_true(ws_err_is_fatal(INT_MIN));
  assert_false(ws_err_is_fatal(WS_OK));
  assert_false(ws_err_is_fatal(1));
  assert_false(ws_err_is_fatal(INT_MAX));
  for (size_t i = 0; i < NCODES; i++) {
    int c = all_codes[i];
    if (c == WS_ERR_NOMEM || c == WS_ERR_INTERNAL) continue;
    if (ws_err_is_fatal(c))
      fail_msg("%d (%s) reported fatal", c, ws_strerror(c));
  }
}

static void version_matches_header(void **state) {
  unsigned major = 0, minor = 0, patch = 0;
  const char *p = WS_VERSION;
  unsigned *part[3] = {&major, &minor, &patch};
  (void)state;
  assert_int_equal(ws_version(), WS_VERSION_NUM);
  /* WS_VERSION is "major.minor.patch" and WS_VERSION_NUM is 0xMMmmpp. */
  for (int i = 0; i < 3; i++) {
    assert_true(*p >= '0' && *p <= '9');
    while (*p >= '0' && *p <= '9')
      *part[i] = *part[i] * 10u + (unsigned)(*p++ - '0');
    if (i < 2) assert_int_equal(*p++, '.');
  }
  assert_int_equal(*p, '\0');
  assert_true(major <= 0xff && minor <= 0xff && patch <= 0xff);
  assert_int_equal(WS_VERSION_NUM, (major << 16) | (minor << 8) | patch);
}

static void check_defaults(ws_role role) {
  ws_config cfg;
  memset(&cfg, 0xA5, sizeof cfg); /* every field must be written */
  ws_config_default(&cfg, role);
  assert_int_equal(cfg.role, role);
  assert_true(cfg.delivery == WS_DELIVER_STREAM ||
              cfg.delivery == WS_DELIVER_MESSAGE);
  assert_int_equal(cfg.flags, 0); /* auto pong and auto close on */
  assert_int_equal(cfg.max_handshake_bytes, 8192);
  assert_int_equal(cfg.max_headers, 64);
  assert_int_equal(cfg.max_frame_payload, 1024 * 1024);
  assert_int_equal(cfg.max_message, 1024 * 1024);
  assert_int_equal(cfg.max_fragments, 65536);
  assert_int_equal(cfg.max_out_queue, 4 * 1024 * 1024);
  assert_int_equal(cfg.handshake_timeout_ms, 10000);
  assert_int_equal(cfg.ping_interval_ms, 25000);
  assert_int_equal(cfg.pong_timeout_ms, 25000);
  assert_int_equal(cfg.close_timeout_ms, 5000);
  assert_null(cfg.rand);
  assert_null(cfg.rand_user_data);
}

static void config_default_server(void **state) {
  (void)state;
  check_defaults(WS_ROLE_SERVER);
}

static void config_default_client(void **state) {
  (void)state;
  check_defaults(WS_ROLE_CLIENT);
}

/* RFC 6455 7.4.1/7.4.2 plus IANA 1012-1014, as documented:
 * 1000-1003, 1007-1014, 3000-4999. */
static void close_code_valid_ranges(void **state) {
  (void)state;
  for (uint32_t c = 0; c <= 0xffff; c++) {
    int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
               (c >= 3000 && c <= 4999);
    int got = ws_close_code_valid((uint16_t)c) != 0;
    if (got != want) fail_msg("ws_close_code_valid(%u) = %d", c, got);
  }
}

/* A counting allocator that can be told to fail every request. */
typedef struct counting_alloc {
  ws_mem mem;
  int fail;
  long live;
  size_t calls;
} counting_alloc;

static void *ca_malloc(size_t n, void *ud) {
  counting_alloc *a = ud;
  a->calls++;
  if (a->fail) return NULL;
  void *p = malloc(n ? n : 1);
  if (p) a->live++;
  return p;
}

static void *ca_realloc(void *ptr, size_t n, void *ud) {
  counting_alloc *a = ud;
  a->calls++;
  if (a->fail) return NULL;
  void *p = realloc(ptr, n ? n : 1);
  if (p && !ptr) a->live++;
  return p;
}

static void ca_free(void *ptr, void *ud) {
  counting_alloc *a = ud;
  if (ptr) a->live--;
  free(ptr);
}

static void ca_init(counting_alloc *a, int fail) {
  memset(a, 0, sizeof *a);
  a->mem.user_data = a;
  a->mem.malloc = ca_malloc;
  a->mem.realloc = ca_realloc;
  a->mem.free = ca_free;
  a->fail = fail;
}

static int zero_rand(uint8_t *buf, size_t len, void *ud) {
  (void)ud;
  memset(buf, 0, len);
  return 0;
}

static void conn_new_del_uses_only_injected_allocator(void **state) {
  counting_alloc a;
  ws_config cfg;
  ws_conn *conn = NULL;
  (void)state;
  ca_init(&a, 0);
  ws_config_default(&cfg, WS_ROLE_SERVER);
  assert_int_equal(ws_conn_new(&conn, &cfg, &a.mem), 0);
  assert_non_null(conn);
  assert_true(a.calls > 0);
  assert_true(a.live > 0);
  assert_int_equal(ws_conn_state(conn), WS_STATE_CONNECTING);
  ws_conn_del(conn);
  assert_int_equal(a.live, 0);
}

static void conn_new_nomem(void **state) {
  counting_alloc a;
  ws_config cfg;
  ws_conn *conn = NULL;
  (void)state;
  ca_init(&a, 1);
  ws_config_default(&cfg, WS_ROLE_SERVER);
  assert_int_equal(ws_conn_new(&conn, &cfg, &a.mem), WS_ERR_NOMEM);
  assert_int_equal(a.live, 0);
}

static void conn_new_client_requires_rand(void **state) {
  ws_config cfg;
  ws_conn *conn = NULL;
  (void)state;
  ws_config_default(&cfg, WS_ROLE_CLIENT);
  assert_int_equal(ws_conn_new(&conn, &cfg, NULL), WS_ERR_INVALID_ARGUMENT);
  cfg.rand = zero_rand;
  assert_int_equal(ws_conn_new(&conn, &cfg, NULL), 0);
  assert_non_null(conn);
  ws_conn_del(conn);
}

static void conn_del_null(void **state) {
  (void)state;
  ws_conn_del(NULL);
  assert_true(ws_conn_sizeof() > 0);
}

/* Every getter takes NULL without dereferencing it. */
static void getters_take_null(void **state) {
  (void)state;
  ws_stats st = {1, 1, 1, 1, 1, 1};
  ws_pmd_params pp = {1, 1, 1, 9, 9};
  assert_int_equal(ws_conn_state(NULL), WS_STATE_FAILED);
  assert_int_equal(ws_conn_want_read(NULL), 0);
  assert_int_equal(ws_conn_want_write(NULL), 0);
  assert_int_equal(ws_conn_should_close_transport(NULL), 0);
  assert_int_equal(ws_conn_close_code(NULL), 0);
  assert_int_equal(ws_conn_out_pending(NULL), 0);
  assert_int_equal(ws_conn_next_deadline(NULL), UINT64_MAX);
  assert_int_equal(ws_conn_protocol(NULL).len, 0);
  ws_conn_stats(NULL, &st); /* left as it was */
  assert_int_equal(st.msgs_in, 1);
  ws_conn_pmd(NULL, &pp);
  assert_int_equal(pp.enabled, 0);
}

/* A partial allocator cannot be mixed with the C library's: refused, as
 * ws.h says; all three NULL means the default. */
static void conn_new_partial_allocator_refused(void **state) {
  (void)state;
  ws_config cfg;
  ws_conn *conn = NULL;
  ws_mem m = {NULL, NULL, NULL, NULL};
  ws_config_default(&cfg, WS_ROLE_SERVER);
  assert_int_equal(ws_conn_new(&conn, &cfg, &m), 0);
  ws_conn_del(conn);
  m.malloc = ca_malloc;
  assert_int_equal(ws_conn_new(&conn, &cfg, &m), WS_ERR_INVALID_ARGUMENT);
  assert_null(conn);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(strerror_every_code_non_null_and_distinct),
      cmocka_unit_test(strerror_unknown_code_is_not_a_known_one),
      cmocka_unit_test(err_is_fatal_boundaries),
      cmocka_unit_test(version_matches_header),
      cmocka_unit_test(config_default_server),
      cmocka_unit_test(config_default_client),
      cmocka_unit_test(close_code_valid_ranges),
      cmocka_unit_test(conn_new_del_uses_only_injected_allocator),
      cmocka_unit_test(conn_new_nomem),
      cmocka_unit_test(conn_new_client_requires_rand),
      cmocka_unit_test(conn_del_null),
      cmocka_unit_test(getters_take_null),
      cmocka_unit_test(conn_new_partial_allocator_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
