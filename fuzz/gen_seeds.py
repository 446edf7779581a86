#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_inflate and fuzz_deflate.

    fuzz/gen_seeds.py [CORPUS-DIR]     (default: fuzz/corpus)

Each seed is written as CORPUS-DIR/TARGET/<sha1 of content>, the naming
the other corpora use; existing files are left alone. The input layouts
are described at the top of fuzz_inflate.c and fuzz_deflate.c. Python's
zlib module (Debian's zlib) makes the compressed streams: like zlib in
the unit tests, it is an oracle for tests only.

SPDX-License-Identifier: MIT
"""
import hashlib
import os
import random
import sys
import zlib

TAIL = b"\x00\x00\xff\xff"


def write(root, target, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def corpus_texts():
    rnd = random.Random(7692)
    words = (b"the websocket frame message deflate window server client "
             b"close ping payload context takeover Hello world").split()
    text = b" ".join(rnd.choice(words) for _ in range(300))
    json = b"".join(b'{"id":%d,"user":"%s","ok":%s}\n' %
                    (rnd.randrange(10000), rnd.choice(words),
                     rnd.choice([b"true", b"false"])) for _ in range(60))
    binary = bytes(rnd.randrange(256) for _ in range(700))
    runs = b"a" * 300 + b"ab" * 200 + bytes(range(256)) * 3
    return [b"Hello", text, json, binary, runs]


def zraw(msgs, wbits, level, strategy=zlib.Z_DEFAULT_STRATEGY):
    """Raw deflate, one sync flush per message (tails kept)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -max(wbits, 9), 8, strategy)
    out = b""
    for m in msgs:
        out += c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
    return out


def inflate_seeds(root):
    t = "fuzz_inflate"
    # byte 0: window - 8 | reset << 3 | in-mode << 4 | out-mode << 6
    hx = bytes.fromhex
    # RFC 7692 7.2.3.1-7.2.3.5, window 15, mixed chunking
    write(root, t, bytes([0x07, 0, 0]) + hx("f248cdc9c90700"))
    write(root, t, bytes([0x07, 0, 1]) + hx("f248cdc9c90700") + TAIL +
          hx("f200110000"))
    write(root, t, bytes([0x0f, 0, 2]) + hx("f248cdc9c90700") + TAIL +
          hx("f200110000"))  # reset: the back reference must fail
    write(root, t, bytes([0x17, 1, 2]) + hx("000500faff48656c6c6f00"))
    write(root, t, bytes([0x27, 3, 4]) + hx("f24805000000ffffcac9c90700"))
    write(root, t, bytes([0x07, 5, 6]) + hx("f348cdc9c90700") + TAIL +
          hx("f200110000"))
    write(root, t, bytes([0x07, 0, 7]) + b"\x00" + TAIL)  # empty message
    write(root, t, bytes([0x07, 0, 8]) + TAIL)  # a bare tail: truncated
    texts = corpus_texts()
    for w in range(8, 16):
        for level, strat in ((1, zlib.Z_DEFAULT_STRATEGY),
                             (6, zlib.Z_FIXED), (9, zlib.Z_DEFAULT_STRATEGY),
                             (0, zlib.Z_DEFAULT_STRATEGY)):
            msgs = texts[(w + level) % len(texts):][:3]
            data = zraw(msgs, w, level, strat)
            if len(data) > 3000:
                continue
            write(root, t, bytes([(w - 8) | ((w & 3) << 4), w, level]) + data)
    # compressed at window 15, inflated at 8 and 9: distances too far
    long_runs = texts[4] + texts[1][:200] + texts[4]
    write(root, t, bytes([0x00, 1, 1]) + zraw([long_runs], 15, 9))
    write(root, t, bytes([0x01, 1, 2]) + zraw([long_runs], 15, 9))
    # distances just beyond the window: W + 1 + k back, after more than
    # W bytes of history, inflated whole (one call) and in pieces
    for w in range(8, 15):
        rnd = random.Random(w)
        size = 1 << w
        head = bytes(rnd.randrange(256) for _ in range(size + 40))
        data = head + head[:64]  # a 64-byte match at distance W + 40
        for mode in (0xa0, 0x00):
            write(root, t, bytes([(w - 8) | mode, w, 1]) + zraw([data], 15, 9))
    # invalid streams (RFC 1951), each checked below to be refused by zlib
    for i, data in enumerate(invalid_streams()):
        write(root, t, bytes([0x07 | ((i & 3) << 4), 9, i]) + data)


