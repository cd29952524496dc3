"""What the demo tells its story with: readable output lines, the local API over HTTP, polling."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------- output


class Out:
    """Readable lines; counts expectations that failed."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.failed: list[str] = []
        self.skipped: list[str] = []

    def step(self, n: int, total: int, title: str) -> None:
        self.write(f"\n[{n}/{total}] {title}")

    def line(self, text: str) -> None:
        self.write(f"      {text}")

    def ok(self, text: str) -> None:
        self.write(f"   ok {text}")

    def bad(self, text: str) -> None:
        self.failed.append(text)
        self.write(f"  BAD {text}")

    def skip(self, text: str) -> None:
        self.skipped.append(text)
        self.write(f" SKIP {text}")


def brief(value: Any, limit: int = 110) -> str:
    """``value`` as compact JSON, cut to ``limit`` characters."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pool_error_text(error: Any) -> str:
    """``serverless_http_error 503``, ``pool_error: serverless_connection_error/content_type``."""
    if not isinstance(error, dict):
        return str(error)
    prefix = "pool_error: " if error.get("code") == "pool_error" else ""
    inner = error
    while isinstance(inner.get("error"), dict):  # pool_error{error: {error?: RunnerPoolError}}
        inner = inner["error"]
    code = str(inner.get("code"))
    if "reason" in inner:
        return f"{prefix}{code}/{inner['reason']}"
    if "status_code" in inner:
        return f"{prefix}{code} {inner['status_code']}"
    return prefix + code


# ---------------------------------------------------------------------------- HTTP


@dataclass
class Answer:
    """One HTTP answer of the API: status, decoded body, headers, how long it took."""

    status: int
    body: Any
    headers: dict[str, str]
    seconds: float

    @property
    def fields(self) -> dict[str, Any]:
        """The body when it is a JSON object, else ``{}``."""
        return self.body if isinstance(self.body, dict) else {}

    def has(self, status: int, /, **fields: Any) -> bool:
        """True if the answer has this status and these body fields."""
        return self.status == status and all(self.fields.get(k) == v for k, v in fields.items())


@dataclass
class Api:
    """The local API over plain HTTP (urllib: what any client of the deployed API does)."""

    base: str
    calls: int = field(default=0)

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        started = time.monotonic()
        self.calls += 1
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
                raw, status, headers = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw, status, headers = err.read(), err.code, dict(err.headers)
        seconds = time.monotonic() - started
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return Answer(status, parsed, headers, seconds)


def wait_until(check: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
    """The first truthy value of ``check()``, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every_s)
