#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Real-time checks of the loop's clock and wakeups, against the real
programs on 127.0.0.1. Slow by nature (it waits), so it is not part of
scripts/test: the same rules are checked to the millisecond in simulated
time by tests/adapter/test_sim.c. Run it by hand:

  quiet.py --bindir BUILD/examples [--quiet 12,60,300] [--no-tls] [--no-cpu]

1. Quiet periods: echo-server (ws:// and, when built with TLS, wss://) and
   chat serve one client, then nothing happens for each --quiet period;
   then a new client must get its 101 (chat: its 200 page, then a 101)
   within 100 ms, and a silent connection made at that moment must be
   dropped 10 s later (the full handshake timeout), not earlier.
2. Twelve chat clients that never read, their queues full at the
   keepalive deadline: chat's CPU over the 40 s around the deadline must
   stay under 5% (it spun at 100% before).
Prints each check and "N passed, N failed".
"""

import argparse
import base64
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Checks, Proc  # noqa: E402

KEY = base64.b64encode(b"0123456789abcdef").decode()


def upgrade_request(path="/"):
    return ("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % (path, KEY)).encode()


def connect(port, ca=None):
    s = socket.create_connection(("127.0.0.1", port), 10)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname="localhost")
    return s


def read_head(s, timeout):
    s.settimeout(timeout)
    got = b""
    while b"\r\n\r\n" not in got:
        b = s.recv(4096)
        if not b:
            break
        got += b
    return got


def timed_exchange(port, req, ca=None):
    """Seconds from connect to the end of the answer's head, and the head."""
    t0 = time.monotonic()
    s = connect(port, ca)
    s.sendall(req)
    head = read_head(s, 10)
    dt = time.monotonic() - t0
    s.close()
    return dt, head


def silent_drop_seconds(port, ca=None):
    s = connect(port, ca)
    t0 = time.monotonic()
    s.settimeout(30)
    try:
        while s.recv(4096):
            pass
    except (ConnectionResetError, socket.timeout, ssl.SSLError):
        pass
    dt = time.monotonic() - t0
    s.close()
    return dt


def port_of(proc, prefix):
    line = proc.wait_line(lambda l: l.startswith(prefix) or "http://" in l, 15)
    if line is None:
        raise RuntimeError("%s did not start: %s" % (proc.argv[0], proc.errs))
    tail = line.split("://")[1].split("/")[0]
    return int(tail.rsplit(":", 1)[1])


def quiet_checks(t, name, port, quiets, req, want, ca=None):
    dt, head = timed_exchange(port, req, ca)
    t.check(head.startswith(want), "%s: first client served" % name, head[:40])
    for q in quiets:
        time.sleep(q)
        dt, head = timed_exchange(port, req, ca)
        t.check(head.startswith(want) and dt < 0.1,
                "%s: a client after %d s of quiet is served in %.1f ms"
                % (name, q, dt * 1000), repr(head[:40]))
        d = silent_drop_seconds(port, ca)
        t.check(9.9 <= d < 15,
                "%s: a silent client then is dropped after %.2f s (10 s "
                "handshake timeout)" % (name, d), "%.2f s" % d)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz


def stuck_readers(t, chat):
    p = Proc([chat, "--port", "0"])
    port = port_of(p, "chat")
    readers = []
    for _ in range(12):
        s = connect(port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(upgrade_request("/ws"))
        read_head(s, 10)
        readers.append(s)  # never read again
    w = connect(port)
    w.sendall(upgrade_request("/ws"))
    read_head(w, 10)
    # Fill the twelve queues: each typed line is broadcast to everyone.
    # The writer sends whole frames (blocking) and a thread reads what
    # comes back to it, so that only the twelve are slow.
    stop = threading.Event()

    def drain():
        w.settimeout(0.5)
        while not stop.is_set():
            try:
                if not w.recv(65536):
                    return
            except socket.timeout:
                pass
            except OSError:
                return
    th = threading.Thread(target=drain, daemon=True)
    th.start()
    line = b"x" * 8000
    frame = bytes([0x81, 0xFE]) + len(line).to_bytes(2, "big") + b"\0\0\0\0"
    sent = 0
    t_end = time.monotonic() + 10
    while time.monotonic() < t_end:
        w.sendall(frame + line)
        sent += 1
        time.sleep(0.002)
    # The keepalive deadline comes 25 s after the clients' last bytes.
    c0, t0 = cpu_seconds(p.p.pid), time.monotonic()
    deadline = t0 + 40
    while time.monotonic() < deadline:
        time.sleep(0.2)
    cpu = cpu_seconds(p.p.pid) - c0
    wall = time.monotonic() - t0
    t.check(cpu / wall < 0.05,
            "chat with 12 non-reading clients across the keepalive deadline: "
            "%.1f%% CPU (%.2f s in %.0f s, %d messages broadcast)"
            % (100 * cpu / wall, cpu, wall, sent), "%.2f s CPU" % cpu)
    stop.set()
    th.join(2)
    for s in readers:
        s.close()
    w.close()
    p.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--quiet", default="12,60,300")
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("--no-cpu", action="store_true")
    a = ap.parse_args()
    quiets = [int(x) for x in a.quiet.split(",") if x]
    echo = os.path.join(a.bindir, "echo-server")
    chat = os.path.join(a.bindir, "chat")
    t = Checks()
    procs = []
    try:
        es = Proc([echo, "--port", "0"])
        procs.append(es)
        quiet_checks(t, "echo-server", port_of(es, "echo-server"), quiets,
                     upgrade_request(), b"HTTP/1.1 101")
        ch = Proc([chat, "--port", "0"])
        procs.append(ch)
        quiet_checks(t, "chat page", port_of(ch, "chat"), quiets,
                     b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
                     b"HTTP/1.1 200")
        if not a.no_tls:
            d = tempfile.mkdtemp()
            ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes"]
            subprocess.run(["openssl", "req", "-x509"] + ec +
                           ["-keyout", d + "/k.pem", "-out", d + "/c.pem",
                            "-days", "2", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost"],
                           check=True, capture_output=True, timeout=30)
            tl = Proc([echo, "--port", "0", "--tls-cert", d + "/c.pem",
                       "--tls-key", d + "/k.pem"])
            procs.append(tl)
            quiet_checks(t, "echo-server wss", port_of(tl, "echo-server"),
                         quiets, upgrade_request(), b"HTTP/1.1 101",
                         ca=d + "/c.pem")
        if not a.no_cpu:
            stuck_readers(t, chat)
    finally:
        for p in procs:
            p.stop()
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