class Bits:
    """An LSB-first bit writer; Huffman codes go in MSB first."""

    def __init__(self):
        self.v, self.n = 0, 0

    def put(self, v, k):
        self.v |= (v & ((1 << k) - 1)) << self.n
        self.n += k
        return self

    def code(self, c, k):
        for i in reversed(range(k)):
            self.put(c >> i & 1, 1)
        return self

    def bytes(self):
        return self.v.to_bytes((self.n + 7) // 8, "little")


def dyn_header(b, hlit, hdist, cl):
    b.put(0, 1).put(2, 2).put(hlit - 257, 5).put(hdist - 1, 5)
    b.put(len(cl) - 4, 4)
    for x in cl:
        b.put(x, 3)
    return b


def invalid_streams():
    out = []
    out.append(Bits().put(1, 1).put(3, 2).bytes())          # block type 3
    out.append(bytes.fromhex("010500fafe48656c6c6f"))       # LEN != ~NLEN
    out.append(Bits().put(1, 1).put(1, 2).code(0xc6, 8).put(0, 16).bytes())
    # fixed: 'a', length 3, distance code 30
    out.append(Bits().put(1, 1).put(1, 2).code(0x30 + 97, 8).code(1, 7)
               .code(30, 5).put(0, 16).bytes())
    # fixed: 'a', length 3, distance 2 (beyond the data so far)
    out.append(Bits().put(1, 1).put(1, 2).code(0x30 + 97, 8).code(1, 7)
               .code(1, 5).put(0, 16).bytes())
    # code length code oversubscribed: three codes of length 1
    out.append(dyn_header(Bits(), 257, 1, [1, 1, 1, 0]).put(0, 32).bytes())
    # code length code incomplete: one code of length 2
    out.append(dyn_header(Bits(), 257, 1, [0, 0, 0, 2]).put(0, 32).bytes())
    # HLIT 287
    out.append(dyn_header(Bits(), 287, 1, [0, 0, 0, 2]).put(0, 32).bytes())
    # literal/length code oversubscribed: all 258 lengths 1, as one
    # length 1 then repeats (16) of it. Code length codes: 1 -> "0",
    # 16 -> "1"
    b = dyn_header(Bits(), 257, 1, [1, 0, 0, 0] + [0] * 13 + [1])
    b.code(0, 1)
    for _ in range(42):
        b.code(1, 1).put(3, 2)  # 6 more
    b.code(1, 1).put(2, 2)      # 5 more: 258
    out.append(b.put(0, 32).bytes())
    # no end-of-block code (length of 256 is 0)
    b = dyn_header(Bits(), 257, 1, [0, 0, 1] + [0] * 14 + [1])
    b.code(0, 1).code(0, 1)            # lit 0, 1: length 1
    b.code(1, 1).put(127, 7)           # 138 zeros
    b.code(1, 1).put(116, 7)           # 127 zeros: 256 has length 0
    b.code(0, 1)                       # distance 0: length 1
    out.append(b.put(0, 32).bytes())
    for data in out:
        d = zlib.decompressobj(-15)
        try:
            d.decompress(data + TAIL)
        except zlib.error:
            continue
        raise AssertionError("zlib accepts " + data.hex())
    return out

def deflate_seeds(root):
    t = "fuzz_deflate"
    # byte 0: window - 8 | (level - 1) << 3 | reset << 7
    # byte 1: cin | cout << 2 | imode << 4 | rep << 6
    texts = corpus_texts()
    for i, w in enumerate(range(8, 16)):
        for j, level in enumerate((1, 4, 6, 9)):
            body = texts[(i + j) % len(texts)]
            if len(body) > 1200:
                body = body[:1200]
            b0 = (w - 8) | ((level - 1) << 3) | (0x80 if (i + j) % 5 == 0
                                                 else 0)
            b1 = ((i + j) & 3) | (((i * 3 + j) & 3) << 2) | \
                 (((i + 2 * j) & 3) << 4) | (((i + j) % 4) << 6)
            write(root, t, bytes([b0, b1, i * 16 + j, w]) + body)
    write(root, t, bytes([0x07, 0, 0, 0]))  # nothing at all
    write(root, t, bytes([0x2f, 0x55, 1, 2]) + b"Hello")


def frame(op, payload, fin=True, rsv1=False, key=None):
    """A frame; masked with |key| (4 bytes) when given."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    m = 0x80 if key is not None else 0
    if n < 126:
        h = bytes([b0, m | n])
    elif n < 65536:
        h = bytes([b0, m | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([b0, m | 127]) + n.to_bytes(8, "big")
    if key is None:
        return h + payload
    return h + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def zmsgs(msgs, wbits=15, level=6):
    """Each message compressed with a sync flush, tail removed (7.2.1)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -max(wbits, 9))
    out = []
    for m in msgs:
        d = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        assert d.endswith(TAIL)
        out.append(d[:-4])
    return out


