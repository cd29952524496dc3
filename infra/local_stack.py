"""``runner-kit local``: the deployed stack, embedded on loopback, built from ``template.yaml``.

- a moto server (its own process) with every table and queue of the template;
- the API over HTTP (default http://127.0.0.1:8080) through ``functions.api.app.lambda_handler``
  with API Gateway REST proxy events, as ``AWS::Serverless::Api`` sends them;
- SQS pollers (2 by default, so batches run concurrently as in Lambda) that feed
  ``functions.actor_host.app.lambda_handler`` like Lambda's event source mapping: the template's
  batch size, the queue's own visibility timeout and redrive policy, a
  context whose remaining time counts down from the function's ``Timeout``, and partial batch
  failures (only the ids in ``batchItemFailures`` stay in the queue; a raised error keeps the
  whole batch);
- a ticker for ``functions.pool_manager.app.lambda_handler`` every few seconds (the template's
  schedule is once a minute; locally we want to see recovery quickly);
- the dev runner endpoint (``infra.dev_runner.DevRunner``) with its fault switch.

Handlers read their configuration through ``Settings``; ``LocalStack.start`` sets the same
environment variables the template sets (resource names resolved to the local ones) before any
handler builds its ``deps()``, and restores the environment on ``stop``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from infra.moto_server import LOCAL_CREDENTIALS, MotoServer
from infra.template import (
    create_queues,
    create_tables,
    load_template,
    queue_specs,
    resolve,
    resources,
    table_specs,
)

REGION: Final = LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]
ACCOUNT_ID: Final = "123456789012"
STAGE: Final = "local"
API_FUNCTION: Final = "ApiFunction"
ACTOR_HOST_FUNCTION: Final = "ActorHostFunction"
POOL_MANAGER_FUNCTION: Final = "PoolManagerFunction"

Handler = Callable[[Any, Any], Any]


# ---------------------------------------------------------------------------- template reading


@dataclass(frozen=True)
class FunctionSpec:
    """What the local stack needs of one ``AWS::Serverless::Function``."""

    logical_id: str
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]
    sqs_queue: str | None = None
    batch_size: int = 10

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0].replace("/", ".")

    @property
    def attr(self) -> str:
        return self.handler.rpartition(".")[2]

    def load(self) -> Handler:
        """Import the handler (lazily: the function may still be in progress)."""
        handler: Handler = getattr(importlib.import_module(self.module), self.attr)
        return handler


def function_specs(template: Mapping[str, Any] | None = None) -> dict[str, FunctionSpec]:
    """Every function of the template, with Globals merged and parameter defaults resolved."""
    template = template if template is not None else load_template()
    defaults = template.get("Globals", {}).get("Function", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, props in resources(template, "AWS::Serverless::Function").items():
        env = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        queue, batch = None, 10
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "SQS":
                ref = event["Properties"]["Queue"]
                queue = ref["Fn::GetAtt"][0] if isinstance(ref, dict) else None
                batch = int(resolve(template, event["Properties"].get("BatchSize", 10)))
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            handler=props.get("Handler", defaults.get("Handler", "")),
            timeout_s=int(resolve(template, props.get("Timeout", defaults.get("Timeout", 3)))),
            memory_mb=int(
                resolve(template, props.get("MemorySize", defaults.get("MemorySize", 128)))
            ),
            environment={k: resolve(template, v) for k, v in env.items()},
            sqs_queue=queue,
            batch_size=batch,
        )
    return specs


# ---------------------------------------------------------------------------- Lambda shapes


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before this invocation's timeout."""
        elapsed = time.monotonic() - self.started
        return max(0, int((self.timeout_s - elapsed) * 1000))


