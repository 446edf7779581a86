/*
 * The connection driver shared by the loop backends (epoll, kqueue): all
 * of <ws/ws_loop.h> except waiting for readiness, which a backend
 * provides through ws_drv_poller.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_DRIVER_H
#define WS_DRIVER_H

#include <ws/ws_loop.h>

/* Readiness and interest bits between the driver and a backend. */
#define WS_DRV_IN 0x1u
#define WS_DRV_OUT 0x2u
#define WS_DRV_ERR 0x4u /* error or hang-up; reported whatever the interest */

typedef struct ws_drv_poller {
  void *self;
  /* Starts watching |fd| for |events| (may be 0); |tag| comes back in
   * ws_drv_ready(). Returns 0 or -1 with errno. */
  int (*add)(void *self, int fd, void *tag, unsigned events);
  /* Changes the interest of a watched |fd|. */
  int (*mod)(void *self, int fd, void *tag, unsigned events);
  /* Stops watching |fd| (before it is closed). */
  void (*remove)(void *self, int fd);
  /* Waits up to |timeout_ms| (-1: no limit) and calls ws_drv_ready() for
   * each ready fd. A wake() ends the wait. Returns 0, or -1 with errno
   * for a failure (EINTR is not one). */
  int (*wait)(void *self, ws_loop *loop, int timeout_ms);
  /* Any thread, async-signal-safe: ends a wait, now or the next one. */
  void (*wake)(void *self);
  void (*del)(void *self);
} ws_drv_poller;

/* Creates a loop over |poller|, which it owns from then on (also on
 * failure: poller->del() is called). */
int ws_drv_new(ws_loop **ploop, const ws_loop_config *cfg,
               const ws_drv_poller *poller);

/* Called by the backend's wait() for each ready fd. */
void ws_drv_ready(ws_loop *loop, void *tag, unsigned events);

#endif /* WS_DRIVER_H */
