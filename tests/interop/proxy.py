#!/usr/bin/python3
"""examples/ws-proxy against python3-websockets clients and upstreams.

  proxy.py --bindir BUILD/examples [--large MIB] [--only NAME,...]

Upstreams: examples/echo-server, and a python3-websockets server whose
path says what to do (refuse 403, close 4001, abort the TCP connection,
echo the request headers, record how the client side closed). Everything
on 127.0.0.1, every step bounded in time.
"""
import argparse
import asyncio
import http
import json
import os
import shutil
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import websockets

from netutil import free_port

TIMEOUT = 20
RESULTS = {}  # upstream-side records, by path


def wait_port(port, proc, secs=10):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("process exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


# Under AddressSanitizer (stage b) memory holds redzones and a quarantine:
# the RSS bounds are checked only in plain builds.
UNDER_ASAN = "ASAN_OPTIONS" in os.environ


class Proc:
    def __init__(self, args, port, ready=None, **kw):
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if ready
                                  else subprocess.DEVNULL, **kw)
        if ready:  # the program's own start-up line, not just the port
            end = time.monotonic() + 30
            while time.monotonic() < end:
                r, _, _ = select.select([self.p.stdout], [], [], 1)
                line = self.p.stdout.readline() if r else b""
                if ready.encode() in line:
                    break
            self.p.stdout.close()
        wait_port(port, self.p)

    def rss_kib(self, field="VmRSS"):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


# ---- the python upstream -------------------------------------------------

def process_request(path, headers):
    if path.startswith("/deny"):
        return (http.HTTPStatus.FORBIDDEN, [("X-Why", "denied")], b"no\n")
    return None


def upstream_headers(path, headers):
    """/cookie: end-to-end headers in the 101, for the proxy to pass on"""
    if path.startswith("/cookie"):
        return [("Set-Cookie", "sid=1; Path=/"),
                ("Set-Cookie", "theme=dark"), ("X-Origin", "a"),
                ("Keep-Alive", "timeout=5")]  # hop-by-hop: not passed on
    return []


async def upstream_handler(ws, path):
    rec = RESULTS.setdefault(path.split("?")[0], {})
    rec["headers"] = dict(ws.request_headers.raw_items())
    rec["path"] = path
    try:
        if path.startswith("/close4001"):
            await ws.recv()
            await ws.close(4001, "upstream says bye")
        elif path.startswith("/abort"):
            await ws.send("first")
            await asyncio.sleep(0.2)
            ws.transport.abort()
        elif path.startswith("/headers"):
            await ws.send(json.dumps(rec["headers"]))
            await ws.recv()
        elif path.startswith("/flood"):
            sent = 0
            chunk = os.urandom(65536)  # incompressible
            rec["sent"] = 0
            while True:
                await ws.send(chunk)
                sent += len(chunk)
                rec["sent"] = sent
        else:
            async for msg in ws:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    rec["code"] = ws.close_code
    rec["reason"] = ws.close_reason
    rec.setdefault("closed", asyncio.get_running_loop().time())


async def silent_server(reader, writer):  # accepts TCP, never answers
    await asyncio.sleep(60)


# ---- helpers --------------------------------------------------------------

def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=5) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = int(v)
        return out


async def expect_status(url, status):
    try:
        async with websockets.connect(url, open_timeout=TIMEOUT):
            pass
    except websockets.InvalidStatusCode as e:
        assert e.status_code == status, (url, e.status_code, status)
        return
    raise AssertionError("%s: connected, expected %d" % (url, status))


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError("%s: %s" % (name, detail))


# ---- the tests ------------------------------------------------------------

async def t_echo(env):
    """text, binary, fragmented, with and without deflate on the client"""
    for comp in ("deflate", None):
        async with websockets.connect(env.url("/echo"), compression=comp,
                                      max_size=None) as ws:
            await ws.send("héllo")
            check("text", await ws.recv() == "héllo")
            data = os.urandom(300000)
            await ws.send(data)
            check("binary", await ws.recv() == data)
            await ws.send(["frag", "mented ", "text"])
            check("fragmented", await ws.recv() == "fragmented text")
            big = b"abc" * 200000  # compresses well
            await ws.send(big)
            check("compressible", await ws.recv() == big)
            await ws.send("")
            check("empty", await ws.recv() == "")


