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

With --client-cmd it plays the fuzzingserver instead (getCaseCount,
runCase, updateReports) against a client such as examples/autobahn-client:
each case answers the client's offer as Autobahn's server does for it
(12.x: accept as offered; 13.1-13.7: accept1-accept7 of case12_x_x.py,
e.g. client_max_window_bits=8 with client_no_context_takeover for 13.5),
sends the messages compressed, and checks the client's masked, compressed
echoes with a decompressor held to the window it was granted.

Usage: autobahn_pmd.py --server-cmd PATH [--cases 12.*,13.5.*] [--count N]
       autobahn_pmd.py --client-cmd PATH [--cases ...] [--count N]
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
import urllib.parse
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "interop"))
from netutil import free_port  # noqa: E402

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
        for msg in messages(data, size, count):
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


def messages(data, size, count):
    """Autobahn's sendOne: consecutive |size|-byte slices of |data|,
    wrapping around at its end."""
    pos = 0
    for _ in range(count):
        end = (pos + size) % len(data)
        yield data[pos:end] if end > pos else data[pos:] + data[:end]
        pos = end


# ---------------------------------------------------------------------------
# The fuzzingserver side (--client-cmd)

# What Autobahn's server answers for 13.1-13.7 (accept1..accept7 of
# case12_x_x.py), to an offer that allows both: (client_no_context_takeover,
# client_max_window_bits) requested from the client; 12.x uses the first.
ACCEPTS = [(False, 0), (True, 0), (False, 8), (False, 15), (True, 8),
           (True, 15), (True, 8)]


class ServerConn:
    """Our end as the server: reads masked client frames, sends unmasked."""

    def __init__(self, sock, deadline):
        self.sock, self.deadline, self.buf = sock, deadline, bytearray()

    recv = Conn.recv

    def read_request(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 16384:
                raise Fail("request head too long")
            self.recv()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        hdrs = {}
        for ln in lines[1:]:
            name, _, value = ln.partition(":")
            hdrs.setdefault(name.strip().lower(), []).append(value.strip())
        key = hdrs.get("sec-websocket-key", [""])[0]
        return urllib.parse.urlsplit(target), hdrs, key

    def accept(self, key, ext):
        acc = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                % acc.decode())
        if ext:
            resp += "Sec-WebSocket-Extensions: %s\r\n" % ext
        self.sock.sendall((resp + "\r\n").encode())

    @staticmethod
    def frame(op, payload, fin=True, rsv1=False):
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 127, n)
        return hdr + payload

    def send(self, op, payload, fin=True, rsv1=False):
        self.sock.sendall(self.frame(op, payload, fin, rsv1))

    def read_frame(self):
        while True:
            b = self.buf
            if len(b) >= 2:
                if not b[1] & 0x80:
                    raise Fail("client sent an unmasked frame")
                n, pos = b[1] & 127, 2
                if n == 126 and len(b) >= 4:
                    n, pos = struct.unpack_from("!H", b, 2)[0], 4
                elif n == 127 and len(b) >= 10:
                    n, pos = struct.unpack_from("!Q", b, 2)[0], 10
                if (n < 126 or pos > 2) and len(b) >= pos + 4 + n:
                    key = bytes(b[pos:pos + 4])
                    payload = mask(key, bytes(b[pos + 4:pos + 4 + n]))
                    f = (b[0] >> 7, (b[0] >> 4) & 7, b[0] & 15, payload)
                    del b[:pos + 4 + n]
                    return f
            self.recv()

    def close_and_wait(self):
        """Close with 1000; the client must answer it with 1000 and leave
        the TCP close to us (RFC 6455 7.1.1)."""
        self.send(OP_CLOSE, struct.pack("!H", 1000))
        while True:
            fin, rsv, op, payload = self.read_frame()
            if op == OP_CLOSE:
                if payload[:2] != struct.pack("!H", 1000):
                    raise Fail("client closed with %r, want 1000"
                               % payload[:2])
                return
            if op not in (OP_PING, OP_PONG):
                raise Fail("client sent opcode %d after our close" % op)


