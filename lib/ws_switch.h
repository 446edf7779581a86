/*
 * Build switches (README "Firmware"), for the modules they change: kept
 * out of ws_int.h so that the others are not checked under every
 * combination. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_SWITCH_H
#define WS_SWITCH_H

#include "ws_int.h" /* WS_SMALL_CODE */

/* ---- build switches ---------------------------------------------------- */

/* Parts left out at compile time (README "Firmware"): WS_NO_DEFLATE (no
 * permessage-deflate), WS_INFLATE_ONLY (compressed messages are received,
 * never sent), WS_NO_SERVER, WS_NO_CLIENT. Inside the library they read
 * as the WS_HAS_* below, 0 or 1. */
#if defined(WS_NO_DEFLATE)
#  define WS_HAS_INFLATE 0
#  define WS_HAS_DEFLATE 0
#elif defined(WS_INFLATE_ONLY)
#  define WS_HAS_INFLATE 1
#  define WS_HAS_DEFLATE 0
#else
#  define WS_HAS_INFLATE 1
#  define WS_HAS_DEFLATE 1
#endif
#if defined(WS_NO_SERVER) && defined(WS_NO_CLIENT)
#  error "WS_NO_SERVER and WS_NO_CLIENT: no role left to build"
#endif
#if defined(WS_NO_SERVER)
#  define WS_HAS_SERVER 0
#else
#  define WS_HAS_SERVER 1
#endif
#if defined(WS_NO_CLIENT)
#  define WS_HAS_CLIENT 0
#else
#  define WS_HAS_CLIENT 1
#endif

#endif /* WS_SWITCH_H */
