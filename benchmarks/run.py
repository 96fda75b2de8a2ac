"""Benchmarks adelayed against arq, saq, taskiq, streaq, delayed, docket and bullmq on one
private Redis.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME[,NAME]] [--tasks N] [--profile]
        [--scenarios NAME[,NAME]] [--promotion-tasks N] [--lead SECONDS]

Each peer runs from its own virtualenv (benchmarks/.venvs/NAME, pinned by peers/NAME.txt);
every worker, producer and baseline runs in a process of its own. Writes RESULTS.md beside
this file and the raw results under .results/; prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

from harness import measure
from harness.document import Run, render
from harness.measure import Runner, Settings
from harness.profile import profile_adelayed
from harness.redis_server import Server
from harness.systems import BY_NAME, RAW, SYSTEMS, System, project_python
from harness.venvs import BENCH_DIR, PeerUnavailableError, ensure

# (metric, concurrency, kind) of the throughput runs.
VARIANTS = (("c10", 10, "async"), ("c100", 100, "async"), ("sync", 10, "sync"))
SCENARIOS = ("plain", "latency", "retry", "results", "delayed", "promotion", "periodic")
# --quick leaves periodic (about 45 s more) and results (about 40 s more) out unless asked
QUICK_SCENARIOS = tuple(s for s in SCENARIOS if s not in ("periodic", "results"))
RESULT_VARIANTS = VARIANTS[:2]  # results: async c=10 and c=100
TICKS = 20  # periodic: runs timed per system (--quick: 5), after one dropped
DELAY = 0.05  # seconds: the delay of the delayed-latency probes
PROMOTION_TASKS = 100_000  # the promotion figure; --quick: 2,000 (adelayed: both)
PROMOTION_QUICK = 2_000


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=2000, 1 repetition, 50 probes")
    parser.add_argument("--only", help="comma-separated systems: " + ",".join(BY_NAME))
    parser.add_argument("--tasks", type=int, help="N, tasks per measurement")
    parser.add_argument("--profile", action="store_true", help="py-spy adelayed's c=100 worker")
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated: {','.join(SCENARIOS)} (default: all; --quick: no periodic, "
        "no results)",
    )
    parser.add_argument("--promotion-tasks", type=int, help="tasks all due at once")
    parser.add_argument(
        "--lead", type=float, help="promotion: seconds from the fill's start to the due time"
    )
    options = parser.parse_args(argv)
    unknown = set((options.only or "").split(",")) - set(BY_NAME) - {""}
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    default = QUICK_SCENARIOS if options.quick else SCENARIOS
    options.scenarios = options.scenarios.split(",") if options.scenarios else list(default)
    if set(options.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenario(s) in {options.scenarios}")
    return options


def _say(run: Run, text: str) -> None:
    print(f"[{time.monotonic() - run.started:6.1f}s] {text}", flush=True)


def _summary(result: dict[str, object]) -> str:
    if "error" in result or "unsupported" in result:
        return str(result.get("error") or "n/a")
    if "p50_ms" in result:
        return f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
    if "mean_interval_s" in result:
        lag = f", lag p50 {result['tick_lag_p50_ms']:.1f} ms" if "tick_lag_p50_ms" in result else ""
        return (
            f"{result['ticks']} ticks, mean interval {result['mean_interval_s']:.3f} s, jitter "
            f"p50 {result['jitter_p50_ms']:.1f} ms, max {result['jitter_max_ms']:.1f} ms{lag}"
        )
    if "ping_max_ms" in result:
        into = result.get("promoted_rate")
        return (
            f"{result['rate']:,.0f}/s over {result['tasks']:,} due tasks"
            f"{f' ({into:,.0f}/s into the queue)' if into else ''}, first start "
            f"{result['first_lag_ms']:.1f} ms after due; PING max {result['ping_max_ms']:.1f} ms, "
            f"p99 {result['ping_p99_ms']:.2f} ms; {result['slow_calls']} calls >= 5 ms "
            f"(max {result['slow_max_ms']:.1f} ms)" + (" (capped)" if result.get("capped") else "")
        )
    return f"{result['rate']:,.0f}/s" + (" (capped)" if result.get("capped") else "")


def _keep(run: Run, system: System, metric: str, result: dict[str, object]) -> None:
    run.results.setdefault(system.name, {}).setdefault(metric, []).append(result)
    _say(run, f"{system.name} {metric}: {_summary(result)}")


def _measure_system(run: Run, system: System, runner: Runner, scenarios: list[str]) -> None:
    def keep(metric: str, result: dict[str, object]) -> None:
        _keep(run, system, metric, result)

    if "retry" in scenarios:  # fails once, then succeeds: c=100 (delayed: its one process)
        kind = "async" if "async" in system.kinds else "sync"
        keep("retry", measure.throughput(runner, run.settings, 100, kind, scenario="retry"))
    if "plain" in scenarios:
        _measure_plain(run, system, runner, keep)
    if "results" in scenarios:
        _measure_results(run, runner, "plain" in scenarios, keep)


def _measure_plain(
    run: Run, system: System, runner: Runner, keep: Callable[[str, dict[str, object]], None]
) -> None:
    keep("enqueue", measure.enqueue(runner, run.settings))
    if system.bulk:
        keep("bulk", measure.bulk(runner, run.settings))
    if system.sequential:  # one process, one task at a time: one figure for every column
        result = measure.throughput(runner, run.settings, 1, "sync")
        for metric, _, _ in VARIANTS:
            keep(metric, result)
        return
    for metric, concurrency, kind in VARIANTS:
        if kind in system.kinds:
            keep(metric, measure.throughput(runner, run.settings, concurrency, kind))
        else:
            keep(metric, {"unsupported": kind})


def _measure_results(
    run: Run, runner: Runner, had_plain: bool, keep: Callable[[str, dict[str, object]], None]
) -> None:
    """c=10 and c=100 with the tasks' results stored; without the plain scenario, each with
    its plain pair right after it (the ratio's denominator, from the same run)."""
    for metric, concurrency, kind in RESULT_VARIANTS:
        result = measure.throughput(runner, run.settings, concurrency, kind, scenario="results")
        keep("results_" + metric, result)
        if not had_plain and "unsupported" not in result:
            keep(metric, measure.throughput(runner, run.settings, concurrency, kind))


def _fill_rate(run: Run, system: System) -> float:
    """The system's fastest enqueue rate measured in this run (a guess without one)."""
    found = run.results.get(system.name, {})
    rates = [r["rate"] for m in ("bulk", "enqueue") for r in found.get(m, []) if "rate" in r]
    return max(rates, default=50_000.0 if system.bulk else 5_000.0)


def _promote(
    run: Run, system: System, runner: Runner, count: int, metric: str, lead: float | None
) -> None:
    """One promotion run; one more with thrice the lead if the fill overran the due time."""
    lead = lead or 1.0 + 2.0 * count / _fill_rate(run, system)
    result = measure.promotion(runner, run.settings, count, lead)
    if result.get("late"):
        _say(run, f"{system.name} {metric}: {result['error']}; again with a longer lead")
        result = measure.promotion(runner, run.settings, count, lead * 3)
    _keep(run, system, metric, result)


def _retry_ratios(run: Run) -> None:
    """Each retry result's rate over its system's plain c=100 rate, and each results run's
    over its plain c=10 or c=100 rate (same run, same N)."""
    pairs = [("retry", "c100")] + [("results_" + m, m) for m, _, _ in RESULT_VARIANTS]
    for found in run.results.values():
        for metric, plain_metric in pairs:
            plain = [r["rate"] for r in found.get(plain_metric, []) if "rate" in r]
            for result in found.get(metric, []):
                if plain and "rate" in result:
                    result["of_plain"] = result["rate"] / statistics.median(plain)


def _runners(run: Run, server: Server, systems: list[System]) -> dict[str, Runner]:
    runners: dict[str, Runner] = {}
    for system in [RAW, *systems]:
        try:
            python = ensure(system.name, run.setup_log) if system.peer else project_python()
        except PeerUnavailableError as exc:
            run.unavailable[system.name] = str(exc)
            _say(run, f"{system.name}: unavailable: {exc}")
            continue
        log = run.out_dir / f"{system.name}.log"
        runners[system.name] = Runner(system.name, python, server, log)
    return runners


def _idle_and_time(
    run: Run, measured: list[System], runners: dict[str, Runner], options: argparse.Namespace
) -> None:
    """The idle latency and delayed-task lag (per repetition), then the promotion runs."""
    for _ in range(run.repetitions):
        for system in measured:
            kind = "sync" if system.sequential else "async"
            if "latency" in options.scenarios:
                result = measure.latency(runners[system.name], run.settings, kind)
                _keep(run, system, "latency", result)
            if "delayed" in options.scenarios:
                result = measure.latency(runners[system.name], run.settings, kind, delay=DELAY)
                _keep(run, system, "delayed_latency", result)
    if "periodic" in options.scenarios:
        for system in measured:
            result = measure.periodic(
                runners[system.name], run.settings, 5 if options.quick else TICKS
            )
            _keep(run, system, "periodic", result)
    if "promotion" in options.scenarios:
        quick_count = PROMOTION_QUICK if options.quick else PROMOTION_TASKS
        count = run.promotion_tasks = options.promotion_tasks or quick_count
        for system in measured:
            _promote(run, system, runners[system.name], count, "promotion", options.lead)
        if "adelayed" in runners and count < PROMOTION_TASKS:
            run.promotion_full = PROMOTION_TASKS
            _promote(run, BY_NAME["adelayed"], runners["adelayed"], PROMOTION_TASKS,
                     "promotion_full", None)  # fmt: skip


def main(argv: list[str]) -> None:
    options = _options(argv)
    quick = options.quick
    settings = Settings(
        tasks=options.tasks or (2_000 if quick else 20_000),
        samples=50 if quick else 200,
        max_seconds=5 if quick else 10,
        worker_timeout=120 if quick else 300,
        delayed_samples=10 if quick else 100,
    )
    chosen = [BY_NAME[name] for name in options.only.split(",")] if options.only else list(SYSTEMS)
    systems = [s for s in SYSTEMS if s in chosen]  # the catalogue's order
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = BENCH_DIR / ".results" / stamp
    out_dir.mkdir(parents=True)
    run = Run(
        command="python benchmarks/run.py " + " ".join(argv),
        date=datetime.now(timezone.utc),
        settings=settings,
        repetitions=1 if quick else 3,
        out_dir=out_dir,
    )
    server = Server.start()
    try:
        run.redis_version, run.redis_binary = server.version(), server.binary
        runners = _runners(run, server, systems)
        measured = [s for s in systems if s.name in runners]
        for repetition in range(run.repetitions):
            _say(run, f"repetition {repetition + 1}/{run.repetitions}")
            if RAW.name in runners and "plain" in options.scenarios:
                for metric, body in (("enqueue", measure.enqueue), ("bulk", measure.bulk)):
                    result = body(runners[RAW.name], settings)
                    run.results.setdefault(RAW.name, {}).setdefault(metric, []).append(result)
                    _say(run, f"raw {metric}: {_summary(result)}")
            for system in measured:
                _measure_system(run, system, runners[system.name], options.scenarios)
        _idle_and_time(run, measured, runners, options)
        if options.profile and "adelayed" in runners:
            _say(run, "profiling adelayed's worker (c=100) under py-spy")
            run.profile = profile_adelayed(runners["adelayed"], settings, out_dir)
    finally:
        server.close()
    _retry_ratios(run)
    run.seconds = time.monotonic() - run.started
    run.systems = measured
    (out_dir / "results.json").write_text(json.dumps(run.as_json(), indent=1))
    text = render(run)
    (BENCH_DIR / "RESULTS.md").write_text(text)
    print(text)
    print(f"\nwrote {BENCH_DIR / 'RESULTS.md'} and {out_dir / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
