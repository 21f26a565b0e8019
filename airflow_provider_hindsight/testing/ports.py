"""A free loopback port, for servers a test starts and for addresses where nothing should listen."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that nothing listens on when asked (a connection to it is refused).

    The operating system picks it; another process may take it before the caller binds it, so a
    server that can bind port 0 itself (as ``HindsightEmulator`` does) should do that instead.
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
