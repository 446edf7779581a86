#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Debian's python3-websockets (10.x) over Python's ssl module, as the wss
peer of tls.py.

  tls_peer.py server --cert F --key F [--no-deflate]
      A wss echo server on 127.0.0.1 (port printed as "PORT n"). It also
      plays a tiny Autobahn fuzzingserver for examples/autobahn-client:
      /getCaseCount answers "1", /runCase sends a text and a binary
      message, expects them echoed and closes with 1000 (4000 if the echo
      was wrong), /updateReports closes.
  tls_peer.py client --url URL --ca F [--no-deflate] [--expect-deflate]
                     [--small]
      Checks a wss echo server (ours): sizes 0 B to 1 MiB (--small: to
      126 B) as text and binary, a fragmented message, ping/pong, close
      1000. Prints "N passed, N failed".
"""

import argparse
import asyncio
import os
import ssl
import sys

import websockets

TIMEOUT = 60


async def serve(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    async def handler(ws, path):
        try:
            if path.startswith("/getCaseCount"):
                await ws.send("1")
                await ws.close(1000)
            elif path.startswith("/runCase"):
                await ws.send("case text \u00e9")
                await ws.send(b"\x00\x01\xfe\xff")
                a = await asyncio.wait_for(ws.recv(), 10)
                b = await asyncio.wait_for(ws.recv(), 10)
                ok = a == "case text \u00e9" and b == b"\x00\x01\xfe\xff"
                await ws.close(1000 if ok else 4000)
            elif path.startswith("/updateReports"):
                await ws.close(1000)
            else:
                async for m in ws:
                    await ws.send(m)
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            pass

    comp = None if args.no_deflate else "deflate"
    async with websockets.serve(handler, "127.0.0.1", 0, ssl=ctx,
                                max_size=None, compression=comp) as srv:
        print("PORT %d" % srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(TIMEOUT * 5)   # the test kills us sooner


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what, why=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print("%s %s%s" % ("ok" if ok else "FAIL", what,
                           "" if ok else ": " + why), flush=True)


async def client(args):
    t = Checks()
    ctx = ssl.create_default_context(cafile=args.ca)   # verifies the name
    comp = None if args.no_deflate else "deflate"
    async with websockets.connect(args.url, ssl=ctx, max_size=None,
                                  compression=comp) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions") or ""
        t.check(("permessage-deflate" in ext) == args.expect_deflate,
                "permessage-deflate negotiated: %s" % args.expect_deflate,
                "got %r" % ext)
        t.check(ws.transport.get_extra_info("ssl_object").version()
                in ("TLSv1.2", "TLSv1.3"), "TLS 1.2 or later")
        sizes = (0, 1, 125, 126, 16384, 65536, 1 << 20)
        for n in sizes[:4] if args.small else sizes:
            for kind in ("text", "binary"):
                m = ("ab\u03bb\u20ac" * (n // 4 + 1))[:n] if kind == "text" \
                    else os.urandom(n)
                await ws.send(m)
                r = await ws.recv()
                t.check(r == m, "%s %d echoed over wss" % (kind, n),
                        "got %s of %d" % (type(r).__name__, len(r)))
        parts = ["frag", "ment", "ed"]
        await ws.send(parts)
        t.check(await ws.recv() == "fragmented", "fragmented text echoed")
        try:
            await asyncio.wait_for(await ws.ping(b"tls"), 10)
            t.check(True, "ping answered")
        except asyncio.TimeoutError:
            t.check(False, "ping answered", "no pong")
        await ws.close(1000, "bye")
        t.check(ws.close_code == 1000, "close 1000 echoed",
                "%s" % ws.close_code)
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed or not t.passed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("server", "client"))
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--url")
    ap.add_argument("--ca")
    ap.add_argument("--no-deflate", action="store_true")
    ap.add_argument("--expect-deflate", action="store_true")
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    if args.mode == "server":
        asyncio.run(serve(args))
        return 0
    return asyncio.run(asyncio.wait_for(client(args), TIMEOUT))


if __name__ == "__main__":
    sys.exit(main())