async def t_subprotocol_headers(env):
    """path, query, subprotocol, Cookie, Authorization, X-Forwarded-For"""
    async with websockets.connect(
            env.py_url("/headers/x?a=1&b=2"), subprotocols=["x", "chat"],
            extra_headers={"Cookie": "sid=42", "Authorization": "Bearer t",
                           "X-Forwarded-For": "10.0.0.1",
                           "X-Custom": "yes"}) as ws:
        check("subprotocol", ws.subprotocol == "chat", ws.subprotocol)
        h = {k.lower(): v for k, v in json.loads(await ws.recv()).items()}
        check("cookie", h.get("cookie") == "sid=42", h)
        check("authorization", h.get("authorization") == "Bearer t", h)
        check("custom", h.get("x-custom") == "yes", h)
        check("xff", h.get("x-forwarded-for") == "10.0.0.1, 127.0.0.1", h)
        check("forwarded", h.get("forwarded", "").startswith(
            "for=127.0.0.1;proto=http"), h)
        await ws.send("done")
    rec = RESULTS["/headers/x"]
    check("query", rec["path"] == "/headers/x?a=1&b=2", rec["path"])


async def t_response_headers(env):
    """the upstream's Set-Cookie and other end-to-end 101 headers reach
    the client; hop-by-hop ones do not"""
    async with websockets.connect(env.py_url("/cookie"),
                                  subprotocols=["chat"]) as ws:
        h = ws.response_headers
        check("set-cookie", h.get_all("Set-Cookie") ==
              ["sid=1; Path=/", "theme=dark"], h.raw_items())
        check("x-origin", h.get("X-Origin") == "a", h.raw_items())
        check("keep-alive", "Keep-Alive" not in h, h.raw_items())
        check("one accept", len(h.get_all("Sec-WebSocket-Accept")) == 1,
              h.raw_items())
        check("subprotocol", ws.subprotocol == "chat", ws.subprotocol)
        await ws.send("x")
        check("echo", await ws.recv() == "x")


async def t_statuses(env):
    """403 passes through; dead upstream 502; silent upstream 504"""
    await expect_status(env.py_url("/deny"), 403)
    await expect_status(env.dead_url("/"), 502)
    t0 = time.monotonic()
    await expect_status(env.silent_url("/"), 504)
    check("504 in time", time.monotonic() - t0 < 5)


async def t_close_codes(env):
    """a client's 4002 reaches the upstream; the upstream's 4001 the client"""
    async with websockets.connect(env.py_url("/close4001")) as ws:
        await ws.send("x")
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        except websockets.ConnectionClosed:
            pass
        check("4001", ws.close_code == 4001 and
              ws.close_reason == "upstream says bye",
              (ws.close_code, ws.close_reason))
    async with websockets.connect(env.py_url("/echo-c")) as ws:
        await ws.send("x")
        await ws.recv()
        await ws.close(4002, "client says bye")
    await wait_for(lambda: "code" in RESULTS.get("/echo-c", {}))
    rec = RESULTS["/echo-c"]
    check("4002", (rec["code"], rec["reason"]) == (4002, "client says bye"),
          rec)


async def t_close_order(env):
    """messages then a close at once: the client gets every echo before
    the proxy answers its close, and its own code back (with and without
    deflate on the client side)"""
    big = os.urandom(256 * 1024)
    for comp in ("deflate", None):
        ws = await websockets.connect(env.url("/order"), compression=comp,
                                      max_size=None)
        await ws.send(big)
        await ws.send("hw")
        await ws.close(4003, "in order")
        got = []
        while True:
            try:
                got.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            except websockets.ConnectionClosed:
                break
        check("order echoes", got == [big, "hw"], [len(x) for x in got])
        check("order code", (ws.close_code, ws.close_reason) ==
              (4003, "in order"), (ws.close_code, ws.close_reason))


async def wait_for(cond, secs=TIMEOUT):
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def t_vanish(env):
    """upstream aborted -> client 1014; client reset -> upstream 1001"""
    async with websockets.connect(env.py_url("/abort")) as ws:
        check("first", await ws.recv() == "first")
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        check("1014", ws.close_code in (1014, 1011), ws.close_code)
        check("1014 soon", time.monotonic() - t0 < 4)
    ws = await websockets.connect(env.py_url("/echo-reset"))
    await ws.send("x")
    await ws.recv()
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    ws.transport.abort()
    await wait_for(lambda: "code" in RESULTS.get("/echo-reset", {}), 10)
    check("1001", RESULTS["/echo-reset"]["code"] == 1001,
          RESULTS["/echo-reset"])


