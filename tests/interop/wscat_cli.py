#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""wscat's command line, side by side with npm's wscat 6.1.

  wscat_cli.py --wscat BUILD/examples/wscat

A python3-websockets server (in a thread of this script, 127.0.0.1 only)
records what it sees: request headers, subprotocol, client certificate,
close codes.
A small HTTP CONNECT proxy runs here too. Each step runs wscat with its own
timeout. The npm behaviours (observed by running npm's wscat 6.1.0 by
hand) are written down as exact expectations: the option spellings, the
raw whole message plus a newline when stdout is not a terminal, the
"Received ping (data: ...)" notices of -P, the slash commands, -x with -w,
Basic authentication. Our own additions are checked the same way: exact
error texts, distinct exit statuses, --json, --file, the terminal prefix.
With TLS built in and openssl at hand: wss:// with a client certificate
(--cert/--key), and wss:// through --proxy.

No check races a clock: where a reply is expected, the server closes after
echoing (/close-after-N) and wscat waits up to -w 15 for it, so a slow
machine only makes a step slower. The two exceptions are the acceptance
commands as written, `-x hello -w 1` and `echo hi | wscat -c URL` (1 s by
default after stdin ends), whose margin is that second for an echo on
127.0.0.1.

Prints each check and "N passed, N failed"; exits non-zero on a failure.
"""

import argparse
import asyncio
import base64
import http
import json
import os
import pty
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import websockets

from netutil import free_port

STEP = 20  # seconds any one wscat run may take
JSON_DOC = {"name": "libws", "list": [1, 2, 3], "nested": {"a": "b\u00e9"}}


class Server:
    """python3-websockets in a thread; |seen| records per-path facts."""

    def __init__(self, ssl_ctx=None):
        self.ssl_ctx = ssl_ctx
        self.seen = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.port = None
        threading.Thread(target=self._run, daemon=True).start()
        if not self.ready.wait(15):
            raise RuntimeError("the python server did not start")

    def record(self, **kw):
        with self.lock:
            self.seen.append(kw)

    def find(self, key):
        with self.lock:
            return [s for s in self.seen if key in s]

    async def process_request(self, path, headers):
        if path == "/redirect":
            return (http.HTTPStatus.FOUND, [("Location", "/close-after-1")],
                    b"")
        if path == "/redirect-net":  # scheme-relative
            loc = "//127.0.0.1:%d/close-after-1" % self.port
            return (http.HTTPStatus.TEMPORARY_REDIRECT, [("Location", loc)],
                    b"")
        if path == "/redirect-abs":
            loc = "ws://127.0.0.1:%d/close-after-1" % self.port
            return (http.HTTPStatus.MOVED_PERMANENTLY, [("Location", loc)],
                    b"")
        return None

    async def handler(self, ws, path):
        h = ws.request_headers
        cert = ws.transport.get_extra_info("peercert") or {}
        client = dict(x[0] for x in cert.get("subject", ())).get("commonName")
        self.record(request=path, client=client, origin=h.get("Origin"),
                    x=h.get("X"), host=h.get("Host"),
                    auth=h.get("Authorization"), protocol=ws.subprotocol)
        if path == "/json":  # one message, then close
            await ws.send(json.dumps(JSON_DOC, indent=2))
            await ws.close(1000)
        if path == "/restart-once":  # a server that restarts once
            with self.lock:
                first = not any(x.get("request") == path
                                for x in self.seen[:-1])
            try:
                if first:  # echo one, then "service restart"
                    await ws.send(await ws.recv())
                    await ws.close(1012, "restart")
                else:
                    await ws.close(1000)
            except websockets.ConnectionClosed:
                pass
        if path.startswith("/close-after-"):  # echo N, then close
            try:
                for _ in range(int(path.split("?")[0].rsplit("-", 1)[1])):
                    await ws.send(await ws.recv())
                await ws.close(1000)
            except websockets.ConnectionClosed:
                pass
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass
        self.record(close=(ws.close_code, ws.close_reason), path=path)

    def _run(self):
        async def main():
            srv = await websockets.serve(
                self.handler, "127.0.0.1", 0, subprotocols=["chat"],
                process_request=self.process_request, ssl=self.ssl_ctx)
            self.port = srv.sockets[0].getsockname()[1]
            self.ready.set()
            await asyncio.Future()
        asyncio.run(main())


class Proxy:
    """An HTTP CONNECT proxy that records the targets asked for."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.targets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(1)
            if not b:
                return
            head += b
        line = head.split(b"\r\n")[0].decode()
        auth = [l for l in head.split(b"\r\n")
                if l.lower().startswith(b"proxy-authorization:")]
        self.targets.append((line, auth))
        target = line.split()[1]
        host, port = target.rsplit(":", 1)
        if port == "1":
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            c.close()
            return
        up = socket.create_connection((host, int(port)), 5)
        up.settimeout(None)  # idle tunnels stay up
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((c, up), (up, c)):
            threading.Thread(target=self._pump, args=(a, b),
                             daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    b.shutdown(socket.SHUT_WR)
                    return
                b.sendall(d)
        except OSError:
            return


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what, why=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print("%s %s%s" % ("ok" if ok else "FAIL", what,
                           "" if ok else ": " + str(why)), flush=True)
        return ok


def run(cmd, stdin=b"", timeout=STEP):
    """Runs wscat to the end: (exit status, stdout bytes, stderr text)."""
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or b"", (e.stderr or b"").decode("utf-8",
                                                                "replace")
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def read_line(f, timeout):
    """One line from a pipe, or None after |timeout| seconds."""
    end, buf = time.monotonic() + timeout, b""
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0 or not select.select([f], [], [], left)[0]:
            return None
        b = os.read(f.fileno(), 1)
        if not b:
            return None
        buf += b
    return buf.decode("utf-8", "replace").rstrip("\n")


def wait_for(pred, timeout=STEP):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    return None


def cli_basics(t, w):
    rc, out, err = run([w, "--version"])
    t.check(rc == 0 and out.startswith(b"wscat (libws) ") and not err,
            "--version: exit 0, on stdout", (rc, out, err))
    for flag in ("--help", "-h"):
        rc, out, err = run([w, flag])
        t.check(rc == 0 and b"-c, --connect URL" in out and
                b"-x, --execute MESSAGE" in out and not err,
                "%s: exit 0, on stdout, npm's spellings" % flag, (rc, err))
    rc, out, err = run([w, "-c"])
    t.check(rc == 2 and err.startswith("wscat: -c needs URL"),
            "-c without a URL says so, exit 2", (rc, err))
    rc, out, err = run([w, "-c", "ws://127.0.0.1:1/", "-l", "1"])
    t.check(rc == 2 and "either -l/--listen or -c/--connect" in err,
            "-c and -l together: exit 2 with the reason", (rc, err))
    rc, out, err = run([w, "-c", "ws://127.0.0.1:1/", "-s", "a b"])
    t.check(rc == 2 and err.startswith("wscat: -s 'a b': a subprotocol is a "
                                       "token"),
            "-s with a space: exit 2 before connecting, says why", (rc, err))
    rc, out, err = run([w, "-l", "1", "-x", "a"])
    t.check(rc == 2 and "-x is for --connect only" in err,
            "-l with -x: exit 2 with the reason", (rc, err))


def errors(t, w):
    port = free_port()
    rc, out, err = run([w, "-c", "ws://127.0.0.1:%d/" % port])
    t.check(rc == 1 and err == "wscat: connect 127.0.0.1:%d: Connection "
            "refused\n" % port, "refused connection: exit 1, names the "
            "address", (rc, err))
    rc, out, err = run([w, "-c", "ws://:80/"])
    t.check(rc == 2 and err == "wscat: bad URL 'ws://:80/': need "
            "ws[s]://[USER:PASS@]HOST[:PORT][/PATH]\n",
            "bad URL: exit 2 with the exact text", (rc, err))
    rc, out, err = run([w, "-c", "ftp://example.org/"])
    t.check(rc == 2 and err == "wscat: ftp://example.org/: unsupported "
            "scheme 'ftp' (ws, wss, http or https)\n",
            "unsupported scheme: exit 2 with the exact text", (rc, err))
    host = "no-such-host.invalid"
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        want = None  # this machine resolves it: nothing to check
    except socket.gaierror as e:
        want = "wscat: resolve %s: %s\n" % (host, e.strerror)
    rc, out, err = run([w, "-c", "ws://%s/" % host])
    t.check(want is None or (rc == 1 and err == want),
            "unresolvable host: exit 1, %r" % want, (rc, err))


def talk(t, w, url):
    # Interactive over a pipe: each echo comes back raw, EOF closes 1000.
    p = subprocess.Popen([w, "-c", url], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in ("hello", "w\u00f6rld \u20ac"):
            p.stdin.write((line + "\n").encode())
            p.stdin.flush()
            got = read_line(p.stdout, STEP)
            t.check(got == line, "wscat -c URL over a pipe: %r echoed raw"
                    % line, got)
        p.stdin.close()
        rc = p.wait(STEP)
        err = p.stderr.read().decode()
        t.check(rc == 0 and "closed: 1000" in err,
                "end of stdin: close 1000, exit 0", (rc, err))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # wscat -c URL | head -1: once stdout is gone, close and exit.
    p = subprocess.Popen([w, "-c", url], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"first\n")
        p.stdin.flush()
        got = read_line(p.stdout, STEP)
        p.stdout.close()
        p.stdin.write(b"second\n")
        p.stdin.flush()
        rc = p.wait(STEP)
        err = p.stderr.read().decode()
        t.check(got == "first" and rc == 0 and "closed: 1000" in err,
                "stdout closed by its reader: close 1000, exit 0 (stdin "
                "still open)", (got, rc, err))
    except subprocess.TimeoutExpired:
        t.check(False, "stdout closed by its reader: wscat exits", "hangs")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rc, out, err = run([w, "-c", url, "-x", "hello", "-w", "1"])
    t.check(rc == 0 and out == b"hello\n", "-x hello -w 1: the echo, exit 0",
            (rc, out, err))
    rc, out, err = run([w, "-c", url + "close-after-2", "-x", "idle",
                        "-w", "6"])
    t.check(rc == 0 and out == b"idle\n" and "closed: 1000" in err,
            "-w 6: our close after 6 idle seconds (more than the close "
            "timeout) finishes, exit 0", (rc, out, err))
    rc, out, err = run([w, "-c", url + "close-after-2", "-x", "one", "-x",
                        "two", "-w", "15"])
    t.check(rc == 0 and out == b"one\ntwo\n", "-x repeated, in order",
            (rc, out, err))
    rc, out, err = run([w, "-c", url], stdin=b"hi\n")
    t.check(rc == 0 and out == b"hi\n",
            "echo hi | wscat -c URL: the reply after the end of stdin is "
            "printed", (rc, out, err))
    rc, out, err = run([w, "-c", url.replace("ws://", "") + "close-after-1",
                        "-w", "15"], stdin=b"x\n")
    t.check(rc == 0 and out == b"x\n", "a URL without ws:// (as npm)",
            (rc, out, err))


def slash(t, w, srv, url):
    once = url + "close-after-1"
    p = subprocess.Popen([w, "-c", url + "slash", "-P", "--slash"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"/ping abc\n")
        p.stdin.flush()
        got = read_line(p.stdout, STEP)
        t.check(got == 'Received pong (data: "abc")',
                "-P --slash: /ping abc, the pong shown as npm does", got)
        p.stdin.write(b"//not a command\n")
        p.stdin.flush()
        got = read_line(p.stdout, STEP)
        t.check(got == "/not a command", "//x sends /x", got)
        p.stdin.write(b"/close 4000 bye\n")
        p.stdin.flush()
        rc = p.wait(STEP)
        err = p.stderr.read().decode()
        t.check(rc == 0 and "closed: 4000 bye" in err,
                "/close 4000 bye: our close, exit 0", (rc, err))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    seen = wait_for(lambda: [s for s in srv.find("close")
                             if s["path"] == "/slash"], 10)
    t.check(seen and seen[-1]["close"] == (4000, "bye"),
            "the server saw close 4000 'bye'", seen)
    rc, out, err = run([w, "-c", once, "-x", "x", "-w", "15"])
    t.check(rc == 0 and b"Received" not in out,
            "pings and pongs are not printed without -P", out)


def request(t, w, srv, url):
    rc, out, err = run([w, "-c", url + "restart-once", "--reconnect", "-x",
                        "a", "-w", "15"])
    n = len([x for x in srv.seen if x.get("request") == "/restart-once"])
    t.check(rc == 0 and out == b"a\n" and "closed: 1012 restart" in err and
            "reconnecting in" in err and n == 2,
            "--reconnect: after a 1012 it connects again (jittered, at most "
            "0.5 s), and stops after the 1000 that follows", (rc, out, err, n))
    rc, out, err = run([w, "-c", url + "hdr", "-o", "http://a.example",
                        "-H", "X: y", "-s", "chat", "-w", "0.5"])
    seen = [s for s in srv.find("request") if s["request"] == "/hdr"]
    t.check(rc == 0 and seen and seen[-1]["origin"] == "http://a.example" and
            seen[-1]["x"] == "y" and seen[-1]["protocol"] == "chat" and
            "subprotocol chat" in err,
            "-o, -H, -s: the server sees Origin, X: y and chat",
            (rc, seen, err))
    rc, out, err = run([w, "-c", url + "hdr2", "--origin", "http://b.example",
                        "--header", "X: z", "--subprotocol", "chat",
                        "--host", "h.example:81", "-w", "0.5"])
    seen = [s for s in srv.find("request") if s["request"] == "/hdr2"]
    t.check(rc == 0 and seen and seen[-1]["origin"] == "http://b.example" and
            seen[-1]["x"] == "z" and seen[-1]["host"] == "h.example:81",
            "long spellings; --host is the Host header (as npm)", (rc, seen))
    rc, out, err = run([w, "-c", url + "hdr3", "--host", "h.example", "-w",
                        "0.5"])
    seen = [s for s in srv.find("request") if s["request"] == "/hdr3"]
    t.check(rc == 0 and seen and seen[-1]["host"] == "h.example",
            "--host without a port: Host exactly as given", (rc, seen))
    want = "Basic " + base64.b64encode(b"user:pa:ss").decode()
    for args, what in ((["--auth", "user:pa:ss", url + "auth1"], "--auth"),
                       ([url.replace("ws://", "ws://user:pa%3Ass@") + "auth2"],
                        "user:pass@ in the URL")):
        rc, out, err = run([w, "-w", "0.5"] + args[:-1] + ["-c", args[-1]])
        path = "/" + args[-1].rsplit("/", 1)[1]
        seen = [s for s in srv.find("request") if s["request"] == path]
        t.check(rc == 0 and seen and seen[-1]["auth"] == want,
                "%s: Authorization: %s" % (what, want), (rc, seen, err))


def output(t, w, srv, url):
    once = url + "close-after-1"
    # The acceptance pipe: wscat -c URL | python3 -c 'json.load'.
    a = subprocess.Popen([w, "-c", url + "json", "-w", "15"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    b = subprocess.Popen([sys.executable, "-c", "import json, sys; "
                          "print(json.load(sys.stdin)['nested']['a'])"],
                         stdin=a.stdout, stdout=subprocess.PIPE)
    a.stdout.close()
    try:
        got, _ = b.communicate(timeout=STEP)
        rc = a.wait(STEP)
    except subprocess.TimeoutExpired:
        a.kill(), b.kill()
        got, rc = b"", None
    t.check(rc == 0 and b.returncode == 0 and got == "b\u00e9\n".encode(),
            "wscat -c URL | json.load: a multi-line message whole, no "
            "prefix", (rc, b.returncode, got))
    rc, out, err = run([w, "--json", "-c", once, "-x", "a\nb\"", "-w", "15"])
    ev = []
    try:
        ev = [json.loads(l) for l in out.decode().splitlines()]
    except ValueError as e:
        ev = [str(e)]
    t.check(rc == 0 and len(ev) == 3 and ev[0]["event"] == "open" and
            ev[1] == {"event": "message", "type": "text", "data": "a\nb\""} and
            ev[2]["event"] == "close" and ev[2]["code"] == 1000,
            "--json: open, message, close, one object per line", (rc, ev))
    data = bytes(range(256)) * 3
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        rc, out, err = run([w, "-c", once, "--file", f.name, "-w", "15"])
    t.check(rc == 0 and out == data + b"\n",
            "--file: sent as one binary message, echoed raw", (rc, len(out)))
    rc, out, err = run([w, "-c", once, "--file", "/nonexistent/x"])
    t.check(rc == 2 and err == "wscat: --file /nonexistent/x: No such file "
            "or directory\n", "--file that is not there: exit 2 before "
            "connecting", (rc, err))
    rc, out, err = run([w, "-c", once, "--binary", "-x", "bin", "--json",
                        "-w", "15"])
    t.check(rc == 0 and b'"type":"binary","base64":"Ymlu"' in out,
            "--binary -x: a binary message (base64 in --json)", out)
    # A terminal: "< " before every line, colour unless --no-color.
    for extra, color in (([], True), (["--no-color"], False)):
        master, slave = pty.openpty()
        p = subprocess.Popen([w, "-c", once, "-x", "l1\nl2", "-w", "15"] +
                             extra, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=subprocess.DEVNULL)
        os.close(slave)
        buf = b""
        end = time.monotonic() + STEP
        while time.monotonic() < end:
            if not select.select([master], [], [], 1)[0]:
                if p.poll() is not None:
                    break
                continue
            try:
                d = os.read(master, 4096)
            except OSError:
                break
            if not d:
                break
            buf += d
        os.close(master)
        rc = p.wait(STEP)
        want = (b"\x1b[34m< l1\x1b[39m\r\n\x1b[34m< l2\x1b[39m\r\n" if color
                else b"< l1\r\n< l2\r\n")
        t.check(rc == 0 and buf == want, "on a terminal%s: %r" %
                (" " + extra[0] if extra else "", want), buf)


def listen(t, w):
    p = subprocess.Popen([w, "-l", "0"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = read_line(p.stderr, STEP) or ""
        port = int(line.split(":")[-1].rstrip("/")) if "listening" in line \
            else 0
        t.check(port > 0, "wscat -l 0: says where it listens", line)

        async def client():
            async with websockets.connect("ws://127.0.0.1:%d/" % port) as ws:
                await ws.send("hi from python")
                return await asyncio.wait_for(ws.recv(), STEP)
        box = {}
        th = threading.Thread(target=lambda: box.update(
            r=asyncio.run(client())), daemon=True)
        th.start()
        got = read_line(p.stdout, STEP)
        t.check(got == "hi from python", "wscat -l prints what arrives", got)
        p.stdin.write(b"hi from wscat\n")
        p.stdin.flush()
        th.join(STEP)
        t.check(box.get("r") == "hi from wscat",
                "wscat -l sends stdin lines to the client", box)

        # A client that stays, idle longer than the close timeout (5 s):
        # SIGINT still closes it with 1001 and a finished handshake.
        async def idle():
            async with websockets.connect("ws://127.0.0.1:%d/" % port) as ws:
                await ws.send("here")
                await asyncio.wait_for(ws.wait_closed(), 30)
                return ws.close_code
        th = threading.Thread(target=lambda: box.update(
            c=asyncio.run(idle())), daemon=True)
        th.start()
        got = read_line(p.stdout, STEP)
        time.sleep(6)
        p.send_signal(signal.SIGINT)
        th.join(STEP)
        rc = p.wait(STEP)
        err = p.stderr.read().decode()
        t.check(got == "here" and box.get("c") == 1001 and rc == 0 and
                "timed out" not in err, "wscat -l, SIGINT after 6 s idle: "
                "the client gets 1001, exit 0", (got, box, rc, err))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def redirects_and_proxy(t, w, srv, url):
    rc, out, err = run([w, "-c", url + "redirect", "-x", "r", "-w", "0.5"])
    t.check(rc == 1 and "HTTP 302" in err and "-L follows it" in err,
            "a 302 without -L: exit 1, says -L would follow", (rc, err))
    for path in ("redirect", "redirect-abs", "redirect-net"):
        rc, out, err = run([w, "-L", "-c", url + path, "-x", "r", "-w",
                            "15"])
        t.check(rc == 0 and out == b"r\n", "-L follows /%s" % path,
                (rc, out, err))
    rc, out, err = run([w, "-L", "--max-redirects", "0", "-c",
                        url + "redirect"])
    t.check(rc == 1 and "too many redirects" in err,
            "--max-redirects 0: exit 1", (rc, err))
    px = Proxy()
    rc, out, err = run([w, "--proxy", "http://u:p@127.0.0.1:%d" % px.port,
                        "-c", url + "close-after-1", "-x", "through",
                        "-w", "15"])
    target = "127.0.0.1:%d" % srv.port
    t.check(rc == 0 and out == b"through\n" and px.targets and
            px.targets[-1][0] == "CONNECT %s HTTP/1.1" % target and
            px.targets[-1][1] == [b"Proxy-Authorization: Basic dTpw"],
            "--proxy: CONNECT %s with Proxy-Authorization, then "
            "the echo" % target, (rc, out, err, px.targets))
    rc, out, err = run([w, "--proxy", "127.0.0.1:%d" % px.port, "-c",
                        "ws://127.0.0.1:1/"])
    t.check(rc == 1 and err == "wscat: connection failed: proxy "
            "127.0.0.1:%d refused CONNECT 127.0.0.1:1: HTTP/1.1 403 "
            "Forbidden\n" % px.port, "the proxy refuses: exit 1, its "
            "answer shown", (rc, err))
    px.ls.close()
    port = free_port()
    rc, out, err = run([w, "--proxy", "127.0.0.1:%d" % port, "-c", url])
    t.check(rc == 1 and err == "wscat: connect proxy 127.0.0.1:%d: "
            "Connection refused\n" % port,
            "the proxy is not there: exit 1, names the proxy", (rc, err))


def make_certs(d):
    """A CA, a server certificate for localhost and 127.0.0.1, and a client
    certificate, all signed by the CA (openssl, P-256)."""
    def ossl(*a):
        subprocess.run(("openssl",) + a, check=True, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    ossl("req", "-x509", *key, "-keyout", d + "/ca.key", "-out",
         d + "/ca.crt", "-days", "2", "-subj", "/CN=wscat test CA")
    for n, (name, ext) in enumerate((
            ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                       "extendedKeyUsage=serverAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"))):
        with open("%s/%s.ext" % (d, name), "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + ext)
        ossl("req", "-new", *key, "-keyout", "%s/%s.key" % (d, name),
             "-out", "%s/%s.csr" % (d, name), "-subj",
             "/CN=wscat test %s" % name)
        ossl("x509", "-req", "-in", "%s/%s.csr" % (d, name), "-CA",
             d + "/ca.crt", "-CAkey", d + "/ca.key", "-set_serial",
             str(100 + n), "-days", "2", "-out", "%s/%s.crt" % (d, name),
             "-extfile", "%s/%s.ext" % (d, name))


def passphrase(t, w, d, srv, ca):
    """An encrypted client key: --passphrase PASS, a wrong one, and
    --passphrase alone asking on the terminal (through script(1))."""
    subprocess.run(["openssl", "ec", "-in", d + "/client.key", "-aes128",
                    "-passout", "pass:s3cret", "-out", d + "/enc.key"],
                   check=True, capture_output=True, timeout=30)
    cmd = [w] + ca + ["--cert", d + "/client.crt", "--key", d + "/enc.key",
                      "-c", "wss://localhost:%d/close-after-1" % srv.port,
                      "-x", "pp", "-w", "15", "--passphrase"]
    rc, out, err = run(cmd + ["s3cret"])
    t.check(rc == 0 and out == b"pp\n", "--passphrase PASS opens an "
            "encrypted key", (rc, out, err))
    rc, out, err = run(cmd + ["wrong"])
    t.check(rc == 1 and err.startswith("wscat: key file %s/enc.key: " % d) and
            "password" in err, "a wrong passphrase: exit 1, names the key "
            "file", (rc, err))
    if not shutil.which("script"):
        return
    try:
        p = subprocess.run(["script", "-qec", shlex.join(cmd), "/dev/null"],
                           input=b"s3cret\n", capture_output=True,
                           timeout=STEP)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired:
        rc, out = None, b""
    t.check(rc == 0 and b"Passphrase: " in out and b"< pp" in out and
            out.count(b"s3cret") <= 1, "--passphrase alone asks on the "
            "terminal", (rc, out))


def tls(t, w):
    """wss:// with a client certificate, directly and through --proxy."""
    rc, out, err = run([w, "--ca", "/nonexistent", "-c",
                        "wss://127.0.0.1:1/"])
    if "not built in" in err or not shutil.which("openssl"):
        print("skip wss:// (no TLS in wscat, or no openssl)", flush=True)
        return
    d = tempfile.mkdtemp(prefix="wscat-cli-")
    try:
        make_certs(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d + "/server.crt", d + "/server.key")
        ctx.load_verify_locations(d + "/ca.crt")
        ctx.verify_mode = ssl.CERT_REQUIRED
        srv = Server(ctx)
        url = "wss://localhost:%d/" % srv.port
        ca = ["--ca", d + "/ca.crt"]
        cert = ["--cert", d + "/client.crt", "--key", d + "/client.key"]
        rc, out, err = run([w] + ca + cert + ["-c", url + "close-after-1",
                                              "-x", "tls", "-w", "15"])
        seen = [s for s in srv.find("request")
                if s["request"] == "/close-after-1"]
        t.check(rc == 0 and out == b"tls\n" and seen and
                seen[-1]["client"] == "wscat test client",
                "--cert/--key: the server sees the client certificate",
                (rc, out, err, seen))
        passphrase(t, w, d, srv, ca)
        rc, out, err = run([w] + ca + ["-c", url, "-x", "tls", "-w", "0.5"])
        t.check(rc == 1 and err.startswith("wscat: connection failed: "),
                "no client certificate: exit 1, says the connection failed",
                (rc, err))
        px = Proxy()
        rc, out, err = run([w, "--proxy", "127.0.0.1:%d" % px.port] + ca +
                           cert + ["-c", url + "close-after-1?proxy", "-x",
                                   "tunnel", "-w", "15", "--host", "x.test"])
        seen = [s for s in srv.find("request")
                if s["request"] == "/close-after-1?proxy"]
        t.check(rc == 0 and out == b"tunnel\n" and px.targets and
                px.targets[-1][0] == "CONNECT localhost:%d HTTP/1.1" %
                srv.port and seen and seen[-1]["host"] == "x.test",
                "--proxy with wss:// and --host: TLS inside the tunnel, the "
                "name checked is the server's, Host as given",
                (rc, out, err, px.targets, seen))
        px.ls.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wscat", required=True)
    args = ap.parse_args()
    w = args.wscat
    t = Checks()
    started = time.monotonic()
    try:
        srv = Server()
        url = "ws://127.0.0.1:%d/" % srv.port
        cli_basics(t, w)
        errors(t, w)
        talk(t, w, url)
        slash(t, w, srv, url)
        request(t, w, srv, url)
        output(t, w, srv, url)
        listen(t, w)
        redirects_and_proxy(t, w, srv, url)
        tls(t, w)
    except (RuntimeError, OSError, ValueError,
            subprocess.SubprocessError) as e:
        t.check(False, "setup", e)
    print("%d passed, %d failed (%.1f s)" % (t.passed, t.failed,
                                             time.monotonic() - started))
    return 1 if t.failed or not t.passed else 0


if __name__ == "__main__":
    sys.exit(main())
