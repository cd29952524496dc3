"""The local API Gateway: HTTP on loopback to REST (v1) proxy events for the API function.

As ``AWS::Serverless::Api`` with ``ANY /{proxy+}`` does: each request becomes one proxy event,
the handler's answer (``statusCode``, headers, multi-value headers, base64 bodies) goes back as
HTTP. A handler that raises is API Gateway's 502 ``Internal server error``; requests the gateway
itself refuses (bad ``Content-Length``, over 10 MiB, an unknown method) are JSON errors too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from adapters.clock import SYSTEM_CLOCK
from core.ports import Clock
from infra.local.lambda_runtime import ACCOUNT_ID, STAGE
from infra.serving import serve_in_thread

PROXIED_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
MAX_BODY_BYTES: Final = 10 * 1024 * 1024
"""API Gateway's payload limit."""

Invoke = Callable[[dict[str, Any]], Any]
"""Sends one proxy event to the API function; returns its answer."""


def api_gateway_event(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    stage: str = STAGE,
    clock: Clock = SYSTEM_CLOCK,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for ``ANY /{proxy+}``, as the deployed API sends."""
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    text: str | None
    try:
        text, is_b64 = (body.decode("utf-8") if body else None), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{parts.path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(clock.now().timestamp() * 1000),
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "domainName": headers.get("Host", "127.0.0.1"),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


def _json_answer(status: int, body: Any, headers: Mapping[str, str] = {}) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **headers},
        "body": json.dumps(body),
    }


BAD_GATEWAY: Final = _json_answer(502, {"message": "Internal server error"})
"""What API Gateway answers when the integration raises."""


class _ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a body shorter than its Content-Length ends, it does not hang
    server: ApiServer

    def _proxy(self) -> None:
        body = self._read_body()
        if body is None:
            return
        event = api_gateway_event(
            self.command,
            self.path,
            {k: v for k, v in self.headers.items()},
            body,
            source_ip=self.client_address[0],
            clock=self.server.clock,
        )
        try:
            answer = self.server.invoke(event)
        except Exception:
            self.server.log(f"api handler raised:\n{traceback.format_exc()}")
            answer = BAD_GATEWAY
        self._answer(answer)

    def _read_body(self) -> bytes | None:
        """The body, or None after answering 400 for a bad or unmet Content-Length."""
        raw = self.headers.get_all("Content-Length") or []
        if not raw:
            return b""
        text = raw[0].strip()
        if len(set(raw)) > 1 or not (text.isascii() and text.isdigit()):
            self._reject(400, "bad_content_length", "Content-Length must be one integer")
            return None
        length = int(text)
        if length > MAX_BODY_BYTES:
            self._reject(413, "payload_too_large", f"bodies are at most {MAX_BODY_BYTES} bytes")
            return None
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:  # includes the socket timeout
            body = b""
        if len(body) != length:
            self._reject(400, "bad_content_length", "the body is shorter than declared")
            return None
        return body

    def _reject(
        self, status: int, code: str, message: str, headers: Mapping[str, str] = {}
    ) -> None:
        self.close_connection = True  # what is left of the request cannot be trusted
        body = {"group": "request", "code": code, "message": message, "metadata": {}}
        self._answer(_json_answer(status, body, headers))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, unknown method, headers too long) as
        # JSON like every other answer, never an HTML page.
        if code == 501:  # a method nobody handles: TRACE, QUERY, CONNECT, ...
            self._reject(
                405,
                "method_not_allowed",
                f"method {self.command!r} is not supported",
                {"Allow": ", ".join(sorted(PROXIED_METHODS))},
            )
            return
        with contextlib.suppress(Exception):
            self._reject(code, "bad_request", message or "bad request")

    def _answer(self, answer: Mapping[str, Any]) -> None:
        raw = answer.get("body") or ""
        data = base64.b64decode(raw) if answer.get("isBase64Encoded") else str(raw).encode("utf-8")
        self.send_response(int(answer.get("statusCode", 200)))
        headers: dict[str, list[str]] = {
            k: [str(v)] for k, v in (answer.get("headers") or {}).items()
        }
        for k, values in (answer.get("multiValueHeaders") or {}).items():
            headers[k] = [str(v) for v in values]
        for k, values in headers.items():
            if k.lower() not in ("content-length", "connection"):
                for v in values:
                    self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            self.server.log(f"api  {self.address_string()} {format % args}")


class ApiServer(ThreadingHTTPServer):
    """The local API's listener: a backlog that holds a burst (``socketserver``'s is 5)."""

    request_queue_size = 512
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        invoke: Invoke,
        *,
        clock: Clock,
        log: Callable[[str], None],
        quiet: bool = False,
    ) -> None:
        self.invoke = invoke
        self.clock = clock
        self.log = log
        self.quiet = quiet
        super().__init__(address, _ApiRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve(self) -> threading.Thread:
        """Serve from a daemon thread until ``close()``."""
        return serve_in_thread(self, f"local-api-http:{self.port}", poll_interval=0.5)

    def close(self) -> None:
        """Stop serving and release the port."""
        self.shutdown()
        self.server_close()
