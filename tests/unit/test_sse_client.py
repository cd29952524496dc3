"""The SSE client without sockets: httpx MockTransport bodies, split and framed every odd way."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.clock import SYSTEM_CLOCK
from adapters.runner.attempt import SLICE, Attempt, StartLimits
from adapters.runner.classify import INTERNAL_EXCEPTIONS, TRANSPORT_REASONS, classify_exception
from adapters.runner.client import AsyncRunnerClient, RunnerClient, probe
from adapters.runner.sse import EventReader, EventTooLarge
from adapters.runner.transport import StartTarget, start_url
from core.errors import (
    CONNECTION_REASONS,
    POOL_ERROR_CODES,
    InternalError,
    ServerlessConnectionError,
    ServerlessHttpError,
    ServerlessInvalidBase64,
    ServerlessInvalidPayload,
    ServerlessStreamEndedEarly,
)
from core.exceptions import RunnerError, RunnerNoResponseError
from core.models import PoolKey, RunnerConfig
from core.protocol import DoneFrame, ErrorFrame, Frame, InitFrame, OutputFrame, StoppingFrame
from tests.helpers.clock import FakeClock

SECRET = "s3cret-token-value"
PUBLIC_IP = "93.184.216.34"


def event(frame: dict[str, Any], *, eol: bytes = b"\n") -> bytes:
    data = base64.b64encode(json.dumps(frame).encode())
    return b"data: " + data + eol + eol


INIT = event({"v": 1, "type": "init", "runner_id": "r-1"})
OUTPUT = event({"type": "output", "data": {"n": 1}})
DONE = event({"type": "done", "output": {"ok": True}, "state": {"count": 1}})
PING = b"event: ping\ndata:\n\n"


def target(**overrides: Any) -> StartTarget:
    values: dict[str, Any] = {
        "url": "https://runner.example.com/base/",
        "headers": {"Authorization": f"Bearer {SECRET}"},
        "pool": PoolKey(namespace="ns", runner_name="r"),
        "total_slots": 4,
        "request_lifespan": 120,
    }
    values.update(overrides)
    return StartTarget(**values)


class Recorder:
    """A MockTransport handler: answers with ``chunks`` and remembers the requests."""

    def __init__(
        self,
        chunks: Sequence[bytes] = (),
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.status = status
        self.headers = {"content-type": "text/event-stream"} if headers is None else headers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, headers=self.headers, content=iter(self.chunks))

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)

        async def body() -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                yield chunk

        return httpx.Response(self.status, headers=self.headers, content=body())


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """A MockTransport for the (async) client over a sync handler: its body is re-yielded."""

    async def handle(request: httpx.Request) -> httpx.Response:
        response = handler(request)
        chunks = response.stream
        assert isinstance(chunks, Iterable)

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return httpx.Response(response.status_code, headers=response.headers, content=body())

    return httpx.MockTransport(handle)


def resolver(host: str, port: int) -> list[str]:
    assert host == "runner.example.com"
    return [PUBLIC_IP]


def client_for(rec: Recorder, limits: StartLimits | None = None) -> RunnerClient:
    return RunnerClient(limits, transport=mock(rec), resolver=resolver)


def run(
    chunks: Sequence[bytes], limits: StartLimits | None = None, **response: Any
) -> tuple[list[Frame], BaseException | None]:
    """Frames yielded before the outcome, and the exception (None: ended cleanly)."""
    rec = Recorder(chunks, **response)
    frames: list[Frame] = []
    with client_for(rec, limits) as client:
        try:
            with client.start(target(), {"protocol_version": 1}) as stream:
                frames.extend(stream)
        except (RunnerError, RunnerNoResponseError) as exc:
            return frames, exc
    return frames, None


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- framing corners -------------------------------------------------------------------------


HEALTHY = INIT + PING + OUTPUT + DONE


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([HEALTHY], id="one_chunk"),
        pytest.param(split_every(HEALTHY, 1), id="byte_by_byte"),
        pytest.param(split_every(HEALTHY, 7), id="split_mid_line"),
        pytest.param([HEALTHY.replace(b"\n", b"\r\n")], id="crlf"),
        pytest.param(split_every(HEALTHY.replace(b"\n", b"\r\n"), 1), id="crlf_split_between"),
        pytest.param([HEALTHY.replace(b"\n", b"\r")], id="cr_only"),
        pytest.param(split_every(HEALTHY.replace(b"\n", b"\r"), 3), id="cr_only_split"),
        pytest.param(
            [b": comment first\n\n", INIT, b":keepalive\n", OUTPUT, b"retry: 10\nid: 7\n", DONE],
            id="comments_and_ignored_fields",
        ),
        pytest.param([b"\n\n\n", INIT, b"event: whatever\ndata: x\n\n", OUTPUT, DONE], id="noise"),
        pytest.param([INIT, OUTPUT, b"event: message\n" + DONE], id="explicit_message_type"),
        pytest.param([INIT, OUTPUT, DONE[:-1]], id="final_event_without_blank_line"),
        pytest.param([INIT, OUTPUT, DONE, INIT, b"garbage"], id="ignores_after_done"),
        pytest.param([INIT, OUTPUT, b"data:" + DONE[6:]], id="no_space_after_colon"),
    ],
)
def test_healthy_stream_framings(chunks: list[bytes]) -> None:
    frames, outcome = run(chunks)
    assert outcome is None
    assert frames == [
        InitFrame(runner_id="r-1"),
        OutputFrame(data={"n": 1}),
        DoneFrame(output={"ok": True}, state={"count": 1}),
    ]


def test_multi_line_data_is_joined() -> None:
    data = base64.b64encode(json.dumps({"type": "done", "output": "x" * 100, "state": 2}).encode())
    lines = b"".join(b"data: " + data[i : i + 20] + b"\n" for i in range(0, len(data), 20))
    frames, outcome = run([INIT, lines + b"\n"])
    assert outcome is None
    assert frames[-1] == DoneFrame(output="x" * 100, state=2)


def test_final_event_cut_mid_line_is_dropped() -> None:
    frames, outcome = run([INIT, DONE[:-3]])
    assert frames == [InitFrame(runner_id="r-1")]
    assert isinstance(outcome, RunnerNoResponseError)
    assert outcome.reason.runner_id == "r-1"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param(
            [INIT, event({"type": "error", "code": "E", "message": "m", "retryable": True})],
            ErrorFrame(code="E", message="m", retryable=True),
            id="error_frame",
        ),
        pytest.param([INIT, b"event: stopping\ndata:\n\n", DONE], StoppingFrame(), id="stopping"),
        pytest.param([INIT, b"event: stopping\n\n"], StoppingFrame(), id="stopping_no_data"),
    ],
)
def test_terminal_frames_end_iteration(chunks: list[bytes], expected: Frame) -> None:
    frames, outcome = run(chunks)
    assert outcome is None
    assert frames == [InitFrame(runner_id="r-1"), expected]


# --- failures before init are pool errors ----------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "error_type"),
    [
        pytest.param([], ServerlessStreamEndedEarly, id="empty_body"),
        pytest.param([PING, b": bye\n\n"], ServerlessStreamEndedEarly, id="pings_then_end"),
        pytest.param([b"data: eyJ"], ServerlessStreamEndedEarly, id="cut_mid_line"),
        pytest.param([b"event: stopping\n\n"], ServerlessStreamEndedEarly, id="stopping_first"),
        pytest.param([b"data: %%%\n\n"], ServerlessInvalidBase64, id="garbage_base64"),
        pytest.param([OUTPUT, DONE], ServerlessInvalidPayload, id="output_before_init"),
        pytest.param([DONE], ServerlessInvalidPayload, id="done_before_init"),
        pytest.param(
            [event({"v": 1, "type": "init", "runner_id": "x"}).replace(b"data: ", b"data:  ")],
            ServerlessInvalidBase64,
            id="two_spaces_after_colon",
        ),
    ],
)
def test_failures_before_init(chunks: list[bytes], error_type: type) -> None:
    frames, outcome = run(chunks)
    assert frames == []
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, error_type)


def test_second_init_is_invalid_payload() -> None:
    frames, outcome = run([INIT, INIT])
    assert frames == [InitFrame(runner_id="r-1")]
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, ServerlessInvalidPayload)
    assert "second init" in outcome.error.message


def test_bad_frame_after_init_is_still_a_pool_error() -> None:
    frames, outcome = run([INIT, b"data: !!\n\n"])
    assert frames == [InitFrame(runner_id="r-1")]
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, ServerlessInvalidBase64)


def test_end_after_init_is_runner_no_response() -> None:
    frames, outcome = run([INIT, OUTPUT, PING])
    assert len(frames) == 2
    assert isinstance(outcome, RunnerNoResponseError)
    assert outcome.reason.runner_id == "r-1"
    assert "ended without done" in str(outcome)


@pytest.mark.parametrize(
    ("chunks", "cap"),
    [
        pytest.param([b"data: " + b"A" * 200 + b"\n\n"], 100, id="one_long_line"),
        pytest.param([b"data: " + b"A" * 200], 100, id="long_partial_line"),
        pytest.param([b"data: AAAA\n" * 40 + b"\n"], 100, id="many_data_lines"),
        pytest.param(split_every(b"data: " + b"A" * 200 + b"\n\n", 9), 100, id="split"),
        pytest.param([b":" + b"c" * 200 + b"\n"], 100, id="long_comment"),
    ],
)
def test_event_size_cap(chunks: list[bytes], cap: int) -> None:
    _frames, outcome = run(chunks, StartLimits(max_event_bytes=cap))
    assert isinstance(outcome, RunnerError)
    assert outcome.error == ServerlessConnectionError(
        message=f"an event exceeded {cap} bytes", reason="too_large"
    )


def test_size_cap_counts_one_event_only() -> None:
    small = StartLimits(max_event_bytes=max(map(len, (INIT, OUTPUT, DONE))) + 8)
    frames, outcome = run([INIT, OUTPUT, OUTPUT, OUTPUT, DONE], small)
    assert outcome is None
    assert len(frames) == 5


# --- status, redirects and content type are checked before any event --------------------


def test_http_error_body_is_capped_and_cut_at_a_character() -> None:
    body = ("a" * 510 + "€" + "z" * 100_000).encode()
    _frames, outcome = run(
        [body[:1000], body[1000:]],
        StartLimits(max_error_body_bytes=2048),
        status=503,
        headers={"content-type": "text/plain; charset=utf-8"},
    )
    assert isinstance(outcome, RunnerError)
    assert outcome.error == ServerlessHttpError(status_code=503, body="a" * 510)


def test_http_error_with_event_stream_type_is_still_an_http_error() -> None:
    _frames, outcome = run([INIT, DONE], status=500)
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, ServerlessHttpError)
    assert outcome.error.status_code == 500


def test_unreadable_error_body_gets_a_placeholder() -> None:
    def broken() -> Iterator[bytes]:
        raise httpx.ReadError("connection reset")
        yield b""  # pragma: no cover

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=broken())

    with RunnerClient(transport=mock(handler), resolver=resolver) as client:
        with pytest.raises(RunnerError) as info:
            with client.start(target(), {}):
                pass
    assert info.value.error == ServerlessHttpError(
        status_code=502, body="<response body unreadable: ReadError>"
    )


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        pytest.param(200, {"content-type": "text/html"}, "content_type", id="html"),
        pytest.param(200, {}, "content_type", id="no_content_type"),
        pytest.param(
            200, {"content-type": "application/json"}, "content_type", id="json_content_type"
        ),
        pytest.param(
            302, {"location": "http://169.254.169.254/latest?token=x"}, "redirect", id="redirect"
        ),
        pytest.param(307, {"location": "/elsewhere"}, "redirect", id="relative_redirect"),
    ],
)
def test_wrong_answers(status: int, headers: dict[str, str], reason: str) -> None:
    _frames, outcome = run([INIT, DONE], status=status, headers=headers)
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, ServerlessConnectionError)
    assert outcome.error.reason == reason
    assert "token=x" not in outcome.error.message


def test_content_type_with_parameters_is_accepted() -> None:
    _frames, outcome = run(
        [INIT, DONE], headers={"content-type": "Text/Event-Stream; charset=utf-8"}
    )
    assert outcome is None


def test_redirect_without_location_is_an_http_error() -> None:
    _frames, outcome = run([], status=304, headers={})
    assert isinstance(outcome, RunnerError)
    assert outcome.error == ServerlessHttpError(status_code=304, body="")


# --- the request --------------------------------------------------------------------------


def test_request_shape_headers_and_pinning() -> None:
    rec = Recorder([INIT, DONE])
    with client_for(rec) as client:
        with client.start(target(), {"protocol_version": 1, "probe": True}) as frames:
            list(frames)
    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == f"https://{PUBLIC_IP}/base/start"
    assert request.headers["host"] == "runner.example.com"
    assert request.extensions["sni_hostname"] == "runner.example.com"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["x-runner-pool"] == "ns/r"
    assert request.headers["x-runner-total-slots"] == "4"
    assert request.headers["x-runner-request-lifespan"] == "120"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"protocol_version": 1, "probe": True}


def test_reserved_headers_win_over_config_headers() -> None:
    rec = Recorder([INIT, DONE])
    sneaky = target(headers={"X-Runner-Pool": "other/pool", "Accept": "text/html"})
    with client_for(rec) as client, client.start(sneaky, {}) as frames:
        list(frames)
    assert rec.requests[0].headers.get_list("x-runner-pool") == ["ns/r"]
    assert rec.requests[0].headers.get_list("accept") == ["text/event-stream"]


# By id: a runner URL, and the URL its start request goes to.
START_URLS = {
    "trailing_slash": ("https://h.example/", "https://h.example/start"),
    "bare_host": ("https://h.example", "https://h.example/start"),
    "double_slash": ("https://h.example/a//", "https://h.example/a/start"),
    "qs": ("https://h.example/fn?code=1", "https://h.example/fn/start?code=1"),
    "port": ("http://h.example:8080/x", "http://h.example:8080/x/start"),
}


@pytest.mark.parametrize(("url", "expected"), START_URLS.values(), ids=START_URLS.keys())
def test_start_url(url: str, expected: str) -> None:
    assert str(start_url(url)) == expected


def test_non_default_port_is_kept_in_host_header() -> None:
    rec = Recorder([INIT, DONE])
    with client_for(rec) as client:
        with client.start(target(url="http://runner.example.com:8080"), {}) as frames:
            list(frames)
    assert rec.requests[0].headers["host"] == "runner.example.com:8080"
    assert str(rec.requests[0].url) == f"http://{PUBLIC_IP}:8080/start"
    assert "sni_hostname" not in rec.requests[0].extensions


def test_secrets_never_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    t = target()
    assert SECRET not in repr(t)
    assert SECRET not in str(t)
    assert "Authorization: ***" in repr(t)
    for chunks, status in (([b"data: !!\n\n"], 200), ([b"denied " + SECRET.encode()], 401)):
        _frames, outcome = run(chunks, status=status)
        assert isinstance(outcome, RunnerError)
        if status == 200:
            assert SECRET not in str(outcome)
            assert SECRET not in json.dumps(outcome.error.to_json())
    assert SECRET not in caplog.text


def test_target_from_config() -> None:
    config = RunnerConfig(
        namespace="ns",
        runner_name="r",
        url="https://x.example",
        headers={"Authorization": SECRET},
        slots_per_runner=3,
        max_runners=5,
        request_lifespan=200,
        allow_private_network=True,
    )
    t = StartTarget.from_config(config)
    assert t.headers == {"Authorization": SECRET}
    assert (t.total_slots, t.request_lifespan, t.allow_private_network) == (15, 200, True)
    assert t.pool == PoolKey(namespace="ns", runner_name="r")
    assert SECRET not in repr(t)


def test_deadline_already_passed_sends_nothing() -> None:
    rec = Recorder([INIT, DONE])
    with client_for(rec) as client:
        with pytest.raises(RunnerError) as info:
            with client.start(target(), {}, deadline=SYSTEM_CLOCK.monotonic() - 1):
                pass
    assert rec.requests == []
    assert info.value.error == ServerlessConnectionError(
        message="the caller's deadline passed before init", reason="timeout"
    )


def test_dns_failure_is_classified() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    rec = Recorder([INIT, DONE])
    with RunnerClient(transport=mock(rec), resolver=failing) as client:
        with pytest.raises(RunnerError) as info:
            with client.start(target(), {}):
                pass
    assert isinstance(info.value.error, ServerlessConnectionError)
    assert info.value.error.reason == "dns"
    assert rec.requests == []


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        pytest.param(httpx.ConnectError("refused"), "connect", id="connect"),
        pytest.param(httpx.ConnectTimeout("slow"), "timeout", id="connect_timeout"),
        pytest.param(httpx.ReadTimeout("slow"), "timeout", id="read_timeout"),
        pytest.param(httpx.RemoteProtocolError("bad"), "protocol", id="protocol"),
        pytest.param(httpx.ReadError("reset"), "read", id="reset"),
    ],
)
def test_transport_errors_on_send(exc: Exception, reason: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with RunnerClient(transport=mock(handler), resolver=resolver) as client:
        with pytest.raises(RunnerError) as info:
            with client.start(target(), {}):
                pass
    assert isinstance(info.value.error, ServerlessConnectionError)
    assert info.value.error.reason == reason
    assert info.value.__cause__ is exc


def test_transport_error_mid_stream_before_and_after_init() -> None:
    def chunks(first: bytes) -> Iterator[bytes]:
        yield first
        raise httpx.ReadError("connection reset by peer")

    for first, expected in ((PING, RunnerError), (INIT, RunnerNoResponseError)):

        def handler(request: httpx.Request, first: bytes = first) -> httpx.Response:
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=chunks(first)
            )

        with RunnerClient(transport=mock(handler), resolver=resolver) as client:
            with pytest.raises(expected) as info:
                with client.start(target(), {}) as frames:
                    list(frames)
        if isinstance(info.value, RunnerError):
            assert info.value.error == ServerlessConnectionError(
                message="ReadError: connection reset by peer", reason="read"
            )
        assert isinstance(info.value.__cause__, httpx.ReadError)


# --- classification table ----------------------------------------------------------------


def test_every_httpx_exception_is_mapped() -> None:
    listed = {kind for kind, _ in TRANSPORT_REASONS}
    for name in dir(httpx):
        obj = getattr(httpx, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert obj in listed or issubclass(obj, INTERNAL_EXCEPTIONS), name
    for _, reason in TRANSPORT_REASONS:
        assert reason in CONNECTION_REASONS


def test_unknown_exception_is_internal_error() -> None:
    err = classify_exception(KeyError("boom"))
    assert isinstance(err, InternalError)
    assert "KeyError" in err.message


def test_tls_failure_is_classified_through_the_cause_chain() -> None:
    import ssl

    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("handshake failed") from inner
    except httpx.ConnectError as exc:
        err = classify_exception(exc)
    assert isinstance(err, ServerlessConnectionError)
    assert err.reason == "tls"


# --- probe and async twin --------------------------------------------------------------------


def test_probe_success_and_failure() -> None:
    with client_for(Recorder([PING, INIT, DONE])) as client:
        result = probe(client, target())
    assert result.ok
    assert result.runner_id == "r-1"
    assert result.time_to_init_s is not None and result.time_to_init_s >= 0
    assert result.error is None
    with client_for(Recorder([], status=500)) as client:
        result = probe(client, target())
    assert not result.ok
    assert result.error == ServerlessHttpError(status_code=500, body="")


def test_async_client_same_semantics() -> None:
    async def main() -> tuple[list[Frame], BaseException | None, list[httpx.Request]]:
        rec = Recorder(split_every(HEALTHY.replace(b"\n", b"\r\n"), 5))
        client = AsyncRunnerClient(
            transport=httpx.MockTransport(rec.handle_async), resolver=resolver
        )
        frames: list[Frame] = []
        outcome: BaseException | None = None
        async with client:
            async with client.start(target(), {}) as stream:
                async for frame in stream:
                    frames.append(frame)
            bad = Recorder([INIT, b"data: !!\n\n"])
            bad_client = AsyncRunnerClient(
                transport=httpx.MockTransport(bad.handle_async), resolver=resolver
            )
            try:
                async with bad_client.start(target(), {}) as stream:
                    async for _frame in stream:
                        pass
            except RunnerError as exc:
                outcome = exc
            await bad_client.aclose()
        return frames, outcome, rec.requests

    frames, outcome, requests = asyncio.run(main())
    assert [f.type for f in frames] == ["init", "output", "done"]
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, ServerlessInvalidBase64)
    assert requests[0].headers["host"] == "runner.example.com"


# --- arbitrary bytes always end in a typed outcome ------------------------------------------

TYPED = (RunnerError, RunnerNoResponseError)
pieces = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([INIT, OUTPUT, DONE, PING, b"\n", b"\r", b"\r\n", b"data: ", b":", b"event: "]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(pieces, max_size=12), cut=st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_end_in_a_typed_outcome(body: list[bytes], cut: int) -> None:
    data = b"".join(body)
    frames, outcome = run(split_every(data, cut), StartLimits(max_event_bytes=4096))
    if outcome is None:
        assert isinstance(frames[0], InitFrame)
        assert isinstance(frames[-1], DoneFrame | ErrorFrame | StoppingFrame)
    else:
        assert isinstance(outcome, TYPED)
        if isinstance(outcome, RunnerError):
            assert outcome.error.code in POOL_ERROR_CODES
            assert not isinstance(outcome.error, InternalError)
    assert all(isinstance(f, InitFrame) for f in frames[:1])


def reference_parse(data: bytes) -> list[tuple[str, str]]:
    """The WHATWG event-stream rules, line by line, written for clarity rather than speed:
    ``(type, data)`` of each event the kit sees (a message with data, or any other type)."""
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = text.split(b"\n")
    complete = lines[:-1]  # the last piece has no line end: a cut line, dropped
    events: list[tuple[str, str]] = []
    name = ""
    values: list[str] = []

    def dispatch() -> None:
        nonlocal name, values
        kind = name or "message"
        if kind != "message" or (values and "\n".join(values)):
            events.append((kind, "\n".join(values)))
        name, values = "", []

    for raw in complete:
        line = raw.decode("utf-8", "replace")
        if not line:
            dispatch()
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                values.append(value)
            elif field == "event":
                name = value
    if not lines[-1]:
        dispatch()  # the kit's leniency: a final event whose lines were complete
    return events


def parse(chunks: list[bytes]) -> list[tuple[str, str]]:
    reader = EventReader(1_000_000)
    events = []
    for chunk in chunks:
        events.extend(reader.feed(chunk))
    events.extend(reader.finish())
    return [("message", e) if isinstance(e, str) else (e.event, e.data) for e in events if e]


sse_text = st.lists(
    st.sampled_from(
        [b"data: ", b"data:", b"data", b"event: ping", b"event:", b": c", b"id: 1", b"x", b"eyJ"]
    )
    | st.sampled_from([b"data: YWJj\n\n", b"data: a b \n\n", b"data:  x\n\n", b"data\n\n"])
    | st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r", b" "])
    | st.binary(max_size=8),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=sse_text, cut=st.integers(min_value=1, max_value=40))
def test_parser_matches_the_reference_rules_however_split(data: bytes, cut: int) -> None:
    assert parse(split_every(data, cut)) == reference_parse(data)
    assert parse([data]) == reference_parse(data)


def largest_event(data: bytes) -> int:
    """The bytes of the largest event: its lines with their line ends, a cut last line too."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    largest = size = 0
    for index, line in enumerate(lines):
        if line:
            size += len(line) + (index < len(lines) - 1)
            largest = max(largest, size)
        else:
            size = 0
    return largest