def api_gateway_event(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    source_ip: str = "127.0.0.1",
    stage: str = STAGE,
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
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "domainName": headers.get("Host", "127.0.0.1"),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping sends for ``messages`` (ReceiveMessage)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": attr.get("StringValue"),
                        "binaryValue": attr.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": attr["DataType"],
                    }
                    for name, attr in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def failed_ids(response: Any, records: list[dict[str, Any]]) -> set[str]:
    """Message ids to keep, from a ``ReportBatchItemFailures`` answer.

    As Lambda does: no answer (or no failures) means all succeeded; an answer Lambda cannot
    read (not a dict, unknown or empty id) fails the whole batch.
    """
    every = {r["messageId"] for r in records}
    if response is None:
        return set()
    if not isinstance(response, dict):
        return every
    failures = response.get("batchItemFailures") or []
    ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    if len(ids) != len(failures) or not ids <= every:
        return every
    return {i for i in ids if isinstance(i, str)}


# ---------------------------------------------------------------------------- ports


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


def port_free(host: str, port: int) -> bool:
    """True if a server could listen on ``host:port`` now (with SO_REUSEADDR, as ours do)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


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


# ---------------------------------------------------------------------------- the stack


class LocalStack:
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
    ) -> None:
        self.host = host
        self.api_port = api_port
        self.tick_s = tick_s
        self.poll_wait_s = poll_wait_s
        self.pollers = max(1, pollers)
        self._count_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self.quiet = quiet
        self.extra_environ = dict(environ or {})
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._want_dev_runner = dev_runner
        self._dev_runner_options = dict(dev_runner_options or {})
        # A stable address next to the API's, so the README's walkthrough works as written.
        if dev_runner_port is None:
            dev_runner_port = int(self._dev_runner_options.get("port", default_dev_port(api_port)))
        self.dev_runner_port = dev_runner_port
        self._dev_runner_options["port"] = dev_runner_port
        self.functions = function_specs()
        self.moto = MotoServer()
        self.dev_runner: Any = None
        self.table_names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.environ: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None
        self._handlers: dict[str, Handler] = {}
        self._handlers_lock = threading.Lock()
        self._missing: set[str] = set()
        self.ticks = 0
        self.batches = 0

    # -- urls

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def dev_runner_url(self) -> str | None:
        return str(self.dev_runner.url) if self.dev_runner is not None else None

    # -- lifecycle

    def start(self) -> LocalStack:
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
        import boto3

        creds = {
            "endpoint_url": self.moto.url,
            "region_name": REGION,
            "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": LOCAL_CREDENTIALS["AWS_SESSION_TOKEN"],
        }
        dynamodb = boto3.client("dynamodb", **creds)
        sqs = boto3.client("sqs", **creds)
        self.table_names = {lid: f"runner-kit-{STAGE}-{_kebab(lid)}" for lid in table_specs()}
        create_tables(dynamodb, self.table_names)
        queue_names = {lid: f"runner-kit-{STAGE}-{_kebab(lid)}" for lid in queue_specs()}
        self.queue_urls = create_queues(sqs, queue_names)
        self._sqs = sqs
        self._set_environ()
        if self._want_dev_runner:
            self.dev_runner = _start_dev_runner(self._log, self._dev_runner_options)
        self._start_api()
        # Like the event source mapping, several batches may run at once; SQS FIFO never hands
        # out a group's next message while an earlier one of that group is in flight.
        for n in range(self.pollers):
            self._spawn(f"sqs-poller-{n}", self._poll_loop)
        self._spawn("pool-manager-ticker", self._tick_loop)

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
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
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
        _reset_cached_deps()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
        else:
            lines.append("dev runner     not available (infra/dev_runner.py not built yet)")
        queue = self.queue_urls.get("ActorMessagesQueue", "")
        lines.append(f"actor queue    {queue}")
        lines.append(f"pool manager   every {self.tick_s:g}s")
        return "\n".join(lines)

    def walkthrough(self) -> str:
        """The README's walkthrough with this stack's URLs: copy-paste it as printed."""
        return walkthrough(self.api_url, self.dev_runner_url or "<no dev runner>")

    # -- environment

    def _set_environ(self) -> None:
        env: dict[str, str] = {**self.moto.environ(), "AWS_REGION": REGION}
        physical = {**self.table_names, **self.queue_urls}
        for spec in self.functions.values():
            for name, value in spec.environment.items():
                if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in physical:
                    env[name] = physical[value["Ref"]]
                elif isinstance(value, str | int | float | bool):
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
        _reset_cached_deps()

    # -- handlers

    def handler(self, logical_id: str) -> Handler:
        """The function's handler, imported on first use."""
        with self._handlers_lock:
            if logical_id not in self._handlers:
                self._handlers[logical_id] = self.functions[logical_id].load()
            return self._handlers[logical_id]

    def available(self, logical_id: str) -> bool:
        """True if the function's handler imports (it may not be built yet); says so once."""
        try:
            self.handler(logical_id)
        except ModuleNotFoundError as exc:
            spec = self.functions[logical_id]
            if exc.name is None or not spec.module.startswith(exc.name):
                raise
            if logical_id not in self._missing:
                self._missing.add(logical_id)
                self._log(f"{logical_id}: {spec.module} is not built yet; skipping it")
            return False
        return True

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call a handler as Lambda would: one event, a fresh context with the timeout."""
        spec = self.functions[logical_id]
        context = LambdaContext(
            function_name=f"runner-kit-{STAGE}-{_kebab(logical_id)}",
            memory_limit_in_mb=spec.memory_mb,
            timeout_s=spec.timeout_s,
        )
        return self.handler(logical_id)(event, context)

    # -- API over HTTP

    def _start_api(self) -> None:
        stack = self

        class ApiRequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # a body shorter than its Content-Length ends, it does not hang
            max_body_bytes = 10 * 1024 * 1024  # API Gateway's payload limit

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
                )
                try:
                    answer = stack.invoke(API_FUNCTION, event)
                except Exception:
                    stack._log(f"api handler raised:\n{traceback.format_exc()}")
                    answer = {
                        "statusCode": 502,
                        "headers": {"Content-Type": "application/json"},
                        "body": json.dumps({"message": "Internal server error"}),
                    }
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
                if length > self.max_body_bytes:
                    self._reject(
                        413, "payload_too_large", f"bodies are at most {self.max_body_bytes} bytes"
                    )
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
                self._answer(
                    {
                        "statusCode": status,
                        "headers": {"Content-Type": "application/json", **headers},
                        "body": json.dumps(body),
                    }
                )

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # http.server's own errors (bad request line, unknown method, headers too
                # long) as JSON like every other answer, never an HTML page.
                if code == 501:  # a method nobody handles: TRACE, QUERY, CONNECT, ...
                    self._reject(
                        405,
                        "method_not_allowed",
                        f"method {self.command!r} is not supported",
                        {"Allow": ", ".join(sorted(_PROXIED_METHODS))},
                    )
                    return
                with contextlib.suppress(Exception):
                    self._reject(code, "bad_request", message or "bad request")

            def _answer(self, answer: Mapping[str, Any]) -> None:
                raw = answer.get("body") or ""
                data = (
                    base64.b64decode(raw)
                    if answer.get("isBase64Encoded")
                    else str(raw).encode("utf-8")
                )
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
                if not stack.quiet:
                    stack._log(f"api  {self.address_string()} {format % args}")

        self._http = _ApiServer((self.host, self.api_port), ApiRequestHandler)
        self._http.daemon_threads = True
        self.api_port = int(self._http.server_address[1])
        self._spawn("api-http", self._http.serve_forever)

    # -- event source mapping

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"local-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def poll_once(self, logical_id: str = ACTOR_HOST_FUNCTION) -> int:
        """One ReceiveMessage + invoke + delete round, as the event source mapping does."""
        spec = self.functions[logical_id]
        if spec.sqs_queue is None or not self.available(logical_id):
            self._stop.wait(self.poll_wait_s)
            return 0
        url = self.queue_urls[spec.sqs_queue]
        # One receive at a time, and short: moto answers concurrent receives from one snapshot
        # of the in-flight groups, so two pollers could get two messages of one actor at once
        # (SQS never does; the actor host's order guard would hand one back).
        with self._receive_lock:
            got = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(spec.batch_size, 10),
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        messages = got.get("Messages", [])
        if not messages:
            self._stop.wait(min(self.poll_wait_s, 0.1))
            return 0
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{url.rsplit('/', 1)[-1]}"
        event = sqs_event(messages, arn)
        try:
            response = self.invoke(logical_id, event)
        except Exception:
            self._log(f"actor_host raised (the whole batch returns):\n{traceback.format_exc()}")
            return len(messages)
        keep = failed_ids(response, event["Records"])
        done = [m for m in messages if m["MessageId"] not in keep]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        with self._count_lock:
            self.batches += 1
        return len(messages)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                self._log(f"sqs poller:\n{traceback.format_exc()}")
                self._stop.wait(1.0)

    def tick_once(self) -> Any:
        """One scheduled pool manager invocation."""
        if not self.available(POOL_MANAGER_FUNCTION):
            return None
        self.ticks += 1
        return self.invoke(POOL_MANAGER_FUNCTION, {})

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick_once()
            except Exception:
                self._log(f"pool_manager raised:\n{traceback.format_exc()}")


_PROXIED_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class _ApiServer(ThreadingHTTPServer):
    """The local API's listener: a backlog that holds a burst (``socketserver``'s is 5)."""

    request_queue_size = 512
    daemon_threads = True


def _kebab(logical_id: str) -> str:
    """``ActorMessagesDLQ`` -> ``actor-messages-dlq``; ``PoolErrorsTable`` -> ``pool-errors``."""
    name = logical_id.removesuffix("Table")
    out: list[str] = []
    for i, ch in enumerate(name):
        prev = name[i - 1] if i else ""
        nxt = name[i + 1] if i + 1 < len(name) else ""
        if ch.isupper() and i and (not prev.isupper() or (nxt and nxt.islower())):
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


def _start_dev_runner(log: Callable[[str], None], options: Mapping[str, Any]) -> Any:
    try:
        from infra.dev_runner import DevRunner
    except ImportError:
        log("dev runner: infra/dev_runner.py is not built yet; starting without it")
        return None
    return DevRunner(**options).start()


def _reset_cached_deps() -> None:
    """Forget settings and composition roots built under another environment."""
    from adapters.settings import get_settings

    get_settings.cache_clear()
    for name in ("functions.api.app", "functions.actor_host.app", "functions.pool_manager.app"):
        module = sys.modules.get(name)
        deps = getattr(module, "deps", None)
        clear = getattr(deps, "cache_clear", None)
        if callable(clear):
            clear()


@contextlib.contextmanager
def local_stack(**kwargs: Any) -> Iterator[LocalStack]:
    """``with local_stack(api_port=0) as stack:`` (same as ``with LocalStack(...)``)."""
    with LocalStack(**kwargs) as stack:
        yield stack


def main(api_port: int = 8080, tick_s: float = 5.0, dev_port: int | None = None) -> int:
    """``runner-kit local``: start everything, print the URLs, run until Ctrl-C.

    A taken port is one line on stderr and exit status 2 (bad usage: pick another port).
    """
    import errno
    import signal

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill` and process managers stop it as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    stack = LocalStack(
        api_port=api_port,
        tick_s=tick_s,
        dev_runner_port=dev_port,
        log=lambda line: print(line, flush=True),
    )
    try:
        stack.check_ports()  # before the first line of output: a taken port is all it says
        print(
            "runner-kit local: starting moto, tables and queues from template.yaml ...", flush=True
        )
        stack.start()
    except KeyboardInterrupt:  # Ctrl-C while starting: start() has stopped what it began
        print("stopped.", flush=True)
        return 130
    except PortInUse as exc:
        print(f"runner-kit local: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Taken between the check and the bind (the check makes this rare).
        print(
            f"runner-kit local: a port is in use ({exc.strerror}); pick others with --port "
            "and --dev-port (make local PORT=N)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    try:
        print(stack.describe(), flush=True)
        print("\nTry it (copy-paste; the README's walkthrough with these URLs):\n", flush=True)
        print(stack.walkthrough(), flush=True)
        print("\nCtrl-C stops everything.", flush=True)
        stack.wait()
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return 0
