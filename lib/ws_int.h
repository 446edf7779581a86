/*
 * Internal declarations shared by the core's modules. Not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef WS_INT_H
#define WS_INT_H

#include <ws/ws.h>

#include <string.h>

#if defined(__GNUC__)
#  define WS_LIKELY(x) __builtin_expect(!!(x), 1)
#  define WS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define WS_LIKELY(x) (x)
#  define WS_UNLIKELY(x) (x)
#endif

#if defined(__GNUC__)
#  define WS_ALWAYS_INLINE inline __attribute__((always_inline))
#  define WS_NOINLINE __attribute__((noinline))
#  define WS_COLD __attribute__((cold))
#else
#  define WS_ALWAYS_INLINE inline
#  define WS_NOINLINE
#  define WS_COLD
#endif

/* The byte-at-a-time references (ws_utf8_scan_scalar(), ws_mask_scalar()
 * and the like) and the choice of UTF-8 implementation exist for tests
 * and benchmarks, which run hosted: freestanding builds (firmware) leave
 * them out. */
#if defined(WS_FREESTANDING)
#  define WS_HAS_REFERENCE 0
#else
#  define WS_HAS_REFERENCE 1
#endif

#define WS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define WS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- allocation (ws_mem.c) ------------------------------------------ */

/* Resolves a caller-supplied allocator (NULL or partly NULL) into one
 * with every function set, or returns WS_ERR_INVALID_ARGUMENT when no
 * default exists (freestanding builds). */
int ws_mem_resolve(ws_mem *dst, const ws_mem *src);

/* WS_SMALL, or -Os (__OPTIMIZE_SIZE__): where code or tables buy only
 * speed, the smaller way is built (the inflater's fixed-code tables are
 * made when a fixed block needs them instead of kept as 2.3 KB of
 * read-only data, ...). Results are the same; the default -O2 build
 * keeps the fast ways. Inside the library it reads as WS_SMALL_CODE. */
#if defined(WS_SMALL) || defined(__OPTIMIZE_SIZE__)
#  define WS_SMALL_CODE 1
#else
#  define WS_SMALL_CODE 0
#endif

/* Allocation through |m|; ws_free() takes NULL. Size builds of both
 * roles call ws_malloc() and ws_free() in enough places that one copy of
 * each, in ws_mem.c, is smaller than the compiler's copy in every
 * module; the other builds keep them in line. */
#if WS_SMALL_CODE && !defined(WS_NO_SERVER) && !defined(WS_NO_CLIENT)
#  define WS_MEM_CALLS 1
void *ws_malloc(const ws_mem *m, size_t n);
void ws_free(const ws_mem *m, void *p);
#else
#  define WS_MEM_CALLS 0
static inline void *ws_malloc(const ws_mem *m, size_t n) {
  return m->malloc(n, m->user_data);
}
static inline void ws_free(const ws_mem *m, void *p) {
  if (p) m->free(p, m->user_data);
}
#endif
static inline void *ws_realloc(const ws_mem *m, void *p, size_t n) {
  return m->realloc(p, n, m->user_data);
}

/* ---- byte buffer (ws_mem.c) ------------------------------------------ */

/* A growable byte buffer: bytes [pos, len) are live. */
typedef struct ws_buf {
  uint8_t *base;
  size_t pos; /* first unconsumed byte */
  size_t len; /* end of data */
  size_t cap;
} ws_buf;

/* Ensures room for |extra| more bytes after len (compacting consumed
 * bytes first). Returns 0 or WS_ERR_NOMEM. */
int ws_buf_reserve(ws_buf *b, const ws_mem *m, size_t extra);

/* As ws_buf_reserve(), but never grows the capacity past |limit| unless
 * the live bytes plus |extra| need more. */
int ws_buf_reserve_bounded(ws_buf *b, const ws_mem *m, size_t extra,
                           size_t limit);

/* Appends |n| bytes. Returns 0 or WS_ERR_NOMEM. */
int ws_buf_append(ws_buf *b, const ws_mem *m, const void *data, size_t n);

/* Marks |n| bytes consumed; when everything is, a buffer of at most
 * |keep| bytes stays allocated (empty) for the next use, a larger one is
 * freed (keep 0: always). */
void ws_buf_consume_keep(ws_buf *b, const ws_mem *m, size_t n, size_t keep);

/* Empties |b|, keeping its storage if it is at most |keep| bytes. */
void ws_buf_clear_keep(ws_buf *b, const ws_mem *m, size_t keep);

void ws_buf_free(ws_buf *b, const ws_mem *m);

static inline size_t ws_buf_size(const ws_buf *b) { return b->len - b->pos; }

/* ---- frame rules (ws_frame.c) ----------------------------------------- */

/* The section 5 rules ws_frame_check() applies, in the order it applies
 * them. It returns the first that fails, 0 if none: a number, not a
 * reason text, so that the texts are kept once, in the connection's
 * fault table (ws_conn_int.h, in this order), and a build that links no
 * connection links no text. */
enum {
  WS_FRULE_UNMASKED = 1, /* "unmasked frame from client" */
  WS_FRULE_MASKED,       /* "masked frame from server" */
  WS_FRULE_RSV,          /* "reserved bits set" */
  WS_FRULE_CONTROL,      /* "invalid control frame" */
  WS_FRULE_OPCODE        /* "reserved opcode" */
};
unsigned ws_frame_check(const ws_frame_header *hd, int is_server,
                        unsigned rsv_allowed);

/* ws_frame_encode_header() from the header's parts: |b0| its first byte
 * (FIN, RSV, opcode), |mask| the key or NULL (unmasked). The internal
 * writers call it without filling a ws_frame_header. */
size_t ws_frame_put_header(uint8_t *out, unsigned b0, uint64_t len,
                           const uint8_t *mask);

/* ---- SHA-1 and base64 (ws_sha1.c, ws_base64.c) ------------------------ */

typedef struct ws_sha1_ctx {
  uint32_t h[5];
  uint64_t total;
  uint8_t block[64];
  size_t blocklen;
} ws_sha1_ctx;

void ws_sha1_init(ws_sha1_ctx *ctx);
void ws_sha1_update(ws_sha1_ctx *ctx, const void *data, size_t len);
void ws_sha1_final(ws_sha1_ctx *ctx, uint8_t out[20]);

/* Writes the padded base64 of |len| bytes to |out| (4*ceil(len/3) chars,
 * no NUL); returns that length. */
size_t ws_base64_encode(const uint8_t *in, size_t len, char *out);

/* Strict decode of padded base64 (RFC 4648 4, no whitespace, canonical
 * padding bits). Returns 0 and the decoded size in |*poutlen|, or
 * WS_ERR_INVALID_ARGUMENT if invalid or over |outcap| bytes. */
int ws_base64_decode(const uint8_t *in, size_t len, uint8_t *out,
                     size_t outcap, size_t *poutlen);

/* ---- ASCII helpers (ws_handshake.c) ------------------------------------ */

/* Case-insensitive comparison of two byte ranges. */
int ws_ascii_ieq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* 1 if |c| is an RFC 7230 tchar (a token character). */
int ws_is_tchar(uint8_t c);

/* 1 if |list| (a comma list) contains |token| case-insensitively. */
int ws_list_has_token(ws_slice list, const char *token);

#endif /* WS_INT_H */