@settings(max_examples=400, deadline=None)
@given(
    data=sse_text,
    cut=st.integers(min_value=1, max_value=40),
    cap=st.integers(min_value=2, max_value=30),
)
def test_size_cap_is_exact_however_split(data: bytes, cut: int, cap: int) -> None:
    reader = EventReader(cap)
    try:
        for chunk in split_every(data, cut):
            reader.feed(chunk)
        reader.finish()
    except EventTooLarge:
        assert largest_event(data) > cap
    else:
        assert largest_event(data) <= cap


def test_a_read_of_many_events_is_handed_out_in_slices_in_order() -> None:
    many = 2 * SLICE + 5
    frames, outcome = run([INIT + OUTPUT * many + DONE + OUTPUT])
    assert outcome is None
    assert [type(f) for f in frames] == [InitFrame, *[OutputFrame] * many, DoneFrame]
    frames, outcome = run([INIT + OUTPUT * many + b"data: !!\n\n" + DONE])
    # The slices before the bad frame's own are out already; its slice raises at the bad frame.
    assert [type(f) for f in frames] == [InitFrame, *[OutputFrame] * (2 * SLICE - 1)]
    assert isinstance(outcome, RunnerError)
    assert isinstance(outcome.error, ServerlessInvalidBase64)


def test_attempt_deadlines_run_on_the_injected_clock() -> None:
    clock = FakeClock()
    limits = StartLimits(init_timeout_s=2, idle_timeout_s=5)
    waiting = Attempt(limits, None, clock)
    assert waiting.feed(PING) == []  # a ping is activity, but not an init
    clock.advance(2.5)
    with pytest.raises(RunnerError) as before:
        waiting.feed(PING)
    assert before.value.error == ServerlessConnectionError(
        message="no init frame within 2 s", reason="timeout"
    )

    started = Attempt(limits, None, clock)
    assert [type(f) for f in started.feed(INIT)] == [InitFrame]
    clock.advance(4)
    started.feed(b": keep-alive\n")  # a comment counts for idle
    clock.advance(4)
    assert started.next_deadline() == (clock.monotonic() + 1, "idle")
    clock.advance(1)
    with pytest.raises(RunnerNoResponseError) as idle:
        started.feed(b"data: cut")  # no complete line: no activity
    assert idle.value.detail == "no event for 5 s"

    late = Attempt(limits, clock.monotonic() + 1, clock)
    clock.advance(1.5)
    with pytest.raises(RunnerError) as deadline:
        late.connect_timeout()
    assert deadline.value.error == ServerlessConnectionError(
        message="the caller's deadline passed before init", reason="timeout"
    )


