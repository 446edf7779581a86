#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""permessage-deflate conformance for libws: replays the Autobahn
testsuite's case groups 12 (compressed messages of each payload size and
auto-fragment size, default offer, five kinds of data) and 13 (the same on
JSON with the seven client offers of 13.1-13.7) against an echo server,
and accepts only the strict outcome: the offer is accepted with parameters
the offer allows, every message comes back equal, compressed frames carry
RSV1 on their first frame only, and the close handshake ends with 1000.

Written from the published case descriptions (crossbario/autobahn-
testsuite, case12_x_x.py): the payload sizes and fragment sizes are
Autobahn's; the data is generated here (the originals are files we do not
have), and each case sends --count messages (Autobahn sends 1000) so the
suite runs in seconds. Compression on our side is Python's zlib, a
different implementation from the server's own DEFLATE code.

Usage: autobahn_pmd.py --server-cmd PATH [--cases 12.*,13.5.*] [--count N]
"""

import argparse
import base64
import fnmatch
import hashlib
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TAIL = b"\x00\x00\xff\xff"
CASE_TIMEOUT = 60.0

# Autobahn case12_x_x.py MSG_SIZES: (payload length, auto-fragment size)
SIZES = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0),
         (16384, 0), (32768, 0), (65536, 0), (131072, 0),
         (8192, 256), (16384, 256), (32768, 256), (65536, 256),
         (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768)]

# The client offers of 13.1-13.7 in Autobahn's order of parameters:
# (accept client_no_context_takeover, accept client_max_window_bits,
#  request server_no_context_takeover, request server_max_window_bits)
OFFERS = [
    [(True, True, False, 0)],
    [(True, True, True, 0)],
    [(True, True, False, 8)],
    [(True, True, False, 15)],
    [(True, True, True, 8)],
    [(True, True, True, 15)],
    [(True, True, True, 8), (True, True, True, 0), (True, True, False, 0)],
]


def offer_text(o):
    acc_nct, acc_bits, req_nct, req_bits = o
    s = "permessage-deflate"
    if acc_nct:
        s += "; client_no_context_takeover"
    if acc_bits:
        s += "; client_max_window_bits"
    if req_nct:
        s += "; server_no_context_takeover"
    if req_bits:
        s += "; server_max_window_bits=%d" % req_bits
    return s


# ---------------------------------------------------------------------------
# Data, generated deterministically (stand-ins for Autobahn's files)

def gen_data():
    r = random.Random(12)
    words = ["Habe", "nun", "ach", "Philosophie", "Juristerei", "und",
             "Medizin", "leider", "auch", "Theologie", "durchaus", "studiert",
             "mit", "heißem", "Bemühn", "Da", "steh", "ich", "armer", "Tor",
             "bin", "so", "klug", "als", "wie", "zuvor", "Grün", "Äpfel"]
    faust = " ".join(r.choice(words) for _ in range(40000)).encode()
    # a smooth greyscale picture with a little noise, like a photograph
    lena = bytes((((x * 3 + y * 5) >> 2) + r.randrange(8)) & 0xff
                 for y in range(256) for x in range(512))
    # a PDF-like mix: text objects and compressed (random) streams
    parts = []
    for i in range(120):
        parts.append(b"%d 0 obj << /Length %d /Filter /FlateDecode >>\nstream\n"
                     % (i, 1000))
        parts.append(bytes(r.randrange(256) for _ in range(1000)))
        parts.append(b"\nendstream\nendobj\n")
    pdf = b"".join(parts)
    json = "".join('{"id":%d,"name":"user%d","score":%d.%d,"tags":["%s","%s"],'
                   '"active":%s},\n' % (i, r.randrange(1000), r.randrange(100),
                                        r.randrange(10), r.choice(words[:10]),
                                        r.choice(words[:10]),
                                        "true" if i & 1 else "false")
                   for i in range(3000)).encode()
    html = "".join('<tr class="row%d"><td><a href="/item/%d">Item %d</a></td>'
                   '<td>%s</td><td>%d</td></tr>\n'
                   % (i & 1, i, i, r.choice(["red", "green", "blue"]),
                      r.randrange(10000)) for i in range(3000)).encode()
    # 12.1-12.5 in Autobahn's order; JSON and HTML go as text
    return [("faust", faust, True), ("lena", lena, True), ("pdf", pdf, True),
            ("json", json, False), ("html", html, False)]


# ---------------------------------------------------------------------------
# Framing

def mask(key, data):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^
            int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(op, payload, fin=True, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4)
    return hdr + key + mask(key, payload)


class Fail(Exception):
    pass


class Conn:
    def __init__(self, port, offers, deadline):
        self.deadline = deadline
        self.buf = bytearray()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Extensions: %s\r\n\r\n"
               % (port, key, ", ".join(offer_text(o) for o in offers)))
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            self.recv()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise Fail("handshake: %s" % lines[0])
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        hdrs = {}
        for ln in lines[1:]:
            name, _, value = ln.partition(":")
            hdrs.setdefault(name.strip().lower(), []).append(value.strip())
        if hdrs.get("sec-websocket-accept") != [want.decode()]:
            raise Fail("bad Sec-WebSocket-Accept")
        ext = hdrs.get("sec-websocket-extensions", [])
        if len(ext) != 1:
            raise Fail("permessage-deflate not accepted (%r)" % ext)
        self.params = self.check_response(ext[0], offers)

    def check_response(self, text, offers):
        """RFC 7692 7.1: the answer may only hold what an offer allows."""
        elems = [e.strip() for e in text.split(",")]
        if len(elems) != 1:
            raise Fail("several extensions accepted: %s" % text)
        parts = [p.strip() for p in elems[0].split(";")]
        if parts[0] != "permessage-deflate":
            raise Fail("accepted %s" % parts[0])
        p = {}
        for item in parts[1:]:
            name, eq, value = item.partition("=")
            name = name.strip()
            if name in p:
                raise Fail("parameter %s twice" % name)
            if name in ("server_no_context_takeover",
                        "client_no_context_takeover"):
                if eq:
                    raise Fail("%s with a value" % name)
                p[name] = True
            elif name in ("server_max_window_bits", "client_max_window_bits"):
                v = value.strip().strip('"')
                if not v.isdigit() or v != str(int(v)) or not 8 <= int(v) <= 15:
                    raise Fail("%s=%s" % (name, value))
                p[name] = int(v)
            else:
                raise Fail("unknown parameter %s" % name)
        # some offer must allow this answer
        for acc_nct, acc_bits, req_nct, req_bits in offers:
            if req_nct and not p.get("server_no_context_takeover"):
                continue
            if req_bits and p.get("server_max_window_bits", 16) > req_bits:
                continue
            if "client_max_window_bits" in p and not acc_bits:
                continue
            return p
        raise Fail("answer %s allowed by no offer" % text)

    def recv(self):
        t = self.deadline - time.monotonic()
        if t <= 0:
            raise Fail("timeout")
        self.sock.settimeout(t)
        try:
            d = self.sock.recv(1 << 20)
        except socket.timeout:
            raise Fail("timeout")
        if not d:
            raise Fail("connection closed by the server")
        self.buf += d

    def read_frame(self):
        while True:
            b = self.buf
            if len(b) >= 2:
                n, pos = b[1] & 127, 2
                if b[1] & 0x80:
                    raise Fail("server sent a masked frame")
                if n == 126 and len(b) >= 4:
                    n, pos = struct.unpack_from("!H", b, 2)[0], 4
                elif n == 127 and len(b) >= 10:
                    n, pos = struct.unpack_from("!Q", b, 2)[0], 10
                if n < 126 or pos > 2:
                    if len(b) >= pos + n:
                        f = (b[0] >> 7, (b[0] >> 4) & 7, b[0] & 15,
                             bytes(b[pos:pos + n]))
                        del b[:pos + n]
                        return f
            self.recv()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run_case(port, offers, data, binary, size, frag, count):
    deadline = time.monotonic() + CASE_TIMEOUT
    c = None
    try:
        c = Conn(port, offers, deadline)
        p = c.params
        cbits = p.get("client_max_window_bits", 15)
        sbits = p.get("server_max_window_bits", 15)
        # zlib cannot compress with an 8-bit window; 9 would break the
        # server's 256-byte window, so such an answer is not expected
        if cbits < 9:
            raise Fail("client_max_window_bits=%d cannot be honoured" % cbits)
        comp = zlib.compressobj(6, zlib.DEFLATED, -cbits)
        decomp = zlib.decompressobj(-sbits)
        op = OP_BINARY if binary else OP_TEXT
        pos = 0
        for _ in range(count):
            end = (pos + size) % len(data)
            msg = data[pos:end] if end > pos else data[pos:] + data[:end]
            pos = end
            if p.get("client_no_context_takeover"):
                comp = zlib.compressobj(6, zlib.DEFLATED, -cbits)
            z = comp.compress(msg) + comp.flush(zlib.Z_SYNC_FLUSH)
            assert z.endswith(TAIL)
            z = z[:-4]
            chunks = [z[i:i + frag] for i in range(0, len(z), frag)] \
                if frag else [z]
            chunks = chunks or [b""]
            out = b"".join(
                frame(op if i == 0 else OP_CONT, ch, i == len(chunks) - 1,
                      i == 0) for i, ch in enumerate(chunks))
            c.sock.sendall(out)
            # the echo
            first, got, rsv1 = True, [], False
            while True:
                fin, rsv, fop, payload = c.read_frame()
                if fop in (OP_PING, OP_PONG):
                    if rsv:
                        raise Fail("RSV bits on a control frame")
                    continue
                if fop == OP_CLOSE:
                    raise Fail("server closed: %r" % payload[:2])
                if first:
                    if fop != op:
                        raise Fail("echo opcode %d, sent %d" % (fop, op))
                    if rsv & 3:
                        raise Fail("RSV2/RSV3 set")
                    rsv1 = bool(rsv & 4)
                elif fop != OP_CONT or rsv:
                    raise Fail("continuation with opcode %d rsv %d"
                               % (fop, rsv))
                first = False
                got.append(payload)
                if fin:
                    break
            body = b"".join(got)
            if rsv1:
                body = decomp.decompress(body + TAIL)
                if p.get("server_no_context_takeover"):
                    decomp = zlib.decompressobj(-sbits)
            if body != msg:
                raise Fail("echo differs (%d bytes back, %d sent)"
                           % (len(body), len(msg)))
        c.sock.sendall(frame(OP_CLOSE, struct.pack("!H", 1000)))
        while True:
            fin, rsv, fop, payload = c.read_frame()
            if fop == OP_CLOSE:
                if payload[:2] != struct.pack("!H", 1000):
                    raise Fail("close %r, want 1000" % payload[:2])
                return None
    except (Fail, OSError) as e:
        return str(e)
    finally:
        if c:
            c.close()


def cases(datasets):
    out = []
    for j, (name, data, binary) in enumerate(datasets, 1):
        for i, (size, frag) in enumerate(SIZES, 1):
            out.append(("12.%d.%d" % (j, i), OFFERS[0], data, binary, size,
                        frag))
    json = datasets[3]
    for j, offers in enumerate(OFFERS, 1):
        for i, (size, frag) in enumerate(SIZES, 1):
            out.append(("13.%d.%d" % (j, i), offers, json[1], json[2], size,
                        frag))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server-cmd", required=True)
    ap.add_argument("--server-arg", action="append", default=[])
    ap.add_argument("--cases", default="*")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--suite-timeout", type=float, default=240)
    args = ap.parse_args()
    port = free_port()
    srv = subprocess.Popen([args.server_cmd, "--port", str(port)] +
                           args.server_arg, stdout=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() - t0 > 10 or srv.poll() is not None:
                    print("server did not start")
                    return 1
                time.sleep(0.05)
        pats = args.cases.split(",")
        end = time.monotonic() + args.suite_timeout
        passed = failed = 0
        for cid, offers, data, binary, size, frag in cases(gen_data()):
            if not any(fnmatch.fnmatch(cid, p) for p in pats):
                continue
            if time.monotonic() > end:
                print("case %s FAILED: suite timeout" % cid)
                failed += 1
                continue
            why = run_case(port, offers, data, binary, size, frag, args.count)
            if why:
                print("case %s FAILED: %s" % (cid, why))
                failed += 1
            else:
                passed += 1
        if srv.poll() is not None:
            print("the server exited (status %s)" % srv.returncode)
            failed += 1
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed else 0
    finally:
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