def conn_seeds(root):
    """permessage-deflate sessions for the connection targets. Bytes 2-3
    (the seed): 0x40 in byte 3 turns deflate on, byte 2 holds the window
    bits and no_context_takeover flags (see conn_driver.c)."""
    hx = bytes.fromhex
    hello = hx("f248cdc9c90700")
    rnd = random.Random(6455)
    r300 = bytes(rnd.randrange(256) for _ in range(300))
    text = b" ".join(rnd.choice([b"deflate", b"window", b"message", b"\xce\xba"])
                     for _ in range(400))
    for target, key in (("fuzz_conn_server", bytes(4)),
                        ("fuzz_conn_client", None)):
        k2 = None if key is None else hx("37fa213d")
        def f(*a, **kw):
            kw.setdefault("key", key)
            return frame(*a, **kw)
        # byte 0: CF_* (0x01 message mode, 0x02 small limits), byte 1:
        # limits, byte 2: pmd parameters, byte 3: 0x40 pmd (| 0x08
        # min_size 0 | 0x80 level 1)
        sessions = [
            # RFC 7692 7.2.3.1 and 7.2.3.2 (shared window), stream mode
            (0x00, 0x00, 0x3f, 0x48,
             f(1, hello, rsv1=True) + f(1, hx("f200110000"), rsv1=True)),
            # the same in message mode, echoed compressed at level 1
            (0x01, 0x00, 0x3f, 0xc8,
             f(1, hello, rsv1=True) + f(1, hx("f200110000"), rsv1=True)),
            # stored block (7.2.3.3), two blocks in one message (7.2.3.4)
            (0x00, 0x00, 0x3f, 0x48,
             f(1, hx("000500faff48656c6c6f00"), rsv1=True) +
             f(1, hx("f24805000000ffffcac9c90700"), rsv1=True)),
            # fragmented: RSV1 on the first frame only, a ping between
            (0x00, 0x00, 0x3f, 0x48,
             f(1, hello[:3], fin=False, rsv1=True) + f(9, b"p") +
             f(0, hello[3:])),
            # no context takeover both ways, window 8 and 9
            (0x01, 0x00, 0xc8, 0x48,
             b"".join(f(1, m, rsv1=True) for m in
                      [zmsgs([text[:300]], 8, 6)[0]] * 2)),
            # a longer text, compressed, message mode; and level 9 runs
            (0x01, 0x00, 0x3f, 0x48,
             b"".join(f(1, m, rsv1=True) for m in zmsgs([text, text[5:]]))),
            (0x00, 0x00, 0x3f, 0x08 | 0x40,
             b"".join(f(2, m, rsv1=True) for m in
                      zmsgs([bytes(5000), b"ab" * 900], 15, 9))),
            # a bomb: 2 MiB of zeros, past max_message (1009)
            (0x01, 0x00, 0x3f, 0x48,
             f(2, zmsgs([bytes(2 << 20)], 15, 9)[0], rsv1=True)),
            # and past small limits, stream mode
            (0x02, 0x05, 0x3f, 0x48,
             f(2, zmsgs([bytes(4000)], 15, 9)[0], rsv1=True)),
            # invalid data (1007), RSV1 on a continuation (1002), invalid
            # UTF-8 after inflating (1007), distance beyond a window of 8
            (0x00, 0x00, 0x3f, 0x48, f(1, hx("07"), rsv1=True)),
            (0x00, 0x00, 0x3f, 0x48,
             f(1, hello[:3], fin=False, rsv1=True) +
             f(0, hello[3:], rsv1=True)),
            (0x00, 0x00, 0x3f, 0x48,
             f(1, zmsgs([b"ok \xff\xfe"])[0], rsv1=True)),
            (0x00, 0x00, 0x00, 0x48,
             f(2, zmsgs([r300 + r300], 15, 9)[0], rsv1=True)),
        ]
        for cf, lim, pb, sb, body in sessions:
            write(root, target, bytes([cf, lim, pb, sb]) + body)
        if k2 is not None:  # a real mask key too
            write(root, target, bytes([0, 0, 0x3f, 0x48]) +
                  frame(1, hello, rsv1=True, key=k2))


