/*
 * ws-proxy: the command line.
 * SPDX-License-Identifier: MIT
 */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

proxy_opt opt;

static int usage(FILE *f, const char *argv0) {
  fprintf(
      f,
      "usage: %s --listen [HOST:]PORT --upstream ws[s]://HOST:PORT[/PATH] "
      "[options]\n"
      "  --listen [HOST:]PORT     where clients connect (host 127.0.0.1)\n"
      "  --port N                 the same as --listen 127.0.0.1:N\n"
      "  --upstream URL           the origin; several: the least loaded\n"
      "  --upstream-ca FILE       CA bundle for wss:// upstreams (system's)\n"
      "  --tls-cert FILE          serve wss://: certificate chain (PEM)\n"
      "  --tls-key FILE           ... and its private key (PEM)\n"
      "  --admin [HOST:]PORT      GET /metrics (Prometheus text format)\n"
      "  --access-log FILE        JSON lines, one per connection (stderr)\n"
      "  --ping-interval MS       ping an idle peer (25000, 0 off)\n"
      "  --idle-timeout MS        drop a peer silent after a ping (25000)\n"
      "  --upstream-ping-interval MS, --upstream-idle-timeout MS\n"
      "                           the same for upstreams (as above)\n"
      "  --connect-timeout MS     upstream connect + handshake: 504 (10000)\n"
      "  --drain-timeout MS       after SIGTERM, wait this long (10000)\n"
      "  --max-message BYTES      largest message (4294967296)\n"
      "  --high-water BYTES       pending output that pauses the other\n"
      "                           side (1048576)\n"
      "  --no-deflate             no permessage-deflate on either side\n"
      "  --no-client-deflate, --no-upstream-deflate   ... on one side\n"
      "  --max-pmd-context N      client connections per loop that keep a\n"
      "                           deflate context (up to 282 KiB each);\n"
      "                           later ones get no context takeover (256;\n"
      "                           0: no cap)\n"
      "  --autobahn               accept every permessage-deflate offer\n"
      "                           RFC 7692 allows and keep every context\n"
      "                           (the Autobahn testsuite's cases); without\n"
      "                           it a client is held to the proxy's window\n"
      "                           and context reset (WS_CFG_PMD_SYMMETRIC)\n"
      "  --threads N              N loops on one SO_REUSEPORT port (1)\n",
      argv0);
  return f == stdout ? 0 : 2;
}

static int num(const char *s, unsigned long long lo, unsigned long long hi,
               unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* "[HOST:]PORT", "[::1]:PORT" */
static int hostport(char *s, const char **phost, uint16_t *pport) {
  char *c = strrchr(s, ':');
  unsigned long long v;
  if (c && !(s[0] == '[' && strchr(c, ']'))) {
    *c = 0;
    if (num(c + 1, 0, 65535, &v) != 0) return -1;
    if (s[0] == '[') {
      s++;
      char *e = strchr(s, ']');
      if (e) *e = 0;
    }
    *phost = s;
  } else if (num(s, 0, 65535, &v) != 0) {
    return -1;
  }
  *pport = (uint16_t)v;
  return 0;
}

/* A flag with a number. Returns 0, -1 for a bad value, 1 if |a| is none
 * of them. */
static int number_flag(const char *a, const char *val) {
  unsigned long long v;
  uint32_t *t = !strcmp(a, "--ping-interval")            ? &opt.ping_ms
                : !strcmp(a, "--idle-timeout")           ? &opt.idle_ms
                : !strcmp(a, "--upstream-ping-interval") ? &opt.up_ping_ms
                : !strcmp(a, "--upstream-idle-timeout")  ? &opt.up_idle_ms
                : !strcmp(a, "--connect-timeout")        ? &opt.connect_ms
                : !strcmp(a, "--drain-timeout")          ? &opt.drain_ms
                : !strcmp(a, "--high-water")             ? &opt.high_water
                : !strcmp(a, "--max-pmd-context")        ? &opt.max_pmd
                                                         : NULL;
  if (t) {
    if (num(val, 0, 0x7fffffff, &v) != 0) return -1;
    *t = (uint32_t)v;
  } else if (!strcmp(a, "--max-message")) {
    if (num(val, 1, UINT64_MAX, &v) != 0) return -1;
    opt.max_message = v;
  } else if (!strcmp(a, "--threads")) {
    if (num(val, 1, MAX_THREADS, &v) != 0) return -1;
    opt.threads = (unsigned)v;
  } else {
    return 1;
  }
  return 0;
}

/* A flag with a value. Returns 0, or -1 for a bad flag or value. */
static int flag(const char *a, char *val, int *have_listen) {
  unsigned long long v;
  if (!strcmp(a, "--listen")) {
    *have_listen = 1;
    return hostport(val, &opt.listen_host, &opt.listen_port);
  } else if (!strcmp(a, "--port")) {
    *have_listen = 1;
    if (num(val, 0, 65535, &v) != 0) return -1;
    opt.listen_port = (uint16_t)v;
  } else if (!strcmp(a, "--admin")) {
    opt.have_admin = 1;
    return hostport(val, &opt.admin_host, &opt.admin_port);
  } else if (!strcmp(a, "--upstream")) {
    if (opt.nups == MAX_UPSTREAMS) return -1;
    upstream *u = &opt.ups[opt.nups++];
    u->url = val;
    return ws_loop_parse_url(val, &u->u) != 0 ? -1 : 0;
  } else if (!strcmp(a, "--upstream-ca")) {
    opt.ca = val;
  } else if (!strcmp(a, "--tls-cert")) {
    opt.cert = val;
  } else if (!strcmp(a, "--tls-key")) {
    opt.key = val;
  } else if (!strcmp(a, "--access-log")) {
    opt.log_path = val;
  } else {
    return number_flag(a, val) == 0 ? 0 : -1;
  }
  return 0;
}

int flags_parse(int argc, char **argv) {
  opt.listen_host = opt.admin_host = "127.0.0.1";
  opt.threads = 1;
  opt.max_message = 4ull << 30;
  opt.ping_ms = opt.idle_ms = 25000;
  opt.up_ping_ms = opt.up_idle_ms = UINT32_MAX;
  opt.connect_ms = 10000;
  opt.drain_ms = 10000;
  opt.high_water = 1u << 20;
  opt.max_pmd = 256; /* ~70 MiB of deflate contexts per loop at most */
  opt.deflate_client = opt.deflate_upstream = 1;
  opt.log_fd = 2;
  int have_listen = 0;
  for (int i = 1; i < argc; i++) {
    char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout, argv[0]);
    if (!strcmp(a, "--autobahn")) {
      opt.autobahn = 1;
      continue;
    }
    if (!strcmp(a, "--no-deflate") || !strcmp(a, "--no-client-deflate") ||
        !strcmp(a, "--no-upstream-deflate")) {
      if (strcmp(a, "--no-upstream-deflate")) opt.deflate_client = 0;
      if (strcmp(a, "--no-client-deflate")) opt.deflate_upstream = 0;
      continue;
    }
    if (!val) return usage(stderr, argv[0]);
    i++;
    if (flag(a, val, &have_listen) != 0) {
      fprintf(stderr, "ws-proxy: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  if (!have_listen || opt.nups == 0) return usage(stderr, argv[0]);
  if (opt.up_ping_ms == UINT32_MAX) opt.up_ping_ms = opt.ping_ms;
  if (opt.up_idle_ms == UINT32_MAX) opt.up_idle_ms = opt.idle_ms;
  return -1;
}
