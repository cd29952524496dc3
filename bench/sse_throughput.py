"""SSE throughput: bare httpx-sse ``iter_sse`` vs the kit's frame reader, on one loopback server.

A server on 127.0.0.1 streams 50,000 small valid protocol-v1 events (init, outputs, done). The
baseline only parses SSE (httpx-sse); the kit also enforces the event-size cap and deadlines and
base64-decodes, JSON-parses and validates every frame. Runs are interleaved and the best of each
is kept. Goal: kit >= 0.5x bare (sync; async printed for information).

    .venv/bin/python bench/sse_throughput.py [--events N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from httpx_sse import aconnect_sse, connect_sse

from adapters.sse_client import (
    AsyncRunnerClient,
    RunnerClient,
    StartLimits,
    StartTarget,
)
from core.models import PoolKey
from core.protocol import DoneFrame

GOAL = 0.5


def stream_body(events: int) -> bytes:
    """``events`` message events: init, outputs, done."""

    def event(frame: dict[str, Any]) -> bytes:
        data = base64.b64encode(json.dumps(frame, separators=(",", ":")).encode())
        return b"data: " + data + b"\n\n"

    parts = [event({"v": 1, "type": "init", "runner_id": "bench"})]
    parts += [event({"type": "output", "data": {"i": i}}) for i in range(events - 2)]
    parts.append(event({"type": "done", "output": {"n": events}, "state": {"count": 1}}))
    return b"".join(parts)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(self.body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(self.body)
        self.close_connection = True


def serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (_Handler,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# Each reader returns (events read, seconds spent streaming); client setup is not timed.


def bare_sync(url: str) -> tuple[int, float]:
    count = 0
    with httpx.Client(trust_env=False) as client:
        started = time.thread_time()
        with connect_sse(client, "POST", f"{url}/start", json={"probe": True}) as source:
            for _ in source.iter_sse():
                count += 1
        return count, time.thread_time() - started


def kit_sync(url: str) -> tuple[int, float]:
    count = 0
    with RunnerClient(StartLimits()) as client:
        started = time.thread_time()
        with client.start(_target(url), {"protocol_version": 1}) as frames:
            for frame in frames:
                count += 1
                last = frame
        elapsed = time.thread_time() - started
    assert isinstance(last, DoneFrame)
    return count, elapsed


def bare_async(url: str) -> tuple[int, float]:
    async def main() -> tuple[int, float]:
        count = 0
        async with httpx.AsyncClient(trust_env=False) as client:
            started = time.thread_time()
            async with aconnect_sse(client, "POST", f"{url}/start", json={}) as source:
                async for _ in source.aiter_sse():
                    count += 1
            return count, time.thread_time() - started

    return asyncio.run(main())


def kit_async(url: str) -> tuple[int, float]:
    async def main() -> tuple[int, float]:
        count = 0
        async with AsyncRunnerClient(StartLimits()) as client:
            started = time.thread_time()
            async with client.start(_target(url), {"protocol_version": 1}) as frames:
                async for _ in frames:
                    count += 1
            return count, time.thread_time() - started

    return asyncio.run(main())


def _target(url: str) -> StartTarget:
    return StartTarget(
        url=url,
        headers={},
        pool=PoolKey(namespace="bench", runner_name="sse"),
        total_slots=1,
        request_lifespan=60,
        allow_private_network=True,
    )


def measure(
    pairs: list[tuple[str, Callable[[str], tuple[int, float]]]], url: str, events: int, repeats: int
) -> dict[str, float]:
    """Best events/s of each reader, runs interleaved so both see the same machine state."""
    best = {name: 0.0 for name, _ in pairs}
    for _ in range(repeats):
        for name, read in pairs:
            count, elapsed = read(url)
            if count != events:
                raise SystemExit(f"{name}: read {count} events, expected {events}")
            best[name] = max(best[name], count / elapsed)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    server, url = serve(stream_body(args.events))
    try:
        rates = measure(
            [
                ("bare httpx-sse iter_sse", bare_sync),
                ("kit RunnerClient", kit_sync),
                ("bare httpx-sse aiter_sse", bare_async),
                ("kit AsyncRunnerClient", kit_async),
            ],
            url,
            args.events,
            args.repeats,
        )
    finally:
        server.shutdown()
        server.server_close()
    print(f"sse_throughput: {args.events} events per stream, best of {args.repeats}")
    for name, rate in rates.items():
        print(f"  {name:<26} {rate:>12,.0f} events/s")
    sync_ratio = rates["kit RunnerClient"] / rates["bare httpx-sse iter_sse"]
    async_ratio = rates["kit AsyncRunnerClient"] / rates["bare httpx-sse aiter_sse"]
    verdict = "meets" if sync_ratio >= GOAL else "MISSES"
    print(f"  ratio kit/bare (sync):  {sync_ratio:.2f}x  ({verdict} the {GOAL}x goal)")
    print(f"  ratio kit/bare (async): {async_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
