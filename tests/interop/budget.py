#!/usr/bin/env python3
"""Budgets and caps of the real servers, attacked from 127.0.0.1.

Each part starts examples/echo-server or examples/chat, attacks it with
raw sockets (Python standard library only: the attacks need frames no
client library sends), and checks exact outcomes and the server's
resident memory (VmRSS from /proc/PID/status). Every wait is bounded, and
the margins are seconds, not milliseconds, so a loaded machine passes.

1. compressed: 8 clients each send one never-finished compressed message
   (64 KB of DEFLATE that inflates to 60 MiB; RFC 7692 7.2) to
   echo-server --autobahn --memory-budget 64 MiB: the server's RSS grows
   by less than 80 MiB, the offenders are closed with 1013 (RFC 6455
   7.4.1, IANA registry 11.7) or 1009, and a fresh client is served
   meanwhile.
2. slow: chat with --memory-budget 64 MiB; 50 clients that do not read
   (half of them read a few bytes every few seconds) while a client
   floods the room: all 50 are dropped within the write timeout (30 s
   once their queue in the server is over low_water, which takes a few
   seconds of filling kernel buffers first), RSS stays bounded, two
   well-behaved clients keep receiving throughout.
3. origin: chat answers 403 to a cross-site Origin (RFC 6455 10.2), 101
   to its own host's, and to an --origin it was given.
4. tls: echo-server over TLS with --max-handshakes 16, 200 sockets each
   send a ClientHello and stop: at most 16 ever get a ServerHello, the
   others are closed at once; a legitimate wss client is served within
   a few seconds (once the --handshake-timeout of 2 s frees the slots).
5. pmdcap: echo-server --max-pmd-context 100 and 1,000 clients offering
   context takeover at window 15 (as browsers do), each sending a 4 KB
   compressed message and reading the echo: exactly the first 100 keep
   their context, the other 900 get server_no_context_takeover and
   client_no_context_takeover (RFC 7692 7.1.1), and the RSS grows by at
   most 100 contexts (282 KiB each allocated, README) plus 1,000 times
   the cost of a connection without deflate (measured first) plus a
   margin. Without the cap the same run must go over that bound.
   pmddefaults: the default caps at their edge: echo-server and chat 64
   (connection 65 gets no context), ws-proxy 256, echo-server --autobahn
   none.
6. amplify: a client asking for server_max_window_bits=8 and sending a
   1 KiB random block repeated (~170:1 at its window of 15) gets an echo
   ~170 times what it sent from echo-server --autobahn; echo-server
   (WS_CFG_PMD_SYMMETRIC) declines that offer (RFC 7692 7.1.2.1) or
   holds the client to its window (9: 7.1.2.2), and no echo is more
   than twice what was sent; chat declines the offer too.
7. options: --max-pmd-context takes 0..2^32-1 (ws-proxy 0..2^31-1) and
   refuses one above, a negative number or a word with exit 2.

Usage: budget.py --bindir BUILD/examples [--only NAME]
"""
import argparse
import base64
import os
import random
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

# Under AddressSanitizer (stage b) memory holds redzones and a quarantine:
# the RSS bounds are checked only in plain builds.
UNDER_ASAN = "ASAN_OPTIONS" in os.environ
ASAN_NOTE = " (not checked under ASan)" if UNDER_ASAN else ""

MiB = 1 << 20
KEY = base64.b64encode(b"0123456789abcdef").decode()


class Fail(Exception):
    pass


def check(cond, what, detail=""):
    print("%s %s%s" % ("ok  " if cond else "FAIL", what,
                       "" if cond or not detail else ": %s" % detail))
    sys.stdout.flush()
    if not cond:
        raise Fail(what)


# ---- the server process ----------------------------------------------------

