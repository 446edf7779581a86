/*
 * ws-proxy: the access log, one JSON line per connection at its end
 * (stderr, or --access-log FILE), written with one write(); for a
 * connection the loop refused by itself (a malformed request: 400;
 * 503 while draining) the same line with its "reason".
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include "proxy.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void sb_printf(sbuf *sb, const char *fmt, ...) {
  va_list ap;
  if (sb->len >= sb->cap) return;
  va_start(ap, fmt);
  int n = vsnprintf(sb->b + sb->len, sb->cap - sb->len, fmt, ap);
  va_end(ap);
  if (n > 0) sb->len += (size_t)n;
  if (sb->len > sb->cap) sb->len = sb->cap;
}

static void sb_json_str(sbuf *sb, const char *s) {
  sb_printf(sb, "\"");
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      sb_printf(sb, "\\%c", c);
    else if (c < 0x20)
      sb_printf(sb, "\\u%04x", c);
    else
      sb_printf(sb, "%c", c);
  }
  sb_printf(sb, "\"");
}

/* ,"name":"value" */
static void sb_field(sbuf *sb, const char *name, const char *value) {
  sb_printf(sb, ",\"%s\":", name);
  sb_json_str(sb, value);
}

static void log_closes(sbuf *sb, const pair *p) {
  const side *c = &p->s[SIDE_CLIENT], *u = &p->s[SIDE_UPSTREAM];
  sb_printf(sb, ",\"client_close\":{\"code\":%u", c->code);
  sb_field(sb, "reason", c->reason);
  sb_printf(sb, ",\"sent\":%u},\"upstream_close\":{\"code\":%u", c->sent,
            u->code);
  sb_field(sb, "reason", u->reason);
  sb_printf(sb, ",\"sent\":%u}", u->sent);
  sb_field(sb, "first", p->first ? p->first : "");
}

/* The line of |p|, with |reason| (NULL: none) for a refusal of the
 * loop's own. */
static void log_line(const pair *p, const char *reason) {
  char line[4096];
  sbuf sb = {line, 0, sizeof(line) - 2};
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  const side *c = &p->s[SIDE_CLIENT], *u = &p->s[SIDE_UPSTREAM];
  sb_printf(&sb, "{\"time\":\"%s.%03ldZ\",\"client\":", when,
            ts.tv_nsec / 1000000);
  sb_json_str(&sb, p->peer);
  sb_field(&sb, "path", p->path);
  sb_field(&sb, "subprotocol", p->proto);
  sb_field(&sb, "upstream", p->ups ? p->ups->url : "");
  sb_printf(&sb,
            ",\"attempts\":%d,\"status\":%d,\"duration_ms\":%" PRIu64
            ",\"msgs_to_upstream\":%" PRIu64 ",\"bytes_to_upstream\":%" PRIu64
            ",\"msgs_to_client\":%" PRIu64 ",\"bytes_to_client\":%" PRIu64
            ",\"wire_client_in\":%" PRIu64 ",\"wire_client_out\":%" PRIu64
            ",\"wire_upstream_in\":%" PRIu64 ",\"wire_upstream_out\":%" PRIu64,
            p->attempts, p->status, mono_ms() - p->t0_ms, c->st.msgs_in,
            c->st.bytes_in, c->st.msgs_out, c->st.bytes_out, c->st.wire_in,
            c->st.wire_out, u->st.wire_in, u->st.wire_out);
  log_closes(&sb, p);
  if (reason) sb_field(&sb, "reason", reason);
  sb_printf(&sb, "}");
  line[sb.len++] = '\n';
  ssize_t wr = write(opt.log_fd, line, sb.len); /* one line, one write */
  (void)wr;
}

void access_log(const pair *p) { log_line(p, NULL); }

int access_log_refused(ws_loop *loop, void *ud, const ws_loop_refusal *r) {
  pair p;
  (void)loop;
  (void)ud;
  memset(&p, 0, sizeof(p));
  snprintf(p.peer, sizeof(p.peer), "%s", r->peer);
  char *path = r->request ? dup_slice(r->request->target) : NULL;
  p.path = path;
  p.status = r->status; /* 0: closed without an answer */
  if (r->status >= 400 && r->status <= 599) /* the metrics count it too */
    atomic_fetch_add(&m.refused[r->status], 1);
  p.first = "proxy";
  p.t0_ms = mono_ms();
  log_line(&p, r->reason);
  free(path);
  return 0;
}