def test_limits_from_settings_and_validation() -> None:
    from adapters.settings import Settings

    limits = StartLimits.from_settings(Settings(init_timeout_s=3, max_event_bytes=2048))
    assert (limits.init_timeout_s, limits.max_event_bytes) == (3, 2048)
    for bad in ({"init_timeout_s": 0}, {"idle_timeout_s": float("inf")}, {"max_event_bytes": 0}):
        with pytest.raises(ValueError):
            StartLimits(**bad)


# --- secrets never leave through an error -----------------------------------------------------


def _chain_text(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"Bearer {SECRET} ", id="trailing_space"),
        pytest.param(f"Bearer {SECRET}\r\nx: y", id="crlf"),
        pytest.param(f"{SECRET}\x00", id="nul"),
    ],
)
def test_a_header_value_that_is_no_field_value_fails_naming_only_the_header(value: str) -> None:
    rec = Recorder([INIT, DONE])
    with client_for(rec) as client, pytest.raises(RunnerError) as info:
        with client.start(target(headers={"Authorization": value}), {}) as frames:
            list(frames)
    assert rec.requests == []  # refused before sending
    assert info.value.error.to_json()["reason"] == "protocol"
    assert "'Authorization'" in str(info.value)
    assert SECRET not in _chain_text(info.value)


