"""A moto server in its own process on loopback: what tests, the local stack and the demo use.

A separate process (not ``ThreadedMotoServer``) so concurrent clients are not serialized by the
test process's GIL.

DynamoDB makes every conditional write and every transaction atomic; moto's server does not (its
request threads check a condition and write without a lock, so two racing conditional updates can
both pass). The server here runs moto's own WSGI app behind a lock for DynamoDB requests only, so
concurrency tests exercise the guarantees the real service gives. SQS requests are not serialized
(a long poll would hold the lock).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, Final, Self

from infra.serving import LOOPBACK, Service, free_port, http_url

LOCAL_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer(Service):
    """Start ``moto.server`` on 127.0.0.1 and stop it on exit."""

    def __init__(self, port: int = 0, start_timeout_s: float = 30.0) -> None:
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return http_url(LOOPBACK, self.port)

    def environ(self) -> dict[str, str]:
        """Environment that points boto3 (and child processes) at this server."""
        return {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL_DYNAMODB": self.url,
            "AWS_ENDPOINT_URL_SQS": self.url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.url,
        }

    def start(self) -> Self:
        """Start the server process and wait until it answers."""
        env = {**os.environ, **LOCAL_CREDENTIALS}
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "infra.moto_server", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not start on {self.url}")

    def stop(self) -> None:
        """Terminate the server process (killed after 10 s)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def _serialized_dynamodb(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware: one DynamoDB request at a time, whole response produced under the lock."""
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            result = app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]

    return wrapped


def _exit_with_parent() -> None:
    """Stop when the process that started us is gone (killed -9, crashed): never linger."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(host: str, port: int) -> None:
    """Run moto's server app (DynamoDB serialized) until terminated."""
    import signal

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _exit_with_parent()
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host,
        port,
        _serialized_dynamodb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="moto server with atomic DynamoDB requests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.host, args.port)
