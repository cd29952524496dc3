"""Marked secrets through every path of the embedded stack; then grep everything for them.

Paths: saving (good and bad values), starts that succeed, starts that fail, endpoints that echo
the credential in an error body, a raw payload, a runner id and an actor error message, a
config stored before the API checked values, ``runner-kit probe``, every log line, every table.
The only place a secret may be is the runner-config item's own ``headers`` attribute.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import boto3
import pytest

from infra import probe as probe_cli
from infra.local.stack import LocalStack
from tests.helpers.fake_endpoint import QuietHandler, serving
from tests.helpers.http import http, wait_for

# Each secret carries a marker; a marker found anywhere but the config's headers is a leak.
AUTH = "Bearer MKAUTH-7f3a9c-live"
KEY = "MKKEY-91be22"
TRAIL = "Bearer MKTRAIL-55 "  # trailing space: not a field value
CRLF = "MKCRLF-66\r\nx-evil: 1"
NUL = "MKNUL-77\x00"
PASS = "MKPASS-88"
STORED = "Bearer MKSM-99-from-secrets-manager"  # kept in Secrets Manager, referenced by ARN
MARKERS = ("MKAUTH", "MKKEY", "MKTRAIL", "MKCRLF", "MKNUL", "MKPASS", "MKSM")
HEADERS = {"authorization": AUTH, "x-api-key": KEY}


def _event(frame: str | bytes) -> bytes:
    data = frame if isinstance(frame, bytes) else base64.b64encode(frame.encode())
    return b"data: " + data + b"\n\n"


class EchoHandler(QuietHandler):
    """An endpoint that echoes every request header back, in the place its path names."""

    def do_POST(self) -> None:
        self.read_body()
        echo = " ".join(f"{k}: {v}" for k, v in self.headers.items())
        mode = self.path.strip("/").split("/")[0]
        auth = self.headers.get("authorization", "")
        if mode in ("e401", "e401pad"):
            # e401pad: the secret straddles byte 512, where errors are cut.
            text = f"{'x' * 498}{auth} {echo}" if mode == "e401pad" else echo
            self.reply(401, "text/plain", f"upstream rejected {text}".encode())
            return
        init = json.dumps({"v": 1, "type": "init", "runner_id": f"r-{self.headers['x-api-key']}"})
        events = {
            "payload": _event(f'{{"v":1,"type":"init","runner_id":"{auth}",'),
            "b64": _event(f"not base64 {auth}".encode()),
            "actorerr": _event(init)
            + _event(json.dumps({"type": "error", "code": "bad", "message": f"saw {echo}"})),
            "healthy": _event(init)
            + _event(json.dumps({"type": "done", "output": {"ok": 1}, "state": {"n": 1}})),
        }[mode]
        self.reply(200, "text/event-stream", events)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with serving(EchoHandler) as url:
        yield url


@pytest.fixture
def kit_loggers_restored() -> Iterator[None]:
    """The stack's handlers wire the kit's loggers to stdout at DEBUG here: undo it after, or a
    later ``runner-kit probe --json`` test finds log lines in its stdout."""
    from adapters.observability import KIT_LOGGERS

    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, KIT_LOGGERS)
    ]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


@pytest.mark.usefixtures("kit_loggers_restored")
def test_marked_secrets_appear_nowhere_but_the_config_headers(
    echo_url: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from adapters import secrets as secrets_mod

    secrets_mod.reset_cache()  # the stack's own moto server serves Secrets Manager too
    caplog.set_level(logging.DEBUG)
    # Not the kit's logs: botocore and urllib3 at DEBUG print whole AWS requests, the stored
    # secret included (docs/errors.md: never enable them in production).
    for noisy in ("botocore", "boto3", "urllib3"):
        caplog.set_level(logging.WARNING, logger=noisy)
    lines: list[str] = []
    seen: list[str] = []  # every answer, view, probe output and item, as text
    environ = {
        "INIT_TIMEOUT_S": "2",
        "IDLE_TIMEOUT_S": "2",
        "PROBE_BACKOFF_BASE_S": "1",
        "PROBE_BACKOFF_MAX_S": "1",
        "GATEWAY_READY_TIMEOUT_S": "5",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    }
    with LocalStack(
        api_port=0, tick_s=0.5, dev_runner=False, environ=environ, log=lines.append
    ) as stack:
        api = stack.api_url

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            status, headers, answer = http(method, f"{api}{path}", body)
            seen.append(json.dumps([status, headers, answer]))
            return status, answer

        policy = {"on_message": "dead_letter", "max_attempts": 1}
        # Saving: values that are not field values are refused, naming only the header.
        for bad in (TRAIL, CRLF, NUL):
            status, answer = call(
                "PUT",
                "/runner-configs/s/bad",
                {"url": echo_url, "allow_private_network": True, "headers": {"authorization": bad}},
            )
            assert status == 422 and answer["code"] == "runner_config_header_invalid", answer
        modes = ("e401", "e401pad", "payload", "b64", "actorerr", "healthy")
        for mode in modes:
            body = {
                "url": f"{echo_url}/{mode}",
                "headers": HEADERS,
                "allow_private_network": True,
                "request_lifespan": 30,
                "error_policy": policy,
            }
            assert call("PUT", f"/runner-configs/s/{mode}", body)[0] == 200
        # A header value referenced in Secrets Manager, against the echoing endpoint.
        arn = boto3.client("secretsmanager").create_secret(
            Name="runner-kit/leak-test", SecretString=STORED
        )["ARN"]
        body = {
            **body,
            "url": f"{echo_url}/e401",
            "headers": {"authorization": {"secret_arn": arn}},
        }
        assert call("PUT", "/runner-configs/s/sm", body)[0] == 200
        # A "***" PUT keeps the stored values.
        kept = {
            **body,
            "url": f"{echo_url}/healthy",
            "headers": {"authorization": "***", "x-api-key": "***"},
        }
        assert call("PUT", "/runner-configs/s/healthy", kept)[0] == 200
        # A config stored before the API checked values (written to the table directly).
        table = stack.table_names["RunnerConfigsTable"]
        dynamodb = boto3.client("dynamodb")
        legacy = {
            "namespace": {"S": "s"},
            "runner_name": {"S": "legacy"},
            "url": {"S": f"{echo_url}/healthy"},
            "headers": {"M": {"authorization": {"S": TRAIL}, "x-api-key": {"S": CRLF}}},
            "request_lifespan": {"N": "30"},
            "slots_per_runner": {"N": "1"},
            "min_runners": {"N": "0"},
            "max_runners": {"N": "10"},
            "runners_margin": {"N": "0"},
            "allow_private_network": {"BOOL": True},
            "error_policy": {"S": json.dumps(policy)},
        }
        dynamodb.put_item(TableName=table, Item=legacy)

        messages: list[tuple[str, str]] = []
        for mode in (*modes, "legacy", "sm"):
            actor = f"a-{mode}"
            body = {"actor_id": actor, "namespace": "s", "runner_name": mode}
            assert call("POST", "/actors", body)[0] == 201
            status, answer = call("POST", f"/actors/{actor}/messages?wait=true", {"input": 1})
            assert status in (200, 202, 503), answer
            messages.append((actor, answer.get("message_id") or answer["metadata"]["message_id"]))

        def final(actor: str, message_id: str) -> Any:
            status, _, answer = http("GET", f"{api}/actors/{actor}/messages/{message_id}")
            return status == 200 and answer["status"] != "pending" and answer["status"]

        for actor, message_id in messages:
            wait_for(f"message {message_id} to end", partial(final, actor, message_id))
        statuses = {a: final(a, m) for a, m in messages}
        assert statuses["a-healthy"] == "succeeded"
        assert statuses["a-e401"] == "dead_lettered"
        # The failures really happened (so the grep below checks real errors).
        _, failed = call("GET", f"/actors/a-e401/messages/{messages[0][1]}")
        assert failed["error"]["code"] == "serverless_http_error"
        assert "***" in failed["error"]["body"], failed
        _, legacy_message = call("GET", f"/actors/a-legacy/messages/{messages[-2][1]}")
        assert "'authorization'" in json.dumps(legacy_message["error"]), legacy_message
        wait_for("the pool manager to probe", lambda: stack.ticks >= 3)
        _, sm_message = call("GET", f"/actors/a-sm/messages/{messages[-1][1]}")
        assert sm_message["error"]["status_code"] == 401  # the secret was read and sent
        assert "authorization: ***" in sm_message["error"]["body"]
        for mode in (*modes, "legacy", "sm"):
            call("GET", f"/runner-configs/s/{mode}")
            call("GET", f"/actors/a-{mode}")
            call("GET", f"/actors/a-{mode}/messages")
        call("GET", "/runner-configs?namespace=s")
        call("GET", "/actors?namespace=s")

        # Every table: the secrets may be only in a runner config's own headers attribute.
        for logical_id, name in stack.table_names.items():
            paginator = dynamodb.get_paginator("scan")
            for page in paginator.paginate(TableName=name):
                for item in page["Items"]:
                    if logical_id == "RunnerConfigsTable":
                        assert "MKSM" not in repr(item)  # a reference is stored, not its value
                        item = {k: v for k, v in item.items() if k != "headers"}
                    seen.append(f"{logical_id}: {item!r}")

    secrets_mod.reset_cache()
    # runner-kit probe: header values and URL userinfo are never printed.
    for args in (
        [f"{echo_url}/e401", "--header", f"authorization: {AUTH}", "--allow-private"],
        [f"{echo_url}/payload", "--header", f"authorization:{AUTH}", "--allow-private", "--json"],
        [f"{echo_url}/actorerr", "--header", f"x-api-key: {KEY}", "--allow-private"],
        [f"http://u:{PASS}@127.0.0.1:1/e401", "--allow-private"],
        [f"http://u:{PASS}@127.0.0.1:1/e401", "--allow-private", "--json"],
        [f"{echo_url}/e401", "--header", f"authorization: {CRLF}", "--allow-private"],
        [f"{echo_url}/e401", "--header", f"authorization: {NUL}", "--allow-private"],
        [f"http://u:{PASS}@127.0.0.1:99999/", "--allow-private"],
    ):
        parser = argparse.ArgumentParser(prog="runner-kit probe")
        probe_cli.add_arguments(parser)
        out = io.StringIO()
        try:
            status = probe_cli.run(parser.parse_args(args), parser, out)
        except SystemExit as exc:  # bad usage: parser.error printed to stderr
            status = int(exc.code or 0)
        assert status in (0, 1, 2)
        seen.append(out.getvalue())

    captured = capfd.readouterr()
    everything = {
        "answers, views, probe output and tables": "\n".join(seen),
        "stack log": "\n".join(lines),
        "stdout": captured.out,
        "stderr": captured.err,
        "log records": "\n".join(
            f"{r.getMessage()} {r.exc_text or ''} {r.exc_info!r}" for r in caplog.records
        )
        + caplog.text,
    }
    assert "rejected" in everything["answers, views, probe output and tables"]  # echoes seen
    leaks = [
        (where, marker, text[max(0, text.find(marker) - 80) : text.find(marker) + 40])
        for where, text in everything.items()
        for marker in MARKERS
        if marker in text
    ]
    assert leaks == []
