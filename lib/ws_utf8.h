/*
 * UTF-8 validation internals. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include "ws_int.h"

/*
 * ws_utf8.state is 0 between characters, WS_UTF8_FAILED once a byte was
 * rejected, and otherwise one of seven values for "inside a sequence"
 * (bytes still owed and the range of the next one; see ws_utf8.c). Treat
 * it as opaque apart from those two.
 */
#define WS_UTF8_FAILED 6u

/*
 * Validates |len| more bytes like ws_utf8_feed() and returns how many
 * bytes precede the first invalid one: |len| if there is none (the input
 * may still end inside a sequence), 0 if |u| had already failed. On
 * failure |u| stays failed.
 */
size_t ws_utf8_scan(ws_utf8 *u, const uint8_t *buf, size_t len);

/* Byte-at-a-time references for ws_utf8_scan() and ws_utf8_feed(), with
 * the same contracts; kept for tests to compare against. */
size_t ws_utf8_scan_scalar(ws_utf8 *u, const uint8_t *buf, size_t len);
int ws_utf8_feed_scalar(ws_utf8 *u, const uint8_t *buf, size_t len);

/*
 * The receive hot path: unmasks |len| bytes of |buf| in place with |key|
 * from key offset |*poffset| (|key| NULL: no unmasking, |poffset| may then
 * be NULL) and validates them with |u| (NULL: no validation), in blocks
 * small enough to stay in L1 between the two steps.
 *
 * Returns 0 and sets |*pvalid| (if not NULL) to |len|, or WS_ERR_UTF8 and
 * sets |*pvalid| to the number of bytes before the first invalid one. On
 * success |*poffset| is advanced by |len|; on failure it is advanced by the
 * number of bytes unmasked, which is at least |*pvalid| + 1 (the bytes
 * after those are left as they were), except that nothing is unmasked and
 * |*pvalid| is 0 when |u| had already failed.
 */
int ws_unmask_utf8(uint8_t *buf, size_t len, const uint8_t key[4],
                   size_t *poffset, ws_utf8 *u, size_t *pvalid);

#endif /* WS_UTF8_H */
