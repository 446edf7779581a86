#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Headless Debian Chromium through examples/ws-proxy, with TLS on one
side of the proxy and not on the other, both ways round:

  (a) Chromium --wss--> ws-proxy --ws--> chat: two tabs chat;
  (b) Chromium --ws--> ws-proxy --wss--> echo-server (verified against
      --upstream-ca): one tab gets its messages back.

  proxy_chromium.py --bindir BUILD/examples [--shots DIR]

Each tab shows the chat page (examples/chat's own, byte for byte) at the
proxy's origin, so that the page's WebSocket (scheme + location.host +
'/ws') goes to the proxy: the tab opens the proxy's URL (a 404: the
proxy serves no pages) and the page is written over that document over
DevTools. (Answering the page request with DevTools' Fetch domain
instead leaves the document without an address space, and Chromium's
Local Network Access checks then block its WebSocket to 127.0.0.1.)
Chromium
trusts the proxy's certificate by its key
(--ignore-certificate-errors-spki-list); the certificates are made with
the openssl command as in tls.py. Checks: the extension the page sees
(Chromium always offers permessage-deflate), the exact list of lines in
each tab, compressed bytes on the client side in the proxy's access log,
permessage-deflate on the upstream side in the upstream's log, and on
SIGTERM the close code 1012 in every page and 1001 at the upstream.
Prints each check and "N passed, N failed"; exits non-zero on a failure.
Everything on 127.0.0.1, bounded in time. KEEP=1 in the environment
keeps the temporary directory (certificates, the programs' logs).
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chromium import CDP, CHROMIUM, LOG, launch, until  # noqa: E402
from tls import make_certs  # noqa: E402

from netutil import free_port

TIMEOUT = 100  # the whole drive
DRAIN_MS = 2000

# What the proxy answers Chromium's offer ("permessage-deflate;
# client_max_window_bits"), as the page's ws.extensions shows it.
PMD_ANSWER = "permessage-deflate"


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, ok, what, why=""):
        self.passed += bool(ok)
        self.failed += not ok
        why = str(why)
        if len(why) > 600:
            why = why[:600] + "..."
        print("%s %s%s" % ("ok" if ok else "FAIL", what,
                           "" if ok else ": " + why), flush=True)
        return ok


class Server:
    """One of our programs, started and waited for by its start-up line
    ("... http://HOST:PORT/" or "... ws[s]://HOST:PORT/"); its stderr goes
    to |log|."""

    def __init__(self, argv, log):
        self.log = log
        self.err = open(log, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.err)
        end = time.monotonic() + 30
        line = b""
        while time.monotonic() < end and b"://" not in line:
            r, _, _ = select.select([self.p.stdout], [], [], 1)
            if r:
                line = self.p.stdout.readline()
                if not line:
                    break
        self.p.stdout.close()
        if b"://" not in line:
            self.stop()
            raise RuntimeError("%s did not start" % argv[0])
        self.port = int(line.split(b"://")[1].split(b"/")[0].rsplit(b":")[1])

    def lines(self):
        with open(self.log, errors="replace") as f:
            return f.read().splitlines()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()


def spki_sha256(cert):
    """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's
    --ignore-certificate-errors-spki-list takes."""
    pem = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey",
                          "-noout"], check=True, capture_output=True,
                         timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"],
                         input=pem, check=True, capture_output=True,
                         timeout=30).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def open_tab(cdp, url, page):
    """A new tab at |url| (the proxy's origin: it answers a plain GET with
    404) whose document is then replaced by |page| (bytes), as if the
    proxy had served it; the page's WebSocket goes to |url|'s host.
    Returns the tab's session."""
    t = await cdp.call("Target.createTarget", url="about:blank")
    s = (await cdp.call("Target.attachToTarget", targetId=t["targetId"],
                        flatten=True))["sessionId"]
    r = await cdp.call("Page.navigate", s, url=url)
    if r.get("errorText"):
        raise RuntimeError("Page.navigate %s: %s" % (url, r["errorText"]))
    await until(lambda: cdp.eval(s, "location.href === %s && "
                                 "document.readyState === 'complete'"
                                 % json.dumps(url)), "the 404 page")
    await cdp.eval(s, "document.open(); document.write(%s); "
                   "document.close(); true" % json.dumps(page.decode()))
    return s


STATUS = "document.getElementById('status').textContent"