class Server:
    def __init__(self, argv):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL, text=True)
        self.port = None
        end = time.monotonic() + 15
        while time.monotonic() < end and self.port is None:
            r, _, _ = select.select([self.p.stdout], [], [], 1)
            if r:
                line = self.p.stdout.readline()
                if not line:
                    break
                m = re.search(r"://\[?[0-9a-f.:]+\]?:(\d+)/", line)
                if m:
                    self.port = int(m.group(1))
        if self.port is None:
            self.stop()
            raise Fail("%s did not start" % argv[0])
        # keep reading its output so it never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for _ in self.p.stdout:
            pass

    def rss(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        """Stops it at once (no graceful drain to wait for)."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class RssWatch:
    """Samples the server's RSS every 50 ms; |peak| is the most seen."""

    def __init__(self, srv):
        self.srv = srv
        self.base = srv.rss()
        self.peak = self.base
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.wait(0.05):
            try:
                self.peak = max(self.peak, self.srv.rss())
            except OSError:
                return

    def growth(self):
        self.peak = max(self.peak, self.srv.rss())
        return self.peak - self.base

    def stop(self):
        self.stop_ev.set()
        self.t.join()


# ---- a raw WebSocket client ------------------------------------------------

def recv_head(s, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return (int(m.group(1)) if m else 0), head.decode("latin-1"), rest


def upgrade(port, path="/", origin=None, deflate=False, host=None,
            rcvbuf=None, wrap=None, ext=None):
    """Connects and sends the opening handshake (RFC 6455 4.1), offering
    permessage-deflate if |deflate|, or the Sec-WebSocket-Extensions
    value |ext|. Returns (socket, status, head, bytes after the head)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    if wrap:
        s = wrap(s)
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
           "Sec-WebSocket-Version: 13\r\n" %
           (path, host or "127.0.0.1:%d" % port, KEY))
    if origin:
        req += "Origin: %s\r\n" % origin
    if deflate:
        req += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    if ext:
        req += "Sec-WebSocket-Extensions: %s\r\n" % ext
    s.sendall((req + "\r\n").encode())
    status, head, rest = recv_head(s)
    return s, status, head, rest


def frame(op, payload, fin=True, rsv1=False):
    """A client frame, masked (RFC 6455 5.3)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    m = (mask * (n // 4 + 1))[:n]
    data = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")
            ).to_bytes(n, "big") if n else b""
    return hdr + mask + data


class Reader:
    """Parses the server's (unmasked) frames from a socket."""

    def __init__(self, s, rest=b""):
        self.s = s
        self.buf = rest
        self.rsv1 = False  # of the last frame returned
        self.wire = 0      # its size on the wire, header included

    def next(self, timeout):
        """(opcode, payload), or None at the end or after |timeout|."""
        end = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126 and len(self.buf) >= 4:
                    n = struct.unpack("!H", self.buf[2:4])[0]
                    off = 4
                elif n == 127 and len(self.buf) >= 10:
                    n = struct.unpack("!Q", self.buf[2:10])[0]
                    off = 10
                if n < 126 or off > 2:
                    if len(self.buf) >= off + n:
                        op = self.buf[0] & 0x0F
                        self.rsv1 = bool(self.buf[0] & 0x40)
                        self.wire = off + n
                        p = self.buf[off:off + n]
                        self.buf = self.buf[off + n:]
                        return op, p
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except (socket.timeout, ssl.SSLError, OSError):
                return None
            if not d:
                return None
            self.buf += d


def close_code(reader, timeout):
    """Reads until a close frame: its code; 1006 if the end came first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = reader.next(end - time.monotonic())
        if f is None:
            return 1006
        if f[0] == 8:
            return struct.unpack("!H", f[1][:2])[0] if len(f[1]) >= 2 else 1005
    return None


def echo_ok(port, text=b"hello", wrap=None, attempts_for=0.0):
    """A fresh client: 101, then one text message echoed. Retries on 503
    for |attempts_for| seconds. Returns (ok, statuses seen)."""
    seen = []
    end = time.monotonic() + attempts_for
    while True:
        try:
            s, st, _, rest = upgrade(port, wrap=wrap)
        except (OSError, ssl.SSLError) as e:
            st, s = "error %s" % e.__class__.__name__, None
        seen.append(st)
        if st == 101:
            s.sendall(frame(1, text))
            f = Reader(s, rest).next(10)
            s.close()
            return f == (1, text), seen
        if s:
            s.close()
        if time.monotonic() >= end:
            return False, seen
        time.sleep(0.2)


# ---- 1. never-finished compressed messages ---------------------------------

def part_compressed(bindir):
    srv = Server([os.path.join(bindir, "echo-server"), "--port", "0",
                  "--autobahn", "--memory-budget", str(64 * MiB)])
    try:
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = z.compress(bytes(60 * MiB)) + z.flush(zlib.Z_SYNC_FLUSH)
        body = body[:-4]  # RFC 7692 7.2.1: the 00 00 ff ff tail removed
        check(len(body) < 80 * 1024, "60 MiB inflate from %d bytes" % len(body))
        time.sleep(0.5)
        watch = RssWatch(srv)
        socks = []
        for i in range(8):
            s, st, head, rest = upgrade(srv.port, deflate=True)
            if st != 101 or "permessage-deflate" not in head:
                check(False, "attacker %d: 101 with permessage-deflate" % i)
            # the first frame of a binary message, compressed, never ended
            s.sendall(frame(2, body, fin=False, rsv1=True))
            socks.append((s, Reader(s, rest)))
        ok, seen = echo_ok(srv.port, attempts_for=20)
        codes = [close_code(r, 30) for _, r in socks]
        growth = watch.growth()
        watch.stop()
        print("  close codes %s; fresh client saw %s; RSS %.1f -> +%.1f MiB"
              % (codes, seen, watch.base / MiB, growth / MiB))
        refused = [c for c in codes if c in (1013, 1009)]
        check(len(refused) >= 7, "offenders closed with 1013 or 1009",
              "codes %s" % codes)
        check(all(c in (1013, 1009, None) for c in codes),
              "no other close code", "codes %s" % codes)
        check(ok, "a fresh client is served meanwhile", "saw %s" % seen)
        check(UNDER_ASAN or growth < 80 * MiB,
              "RSS grew by less than 80 MiB" + ASAN_NOTE,
              "%.1f MiB" % (growth / MiB))
        check(srv.alive(), "echo-server still up")
        for s, _ in socks:
            s.close()
    finally:
        srv.stop()


# ---- 2. slow readers in the chat -------------------------------------------

def guest_of(reader):
    """The guest number from chat's first message, "* you are guest-N"."""
    f = reader.next(10)
    m = re.match(rb"\* you are guest-(\d+)", f[1]) if f else None
    if not m:
        raise Fail("no guest number: %r" % (f,))
    return int(m.group(1))


def part_slow(bindir):
    srv = Server([os.path.join(bindir, "chat"), "--port", "0",
                  "--memory-budget", str(64 * MiB)])
    try:
        watch = RssWatch(srv)
        slow = {}
        for i in range(50):
            s, st, _, rest = upgrade(srv.port, path="/ws", rcvbuf=4096)
            if st != 101:
                check(False, "slow reader %d: 101" % i, "%d" % st)
            slow[guest_of(Reader(s, rest))] = s
        check(True, "50 slow readers: 101")
        good = []
        for i in range(2):
            s, st, _, rest = upgrade(srv.port, path="/ws")
            check(st == 101, "good reader %d: 101" % i)
            r = Reader(s, rest)
            guest_of(r)
            good.append({"r": r, "got": 0, "last": 0.0, "gap": 0.0,
                         "closed": False, "left": {}})
        talker, st, _, _ = upgrade(srv.port, path="/ws")
        check(st == 101, "talker: 101")
        stop = threading.Event()
        line = b"x" * 8000
        t0 = time.monotonic()

        def talk():  # ~400 KB/s into the room, to 53 readers
            talker.settimeout(0.001)
            while not stop.is_set():
                try:
                    talker.sendall(frame(1, line))
                except OSError:
                    return
                try:  # the talker reads its own relays too
                    while talker.recv(1 << 20):
                        pass
                except (socket.timeout, BlockingIOError):
                    pass
                except OSError:
                    return
                time.sleep(0.02)

        def read_good(g):
            g["last"] = time.monotonic()
            while not stop.is_set():
                f = g["r"].next(1)
                now = time.monotonic()
                if f is None:
                    continue
                if f[0] == 8:
                    g["closed"] = True
                    return
                m = re.match(rb"\* guest-(\d+) left", f[1])
                if m:
                    g["left"].setdefault(int(m.group(1)), now - t0)
                    continue
                g["got"] += 1
                g["gap"] = max(g["gap"], now - g["last"])
                g["last"] = now

        threads = [threading.Thread(target=talk, daemon=True)]
        threads += [threading.Thread(target=read_good, args=(g,), daemon=True)
                    for g in good]
        for t in threads:
            t.start()
        # The write timeout is 30 s from when a reader's queue in the
        # server went over low_water, which comes after the kernel's
        # socket buffers filled (~8 s at this rate); allow for a loaded
        # machine.
        nap = 0
        while time.monotonic() - t0 < 90:
            if all(len(set(slow) - set(g["left"])) == 0 for g in good):
                break
            nap += 1
            if nap % 20 == 0:  # every ~5 s, half of them read 512 bytes
                for k, s in slow.items():
                    if k % 2 == 0:
                        try:
                            s.setblocking(False)
                            s.recv(512)
                        except OSError:
                            pass
            time.sleep(0.25)
        growth = watch.growth()
        watch.stop()
        stop.set()
        for t in threads:
            t.join(5)
        left = good[0]["left"]
        times = sorted(v for k, v in left.items() if k in slow)
        print("  %d/50 dropped, first at %.1f s, last at %.1f s; good "
              "readers got %s messages (largest gap %s s); RSS +%.1f MiB" %
              (len(times), times[0] if times else -1,
               times[-1] if times else -1, [g["got"] for g in good],
               ["%.1f" % g["gap"] for g in good], growth / MiB))
        check(len(times) == 50, "all 50 slow readers dropped within 90 s "
              "(write timeout 30 s)", "%d" % len(times))
        check(all(g["got"] > 100 and not g["closed"] for g in good),
              "well-behaved clients keep receiving",
              "%s" % [(g["got"], g["closed"]) for g in good])
        check(all(g["gap"] < 15 for g in good),
              "... without a long gap", "%s" % [g["gap"] for g in good])
        check(UNDER_ASAN or growth < 100 * MiB,
              "chat RSS grew by less than 100 MiB" + ASAN_NOTE,
              "%.1f MiB" % (growth / MiB))
        check(srv.alive(), "chat still up")
        for s in slow.values():
            s.close()
        talker.close()
        for g in good:
            g["r"].s.close()
    finally:
        srv.stop()


# ---- 3. Origin --------------------------------------------------------------

def part_origin(bindir):
    srv = Server([os.path.join(bindir, "chat"), "--port", "0",
                  "--origin", "https://ok.example"])
    try:
        p = srv.port
        for origin, want in (("http://evil.example", 403),
                             ("http://127.0.0.1:%d.evil.example" % p, 403),
                             ("http://127.0.0.1:%d" % p, 101),
                             ("https://ok.example", 101),
                             ("null", 403),
                             (None, 101)):
            s, st, _, _ = upgrade(p, path="/ws", origin=origin)
            s.close()
            check(st == want, "chat: Origin %s -> %d" % (origin, want),
                  "got %d" % st)
    finally:
        srv.stop()


# ---- 4. a flood of TLS ClientHellos ----------------------------------------

def make_cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    d + "/key.pem", "-out", d + "/cert.pem", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, timeout=30, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def part_tls(bindir):
    cap = 16
    with tempfile.TemporaryDirectory() as d:
        make_cert(d)
        srv = Server([os.path.join(bindir, "echo-server"), "--port", "0",
                      "--tls-cert", d + "/cert.pem", "--tls-key",
                      d + "/key.pem", "--max-handshakes", str(cap),
                      "--handshake-timeout", "2000"])
        try:
            hello = client_hello()
            watch = RssWatch(srv)
            socks = []
            for _ in range(200):
                s = socket.create_connection(("127.0.0.1", srv.port), 10)
                s.sendall(hello)
                socks.append(s)
            # who got a ServerHello, who was closed at once
            answered, closed = set(), set()
            end = time.monotonic() + 1.5  # before the 2 s timeout
            while time.monotonic() < end and len(answered | closed) < 200:
                live = [s for s in socks if s not in answered | closed]
                r, _, _ = select.select(live, [], [], 0.2)
                for s in r:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    (answered if data else closed).add(s)
            print("  %d sockets got a ServerHello, %d were closed at once; "
                  "RSS +%.1f MiB" % (len(answered), len(closed),
                                     watch.growth() / MiB))
            check(1 <= len(answered) <= cap,
                  "at most %d handshakes at once" % cap, "%d" % len(answered))
            check(len(closed) >= 200 - cap, "the others are closed at once",
                  "%d" % len(closed))
            ctx = ssl.create_default_context(cafile=d + "/cert.pem")

            def wrap(s):
                return ctx.wrap_socket(s, server_hostname="localhost")
            t0 = time.monotonic()
            ok, seen = echo_ok(srv.port, wrap=wrap, attempts_for=10)
            dt = time.monotonic() - t0
            print("  legitimate wss client: %s after %.1f s (%d tries)" %
                  (ok, dt, len(seen)))
            check(ok and dt < 10, "a legitimate wss client served within "
                  "a few seconds", "%s" % seen)
            watch.stop()
            for s in socks:
                s.close()
            check(srv.alive(), "echo-server still up")
        finally:
            srv.stop()


# ---- 5. deflate contexts under --max-pmd-context ---------------------------

KiB = 1 << 10
TAIL = b"\x00\x00\xff\xff"
# what browsers offer: context takeover, window 15 both ways
OFFER = "permessage-deflate; client_max_window_bits"
KEEP = "permessage-deflate"
NOKEEP = ("permessage-deflate; server_no_context_takeover; "
          "client_no_context_takeover")
# What a connection keeping both contexts at window 15 allocates for them
# (README, "Memory for compression": inflater 40,016 B, deflater at levels
# 2-9 247,364 B, the objects 160 + 816 B): its RSS is at most that, ~230
# KiB after a message of a few KB, all of it where the allocator fills
# what it hands out (MALLOC_PERTURB_, which meson sets for tests).
CTX_COST = 40016 + 247364 + 160 + 816


def deflate_msg(data, wbits=15, level=6):
    """One message compressed on its own (RFC 7692 7.2.1: the 00 00 ff ff
    tail removed)."""
    z = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    if not out.endswith(TAIL):
        raise Fail("zlib: no sync flush tail")
    return out[:-4]


def inflate_msg(payload, wbits=15):
    return zlib.decompressobj(-wbits).decompress(payload + TAIL)


def ext_answer(head):
    """The Sec-WebSocket-Extensions value of a 101, or None."""
    m = re.search(r"(?im)^Sec-WebSocket-Extensions:[ \t]*(.*?)[ \t]*\r?$",
                  head)
    return m.group(1) if m else None


def raise_fd_limit(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        if hard != resource.RLIM_INFINITY:
            n = min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def many_echoes(srv, n, offer, text):
    """|n| connections one after the other, each offering |offer| (None:
    no extension) and sending |text| plus its number (compressed if the
    answer took permessage-deflate), then reading its echo; all stay open
    until the server's RSS is read. Returns (answers, echoes right, RSS
    growth)."""
    base = srv.rss()
    socks, answers, right = [], [], 0
    try:
        for i in range(n):
            s, st, head, rest = upgrade(srv.port, ext=offer)
            socks.append(s)
            if st != 101:
                raise Fail("connection %d: status %d" % (i, st))
            a = ext_answer(head)
            answers.append(a)
            msg = text + b" %d" % i
            if a:
                s.sendall(frame(1, deflate_msg(msg), rsv1=True))
            else:
                s.sendall(frame(1, msg))
            r = Reader(s, rest)
            f = r.next(20)
            if f and f[0] == 1:
                got = inflate_msg(f[1]) if r.rsv1 else f[1]
                right += got == msg
        time.sleep(0.5)  # let the last echoes' buffers go
        growth = srv.rss() - base
    finally:
        for s in socks:
            s.close()
    return answers, right, growth


def part_pmdcap(bindir):
    n, cap = 1000, 100
    raise_fd_limit(2 * n + 256)  # the server inherits it
    # a chat-like message of ~4 KB that compresses well
    text = b"".join(b"line %d: the quick brown fox jumps over the lazy "
                    b"dog\n" % k for k in range(80))

    def run(args, offer):
        srv = Server([os.path.join(bindir, "echo-server"), "--port", "0",
                      "-q"] + args)
        try:
            time.sleep(0.3)
            return many_echoes(srv, n, offer, text)
        finally:
            srv.kill()

    # baseline: the same traffic without deflate
    answers, right, g_idle = run([], None)
    check(right == n and answers == [None] * n,
          "baseline: %d echoes without deflate" % n, "%d right" % right)
    idle = g_idle / n
    # RFC 7692 7.1.1: beyond the cap the server asks both sides to reset
    answers, right, g_cap = run(["--max-pmd-context", str(cap)], OFFER)
    check(right == n, "--max-pmd-context %d: %d echoes right" % (cap, n),
          "%d" % right)
    check(answers[:cap] == [KEEP] * cap,
          "the first %d keep context takeover ('%s')" % (cap, KEEP),
          "%s" % sorted(set(answers[:cap]), key=str))
    check(answers[cap:] == [NOKEEP] * (n - cap),
          "the other %d (connections %d..%d) get '%s'" % (n - cap, cap + 1,
                                                          n, NOKEEP),
          "%s" % sorted(set(answers[cap:]), key=str))
    # the bound: the contexts allowed, plus what every connection costs
    # without deflate, plus a margin for the allocator (freed message
    # buffers kept in its arenas, the loop's shared compressor)
    margin = 4 * MiB + cap * CTX_COST // 8
    bound = cap * CTX_COST + n * idle + margin
    print("  baseline without deflate: +%.1f MiB, %.2f KiB per connection"
          % (g_idle / MiB, idle / KiB))
    print("  --max-pmd-context %d: +%.1f MiB; bound %d x %.1f KiB + %d x "
          "%.2f KiB + margin %.1f MiB = %.1f MiB" %
          (cap, g_cap / MiB, cap, CTX_COST / KiB, n, idle / KiB,
           margin / MiB, bound / MiB))
    if UNDER_ASAN:
        print("  (no run without the cap under ASan)")
    else:
        # the reverse: without a cap every connection keeps one
        answers, right, g_all = run(["--max-pmd-context", "0"], OFFER)
        check(right == n and answers == [KEEP] * n,
              "--max-pmd-context 0: all %d keep context takeover" % n,
              "%d right, %s" % (right, sorted(set(answers), key=str)))
        ctx = (g_all - g_idle) / n
        print("  --max-pmd-context 0: +%.1f MiB, %.1f KiB per connection "
              "over the baseline; so with the cap each of the %d without "
              "a context costs %.2f KiB" %
              (g_all / MiB, ctx / KiB,
               n - cap, (g_cap - cap * (ctx + idle)) / (n - cap) / KiB))
        check(g_all > bound, "without the cap the RSS is over the bound "
              "(the check below can fail)",
              "%.1f MiB" % (g_all / MiB))
    check(UNDER_ASAN or g_cap <= bound,
          "with the cap the RSS growth is within the bound" + ASAN_NOTE,
          "%.1f MiB > %.1f MiB" % (g_cap / MiB, bound / MiB))


def answers_of(port, n, offer, path="/"):
    """The Sec-WebSocket-Extensions answers to |n| connections opened one
    after the other, all kept open until the last."""
    socks, answers = [], []
    try:
        for i in range(n):
            s, st, head, _ = upgrade(port, path=path, ext=offer)
            socks.append(s)
            if st != 101:
                raise Fail("connection %d: status %d" % (i, st))
            answers.append(ext_answer(head))
    finally:
        for s in socks:
            s.close()
    return answers


def part_pmddefaults(bindir):
    """The documented defaults of --max-pmd-context, at the edge: the last
    connection allowed a context and the first refused one."""
    raise_fd_limit(2048)
    runs = [("echo-server", [], "/", 64), ("chat", [], "/ws", 64)]
    up = None
    if os.path.exists(os.path.join(bindir, "ws-proxy")):
        up = Server([os.path.join(bindir, "echo-server"), "--port", "0",
                     "-q", "--max-pmd-context", "0"])
        runs.append(("ws-proxy", ["--upstream", "ws://127.0.0.1:%d/" %
                                  up.port], "/", 256))
    try:
        for name, extra, path, cap in runs:
            srv = Server([os.path.join(bindir, name), "--port", "0"] + extra)
            try:
                a = answers_of(srv.port, cap + 1, OFFER, path)
            finally:
                srv.kill()
            check(a[:cap] == [KEEP] * cap and a[cap] == NOKEEP,
                  "%s: connections 1..%d keep a context, connection %d "
                  "does not" % (name, cap, cap + 1),
                  "%s" % sorted(set(a), key=str))
        srv = Server([os.path.join(bindir, "echo-server"), "--port", "0",
                      "--autobahn", "-q"])
        try:
            a = answers_of(srv.port, 65, OFFER)
        finally:
            srv.kill()
        check(a == [KEEP] * 65, "echo-server --autobahn: no cap (65 keep "
              "a context)", "%s" % sorted(set(a), key=str))
    finally:
        if up:
            up.kill()


# ---- 6. output amplification through a small server window ---------------

AMP_BOUND = 2.0  # echo bytes / bytes received, with WS_CFG_PMD_SYMMETRIC


def amplify(port, offer, payload, wbits):
    """Sends |payload| as one binary message, compressed at |wbits| (level
    9) if the server took permessage-deflate, and reads the echo. Returns
    (the answer's extension, bytes sent, bytes of the echo), both whole
    frames on the wire."""
    s, st, head, rest = upgrade(port, ext=offer)
    try:
        if st != 101:
            raise Fail("status %d" % st)
        a = ext_answer(head)
        if a:
            z = deflate_msg(payload, wbits, 9)
            if wbits < 15:  # it must fit the window it was held to
                inflate_msg(z, wbits)
            fr = frame(2, z, rsv1=True)
        else:
            fr = frame(2, payload)
        s.sendall(fr)
        r = Reader(s, rest)
        f = r.next(30)
        got = None
        if f and f[0] == 2:
            got = inflate_msg(f[1], 15) if r.rsv1 else f[1]
        if got != payload:
            raise Fail("no echo of the %d bytes" % len(payload))
        return a, len(fr), r.wire
    finally:
        s.close()


def part_amplify(bindir):
    rnd = random.Random(13)
    # 1 KiB of random bytes repeated: ~200:1 at window 15, nothing to
    # find at 8 or 9; and 200 bytes repeated, which both sides compress
    far = bytes(rnd.getrandbits(8) for _ in range(1024)) * 1000
    near = bytes(rnd.getrandbits(8) for _ in range(200)) * 5000
    off8 = "permessage-deflate; server_max_window_bits=8"
    # before: --autobahn takes any window asked for
    srv = Server([os.path.join(bindir, "echo-server"), "--port", "0",
                  "--autobahn", "-q"])
    try:
        a, sent, echo = amplify(srv.port, off8, far, 15)
        check(a == off8, "--autobahn: '%s' accepted" % off8, "%s" % a)
        before = echo / sent
        print("  --autobahn, window 8 for the server: sent %d bytes, echo "
              "%d bytes: x%.1f" % (sent, echo, before))
        check(before > AMP_BOUND, "without the policy the echo is over "
              "x%.1f (the checks below can fail)" % AMP_BOUND)
    finally:
        srv.kill()
    # after: echo-server as for a public port (WS_CFG_PMD_SYMMETRIC)
    srv = Server([os.path.join(bindir, "echo-server"), "--port", "0", "-q"])
    try:
        for offer in (off8, off8 + "; client_max_window_bits"):
            a, sent, echo = amplify(srv.port, offer, far, 15)
            print("  '%s': declined; sent %d, echo %d: x%.2f" %
                  (offer, sent, echo, echo / sent))
            check(a is None, "RFC 7692 7.1.2.1: '%s' declined" % offer,
                  "answered %s" % a)
            check(echo / sent <= AMP_BOUND, "... echo at most x%.1f what "
                  "was sent" % AMP_BOUND)
        off9 = "permessage-deflate; server_max_window_bits=9; " \
               "client_max_window_bits"
        want = "permessage-deflate; server_max_window_bits=9; " \
               "client_max_window_bits=9"
        for name, data in (("1 KiB period", far), ("200 B period", near)):
            a, sent, echo = amplify(srv.port, off9, data, 9)
            check(a == want, "RFC 7692 7.1.2.2: held to window 9: '%s'" % a)
            print("  window 9 both ways, %s: sent %d, echo %d: x%.2f" %
                  (name, sent, echo, echo / sent))
            check(echo / sent <= AMP_BOUND, "... echo at most x%.1f what "
                  "was sent" % AMP_BOUND)
        check(srv.alive(), "echo-server still up")
    finally:
        srv.kill()
    # chat sets WS_CFG_PMD_SYMMETRIC too
    srv = Server([os.path.join(bindir, "chat"), "--port", "0", "-q"])
    try:
        a = answers_of(srv.port, 1, off8, "/ws")
        check(a == [None], "chat: '%s' declined" % off8, "%s" % a)
    finally:
        srv.kill()
    # ws-proxy too (its client side), unless --autobahn
    if not os.path.exists(os.path.join(bindir, "ws-proxy")):
        return
    up = Server([os.path.join(bindir, "echo-server"), "--port", "0", "-q"])
    try:
        for extra, want in (([], None), (["--autobahn"], off8)):
            srv = Server([os.path.join(bindir, "ws-proxy"), "--port", "0",
                          "--upstream", "ws://127.0.0.1:%d/" % up.port] +
                         extra)
            try:
                a = answers_of(srv.port, 1, off8)
            finally:
                srv.kill()
            check(a == [want], "ws-proxy %s: '%s' %s" %
                  (" ".join(extra), off8, "accepted" if want else "declined"),
                  "%s" % a)
    finally:
        up.kill()


# ---- 7. the options' range --------------------------------------------------

def part_options(bindir):
    """--max-pmd-context N: 0..2^32-1 (ws-proxy 0..2^31-1); one above the
    top, or negative, is a usage error (exit 2)."""
    progs = [("echo-server", [], 4294967295), ("chat", [], 4294967295)]
    if os.path.exists(os.path.join(bindir, "ws-proxy")):
        progs.append(("ws-proxy", ["--upstream", "ws://127.0.0.1:9/"],
                      2147483647))
    for name, extra, top in progs:
        argv = [os.path.join(bindir, name), "--port", "0"] + extra
        for v in ("0", str(top - 1), str(top)):
            srv = Server(argv + ["--max-pmd-context", v])
            srv.kill()
            check(True, "%s --max-pmd-context %s: starts" % (name, v))
        for v in (str(top + 1), "-1", "x"):
            rc = subprocess.run(argv + ["--max-pmd-context", v],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                timeout=10).returncode
            check(rc == 2, "%s --max-pmd-context %s: exit 2" % (name, v),
                  "%d" % rc)


PARTS = {"compressed": part_compressed, "slow": part_slow,
         "origin": part_origin, "tls": part_tls, "pmdcap": part_pmdcap,
         "pmddefaults": part_pmddefaults,
         "amplify": part_amplify, "options": part_options}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--only", action="append", choices=sorted(PARTS))
    ap.add_argument("--no-tls", action="store_true")
    args = ap.parse_args()
    names = args.only or [n for n in PARTS if n != "tls" or not args.no_tls]
    failed = []
    for n in names:
        print("---- %s" % n)
        try:
            PARTS[n](args.bindir)
        except (Fail, OSError, ssl.SSLError) as e:
            print("FAIL %s: %r" % (n, e))
            failed.append(n)
    print("failed: %s" % failed if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
