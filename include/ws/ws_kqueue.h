/*
 * libws kqueue adapter (FreeBSD, OpenBSD, NetBSD, macOS): the event loop
 * of <ws/ws_loop.h> over kqueue(2)/kevent(2), with a pipe to wake it from
 * other threads. Link with libws_kqueue (pkg-config libws-kqueue).
 *
 * Status: built and tested on Linux only, against a kevent-on-epoll test
 * double (tests/kqueue-shim); native BSD and macOS runs are still to be
 * done. See README.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_WS_KQUEUE_H
#define WS_WS_KQUEUE_H

#include <ws/ws_loop.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Creates a kqueue loop; ws_loop_new() does the same in libws_kqueue.
 * |cfg| is copied. Returns 0, WS_ERR_INVALID_ARGUMENT, WS_LOOP_ERR_IO
 * (kqueue() or pipe() failed: errno set) or WS_ERR_NOMEM. Delete with
 * ws_loop_del().
 */
WS_LOOP_EXTERN int ws_kqueue_loop_new(ws_loop **ploop,
                                      const ws_loop_config *cfg);

#ifdef __cplusplus
}
#endif

#endif /* WS_WS_KQUEUE_H */
