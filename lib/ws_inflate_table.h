/*
 * The decoding tables of ws_inflate.c, built by ws_inflate_table.c.
 * Internal: not part of the API.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_INFLATE_TABLE_H
#define WS_INFLATE_TABLE_H

#include "ws_deflate.h"

#include <stdint.h>

#define LIT_ROOT 9u
#define DIST_ROOT 6u
#define CLEN_ROOT 7u
/* Root table plus the most its subtables can take. A subtable is as
 * deep as the subtree under its root prefix needs to be complete (see
 * ws_inflate_build_table()), which makes the largest total over all complete
 * codes of at most 15 bits a property of the counts of codes alone: 852 entries
 * for 286 literal/length codes with a 9-bit root, 592 for 30 distance codes
 * with a 6-bit root (the maxima over every count vector, as tabulated for this
 * layout by zlib's examples/enough.c; figures, not code). The code length code
 * (19 codes of at most 7 bits) needs no subtable. ws_inflate_build_table()
 * still checks the bound. */
#define LIT_CAP 852u
#define DIST_CAP 592u
#define CLEN_CAP 128u
#define LENS_MAX 320u

#define E_LIT 0x8000u
#define E_SUB 0x4000u
#define E_EOB 0x2000u
#define E_BAD 0x1000u

enum { T_CLEN, T_LIT, T_DIST }; /* what a table decodes */

/*
 * Builds the table for the |n| code lengths |lens| into |tab| (|cap|
 * entries) with |root| index bits, with |sorted| (LENS_MAX entries) as
 * work space. Returns 0, or -1 for an oversubscribed code, an incomplete
 * one (other than a single code of length 1, or no code at all for
 * distances), or a table overflow.
 */
int ws_inflate_build_table(uint32_t *tab, unsigned cap, unsigned root,
                           const uint8_t *lens, unsigned n, int type,
                           uint16_t *sorted);

/* The tables ws_inflate_build_table() makes for the fixed code (RFC 1951
 * 3.2.6), read-only: 2^LIT_ROOT and 2^DIST_ROOT entries. */
extern const uint32_t ws_inflate_fixed_lit[1u << LIT_ROOT];
extern const uint32_t ws_inflate_fixed_dist[1u << DIST_ROOT];

#endif /* WS_INFLATE_TABLE_H */
