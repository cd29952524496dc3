"""SSE throughput: bare httpx-sse ``iter_sse`` vs the kit's frame reader, on one loopback server.

A server on 127.0.0.1 streams 50,000 small valid protocol-v1 events (init, outputs, done). The
baseline only parses SSE (httpx-sse); the kit also enforces the event-size cap and deadlines and
base64-decodes, JSON-parses and validates every frame. Runs are interleaved and the best of each
is kept. Rates use the reading thread's CPU time (``time.thread_time``): on a shared machine
wall-clock time swings 2x with load, so it is printed beside, for reference only.
Goal: kit >= 0.5x bare (sync, CPU; async printed for information).

    .venv/bin/python bench/sse_throughput.py [--events N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from httpx_sse import aconnect_sse, connect_sse

from adapters.runner.attempt import StartLimits
from adapters.runner.client import AsyncRunnerClient, RunnerClient
from adapters.runner.transport import StartTarget
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


def _serve_forever(body: bytes, ports: Connection) -> None:
    handler = type("Handler", (_Handler,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    ports.send(server.server_address[1])
    server.serve_forever()


def serve(body: bytes) -> tuple[multiprocessing.Process, str]:
    """The server runs in its own process, so it never competes with the reader for the GIL."""
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=_serve_forever, args=(body, send), daemon=True)
    process.start()
    port = receive.recv()
    return process, f"http://127.0.0.1:{port}"


# Each reader returns (events read, CPU s, wall s) of the streaming; client setup is not timed.
Reading = tuple[int, float, float]


class Clock:
    """CPU time of this thread and wall time, since creation."""

    def __init__(self) -> None:
        self.cpu = time.thread_time()
        self.wall = time.perf_counter()

    def read(self) -> tuple[float, float]:
        return time.thread_time() - self.cpu, time.perf_counter() - self.wall


def bare_sync(url: str) -> Reading:
    count = 0
    with httpx.Client(trust_env=False) as client:
        clock = Clock()
        with connect_sse(client, "POST", f"{url}/start", json={"probe": True}) as source:
            for _ in source.iter_sse():
                count += 1
        return (count, *clock.read())


def kit_sync(url: str) -> Reading:
    count = 0
    with RunnerClient(StartLimits()) as client:
        clock = Clock()
        with client.start(_target(url), {"protocol_version": 1}) as frames:
            for frame in frames:
                count += 1
                last = frame
        cpu, wall = clock.read()
    assert isinstance(last, DoneFrame)
    return count, cpu, wall


def bare_async(url: str) -> Reading:
    async def main() -> Reading:
        count = 0
        async with httpx.AsyncClient(trust_env=False) as client:
            clock = Clock()
            async with aconnect_sse(client, "POST", f"{url}/start", json={}) as source:
                async for _ in source.aiter_sse():
                    count += 1
            return (count, *clock.read())

    return asyncio.run(main())


def kit_async(url: str) -> Reading:
    async def main() -> Reading:
        count = 0
        async with AsyncRunnerClient(StartLimits()) as client:
            clock = Clock()
            async with client.start(_target(url), {"protocol_version": 1}) as frames:
                async for _ in frames:
                    count += 1
            return (count, *clock.read())

    return asyncio.run(main())


def _target(url: str) -> StartTarget:
    pool = PoolKey(namespace="bench", runner_name="sse")
    return StartTarget(url, {}, pool, 1, 60, allow_private_network=True)  # 1 slot, 60 s


def measure(
    pairs: list[tuple[str, Callable[[str], Reading]]], url: str, events: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Best (CPU, wall) events/s of each reader, runs interleaved so all see the same load."""
    best = {name: (0.0, 0.0) for name, _ in pairs}
    for _ in range(repeats):
        for name, read in pairs:
            count, cpu, wall = read(url)
            if count != events:
                raise SystemExit(f"{name}: read {count} events, expected {events}")
            old_cpu, old_wall = best[name]
            best[name] = (max(old_cpu, count / cpu), max(old_wall, count / wall))
    return best


BARE_SYNC, KIT_SYNC = "bare httpx-sse iter_sse", "kit RunnerClient"
BARE_ASYNC, KIT_ASYNC = "bare httpx-sse aiter_sse", "kit AsyncRunnerClient"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    server, url = serve(stream_body(args.events))
    try:
        rates = measure(
            [
                (BARE_SYNC, bare_sync),
                (KIT_SYNC, kit_sync),
                (BARE_ASYNC, bare_async),
                (KIT_ASYNC, kit_async),
            ],
            url,
            args.events,
            args.repeats,
        )
    finally:
        server.terminate()
        server.join()
    print(f"sse_throughput: {args.events} events per stream, best of {args.repeats}")
    print(f"  {'reader':<26} {'events/s (CPU)':>15} {'events/s (wall)':>16}")
    for name, (cpu, wall) in rates.items():
        print(f"  {name:<26} {cpu:>15,.0f} {wall:>16,.0f}")

    def ratio(kit: str, bare: str, which: int) -> float:
        return rates[kit][which] / rates[bare][which]

    sync_cpu = ratio(KIT_SYNC, BARE_SYNC, 0)
    verdict = "meets" if sync_cpu >= GOAL else "MISSES"
    print(
        f"  ratio kit/bare sync:  {sync_cpu:.2f}x CPU ({verdict} the {GOAL}x goal), "
        f"{ratio(KIT_SYNC, BARE_SYNC, 1):.2f}x wall"
    )
    print(
        f"  ratio kit/bare async: {ratio(KIT_ASYNC, BARE_ASYNC, 0):.2f}x CPU, "
        f"{ratio(KIT_ASYNC, BARE_ASYNC, 1):.2f}x wall"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
