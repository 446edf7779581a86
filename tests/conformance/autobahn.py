#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Conformance driver for libws: replays the Autobahn testsuite's case
groups 1-7 and 10 against a WebSocket echo server over loopback and
accepts only the strict outcome of each case.

The Autobahn testsuite (crossbario/autobahn-testsuite) needs Python 2, so
this is our own client, written from the published case descriptions and
expectations, with the protocol done by hand on a plain socket (handshake,
masking, framing). Standard library only.

Per case it checks, in this order:
  * every frame the server sends is valid for a server (no mask, RSV 0,
    known opcode, control frames short and unfragmented, nothing after
    its close frame);
  * the events received (echoed messages with their opcode, pongs, pings,
    and the fail-fast "timeout" markers of 6.4.x) equal the expected list
    exactly, in order;
  * the right endpoint started the close handshake and the server's close
    frame carries exactly the expected code (a dropped TCP connection is
    never accepted in place of a close frame);
  * the server then closes the TCP connection.

The cases are shared with fuzzingserver.py, which plays them from the
server side against a client (examples/autobahn-client).

Usage:
  autobahn.py --server-cmd PATH [--cases PATTERNS]   start PATH --port N
  autobahn.py --url ws://127.0.0.1:9001 [--cases ...] use a running server
PATTERNS is a comma-separated list of shell-style patterns (6.4.*,7.9.1).
"""

import argparse
import base64
import fnmatch
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "interop"))
from netutil import free_port  # noqa: E402

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

CASE_TIMEOUT = 10.0     # seconds per case, handshake to TCP close
CLOSE_TCP_WAIT = 2.0    # after the close handshake, for the server's FIN
CLIENT_FIN_WAIT = 0.05  # server role: a client FIN this soon is too early
FAIL_FAST_WAIT = 0.5    # 6.4.x: the 1007 must come within this
PAUSE = 0.5             # 5.19/5.20: the pause between the two halves
CHOP_DELAY = 0.001      # between chops of one write
SYNC_DELAY = 0.01       # after each frame sent with sync=True


# ---------------------------------------------------------------------------
# Client-side framing

def mask_payload(key, data):
    """XOR |data| with the 4-byte |key| (RFC 6455 5.3)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    x = int.from_bytes(data, "little") ^ int.from_bytes(k, "little")
    return x.to_bytes(n, "little")


