/*
 * A simulated network and clock for the loop driver: the ws_drv_sys and
 * ws_drv_poller seams (lib/adapters/ws_driver.h) over in-memory sockets.
 * A test advances time by hours in microseconds, scripts what happens
 * when, and makes reads and writes partial, slow, refused or reset. Used
 * by tests/adapter/test_sim.c and fuzz/fuzz_loop.c.
 * SPDX-License-Identifier: MIT
 *
 * Time only moves inside the poller's wait: a wait with nothing ready
 * jumps the clock to the end of its timeout, or to the next scripted
 * action if that comes first, runs the actions due and looks again. A
 * wait without a timeout (-1) and with nothing scripted blocks for real
 * until another thread wakes the loop (at most |block_limit_ms|), so
 * cross-thread posts work too.
 *
 * Sockets are level-triggered, like epoll: readable while bytes, the end
 * or a reset are waiting (listeners: while connections are waiting);
 * writable while the peer's receive buffer has room.
 */
#ifndef WS_TEST_SIM_H
#define WS_TEST_SIM_H

#include "ws_driver.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sim sim;

typedef void (*sim_fn)(sim *s, void *arg);

sim *sim_new(uint64_t start_ms, uint64_t seed);
void sim_del(sim *s);
const ws_drv_sys *sim_sys(sim *s);
/* The poller for one loop (ws_drv_new() takes ownership of it; its
 * del() does not free the simulation). */
ws_drv_poller sim_poller(sim *s);

uint64_t sim_now(const sim *s);
/* Runs |fn| when the clock reaches |at_ms| (in time order, and for equal
 * times in the order scheduled). */
void sim_at(sim *s, uint64_t at_ms, sim_fn fn, void *arg);

/* ---- the test's own end of connections ------------------------------------ */

/* Connects to the simulated listener on |port| (it shows up in its
 * accept queue). Returns the test's descriptor, or -1 if nobody listens. */
int sim_dial(sim *s, uint16_t port);
/* Appends bytes for the other end to read, as far as its receive buffer
 * takes them; returns how many. */
size_t sim_send(sim *s, int fd, const void *data, size_t len);
/* Takes up to |cap| received bytes; returns how many. */
size_t sim_recv(sim *s, int fd, void *buf, size_t cap);
/* Bytes waiting to be read by |fd|. */
size_t sim_pending(const sim *s, int fd);
/* 1 once the other end shut down its writing or closed. */
int sim_peer_done(const sim *s, int fd);
/* 1 if the other end's descriptor is closed. */
int sim_peer_closed(const sim *s, int fd);
/* Ends the connection: orderly (FIN) or with a reset. */
void sim_close(sim *s, int fd);
void sim_reset(sim *s, int fd);
/* Receive buffer size of |fd| (default 256 KiB): what its peer can send
 * before send() gets EAGAIN. */
void sim_set_rcvbuf(sim *s, int fd, size_t cap);

/* ---- faults and counters -------------------------------------------------- */

typedef struct sim_stats {
  uint64_t waits;       /* poller waits */
  uint64_t idle_waits;  /* waits with no timeout that returned nothing:
                           one after new work is normal, a run of them
                           at one time is a spin */
  uint64_t accepts, recvs, sends, eagain_sends;
  uint64_t open_fds;    /* descriptors open now (both ends) */
} sim_stats;

void sim_get_stats(const sim *s, sim_stats *st);
/* The next |n| accept() calls fail with |err| (EMFILE, ECONNABORTED...). */
void sim_fail_accepts(sim *s, int n, int err);
/* recv() returns at most |max_read| bytes, sendv() takes at most
 * |max_write| (0: no limit). */
void sim_set_partial(sim *s, size_t max_read, size_t max_write);
/* How long a wait(-1) with nothing scripted blocks for a real wake-up
 * before it fails (default 10000 ms of real time). */
void sim_set_block_limit(sim *s, uint64_t ms);
/* 1 if every descriptor the loop opened is closed. */
int sim_all_closed(const sim *s);

#endif /* WS_TEST_SIM_H */
