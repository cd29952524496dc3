"""The ASGI 3 side of ``Endpoint``: raw ASGI, no framework.

Routes: ``POST .../start`` (any prefix, so the endpoint may live under a path), ``GET /`` and
``GET /health`` (readiness checks, e.g. the Lambda Web Adapter's), everything else 404/405.
The ``lifespan`` scope installs the SIGTERM hook at startup (uvicorn has installed its own
handler by then, which the hook calls in turn).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from runner_kit_endpoint import wire

if TYPE_CHECKING:
    from runner_kit_endpoint.endpoint import Endpoint

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def handle(endpoint: Endpoint, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Serve one ASGI connection scope."""
    if scope["type"] == "lifespan":
        await _lifespan(endpoint, receive, send)
        return
    if scope["type"] != "http":
        return  # websockets are not part of the protocol; the server closes the connection
    endpoint.install_sigterm()  # no-op after the first time, or off the main thread
    method, path = scope["method"], scope["path"]
    if not path.endswith("/start"):
        if method in ("GET", "HEAD") and path in wire.HEALTH_PATHS:
            await _json(send, 200, wire.HEALTH_BODY)
        else:
            await _error(send, wire.BadRequest(404, "not_found", "POST {url}/start"))
        return
    if method != "POST":
        await _error(send, wire.BadRequest(405, "method_not_allowed", "POST {url}/start"))
        return
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    try:
        body = await _read_body(receive)
        request = wire.parse_start(body, headers)
    except wire.BadRequest as exc:
        await _error(send, exc)
        return
    if endpoint.stopping:
        await _error(send, wire.BadRequest(503, "stopping", "the endpoint is shutting down"))
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.encode(), v.encode()) for k, v in wire.STREAM_HEADERS],
        }
    )
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))

    async def write(event: bytes) -> None:
        if gone.is_set():
            raise ConnectionError("the client went away")
        await send({"type": "http.response.body", "body": event, "more_body": True})

    try:
        await endpoint.stream_async(request, write, gone)
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except (ConnectionError, OSError):
        pass  # the client hung up; the function's context is cancelled already
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise wire.BadRequest(400, "invalid_body", "the client left before the body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > wire.MAX_BODY_BYTES:
            raise wire.BadRequest(413, "body_too_large", "the body is too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _error(send: Send, error: wire.BadRequest) -> None:
    await _json(send, error.status, error.body())


async def _json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(endpoint: Endpoint, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            endpoint.install_sigterm()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            endpoint.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