async def connected(cdp, s):
    return await until(lambda: cdp.eval(s, "(() => { const t = %s; return "
                                        "t.startsWith('connected') || "
                                        "t.startsWith('disconnected') ? t : "
                                        "null; })()" % STATUS),
                       "the page to connect")


async def type_in(cdp, s, text):
    await cdp.eval(s, "document.getElementById('msg').value = %s;"
                   "document.getElementById('send').click(); true"
                   % json.dumps(text))


async def log_is(cdp, s, want, what, check, secs=10):
    """Waits until the tab's lines are exactly |want|."""
    async def same():
        return await cdp.eval(s, LOG) == want
    try:
        await until(same, what, secs)
        return check(True, what)
    except RuntimeError:
        return check(False, what, "lines %s, want %s" % (
            await cdp.eval(s, LOG), want))


async def shot(cdp, s, shots, name):
    r = await cdp.call("Page.captureScreenshot", s, format="png")
    path = os.path.join(shots, name)
    with open(path, "wb") as f:
        f.write(base64.b64decode(r["data"]))
    print("screenshot: %s" % path)


async def sigterm(cdp, proxy, tabs, check, what):
    """SIGTERM to the proxy: every tab shows close 1012, and the proxy
    exits 0 within its drain timeout."""
    t0 = time.monotonic()
    proxy.p.send_signal(signal.SIGTERM)
    for i, s in enumerate(tabs, 1):
        try:
            st = await until(lambda s=s: cdp.eval(
                s, "(() => { const t = %s; return t.startsWith("
                "'disconnected') ? t : null; })()" % STATUS),
                "the page to see the close", 10)
        except RuntimeError as e:
            st = str(e)
        check(st == "disconnected (1012)",
              "%s: tab %d sees close 1012 on SIGTERM" % (what, i), st)
    rc = await asyncio.get_running_loop().run_in_executor(
        None, proxy.p.wait, 15)
    dt = time.monotonic() - t0
    print("%s: the proxy exited %d %.2f s after SIGTERM (drain timeout "
          "%.1f s)" % (what, rc, dt, DRAIN_MS / 1000))
    check(rc == 0 and dt < DRAIN_MS / 1000 + 10,
          "%s: the proxy exits 0 within the drain timeout" % what, (rc, dt))


def access_log(path, what, check):
    """The relayed connections' lines. Chromium also opens speculative
    connections it may never use: when the drain begins they have sent
    nothing, and the loop closes them at once (a refusal line with status
    0 and reason "draining"); each such line is checked and left out."""
    with open(path) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    idle = [x for x in lines if "reason" in x]
    check(all(x["reason"] == "draining" and x["status"] == 0 and
              x["path"] == "" and x["wire_client_in"] == 0 for x in idle),
          "%s: %d idle connection(s) closed at once by the drain" %
          (what, len(idle)), idle)
    return [x for x in lines if "reason" not in x]


