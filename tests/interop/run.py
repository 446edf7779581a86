#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Interop against peers nobody here wrote, on 127.0.0.1, bounded in time.

  run.py --peer python|node --deflate on|off --bindir BUILD/examples
         --ws-peer PATH [--peer-dir DIR]

1. The peer's client (peer.py / peer.js) against our echo-server (and a
   second one with --max-message 1000 for the 1009 check).
2. Our clients against the peer's server: ws_peer (every size, fragments,
   ping, close codes) and wscat (lines, binary as hex, fragments, a
   server close code and its exit status, a 403 handshake and its exit
   status; with node also --ping; with python also wscat -l).
Prints each check and "N passed, N failed"; exits non-zero on a failure.
"""

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time

STEP_TIMEOUT = 30.0


class Proc:
    """A child whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv, stdin=False, env=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  stdin=subprocess.PIPE if stdin
                                  else subprocess.DEVNULL, env=env)
        self.out = queue.Queue()
        self.lines, self.errs = [], []
        self.pumps = []
        for f, sink in ((self.p.stdout, self.lines), (self.p.stderr, self.errs)):
            th = threading.Thread(target=self._pump, args=(f, sink),
                                  daemon=True)
            th.start()
            self.pumps.append(th)

    def _pump(self, f, sink):
        for raw in iter(f.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink.append(line)
            if sink is self.lines:
                self.out.put(line)

    def wait_line(self, pred, timeout=STEP_TIMEOUT):
        end = time.monotonic() + timeout
        while True:
            t = end - time.monotonic()
            if t <= 0:
                return None
            try:
                line = self.out.get(timeout=t)
            except queue.Empty:
                return None
            if pred(line):
                return line

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def close_stdin(self):
        self.p.stdin.close()

    def wait(self, timeout=STEP_TIMEOUT):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            rc = None
        for th in self.pumps:   # everything it printed is in by now
            th.join(5)
        return rc

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.wait(10)


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


def port_of(proc, prefix):
    line = proc.wait_line(lambda l: l.startswith(prefix), 15)
    if line is None:
        raise RuntimeError("%s did not start: %s" % (proc.argv[0], proc.errs))
    if prefix == "PORT ":
        return int(line.split()[1])
    # "echo-server listening on ws://127.0.0.1:PORT/ ..."
    return int(line.split("ws://")[1].split("/")[0].rsplit(":", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", choices=("python", "node"), required=True)
    ap.add_argument("--deflate", choices=("on", "off"), required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--ws-peer", required=True)
    ap.add_argument("--peer-dir", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    on = args.deflate == "on"
    t = Checks()
    env = dict(os.environ)
    if args.peer == "python":
        peer = ["/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                else sys.executable, os.path.join(args.peer_dir, "peer.py")]
    else:
        peer = ["node", os.path.join(args.peer_dir, "peer.js")]
        # Debian's node modules (node-ws) live here
        env["NODE_PATH"] = ":".join(p for p in (env.get("NODE_PATH"),
                                                "/usr/share/nodejs",
                                                "/usr/lib/nodejs") if p)
    echo = os.path.join(args.bindir, "echo-server")
    wscat = os.path.join(args.bindir, "wscat")
    procs = []
    try:
        # ---- 1. the peer's client against our echo-server
        # up to 4 MiB messages: the Autobahn-sized limits
        es = Proc([echo, "--port", "0", "--autobahn"] +
                  ([] if on else ["--no-deflate"]))
        small = Proc([echo, "--port", "0", "--no-deflate", "--max-message",
                      "1000"])
        procs += [es, small]
        url = "ws://127.0.0.1:%d/" % port_of(es, "echo-server")
        surl = "ws://127.0.0.1:%d/" % port_of(small, "echo-server")
        # With deflate off the peer still offers it: the server declines.
        c = Proc(peer + ["client", "--url", url, "--small-url", surl] +
                 (["--server-deflate"] if on else []), env=env)
        rc = c.wait(90)
        for line in c.lines:
            print("  peer client: " + line)
        t.check(rc == 0, "%s client against echo-server" % args.peer,
                "exit %s %s" % (rc, c.errs[-5:]))
        t.check(es.p.poll() is None, "echo-server still up afterwards")
        t.check(es.stop(signal.SIGINT) == 0, "echo-server exits 0 on SIGINT")
        small.stop()

        # ---- 2. our clients against the peer's server
        ps = Proc(peer + ["server"] + ([] if on else ["--no-deflate"]), env=env)
        procs.append(ps)
        purl = "ws://127.0.0.1:%d" % port_of(ps, "PORT ")
        wp = Proc([args.ws_peer, "--url", purl + "/",
                   "--deflate" if on else "--no-deflate"])
        rc = wp.wait(90)
        for line in wp.lines:
            print("  ws_peer: " + line)
        t.check(rc == 0, "ws_peer against the %s server" % args.peer,
                "exit %s" % rc)

        # wscat: lines out, echoes and server traffic in, clean exit. Its
        # stdout is a pipe here, so messages come raw (binary as its bytes).
        flags = [] if on else ["--no-deflate"]
        w = Proc([wscat] + flags + [purl + "/"], stdin=True)
        for line, want in (("hello", "hello"),
                           ("w\u00f6rld \u20ac", "w\u00f6rld \u20ac"),
                           ("cmd:binary", "\x00\x01\x02\ufffd"),
                           ("cmd:frag", "abcdefghi")):
            w.send(line + "\n")
            got = w.wait_line(lambda l: True, 10)
            t.check(got == want, "wscat: %r -> %r" % (line, want), "got %r" % got)
        w.close_stdin()
        rc = w.wait(10)
        err = "\n".join(w.errs)
        t.check(rc == 0 and "closed: 1000" in err, "wscat: stdin EOF closes "
                "with 1000, exit 0", "exit %s, %r" % (rc, err))
        t.check(("permessage-deflate" in err) == on,
                "wscat: reports permessage-deflate: %s" % on, err)

        w = Proc([wscat] + flags + [purl + "/"], stdin=True)
        w.send("cmd:close:4001:bye\n")
        rc = w.wait(10)
        err = "\n".join(w.errs)
        t.check(rc == 3 and "closed: 4001 bye" in err,
                "wscat: server close 4001 -> message, exit 3",
                "exit %s, %r" % (rc, err))

        w = Proc([wscat, purl + "/reject"], stdin=True)
        rc = w.wait(10)
        err = "\n".join(w.errs)
        t.check(rc == 1 and "HTTP 403" in err,
                "wscat: handshake 403 -> message, exit 1",
                "exit %s, %r" % (rc, err))

        if args.peer == "node":
            w = Proc([wscat, "--ping", "1", purl + "/report-pings"],
                     stdin=True)
            got = w.wait_line(lambda l: l == "got-ping", 5)
            t.check(got is not None, "wscat --ping 1: the server saw a ping")
            w.close_stdin()
            w.wait(10)
        ps.stop()

        if args.peer == "python":
            # wscat -l: a python client talks to it both ways.
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            lport = s.getsockname()[1]
            s.close()
            w = Proc([wscat] + flags + ["-l", str(lport)], stdin=True)
            procs.append(w)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                    "listening" in e for e in w.errs):
                time.sleep(0.05)
            code = ("import asyncio, websockets\n"
                    "async def m():\n"
                    "  async with websockets.connect('ws://127.0.0.1:%d/') as ws:\n"
                    "    await ws.send('hi from python')\n"
                    "    print(await asyncio.wait_for(ws.recv(), 10), flush=True)\n"
                    "asyncio.run(m())\n" % lport)
            pc = Proc(peer[:1] + ["-c", code], env=env)
            got = w.wait_line(lambda l: True, 10)
            t.check(got == "hi from python", "wscat -l prints what arrives",
                    got)
            w.send("hi from wscat\n")
            rc = pc.wait(15)
            t.check(rc == 0 and pc.lines == ["hi from wscat"],
                    "wscat -l sends stdin lines", "%s %s %s" % (rc, pc.lines,
                                                                pc.errs[-3:]))
            t.check(w.stop(signal.SIGINT) == 0, "wscat -l exits 0 on SIGINT")
    except RuntimeError as e:
        t.check(False, "setup", e)
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.kill()
                p.p.wait()
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed or not t.passed else 0


if __name__ == "__main__":
    sys.exit(main())