def client_case(sc, offer_hdrs, accept, data, binary, size, frag, count):
    offers = offer_hdrs.get("sec-websocket-extensions", [])
    elems = [e.strip() for h in offers for e in h.split(",") if e.strip()]
    first = [e for e in elems if e.split(";")[0].strip() == "permessage-deflate"]
    if not first:
        raise Fail("the client offered no permessage-deflate (%r)" % offers)
    params = [q.strip() for q in first[0].split(";")[1:]]
    if "client_max_window_bits" not in [q.split("=")[0] for q in params]:
        raise Fail("the offer does not allow client_max_window_bits")
    req_nct, req_bits = accept
    ext = "permessage-deflate"
    if req_nct:
        ext += "; client_no_context_takeover"
    if req_bits:
        ext += "; client_max_window_bits=%d" % req_bits
    sc.accept(sc.key, ext)
    cbits = req_bits or 15
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    decomp = zlib.decompressobj(-cbits)
    op = OP_BINARY if binary else OP_TEXT
    for msg in messages(data, size, count):
        z = comp.compress(msg) + comp.flush(zlib.Z_SYNC_FLUSH)
        z = z[:-4]
        chunks = [z[i:i + frag] for i in range(0, len(z), frag)] \
            if frag else [z]
        sc.sock.sendall(b"".join(
            sc.frame(op if i == 0 else OP_CONT, ch, i == len(chunks) - 1,
                     i == 0) for i, ch in enumerate(chunks)))
        got, rsv1, firstf = [], False, True
        while True:
            fin, rsv, fop, payload = sc.read_frame()
            if fop in (OP_PING, OP_PONG):
                continue
            if fop == OP_CLOSE:
                raise Fail("client closed: %r" % payload[:2])
            if firstf:
                if fop != op or rsv & 3:
                    raise Fail("echo opcode %d rsv %d" % (fop, rsv))
                rsv1 = bool(rsv & 4)
            elif fop != OP_CONT or rsv:
                raise Fail("continuation with opcode %d rsv %d" % (fop, rsv))
            firstf = False
            got.append(payload)
            if fin:
                break
        body = b"".join(got)
        if rsv1:
            # a window over the one granted shows as a distance zlib
            # refuses ("invalid distance too far back")
            try:
                body = decomp.decompress(body + TAIL)
            except zlib.error as e:
                raise Fail("client's compressed data: %s" % e)
            if req_nct:
                decomp = zlib.decompressobj(-cbits)
        if body != msg:
            raise Fail("echo differs (%d bytes back, %d sent)"
                       % (len(body), len(msg)))
    sc.close_and_wait()


def serve_client(args):
    all_cases = [c for c in cases(gen_data())
                 if any(fnmatch.fnmatch(c[0], p) for p in args.cases.split(","))]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]
    proc = subprocess.Popen([args.client_cmd, "--url",
                             "ws://127.0.0.1:%d" % port, "--agent", "libws"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    end = time.monotonic() + args.suite_timeout
    passed = failed = 0
    done = set()
    problems = []
    try:
        while time.monotonic() < end:
            ls.settimeout(15)
            try:
                sock, _ = ls.accept()
            except socket.timeout:
                problems.append("the client made no connection for 15 s")
                break
            sc = ServerConn(sock, time.monotonic() + CASE_TIMEOUT)
            try:
                url, hdrs, sc.key = sc.read_request()
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/getCaseCount":
                    sc.accept(sc.key, None)
                    sc.send(OP_TEXT, str(len(all_cases)).encode())
                    sc.close_and_wait()
                elif url.path == "/updateReports":
                    sc.accept(sc.key, None)
                    sc.close_and_wait()
                    break
                elif url.path == "/runCase":
                    n = int(q.get("case", "0"))
                    if not 1 <= n <= len(all_cases) or n in done:
                        problems.append("bad or repeated case %d" % n)
                        continue
                    done.add(n)
                    cid, _offers, data, binary, size, frag = all_cases[n - 1]
                    j = int(cid.split(".")[1]) if cid.startswith("13.") else 1
                    try:
                        client_case(sc, hdrs, ACCEPTS[j - 1], data, binary,
                                    size, frag, args.count)
                        passed += 1
                    except (Fail, OSError) as e:
                        print("case %s FAILED: %s" % (cid, e))
                        failed += 1
                else:
                    problems.append("unknown path %s" % url.path)
            except (Fail, OSError) as e:
                problems.append(str(e))
            finally:
                sock.close()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            problems.append("the client did not exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ls.close()
    if proc.returncode != 0:
        problems.append("the client exited with status %s" % proc.returncode)
    if len(done) != len(all_cases):
        problems.append("%d cases never run" % (len(all_cases) - len(done)))
    for p in problems:
        print("problem: %s" % p)
    if problems:
        print("client output:\n" + out.decode("utf-8", "replace")[-4000:])
    print("%d passed, %d failed" % (passed, failed + len(all_cases) - len(done)))
    return 1 if failed or problems else 0


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--server-cmd")
    who.add_argument("--client-cmd")
    ap.add_argument("--server-arg", action="append", default=[])
    ap.add_argument("--cases", default="*")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--suite-timeout", type=float, default=240)
    args = ap.parse_args()
    if args.client_cmd:
        return serve_client(args)
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
