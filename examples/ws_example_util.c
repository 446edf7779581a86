/*
 * Logging, the connection log, and systemd socket activation and
 * readiness for the example servers (see ws_example_util.h).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include "ws_example_util.h"

#include <ws/version.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0 /* macOS: a datagram to a gone reader raises none */
#endif
#ifndef SOCK_CLOEXEC
#  define SOCK_CLOEXEC 0 /* macOS: the socket lives for one call only */
#endif

int ex_verbosity = 1;
static const char *prog_name = "libws";
static struct sockaddr_un notify_addr; /* read by ex_notify() */
static socklen_t notify_len;           /* 0: not under systemd */

void ex_log_init(const char *prog) {
  const char *path = getenv("NOTIFY_SOCKET");
  size_t plen = path ? strlen(path) : 0;
  prog_name = prog;
  if (plen == 0 || plen >= sizeof(notify_addr.sun_path) ||
      (path[0] != '/' && path[0] != '@'))
    return;
  notify_addr.sun_family = AF_UNIX;
  memcpy(notify_addr.sun_path, path, plen);
  if (path[0] == '@') notify_addr.sun_path[0] = '\0'; /* abstract */
  notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
}

void ex_log(int level, const char *fmt, ...) {
  char line[1024];
  size_t n = 0;
  if (level > ex_verbosity) return;
  if (!getenv("JOURNAL_STREAM")) { /* the journal stamps lines itself */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ",
                          ts.tv_nsec / 1000000);
  }
  n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: ", prog_name);
  va_list ap;
  va_start(ap, fmt);
  if (n < sizeof(line)) (void)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}

int ex_version(const char *prog) {
  uint32_t v = ws_version();
  printf("%s (libws %s, library %u.%u.%u)\n", prog, WS_VERSION,
         (unsigned)(v >> 16), (unsigned)(v >> 8 & 0xff), (unsigned)(v & 0xff));
  return 0;
}

const char *ex_errtext(int err, int sys_errno, char *buf, size_t buflen) {
  if (err == WS_LOOP_ERR_IO && sys_errno)
    snprintf(buf, buflen, "%s", strerror(sys_errno));
  else if (err == WS_ERR_INVALID_ARGUMENT)
    snprintf(buf, buflen,
             "invalid address, or a host name that does not "
             "resolve");
  else
    snprintf(buf, buflen, "%s", ws_loop_strerror(err));
  return buf;
}

/* Up to 96 bytes of |v|, control bytes as '?', into |buf|. */
static const char *clean(ws_slice v, char *buf, size_t buflen) {
  size_t n = v.len < buflen - 1 ? v.len : buflen - 1;
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)(v.base[i] < 0x20 || v.base[i] == 0x7f ? '?' : v.base[i]);
  buf[n] = '\0';
  return v.base ? buf : "-";
}

ex_conn *ex_conn_new(ws_loop_conn *conn, const ws_request *req) {
  char peer[64], path[97];
  ws_loop_conn_peer(conn, peer, sizeof(peer)); /* gone at close */
  clean(req->path, path, sizeof(path));       /* no control bytes */
  size_t plen = strlen(peer) + 1, tlen = strlen(path) + 1;
  ex_conn *x = malloc(sizeof(*x) + plen + tlen);
  if (!x) return NULL;
  memset(x, 0, sizeof(*x));
  x->t0 = ws_loop_now(ws_loop_conn_loop(conn));
  x->path_off = (uint8_t)plen;
  memcpy(x->text, peer, plen);
  memcpy(x->text + plen, path, tlen);
  ws_loop_conn_set_user_data(conn, x);
  return x;
}

void ex_conn_free(ws_loop_conn *conn) {
  free(ws_loop_conn_user_data(conn));
  ws_loop_conn_set_user_data(conn, NULL);
}

static const char *peer_of(ws_loop_conn *conn, char *buf, size_t buflen) {
  ex_conn *x = ws_loop_conn_user_data(conn);
  if (x && x->text[0]) return x->text;
  ws_loop_conn_peer(conn, buf, buflen);
  return buf[0] ? buf : "-";
}

static const char *path_of(ws_loop_conn *conn) {
  ex_conn *x = ws_loop_conn_user_data(conn);
  return x && x->text[x->path_off] ? x->text + x->path_off : "-";
}

void ex_log_request(ws_loop_conn *conn, const ws_request *req, int status) {
  char peer[64], m[16], t[97], o[97], st[16] = "";
  if (ex_verbosity < 2) return;
  ws_loop_conn_peer(conn, peer, sizeof(peer));
  if (status) snprintf(st, sizeof(st), " -> %d", status);
  ex_log(2, "request %s %s %s origin=%s%s", peer,
         clean(req->method, m, sizeof(m)), clean(req->target, t, sizeof(t)),
         clean(req->origin, o, sizeof(o)), st);
}

