/*
 * ws-proxy: the counters every loop thread adds to, and the admin
 * listener's GET /metrics (Prometheus text format).
 * SPDX-License-Identifier: MIT
 */
#include "proxy.h"

#include <stdlib.h>

proxy_metrics m;
int admin_tag;

void count_close(atomic_ulong *arr, uint16_t code) {
  atomic_fetch_add(&arr[code < NCODES ? code : 0], 1);
}

static void metrics_counters(sbuf *sb) {
  sb_printf(sb,
            "# TYPE wsproxy_connections_open gauge\n"
            "wsproxy_connections_open %ld\n"
            "# TYPE wsproxy_upgrades_accepted_total counter\n"
            "wsproxy_upgrades_accepted_total %lu\n"
            "# TYPE wsproxy_upgrades_refused_total counter\n",
            atomic_load(&m.open), atomic_load(&m.accepted));
  for (int i = 0; i < 600; i++) {
    unsigned long n = atomic_load(&m.refused[i]);
    if (n)
      sb_printf(sb, "wsproxy_upgrades_refused_total{status=\"%d\"} %lu\n", i,
                n);
  }
  sb_printf(sb,
            "# TYPE wsproxy_payload_bytes_total counter\n"
            "wsproxy_payload_bytes_total{direction=\"to_client\"} %lu\n"
            "wsproxy_payload_bytes_total{direction=\"to_upstream\"} %lu\n"
            "# TYPE wsproxy_messages_total counter\n"
            "wsproxy_messages_total{direction=\"to_client\"} %lu\n"
            "wsproxy_messages_total{direction=\"to_upstream\"} %lu\n"
            "# TYPE wsproxy_wire_bytes_total counter\n"
            "wsproxy_wire_bytes_total{direction=\"to_client\"} %lu\n"
            "wsproxy_wire_bytes_total{direction=\"to_upstream\"} %lu\n",
            atomic_load(&m.bytes_to_clients),
            atomic_load(&m.bytes_to_upstreams), atomic_load(&m.msgs_to_clients),
            atomic_load(&m.msgs_to_upstreams), atomic_load(&m.wire_to_clients),
            atomic_load(&m.wire_to_upstreams));
}

static void metrics_closes(sbuf *sb) {
  sb_printf(sb, "# TYPE wsproxy_closes_total counter\n");
  for (int sd = 0; sd < 2; sd++)
    for (int i = 0; i < NCODES; i++) {
      unsigned long n =
          atomic_load(sd ? &m.closes_upstream[i] : &m.closes_client[i]);
      if (n)
        sb_printf(sb, "wsproxy_closes_total{side=\"%s\",code=\"%d\"} %lu\n",
                  sd ? "upstream" : "client", i, n);
    }
  sb_printf(sb, "# TYPE wsproxy_upstream_open gauge\n");
  for (int i = 0; i < opt.nups; i++)
    sb_printf(sb, "wsproxy_upstream_open{upstream=\"%s\"} %d\n", opt.ups[i].url,
              atomic_load(&opt.ups[i].open));
}

int on_http(ws_loop_conn *conn, void *ud, const ws_request *req) {
  static const ws_kv text[] = {
      {"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
  if (ud != &admin_tag || !ws_slice_ieq(req->path, "/metrics"))
    return ws_loop_http_respond(conn, 404, text, 1, "not found\n", 10), 0;
  size_t cap = 1 << 16;
  char *b = malloc(cap);
  if (!b) return ws_loop_http_respond(conn, 503, NULL, 0, NULL, 0), 0;
  sbuf sb = {b, 0, cap};
  metrics_counters(&sb);
  metrics_closes(&sb);
  ws_loop_http_respond(conn, 200, text, 1, b, sb.len);
  free(b);
  return 0;
}