def raw_client(port, path):
    """A client socket that completes the handshake and then reads only
    when told: the one that does not read."""
    s = socket.create_connection(("127.0.0.1", port), TIMEOUT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: "
               "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
               "\r\n\r\n" % path).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


async def t_backpressure(env):
    """a client that does not read stops the upstream, in bounded memory"""
    before = env.proxy.rss_kib()
    loop = asyncio.get_running_loop()
    port = int(env.py_url("").rsplit(":", 1)[1])
    s = await loop.run_in_executor(None, raw_client, port, "/flood")
    try:
        await backpressure_checks(env, loop, s, before)
    finally:
        s.close()  # also when a check failed: the next tests need quiet


async def backpressure_checks(env, loop, s, before):
    await asyncio.sleep(3)
    sent1 = RESULTS["/flood"]["sent"]
    await asyncio.sleep(1)
    sent2 = RESULTS["/flood"]["sent"]
    grew = env.proxy.rss_kib() - before
    print("backpressure: upstream sent %.1f MiB, then %d bytes more in 1 s; "
          "proxy RSS +%d KiB" % (sent1 / 2**20, sent2 - sent1, grew))
    check("upstream stopped", sent2 == sent1 and sent1 < 64 << 20,
          (sent1, sent2))
    check("bounded memory", UNDER_ASAN or grew < 16 << 10, grew)

    def drain():  # now read: the flood goes on
        got = 0
        while got < sent2 + (8 << 20):
            b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
        s.close()
        return got
    got = await loop.run_in_executor(None, drain)
    check("flows again", got >= sent2 + (8 << 20), (got, sent2))


async def t_large(env, mib):
    """a large message through the proxy, RSS growth printed (without
    deflate: compressing a GiB at level 6, echo-server would not answer
    the proxy's pings in time on a busy machine, and the point here is
    the relay's memory)"""
    base = env.large_proxy.rss_kib()
    chunk = os.urandom(1 << 20)

    async def frags():
        for _ in range(mib):
            yield chunk

    t0 = time.monotonic()
    async with websockets.connect(env.large_url("/large"), max_size=None,
                                  compression=None, close_timeout=60) as ws:
        await ws.send(frags())
        echo = await asyncio.wait_for(ws.recv(), 600)
        check("large", len(echo) == mib << 20 and echo[:1 << 20] == chunk)
        del echo
    peak = env.large_proxy.rss_kib("VmHWM")
    print("large: %d MiB each way in %.1f s; proxy RSS %d KiB before, peak "
          "%d KiB (+%d KiB)" % (mib, time.monotonic() - t0, base, peak,
                                peak - base))
    check("RSS", UNDER_ASAN or peak - base < 8 << 10, peak - base)


async def t_metrics_log(env):
    """/metrics and the access log after a scripted session"""
    m0 = metrics(env.admin)
    async with websockets.connect(env.py_url("/echo-m?q=1"),
                                  compression=None) as ws:
        for s in ("a", "bb", "ccc"):
            await ws.send(s)
            await ws.recv()
        await ws.close(1000, "done")
    await expect_status(env.py_url("/deny"), 403)

    def settled():
        m = metrics(env.admin)
        return m["wsproxy_connections_open"] == 0 and m.get(
            'wsproxy_upgrades_refused_total{status="403"}', 0) > m0.get(
            'wsproxy_upgrades_refused_total{status="403"}', 0)
    await wait_for(settled)
    m1 = metrics(env.admin)

    def d(k):
        return m1.get(k, 0) - m0.get(k, 0)
    want = {
        "wsproxy_upgrades_accepted_total": 1,
        'wsproxy_upgrades_refused_total{status="403"}': 1,
        'wsproxy_messages_total{direction="to_client"}': 3,
        'wsproxy_messages_total{direction="to_upstream"}': 3,
        'wsproxy_payload_bytes_total{direction="to_client"}': 6,
        'wsproxy_payload_bytes_total{direction="to_upstream"}': 6,
        'wsproxy_closes_total{side="client",code="1000"}': 1,
        'wsproxy_closes_total{side="upstream",code="1000"}': 1,
    }
    for k, v in want.items():
        check("metrics " + k, d(k) == v, (d(k), v))
    check("open", m1["wsproxy_connections_open"] == 0)
    await asyncio.sleep(0.2)
    with open(env.log) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    mine = [x for x in lines if x["path"] == "/echo-m?q=1"]
    check("log line", len(mine) == 1, mine)
    x = mine[0]
    for k, v in {"status": 101, "msgs_to_upstream": 3, "bytes_to_upstream": 6,
                 "msgs_to_client": 3, "bytes_to_client": 6,
                 "first": "client", "upstream": env.py_upstream}.items():
        check("log " + k, x[k] == v, (k, x[k], v))
    check("log close", x["client_close"]["code"] == 1000 and
          x["client_close"]["reason"] == "done" and
          x["upstream_close"]["code"] == 1000, x)
    check("log wire", x["wire_client_in"] > 6 and x["wire_upstream_out"] > 6)
    deny = [x for x in lines if x["path"] == "/deny"]
    check("log 403", deny and deny[-1]["status"] == 403 and
          deny[-1]["first"] == "upstream", deny)


