"""The stdlib host of ``Endpoint``: ``http.server`` with one thread per stream.

For tests, development and simple hosts (a VM, a container without an ASGI server). Each stream
is HTTP/1.1 chunked, one chunk per event, flushed at once, then ``connection: close``.
"""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from runner_kit_endpoint import wire
from runner_kit_endpoint.serving import Service, StreamingHTTPServer, http_url, serve_in_thread

if TYPE_CHECKING:
    from runner_kit_endpoint.endpoint import Endpoint

DRAIN_S = 5.0
"""After SIGTERM, how long open streams get to send ``stopping`` and close."""


class _HTTPServer(StreamingHTTPServer):
    def __init__(self, address: tuple[str, int], endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet by default; a host logs requests in front of it

    def _json(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _error(self, error: wire.BadRequest) -> None:
        self._json(error.status, error.body())

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in wire.HEALTH_PATHS:
            self._json(200, wire.HEALTH_BODY)
        elif path.endswith("/start"):
            self.do_PUT()
        else:
            self._error(wire.BadRequest(404, "not_found", "POST {url}/start"))

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not urlsplit(self.path).path.endswith("/start"):
            self._error(wire.BadRequest(404, "not_found", "POST {url}/start"))
            return
        endpoint = self.server.endpoint
        try:
            length = int(self.headers.get("content-length") or 0)
            if length > wire.MAX_BODY_BYTES:
                raise wire.BadRequest(413, "body_too_large", "the body is too large")
            body = self.rfile.read(length) if length > 0 else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = wire.parse_start(body, headers)
        except wire.BadRequest as exc:
            self._error(exc)
            return
        except ValueError:
            self._error(wire.BadRequest(400, "invalid_body", "bad content-length"))
            return
        if endpoint.stopping:
            self._error(wire.BadRequest(503, "stopping", "the endpoint is shutting down"))
            return
        self.send_response(200)
        for name, value in wire.STREAM_HEADERS:
            self.send_header(name, value)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            endpoint.stream_sync(request, self._chunk)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client went away; the function's context is cancelled

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_PUT(self) -> None:
        self._error(wire.BadRequest(405, "method_not_allowed", "POST {url}/start"))

    do_DELETE = do_PATCH = do_PUT


class EndpointServer(Service):
    """A started stdlib server in a daemon thread: ``with endpoint.server() as s: s.url``."""

    def __init__(self, endpoint: Endpoint, host: str = "127.0.0.1", port: int = 0) -> None:
        self.endpoint = endpoint
        self.host = host
        self._httpd = _HTTPServer((host, port), endpoint)
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL (the kit calls ``{url}/start``)."""
        return http_url(self.host, self.port)

    def start(self) -> Self:
        """Serve in a daemon thread."""
        self._thread = serve_in_thread(self._httpd, f"endpoint:{self.port}")
        return self

    def stop(self) -> None:
        """Stop accepting; open streams end with ``stopping`` (up to ``DRAIN_S``)."""
        self.endpoint.stop()
        self._httpd.shutdown()
        self.endpoint.wait_idle(DRAIN_S)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=DRAIN_S)

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self


def serve_forever(endpoint: Endpoint, host: str, port: int) -> None:
    """Serve in this thread until SIGTERM or Ctrl-C, then drain the open streams."""
    server = EndpointServer(endpoint, host, port)

    def on_term() -> None:  # in a signal handler: shutdown() must run in another thread
        threading.Thread(target=server._httpd.shutdown, daemon=True).start()

    endpoint.install_sigterm(on_term)
    print(f"runner endpoint on {server.url} (POST {server.url}/start)", file=sys.stderr, flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
        endpoint.wait_idle(DRAIN_S)
        server._httpd.server_close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
