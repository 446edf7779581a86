/*
 * What the servers among the examples (echo-server, chat) share for
 * operators: log lines on stderr, the connection log (open, close,
 * refusal), errno text, --version, and systemd socket activation and
 * readiness notification without libsystemd. Not part of the library.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_EXAMPLE_UTIL_H
#define WS_EXAMPLE_UTIL_H

#include <ws/ws_loop.h>

#include <stdint.h>
#include <stdio.h>

/* -q: errors only (0); the default: one line per connection event (1);
 * -v: requests too, and loop totals at exit (2). */
extern int ex_verbosity;

/* The program name in front of every line. */
void ex_log_init(const char *prog);
/* One line on stderr, at |level| (0: always). Under systemd (stderr is
 * the journal) without a time stamp; else with one in UTC. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ex_log(int level, const char *fmt, ...);

/* Prints "PROG (libws X.Y.Z, library X.Y.Z)" on stdout; returns 0. */
int ex_version(const char *prog);

/* "cannot listen on HOST port N: what (errno text)" and the like: the
 * loop's error text, followed by strerror(|sys_errno|) for
 * WS_LOOP_ERR_IO. Returns |buf|. */
const char *ex_errtext(int err, int sys_errno, char *buf, size_t buflen);

/* Per-connection state for the connection log: when the request came and
 * its path. |tag| is the program's own (chat: the guest number). */
typedef struct ex_conn {
  uint64_t t0;
  unsigned tag;
  uint8_t refused;  /* ex_log_refused() said why: no close line */
  uint8_t path_off; /* text: the peer, NUL, the path (at most 96), NUL */
  char text[];      /* allocated to size: an idle connection stays small */
} ex_conn;

/* From on_request: allocates the state (NULL without memory) and sets it
 * as the connection's user data; on_close frees it (ex_conn_free). */
ex_conn *ex_conn_new(ws_loop_conn *conn, const ws_request *req);
void ex_conn_free(ws_loop_conn *conn);
/* -v: "request PEER METHOD TARGET origin=O" (also for plain HTTP,
 * with the status it got) */
void ex_log_request(ws_loop_conn *conn, const ws_request *req, int status);
/* "open PEER PATH protocol=P extensions=E" */
void ex_log_open(ws_loop_conn *conn);
/* "close PEER PATH: received C (reason), sent C, D s, in/out counters
 * [error]" */
void ex_log_close(ws_loop_conn *conn, const ws_loop_close_info *info);
/* "refused PEER PATH: STATUS reason" */
void ex_log_refused(ws_loop_conn *conn, const ws_request *req, int status,
                    const char *reason);
/* The same line for a connection the loop refused by itself (PATH "-"
 * when no request was parsed; STATUS "-" when it was closed without an
 * answer): a ws_loop_refused_fn, for ws_loop_set_on_refused(). */
int ex_on_refused(ws_loop *loop, void *ud, const ws_loop_refusal *r);
/* -v: the loop's totals (ws_loop_totals) as one line. */
void ex_log_totals(const ws_loop *loop);

/* systemd socket activation: the number of listening sockets passed in
 * (LISTEN_FDS, for this process by LISTEN_PID), starting at descriptor
 * 3; 0 if none. Clears the variables so children do not inherit them. */
int ex_listen_fds(void);
/* systemd readiness (sd_notify(3) protocol, NOTIFY_SOCKET): sends
 * |state|, e.g. "READY=1" or "STOPPING=1". Async-signal-safe; nothing
 * when not started by systemd. */
void ex_notify(const char *state);

#endif /* WS_EXAMPLE_UTIL_H */