async def chat_via_wss_proxy(cdp, d, bindir, page, shots, check):
    """(a) Chromium --wss--> ws-proxy --ws--> chat, two tabs."""
    what = "wss->ws"
    pport = free_port()
    origin = "https://127.0.0.1:%d" % pport
    chat = Server([bindir + "/chat", "--port", "0", "--origin", origin],
                  d + "/chat-a.log")
    proxy = None
    try:
        proxy = Server([bindir + "/ws-proxy", "--listen", str(pport),
                        "--upstream", "ws://127.0.0.1:%d" % chat.port,
                        "--tls-cert", d + "/server.crt", "--tls-key",
                        d + "/server.key", "--drain-timeout", str(DRAIN_MS),
                        "--access-log", d + "/access-a.log"],
                       d + "/proxy-a.log")
        tabs, names = [], []
        for i in (1, 2):  # one after the other: tab 2 joins while 1 is in
            s = await open_tab(cdp, origin + "/", page)
            tabs.append(s)
            st = await connected(cdp, s)
            check(st == "connected (%s)" % PMD_ANSWER,
                  "%s: tab %d connected through the proxy with "
                  "permessage-deflate" % (what, i), st)
            me = await until(lambda s=s: cdp.eval(
                s, LOG + ".find(t => t.startsWith('* you are '))"),
                "its guest name")
            names.append(me[len("* you are "):])
        a, b = names
        m1 = "hello through the proxy \u00e9\u20ac \U0001f600"
        m2 = "compressible " * 450  # 5850 bytes, under chat's 8192
        await log_is(cdp, tabs[0], ["* you are " + a, "* %s joined" % a,
                                    "* %s joined" % b], "%s: tab 1 sees tab "
                     "2 join" % what, check)
        await type_in(cdp, tabs[0], m1)
        line1 = "%s: %s" % (a, m1)
        await log_is(cdp, tabs[1], ["* you are " + b, "* %s joined" % b,
                                    line1], "%s: tab 2 gets tab 1's message"
                     % what, check)
        await type_in(cdp, tabs[1], m2)
        line2 = "%s: %s" % (b, m2)
        await log_is(cdp, tabs[0], ["* you are " + a, "* %s joined" % a,
                                    "* %s joined" % b, line1, line2],
                     "%s: tab 1 has exactly its lines" % what, check)
        await log_is(cdp, tabs[1], ["* you are " + b, "* %s joined" % b,
                                    line1, line2],
                     "%s: tab 2 has exactly its lines" % what, check)
        for i, s in enumerate(tabs, 1):
            await shot(cdp, s, shots, "proxy-wss-ws-tab%d.png" % i)
        await sigterm(cdp, proxy, tabs, check, what)
        lines = sorted(access_log(d + "/access-a.log", what, check),
                       key=lambda x: x["bytes_to_upstream"])
        print("%s: access log %s" % (what, [
            {k: x[k] for k in ("bytes_to_upstream", "wire_client_in",
                               "bytes_to_client", "wire_client_out")}
            for x in lines]))
        want = [len(m1.encode()), len(m2)]
        check(len(lines) == 2 and
              [x["bytes_to_upstream"] for x in lines] == want and
              all(x["msgs_to_upstream"] == 1 and x["status"] == 101 and
                  x["path"] == "/ws" and x["first"] == "proxy" and
                  x["client_close"]["sent"] == 1012 and
                  x["client_close"]["code"] == 1012 and
                  x["upstream_close"]["sent"] == 1001 and
                  x["upstream_close"]["code"] == 1001 for x in lines),
              "%s: the access log has both connections, closed 1012 to "
              "the client and 1001 to the upstream" % what, lines)
        # Compressed on the client side: 5850 bytes of text came in as a
        # small frame (the handshake of ~500 bytes is counted too).
        check(len(lines) == 2 and lines[1]["wire_client_in"] < 1500 and
              lines[1]["wire_client_out"] < lines[1]["bytes_to_client"],
              "%s: the proxy inflated and deflated on the client side"
              % what, lines)
        chat.stop()
        opens = [x for x in chat.lines() if " chat: open " in x]
        closes = [x for x in chat.lines() if " chat: close " in x]
        check(len(opens) == 2 and all(
            "extensions=permessage-deflate(" in x for x in opens),
            "%s: chat saw two connections from the proxy with "
            "permessage-deflate" % what, opens)
        check(len(closes) == 2 and all(
            ' received 1001 "going away", sent 1001,' in x for x in closes),
            "%s: chat got close 1001 from the proxy for both" % what, closes)
    finally:
        if proxy:
            proxy.stop()
        chat.stop()