def test_a_transport_error_quoting_a_header_value_is_redacted_and_its_cause_dropped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"proxy refused {request.headers['authorization']!r}")

    client = RunnerClient(transport=mock(handler), resolver=resolver)
    with client, pytest.raises(RunnerError) as info:
        with client.start(target(), {}) as frames:
            list(frames)
    assert info.value.error.to_json()["reason"] == "connect"
    assert "***" in str(info.value)
    assert SECRET not in _chain_text(info.value)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("chunks", "status"),
    [
        pytest.param([f"denied Bearer {SECRET}".encode()], 401, id="http_error_body"),
        pytest.param([b"x" * 500 + f"Bearer {SECRET}".encode()], 401, id="body_cut_in_secret"),
        pytest.param([f"data: nope {SECRET}\n\n".encode()], 200, id="invalid_base64"),
        pytest.param(
            [event({"v": 1, "type": "init", "runner_id": SECRET}), event({"type": "x"})],
            200,
            id="runner_id_and_invalid_frame",
        ),
        pytest.param(
            [INIT, event({"type": "error", "code": "e", "message": f"bad {SECRET}"})],
            200,
            id="actor_error_message",
        ),
    ],
)
def test_echoed_secrets_are_redacted_from_errors_and_frames(
    chunks: list[bytes], status: int
) -> None:
    headers = {"content-type": "text/event-stream" if status == 200 else "text/plain"}
    frames, exc = run(chunks, status=status, headers=headers)
    shown = repr(frames) + (_chain_text(exc) if exc is not None else "")
    if isinstance(exc, RunnerError):
        shown += json.dumps(exc.error.to_json())
    assert SECRET not in shown
    assert SECRET[:8] not in shown
    assert "***" in shown
