#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Headless Debian Chromium against the chat demo (examples/chat).

Starts chat on a free port and /usr/bin/chromium (--headless --no-sandbox
--disable-gpu --disable-background-networking --no-first-run, a fresh
--user-data-dir, --remote-debugging-port=0), and drives two tabs over the
DevTools protocol (a WebSocket: python3-websockets is the CDP client). Both
pages must connect with permessage-deflate, a message typed in each must
show up in the other's list, and the join notice must reach the first.
Saves a screenshot of each tab next to the test log (or --shots DIR).
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import websockets

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 60


class CDP:
    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method, session=None, **params):
        mid = next(self.ids)
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        while True:
            r = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if r.get("id") == mid:
                if "error" in r:
                    raise RuntimeError("%s: %s" % (method, r["error"]))
                return r.get("result", {})

    async def eval(self, session, expr):
        r = await self.call("Runtime.evaluate", session, expression=expr,
                            returnByValue=True)
        return r.get("result", {}).get("value")


async def until(fn, what, secs=15):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        v = await fn()
        if v:
            return v
        await asyncio.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


LOG = "Array.from(document.querySelectorAll('#log li')).map(l => l.textContent)"


async def drive(cdp_url, page_url, shots):
    passed = failed = 0

    def check(ok, what, why=""):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print("%s %s%s" % ("ok" if ok else "FAIL", what, "" if ok else ": " + why),
              flush=True)

    async with websockets.connect(cdp_url, max_size=None) as ws:
        cdp = CDP(ws)
        tabs, names = [], []
        for _ in range(2):   # one after the other: tab 2 joins while 1 is in
            t = await cdp.call("Target.createTarget", url=page_url)
            s = (await cdp.call("Target.attachToTarget",
                                targetId=t["targetId"], flatten=True))["sessionId"]
            tabs.append(s)
            status = await until(lambda s=s: cdp.eval(s, """
                (() => { const t = document.getElementById('status');
                  return t && t.textContent.startsWith('connected') ?
                    t.textContent : null; })()"""), "the page to connect")
            check("permessage-deflate" in status,
                  "page connected with permessage-deflate", status)
            me = await until(lambda s=s: cdp.eval(s, LOG + ".find(t => "
                             "t.startsWith('* you are '))"), "its guest name")
            names.append(me[len("* you are "):])
        a, b = tabs
        joined = "* %s joined" % names[1]
        try:
            await until(lambda: cdp.eval(a, LOG + ".includes(%s)"
                                         % json.dumps(joined)), joined, 10)
            check(True, "tab 1 sees tab 2 join")
        except RuntimeError as e:
            check(False, "tab 1 sees tab 2 join", "%s; names %s; log %s" % (
                e, names, await cdp.eval(a, LOG)))
        for src, dst, text in ((a, b, "hello from tab 1 \u00e9\u20ac"),
                               (b, a, "and back from tab 2")):
            await cdp.eval(src, "document.getElementById('msg').value = %s;"
                           "document.getElementById('send').click(); true"
                           % json.dumps(text))
            who = names[tabs.index(src)]
            want = "%s: %s" % (who, text)
            try:
                await until(lambda: cdp.eval(dst, LOG + ".includes(%s)"
                                             % json.dumps(want)), want, 10)
                check(True, "the other tab shows %r" % want)
            except RuntimeError as e:
                check(False, "the other tab shows %r" % want,
                      "%s; log %s" % (e, await cdp.eval(dst, LOG)))
            mine = await cdp.eval(src, LOG + ".includes(%s)" % json.dumps(want))
            check(bool(mine), "the sender's tab shows it too")
        for i, s in enumerate(tabs, 1):
            shot = await cdp.call("Page.captureScreenshot", s, format="png")
            path = os.path.join(shots, "chat-tab%d.png" % i)
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print("screenshot: %s" % path)
        try:
            await cdp.call("Browser.close")
        except (RuntimeError, websockets.ConnectionClosed, asyncio.TimeoutError):
            pass
    return passed, failed


def launch(profile, flags=()):
    """Starts headless Chromium with the fresh profile directory |profile|
    and |flags|; returns (its Popen, the DevTools WebSocket URL)."""
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run",
         "--user-data-dir=" + profile, "--remote-debugging-port=0",
         *flags, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        end = time.monotonic() + 30
        while not os.path.exists(port_file) and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.2)
        with open(port_file) as f:
            dport, dpath = f.read().split("\n")[:2]
    except BaseException:  # not left running behind the caller's back
        browser.kill()
        browser.wait()
        raise
    return browser, "ws://127.0.0.1:%s%s" % (dport.strip(), dpath.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chat", required=True)
    ap.add_argument("--shots", default=os.environ.get("MESON_BUILD_ROOT",
                                                      tempfile.gettempdir()))
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        print("FAIL %s is not installed (Debian package chromium)" % CHROMIUM)
        print("0 passed, 1 failed")
        return 1
    os.makedirs(args.shots, exist_ok=True)
    chat = subprocess.Popen([args.chat, "--port", "0"], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    profile = tempfile.mkdtemp(prefix="libws-chromium-")
    browser = None
    passed, failed = 0, 1
    try:
        line = chat.stdout.readline().decode()
        url = line.split("open ")[1].split()[0]       # http://127.0.0.1:N/
        browser, cdp_url = launch(profile)
        passed, failed = asyncio.run(asyncio.wait_for(
            drive(cdp_url, url, args.shots), TIMEOUT))
        chat.send_signal(signal.SIGINT)
        rc = chat.wait(10)
        ok = rc == 0
        passed += ok
        failed += not ok
        print("%s chat exits 0 on SIGINT" % ("ok" if ok else "FAIL"))
    except (RuntimeError, OSError, IndexError, ValueError,
            asyncio.TimeoutError, subprocess.TimeoutExpired) as e:
        print("FAIL %s: %s" % (type(e).__name__, e))
        failed += 1
    finally:
        for p in (browser, chat):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(profile, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
