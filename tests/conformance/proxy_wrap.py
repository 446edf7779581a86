#!/usr/bin/python3
"""The conformance replay through examples/ws-proxy.

  proxy_wrap.py --port N [PROXY-FLAGS]   (as the replays' --server-cmd,
      PROXY-FLAGS through their --server-arg) starts examples/echo-server
      on a free port and ws-proxy on port N in front of it, with
      PROXY-FLAGS (--no-deflate, --no-client-deflate,
      --no-upstream-deflate); paths from $WS_PROXY and $WS_ECHO_SERVER.
      SIGTERM stops both.
  proxy_wrap.py --autobahn SCRIPT [ARGS]   runs SCRIPT --server-cmd
      proxy_wrap.py ARGS: every case, as strict as against echo-server.

The cases where a bad frame or a close follows messages without waiting
(3.2, 3.4, 4.1.3-5, 4.2.3-5, 5.15, 7.1.6) are strict because the proxy
holds that frame back from the client's core until the upstream has
closed and its echoes are through (examples/ws-proxy/gate.c).
"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "interop"))
from netutil import free_port  # noqa: E402


def run_autobahn():
    i = sys.argv.index("--autobahn")
    script, rest = sys.argv[i + 1], sys.argv[i + 2:]
    return subprocess.call([sys.executable, script, "--server-cmd",
                            os.path.abspath(__file__), *rest])


def main():
    if "--autobahn" in sys.argv:
        sys.exit(run_autobahn())
    port = sys.argv[sys.argv.index("--port") + 1]
    flags = [a for a in sys.argv[1:] if a.startswith("--no-")]
    up = free_port()
    echo = subprocess.Popen([os.environ["WS_ECHO_SERVER"], "--port", str(up)],
                            stdout=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", up), 1).close()
            break
        except OSError:
            time.sleep(0.05)
    proxy = subprocess.Popen([os.environ["WS_PROXY"], "--listen", port,
                              "--upstream", "ws://127.0.0.1:%d" % up,
                              "--drain-timeout", "1000",
                              "--access-log", "/dev/null",
                              "--autobahn", *flags],
                             stdout=subprocess.DEVNULL)

    def stop(*_):
        for p in (proxy, echo):
            p.terminate()
        for p in (proxy, echo):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while proxy.poll() is None and echo.poll() is None:
        time.sleep(0.2)
    stop()


if __name__ == "__main__":
    main()
