"""The README's first command: the demo tells the whole story on the embedded stack and exits 0."""

from __future__ import annotations

from infra.demo import run


def test_demo_tells_the_story_and_exits_0() -> None:
    lines: list[str] = []

    code = run(lines.append)

    text = "\n".join(lines)
    assert code == 0, text
    for needle in (
        "[1/6] A healthy execution",
        "200 succeeded",
        "pool_error serverless_http_error 503",
        '"code":"no_capacity"',
        "error pool_error: serverless_http_error 503",
        "503 actor_runner_failed",
        "serverless_connection_error/content_type",
        "serverless_invalid_base64",
        "runner_config_url_blocked",
        "cleared after",
        "message dead_lettered",
        "the sender's reply queue got",
        ": serverless_http_error x",
    ):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    assert " BAD " not in text
