"""Loopback HTTP for the local-stack tests: one JSON request, and polling until a check holds."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

WAIT_S = 30.0


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout_s: float = WAIT_S,
    *,
    tick: Callable[[], None] | None = None,
    describe: Callable[[], str] | None = None,
    pause_s: float = 0.05,
) -> Any:
    """Poll ``check`` until it returns something truthy (a timeout fails, never a timing claim);
    ``tick`` runs before each check, ``describe`` says what was seen when it gives up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        value = check()
        if value:
            return value
        time.sleep(pause_s)
    seen = f": {describe()}" if describe is not None else ""
    pytest.fail(f"gave up waiting for {what}{seen}")


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request with a JSON body: (status, headers, JSON answer or ``None``)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw else None
