"""The local stack: moto, the template's tables and queues, and every function wired as deployed.

- a moto server (its own process) with every table and queue of the template;
- the API over HTTP (default http://127.0.0.1:8080) through ``functions.api.app.lambda_handler``
  (``infra.local.http``);
- SQS pollers (2 by default, so batches run concurrently as in Lambda) that feed
  ``functions.actor_host.app.lambda_handler`` like Lambda's event source mapping
  (``infra.local.host_loop``), with a context whose remaining time counts down from the
  function's ``Timeout``;
- a ticker for ``functions.pool_manager.app.lambda_handler`` every few seconds
  (``infra.local.scheduler``);
- the dev runner endpoint (``infra.dev_runner.DevRunner``) with its fault switch.

Handlers read their configuration through ``Settings``; ``LocalStack.start`` sets the same
environment variables the template sets (resource names resolved to the local ones) before any
handler builds its ``deps()``, and restores the environment on ``stop``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Self

from adapters.clock import SYSTEM_CLOCK
from core.ports import Clock
from infra.dev_runner import DevRunner
from infra.local.host_loop import SqsPoller
from infra.local.http import ApiServer
from infra.local.lambda_runtime import (
    ACTOR_HOST_FUNCTION,
    API_FUNCTION,
    POOL_MANAGER_FUNCTION,
    REGION,
    Functions,
    Handler,
    physical_name,
    reset_cached_deps,
)
from infra.local.scheduler import Ticker
from infra.moto_server import LOCAL_CREDENTIALS, MotoServer
from infra.serving import Service, port_free
from infra.template import create_queues, create_tables, function_specs, queue_specs, table_specs


def default_dev_port(api_port: int) -> int:
    """The dev runner's port: the API's + 1 (8080 -> 8081), any free port when the API's is 0."""
    return api_port + 1 if api_port else 0


class PortInUse(Exception):
    """A port ``runner-kit local`` must listen on is taken (one line, no traceback)."""

    def __init__(self, host: str, port: int, what: str, option: str, by: str = "") -> None:
        self.host, self.port, self.what, self.option = host, port, what, option
        taken = f"already used {by}" if by else "in use"
        super().__init__(
            f"port {port} on {host} ({what}) is {taken}; pick another with {option} N"
            + (" (make local PORT=N)" if option == "--port" else "")
        )


_WALKTHROUGH: Final = r"""
curl -sS -w '\n' -X PUT $API/runner-configs/demo/echo -H 'content-type: application/json' \
  -d "{\"url\": \"$DEV\", \"allow_private_network\": true, \"request_lifespan\": 60}"
curl -sS -w '\n' -X POST $API/actors -H 'content-type: application/json' \
  -d '{"actor_id": "a1", "namespace": "demo", "runner_name": "echo"}'
curl -sS -w '\n' -X POST "$API/actors/a1/messages?wait=true" -H 'content-type: application/json' \
  -d '{"input": 1}'                                   # 200, status succeeded
curl -sS -w '\n' -X POST $DEV/_control/fault -d '{"fault": "http_503"}'   # break the endpoint
curl -sS -w '\n' -X POST "$API/actors/a1/messages?wait=true" -H 'content-type: application/json' \
  -d '{"input": 2}'                        # about 1 s later: 503 actor_runner_failed
.venv/bin/runner-kit pools --api $API --namespace demo    # the pool's active error
.venv/bin/runner-kit actors --api $API --namespace demo
curl -sS -w '\n' -X POST $DEV/_control/fault -d '{"fault": null}'         # repair it
""".strip("\n")


def walkthrough(api_url: str, dev_url: str) -> str:
    """Shell lines that try the stack at ``api_url`` with the dev runner at ``dev_url``.

    The README shows it for the default ports; a test runs it against a real stack.
    """
    return f"API={api_url}; DEV={dev_url}\n{_WALKTHROUGH}"


