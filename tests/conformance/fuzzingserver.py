#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A scripted stand-in for the Autobahn testsuite's fuzzingserver, to
conformance-test a WebSocket *client* (examples/autobahn-client).

It speaks the fuzzingserver's protocol: /getCaseCount answers the number
of cases as a text message, /runCase?case=N&agent=A plays case N, and
/updateReports?agent=A ends the run. The cases are those of autobahn.py
(groups 1-7 and 10), played from the server side: our frames are
unmasked, the client must echo every message, answer pings, fail the
connection with the exact close code, never send an unmasked or invalid
frame, and (RFC 6455 7.1.1) leave closing the TCP connection to us after
a clean close. Anything but the strict outcome fails the case.

Usage:
  fuzzingserver.py --client-cmd PATH [--cases PATTERNS]
      starts PATH --url ws://127.0.0.1:PORT --agent libws
"""

import argparse
import base64
import fnmatch
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import autobahn  # noqa: E402  (the shared cases and judge)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ACCEPT_WAIT = 15.0   # seconds for the client's next connection


def read_request(sock, deadline):
    """Reads the opening request; returns (path, query dict, rest bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        t = deadline - time.monotonic()
        if t <= 0 or len(buf) > 16384:
            raise RuntimeError("no complete request")
        sock.settimeout(t)
        data = sock.recv(4096)
        if not data:
            raise RuntimeError("client closed during the handshake")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        raise RuntimeError("bad request line %r" % lines[0])
    hdrs = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if not sep:
            raise RuntimeError("bad header line %r" % line)
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    def one(name):
        v = hdrs.get(name, [])
        if len(v) != 1:
            raise RuntimeError("need exactly one %s header" % name)
        return v[0]
    if one("upgrade").lower() != "websocket":
        raise RuntimeError("bad Upgrade")
    conn = [t.strip().lower() for t in one("connection").split(",")]
    if "upgrade" not in conn:
        raise RuntimeError("bad Connection")
    if one("sec-websocket-version") != "13":
        raise RuntimeError("bad Sec-WebSocket-Version")
    key = one("sec-websocket-key")
    if len(base64.b64decode(key, validate=True)) != 16:
        raise RuntimeError("bad Sec-WebSocket-Key")
    one("host")
    url = urllib.parse.urlsplit(parts[1])
    return url.path, dict(urllib.parse.parse_qsl(url.query)), key, rest


def accept_response(key):
    acc = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest())
    # No Sec-WebSocket-Extensions: permessage-deflate is declined, so the
    # client must run these cases uncompressed.
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
            % acc.decode()).encode()


def simple_exchange(c, text):
    """getCaseCount/updateReports: optionally send |text|, close with 1000,
    wait for the answer, then close the TCP connection."""
    if text is not None:
        c.send_raw(c.encode(autobahn.OP_TEXT, text.encode()))
    c.send_close(autobahn.close_payload(1000))
    c.read_until(c.closed_or_gone, c.deadline)
    if c.violation:
        return c.violation
    if not c.got_close or c.close_code != 1000:
        return "client did not answer the close with 1000"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--client-cmd", required=True)
    ap.add_argument("--agent", default="libws")
    ap.add_argument("--cases", default="*")
    ap.add_argument("--suite-timeout", type=float, default=540)
    args = ap.parse_args()
    pats = [p.strip() for p in args.cases.split(",") if p.strip()]
    cases = [c for c in autobahn.CASES
             if any(fnmatch.fnmatchcase(c.id, p) for p in pats)]
    if not cases:
        print("no case matches %r" % args.cases)
        return 2

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    port = ls.getsockname()[1]
    proc = subprocess.Popen([args.client_cmd, "--url",
                             "ws://127.0.0.1:%d" % port, "--agent", args.agent],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    end = time.monotonic() + args.suite_timeout
    results = {}
    problems = []
    reported = False
    try:
        while not reported and time.monotonic() < end:
            ls.settimeout(ACCEPT_WAIT)
            try:
                sock, _ = ls.accept()
            except socket.timeout:
                problems.append("the client made no connection for %.0f s"
                                % ACCEPT_WAIT)
                break
            deadline = time.monotonic() + autobahn.CASE_TIMEOUT
            c = autobahn.Conn(None, None, deadline, sock=sock)
            try:
                try:
                    path, query, key, rest = read_request(sock, deadline)
                except (RuntimeError, OSError, ValueError) as e:
                    problems.append("handshake: %s" % e)
                    continue
                c.buf += rest
                sock.sendall(accept_response(key))
                if path == "/getCaseCount":
                    why = simple_exchange(c, str(len(cases)))
                    if why:
                        problems.append("getCaseCount: " + why)
                elif path == "/updateReports":
                    if query.get("agent") != args.agent:
                        problems.append("updateReports without agent")
                    why = simple_exchange(c, None)
                    if why:
                        problems.append("updateReports: " + why)
                    reported = True
                elif path == "/runCase":
                    n = int(query.get("case", "0"))
                    if not 1 <= n <= len(cases) or n in results:
                        problems.append("bad or repeated case number %d" % n)
                        continue
                    if query.get("agent") != args.agent:
                        problems.append("runCase without agent")
                    case = cases[n - 1]
                    c.parse()
                    why = autobahn.drive_case(case, c, deadline)
                    results[n] = why
                    print("case %s %s" % (case.id, "OK" if why is None
                                          else "FAILED: " + why))
                    sys.stdout.flush()
                else:
                    problems.append("unknown path %r" % path)
            finally:
                c.close()
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
    missing = [cases[i - 1].id for i in range(1, len(cases) + 1)
               if i not in results]
    if missing:
        problems.append("cases never run: %s" % ", ".join(missing[:10]))
    if not reported:
        problems.append("updateReports was never called")
    for p in problems:
        print("problem: %s" % p)
    if problems:
        print("client output:\n" + out.decode("utf-8", "replace")[-4000:])
    passed = sum(1 for v in results.values() if v is None)
    failed = len(cases) - passed
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
