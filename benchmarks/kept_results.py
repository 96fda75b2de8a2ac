"""Where adelayed's kept-results cost goes: its worker's rate on plain no-op tasks, on tasks
with an option but no result (``timeout=60``: the enveloped path), and on tasks with
``keep_result=60`` (enveloped, plus one FINISH call each), at c=10 and c=100.

    .venv/bin/python benchmarks/kept_results.py [--tasks 20000] [--reps 3]

One private Redis; each run pre-fills N tasks, then a fresh worker process (systems/adelayed.py)
drains them, as run.py's processing runs do. The three variants alternate, in reverse order
every other repetition. Prints each one's median rate and its commands per task (the last run's
``INFO commandstats`` ÷ tasks)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from typing import Any

import redis.asyncio as redis
from harness.measure import QUEUE, Runner
from harness.redis_server import Server
from harness.systems import project_python
from harness.venvs import BENCH_DIR

from adelayed import PyTask, Queue

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "enveloped (timeout=60)": {"timeout": 60},
    "keep_result=60": {"keep_result": 60},
}


async def _fill(url: str, tasks: int, options: dict[str, Any]) -> None:
    client = redis.Redis.from_url(url)
    task = "systems.common:noop_result" if "keep_result" in options else "systems.common:noop"
    try:
        await Queue(QUEUE, client).enqueue_many([PyTask(task) for _ in range(tasks)], **options)
    finally:
        await client.aclose()


def _run(server: Server, runner: Runner, tasks: int, concurrency: int, name: str) -> Any:
    server.reset()
    asyncio.run(_fill(server.url, tasks, VARIANTS[name]))
    server.reset_stats()
    result = runner.call(
        "worker", limit=150, count=tasks, concurrency=concurrency, kind="async", timeout=120,
        max_seconds=10,
    )  # fmt: skip
    if "error" in result:
        raise SystemExit(f"{name}, c={concurrency}: {result['error']}")
    result["commands"] = sum(server.command_calls().values()) / result["tasks"]
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    options = parser.parse_args(argv)
    rates: dict[tuple[str, int], list[float]] = {}
    commands: dict[tuple[str, int], float] = {}
    server = Server.start()
    log = BENCH_DIR / ".results" / "kept_results.log"  # the worker processes' stderr
    log.parent.mkdir(exist_ok=True)
    runner = Runner("adelayed", project_python(), server, log)
    try:
        for rep in range(options.reps):
            names = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
            for concurrency in (10, 100):
                for name in names:
                    result = _run(server, runner, options.tasks, concurrency, name)
                    rates.setdefault((name, concurrency), []).append(result["rate"])
                    commands[(name, concurrency)] = result["commands"]
    finally:
        server.close()
    for (name, concurrency), values in sorted(rates.items(), key=lambda item: item[0][1]):
        runs = ", ".join(f"{value:,.0f}" for value in values)
        print(
            f"c={concurrency:<3} {name:24} {statistics.median(values):>9,.0f} tasks/s "
            f"(runs: {runs}), {commands[(name, concurrency)]:.2f} commands/task"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
