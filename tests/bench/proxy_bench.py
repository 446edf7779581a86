#!/usr/bin/python3
"""CPU per relayed message: examples/ws-proxy in front of echo-server,
against echo-server alone, for 32 B and 16 KiB messages.

  proxy_bench.py --bindir BUILD/examples [--count 50000]

Then ws-proxy --threads 1 and 2 with four client processes at once:
relayed messages per second (wall) and the proxy's CPU per message.

A python3-websockets client keeps a window of messages in flight on one
connection (without deflate) and checks every echo; the CPU time of each
server process (utime + stime from /proc/PID/stat) over the run, divided
by the number of messages, is what is printed. The client's own speed
does not enter the figures. A benchmark (meson benchmark), not a test.
"""
import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "interop"))
from netutil import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def start(args, port):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("%s did not start" % args[0])


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def run(url, size, count, window=64):
    msg = os.urandom(size)
    async with websockets.connect(url, compression=None, max_size=None,
                                  max_queue=window * 2) as ws:
        sent = got = 0
        while got < count:
            while sent < count and sent - got < window:
                await ws.send(msg)
                sent += 1
            r = await ws.recv()
            assert r == msg
            got += 1


def measure(url, pids, size, count):
    before = [cpu_s(p) for p in pids]
    t0 = time.monotonic()
    asyncio.run(run(url, size, count))
    wall = time.monotonic() - t0
    return wall, [cpu_s(p) - b for p, b in zip(pids, before)]


def one_client(args):
    url, size, count = args
    asyncio.run(run(url, size, count, window=32))


def threads_run(bindir, eport, nthreads, clients, count):
    """relayed 32 B messages per second (wall) with ws-proxy --threads N,
    |clients| client processes at once; the proxy's CPU per message."""
    port = free_port()
    proxy = start([bindir + "/ws-proxy", "--listen", str(port),
                   "--upstream", "ws://127.0.0.1:%d" % eport, "--no-deflate",
                   "--access-log", "/dev/null", "--threads", str(nthreads)],
                  port)
    try:
        each = count // clients
        c0 = cpu_s(proxy.pid)
        t0 = time.monotonic()
        with multiprocessing.Pool(clients) as pool:
            pool.map(one_client, [("ws://127.0.0.1:%d/" % port, 32, each)] *
                     clients)
        wall = time.monotonic() - t0
        cpu = cpu_s(proxy.pid) - c0
    finally:
        proxy.terminate()
        proxy.wait(10)
    n = each * clients
    return n / wall, cpu / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--count", type=int, default=50000)
    args = ap.parse_args()
    eport, pport = free_port(), free_port()
    echo = start([args.bindir + "/echo-server", "--port", str(eport),
                  "--no-deflate"], eport)
    proxy = start([args.bindir + "/ws-proxy", "--listen", str(pport),
                   "--upstream", "ws://127.0.0.1:%d" % eport, "--no-deflate",
                   "--access-log", "/dev/null"], pport)
    try:
        print("%-8s %8s  %-28s %s" % ("size", "msgs", "echo-server alone",
                                       "through ws-proxy"))
        for size, count in ((32, args.count), (16384, args.count // 5)):
            w1, (e1,) = measure("ws://127.0.0.1:%d/" % eport, [echo.pid],
                                size, count)
            w2, (e2, p2) = measure("ws://127.0.0.1:%d/" % pport,
                                   [echo.pid, proxy.pid], size, count)
            print("%-8d %8d  echo %5.2f us/msg (%4.1f s)   proxy %5.2f us/msg"
                  " + echo %5.2f us/msg (%4.1f s): proxy / echo alone %.2f"
                  " (goal <= 2)" %
                  (size, count, e1 / count * 1e6, w1, p2 / count * 1e6,
                   e2 / count * 1e6, w2, p2 / e1 if e1 else 0.0))
        # --threads: one loop per thread on one SO_REUSEPORT port; the
        # clients, echo-server and the proxy share this machine's cores
        for n in (1, 2):
            rate, us = threads_run(args.bindir, eport, n, 4, args.count)
            print("ws-proxy --threads %d: %8.0f relayed 32 B msgs/s with 4 "
                  "clients, proxy %5.2f us CPU/msg (%d cores here)" %
                  (n, rate, us, os.cpu_count()))
    finally:
        for p in (proxy, echo):
            p.terminate()
            p.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
