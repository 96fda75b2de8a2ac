"""adelayed's own time-feature costs, paired in one run on one private Redis:

- a worker of one queue against a worker of three queues (``Worker([high, default, low])``) on
  the same load, plain no-op tasks and tasks that fail once and are retried through the
  scheduled set (``Backoff.fixed(0)``): the 3-queue worker must stay within 10%;
- a task with options (``timeout=``) against a plain one: what an envelope costs.

    .venv/bin/python benchmarks/queues.py [--tasks 20000] [--reps 5] [--concurrency 10]

Each repetition runs every variant once, in turn, the order reversed every other repetition
(A B C, C B A, ...), so a slow spell of the host and a variant's place in the run fall on all of
them alike; prints each variant's median rate, and the median over repetitions of its rate
divided by its pair's in the same repetition (this host's speed drifts by 20% between runs a
second apart: a ratio of medians is noisier). The worker runs in this process, after the tasks
are enqueued; the rate is tasks / (time from the worker's start to the last task's end).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import time_tasks
from harness.redis_server import Server
from time_tasks import flaky, noop

from adelayed import Backoff, PyTask, Queue, Worker

Variant = Callable[[redis.Redis, int, int], Awaitable[float]]


async def _run(queues: list[Queue], count: int, concurrency: int) -> float:
    time_tasks.done = 0
    worker = Worker(
        queues if len(queues) > 1 else queues[0], concurrency, handle_signals=False,
        sweep_interval=None, tasks=[noop, flaky], retry_backoff=(0.001, 0.001),
    )  # fmt: skip
    started = time.perf_counter()
    running = asyncio.create_task(worker.run())
    while time_tasks.done < count:  # noqa: ASYNC110 - polling in the measuring process only
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    worker.stop()
    await running
    return count / elapsed


def variant(names: tuple[str, ...], func: Callable[..., object], **options: object) -> Variant:
    async def measure(client: redis.Redis, count: int, concurrency: int) -> float:
        await client.flushall()
        time_tasks.failed.clear()
        queues = [Queue(name, client) for name in names]
        tasks = [PyTask(func, args=(i,), retry=1) for i in range(count)]
        await queues[-1].enqueue_many(tasks, **options)  # type: ignore[arg-type]
        return await _run(queues, count, concurrency)

    return measure


VARIANTS: dict[str, Variant] = {
    "no-op, one queue": variant(("low",), noop),
    "no-op, three queues (tasks in the last)": variant(("high", "default", "low"), noop),
    "no-op with timeout=60 (enveloped), one queue": variant(("low",), noop, timeout=60),
    "fail once + retry, one queue": variant(("low",), flaky),
    "fail once + retry, three queues": variant(("high", "default", "low"), flaky),
    "fail once + retry, Backoff.fixed(0), one queue": variant(
        ("low",), flaky, backoff=Backoff.fixed(0)
    ),
}


PAIRS = {
    "retry, three": "fail once + retry, one queue",
    "Backoff.fixed(0)": "fail once + retry, one queue",
    "three queues": "no-op, one queue",
    "enveloped": "no-op, one queue",
}


async def main(count: int, reps: int, concurrency: int) -> None:
    logging.getLogger("adelayed").setLevel(logging.CRITICAL)  # the retries' failure lines
    server = Server.start()
    client = redis.Redis.from_url(server.url)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for rep in range(reps):
            order = list(VARIANTS.items())
            for name, measure in order[::-1] if rep % 2 else order:
                rates[name].append(await measure(client, count, concurrency))
    finally:
        await client.aclose()
        server.embedded.stop()
    print(f"tasks={count} reps={reps} concurrency={concurrency}; median tasks/s (min-max)")
    for name, values in rates.items():
        against = next((b for key, b in PAIRS.items() if key in name), None)
        ratio = ""
        if against:
            ratios = [a / b for a, b in zip(values, rates[against], strict=True)]
            ratio = f"  x{statistics.median(ratios):.3f} of '{against}'"
        low, median, high = min(values), statistics.median(values), max(values)
        print(f"{name:48} {median:>10,.0f}  ({low:,.0f}-{high:,.0f}){ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10)
    options = parser.parse_args()
    asyncio.run(main(options.tasks, options.reps, options.concurrency))
