#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""wss:// interop with Debian's python3-websockets over Python's ssl
module (OpenSSL), on 127.0.0.1, bounded in time.

  tls.py --bindir BUILD/examples [--peer-dir DIR]

Certificates are made here with the openssl command, in a temporary
directory deleted at the end: a CA, a server certificate for
DNS:localhost and IP:127.0.0.1 (Python's ssl ignores the CN, and so does
mbedTLS when there is a SAN), one for DNS:wrong.example, and an unknown
CA.

1. The python client against our echo-server --tls-cert/--tls-key, with
   and without deflate, by name and by IP address.
2. Our wscat and autobahn-client against the python wss server, with and
   without deflate.
3. Verification: a wrong name, an unknown CA, and Debian's CA bundle (the
   default) make wscat fail with the reason and exit 1; --insecure warns
   and connects; autobahn-client fails too.
4. A plaintext client on the TLS port is dropped at once, a silent one
   after the handshake timeout, and a wss client is served meanwhile.
5. TLS records one byte at a time through a relay, both directions.
Prints each check and "N passed, N failed"; exits non-zero on a failure.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Checks, Proc  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def port_of(proc, prefix):
    """The port from "PORT n" or "echo-server listening on wss://H:n/"."""
    line = proc.wait_line(lambda l: l.startswith(prefix), 15)
    if line is None:
        raise RuntimeError("%s did not start: %s" % (proc.argv[0], proc.errs))
    if prefix == "PORT ":
        return int(line.split()[1])
    return int(line.split("://")[1].split("/")[0].rsplit(":", 1)[1])


def make_certs(d):
    def openssl(*args):
        subprocess.run(("openssl",) + args, check=True, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{d}/{ca}.key",
                "-out", f"{d}/{ca}.crt", "-days", "2",
                "-subj", f"/CN=libws interop {ca}")
    for i, (name, san) in enumerate((("server", "DNS:localhost,IP:127.0.0.1"),
                                     ("wrong", "DNS:wrong.example"))):
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-new", *ec, "-keyout", f"{d}/{name}.key",
                "-out", f"{d}/{name}.csr", "-subj", f"/CN=libws {name}")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt",
                "-CAkey", f"{d}/ca.key", "-set_serial", str(1000 + i),
                "-days", "2", "-out", f"{d}/{name}.crt",
                "-extfile", f"{d}/{name}.ext")


class Relay:
    """Forwards each TCP connection to |port| one byte per send(), with
    Nagle off and a pause between bytes, so each TLS record arrives split
    into single-byte reads."""

    def __init__(self, port, pause=0.0002):
        self.port, self.pause, self.bytes = port, pause, 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.lport = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.ls.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.port), 10)
            for s in (a, b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst),
                                 daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                for i in range(len(data)):
                    dst.sendall(data[i:i + 1])
                    self.bytes += 1
                    time.sleep(self.pause)
        except OSError:
            return

    def close(self):
        self.ls.close()


def wscat_lines(t, cmd, what, lines=("hello", "w\u00f6rld")):
    """Sends |lines| through wscat, expects them echoed, then EOF: exit 0."""
    w = Proc(cmd, stdin=True)
    for line in lines:
        w.send(line + "\n")
        got = w.wait_line(lambda l: True, 15)
        t.check(got == line, "%s: %r echoed" % (what, line),
                "got %r, %s" % (got, w.errs[-3:]))
    w.close_stdin()
    rc = w.wait(15)
    err = "\n".join(w.errs)
    t.check(rc == 0 and "closed: 1000" in err, "%s: closes 1000, exit 0" % what,
            "exit %s, %r" % (rc, err))
    return err


