"""Pool manager rounds on in-memory stores, the real tracker and scripted probes (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from adapters.memory.actors import InMemoryActorStore
from adapters.memory.messages import InMemoryMessageStore
from adapters.memory.pool_errors import InMemoryPoolErrorStore
from adapters.memory.probes import InMemoryProbeStore
from adapters.memory.runner_configs import InMemoryRunnerConfigStore
from adapters.settings import Settings
from adapters.tracker import PoolErrorTracker
from core.errors import NoCapacity, RunnerNoResponse, ServerlessConnectionError
from core.events import read_errors
from core.models import ActorRecord, MessageRecord, PoolKey, RunnerConfig
from core.ports import ProbeResult
from functions.pool_manager.app import handle
from functions.pool_manager.manager import PoolManagerDeps, run_round
from tests.helpers.clock import FakeClock

REFUSED = ServerlessConnectionError(message="connection refused", reason="connect")
OK = ProbeResult(ok=True, runner_id="r1", time_to_init_s=0.1, error=None)
FAIL = ProbeResult(ok=False, runner_id=None, time_to_init_s=None, error=REFUSED)


def pool(name: str) -> PoolKey:
    return PoolKey(namespace="ns", runner_name=name)


@dataclass
class ScriptedProbes:
    """Per-pool scripts of outcomes; healthy (OK) once a script runs out."""

    scripts: dict[str, list[ProbeResult]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, config: RunnerConfig, deadline: float) -> ProbeResult:
        self.calls.append(config.runner_name)
        script = self.scripts.get(config.runner_name)
        return script.pop(0) if script else OK

    def count(self, name: str) -> int:
        return self.calls.count(name)


@dataclass
class Env:
    deps: PoolManagerDeps
    clock: FakeClock
    probes_fn: ScriptedProbes
    tracker: PoolErrorTracker
    configs: InMemoryRunnerConfigStore
    probe_store: InMemoryProbeStore
    actors: InMemoryActorStore
    messages: InMemoryMessageStore

    def add(self, name: str, **kw: Any) -> RunnerConfig:
        config = RunnerConfig(namespace="ns", runner_name=name, url="https://x.example", **kw)
        self.configs.put(config)
        return config

    def round(self, budget_s: float = 50.0) -> Any:
        return run_round(self.deps, budget_s=budget_s)


@pytest.fixture
def env() -> Env:
    clock = FakeClock()
    tracker = PoolErrorTracker(
        InMemoryPoolErrorStore(in_lambda=False),
        clock=clock,
        cache_ttl_s=0,
    )
    actors = InMemoryActorStore(in_lambda=False)
    messages = InMemoryMessageStore(actors=actors, in_lambda=False)
    probes_fn = ScriptedProbes()
    configs = InMemoryRunnerConfigStore(in_lambda=False)
    probe_store = InMemoryProbeStore()
    deps = PoolManagerDeps(
        settings=Settings(connect_timeout_s=1, init_timeout_s=2),
        runner_configs=configs,
        tracker=tracker,
        probes=probe_store,
        actors=actors,
        messages=messages,
        probe=probes_fn,
        clock=clock,
        rand=lambda: 1.0,  # the top of the jitter range: the plain 60, 120, 240 s
        max_workers=2,
    )
    return Env(deps, clock, probes_fn, tracker, configs, probe_store, actors, messages)


def test_repaired_pool_clears_after_three_probes(env: Env) -> None:
    env.add("a")
    env.add("b")
    env.tracker.report_error(pool("a"), REFUSED)
    report = env.round()
    assert report.probed == {"ns/a": [True, True, True]}
    assert report.cleared == ["ns/a"]
    assert env.tracker.active_error(pool("a")) is None
    assert env.probes_fn.count("b") == 0  # healthy pools without min_runners are left alone
    assert env.probe_store.get(pool("a")) is None
    assert report.active_after == 0


@pytest.mark.parametrize(
    ("script", "probes", "still_failing"),
    [
        pytest.param([FAIL], 1, True, id="fails_at_once"),
        pytest.param([OK, FAIL], 2, True, id="fails_second"),
        pytest.param([OK, OK, FAIL], 3, True, id="fails_third"),
    ],
)
def test_failed_round_stops_and_backs_off(
    env: Env, script: list[ProbeResult], probes: int, still_failing: bool
) -> None:
    env.add("a")
    env.tracker.report_error(pool("a"), REFUSED)
    env.probes_fn.scripts["a"] = list(script)
    report = env.round()
    assert env.probes_fn.count("a") == probes
    assert report.backed_off == {"ns/a": 60.0}
    assert (env.tracker.active_error(pool("a")) is not None) is still_failing
    state = env.probe_store.get(pool("a"))
    assert state is not None
    assert state.failures == 1
    assert state.last_error_code == "serverless_connection_error"


def test_backoff_doubles_and_is_respected(env: Env) -> None:
    env.add("a")
    env.tracker.report_error(pool("a"), REFUSED)
    env.probes_fn.scripts["a"] = [FAIL, FAIL, FAIL]
    env.round()
    assert env.probes_fn.count("a") == 1
    env.clock.advance(59)  # not due yet: the endpoint is not hammered
    assert env.round().not_due == ["ns/a"]
    assert env.probes_fn.count("a") == 1
    env.clock.advance(1)
    assert env.round().backed_off == {"ns/a": 120.0}
    env.clock.advance(120)
    assert env.round().backed_off == {"ns/a": 240.0}
    env.clock.advance(240)
    report = env.round()  # the endpoint was repaired
    assert report.cleared == ["ns/a"]
    assert env.probe_store.get(pool("a")) is None


def test_reset_backoff_makes_the_pool_due_now(env: Env) -> None:
    env.add("a")
    env.tracker.report_error(pool("a"), REFUSED)
    env.probes_fn.scripts["a"] = [FAIL]
    env.round()
    env.probe_store.reset(pool("a"))  # what PUT /runner-configs does
    env.clock.advance(1)
    assert env.round().cleared == ["ns/a"]


def test_warm_probes_for_min_runners(env: Env) -> None:
    env.add("warm", min_runners=3, max_runners=5)
    env.add("cold")
    report = env.round()
    assert env.probes_fn.count("warm") == 3
    assert env.probes_fn.count("cold") == 0
    assert report.warm == {"ns/warm": 3}


def test_warm_probe_failure_sets_a_pool_error(env: Env) -> None:
    env.add("warm", min_runners=2)
    env.probes_fn.scripts["warm"] = [FAIL, OK]
    report = env.round()
    status = env.tracker.active_error(pool("warm"))
    assert status is not None
    assert status.error == REFUSED
    assert report.errors_reported == 1
    assert report.active_after == 1


def test_round_skips_probes_that_do_not_fit_the_budget(env: Env) -> None:
    env.add("a", min_runners=1)
    env.add("b")
    env.tracker.report_error(pool("b"), REFUSED)
    report = env.round(budget_s=2.5)  # connect 1 s + init 2 s do not fit
    assert env.probes_fn.calls == []
    assert sorted(report.skipped_for_time) == ["ns/a", "ns/b"]
    assert env.probe_store.get(pool("b")) is None  # not claimed: due next round


def test_claim_is_exclusive() -> None:
    store = InMemoryProbeStore()
    assert store.claim(pool("a"), now=100.0, lease_s=30) is not None
    assert store.claim(pool("a"), now=110.0, lease_s=30) is None
    assert store.claim(pool("a"), now=131.0, lease_s=30) is not None


# --- silent executions ------------------------------------------------------------------------


def running_message(env: Env, actor_id: str, *, runner: str | None, at: datetime) -> None:
    env.actors.create(ActorRecord(actor_id=actor_id, namespace="ns", runner_name="a"))
    env.messages.create(MessageRecord(actor_id=actor_id, message_id="m1", created_at=at))
    env.messages.claim(actor_id, "m1", owner="host", lease_s=3600, now=at)
    if runner is not None:
        env.messages.mark_running(actor_id, "m1", owner="host", runner_id=runner, now=at)


@pytest.mark.parametrize(
    ("age_s", "runner", "marked"),
    [
        pytest.param(300 + 60 + 1, "r7", True, id="past_lifespan_and_margin"),
        pytest.param(300 + 30, "r7", False, id="within_margin"),
        pytest.param(100, "r7", False, id="young"),
        pytest.param(10_000, None, False, id="never_started"),
    ],
)
def test_silent_execution_marks_runner_no_response(
    env: Env, age_s: float, runner: str | None, marked: bool
) -> None:
    env.add("a", request_lifespan=300)
    env.clock.advance(20_000)
    running_message(env, "x1", runner=runner, at=env.clock.now() - timedelta(seconds=age_s))
    report = env.round()
    actor = env.actors.get("x1")
    assert actor is not None
    if not marked:
        assert actor.failure_reason is None
        assert report.silent_marked == []
        return
    assert actor.failure_reason == RunnerNoResponse(runner_id="r7")
    assert report.silent_marked == ["x1/m1"]
    events, _ = read_errors(actor.extra)
    assert [e.code for e in events] == ["runner_no_response"]
    again = env.round()  # idempotent: no second event
    assert again.silent_marked == []
    actor = env.actors.get("x1")
    assert actor is not None
    assert len(read_errors(actor.extra)[0]) == 1


def test_silent_overrides_no_capacity(env: Env) -> None:
    env.add("a", request_lifespan=60)
    env.clock.advance(20_000)
    running_message(env, "x1", runner="r2", at=env.clock.now() - timedelta(seconds=500))
    env.actors.set_failure_reason("x1", NoCapacity())
    env.round()
    actor = env.actors.get("x1")
    assert actor is not None
    assert actor.failure_reason == RunnerNoResponse(runner_id="r2")


# --- handler and backoff ----------------------------------------------------------------------


def test_handle_uses_lambda_remaining_time(env: Env) -> None:
    env.add("a")
    env.tracker.report_error(pool("a"), REFUSED)

    class Ctx:
        def get_remaining_time_in_millis(self) -> int:
            return 7000  # minus the 5 s margin: 2 s, less than connect + init

    summary = handle({}, Ctx(), env.deps)
    assert summary["skipped_for_time"] == ["ns/a"]
    assert handle({}, None, env.deps)["cleared"] == ["ns/a"]


@pytest.mark.parametrize(
    ("rand", "delay"),
    [
        pytest.param(0.0, 54.0, id="bottom_of_the_jitter"),
        pytest.param(0.5, 57.0, id="middle"),
    ],
)
def test_probe_backoff_jitter_shortens_by_at_most_a_tenth(
    env: Env, rand: float, delay: float
) -> None:
    env.add("a")
    env.tracker.report_error(pool("a"), REFUSED)
    env.probes_fn.scripts["a"] = [FAIL]
    env.deps.rand = lambda: rand
    assert env.round().backed_off == {"ns/a": pytest.approx(delay)}
    state = env.probe_store.get(pool("a"))
    assert state is not None
    assert state.next_probe_at == pytest.approx(env.clock.now().timestamp() + delay)


def test_one_broken_step_does_not_stop_the_round(env: Env) -> None:
    env.add("a")
    env.add("b")
    env.tracker.report_error(pool("a"), REFUSED)
    env.tracker.report_error(pool("b"), REFUSED)

    def probe(config: RunnerConfig, deadline: float) -> ProbeResult:
        if config.runner_name == "a":
            raise RuntimeError("bug in a probe")
        return OK

    env.deps.probe = probe
    report = env.round()
    assert report.failed_steps == ["ns/a"]
    assert report.cleared == ["ns/b"]


class _UnreadableTracker:
    """A tracker whose reads fail as a whole (the store is down)."""

    def __init__(self, inner: PoolErrorTracker) -> None:
        self.inner = inner

    def report_error(self, pool: Any, error: Any) -> None:
        self.inner.report_error(pool, error)

    def report_success(self, pool: Any) -> None:
        self.inner.report_success(pool)

    def active_errors(self, pools: Any) -> Any:
        raise RuntimeError("tracker unreadable")


def test_an_unreadable_tracker_leaves_active_errors_unknown_and_the_round_goes_on(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapters.observability import Invocation, publish
    from functions.pool_manager.app import add_metrics

    env.add("a")
    env.deps.tracker = _UnreadableTracker(env.tracker)
    report = env.round()
    assert report.active_after is None
    assert "tracker_read" in report.failed_steps
    assert report.probed == {"ns/a": [True, True, True]}  # treated as failing: probed
    capsys.readouterr()
    invocation = Invocation("pool_manager")
    add_metrics(invocation, report)
    publish(invocation)
    out = capsys.readouterr().out
    assert "PoolManagerFailedSteps" in out
    assert "ActivePoolErrors" not in out  # no datapoint: the alarm treats that as breaching


def test_a_readable_round_always_emits_active_pool_errors(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapters.observability import Invocation, publish
    from functions.pool_manager.app import add_metrics

    report = env.round()  # no pools at all
    capsys.readouterr()
    invocation = Invocation("pool_manager")
    add_metrics(invocation, report)
    publish(invocation)
    assert '"ActivePoolErrors":[0.0]' in capsys.readouterr().out.replace(" ", "")


def test_alarm_breaches_on_missing_data() -> None:
    from infra.template import load_template

    alarm = load_template()["Resources"]["PoolErrorActiveAlarm"]["Properties"]
    assert alarm["MetricName"] == "ActivePoolErrors"
    assert alarm["TreatMissingData"] == "breaching"