async def t_several_upstreams(env):
    """a dead upstream is skipped; live ones share the connections"""
    log = env.log + ".multi"
    port = free_port()
    p = Proc([env.bindir + "/ws-proxy", "--listen", str(port),
              "--upstream", env.dead_upstream, "--upstream", env.py_upstream,
              "--upstream", env.echo_upstream, "--access-log", log], port)
    try:
        url = "ws://127.0.0.1:%d/echo-multi" % port
        conns = [await websockets.connect(url) for _ in range(4)]
        for ws in conns:
            await ws.send("x")
            check("multi echo", await ws.recv() == "x")
        for ws in conns:
            await ws.close()
    finally:
        p.stop()
    with open(log) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    ups = [x["upstream"] for x in lines]
    check("multi count", len(lines) == 4, lines)
    check("multi dead skipped", env.dead_upstream not in ups, ups)
    check("multi spread", ups.count(env.py_upstream) == 2 and
          ups.count(env.echo_upstream) == 2, ups)
    check("multi attempts", max(x["attempts"] for x in lines) == 2, lines)


async def t_drain(env):
    """SIGTERM: clients get 1012, upstreams 1001, and a new process bound
    to the same port (SO_REUSEPORT) takes the new connections"""
    port = free_port()
    p = Proc([env.bindir + "/ws-proxy", "--listen", str(port),
              "--upstream", env.py_upstream, "--drain-timeout", "3000"], port)
    q = None
    try:
        ws = await websockets.connect("ws://127.0.0.1:%d/echo-drain" % port)
        await ws.send("x")
        await ws.recv()
        # SO_REUSEPORT: a second process on the same port. The port
        # answers already (p listens), so wait for q's own "listening"
        # line: on a loaded machine q may bind only after p has gone.
        q = Proc([env.bindir + "/ws-proxy", "--listen", str(port),
                  "--upstream", env.py_upstream, "--access-log", "/dev/null"],
                 port, ready="listening on")
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        check("1012", ws.close_code == 1012, ws.close_code)
        await wait_for(lambda: "code" in RESULTS.get("/echo-drain", {}), 5)
        check("upstream 1001", RESULTS["/echo-drain"]["code"] == 1001,
              RESULTS["/echo-drain"])
        rc = await asyncio.get_running_loop().run_in_executor(
            None, p.p.wait, 10)
        check("exit", rc == 0 and time.monotonic() - t0 < 5, rc)
        # the new process, bound to the same port meanwhile, has it all
        async with websockets.connect("ws://127.0.0.1:%d/echo-new" %
                                      port) as ws:
            await ws.send("y")
            check("takeover", await ws.recv() == "y")
    finally:
        p.stop()
        if q:
            q.stop()


# ---- SIGTERM with 1,000 relayed connections --------------------------------

MANY = 1000
MANY_SILENT = 100    # of them, these never answer the proxy's close
MANY_DRAIN_MS = 3000  # under the core's 5 s close timeout: the drain decides


def ws_frame(opcode, payload):
    """A masked client frame (payload < 126 bytes)."""
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask +
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


async def read_frame(r):
    """(opcode, payload) of the next unmasked server frame, FIN set."""
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7f
    if n == 126:
        n = int.from_bytes(await r.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await r.readexactly(8), "big")
    if b0 & 0x80 == 0 or b1 & 0x80:
        raise AssertionError("frame %02x %02x" % (b0, b1))
    return b0 & 0x0f, await r.readexactly(n)