def wscat_fails(t, cmd, what, want):
    w = Proc(cmd, stdin=True)
    rc = w.wait(15)
    err = "\n".join(w.errs)
    t.check(rc == 1 and all(s in err for s in want),
            "%s: exit 1 and says %r" % (what, want), "exit %s, %r" % (rc, err))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--peer-dir",
                    default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    t = Checks()
    echo = os.path.join(args.bindir, "echo-server")
    wscat = os.path.join(args.bindir, "wscat")
    autobahn = os.path.join(args.bindir, "autobahn-client")
    peer = [PY, os.path.join(args.peer_dir, "tls_peer.py")]
    d = tempfile.mkdtemp(prefix="libws-tls-")
    procs = []
    started = time.monotonic()
    try:
        make_certs(d)
        ca, other = f"{d}/ca.crt", f"{d}/other-ca.crt"
        # 1 MiB messages and more: the Autobahn-sized limits
        srv = ["--tls-cert", f"{d}/server.crt", "--tls-key", f"{d}/server.key",
               "--autobahn"]

        # ---- 1. the python client against our echo-server
        for on in (True, False):
            es = Proc([echo, "--port", "0"] + srv +
                      ([] if on else ["--no-deflate"]))
            procs.append(es)
            port = port_of(es, "echo-server")
            for host in ("localhost", "127.0.0.1"):
                c = Proc(peer + ["client", "--url", "wss://%s:%d/" % (host, port),
                                 "--ca", ca] + (["--expect-deflate"] if on else []))
                rc = c.wait(60)
                fails = [l for l in c.lines if not l.startswith("ok")]
                t.check(rc == 0, "python client -> echo-server over wss://%s, "
                        "deflate %s: %s" % (host, "on" if on else "off",
                                            c.lines[-1] if c.lines else ""),
                        "exit %s %s %s" % (rc, fails[-5:], c.errs[-5:]))
            t.check(es.stop(signal.SIGINT) == 0, "echo-server (wss) exits 0 on "
                    "SIGINT")

        # ---- 2. our clients against the python wss server
        for on in (True, False):
            ps = Proc(peer + ["server", "--cert", f"{d}/server.crt", "--key",
                              f"{d}/server.key"] + ([] if on else ["--no-deflate"]))
            procs.append(ps)
            purl = "wss://%%s:%d/" % port_of(ps, "PORT ")
            flags = [] if on else ["--no-deflate"]
            err = wscat_lines(t, [wscat, "--ca", ca] + flags + [purl % "localhost"],
                              "wscat -> python wss server, deflate %s"
                              % ("on" if on else "off"))
            t.check(("permessage-deflate" in err) == on,
                    "wscat reports permessage-deflate: %s" % on, err)
            if on:
                wscat_lines(t, [wscat, "--ca", ca, purl % "127.0.0.1"],
                            "wscat -> wss://127.0.0.1 (IP address SAN)",
                            ("by address",))
                a = Proc([autobahn, "--url", (purl % "localhost").rstrip("/"),
                          "--ca", ca])
                rc = a.wait(30)
                t.check(rc == 0 and "case 1/1: closed 1000" in a.lines and
                        "reports updated for agent libws" in a.lines,
                        "autobahn-client over wss: a case and the reports",
                        "exit %s %s %s" % (rc, a.lines, a.errs))
                a = Proc([autobahn, "--url", (purl % "localhost").rstrip("/"),
                          "--ca", other])
                rc = a.wait(30)
                err = "\n".join(a.errs)
                t.check(rc == 1 and "certificate verification failed" in err,
                        "autobahn-client: an unknown CA fails, with the reason",
                        "exit %s %r" % (rc, err))

                # ---- 3. verification failures (same server)
                wscat_fails(t, [wscat, "--ca", other, purl % "localhost"],
                            "wscat, unknown CA",
                            ("connection failed: certificate verification "
                             "failed: The certificate is not correctly signed "
                             "by the trusted CA",))
                wscat_fails(t, [wscat, purl % "localhost"],
                            "wscat, Debian's CA bundle by default",
                            ("not correctly signed by the trusted CA",))
            ps.stop()

        ws = Proc(peer + ["server", "--cert", f"{d}/wrong.crt", "--key",
                          f"{d}/wrong.key"])
        procs.append(ws)
        wurl = "wss://localhost:%d/" % port_of(ws, "PORT ")
        wscat_fails(t, [wscat, "--ca", ca, wurl], "wscat, wrong host name",
                    ("connection failed: certificate verification failed: "
                     "The certificate Common Name (CN) does not match with the "
                     "expected CN (the name checked was \"localhost\")",))
        err = wscat_lines(t, [wscat, "--insecure", wurl],
                          "wscat --insecure, wrong host name", ("insecure",))
        t.check("WARNING: --insecure" in err and "NOT verified" in err,
                "wscat --insecure warns on stderr", err)
        ws.stop()

        # ---- 4. plaintext and silent clients on the TLS port. Two servers:
        # one with the default 10 s handshake timeout, where "at once" has
        # seconds of margin on a loaded machine, and one with 1 s for the
        # silent client (checked with wide margins on both sides).
        es = Proc([echo, "--port", "0"] + srv)
        procs.append(es)
        port = port_of(es, "echo-server")
        es1 = Proc([echo, "--port", "0", "--handshake-timeout", "1000"] + srv)
        procs.append(es1)
        port1 = port_of(es1, "echo-server")
        w = Proc([wscat, "--ca", ca, "wss://localhost:%d/" % port], stdin=True)
        procs.append(w)
        w.send("before\n")
        t.check(w.wait_line(lambda l: True, 15) == "before",
                "a wss client is served")
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        t0, got, end = time.monotonic(), b"", "EOF"
        s.settimeout(8)
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except (ConnectionResetError, socket.timeout) as e:
            end = type(e).__name__
        dt = time.monotonic() - t0
        t.check(dt < 5.0 and end != "TimeoutError" and not got.startswith(b"HTTP"),
                "a plaintext client on the TLS port is dropped at once "
                "(%.0f ms, %s after %d bytes)" % (dt * 1000, end, len(got)),
                "%.2f s, %s, %r" % (dt, end, got[:80]))
        s.close()
        silent = socket.create_connection(("127.0.0.1", port1), 5)
        silent.settimeout(20)
        t0 = time.monotonic()
        w.send("during\n")
        t.check(w.wait_line(lambda l: True, 20) == "during",
                "served while a silent client waits")
        try:
            end = silent.recv(1)
        except (ConnectionResetError, socket.timeout) as e:
            end = type(e).__name__
        dt = time.monotonic() - t0
        t.check(end == b"" and 0.9 < dt < 15.0,
                "a silent client is dropped after the handshake timeout "
                "(%.1f s)" % dt, "%r after %.1f s" % (end, dt))
        silent.close()
        w.send("after\n")
        t.check(w.wait_line(lambda l: True, 20) == "after",
                "the wss client is still served")
        w.close_stdin()
        t.check(w.wait(10) == 0, "and closes cleanly")

        es1.stop()
        # ---- 5. TLS records one byte at a time, both directions, to the
        # server with the default handshake timeout: ~1,850 bytes relayed
        # one by one take seconds on a loaded machine.
        r = Relay(port)
        c = Proc(peer + ["client", "--url", "wss://localhost:%d/" % r.lport,
                         "--ca", ca, "--expect-deflate", "--small"])
        rc = c.wait(60)
        t.check(rc == 0, "python client -> 1-byte relay -> echo-server "
                "(%d bytes relayed one by one)" % r.bytes,
                "exit %s %s %s" % (rc, c.lines[-5:], c.errs[-5:]))
        r.close()
        es.stop()
        ps = Proc(peer + ["server", "--cert", f"{d}/server.crt", "--key",
                          f"{d}/server.key"])
        procs.append(ps)
        r = Relay(port_of(ps, "PORT "))
        wscat_lines(t, [wscat, "--ca", ca, "wss://localhost:%d/" % r.lport],
                    "wscat -> 1-byte relay -> python wss server")
        # (a handshake's worth: ~2 KB, less since the client offers only
        # AEAD suites)
        t.check(r.bytes > 1500, "%d bytes relayed one by one" % r.bytes)
        r.close()
        ps.stop()
    except (RuntimeError, subprocess.SubprocessError, OSError,
            ValueError) as e:
        t.check(False, "setup", e)
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.kill()
                p.p.wait()
        shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed (%.1f s)" % (t.passed, t.failed,
                                             time.monotonic() - started))
    return 1 if t.failed or not t.passed else 0


if __name__ == "__main__":
    sys.exit(main())
