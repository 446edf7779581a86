"""Small network helpers shared by the test scripts (interop, conformance,
benchmarks). Not a test itself.
SPDX-License-Identifier: MIT
"""
import socket


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port
    0 and released: the caller's server binds it next)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