def encode_frame(opcode, payload=b"", fin=True, rsv=0, masked=True):
    """A frame with the shortest length encoding: masked as a client's,
    or unmasked as a server's."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not masked:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + mask_payload(key, payload)


def close_payload(code=None, reason=b""):
    return b"" if code is None else struct.pack("!H", code) + reason


# ---------------------------------------------------------------------------
# Case steps. A case is a list of steps run in order, then the close.

class F:
    """Send one frame, optionally in chops of |chop| bytes (separate
    writes), or flushed on its own (|sync|, Autobahn's frame-wise chops)."""

    def __init__(self, opcode, payload=b"", fin=True, rsv=0, chop=None,
                 sync=False):
        self.opcode, self.payload, self.fin, self.rsv = opcode, payload, fin, rsv
        self.chop, self.sync = chop, sync

    def run(self, c):
        data = c.encode(self.opcode, self.payload, self.fin, self.rsv)
        c.send_raw(data, self.chop)
        if self.sync:
            time.sleep(SYNC_DELAY)
        return True


class Close:
    """Send a close frame with a raw payload: this starts the closing
    handshake from our side, as Autobahn's sendClose/sendCloseFrame."""

    def __init__(self, payload=b""):
        self.payload = payload

    def run(self, c):
        c.send_close(self.payload)
        return True


class Part:
    """Send part of one frame: from payload offset |lo| (None: the frame's
    start) to |hi| (None: its end). The parts of one frame share its
    encoding (and mask key)."""

    def __init__(self, opcode, payload, lo, hi):
        self.opcode, self.payload, self.lo, self.hi = opcode, payload, lo, hi

    def run(self, c):
        key = (self.opcode, self.payload)
        if key not in c.frames:
            c.frames[key] = c.encode(self.opcode, self.payload)
        whole = c.frames[key]
        h = len(whole) - len(self.payload)
        lo = 0 if self.lo is None else h + self.lo
        hi = len(whole) if self.hi is None else h + self.hi
        c.send_raw(whole[lo:hi])
        return True


class Pause:
    """Keep reading for |secs| before going on."""

    def __init__(self, secs):
        self.secs = secs

    def run(self, c):
        c.read_until(lambda: False, time.monotonic() + self.secs)
        return True


class Quiet:
    """Wait up to |secs|; if the server has not closed by then, record
    ("timeout", label) and go on, else stop sending (Autobahn 6.4.x)."""

    def __init__(self, secs, label):
        self.secs, self.label = secs, label

    def run(self, c):
        c.read_until(lambda: c.closed_or_gone(), time.monotonic() + self.secs)
        if c.closed_or_gone():
            return False
        c.events.append(("timeout", self.label))
        return True


class Case:
    def __init__(self, cid, steps, expect, codes, by_me):
        self.id = cid
        self.steps = steps
        self.expect = expect
        self.codes = codes   # acceptable close codes; None: empty close
        self.by_me = by_me   # True if we start the close handshake


CASES = []


def add(cid, steps, expect=(), codes=(1000,), by_me=True):
    CASES.append(Case(cid, list(steps), list(expect), tuple(codes), by_me))


def fail(cid, steps, expect=(), code=1002):
    """The server must fail the connection with |code|."""
    add(cid, steps, expect, (code,), by_me=False)


def msg(payload, binary=False):
    return ("message", payload, binary)


def pong(payload):
    return ("pong", payload)


# ---------------------------------------------------------------------------
# The cases

def build_group1():
    sizes = [0, 125, 126, 127, 128, 65535, 65536]
    for sub, op, byte in ((1, OP_TEXT, b"*"), (2, OP_BINARY, b"\xfe")):
        binary = op == OP_BINARY
        for i, n in enumerate(sizes, 1):
            add("1.%d.%d" % (sub, i), [F(op, byte * n)], [msg(byte * n, binary)])
        p = byte * 65536
        add("1.%d.8" % sub, [F(op, p, chop=997)], [msg(p, binary)])


def build_group2():
    add("2.1", [F(OP_PING)], [pong(b"")])
    for cid, p in (("2.2", b"Hello, world!"),
                   ("2.3", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),
                   ("2.4", b"\xfe" * 125)):
        add(cid, [F(OP_PING, p)], [pong(p)])
    fail("2.5", [F(OP_PING, b"\xfe" * 126)])
    add("2.6", [F(OP_PING, b"\xfe" * 125, chop=1)], [pong(b"\xfe" * 125)])
    add("2.7", [F(OP_PONG), Close(close_payload(1000))])
    add("2.8", [F(OP_PONG, b"unsolicited pong payload"),
                Close(close_payload(1000))])
    add("2.9", [F(OP_PONG, b"unsolicited pong payload"),
                F(OP_PING, b"ping payload")], [pong(b"ping payload")])
    for cid, chop in (("2.10", None), ("2.11", 1)):
        pays = [b"payload-%d" % i for i in range(10)]
        add(cid, [F(OP_PING, p, chop=chop) for p in pays],
            [pong(p) for p in pays])


HELLO = b"Hello, world!"


def bad_after_good(cid, bad, chop=None, sync=False):
    """A good text message, then |bad| (a frame), then a ping: the echo
    arrives, the connection fails with 1002 and no pong comes."""
    steps = [F(OP_TEXT, HELLO, chop=chop, sync=sync), bad,
             F(OP_PING, chop=chop, sync=sync)]
    fail(cid, steps, [msg(HELLO)])


def build_group3():
    fail("3.1", [F(OP_TEXT, HELLO, rsv=1)])
    bad_after_good("3.2", F(OP_TEXT, HELLO, rsv=2))
    bad_after_good("3.3", F(OP_TEXT, HELLO, rsv=3, sync=True), sync=True)
    bad_after_good("3.4", F(OP_TEXT, HELLO, rsv=4, chop=1), chop=1)
    fail("3.5", [F(OP_BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)])
    fail("3.6", [F(OP_BINARY, HELLO, rsv=6)])
    fail("3.7", [F(OP_CLOSE, rsv=7)])


def build_group4():
    rp = b"reserved opcode payload"
    for sub, base in ((1, 3), (2, 11)):
        fail("4.%d.1" % sub, [F(base)])
        fail("4.%d.2" % sub, [F(base + 1, rp)])
        bad_after_good("4.%d.3" % sub, F(base + 2))
        bad_after_good("4.%d.4" % sub, F(base + 3, HELLO))
        bad_after_good("4.%d.5" % sub, F(base + 4, HELLO, chop=1), chop=1)


def build_group5():
    f1, f2 = b"fragment1", b"fragment2"
    fail("5.1", [F(OP_PING, f1, fin=False), F(OP_CONT, f2)])
    fail("5.2", [F(OP_PONG, f1, fin=False), F(OP_CONT, f2)])
    for cid, kw in (("5.3", {}), ("5.4", {"sync": True}), ("5.5", {"chop": 1})):
        add(cid, [F(OP_TEXT, f1, fin=False, **kw), F(OP_CONT, f2, **kw)],
            [msg(f1 + f2)])
    pp = b"ping payload"
    for cid, kw in (("5.6", {}), ("5.7", {"chop": 1}), ("5.8", {"sync": True})):
        add(cid, [F(OP_TEXT, f1, fin=False, **kw), F(OP_PING, pp, **kw),
                  F(OP_CONT, f2, **kw)], [pong(pp), msg(f1 + f2)])
    nc = b"non-continuation payload"
    n = 9
    for fin in (True, False):
        for kw in ({}, {"sync": True}, {"chop": 1}):
            fail("5.%d" % n, [F(OP_CONT, nc, fin=fin, **kw),
                              F(OP_TEXT, HELLO, **kw)])
            n += 1
    fr = [b"fragment%d" % i for i in range(1, 6)]
    fail("5.15", [F(OP_TEXT, fr[0], fin=False), F(OP_CONT, fr[1]),
                  F(OP_CONT, fr[2], fin=False), F(OP_TEXT, fr[3])],
         [msg(fr[0] + fr[1])])
    for cid, fin in (("5.16", False), ("5.17", True)):
        fail(cid, [F(OP_CONT, fr[0], fin=fin), F(OP_TEXT, fr[1], fin=False),
                   F(OP_CONT, fr[2])] * 2)
    fail("5.18", [F(OP_TEXT, fr[0], fin=False), F(OP_TEXT, fr[1])])
    pings = [b"pongme 1!", b"pongme 2!"]
    for cid, sync in (("5.19", False), ("5.20", True)):
        add(cid, [F(OP_TEXT, fr[0], fin=False, sync=sync),
                  F(OP_CONT, fr[1], fin=False, sync=sync),
                  F(OP_PING, pings[0], sync=sync),
                  Pause(PAUSE),
                  F(OP_CONT, fr[2], fin=False, sync=sync),
                  F(OP_CONT, fr[3], fin=False, sync=sync),
                  F(OP_PING, pings[1], sync=sync),
                  F(OP_CONT, fr[4], sync=sync)],
            [pong(pings[0]), pong(pings[1]), msg(b"".join(fr))])


def fragments(op, payload, size):
    """|payload| as a message in frames of |size| bytes."""
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    return [F(op if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
            for i, p in enumerate(parts)]


KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"   # valid, 11 bytes


def utf8_vectors():
    """The UTF-8 decoder test groups of cases 6.5-6.23, after Markus
    Kuhn's UTF-8-test.txt, as (title, [(valid, bytes)])."""
    g = []
    g.append(("valid sequences", [
        (True, b"hello\x24world"), (True, b"hello\xc2\xa2world"),
        (True, b"hello\xe2\x82\xacworld"), (True, b"hello\xf0\xa4\xad\xa2world"),
        (True, KOSME)]))
    g.append(("prefixes of a valid string",
              [(None, KOSME[:i]) for i in range(1, len(KOSME) + 1)]))
    g.append(("first sequence of each length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
        (True, b"\xf0\x90\x80\x80")]))
    g.append(("first 5/6-byte sequences", [
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    g.append(("last sequence of each length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
        (True, b"\xf4\x8f\xbf\xbf")]))
    g.append(("last 4/5/6-byte sequences", [
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
        (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    g.append(("other boundaries", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
        (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    g.append(("unexpected continuation bytes", [
        (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"),
        (False, b"\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf"),
        (False, b"\x80\xbf\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf\x80\xbf"),
        (False, bytes(range(0x80, 0xbf)))]))
    g.append(("lonely start bytes", [
        (False, b"".join(bytes([i, 0x20]) for i in range(lo, hi)))
        for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7),
                       (0xf8, 0xfb), (0xfc, 0xfd))]))
    trunc = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
             b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",
             b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    g.append(("last continuation byte missing", [(False, t) for t in trunc]))
    g.append(("concatenated incomplete sequences", [(False, b"".join(trunc))]))
    g.append(("impossible bytes", [
        (False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    g.append(("overlong ASCII", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
        (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    g.append(("maximum overlongs", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
        (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    g.append(("overlong NUL", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
        (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]))
    g.append(("single surrogates", [(False, b"\xed" + s) for s in (
        b"\xa0\x80", b"\xad\xbf", b"\xae\x80", b"\xaf\xbf", b"\xb0\x80",
        b"\xbe\x80", b"\xbf\xbf")]))
    g.append(("paired surrogates", [(False, b"\xed" + a + b"\xed" + b) for a, b in (
        (b"\xa0\x80", b"\xb0\x80"), (b"\xa0\x80", b"\xbf\xbf"),
        (b"\xad\xbf", b"\xb0\x80"), (b"\xad\xbf", b"\xbf\xbf"),
        (b"\xae\x80", b"\xb0\x80"), (b"\xae\x80", b"\xbf\xbf"),
        (b"\xaf\xbf", b"\xb0\x80"), (b"\xaf\xbf", b"\xbf\xbf"))]))
    nonchars = [(True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf")]
    for lead in (0xf0, 0xf1, 0xf2, 0xf3, 0xf4):
        for second in (0x8f, 0x9f, 0xaf, 0xbf):
            if lead == 0xf4 and second != 0x8f:
                continue            # above U+10FFFF
            if lead == 0xf0 and second == 0x8f:
                continue            # overlong
            for last in (0xbe, 0xbf):
                nonchars.append((True, bytes([lead, second, 0xbf, last])))
    g.append(("non-characters (valid)", nonchars))
    g.append(("specials (valid)", [(True, b"\xef\xbf" + bytes([b]))
                                   for b in range(0xb9, 0xc0)]))
    return g


def utf8_ok(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def build_group6():
    add("6.1.1", [F(OP_TEXT)], [msg(b"")])
    add("6.1.2", [F(OP_TEXT, fin=False), F(OP_CONT, fin=False), F(OP_CONT)],
        [msg(b"")])
    mid = b"middle frame payload"
    add("6.1.3", [F(OP_TEXT, fin=False), F(OP_CONT, mid, fin=False),
                  F(OP_CONT)], [msg(mid)])
    p1 = "Hello-\u00b5@\u00df\u00f6\u00e4".encode()
    p2 = "\u00fc\u00e0\u00e1-UTF-8!!".encode()
    add("6.2.1", [F(OP_TEXT, p1 + p2)], [msg(p1 + p2)])
    add("6.2.2", [F(OP_TEXT, p1, fin=False), F(OP_CONT, p2)], [msg(p1 + p2)])
    add("6.2.3", fragments(OP_TEXT, p1 + p2, 1), [msg(p1 + p2)])
    add("6.2.4", fragments(OP_TEXT, KOSME, 1), [msg(KOSME)])
    bad = KOSME + b"\xed\xa0\x80" + b"edited"          # invalid at byte 12
    fail("6.3.1", [F(OP_TEXT, bad)], code=1007)
    fail("6.3.2", fragments(OP_TEXT, bad, 1), code=1007)

    # 6.4.x fail fast: the 1007 must come before we send the rest.
    b41 = KOSME + b"\xf4\x90\x80\x80" + b"edited"       # invalid at byte 13
    for cid, parts in (("6.4.1", (b41[:11], b41[11:15], b41[15:])),
                       ("6.4.2", (b41[:12], b41[12:13], b41[13:]))):
        fail(cid, [F(OP_TEXT, parts[0], fin=False),
                   Quiet(FAIL_FAST_WAIT, "A"),
                   F(OP_CONT, parts[1], fin=False),
                   Quiet(FAIL_FAST_WAIT, "B"),
                   F(OP_CONT, parts[2])], [("timeout", "A")], code=1007)
    for cid, (a, b) in (("6.4.3", (11, 15)), ("6.4.4", (12, 13))):
        fail(cid, [Part(OP_TEXT, b41, None, a), Quiet(FAIL_FAST_WAIT, "A"),
                   Part(OP_TEXT, b41, a, b), Quiet(FAIL_FAST_WAIT, "B"),
                   Part(OP_TEXT, b41, b, None)], [("timeout", "A")], code=1007)

    for i, (_, vecs) in enumerate(utf8_vectors(), 5):
        for j, (valid, p) in enumerate(vecs, 1):
            if valid is None:
                valid = utf8_ok(p)
            assert valid == utf8_ok(p), "vector 6.%d.%d" % (i, j)
            cid = "6.%d.%d" % (i, j)
            if valid:
                add(cid, [F(OP_TEXT, p)], [msg(p)])
            else:
                fail(cid, [F(OP_TEXT, p)], code=1007)


def build_group7():
    hw = b"Hello World!"
    c1000 = close_payload(1000)
    add("7.1.1", [F(OP_TEXT, hw)], [msg(hw)])
    add("7.1.2", [Close(c1000), F(OP_CLOSE)])
    add("7.1.3", [Close(c1000), F(OP_PING)])
    add("7.1.4", [Close(c1000), F(OP_TEXT, hw)])
    add("7.1.5", [F(OP_TEXT, b"fragment1", fin=False), Close(c1000),
                  F(OP_CONT, b"fragment2")])
    # Autobahn reports 7.1.6 as informational; an in-order server echoes
    # both messages before it handles the close, and that is our strict
    # outcome.
    big = (b"BAsd7&jh23" * 26215)[:256 * 1024]
    add("7.1.6", [F(OP_TEXT, big), F(OP_TEXT, hw), Close(c1000), F(OP_PING)],
        [msg(big), msg(hw)])
    # An empty close may be answered by an empty close or by 1000.
    add("7.3.1", [Close(b"")], codes=(None, 1000))
    add("7.3.2", [Close(b"a")], codes=(1002,))
    add("7.3.3", [Close(c1000)])
    add("7.3.4", [Close(close_payload(1000, hw))])
    add("7.3.5", [Close(close_payload(1000, b"*" * 123))])
    add("7.3.6", [Close(close_payload(1000, b"*" * 124))], codes=(1002,))
    # Autobahn also accepts 1002 here; invalid UTF-8 is 1007 in libws.
    add("7.5.1", [Close(close_payload(1000, KOSME + b"\xed\xa0\x80edited"))],
        codes=(1007,))
    valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
             3000, 3999, 4000, 4999]
    for i, code in enumerate(valid, 1):
        add("7.7.%d" % i, [Close(close_payload(code))], codes=(code,))
    invalid = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]
    for i, code in enumerate(invalid, 1):
        add("7.9.%d" % i, [Close(close_payload(code))], codes=(1002,))
    # Informational in Autobahn; codes outside 1000-4999 are protocol
    # errors in libws.
    for i, code in enumerate((5000, 65535), 1):
        add("7.13.%d" % i, [Close(close_payload(code))], codes=(1002,))


def build_group10():
    p = b"*" * 65536
    add("10.1.1", fragments(OP_TEXT, p, 1300), [msg(p)])


for _build in (build_group1, build_group2, build_group3, build_group4,
               build_group5, build_group6, build_group7, build_group10):
    _build()


# ---------------------------------------------------------------------------
# The client connection

class Conn:
    """Our end of a case. As a client (the default) it masks what it sends
    and judges the server; with |sock| given it is the server end of an
    accepted connection and judges a client."""

    def __init__(self, host, port, deadline, sock=None):
        self.deadline = deadline
        self.is_server = sock is not None
        self.peer = "client" if self.is_server else "server"
        if sock is None:
            sock = socket.create_connection(
                (host, port), timeout=max(0.1, deadline - time.monotonic()))
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frames = {}
        self.buf = bytearray()
        self.events = []
        self.violation = None
        self.eof = False
        self.sent_close = False
        self.got_close = False
        self.closed_by_me = None
        self.close_code = None
        self.frag_op = None
        self.frag = []

    # -- sending; errors after the server has gone are expected and ignored
    def send_raw(self, data, chop=None):
        try:
            if not chop:
                self.sock.sendall(data)
                return
            for i in range(0, len(data), chop):
                self.sock.sendall(data[i:i + chop])
                time.sleep(CHOP_DELAY)
        except OSError:
            pass

    def encode(self, opcode, payload=b"", fin=True, rsv=0):
        return encode_frame(opcode, payload, fin, rsv, masked=not self.is_server)

    def send_close(self, payload):
        self.sent_close_payload = payload
        self.send_raw(self.encode(OP_CLOSE, payload))
        self.sent_close = True

    def echoed_our_close(self):
        """True if the peer's close repeats the code we sent (a clean
        close), not a different one (it failed the connection)."""
        ours = getattr(self, "sent_close_payload", None)
        if ours is None:
            return False
        code = struct.unpack("!H", ours[:2])[0] if len(ours) >= 2 else None
        return self.close_code == code

    # -- receiving
    def handshake(self, host, port):
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (host, port, key))
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 16384 or not self.recv_some(self.deadline):
                raise RuntimeError("no handshake response")
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")
        if len(status) < 2 or status[1] != "101":
            raise RuntimeError("handshake answered %r" % lines[0])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if hdrs.get("sec-websocket-accept") != [accept.decode()]:
            raise RuntimeError("bad Sec-WebSocket-Accept")
        if [v.lower() for v in hdrs.get("upgrade", [])] != ["websocket"]:
            raise RuntimeError("bad Upgrade header")
        conn = ",".join(hdrs.get("connection", [])).lower()
        if "upgrade" not in [t.strip() for t in conn.split(",")]:
            raise RuntimeError("bad Connection header")
        for h in ("sec-websocket-extensions", "sec-websocket-protocol"):
            if h in hdrs:
                raise RuntimeError("unrequested %s in response" % h)
        self.parse()

    def recv_some(self, until):
        """One read, waiting until |until| at most. False on timeout/EOF."""
        if self.eof:
            return False
        t = min(until, self.deadline) - time.monotonic()
        if t <= 0:
            return False
        self.sock.settimeout(t)
        try:
            data = self.sock.recv(1 << 18)
        except socket.timeout:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, cond, until):
        while not cond():
            if not self.recv_some(until):
                break
            self.parse()
        return cond()

    def closed_or_gone(self):
        return self.got_close or self.eof

    def bad(self, why):
        if self.violation is None:
            self.violation = why

    def parse(self):
        while True:
            b = self.buf
            if len(b) < 2:
                return
            fin, rsv, op = b[0] >> 7, (b[0] >> 4) & 7, b[0] & 15
            masked, n, pos = b[1] >> 7, b[1] & 127, 2
            if n == 126:
                if len(b) < 4:
                    return
                n, pos = struct.unpack_from("!H", b, 2)[0], 4
            elif n == 127:
                if len(b) < 10:
                    return
                n, pos = struct.unpack_from("!Q", b, 2)[0], 10
            if masked:
                pos += 4
            if len(b) < pos + n:
                return
            payload = bytes(b[pos:pos + n])
            if masked:
                payload = mask_payload(bytes(b[pos - 4:pos]), payload)
            if masked != self.is_server:
                self.bad("%s sent %s frame" % (
                    self.peer, "an unmasked" if self.is_server else "a masked"))
            del b[:pos + n]
            self.on_frame(fin, rsv, op, payload)

    def on_frame(self, fin, rsv, op, payload):
        if self.got_close:
            self.bad(self.peer + " sent a frame (opcode %d) after its close" % op)
            return
        if rsv:
            self.bad(self.peer + " sent RSV bits %d" % rsv)
        if op >= 8 and (not fin or len(payload) > 125):
            self.bad(self.peer + " sent a fragmented or long control frame")
        if op == OP_PING:
            self.events.append(("ping", payload))
            if not self.sent_close:
                self.send_raw(self.encode(OP_PONG, payload))
        elif op == OP_PONG:
            self.events.append(("pong", payload))
        elif op == OP_CLOSE:
            self.got_close = True
            self.closed_by_me = self.sent_close
            if len(payload) == 1:
                self.bad(self.peer + " sent a 1-byte close payload")
            elif len(payload) >= 2:
                self.close_code = struct.unpack("!H", payload[:2])[0]
                if not utf8_ok(payload[2:]):
                    self.bad(self.peer + " sent a close reason that is not UTF-8")
            if not self.sent_close:   # answer with the same code
                self.send_close(payload[:2])
        elif op in (OP_TEXT, OP_BINARY):
            if self.frag_op is not None:
                self.bad(self.peer + " started a message inside another")
            if fin:
                self.events.append(msg(payload, op == OP_BINARY))
            else:
                self.frag_op, self.frag = op, [payload]
        elif op == OP_CONT:
            if self.frag_op is None:
                self.bad(self.peer + " sent a continuation with nothing to continue")
                return
            self.frag.append(payload)
            if fin:
                self.events.append(msg(b"".join(self.frag),
                                       self.frag_op == OP_BINARY))
                self.frag_op, self.frag = None, []
        else:
            self.bad(self.peer + " sent reserved opcode %d" % op)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Running and judging a case

def fmt_event(e):
    if e[0] == "message":
        p = e[1]
        shown = p[:24].hex() + ("..." if len(p) > 24 else "")
        return "%s(%d bytes %s)" % ("binary" if e[2] else "text", len(p), shown)
    if e[0] == "timeout":
        return "timeout %s" % e[1]
    return "%s(%d bytes %s)" % (e[0], len(e[1]), e[1][:24].hex())


def fmt_events(evs):
    return "[" + ", ".join(fmt_event(e) for e in evs) + "]"


def fmt_codes(codes):
    return " or ".join("no code" if c is None else str(c) for c in codes)


def run_case(case, host, port):
    """Returns None on success or a description of the failure."""
    deadline = time.monotonic() + CASE_TIMEOUT
    try:
        c = Conn(host, port, deadline)
    except OSError as e:
        return "cannot connect: %s" % e
    try:
        try:
            c.handshake(host, port)
        except (RuntimeError, OSError) as e:
            return "handshake: %s" % e
        return drive_case(case, c, deadline)
    finally:
        c.close()


def drive_case(case, c, deadline):
    """Runs |case|'s steps on the open connection |c|, then the close, and
    judges. Returns None on success or a description of the failure."""
    for step in case.steps:
        if not step.run(c):
            break
    if case.by_me and not c.sent_close and not c.closed_or_gone():
        # Start the close once the expected events are in, as
        # Autobahn does; anything extra shows up before the answer.
        c.read_until(lambda: len(c.events) >= len(case.expect)
                     or c.closed_or_gone(), deadline)
        if not c.got_close:
            c.send_close(close_payload(1000))
    c.read_until(c.closed_or_gone, deadline)
    if c.got_close and not c.is_server:
        c.read_until(lambda: c.eof,
                     min(deadline, time.monotonic() + CLOSE_TCP_WAIT))
    elif c.got_close and case.by_me and c.echoed_our_close():
        # RFC 6455 7.1.1: the server closes the TCP connection first;
        # a client that hangs up right away is not waiting for it.
        c.read_until(lambda: c.eof,
                     min(deadline, time.monotonic() + CLIENT_FIN_WAIT))
    # Judge.
    if c.violation:
        return c.violation
    if c.events != case.expect:
        return "expected %s got %s" % (fmt_events(case.expect),
                                       fmt_events(c.events))
    want = "close %s %s" % (fmt_codes(case.codes),
                            "answering ours" if case.by_me
                            else "started by the " + c.peer)
    if not c.got_close:
        return "expected %s got %s" % (
            want, "TCP close without a close frame" if c.eof
            else "nothing (timeout)")
    if c.closed_by_me != case.by_me:
        return "expected %s got close %s %s" % (
            want, fmt_codes((c.close_code,)),
            "answering ours" if c.closed_by_me else "started by the " + c.peer)
    if c.close_code not in case.codes:
        return "expected %s got close %s" % (want, fmt_codes((c.close_code,)))
    if c.is_server:
        if case.by_me and c.echoed_our_close() and c.eof:
            return "client closed the TCP connection before the server"
    elif not c.eof:
        return "server did not close the TCP connection after the close"
    return None


def start_server(cmd, port, extra=()):
    proc = subprocess.Popen([cmd, "--port", str(port)] + list(extra),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:       # wait until it accepts
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %d" % (cmd, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("%s did not start listening on port %d" % (cmd, port))


def stop_server(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--server-cmd", help="echo server binary to start "
                     "(run as CMD --port N)")
    src.add_argument("--url", help="ws://HOST:PORT of a running server")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more argument for --server-cmd (repeatable)")
    ap.add_argument("--cases", default="*",
                    help="comma-separated case patterns, e.g. '6.4.*,7.9.1'")
    ap.add_argument("--suite-timeout", type=float, default=540,
                    help="seconds for the whole run (default 540)")
    ap.add_argument("--list", action="store_true", help="list the cases")
    args = ap.parse_args()

    pats = [p.strip() for p in args.cases.split(",") if p.strip()]
    cases = [c for c in CASES if any(fnmatch.fnmatchcase(c.id, p) for p in pats)]
    if args.list:
        for c in cases:
            print(c.id)
        return 0
    if not cases:
        print("no case matches %r" % args.cases)
        return 2

    proc = None
    if args.url:
        u = args.url
        if not u.startswith("ws://"):
            ap.error("--url must be ws://HOST:PORT")
        host, _, port = u[5:].rstrip("/").rpartition(":")
        host, port = host or "127.0.0.1", int(port)
    else:
        host, port = "127.0.0.1", free_port()
        try:
            proc = start_server(args.server_cmd, port, args.server_arg)
        except (RuntimeError, OSError) as e:
            print("cannot start server: %s" % e)
            print("0 passed, %d failed" % len(cases))
            return 1

    end = time.monotonic() + args.suite_timeout
    passed = failed = 0
    crashed = False
    try:
        for case in cases:
            if time.monotonic() > end:
                why = "suite timeout"
            elif proc is not None and proc.poll() is not None:
                why = "server exited with status %d" % proc.returncode
            else:
                why = run_case(case, host, port)
            if why is None:
                passed += 1
                print("case %s OK" % case.id)
            else:
                failed += 1
                print("case %s FAILED: %s" % (case.id, why))
            sys.stdout.flush()
    finally:
        if proc is not None:
            if proc.poll() is not None:     # it must still be running
                crashed = True
                print("server exited with status %d during the run"
                      % proc.returncode)
            stop_server(proc)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