async def echo_via_ws_proxy(cdp, d, bindir, page, shots, check):
    """(b) Chromium --ws--> ws-proxy --wss--> echo-server, one tab."""
    what = "ws->wss"
    echo = Server([bindir + "/echo-server", "--port", "0", "--tls-cert",
                   d + "/server.crt", "--tls-key", d + "/server.key"],
                  d + "/echo-b.log")
    proxy = None
    try:
        proxy = Server([bindir + "/ws-proxy", "--listen", "0",
                        "--upstream", "wss://localhost:%d" % echo.port,
                        "--upstream-ca", d + "/ca.crt",
                        "--drain-timeout", str(DRAIN_MS),
                        "--access-log", d + "/access-b.log"],
                       d + "/proxy-b.log")
        origin = "http://127.0.0.1:%d" % proxy.port
        s = await open_tab(cdp, origin + "/", page)
        st = await connected(cdp, s)
        check(st == "connected (%s)" % PMD_ANSWER,
              "%s: the tab connected through the proxy with "
              "permessage-deflate" % what, st)
        m1 = "echo through the proxy \u00e9\u20ac \U0001f600"
        m2 = "compressible " * 5000  # 65000 bytes
        await type_in(cdp, s, m1)
        await log_is(cdp, s, [m1], "%s: the echo came back" % what, check)
        await type_in(cdp, s, m2)
        await log_is(cdp, s, [m1, m2], "%s: the tab has exactly its lines"
                     % what, check)
        await shot(cdp, s, shots, "proxy-ws-wss.png")
        await sigterm(cdp, proxy, [s], check, what)
        lines = access_log(d + "/access-b.log", what, check)
        print("%s: access log %s" % (what, [
            {k: x[k] for k in ("bytes_to_upstream", "wire_client_in",
                               "bytes_to_client", "wire_client_out")}
            for x in lines]))
        total = len(m1.encode()) + len(m2)
        check(len(lines) == 1 and lines[0]["bytes_to_upstream"] == total and
              lines[0]["bytes_to_client"] == total and
              lines[0]["msgs_to_upstream"] == 2 and
              lines[0]["msgs_to_client"] == 2 and
              lines[0]["upstream"] == "wss://localhost:%d" % echo.port and
              lines[0]["client_close"]["code"] == 1012 and
              lines[0]["upstream_close"]["code"] == 1001,
              "%s: the access log line" % what, lines)
        check(len(lines) == 1 and lines[0]["wire_client_in"] < 2000 and
              lines[0]["wire_client_out"] < 2000,
              "%s: compressed on the client side both ways" % what, lines)
        echo.stop()
        opens = [x for x in echo.lines() if " echo-server: open " in x]
        closes = [x for x in echo.lines() if " echo-server: close " in x]
        check(len(opens) == 1 and
              "extensions=permessage-deflate(" in opens[0],
              "%s: echo-server saw the proxy with permessage-deflate over "
              "TLS" % what, opens)
        check(len(closes) == 1 and ' received 1001 "going away", sent 1001,'
              in closes[0] and " in 2 msgs %d B " % total in closes[0],
              "%s: echo-server got both messages and close 1001" % what,
              closes)
    finally:
        if proxy:
            proxy.stop()
        echo.stop()


async def drive(cdp_url, d, bindir, page, shots, check):
    async with websockets.connect(cdp_url, max_size=None) as ws:
        cdp = CDP(ws)
        for fn in (chat_via_wss_proxy, echo_via_ws_proxy):
            try:
                await fn(cdp, d, bindir, page, shots, check)
            except (RuntimeError, OSError, ValueError, KeyError,
                    asyncio.TimeoutError, subprocess.TimeoutExpired) as e:
                check(False, fn.__name__, "%s: %s" % (type(e).__name__, e))
        try:
            await cdp.call("Browser.close")
        except (RuntimeError, websockets.ConnectionClosed,
                asyncio.TimeoutError):
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--shots", default=os.environ.get("MESON_BUILD_ROOT",
                                                      tempfile.gettempdir()))
    args = ap.parse_args()
    check = Checks()
    if not os.path.exists(CHROMIUM):
        check(False, "%s is installed (Debian package chromium)" % CHROMIUM)
        print("0 passed, 1 failed")
        return 1
    os.makedirs(args.shots, exist_ok=True)
    d = tempfile.mkdtemp(prefix="libws-proxy-chromium-")
    browser = None
    try:
        make_certs(d)
        # the chat page, as chat serves it
        chat = Server([args.bindir + "/chat", "--port", "0"], d + "/chat.log")
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/" % chat.port,
                                        timeout=10) as r:
                page = r.read()
        finally:
            chat.stop()
        check(b"new WebSocket(scheme + location.host + '/ws')" in page,
              "the chat page connects to its own host")
        os.makedirs(d + "/profile")
        browser, cdp_url = launch(d + "/profile", [
            "--ignore-certificate-errors-spki-list=" +
            spki_sha256(d + "/server.crt")])
        asyncio.run(asyncio.wait_for(
            drive(cdp_url, d, args.bindir, page, args.shots, check), TIMEOUT))
    except (RuntimeError, OSError, ValueError, asyncio.TimeoutError,
            subprocess.SubprocessError) as e:
        check(False, "the test ran", "%s: %s" % (type(e).__name__, e))
    finally:
        if browser is not None and browser.poll() is None:
            browser.kill()
            browser.wait()
        if os.environ.get("KEEP"):
            print("kept " + d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % (check.passed, check.failed))
    return 1 if check.failed or not check.passed else 0


if __name__ == "__main__":
    sys.exit(main())
