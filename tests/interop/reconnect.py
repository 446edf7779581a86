#!/usr/bin/python3
"""A client that comes back (issue 14): wscat --reconnect (the loop's
ws_loop_connect_params.reconnect) against a real server that restarts
five times, then closes normally.

  reconnect.py --bindir BUILD/examples

The server is python3-websockets in this process: each restart closes
the listening socket, then the connection with 1012 "service restart",
and listens again on the same port 50 ms later. Checked:
  - wscat opens six times (the first connect and one after each restart)
    and reports each close as a reconnect with the exact code (1012, or
    1006 for an attempt made while the port was closed);
  - every delay it reports is inside the full-jitter bound: the n-th
    attempt in a row that did not stay up 10 s waits in [0, 500 * 2^n]
    ms, at most 30 s (ws_loop_reconnect's defaults as wscat sets them);
  - no attempt comes before its delay has passed (the next open is at
    least the delay after the reconnect line);
  - after a close with 1000 no attempt follows: wscat exits 0.
Every wait is bounded; the whole test takes ~5-20 s (the delays are
random).
"""
import argparse
import asyncio
import json
import os
import sys
import time

import websockets

from netutil import free_port

RESTARTS = 5
STEP = 60  # seconds, any single wait


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what, detail=None):
        if ok:
            self.passed += 1
            print("ok   " + what)
        else:
            self.failed += 1
            print("FAIL " + what + ("" if detail is None else ": %r" %
                                    (detail,)))


async def main_async(bindir):
    t = Checks()
    port = free_port()
    conns = []

    async def handler(ws, path=None):
        conns.append(ws)
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass

    def serve():
        return websockets.serve(handler, "127.0.0.1", port,
                                compression=None)

    server = await serve()
    proc = await asyncio.create_subprocess_exec(
        os.path.join(bindir, "wscat"), "-c", "ws://127.0.0.1:%d/" % port,
        "--reconnect", "--json", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    events = []  # (monotonic time the line arrived, the event)

    async def read_events():
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            try:
                events.append((time.monotonic(), json.loads(line)))
            except ValueError:
                events.append((time.monotonic(), {"raw": line}))

    reader = asyncio.ensure_future(read_events())

    def count(kind):
        return len([e for _, e in events if e.get("event") == kind])

    async def until(pred, what):
        end = time.monotonic() + STEP
        while not pred():
            if time.monotonic() > end:
                raise RuntimeError("timed out waiting for " + what)
            await asyncio.sleep(0.01)

    try:
        for i in range(RESTARTS):
            await until(lambda: count("open") == i + 1 and conns,
                        "open %d" % (i + 1))
            ws = conns.pop()
            # The listener closes first: wscat may come back at once (a
            # delay of 0 ms is inside the jitter), and a connection made
            # before the listener closed would get server.close()'s 1001.
            server.server.close()
            await ws.close(1012, "service restart")
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)
            server = await serve()
        await until(lambda: count("open") == RESTARTS + 1 and conns,
                    "the last open")
        await conns.pop().close(1000, "bye")
        rc = await asyncio.wait_for(proc.wait(), STEP)
        await asyncio.wait_for(reader, STEP)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()
    err = (await proc.stderr.read()).decode("utf-8", "replace")

    opens = [(at, e) for at, e in events if e.get("event") == "open"]
    recon = [(at, e) for at, e in events if e.get("event") == "reconnect"]
    t.check(len(opens) == RESTARTS + 1, "%d opens: the first and one after "
            "each of %d restarts" % (RESTARTS + 1, RESTARTS), len(opens))
    codes = [e.get("code") for _, e in recon]
    t.check(codes.count(1012) == RESTARTS and
            all(c in (1012, 1006) for c in codes),
            "each restart's 1012 reported as a reconnect (1006 for an "
            "attempt while the port was closed)", codes)
    # the n-th reconnect in a row (no connection stayed up 10 s here)
    ok = True
    for n, (_, e) in enumerate(recon):
        bound = min(500 * 2 ** n, 30000)
        print("  reconnect %d after close %d: %d ms (bound %d ms)" %
              (n + 1, e.get("code"), e.get("delay_ms"), bound))
        ok = ok and 0 <= e.get("delay_ms", -1) <= bound
    t.check(ok, "every delay inside its full-jitter bound "
            "(500 ms doubling, 30 s at most)")
    # each open after a reconnect line comes no earlier than its delay
    early = []
    for at, e in recon:
        nxt = [o for o, _ in opens if o > at]
        nat = [a for a, ev in events if a > at and
               ev.get("event") in ("open", "reconnect")]
        if nxt and nat and nat[0] == nxt[0]:
            gap = (nxt[0] - at) * 1000
            if gap + 20 < e["delay_ms"]:  # 20 ms: line timestamps
                early.append((e["delay_ms"], round(gap)))
    t.check(not early, "no attempt before its delay", early)
    t.check(rc == 0 and count("reconnect") == len(recon) and
            "reconnecting" not in err.splitlines()[-1],
            "after a 1000 close no attempt follows: exit 0",
            (rc, err[-300:]))
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    args = ap.parse_args()
    try:
        return asyncio.run(asyncio.wait_for(main_async(args.bindir), 240))
    except (RuntimeError, OSError, asyncio.TimeoutError) as e:
        print("FAIL setup: %s" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
