/*
 * Prepared messages: the object and its compressed variants (see
 * ws_prepared.h for why they may be shared). Sending one is on the
 * connection's send side, ws_conn_send_prepared() in ws_conn_tx.c.
 * SPDX-License-Identifier: MIT
 */
#include "ws_prepared.h"
#include "ws_switch.h" /* WS_SMALL_CODE, WS_HAS_DEFLATE */

/* Writes the unmasked header of a whole message with a |len|-byte
 * payload just before |payload|; returns its length. */
static uint8_t put_header(uint8_t *payload, unsigned rsv, unsigned opcode,
                          size_t len) {
  uint8_t hdr[WS_FRAME_HEADER_MAX];
  size_t hlen = ws_frame_put_header(
      hdr, 0x80u | (rsv & 0x7u) << 4 | (opcode & 0xFu), len, NULL);
  memcpy(payload - hlen, hdr, hlen);
  return (uint8_t)hlen;
}

int ws_prepared_new(ws_prepared **pprep, ws_opcode opcode, const void *data,
                    size_t len, uint32_t flags, const ws_mem *mem) {
  ws_mem m;
  if (!pprep) return WS_ERR_INVALID_ARGUMENT;
  *pprep = NULL;
  if ((len && !data) || (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) ||
      (flags & ~(uint32_t)WS_SEND_NO_COMPRESS))
    return WS_ERR_INVALID_ARGUMENT;
  if (ws_mem_resolve(&m, mem)) return WS_ERR_INVALID_ARGUMENT;
  if (len > SIZE_MAX - sizeof(ws_prepared) - WSP_ROOM) return WS_ERR_NOMEM;
  ws_prepared *p = ws_malloc(&m, sizeof(*p) + WSP_ROOM + len);
  if (!p) return WS_ERR_NOMEM;
  p->mem = m;
  p->variants = NULL;
  p->len = len;
  p->opcode = (uint8_t)opcode;
  p->no_compress = (flags & WS_SEND_NO_COMPRESS) ? 1 : 0;
  if (len) memcpy(p->data + WSP_ROOM, data, len);
  /* (size builds frame a plain message as they send it: ws_conn_tx.c) */
  p->hlen = WS_SMALL_CODE ? 0 : put_header(p->data + WSP_ROOM, 0, opcode, len);
  *pprep = p;
  return 0;
}

void ws_prepared_del(ws_prepared *p) {
  if (!p) return;
  /* (variants are made only where there is a compressor) */
  wsp_variant *v = WS_HAS_DEFLATE ? p->variants : NULL;
  while (v) {
    wsp_variant *next = v->next;
    ws_free(&p->mem, v);
    v = next;
  }
  ws_free(&p->mem, p);
}

#if !defined(WS_NO_DEFLATE) && !defined(WS_INFLATE_ONLY)
/* Compresses the payload into |*pv| (grown as needed) as one message
 * (RFC 7692 7.2.1: a sync flush, whose 00 00 ff ff tail is then
 * removed). */
static int compress_into(ws_prepared *p, ws_deflater *z, wsp_variant **pv,
                         size_t *pcap) {
  const uint8_t *in = wsp_payload(p);
  size_t used = 0, clen = 0;
  int rv;
  do {
    wsp_variant *v = *pv;
    size_t room = *pcap - WSP_ROOM - clen;
    if (room < 64) { /* grow: double what there is */
      if (*pcap > (SIZE_MAX - sizeof(*v)) / 2) return WS_ERR_NOMEM;
      size_t cap = *pcap * 2;
      v = ws_realloc(&p->mem, v, sizeof(*v) + cap);
      if (!v) return WS_ERR_NOMEM;
      *pv = v;
      *pcap = cap;
      room = cap - WSP_ROOM - clen;
    }
    size_t nin, nout;
    rv = ws_deflate(z, p->len ? in + used : in, p->len - used, &nin,
                    v->data + WSP_ROOM + clen, room, &nout,
                    WS_DEFLATE_SYNC_FLUSH);
    used += nin;
    clen += nout;
  } while (rv == WS_ERR_WOULDBLOCK);
  if (rv || clen < 4) return WS_ERR_INTERNAL;
  (*pv)->len = clen - 4; /* it ends in 00 00 ff ff */
  return 0;
}

const wsp_variant *wsp_find(const ws_prepared *p, unsigned bits, int level) {
  const wsp_variant *v;
  for (v = p->variants; v; v = v->next)
    if (v->bits == bits && v->level == level) return v;
  return NULL;
}

int wsp_compressed(ws_prepared *p, unsigned bits, int level, ws_deflater *z,
                   const wsp_variant **pv) {
  wsp_variant *v;
  if ((*pv = wsp_find(p, bits, level)) != NULL) return 0;
  ws_deflater *own = NULL;
  if (!z) {
    own = ws_malloc(&p->mem, sizeof(*own));
    if (!own) return WS_ERR_NOMEM;
    if (ws_deflate_init(own, &p->mem, bits, level)) {
      ws_free(&p->mem, own);
      return WS_ERR_NOMEM;
    }
    z = own;
  }
  /* most text shrinks to well under half; grown if not */
  size_t cap = WSP_ROOM + p->len / 2 + 64;
  int rv = WS_ERR_NOMEM;
  v = ws_malloc(&p->mem, sizeof(*v) + cap);
  if (v) rv = compress_into(p, z, &v, &cap);
  if (own) {
    ws_deflate_free(own);
    ws_free(&p->mem, own);
  } else {
    ws_deflate_reset(z); /* clean for its next borrower */
  }
  if (rv) {
    ws_free(&p->mem, v);
    return rv;
  }
  v->bits = (uint8_t)bits;
  v->level = (uint8_t)level;
  v->hlen = put_header(v->data + WSP_ROOM, WS_RSV1, p->opcode, v->len);
  v->next = p->variants;
  p->variants = v;
  *pv = v;
  return 0;
}
#endif /* !WS_NO_DEFLATE && !WS_INFLATE_ONLY */
