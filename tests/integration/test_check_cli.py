"""``runner-kit check`` against the dev runner: each rule, exit codes, --json, secrets hidden."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from infra.check_rules import RULES
from infra.cli import main
from infra.dev_runner import DevRunner
from tests.helpers.dev_runner import dev_runner_fixture

pytestmark = pytest.mark.integration

SECRET = "Bearer check-secret-value"


runner = dev_runner_fixture(hang_s=5.0)


def check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["check", *args, "--allow-private", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def statuses(answer: dict[str, Any]) -> dict[str, str]:
    return {rule["id"]: rule["status"] for rule in answer["rules"]}


def test_a_healthy_endpoint_is_conformant(
    runner: DevRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    code, answer = check_json(capsys, runner.url)
    assert code == 0
    assert answer["conformant"] is True
    assert statuses(answer) == dict.fromkeys(RULES, "pass")
    assert answer["warnings"] == []
    # the test execution carried a test input and state; the dev runner counted on from it
    body = runner.received[-1].body
    assert body["state"] == {"count": 41, "runner_kit_check": True}
    assert body["actor_id"].startswith("check-")
    assert answer["execution"]["final"]["state"]["count"] == 42
    assert answer["execution"]["runner_id"].startswith("dev-")


def test_the_json_shape(runner: DevRunner, capsys: pytest.CaptureFixture[str]) -> None:
    _, answer = check_json(capsys, runner.fault_url("init_then_close"))
    assert set(answer) == {"url", "conformant", "rules", "warnings", "execution"}
    assert [rule["id"] for rule in answer["rules"]] == list(RULES)
    for rule in answer["rules"]:
        assert set(rule) == {"id", "status", "detail", "hint"}
        assert rule["status"] in ("pass", "fail", "skip")
        assert isinstance(rule["detail"], str) and rule["detail"]
        if rule["status"] == "fail":
            assert rule["hint"]
    assert set(answer["execution"]) == {
        "status",
        "runner_id",
        "time_to_init_s",
        "final",
        "events",
        "reads",
    }


@pytest.mark.parametrize(
    ("fault", "failed", "skipped"),
    [
        pytest.param(
            "broken_done",
            {"frames_decode", "final_frame"},
            {"nothing_after_final", "stream_ends"},
            id="broken_final_frame",
        ),
        pytest.param(
            "garbage_base64",
            {"probe", "init_first", "frames_decode", "final_frame"},
            {"init_in_time", "nothing_after_final", "stream_ends"},
            id="bad_base64",
        ),
        pytest.param(
            "http_503",
            {"probe", "status"},
            set(RULES) - {"probe", "status"},
            id="http_503",
        ),
        pytest.param(
            "init_then_close",
            {"final_frame"},
            {"nothing_after_final", "stream_ends"},
            id="init_then_close",
        ),
        pytest.param("data_after_done", {"nothing_after_final"}, set(), id="data_after_done"),
        pytest.param("done_then_hold", {"stream_ends"}, set(), id="stays_open_after_done"),
        pytest.param(
            "wrong_content_type",
            {"probe", "content_type"},
            set(RULES) - {"probe", "status", "content_type"},
            id="wrong_content_type",
        ),
        pytest.param(
            "stopping", {"final_frame"}, {"nothing_after_final", "stream_ends"}, id="stopping"
        ),
    ],
)
def test_non_conformant_endpoints_exit_1(
    runner: DevRunner,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    failed: set[str],
    skipped: set[str],
) -> None:
    code, answer = check_json(capsys, runner.fault_url(fault))
    assert code == 1
    assert answer["conformant"] is False
    got = statuses(answer)
    assert {rule for rule, status in got.items() if status == "fail"} == failed
    assert {rule for rule, status in got.items() if status == "skip"} == skipped


def test_the_broken_done_frame_is_named(
    runner: DevRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    _, answer = check_json(capsys, runner.fault_url("broken_done"))
    decode = next(rule for rule in answer["rules"] if rule["id"] == "frames_decode")
    assert decode["detail"].startswith("frame 3: serverless_invalid_payload")
    assert "done.state" in decode["detail"]
    final = next(rule for rule in answer["rules"] if rule["id"] == "final_frame")
    assert "frame 3 did not decode" in final["detail"]
    assert "serverless_invalid_payload, a pool error" in final["detail"]


@pytest.mark.parametrize("fault", ["actor_error", "actor_error_retryable"])
def test_an_error_frame_is_conformant(
    runner: DevRunner, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    code, answer = check_json(capsys, runner.fault_url(fault))
    assert code == 0
    assert statuses(answer) == dict.fromkeys(RULES, "pass")
    assert answer["execution"]["final"]["type"] == "error"


def test_a_buffered_answer_passes_with_a_warning(
    runner: DevRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    code, answer = check_json(capsys, runner.fault_url("buffered"))
    assert code == 0
    assert [warning["id"] for warning in answer["warnings"]] == ["buffered"]
    assert "content-length" in answer["warnings"][0]["detail"]
    assert "init timeout" in answer["warnings"][0]["hint"]


def test_human_output_hides_header_values(
    runner: DevRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    # The dev runner echoes the input; here the input carries the header's value, so the
    # endpoint sends the secret back: it must still never be printed.
    args = [
        "--allow-private",
        "--header",
        f"Authorization: {SECRET}",
        "--input",
        json.dumps(SECRET),
    ]
    code = main(["check", runner.url, *args])
    out = capsys.readouterr().out
    assert code == 0
    assert runner.received[-1].headers["Authorization"] == SECRET
    assert runner.received[-1].body["input"] == SECRET
    assert SECRET not in out
    assert "with headers Authorization (values hidden)" in out
    assert out.rstrip().endswith("conformant: protocol v1")
    code = main(["check", runner.url, *args, "--json"])
    out = capsys.readouterr().out
    assert SECRET not in out
    assert json.loads(out)["execution"]["final"]["output"] == {"echo": "***"}


def test_failures_print_a_hint(runner: DevRunner, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", runner.fault_url("init_then_close"), "--allow-private"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  final_frame" in out
    assert 'hint: end with {"type":"done"' in out
    assert out.rstrip().endswith("not conformant: final_frame failed")


def test_loopback_is_refused_without_allow_private(
    runner: DevRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    before = runner.start_requests
    code = main(["check", runner.url, "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 1
    assert runner.start_requests == before  # refused before connecting
    status = next(rule for rule in answer["rules"] if rule["id"] == "status")
    assert "blocked_address" in status["detail"]
    assert "--allow-private" in status["hint"]


def test_metadata_addresses_are_refused_even_with_allow_private(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    connects: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        connects.append(address)
        raise AssertionError(f"check tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    code, answer = check_json(capsys, "http://169.254.169.254/latest")
    assert code == 1
    assert connects == []  # refused before any connection, by the probe and by the execution
    assert all("blocked_address" in rule["detail"] for rule in answer["rules"][:2])


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no_url"),
        pytest.param(["ftp://example.invalid"], id="not_http"),
        pytest.param(["http://127.0.0.1:9", "--header", "no-colon"], id="bad_header"),
        pytest.param(["http://127.0.0.1:9", "--header", "x-runner-pool: a"], id="reserved"),
        pytest.param(["http://127.0.0.1:9", "--timeout", "0"], id="zero_timeout"),
        pytest.param(["http://127.0.0.1:9", "--input", "{not json"], id="bad_input"),
        pytest.param(["http://127.0.0.1:9", "--state", "NaN]"], id="bad_state"),
        pytest.param(["http://127.0.0.1:9", "--bogus"], id="unknown_option"),
    ],
)
def test_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", *args])
    assert exited.value.code == 2
    assert "usage: runner-kit" in capsys.readouterr().err
