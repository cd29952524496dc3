"""Cold start of each handler beside ``python -c "import boto3"``, measured in the same run.

For each function of ``template.yaml``: a fresh interpreter imports its handler module (what
Lambda's INIT phase runs), then calls its ``deps()`` composition root (settings, boto3 clients,
stores; no network call is made: what the first invocation adds). We take the wall time of the
whole process and the in-process time of ``deps()``, and report two figures:

- ``init``: process wall time minus ``deps()``, i.e. interpreter start + import of the handler.
  The goals apply to this one (issue 13: "import only what a function uses ... no env read or
  client at import").
- ``+deps``: the whole process, i.e. what a cold start costs up to the first AWS call. Creating
  the first boto3 client alone is about 0.5x of ``import boto3`` (it loads the service model).

The baseline is a fresh interpreter that only imports boto3. Runs are interleaved (baseline,
api, actor_host, pool_manager, baseline, ...) so drift of the machine hits every figure alike;
we print medians and the ratios to the baseline's median. On a shared machine, run it a few
times: ratios move by about 0.1x with the load (printed).

Goals: api and pool_manager <= 2.0x, actor_host <= 2.5x (a naive Powertools stack with Tracer
measures about 6x). ``--strict`` exits 1 when a goal is missed.

    .venv/bin/python bench/cold_start.py [--runs 7] [--strict] [--json] [--explain]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.template import function_specs  # noqa: E402

GOALS: Final = {"api": 2.0, "pool_manager": 2.0, "actor_host": 2.5}
BASELINE: Final = "import boto3"

# Import the handler, then build its dependencies as the first invocation would. Prints the
# in-process seconds of the import and of deps() (the rest of the wall time is the interpreter).
PROBE: Final = """
import time, importlib, sys
t0 = time.perf_counter()
module = importlib.import_module(sys.argv[1])
getattr(module, sys.argv[2])
t1 = time.perf_counter()
deps = getattr(module, "deps", None)
if callable(deps):
    deps()
print(t1 - t0, time.perf_counter() - t1)
"""


@dataclass(frozen=True)
class Row:
    """One target's figures (``ratio``: the init figure the goal applies to)."""

    init_median_s: float
    median_s: float
    import_median_s: float | None
    deps_median_s: float | None
    ratio: float
    with_deps_ratio: float
    goal: float | None

    @property
    def ok(self) -> bool:
        return self.goal is None or self.ratio <= self.goal


def bench_env() -> dict[str, str]:
    """Dummy credentials and a dead loopback endpoint: building clients must not call AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:9",
        AWS_ENDPOINT_URL_SQS="http://127.0.0.1:9",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="",
    )
    return env


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, list[float]]:
    """(process wall time, in-process seconds reported by the probe: import, deps)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    out = proc.stdout.strip().splitlines()
    return wall, [float(x) for x in out[-1].split()] if out else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--strict", action="store_true", help="exit 1 if a goal is missed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--explain", action="store_true", help="also list what each handler imports beyond boto3"
    )
    opts = parser.parse_args(argv)

    env = bench_env()
    targets: dict[str, list[str]] = {"boto3": ["-c", BASELINE]}
    for spec in function_specs().values():
        name = spec.module.split(".")[1]
        targets[name] = ["-c", PROBE, spec.module, spec.attr]

    walls: dict[str, list[float]] = {name: [] for name in targets}
    imports: dict[str, list[float]] = {name: [] for name in targets}
    builds: dict[str, list[float]] = {name: [] for name in targets}
    errors: dict[str, str] = {}
    for round_ in range(opts.runs + 1):  # round 0 warms the page cache and .pyc files
        for name, args in targets.items():
            if name in errors:
                continue
            try:
                wall, in_process = run_once(args, env)
            except RuntimeError as exc:
                errors[name] = str(exc)
                continue
            if round_:
                walls[name].append(wall)
                if len(in_process) == 2:
                    imports[name].append(in_process[0])
                    builds[name].append(in_process[1])

    def med(values: list[float]) -> float | None:
        return round(statistics.median(values), 4) if values else None

    base = statistics.median(walls["boto3"])
    rows: dict[str, Row | str] = {}
    for name in targets:
        if name in errors:
            rows[name] = errors[name]
            continue
        median = statistics.median(walls[name])
        pairs = zip(walls[name], builds[name], strict=True) if builds[name] else ()
        init = statistics.median([w - d for w, d in pairs] or walls[name])
        rows[name] = Row(
            init_median_s=round(init, 4),
            median_s=round(median, 4),
            import_median_s=med(imports[name]),
            deps_median_s=med(builds[name]),
            ratio=round(init / base, 2),
            with_deps_ratio=round(median / base, 2),
            goal=GOALS.get(name),
        )
    missed = any(isinstance(row, str) or not row.ok for name, row in rows.items() if name in GOALS)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if opts.json:
        out = {
            n: (asdict(r) | {"ok": r.ok}) if isinstance(r, Row) else {"error": r}
            for n, r in rows.items()
        }
        print(
            json.dumps({"runs": opts.runs, "python": sys.version.split()[0], "load1": load, **out})
        )
    else:
        print(
            f"cold start, {opts.runs} interleaved runs, Python {sys.version.split()[0]}, "
            f"load average {load:.2f}"
            if load is not None
            else ""
        )
        print(
            f"{'target':<14}{'init':>9}{'ratio':>8}{'+deps':>9}{'ratio':>8}"
            f"{'import':>9}{'deps()':>9}  goal (on the init ratio)"
        )

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}ms"

        for name, row in rows.items():
            if isinstance(row, str):
                print(f"{name:<14}  not measurable: {row}")
                continue
            verdict = "" if row.goal is None else f"<= {row.goal}x {'ok' if row.ok else 'MISSED'}"
            print(
                f"{name:<14}{row.init_median_s:>8.3f}s{row.ratio:>7.2f}x"
                f"{row.median_s:>8.3f}s{row.with_deps_ratio:>7.2f}x"
                f"{ms(row.import_median_s):>9}{ms(row.deps_median_s):>9}  {verdict}"
            )
    if opts.explain and not opts.json:
        for spec in function_specs().values():
            print(f"\n{spec.module}: top-level imports beyond boto3 (cumulative ms, one run)")
            for cost, module in explain(spec.module, spec.attr, env):
                print(f"  {cost:>7.1f}  {module}")
    return 1 if (opts.strict and missed) else 0


def _import_times(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """``-X importtime``: module -> cumulative microseconds, for the outermost imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    times: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  ") and cumulative.strip().isdigit():  # outermost only
            times[name.strip()] = float(cumulative)
    return times


def explain(module: str, attr: str, env: dict[str, str], top: int = 12) -> list[tuple[float, str]]:
    """The heaviest outermost imports of a handler (and its deps()) that boto3 does not pull."""
    baseline = _import_times(["-c", BASELINE], env)
    handler = _import_times(["-c", PROBE, module, attr], env)
    extra = [(us / 1000, name) for name, us in handler.items() if name not in baseline]
    return sorted(extra, reverse=True)[:top]


if __name__ == "__main__":
    sys.exit(main())
