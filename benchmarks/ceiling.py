"""One queue's ceiling: the Redis CPU a task costs, so the tasks per second one Redis core can
carry for one queue, however many workers serve it.

    .venv/bin/python benchmarks/ceiling.py [--tasks 200000] [--concurrency 100] [--options]

A private Redis; ``enqueue_many`` puts N no-op tasks in the queue (plain, or with
``--options``: ``keep_result=60``, an enveloped task whose result is stored), then one worker
(in this process) runs them. Redis's CPU (``INFO cpu``, user + system) is read before and after
each phase. The worker is the bottleneck on this machine (one Python process); the Redis CPU
per task says where the queue's ceiling is once enough workers feed it: one Redis core, that is
1 s of CPU a second, divided by the CPU a task costs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # systems.common: the shared no-op

from adelayed import PyTask, Queue, Worker
from adelayed.embedded import EmbeddedRedis

_BATCH = 10_000


NOOP = "systems.common:noop"  # the no-op every system of run.py runs: the queue's own cost


async def _cpu(client: redis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _drained(queue: Queue) -> None:
    while await queue.len() or await queue.in_flight():  # noqa: ASYNC110 - polling Redis
        await asyncio.sleep(0.05)


async def main(tasks: int, concurrency: int, options: bool) -> None:
    extra = {"keep_result": 60} if options else {}
    with EmbeddedRedis(binary="/usr/bin/redis-server") as server:
        client = redis.Redis(port=server.port)
        queue = Queue("ceiling", client)
        before = await _cpu(client)
        for start in range(0, tasks, _BATCH):
            await queue.enqueue_many(
                [PyTask(NOOP) for _ in range(min(_BATCH, tasks - start))], **extra
            )
        enqueue_cpu = await _cpu(client) - before
        worker = Worker(
            queue, concurrency=concurrency, tasks=["systems.common"], handle_signals=False,
            sweep_interval=None,
        )  # fmt: skip
        before, started = await _cpu(client), time.perf_counter()
        running = asyncio.create_task(worker.run())
        await _drained(queue)
        seconds, run_cpu = time.perf_counter() - started, await _cpu(client) - before
        worker.stop()
        await running
        await client.aclose()
    per_task = (enqueue_cpu + run_cpu) / tasks * 1e6
    kind = "with keep_result" if options else "plain"
    print(f"{tasks:,} {kind} tasks, one worker at concurrency {concurrency}:")
    enqueued, ran = enqueue_cpu / tasks * 1e6, run_cpu / tasks * 1e6
    print(f"  Redis CPU per task: {enqueued:.1f} µs to enqueue (enqueue_many), {ran:.1f} µs to")
    print(f"  fetch and release: {per_task:.1f} µs in all")
    print(f"  the worker ran {tasks / seconds:,.0f} tasks/s, Redis busy {run_cpu / seconds:.0%}")
    print(f"  one Redis core's ceiling for one queue: about {1e6 / per_task:,.0f} tasks/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--options", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.concurrency, args.options))