async def many_open(port, i):
    """A raw client (no extensions) through the proxy, one echo."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(("GET /many-%d HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket"
             "\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
             "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
             % i).encode())
    head = await r.readuntil(b"\r\n\r\n")
    check("many 101", head.startswith(b"HTTP/1.1 101 "), head[:40])
    msg = ("m%d" % i).encode()
    w.write(ws_frame(1, msg))
    got = await read_frame(r)
    check("many echo", got == (1, msg), (i, got))
    return r, w


async def many_close(r, w, answer, t0):
    """Waits for the proxy's close; answers it (or not); then waits for
    the end of TCP. Returns (close payload, seconds from |t0| to it, to
    EOF)."""
    while True:
        op, payload = await read_frame(r)
        if op == 8:
            break
        check("many control", op in (9, 10), op)  # a keepalive ping
    t_close = time.monotonic() - t0
    if answer:
        w.write(ws_frame(8, payload[:2]))
    rest = await r.read()
    check("many eof", rest == b"", rest)
    w.close()
    return payload, t_close, time.monotonic() - t0


async def t_drain_many(env):
    """SIGTERM with 1,000 relayed connections: every client gets close
    1012 "service restart", every upstream connection 1001 "going away";
    the clients that answer the close are let go at once, the ones that
    do not at the drain timeout, and then the process exits 0."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * MANY + 256  # the proxy's 2,000 sockets (it inherits ours)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    up, port = free_port(), free_port()
    d = "/tmp/ws-proxy-many-%d" % os.getpid()
    os.makedirs(d, exist_ok=True)
    echo_err = open(d + "/echo.log", "wb")
    echo = Proc([env.bindir + "/echo-server", "--port", str(up)], up,
                stderr=echo_err)
    p = Proc([env.bindir + "/ws-proxy", "--listen", str(port), "--upstream",
              "ws://127.0.0.1:%d" % up, "--drain-timeout", str(MANY_DRAIN_MS),
              "--access-log", d + "/access.log"], port)
    conns = []
    try:
        with open("/proc/%d/limits" % p.p.pid) as f:
            lim = [x for x in f if x.startswith("Max open files")][0].split()
        check("proxy fds", int(lim[3]) >= need, lim)
        sem = asyncio.Semaphore(50)

        async def one(i):
            async with sem:
                return await asyncio.wait_for(many_open(port, i), TIMEOUT)
        t0 = time.monotonic()
        conns = await asyncio.gather(*(one(i) for i in range(MANY)))
        print("drain-many: %d connections open, one echo each, in %.1f s"
              % (len(conns), time.monotonic() - t0))
        nfd = len(os.listdir("/proc/%d/fd" % p.p.pid))
        print("drain-many: the proxy holds %d descriptors" % nfd)
        check("proxy sockets", nfd >= 2 * MANY, nfd)
        silent = set(range(0, MANY, MANY // MANY_SILENT))
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGTERM)
        res = await asyncio.wait_for(asyncio.gather(
            *(many_close(r, w, i not in silent, t0)
              for i, (r, w) in enumerate(conns))), TIMEOUT)
        rc = await asyncio.get_running_loop().run_in_executor(
            None, p.p.wait, TIMEOUT)
        t_exit = time.monotonic() - t0
        want = (1012).to_bytes(2, "big") + b"service restart"
        got = [x[0] for x in res]
        n1012 = sum(x == want for x in got)
        late = max(x[1] for x in res)
        eof_ans = max(x[2] for i, x in enumerate(res) if i not in silent)
        eof_sil = sorted(x[2] for i, x in enumerate(res) if i in silent)
        print("drain-many: SIGTERM -> %d of %d clients got 1012 \"service "
              "restart\" (the last after %.2f s); answering clients closed "
              "by %.2f s, silent ones at %.2f..%.2f s; exit %d after %.2f s "
              "(drain timeout %.1f s)" % (
                  n1012, MANY, late, eof_ans, eof_sil[0], eof_sil[-1], rc,
                  t_exit, MANY_DRAIN_MS / 1000))
        check("1012 to every client", n1012 == MANY,
              [x for x in got if x != want][:5])
        check("exit 0", rc == 0, rc)
        drain = MANY_DRAIN_MS / 1000
        # the silent ones hold the drain to its deadline, and no longer
        # (the margin is for a loaded machine)
        check("silent dropped at the deadline", drain - 0.05 <= eof_sil[0]
              and eof_sil[-1] < drain + 10, eof_sil)
        check("exit within the drain timeout", drain - 0.05 <= t_exit <
              drain + 10, t_exit)
        check("answering clients let go first", eof_ans < drain, eof_ans)
        with open(d + "/access.log") as f:
            lines = [json.loads(x) for x in f if x.strip()]
        check("access log lines", len(lines) == MANY, len(lines))
        by_path = {x["path"]: x for x in lines}
        for i in range(MANY):
            x = by_path.get("/many-%d" % i)
            cc = 1006 if i in silent else 1012
            check("log /many-%d" % i, x is not None and
                  x["client_close"]["sent"] == 1012 and
                  x["client_close"]["code"] == cc and
                  x["upstream_close"]["sent"] == 1001 and
                  x["upstream_close"]["code"] == 1001 and
                  x["first"] == "proxy" and x["msgs_to_upstream"] == 1 and
                  x["msgs_to_client"] == 1, x)
        echo.stop()
        echo_err.close()
        with open(d + "/echo.log", errors="replace") as f:
            closes = [x for x in f if " echo-server: close " in x]
        going = set()
        for x in closes:
            path = x.split(" echo-server: close ")[1].split()[1].rstrip(":")
            if 'received 1001 "going away", sent 1001' in x:
                going.add(path)
        print("drain-many: the upstream logged %d closes, %d of them 1001 "
              "\"going away\" from the proxy" % (len(closes), len(going)))
        check("upstream 1001 for each", len(closes) == MANY and
              going == {"/many-%d" % i for i in range(MANY)},
              (len(closes), len(going), closes[:3]))
    finally:
        for _, w in conns:
            w.close()
        p.stop()
        echo.stop()
        echo_err.close()
        shutil.rmtree(d, ignore_errors=True)


# What the proxy answers python3-websockets' offer ("permessage-deflate;
# client_max_window_bits").
PMD_ANSWER = "permessage-deflate"


async def t_tls(env):
    """wss:// on the client side, the upstream side and both (echo-server
    as the upstream, verified against --upstream-ca), with
    permessage-deflate negotiated with the client; another CA: 502"""
    import ssl
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        def openssl(*a):
            subprocess.run(("openssl",) + a, check=True, timeout=30,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes")
        for ca in ("ca", "other"):
            openssl("req", "-x509", *key, "-keyout", d + "/%s.key" % ca,
                    "-out", d + "/%s.crt" % ca, "-days", "2",
                    "-subj", "/CN=ws-proxy test %s" % ca)
        with open(d + "/srv.ext", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("req", "-new", *key, "-keyout", d + "/srv.key",
                "-out", d + "/srv.csr", "-subj", "/CN=localhost")
        openssl("x509", "-req", "-in", d + "/srv.csr", "-CA", d + "/ca.crt",
                "-CAkey", d + "/ca.key", "-set_serial", "7", "-days", "2",
                "-out", d + "/srv.crt", "-extfile", d + "/srv.ext")
        up = free_port()
        echo = Proc([env.bindir + "/echo-server", "--port", str(up),
                     "--tls-cert", d + "/srv.crt", "--tls-key",
                     d + "/srv.key"], up)
        procs = [echo]
        ctx = ssl.create_default_context(cafile=d + "/ca.crt")
        wss_up = "wss://localhost:%d" % up
        try:
            # (client side, upstream, CA for it): each TLS arrangement
            ways = {"wss-wss": (True, wss_up, "ca"),
                    "wss-ws": (True, env.echo_upstream, None),
                    "ws-wss": (False, wss_up, "ca"),
                    "other-ca": (True, wss_up, "other")}
            ports = {}
            for name, (tls, upstream, ca) in ways.items():
                port = free_port()
                procs.append(Proc(
                    [env.bindir + "/ws-proxy", "--listen", str(port),
                     "--upstream", upstream, "--access-log",
                     d + "/%s.log" % name] +
                    (["--tls-cert", d + "/srv.crt", "--tls-key",
                      d + "/srv.key"] if tls else []) +
                    (["--upstream-ca", d + "/%s.crt" % ca] if ca else []),
                    port))
                ports[name] = port
            for name in ("wss-wss", "wss-ws", "ws-wss"):
                tls, upstream, _ = ways[name]
                url = "%s://localhost:%d/t-%s" % ("wss" if tls else "ws",
                                                  ports[name], name)
                async with websockets.connect(
                        url, ssl=ctx if tls else None, max_size=None) as ws:
                    ext = ws.response_headers.get("Sec-WebSocket-Extensions")
                    check(name + " deflate", ext == PMD_ANSWER, ext)
                    await ws.send("over tls \u00e9\u20ac")  # 14 bytes
                    check(name + " echo",
                          await ws.recv() == "over tls \u00e9\u20ac")
                    data = os.urandom(200000)
                    await ws.send(data)
                    check(name + " binary", await ws.recv() == data)
                    text = "compressible " * 50000
                    await ws.send(text)
                    check(name + " compressible", await ws.recv() == text)
                    await ws.close(4005, name)
                    check(name + " close", ws.close_code == 4005 and
                          ws.close_reason == name,
                          (ws.close_code, ws.close_reason))
                x = await read_log_line(d + "/%s.log" % name)
                print("tls %s: client wire in %d B for %d B of payload; "
                      "upstream %s" % (name, x["wire_client_in"],
                                       x["bytes_to_upstream"], x["upstream"]))
                check(name + " log", x["upstream"] == upstream and
                      x["bytes_to_upstream"] == len(text) + 200000 + 14 and
                      x["msgs_to_client"] == 3 and
                      x["client_close"]["code"] == 4005 and
                      x["upstream_close"]["code"] == 4005, x)
                # compressed on the client side: the text went as a few KiB
                check(name + " compressed", x["wire_client_in"] <
                      200000 + len(text) // 20, x["wire_client_in"])
            try:
                async with websockets.connect(
                        "wss://localhost:%d/t" % ports["other-ca"], ssl=ctx):
                    pass
                raise AssertionError("unverified upstream accepted")
            except websockets.InvalidStatusCode as e:
                check("tls 502", e.status_code == 502, e.status_code)
        finally:
            for p in procs:
                p.stop()


async def read_log_line(path, secs=5):
    """The one access log line in |path| (written at the end of the
    connection, after the client saw its close)."""
    end = time.monotonic() + secs
    while True:
        with open(path) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        if lines or time.monotonic() > end:
            check("one log line in " + path, len(lines) == 1, lines)
            return lines[0]
        await asyncio.sleep(0.05)


async def mute_upstream(reader, writer):
    """Completes the opening handshake, then neither reads nor answers."""
    import base64
    import hashlib
    head = await reader.readuntil(b"\r\n\r\n")
    key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
           if ln.lower().startswith(b"sec-websocket-key:")][0]
    acc = base64.b64encode(hashlib.sha1(
        key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                 b"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
                 acc + b"\r\n\r\n")
    await asyncio.sleep(30)
    writer.close()


async def t_keepalive(env):
    """an upstream that stops answering pings: the client gets 1014 after
    --upstream-ping-interval + --upstream-idle-timeout, while the client
    side keeps its own (longer) keepalive"""
    srv = await asyncio.start_server(mute_upstream, "127.0.0.1", 0)
    up = srv.sockets[0].getsockname()[1]
    port = free_port()
    p = Proc([env.bindir + "/ws-proxy", "--listen", str(port), "--upstream",
              "ws://127.0.0.1:%d" % up, "--upstream-ping-interval", "300",
              "--upstream-idle-timeout", "300", "--ping-interval", "60000",
              "--access-log", "/dev/null"], port)
    try:
        async with websockets.connect("ws://127.0.0.1:%d/" % port,
                                      ping_interval=None) as ws:
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            dt = time.monotonic() - t0
            check("keepalive 1014", ws.close_code == 1014, ws.close_code)
            check("keepalive time", 0.5 < dt < 5, dt)
    finally:
        p.stop()
        srv.close()


async def t_threads(env):
    """--threads 3: three loops on one SO_REUSEPORT port, one set of
    counters"""
    port, admin = free_port(), free_port()
    p = Proc([env.bindir + "/ws-proxy", "--listen", str(port), "--upstream",
              env.echo_upstream, "--threads", "3", "--admin", str(admin),
              "--access-log", "/dev/null"], port)
    try:
        wait_port(admin, p.p)

        async def one(i):
            async with websockets.connect("ws://127.0.0.1:%d/t" % port) as ws:
                for j in range(5):
                    await ws.send("m%d-%d" % (i, j))
                    check("threads echo", await ws.recv() == "m%d-%d" % (i, j))
        await asyncio.gather(*(one(i) for i in range(30)))
        await wait_for(lambda: metrics(admin)["wsproxy_connections_open"]
                       == 0)
        m = metrics(admin)
        check("threads accepted", m["wsproxy_upgrades_accepted_total"] == 30,
              m)
        check("threads msgs",
              m['wsproxy_messages_total{direction="to_upstream"}'] == 150, m)
    finally:
        p.stop()


class Env:
    pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--large", type=int, default=256, help="MiB")
    ap.add_argument("--only", default="")
    ap.add_argument("--no-tls", action="store_true",
                    help="built without -Dtls=mbedtls: skip wss://")
    args = ap.parse_args()
    env = Env()
    env.bindir = args.bindir
    py_port, silent_port, dead_port, echo_port = (free_port() for _ in "1234")
    server = await websockets.serve(upstream_handler, "127.0.0.1", py_port,
                                    process_request=process_request,
                                    extra_headers=upstream_headers,
                                    subprotocols=["chat"], max_size=None)
    silent = await asyncio.start_server(silent_server, "127.0.0.1",
                                        silent_port)
    echo = Proc([args.bindir + "/echo-server", "--port", str(echo_port),
                 "--max-message", str((args.large + 8) << 20)], echo_port)
    env.echo_upstream = "ws://127.0.0.1:%d" % echo_port
    env.py_upstream = "ws://127.0.0.1:%d" % py_port
    env.dead_upstream = "ws://127.0.0.1:%d" % dead_port
    procs = [echo]
    env.log = "/tmp/ws-proxy-test-%d.log" % os.getpid()

    def proxy(upstream, extra=()):
        port = free_port()
        p = Proc([args.bindir + "/ws-proxy", "--listen", str(port),
                  "--upstream", upstream, *extra], port)
        procs.append(p)
        return p, port

    env.proxy, eport = proxy(env.echo_upstream)
    env.large_proxy, lport = proxy(env.echo_upstream, ["--no-deflate"])
    env.large_url = lambda p: "ws://127.0.0.1:%d%s" % (lport, p)
    env.admin = free_port()
    pyproxy, pport = proxy(env.py_upstream, ["--admin", str(env.admin),
                                             "--access-log", env.log])
    wait_port(env.admin, pyproxy.p)
    _, dport = proxy(env.dead_upstream)
    _, sport = proxy("ws://127.0.0.1:%d" % silent_port,
                     ["--connect-timeout", "1000"])
    env.url = lambda p: "ws://127.0.0.1:%d%s" % (eport, p)
    env.py_url = lambda p: "ws://127.0.0.1:%d%s" % (pport, p)
    env.dead_url = lambda p: "ws://127.0.0.1:%d%s" % (dport, p)
    env.silent_url = lambda p: "ws://127.0.0.1:%d%s" % (sport, p)
    pyproxy_env = Env()
    pyproxy_env.__dict__.update(env.__dict__)
    pyproxy_env.proxy = pyproxy
    tests = [("echo", t_echo, env), ("headers", t_subprotocol_headers, env),
             ("response-headers", t_response_headers, env),
             ("statuses", t_statuses, env), ("close", t_close_codes, env),
             ("close-order", t_close_order, env),
             ("vanish", t_vanish, env),
             ("backpressure", t_backpressure, pyproxy_env),
             ("metrics", t_metrics_log, env),
             ("upstreams", t_several_upstreams, env),
             ("drain", t_drain, env), ("drain-many", t_drain_many, env),
             ("keepalive", t_keepalive, env),
             ("threads", t_threads, env), ("tls", t_tls, env)]
    only = [x for x in args.only.split(",") if x]
    failed = 0
    try:
        for name, fn, e in tests:
            if only and name not in only:
                continue
            if name == "tls" and (args.no_tls or not shutil.which("openssl")):
                print("skipped tls")
                continue
            try:
                # a GiB each way takes ~12 s here, several times that
                # under ASan on a busy machine
                await asyncio.wait_for(fn(e), 400 if name == "large" else 60)
                print("ok", name)
            except Exception as ex:  # report and go on
                failed += 1
                print("FAIL", name, repr(ex))
        if args.large and (not only or "large" in only):
            try:
                await asyncio.wait_for(t_large(env, args.large), 900)
                print("ok large")
            except Exception as ex:
                failed += 1
                print("FAIL large", repr(ex))
    finally:
        for p in procs:
            p.stop()
        server.close()
        silent.close()
        for suffix in ("", ".multi"):
            try:
                os.unlink(env.log + suffix)
            except OSError:
                pass
    print("%s" % ("FAILED %d" % failed if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
