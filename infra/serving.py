"""What every local server of the kit shares: ports, a server thread, ``with`` to start and stop.

The moto server, the dev runner and the local stack use it. The URL, the server thread, the
HTTP server base and ``Service`` come from the endpoint SDK (``runner_kit_endpoint.serving``,
standard library only, installed beside the kit): the kit may import the SDK, not the reverse.
"""

from __future__ import annotations

import socket

from runner_kit_endpoint.serving import Service, StreamingHTTPServer, http_url, serve_in_thread

__all__ = [
    "LOOPBACK",
    "Service",
    "StreamingHTTPServer",
    "free_port",
    "http_url",
    "port_free",
    "serve_in_thread",
]

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """True if a server could listen on ``host:port`` now (with SO_REUSEADDR, as ours do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
