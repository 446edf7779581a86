#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Debian's python3-websockets (10.x, asyncio API) as the peer.

  peer.py server [--no-deflate]
      An echo server on 127.0.0.1 (port printed as "PORT n"). Text
      messages starting with "cmd:" are commands: cmd:frag (send a
      fragmented message), cmd:binary, cmd:ping:P (ping with P, then send
      "pong:P" once the pong came), cmd:close:CODE:REASON. The path
      /reject is refused with HTTP 403.
  peer.py client --url URL --small-url URL [--no-deflate] [--server-deflate]
      Checks our echo-server: every size from 0 B to 4 MiB as text and
      binary, fragmented messages, ping/pong, close codes both ways, 1007
      for invalid UTF-8 and 1009 over --max-message (at --small-url); with
      deflate, again with server_max_window_bits=9 and with
      server/client_no_context_takeover offered.
"""

import argparse
import asyncio
import http
import os
import sys

import websockets

TIMEOUT = 60


async def serve(args):
    async def handler(ws, path):
        try:
            async for m in ws:
                if isinstance(m, str) and m.startswith("cmd:"):
                    await command(ws, m)
                else:
                    await ws.send(m)
        except websockets.ConnectionClosed:
            pass

    async def command(ws, m):
        if m == "cmd:frag":
            await ws.send(["abc", "def", "ghi"])
        elif m == "cmd:binary":
            await ws.send(b"\x00\x01\x02\xff")
        elif m.startswith("cmd:ping:"):
            p = m[len("cmd:ping:"):]
            await asyncio.wait_for(await ws.ping(p.encode()), 10)
            await ws.send("pong:" + p)
        elif m.startswith("cmd:close:"):
            _, _, code, reason = m.split(":", 3)
            await ws.close(int(code), reason)

    async def process_request(path, headers):
        if path == "/reject":
            return http.HTTPStatus.FORBIDDEN, [], b"go away\n"
        return None

    comp = None if args.no_deflate else "deflate"
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                compression=comp,
                                process_request=process_request) as srv:
        port = srv.sockets[0].getsockname()[1]
        print("PORT %d" % port, flush=True)
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


def text_of(n):
    s = ("ab\u03bb\u20ac" * (n // 4 + 1))[:n]   # 1-, 2- and 3-byte chars
    return s


async def client(args):
    t = Checks()
    comp = None if args.no_deflate else "deflate"
    async with websockets.connect(args.url, max_size=None,
                                  compression=comp) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions") or ""
        want = args.server_deflate and not args.no_deflate
        t.check(("permessage-deflate" in ext) == want,
                "permessage-deflate negotiated: %s" % want, "got %r" % ext)
        for n in (0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 4 << 20):
            for kind in ("text", "binary"):
                m = text_of(n) if kind == "text" else os.urandom(n)
                await ws.send(m)
                r = await ws.recv()
                t.check(r == m, "%s %d echoed" % (kind, n),
                        "got %s of %d" % (type(r).__name__, len(r)))
        parts = ["frag-", "", "ment", "ed \u00e9"]
        await ws.send(parts)
        r = await ws.recv()
        t.check(r == "".join(parts), "fragmented text echoed whole", repr(r))
        bparts = [os.urandom(70000), os.urandom(3), b""]
        await ws.send(bparts)
        r = await ws.recv()
        t.check(r == b"".join(bparts), "fragmented binary echoed whole")
        waiter = await ws.ping(b"ping-payload")
        try:
            await asyncio.wait_for(waiter, 10)
            t.check(True, "ping answered by a pong with the same payload")
        except asyncio.TimeoutError:
            t.check(False, "ping answered", "no pong")
        await ws.close(4321, "done")
        # RFC 6455 5.5.1: the code is echoed; the reason need not be.
        t.check(ws.close_code == 4321, "our close 4321 echoed",
                "%s %r" % (ws.close_code, ws.close_reason))

    # RFC 7692 parameters asked for by the client: a 512-byte server
    # window (which zlib, python's compressor, cannot go below), and no
    # context takeover either way. Every size again, compressed.
    if args.server_deflate and not args.no_deflate:
        from websockets.extensions.permessage_deflate import \
            ClientPerMessageDeflateFactory as Pmd
        variants = [
            ("server_max_window_bits=9",
             Pmd(server_max_window_bits=9, client_max_window_bits=9)),
            ("server_no_context_takeover",
             Pmd(server_no_context_takeover=True,
                 client_no_context_takeover=True)),
        ]
        for what, factory in variants:
            async with websockets.connect(args.url, max_size=None,
                                          compression=None,
                                          extensions=[factory]) as ws:
                ext = ws.response_headers.get("Sec-WebSocket-Extensions") or ""
                t.check(what in ext, "negotiated %s" % what, "got %r" % ext)
                for n in (0, 1, 4096, 65537, 1 << 20, 4 << 20):
                    for kind in ("text", "binary"):
                        m = text_of(n) if kind == "text" else \
                            (os.urandom(n // 2) + b"z" * (n - n // 2))
                        await ws.send(m)
                        r = await ws.recv()
                        t.check(r == m, "%s: %s %d echoed" % (what, kind, n),
                                "got %s of %d" % (type(r).__name__, len(r)))

    # Invalid UTF-8 in a text frame: the server must fail with 1007.
    async with websockets.connect(args.url, compression=None) as ws:
        await ws.write_frame(True, 0x1, b"ok \xce\xba \xed\xa0\x80 bad")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            t.check(False, "invalid UTF-8 refused", "a message came back")
        except websockets.ConnectionClosed:
            t.check(ws.close_code == 1007, "invalid UTF-8: close 1007",
                    "close %s" % ws.close_code)

    # Over --max-message: 1009.
    async with websockets.connect(args.small_url, compression=None) as ws:
        await ws.send(b"x" * 1001)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            t.check(False, "too big refused", "a message came back")
        except websockets.ConnectionClosed:
            t.check(ws.close_code == 1009, "over max-message: close 1009",
                    "close %s" % ws.close_code)
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed or not t.passed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("server", "client"))
    ap.add_argument("--url")
    ap.add_argument("--small-url")
    ap.add_argument("--no-deflate", action="store_true")
    ap.add_argument("--server-deflate", action="store_true")
    args = ap.parse_args()
    if args.mode == "server":
        asyncio.run(serve(args))
        return 0
    return asyncio.run(asyncio.wait_for(client(args), TIMEOUT))


if __name__ == "__main__":
    sys.exit(main())
