"""``runner-kit demo``: the whole story on the embedded local stack, readable at a glance.

1. a healthy execution through the API's fail-fast gateway;
2. the endpoint starts failing (503): the pool's active error on the actor and in the runner-config
   list, and the gateway answering 503 ``actor_runner_failed`` fast (time shown);
3. the other fault kinds, each classified into its typed error;
4. the endpoint is fixed: successes (the pool manager's probes, the retried message) clear the
   error after the threshold;
5. a poisoned message is dead-lettered and its sender told (message record + reply queue);
6. the errors channel of the actor that saw the failures.

Everything talks HTTP to the local API, exactly as a client of the deployed API would (minus IAM
signing). It exits 0 when every step showed what it should, 1 when one did not.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from infra.demo_tools import Answer, Api, Out, brief, pool_error_text, wait_until
from infra.dev_runner import DevRunner
from infra.local.stack import LocalStack
from infra.serving import free_port

NAMESPACE: Final = "demo"
THRESHOLD: Final = 3
BUSY_MS: Final = 3000
# Short deadlines so the faults that hang are classified in seconds, and quick probes.
DEMO_ENVIRON: Final = {
    "CONNECT_TIMEOUT_S": "2",
    "INIT_TIMEOUT_S": "2",
    "IDLE_TIMEOUT_S": "2",
    "GATEWAY_READY_TIMEOUT_S": "15",
    "PROBE_BACKOFF_BASE_S": "1",
    "PROBE_BACKOFF_MAX_S": "1",
    "SUCCESS_THRESHOLD": str(THRESHOLD),
}
# Retry every second, long enough to outlive the scripted outage.
FAST_RETRY: Final = {"backoff_base_s": 1, "backoff_max_s": 1, "max_attempts": 60}
FAULT_KINDS: Final = (
    ("http_500_multibyte", "HTTP 500, non-ASCII body cut at 512 bytes"),
    ("wrong_content_type", "200 with text/html"),
    ("close_before_init", "stream ends before init"),
    ("garbage_base64", "data that is not base64"),
    ("base64_not_json", "base64 of text that is not JSON"),
    ("wrong_version", "an init frame with v=2"),
    ("pings_forever", "pings, never init"),
    ("redirect_metadata", "302 to 169.254.169.254"),
)


# ---------------------------------------------------------------------------- the story


class Story:
    """The six steps, told through the API of a started ``LocalStack`` with its dev runner."""

    TOTAL = 6

    def __init__(self, stack: LocalStack, out: Out) -> None:
        if stack.dev_runner is None:
            raise ValueError("the demo needs the stack's dev runner")
        self.stack = stack
        self.out = out
        self.api = Api(stack.api_url)
        self.runner: DevRunner = stack.dev_runner
        self.actor_id = ""
        self.failed_message: str | None = None
        self.narrow_actors: tuple[str, ...] = ()

    # helpers

    def put_config(self, runner_name: str, url: str, **extra: Any) -> Answer:
        body = {"url": url, "allow_private_network": True, "request_lifespan": 60, **extra}
        return self.api.call("PUT", f"/runner-configs/{NAMESPACE}/{runner_name}", body)

    def create_actor(self, runner_name: str, **extra: Any) -> str:
        actor_id = f"{runner_name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
        body = {"actor_id": actor_id, "namespace": NAMESPACE, "runner_name": runner_name, **extra}
        answer = self.api.call("POST", "/actors", body)
        if answer.status != 201:
            raise RuntimeError(f"POST /actors -> {answer.status} {brief(answer.body)}")
        return actor_id

    def send(self, actor_id: str, input_: Any, *, wait: bool = False, **extra: Any) -> Answer:
        query = "?wait=true" if wait else ""
        body = {"input": input_, **extra}
        return self.api.call("POST", f"/actors/{actor_id}/messages{query}", body)

    def pool_error(self, runner_name: str) -> Any:
        answer = self.api.call("GET", f"/runner-configs/{NAMESPACE}/{runner_name}")
        return answer.fields.get("pool_error")

    def message(self, actor_id: str, message_id: str) -> dict[str, Any]:
        answer = self.api.call("GET", f"/actors/{actor_id}/messages/{message_id}")
        return answer.fields

    def told(
        self, answer: Answer, status: int, field: str, value: str, request: str, detail: str
    ) -> bool:
        """``ok`` if ``answer`` is ``status`` with body ``field == value`` (how long it took, and
        ``detail``), else ``bad`` with what came instead; True if it was."""
        if answer.has(status, **{field: value}):
            self.out.ok(f"{request} -> {status} {value} in {answer.seconds:.2f} s{detail}")
            return True
        self.out.bad(f"{request} -> {answer.status} {brief(answer.body)}")
        return False

    # steps

    def healthy(self) -> None:
        self.out.step(1, self.TOTAL, "A healthy execution")
        answer = self.put_config("echo", self.runner.url, error_policy=FAST_RETRY)
        if answer.status != 200:
            self.out.bad(
                f"PUT /runner-configs/{NAMESPACE}/echo -> {answer.status} {brief(answer.body)}"
            )
            return
        self.out.ok(f"PUT /runner-configs/{NAMESPACE}/echo -> {self.runner.url} (dev runner)")
        self.actor_id = self.create_actor("echo", state={"count": 0})
        self.out.ok(f"POST /actors -> {self.actor_id}")
        answer = self.send(self.actor_id, {"hello": "world"}, wait=True)
        result = f", result {brief(answer.fields.get('result'))}"
        if self.told(answer, 200, "status", "succeeded", "POST .../messages?wait=true", result):
            actor = self.api.call("GET", f"/actors/{self.actor_id}").body
            self.out.line(f"actor state is now {brief(actor.get('state'))}")

    def actor_error(self, actor_id: str) -> dict[str, Any]:
        body = self.api.call("GET", f"/actors/{actor_id}").body
        error = body.get("error") if isinstance(body, dict) else None
        return error if isinstance(error, dict) else {}

    def failing(self) -> None:
        self.out.step(2, self.TOTAL, "The endpoint starts failing (HTTP 503)")
        # A second pool with one runner, busy for a moment, so an actor waits for a runner.
        self.put_config(
            "narrow", self.runner.delay_url(BUSY_MS), max_runners=1, error_policy=FAST_RETRY
        )
        busy, waiting = self.create_actor("narrow"), self.create_actor("narrow")
        self.narrow_actors = (busy, waiting)
        first = self.send(busy, {"holds": "the only runner"}).body
        first_id = str(first.get("message_id")) if isinstance(first, dict) else ""
        wait_until(lambda: self.message(busy, first_id).get("status") == "running", 10)
        self.send(waiting, {"needs": "a runner"})
        waits = wait_until(lambda: self.actor_error(waiting).get("code") == "no_capacity", 10)
        (self.out.ok if waits else self.out.bad)(
            f"pool {NAMESPACE}/narrow (max_runners 1) is busy for {BUSY_MS / 1000:g} s: "
            f"actor {waiting} waits, error {brief(self.actor_error(waiting))}"
        )

        self.runner.set_fault("http_503")
        self.out.line("dev runner fault switch -> http_503")
        answer = self.send(self.actor_id, {"during": "outage"})
        if answer.fields.get("message_id"):
            self.failed_message = str(answer.body["message_id"])
        self.out.ok(f"POST /actors/{self.actor_id}/messages -> {answer.status} (queued)")
        started = time.monotonic()
        error = wait_until(lambda: self.pool_error("echo"), 20)
        if not error:
            self.out.bad("the pool never showed an active error")
            return
        self.out.ok(
            f"pool {NAMESPACE}/echo has an active error after {time.monotonic() - started:.1f} s: "
            f"{pool_error_text(error)}"
        )
        if self.failed_message:
            failed = self.failed_message
            record = wait_until(
                lambda: (m := self.message(self.actor_id, failed)).get("error") and m, 10
            )
            record = record or self.message(self.actor_id, failed)
            (self.out.ok if record.get("error") else self.out.bad)(
                f"GET .../messages/{self.failed_message[:8]}… -> {record.get('status')}, "
                f"attempt {record.get('attempts')}, error {pool_error_text(record.get('error'))}"
            )
        # The common outage (slots free, every start fails): the actor says why it is not running.
        shown = wait_until(lambda: self.actor_error(self.actor_id).get("code") == "pool_error", 10)
        (self.out.ok if shown else self.out.bad)(
            f"GET /actors/{self.actor_id} -> error "
            f"{pool_error_text(self.actor_error(self.actor_id))} (its pending message's start "
            "failed: the pool's error, with first_seen/last_seen/count)"
        )
        # The busy runner finishes; the waiting actor's start fails on the broken endpoint.
        shown = wait_until(
            lambda: self.actor_error(waiting).get("code") == "pool_error", BUSY_MS / 1000 + 10
        )
        (self.out.ok if shown else self.out.bad)(
            f"GET /actors/{waiting} -> error {pool_error_text(self.actor_error(waiting))} "
            "(it waits for a runner of a failing pool: no_capacity shown as the pool's error)"
        )
        listing = self.api.call("GET", f"/runner-configs?namespace={NAMESPACE}").body
        for config in listing.get("runner_configs", []):
            (self.out.ok if config.get("pool_error") else self.out.bad)(
                f"GET /runner-configs?namespace={NAMESPACE} -> {config['runner_name']}: "
                f"pool_error {pool_error_text(config.get('pool_error'))}"
            )
        answer = self.send(self.actor_id, {"client": "waits"}, wait=True)
        self.told(
            answer,
            503,
            "code",
            "actor_runner_failed",
            "gateway: POST .../messages?wait=true",
            f" (not the {DEMO_ENVIRON['GATEWAY_READY_TIMEOUT_S']} s ready timeout), "
            f"Retry-After: {answer.headers.get('Retry-After')}",
        )

    def fault_kinds(self) -> None:
        self.out.step(3, self.TOTAL, "Every other way an endpoint fails, classified")
        policy = {"on_message": "discard", "max_attempts": 1}
        sent: list[tuple[str, str]] = []
        for fault, _ in FAULT_KINDS:
            self.put_config(fault, self.runner.fault_url(fault))
            actor_id = self.create_actor(fault, error_policy=policy)
            self.send(actor_id, {"fault": fault})
            sent.append((fault, actor_id))
        refused = f"http://127.0.0.1:{free_port()}"
        self.put_config("closed_port", refused)
        sent.append(("closed_port", self.create_actor("closed_port", error_policy=policy)))
        self.send(sent[-1][1], {"fault": "closed_port"})
        blocked = self.api.call(
            "PUT",
            f"/runner-configs/{NAMESPACE}/metadata",
            {"url": "http://169.254.169.254/latest", "allow_private_network": True},
        )
        descriptions = dict(FAULT_KINDS) | {"closed_port": "nothing listens on the port"}
        width = max(len(f) for f, _ in sent)
        for fault, _ in sent:
            error = wait_until(functools.partial(self.pool_error, fault), 15)
            text = pool_error_text(error) if error else "no active error"
            line = f"{fault:<{width}}  {descriptions[fault]:<40} -> {text}"
            (self.out.ok if error else self.out.bad)(line)
            self.api.call("DELETE", f"/runner-configs/{NAMESPACE}/{fault}")
        code = blocked.body.get("code") if isinstance(blocked.body, dict) else blocked.body
        (self.out.ok if blocked.status in (400, 422) else self.out.bad)(
            f"{'metadata':<{width}}  {'a config pointing at 169.254.169.254':<40} -> "
            f"{blocked.status} {code} (refused when saved, before any request)"
        )

    def recovery(self) -> None:
        self.out.step(
            4, self.TOTAL, f"The endpoint is fixed: {THRESHOLD} successes clear the error"
        )
        self.runner.set_fault(None)
        self.out.line("dev runner fault switch -> healthy")
        started = time.monotonic()
        before = self.runner.start_requests
        cleared = wait_until(
            lambda: not self.pool_error("echo") and not self.pool_error("narrow"), 30
        )
        if cleared:
            self.out.ok(
                f"pools {NAMESPACE}/echo and {NAMESPACE}/narrow cleared after "
                f"{time.monotonic() - started:.1f} s ({self.runner.start_requests - before} "
                "healthy starts: pool manager probes and the retried messages)"
            )
        else:
            self.out.bad("the pool errors did not clear")
        failed_message = self.failed_message
        if failed_message:
            done = wait_until(
                lambda: (
                    self.message(self.actor_id, failed_message).get("status")
                    in ("succeeded", "failed", "dead_lettered")
                ),
                30,
            )
            record = self.message(self.actor_id, failed_message)
            (self.out.ok if done and record.get("status") == "succeeded" else self.out.bad)(
                f"the message sent during the outage: {record.get('status')} after "
                f"{record.get('attempts')} attempt(s), result {brief(record.get('result'), 60)}"
            )
        answer = self.send(self.actor_id, {"after": "fix"}, wait=True)
        body = answer.fields
        (self.out.ok if body.get("status") == "succeeded" else self.out.bad)(
            f"POST .../messages?wait=true -> {answer.status} {body.get('status')} "
            f"in {answer.seconds:.2f} s"
        )
        # Once their messages are done (a narrow actor's retry may still be backing off, and
        # shows no_capacity until then, rightly): no stale error on any actor.
        actors = (self.actor_id, *self.narrow_actors)
        wait_until(lambda: not any(self.actor_error(a) for a in actors), 20)
        stale = {a: self.actor_error(a) for a in actors}
        (self.out.bad if any(stale.values()) else self.out.ok)(
            "GET /actors/... -> no error on "
            + ", ".join(f"{a} {brief(e) if e else '(none)'}" for a, e in stale.items())
        )

    def poisoned(self) -> None:
        self.out.step(5, self.TOTAL, "A poisoned message is dead-lettered and its sender told")
        sqs = self.stack.sqs
        reply_url = sqs.create_queue(QueueName="runner-kit-replies-demo")["QueueUrl"]
        self.put_config("poison", self.runner.fault_url("actor_error"))
        policy = {**FAST_RETRY, "on_message": "dead_letter", "max_attempts": 2}
        actor_id = self.create_actor("poison", error_policy=policy)
        answer = self.send(actor_id, {"bad": "input"}, reply_to=reply_url)
        message_id = answer.fields.get("message_id")
        self.out.ok(
            f"POST .../messages (reply_to {reply_url.rsplit('/', 1)[-1]}) -> "
            f"{answer.status}; the actor's own code raises on it"
        )
        record = wait_until(
            lambda: (
                (m := self.message(actor_id, str(message_id))).get("status")
                in ("dead_lettered", "failed")
                and m
            ),
            30,
        )
        if not record:
            self.out.bad("the message was not dead-lettered")
            return
        (self.out.ok if record.get("status") == "dead_lettered" else self.out.bad)(
            f"message {record.get('status')} after {record.get('attempts')} attempt(s), "
            f"error {brief(record.get('error'), 80)}"
        )

        def dead_letters() -> int:
            return int(
                sqs.get_queue_attributes(
                    QueueUrl=self.stack.queue_urls["ActorMessagesDLQ"],
                    AttributeNames=["ApproximateNumberOfMessages"],
                )["Attributes"]["ApproximateNumberOfMessages"]
            )

        dlq = wait_until(dead_letters, 10) or 0
        (self.out.ok if dlq >= 1 else self.out.bad)(f"ActorMessagesDLQ holds {dlq} message(s)")
        got = sqs.receive_message(QueueUrl=reply_url, WaitTimeSeconds=2).get("Messages", [])
        (self.out.ok if got else self.out.bad)(
            f"the sender's reply queue got: {brief(json.loads(got[0]['Body']), 90)}"
            if got
            else "the sender's reply queue got nothing"
        )

    def errors_channel(self) -> None:
        self.out.step(6, self.TOTAL, f"The errors channel of actor {self.actor_id}")
        from core.events import ErrorEvent, ErrorsChannel

        actor = self.api.call("GET", f"/actors/{self.actor_id}").body
        errors = actor.get("errors") or {}
        channel = ErrorsChannel()
        for raw in errors.get("events", []):
            channel.emit(ErrorEvent.model_validate(raw))
        if not len(channel):
            self.out.bad("no error events were persisted on the actor")
            return
        for text in channel.render_text().splitlines():
            self.out.line(text)
        if errors.get("dropped"):
            self.out.line(f"(and {errors['dropped']} older events dropped by the cap)")


def _sink(buffer: io.StringIO) -> Callable[[str], None]:
    def write(line: str) -> None:
        buffer.write(line + "\n")

    return write


def run(write: Callable[[str], None] | None = None, *, verbose: bool = False) -> int:
    """Tell the story; 0 when every step showed what it should."""
    if write is None:
        stream = sys.stdout  # bound now: the story runs with stdout redirected

        def write(line: str) -> None:
            print(line, file=stream, flush=True)

    out = Out(write)
    started = time.monotonic()
    write(
        "runner-kit demo: actors on serverless endpoints, every failure typed, nothing in the cloud"
    )
    logs = io.StringIO()
    stack = LocalStack(
        api_port=0,
        tick_s=1.0,
        pollers=4,
        quiet=not verbose,
        environ=DEMO_ENVIRON,
        dev_runner_options={"hang_s": 5.0, "slow_init_s": 3.0},
        log=(lambda line: write(f"      | {line}")) if verbose else _sink(logs),
    )
    # Handlers print JSON logs and EMF metrics to stdout, as in Lambda; keep them off the story.
    # The stack stops (pollers joined) before stdout is restored, so a last flush stays hushed.
    hush = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(logs)
    with hush, stack:
        write(
            f"embedded stack up in {time.monotonic() - started:.1f} s: API {stack.api_url}, "
            f"moto {stack.moto.url}, dev runner {stack.dev_runner_url}"
        )
        story = Story(stack, out)
        for step in (
            story.healthy,
            story.failing,
            story.fault_kinds,
            story.recovery,
            story.poisoned,
            story.errors_channel,
        ):
            try:
                step()
            except Exception as exc:  # a broken step must not hide the rest of the story
                out.bad(f"{step.__name__} raised {type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            story.runner.set_fault(None)
    elapsed = time.monotonic() - started
    write("")
    if out.failed:
        write(f"demo finished in {elapsed:.1f} s with {len(out.failed)} step(s) not as expected:")
        for text in out.failed:
            write(f"  - {text}")
        if logs.getvalue() and not verbose:
            write("stack log (last lines):")
            for text in logs.getvalue().splitlines()[-15:]:
                write(f"  | {text}")
        return 1
    write(f"demo finished in {elapsed:.1f} s: every step showed what it should.")
    return 0


def main(verbose: bool = False) -> int:
    """``runner-kit demo``."""
    return run(verbose=verbose)


if __name__ == "__main__":
    sys.exit(main())
