"""The local HTTP layer in front of the API behaves like a server: JSON errors, no hangs, bursts.

Raw sockets on loopback, so requests urllib would refuse to send reach the server as written.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from infra.local.stack import LocalStack
from tests.helpers.local import quiet_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with quiet_stack(tick_s=60.0, dev_runner=False) as running:
        yield running


def _exchange(
    stack: LocalStack, raw: bytes, *, half_close: bool = False
) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=60) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "CONNECT", "PROPFIND", "BREW"])
def test_unknown_methods_get_a_json_405(stack: LocalStack, method: str) -> None:
    status, headers, body = _exchange(
        stack, f"{method} /actors HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert status == 405
    assert headers["content-type"] == "application/json"
    assert "GET" in headers["allow"]
    assert json.loads(body)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("length", "sent", "status", "code"),
    [
        pytest.param("-1", b"", 400, "bad_content_length", id="negative"),
        pytest.param("abc", b"", 400, "bad_content_length", id="not_a_number"),
        pytest.param("1e3", b"", 400, "bad_content_length", id="float"),
        pytest.param("99999999999999999999", b"", 413, "payload_too_large", id="oversized"),
        pytest.param("100", b'{"url":', 400, "bad_content_length", id="shorter_than_declared"),
    ],
)
def test_a_bad_content_length_is_a_json_4xx_not_a_hang(
    stack: LocalStack, length: str, sent: bytes, status: int, code: str
) -> None:
    raw = (
        f"PUT /runner-configs/ns/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode() + sent
    got, headers, body = _exchange(stack, raw, half_close=True)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["code"] == code


def test_a_malformed_request_line_is_a_json_400(stack: LocalStack) -> None:
    status, headers, body = _exchange(stack, b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert headers["content-type"] == "application/json"
    assert status == 400
    assert json.loads(body)["code"] == "bad_request"


def test_a_burst_of_100_connections_is_held_and_answered(stack: LocalStack) -> None:
    assert stack.api_server is not None and stack.api_server.request_queue_size >= 100
    sockets = [
        socket.create_connection(("127.0.0.1", stack.api_port), timeout=60) for _ in range(100)
    ]
    answers: list[int] = []
    lock = threading.Lock()

    def ask(sock: socket.socket) -> None:
        with sock:
            sock.sendall(
                b"GET /runner-configs?namespace=burst HTTP/1.1\r\n"
                b"Host: x\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        with lock:
            answers.append(int(data.split(b" ", 2)[1]))

    threads = [threading.Thread(target=ask, args=(s,)) for s in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [200] * 100
