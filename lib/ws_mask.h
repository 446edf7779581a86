/*
 * Masking internals (RFC 6455 5.3). Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_MASK_H
#define WS_MASK_H

#include "ws_int.h"

/*
 * Byte-at-a-time reference for ws_mask(): XORs |len| bytes of |buf| with
 * |key| starting at key offset |offset| (only its low two bits are used)
 * and returns (offset + len) mod 4. Kept for tests to compare against.
 */
size_t ws_mask_scalar(uint8_t *buf, size_t len, const uint8_t key[4],
                      size_t offset);

/*
 * Copies |len| bytes from |src| to |dst| and XORs them with |key| from key
 * offset |offset| in the same pass. |dst| may equal |src| (then it works
 * like ws_mask()); otherwise the two MUST NOT overlap. Returns the offset
 * for the next chunk, (offset + len) mod 4.
 */
size_t ws_copy_mask(uint8_t *dst, const uint8_t *src, size_t len,
                    const uint8_t key[4], size_t offset);

#endif /* WS_MASK_H */
