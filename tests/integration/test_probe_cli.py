"""``runner-kit probe`` against the dev runner: output, --json, exit codes, secrets hidden."""

from __future__ import annotations

import json

import pytest

from infra.cli import main
from infra.dev_runner import DevRunner
from infra.serving import free_port
from tests.helpers.dev_runner import dev_runner_fixture

pytestmark = pytest.mark.integration

SECRET = "Bearer very-secret-value"


runner = dev_runner_fixture(slow_init_s=5)


def test_success(runner: DevRunner, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["probe", runner.url, "--allow-private", "--header", f"Authorization: {SECRET}"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("ok: runner dev-")
    assert "with headers Authorization (values hidden)" in out
    assert SECRET not in out
    assert runner.received[-1].headers["Authorization"] == SECRET
    assert runner.received[-1].body == {"protocol_version": 1, "probe": True}


def test_success_json(runner: DevRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", runner.url + "/", "--allow-private", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is True
    assert answer["runner_id"].startswith("dev-")
    assert answer["time_to_init_s"] >= 0
    assert answer["error"] is None


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        pytest.param(
            "http_503",
            {
                "code": "serverless_http_error",
                "status_code": 503,
                "body": "dev runner fault http_503",
            },
            id="http_503",
        ),
        pytest.param(
            "close_before_init", {"code": "serverless_stream_ended_early"}, id="ended_early"
        ),
        pytest.param(
            "garbage_base64",
            {"code": "serverless_invalid_base64", "raw_payload": "this is not base64!!"},
            id="garbage_base64",
        ),
    ],
)
def test_classified_failure_json(
    runner: DevRunner, capsys: pytest.CaptureFixture[str], fault: str, error: dict[str, object]
) -> None:
    assert main(["probe", runner.fault_url(fault), "--allow-private", "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False
    assert answer["error"] == error


@pytest.mark.parametrize(
    ("args", "reason", "hint"),
    [
        pytest.param(["--allow-private", "--timeout", "0.3"], "timeout", "too slow", id="timeout"),
        pytest.param([], "blocked_address", "--allow-private", id="blocked_loopback"),
    ],
)
def test_failure_text(
    runner: DevRunner, capsys: pytest.CaptureFixture[str], args: list[str], reason: str, hint: str
) -> None:
    assert main(["probe", runner.fault_url("slow_init"), *args]) == 1
    out = capsys.readouterr().out
    assert out.startswith("failed: serverless_connection_error\n")
    assert f"  {reason}: " in out
    assert hint in out


def test_http_status_hint(runner: DevRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", runner.fault_url("http_401"), "--allow-private"]) == 1
    assert "--header" in capsys.readouterr().out


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["probe", f"http://127.0.0.1:{port}", "--allow-private", "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert (error["code"], error["reason"]) == ("serverless_connection_error", "connect")


def test_metadata_is_refused_even_with_allow_private(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "http://169.254.169.254/", "--allow-private", "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["reason"] == "blocked_address"


# Each bad usage, by id (port 1: nothing is ever sent).
BAD_USAGE = {
    "scheme": ["ftp://example.com"],
    "header_format": ["http://127.0.0.1:1", "--header", "no-colon"],
    "reserved_header": ["http://127.0.0.1:1", "--header", "x-runner-pool: x"],
    "header_name": ["http://127.0.0.1:1", "--header", "bad name: x"],
    "timeout_zero": ["http://127.0.0.1:1", "--timeout", "0"],
    "timeout_text": ["http://127.0.0.1:1", "--timeout", "soon"],
    "no_url": [],
}


@pytest.mark.parametrize("args", list(BAD_USAGE.values()), ids=list(BAD_USAGE))
def test_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", *args])
    assert info.value.code == 2
    assert "usage: runner-kit probe" in capsys.readouterr().err
