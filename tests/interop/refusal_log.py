#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The refusals the loop makes by itself reach the programs' logs
(ws_loop_set_on_refused), on 127.0.0.1 with raw sockets:

  refusal_log.py --bindir BUILD/examples

1. echo-server: a bare-LF head (400), a POST upgrade (405), a foreign
   Origin with --origin (403; an allowed one opens and is not refused),
   a second connection with --max-conns 1 (503 over max_conns), an
   upgrade during the drain after SIGINT (503 draining): each gives one
   line "refused PEER PATH: STATUS reason" on stderr, PEER being the
   client's own address. With -q there is none.
2. chat: a bare-LF head gives the same line.
3. ws-proxy: a bare-LF head gives an access-log JSON line with the
   status, the client and the loop's reason.
Each wait is bounded (a line that does not come fails after 20 s, not
sooner); nothing rests on a short delay. Prints each check and
"N passed, N failed".
"""

import argparse
import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Checks, Proc  # noqa: E402

WAIT = 20.0
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(path="/", method="GET", extra=""):
    return ("%s %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n%s\r\n" % (method, path, KEY,
                                                     extra)).encode()


def port_of(proc, what):
    """The port in the first stdout line ("... 127.0.0.1:PORT/ ...")."""
    line = proc.wait_line(lambda l: "127.0.0.1:" in l, WAIT)
    if line is None:
        raise RuntimeError("%s did not start: %s" % (what, proc.errs[-5:]))
    return int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))


def exchange(port, data, keep=False):
    """Sends |data| on a new connection; returns (status line, the
    client's own "127.0.0.1:N", the socket if |keep|)."""
    s = socket.create_connection(("127.0.0.1", port), WAIT)
    s.settimeout(WAIT)
    me = "127.0.0.1:%d" % s.getsockname()[1]
    s.sendall(data)
    got = b""
    while b"\r\n" not in got:
        b = s.recv(4096)
        if not b:
            break
        got += b
    if not keep:
        s.close()
        s = None
    return got.split(b"\r\n")[0].decode("latin-1"), me, s


def wait_err(proc, pattern, timeout=WAIT):
    """The first stderr line matching |pattern| (a regex, searched), or
    None once |timeout| has passed or the program has exited without
    it."""
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        exited = proc.p.poll() is not None
        if exited:
            proc.wait(5)  # everything it printed is in
        for line in list(proc.errs):
            if rx.search(line):
                return line
        if exited or time.monotonic() > end:
            return None
        time.sleep(0.05)


def refused_lines(proc, me):
    return [l for l in proc.errs if " refused %s " % me in l]


def check_refusal(t, proc, prog, port, data, status, path, reason, what):
    got, me, _ = exchange(port, data)
    t.check(got.startswith("HTTP/1.1 %d " % status),
            "%s: %s answered %d" % (prog, what, status), got)
    want = r"(^| )%s: refused %s %s: %d %s$" % (
        re.escape(prog), re.escape(me), re.escape(path), status,
        re.escape(reason))
    line = wait_err(proc, want)
    t.check(line is not None, "%s: %s logged \"refused %s %s: %d %s\"" % (
        prog, what, me, path, status, reason), proc.errs[-3:])
    if line is not None:
        t.check(len(refused_lines(proc, me)) == 1,
                "%s: %s logged once" % (prog, what), refused_lines(proc, me))


def echo_server(t, bindir):
    echo = os.path.join(bindir, "echo-server")
    # 400 and 405 from the parser, 403 from the Origin allowlist
    es = Proc([echo, "--port", "0", "--origin", "https://good.example"])
    try:
        port = port_of(es, "echo-server")
        check_refusal(t, es, "echo-server", port,
                      b"GET / HTTP/1.1\nHost: h\n\n", 400, "-",
                      "malformed request line", "a bare-LF head")
        check_refusal(t, es, "echo-server", port,
                      upgrade("/p", method="POST"), 405, "-",
                      "method is not GET", "a POST upgrade")
        check_refusal(t, es, "echo-server", port,
                      upgrade("/chat", extra="Origin: http://evil.example"
                              "\r\n"), 403, "/chat", "origin not allowed",
                      "a foreign Origin")
        got, me, s = exchange(port, upgrade(
            "/ok", extra="Origin: https://good.example\r\n"), keep=True)
        t.check(got.startswith("HTTP/1.1 101 "),
                "echo-server: an allowed Origin opens", got)
        line = wait_err(es, r"(^| )echo-server: open %s /ok " % re.escape(me))
        t.check(line is not None and not refused_lines(es, me),
                "echo-server: ... logged as open, not refused", es.errs[-3:])
        s.close()
    finally:
        es.stop(signal.SIGKILL)

    # 503 over max_conns: one connection open, the next refused
    es = Proc([echo, "--port", "0", "--max-conns", "1"])
    try:
        port = port_of(es, "echo-server")
        got, me, s = exchange(port, upgrade("/one"), keep=True)
        t.check(got.startswith("HTTP/1.1 101 "),
                "echo-server --max-conns 1: the first opens", got)
        check_refusal(t, es, "echo-server", port, upgrade("/two"), 503,
                      "/two", "over max_conns", "a second connection")
        s.close()
    finally:
        es.stop(signal.SIGKILL)

    # 503 while draining: SIGINT, then an upgrade (retried while the
    # loop has not taken the signal yet and still answers 101). The
    # drain keeps the port answering 503 for 5 s (the default; its
    # --drain flag is listed by --help but not parsed yet).
    es = Proc([echo, "--port", "0"])
    try:
        port = port_of(es, "echo-server")
        es.p.send_signal(signal.SIGINT)
        t.check(wait_err(es, r"shutting down") is not None,
                "echo-server: SIGINT starts the drain", es.errs[-3:])
        end = time.monotonic() + WAIT
        got = me = ""
        while time.monotonic() < end:
            got, me, _ = exchange(port, upgrade("/late"))
            if not got.startswith("HTTP/1.1 101 "):
                break
            time.sleep(0.1)
        t.check(got.startswith("HTTP/1.1 503 "),
                "echo-server: an upgrade during the drain answered 503", got)
        line = wait_err(es, r"(^| )echo-server: refused %s /late: 503 "
                        r"draining$" % re.escape(me))
        t.check(line is not None,
                "echo-server: ... logged \"refused %s /late: 503 draining\""
                % me, es.errs[-3:])
    finally:
        es.stop(signal.SIGKILL)

    # -q: errors only, so no refusal line (checked once it has exited
    # and everything it wrote is in)
    es = Proc([echo, "--port", "0", "-q"])
    try:
        port = port_of(es, "echo-server")
        got, me, _ = exchange(port, b"GET / HTTP/1.1\nHost: h\n\n")
        t.check(got.startswith("HTTP/1.1 400 "), "echo-server -q: 400", got)
    finally:
        es.p.send_signal(signal.SIGINT)
        es.p.send_signal(signal.SIGINT)  # the second one stops at once
        rc = es.wait(WAIT)
    t.check(rc == 0 and not [l for l in es.errs if "refused" in l],
            "echo-server -q: no refusal line", "exit %s %s" % (rc, es.errs))


def chat(t, bindir):
    ch = Proc([os.path.join(bindir, "chat"), "--port", "0"])
    try:
        port = port_of(ch, "chat")
        check_refusal(t, ch, "chat", port, b"GET / HTTP/1.1\nHost: h\n\n",
                      400, "-", "malformed request line", "a bare-LF head")
    finally:
        ch.stop(signal.SIGKILL)


def ws_proxy(t, bindir):
    # The upstream is never asked: the loop refuses the head itself.
    with socket.socket() as f:  # a free port for the metrics
        f.bind(("127.0.0.1", 0))
        admin = f.getsockname()[1]
    px = Proc([os.path.join(bindir, "ws-proxy"), "--port", "0",
               "--upstream", "ws://127.0.0.1:9/", "--admin", str(admin)])
    try:
        port = port_of(px, "ws-proxy")
        got, me, _ = exchange(port, b"GET / HTTP/1.1\nHost: h\n\n")
        t.check(got.startswith("HTTP/1.1 400 "), "ws-proxy: a bare-LF head "
                "answered 400", got)
        line = wait_err(px, r'"client":"%s"' % re.escape(me))
        rec = None
        try:
            rec = json.loads(line) if line else None
        except ValueError:
            pass
        t.check(rec is not None and rec.get("status") == 400 and
                rec.get("reason") == "malformed request line" and
                rec.get("path") == "" and rec.get("first") == "proxy",
                "ws-proxy: ... logged as an access-log line with status 400 "
                "and reason \"malformed request line\"", line)
        with socket.create_connection(("127.0.0.1", admin), WAIT) as a:
            a.settimeout(WAIT)
            a.sendall(b"GET /metrics HTTP/1.1\r\nHost: h\r\n"
                      b"Connection: close\r\n\r\n")
            got = b""
            while True:
                b = a.recv(65536)
                if not b:
                    break
                got += b
        got = got.decode("latin-1")
        t.check('wsproxy_upgrades_refused_total{status="400"} 1\n' in got,
                "ws-proxy: ... and counted in /metrics as refused with 400",
                got[-400:])
    finally:
        px.stop(signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    args = ap.parse_args()
    t = Checks()
    for part in (echo_server, chat, ws_proxy):
        try:
            part(t, args.bindir)
        except (RuntimeError, OSError) as e:
            t.check(False, "%s: setup" % part.__name__, e)
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed or not t.passed else 0


if __name__ == "__main__":
    sys.exit(main())