def pmd_seeds(root):
    """Extension offers and responses (fuzz_pmd.c)."""
    t = "fuzz_pmd"
    offers = [
        b"permessage-deflate",
        b"permessage-deflate; client_max_window_bits",
        b"permessage-deflate; client_max_window_bits=10; "
        b"server_max_window_bits=12",
        b"permessage-deflate; server_no_context_takeover; "
        b"client_no_context_takeover",
        b'permessage-deflate; server_max_window_bits="10", '
        b"permessage-deflate",
        b"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
        b"permessage-deflate; server_max_window_bits=08",
        b"permessage-deflate; server_max_window_bits=16, "
        b"permessage-deflate; client_max_window_bits=8",
        b"permessage-deflate; client_max_window_bits; client_max_window_bits",
        b"permessage-deflate; foo=1\npermessage-deflate;client_max_window_bits",
        b"PERMESSAGE-DEFLATE ; Server_No_Context_Takeover\t",
        b'permessage-deflate; server_max_window_bits="1\\0"',
    ]
    responses = [
        b"permessage-deflate",
        b"permessage-deflate; server_max_window_bits=10",
        b"permessage-deflate; client_max_window_bits=9",
        b"permessage-deflate; client_max_window_bits",
        b"permessage-deflate; server_no_context_takeover; "
        b"client_no_context_takeover; server_max_window_bits=8; "
        b"client_max_window_bits=8",
        b"permessage-deflate, permessage-deflate",
        b"x-webkit-deflate-frame",
        b"",
    ]
    for i, o in enumerate(offers):
        r = responses[i % len(responses)]
        cfgs = [(0x3f, 0x3f), (0x00, 0xff), (0xd2, 0x1b), (0x7f, 0x40)][i % 4]
        write(root, t, bytes(cfgs) + o + b"\x00" + r)
    # responses beyond what a client with windows of 8 offered
    for r in (b"permessage-deflate; server_max_window_bits=8; "
              b"client_max_window_bits=12",
              b"permessage-deflate; server_max_window_bits=12",
              b"permessage-deflate; server_max_window_bits=8; "
              b"client_max_window_bits=8"):
        write(root, t, bytes([0x3f, 0x00]) + b"permessage-deflate\x00" + r)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    inflate_seeds(root)
    deflate_seeds(root)
    conn_seeds(root)
    pmd_seeds(root)


if __name__ == "__main__":
    main()
