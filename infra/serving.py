"""What every local server of the kit shares: ports, a server thread, ``with`` to start and stop.

The moto server, the dev runner and the local stack use it; the endpoint SDK
(``endpoint/runner_kit_endpoint``) keeps its own few lines, as it depends on the stdlib only.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from types import TracebackType
from typing import Self

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


def http_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_in_thread(
    server: socketserver.BaseServer, name: str, poll_interval: float = 0.05
) -> threading.Thread:
    """Run ``server.serve_forever`` in a started daemon thread; ``shutdown()`` ends it."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


class Service:
    """Something that starts and stops: ``with X() as x:`` starts it, leaving the block stops it."""

    def start(self) -> Self:
        """Start serving; returns self."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving and release what ``start`` took."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
