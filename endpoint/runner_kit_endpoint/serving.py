"""What a loopback server needs, standard library only: a URL, a server thread, ``with``.

``EndpointServer`` uses it; so do the runner-kit's own local servers (``infra.serving``), which
may import this package but not the reverse.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


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


class StreamingHTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, IPv4 or IPv6 by the host, quiet about hang-ups.

    Closing does not wait for open streams, and the listen backlog takes bursts of concurrent
    connects (the default 5 drops them).
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-stream is normal; a traceback would only be noise


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
