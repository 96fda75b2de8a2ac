"""A paired before/after run of two revisions of adelayed, for a change to the hot path.

    .venv/bin/python benchmarks/ab.py BEFORE AFTER [--reps 5] [--tasks 20000] [--results]

BEFORE and AFTER are git revisions (``HEAD~3``, a commit, ``WORKTREE`` for the files as they
are now). Each is checked out into a temporary git worktree; both run the same measurement code
(this tree's ``benchmarks/systems`` runners, in processes of their own) and differ only in the
``adelayed`` package they import. Every measurement alternates between them, A B A B ..., on one
private Redis, so a slow spell of the host falls on both. Prints, per measurement, each side's
median and range and the AFTER / BEFORE ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import measure
from harness.measure import Runner, Settings
from harness.redis_server import Server
from harness.systems import project_python
from harness.venvs import BENCH_DIR

ROOT = BENCH_DIR.parent
Measure = Callable[[Runner, Settings], dict[str, Any]]
# (name, measurement, the result's figure, higher is better)
MEASUREMENTS: list[tuple[str, Measure, str, bool]] = [
    ("enqueue, one at a time (/s)", measure.enqueue, "rate", True),
    ("enqueue_many (/s)", measure.bulk, "rate", True),
    ("async no-op c=10 (/s)", lambda r, s: measure.throughput(r, s, 10, "async"), "rate", True),
    ("async no-op c=100 (/s)", lambda r, s: measure.throughput(r, s, 100, "async"), "rate", True),
    ("sync no-op c=10 (/s)", lambda r, s: measure.throughput(r, s, 10, "sync"), "rate", True),
    ("idle latency p50 (ms)", lambda r, s: measure.latency(r, s, "async"), "p50_ms", False),
]
# --results: kept results too (a revision without keep_result reports them unsupported)
RESULTS: list[tuple[str, Measure, str, bool]] = [
    (f"keep_result no-op c={c} (/s)",
     lambda r, s, c=c: measure.throughput(r, s, c, "async", scenario="results"), "rate", True)
    for c in (10, 100)
]  # fmt: skip


@dataclass
class TreeRunner(Runner):
    """The adelayed runner with ``tree``'s package first on sys.path."""

    tree: Path = ROOT

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "PYTHONPATH": str(self.tree)}


def checkout(revision: str, into: Path) -> Path:
    if revision == "WORKTREE":
        return ROOT
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(into), revision],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return into


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--only", default="", help="measurements whose name contains this")
    parser.add_argument("--results", action="store_true", help="kept results' rates too")
    options = parser.parse_args(argv)
    settings = Settings(tasks=options.tasks, samples=100, max_seconds=10, worker_timeout=300)
    scratch = Path(tempfile.mkdtemp(prefix="adelayed-ab-"))
    trees = {
        side: checkout(revision, scratch / side)
        for side, revision in (("before", options.before), ("after", options.after))
    }
    server = Server.start()
    try:
        runners = {
            side: TreeRunner("adelayed", project_python(), server, scratch / f"{side}.log", tree)
            for side, tree in trees.items()
        }
        measurements = MEASUREMENTS + (RESULTS if options.results else [])
        chosen = [m for m in measurements if options.only in m[0]]
        results = run_pairs(runners, settings, options.reps, chosen)
    finally:
        server.close()
        for tree in trees.values():
            if tree != ROOT:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    report(options, results)


def run_pairs(
    runners: dict[str, TreeRunner],
    settings: Settings,
    reps: int,
    chosen: list[tuple[str, Measure, str, bool]],
) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    for name, body, figure, _ in chosen:
        for rep in range(reps):
            order = ("before", "after") if rep % 2 == 0 else ("after", "before")
            for side in order:
                result = body(runners[side], settings)
                if figure not in result:
                    raise SystemExit(f"{side} {name}: {result}")
                results.setdefault(name, {}).setdefault(side, []).append(float(result[figure]))
            pair = results[name]
            print(f"{name}: before {pair['before'][-1]:,.2f}, after {pair['after'][-1]:,.2f}")
    return results


def report(options: argparse.Namespace, results: dict[str, dict[str, list[float]]]) -> None:
    only = (f" --only '{options.only}'" if options.only else "") + (
        " --results" if options.results else ""
    )
    print(f"\n$ python benchmarks/ab.py {options.before} {options.after} --reps {options.reps}"
          f" --tasks {options.tasks}{only}\n")  # fmt: skip
    print("| measurement | before: median (range) | after: median (range) | after / before |")
    print("|---|---|---|---|")
    for name in results:
        cells = []
        for side in ("before", "after"):
            values = results[name][side]
            median, low, high = statistics.median(values), min(values), max(values)
            cells.append(f"{median:,.2f} ({low:,.2f} to {high:,.2f})")
        ratio = statistics.median(results[name]["after"]) / statistics.median(
            results[name]["before"]
        )
        print(f"| {name} | {cells[0]} | {cells[1]} | {ratio:.2f} |")


if __name__ == "__main__":
    os.chdir(BENCH_DIR)
    sys.path.insert(0, str(BENCH_DIR))
    main(sys.argv[1:])
