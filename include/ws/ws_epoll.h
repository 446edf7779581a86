/*
 * libws epoll adapter (Linux): the event loop of <ws/ws_loop.h> over
 * epoll(7), with an eventfd to wake it from other threads. Link with
 * libws_epoll (pkg-config libws-epoll).
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_WS_EPOLL_H
#define WS_WS_EPOLL_H

#include <ws/ws_loop.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Creates an epoll loop; ws_loop_new() does the same. |cfg| is copied.
 * Returns 0, WS_ERR_INVALID_ARGUMENT, WS_LOOP_ERR_IO (epoll_create1 or
 * eventfd failed: errno set) or WS_ERR_NOMEM. Delete with ws_loop_del().
 */
WS_LOOP_EXTERN int ws_epoll_loop_new(ws_loop **ploop,
                                     const ws_loop_config *cfg);

#ifdef __cplusplus
}
#endif

#endif /* WS_WS_EPOLL_H */