void ex_log_open(ws_loop_conn *conn) {
  char peer[64], ext[160] = "-";
  if (ex_verbosity < 1) return;
  const ws_conn *ws = ws_loop_conn_ws(conn);
  ws_slice proto = ws_conn_protocol(ws);
  ws_pmd_params pmd;
  ws_conn_pmd(ws, &pmd);
  if (pmd.enabled)
    snprintf(
        ext, sizeof(ext),
        "permessage-deflate(server_max_window_bits=%u%s, "
        "client_max_window_bits=%u%s)",
        pmd.server_max_window_bits,
        pmd.server_no_context_takeover ? ", server_no_context_takeover" : "",
        pmd.client_max_window_bits,
        pmd.client_no_context_takeover ? ", client_no_context_takeover" : "");
  ex_log(1, "open %s %s protocol=%.*s extensions=%s",
         peer_of(conn, peer, sizeof(peer)), path_of(conn),
         proto.len ? (int)proto.len : 1,
         proto.len ? (const char *)proto.base : "-", ext);
}

void ex_log_close(ws_loop_conn *conn, const ws_loop_close_info *info) {
  char peer[64], err[160] = "", sent[16] = "none";
  ex_conn *x = ws_loop_conn_user_data(conn);
  if (ex_verbosity < 1 || (x && x->refused)) return;
  uint64_t now = ws_loop_now(ws_loop_conn_loop(conn));
  uint64_t ms = x && now > x->t0 ? now - x->t0 : 0;
  ws_stats st;
  ws_conn_stats(ws_loop_conn_ws(conn), &st);
  if (info->sent_code) snprintf(sent, sizeof(sent), "%u", info->sent_code);
  if (info->error) {
    char e[128];
    snprintf(err, sizeof(err), ", error: %s",
             info->transport_error && *info->transport_error
                 ? info->transport_error
                 : ex_errtext(info->error, info->sys_errno, e, sizeof(e)));
  }
  int rlen = info->reason.len > 60 ? 60 : (int)info->reason.len;
  ex_log(1,
         "close %s %s: received %u%s%.*s%s, sent %s, %llu.%03llu s, "
         "in %llu msgs %llu B (wire %llu B), out %llu msgs %llu B "
         "(wire %llu B)%s",
         peer_of(conn, peer, sizeof(peer)), path_of(conn), info->code,
         rlen ? " \"" : "", rlen, rlen ? (const char *)info->reason.base : "",
         rlen ? "\"" : "", sent, (unsigned long long)(ms / 1000),
         (unsigned long long)(ms % 1000), (unsigned long long)st.msgs_in,
         (unsigned long long)st.bytes_in, (unsigned long long)st.wire_in,
         (unsigned long long)st.msgs_out, (unsigned long long)st.bytes_out,
         (unsigned long long)st.wire_out, err);
}

void ex_log_refused(ws_loop_conn *conn, const ws_request *req, int status,
                    const char *reason) {
  char peer[64];
  char path[97];
  ex_conn *x = ws_loop_conn_user_data(conn);
  if (x) x->refused = 1;
  if (ex_verbosity < 1) return;
  ex_log(1, "refused %s %s: %d %s", peer_of(conn, peer, sizeof(peer)),
         clean(req->path, path, sizeof(path)), status, reason);
}

int ex_on_refused(ws_loop *loop, void *ud, const ws_loop_refusal *r) {
  char path[97], st[16] = "-";
  ws_slice none = {NULL, 0};
  (void)loop;
  (void)ud;
  if (ex_verbosity < 1) return 0;
  if (r->status) snprintf(st, sizeof(st), "%d", r->status);
  ex_log(1, "refused %s %s: %s %s", r->peer[0] ? r->peer : "-",
         clean(r->request ? r->request->path : none, path, sizeof(path)), st,
         r->reason);
  return 0;
}

void ex_log_totals(const ws_loop *loop) {
  ws_loop_stats st;
  if (ex_verbosity < 2) return;
  ws_loop_stats_get(loop, &st, sizeof(st));
  ex_log(2,
         "totals: %llu connections accepted, %llu closed, %llu open; in "
         "%llu msgs %llu B (wire %llu B), out %llu msgs %llu B (wire %llu B)",
         (unsigned long long)st.accepted, (unsigned long long)st.closed,
         (unsigned long long)st.open, (unsigned long long)st.msgs_in,
         (unsigned long long)st.bytes_in, (unsigned long long)st.wire_in,
         (unsigned long long)st.msgs_out, (unsigned long long)st.bytes_out,
         (unsigned long long)st.wire_out);
}

int ex_listen_fds(void) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  int n = 0;
  if (pid && fds && strtol(pid, NULL, 10) == (long)getpid())
    n = (int)strtol(fds, NULL, 10);
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return n > 0 && n < 64 ? n : 0;
}

void ex_notify(const char *state) {
  if (!notify_len) return;
  int saved = errno, fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    (void)sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                 (const struct sockaddr *)&notify_addr, notify_len);
    close(fd);
  }
  errno = saved;
}