class LocalStack(Service):
    """Everything ``runner-kit local`` runs, as a context manager for the demo and tests."""

    def __init__(
        self,
        *,
        api_port: int = 8080,
        host: str = "127.0.0.1",
        tick_s: float = 5.0,
        poll_wait_s: int = 1,
        pollers: int = 2,
        dev_runner: bool = True,
        dev_runner_options: Mapping[str, Any] | None = None,
        dev_runner_port: int | None = None,
        quiet: bool = False,
        environ: Mapping[str, str] | None = None,
        log: Callable[[str], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.host = host
        self.api_port = api_port
        self.tick_s = tick_s
        self.poll_wait_s = poll_wait_s
        self.pollers = max(1, pollers)
        self.quiet = quiet
        self.clock = clock
        self.extra_environ = dict(environ or {})
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._want_dev_runner = dev_runner
        self._dev_runner_options = dict(dev_runner_options or {})
        # A stable address next to the API's, so the README's walkthrough works as written.
        if dev_runner_port is None:
            dev_runner_port = int(self._dev_runner_options.get("port", default_dev_port(api_port)))
        self.dev_runner_port = dev_runner_port
        self._dev_runner_options["port"] = dev_runner_port
        self.functions = Functions(function_specs(), clock, handlers)
        self.moto = MotoServer()
        self.dev_runner: DevRunner | None = None
        self.sqs: Any = None
        self.table_names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.environ: dict[str, str] = {}
        self.api_server: ApiServer | None = None
        self.poller: SqsPoller | None = None
        self._stop = threading.Event()
        self.ticker = Ticker(
            lambda event: self.invoke(POOL_MANAGER_FUNCTION, event),
            tick_s,
            stop=self._stop,
            log=self._log,
        )
        self._saved_env: dict[str, str | None] = {}
        self._threads: list[threading.Thread] = []

    # -- urls and counts

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def dev_runner_url(self) -> str | None:
        return self.dev_runner.url if self.dev_runner is not None else None

    @property
    def batches(self) -> int:
        """Batches the actor host has been invoked with."""
        return self.poller.batches if self.poller is not None else 0

    @property
    def ticks(self) -> int:
        """Scheduled pool manager invocations so far."""
        return self.ticker.ticks

    # -- lifecycle

    def start(self) -> Self:
        """Start moto, create the template's resources, set the env, start every loop."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.check_ports()
        self.moto.start()
        self.sqs = self._create_resources()
        self._set_environ()
        if self._want_dev_runner:
            self.dev_runner = DevRunner(**self._dev_runner_options).start()
        self.api_server = ApiServer(
            (self.host, self.api_port),
            lambda event: self.invoke(API_FUNCTION, event),
            clock=self.clock,
            log=self._log,
            quiet=self.quiet,
        )
        self.api_port = self.api_server.port
        self._threads.append(self.api_server.serve())
        spec = self.functions.specs[ACTOR_HOST_FUNCTION]
        if spec.sqs_queue is None:
            raise ValueError(f"template.yaml: {ACTOR_HOST_FUNCTION} has no SQS event")
        self.poller = SqsPoller(
            spec,
            self.queue_urls[spec.sqs_queue],
            self.sqs,
            lambda event: self.invoke(ACTOR_HOST_FUNCTION, event),
            stop=self._stop,
            log=self._log,
            poll_wait_s=self.poll_wait_s,
        )
        # Like the event source mapping, several batches may run at once; SQS FIFO never hands
        # out a group's next message while an earlier one of that group is in flight.
        for n in range(self.pollers):
            self._spawn(f"sqs-poller-{n}", self.poller.run)
        self._spawn("pool-manager-ticker", self.ticker.run)

    def _create_resources(self) -> Any:
        """The template's tables and queues on moto; the SQS client the pollers use."""
        import boto3

        creds = {
            "endpoint_url": self.moto.url,
            "region_name": REGION,
            "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
        }
        self.table_names = {lid: physical_name(lid) for lid in table_specs()}
        create_tables(boto3.client("dynamodb", **creds), self.table_names)
        sqs = boto3.client("sqs", **creds)
        self.queue_urls = create_queues(sqs, {lid: physical_name(lid) for lid in queue_specs()})
        return sqs

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"local-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def check_ports(self) -> None:
        """Raise ``PortInUse`` before anything starts if a fixed port is taken."""
        wanted = [("API", "--port", self.api_port)]
        if self._want_dev_runner:
            wanted.append(("dev runner", "--dev-port", self.dev_runner_port))
        fixed = [w for w in wanted if w[2]]
        if len(fixed) == 2 and fixed[0][2] == fixed[1][2]:
            raise PortInUse(self.host, fixed[1][2], fixed[1][0], fixed[1][1], "by the API")
        for what, option, port in fixed:
            if not port_free(self.host, port):
                raise PortInUse(self.host, port, what, option)

    def stop(self) -> None:
        """Stop the loops, the API, the dev runner and moto; restore the environment."""
        self._stop.set()
        if self.api_server is not None:
            self.api_server.close()
            self.api_server = None
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        if self.dev_runner is not None:
            with contextlib.suppress(Exception):
                self.dev_runner.stop()
            self.dev_runner = None
        self.moto.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        reset_cached_deps()

    def wait(self) -> None:
        """Block until Ctrl-C (or ``stop()`` from another thread)."""
        with contextlib.suppress(KeyboardInterrupt):
            while not self._stop.wait(0.5):
                pass

    def describe(self) -> str:
        """The URLs and names a user needs, one per line."""
        lines = [
            f"API            {self.api_url}   (API Gateway-shaped events -> functions.api.app)",
            f"moto server    {self.moto.url}   (DynamoDB + SQS; AWS_ENDPOINT_URL_* point here)",
        ]
        if self.dev_runner is not None:
            lines.append(f"dev runner     {self.dev_runner.url}   (POST /start)")
            lines.append(
                f"fault switch   POST {self.dev_runner.url}/_control/fault "
                '{"fault": "http_503"}  ({"fault": null} heals it)'
            )
        queue = self.queue_urls.get("ActorMessagesQueue", "")
        lines.append(f"actor queue    {queue}")
        lines.append(f"pool manager   every {self.tick_s:g}s")
        return "\n".join(lines)

    def walkthrough(self) -> str:
        """The README's walkthrough with this stack's URLs: copy-paste it as printed."""
        return walkthrough(self.api_url, self.dev_runner_url or "<no dev runner>")

    # -- functions

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call a function's handler as Lambda would (one event, a fresh context)."""
        return self.functions.invoke(logical_id, event)

    def poll_once(self) -> int:
        """One event source mapping round for the actor host (see ``SqsPoller.poll_once``)."""
        if self.poller is None:
            raise RuntimeError("start() the stack first")
        return self.poller.poll_once()

    def tick_once(self) -> Any:
        """One scheduled pool manager invocation."""
        return self.ticker.tick_once()

    def _set_environ(self) -> None:
        env: dict[str, str] = {**self.moto.environ(), "AWS_REGION": REGION}
        physical = {**self.table_names, **self.queue_urls}
        for spec in self.functions.specs.values():
            env.update(spec.resource_environ(physical))
            for name, value in spec.environment.items():
                if isinstance(value, str | int | float | bool):
                    env.setdefault(name, str(value))
        env.pop("POWERTOOLS_SERVICE_NAME", None)  # differs per function; one process here
        if self.quiet:
            env["POWERTOOLS_LOG_LEVEL"] = "ERROR"
            env["POWERTOOLS_METRICS_DISABLED"] = "true"
        env.update(self.extra_environ)
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self.environ = env
        reset_cached_deps()
