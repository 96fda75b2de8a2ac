"""What a durable enqueue costs (adelayed._durable): a primary and one replica on loopback;
plain and durable enqueues of the same task, alternating, one at a time and 10,000 at once.

    .venv/bin/python benchmarks/durable.py [rounds]
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed.embedded import EmbeddedRedis

_SYNC = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0"}
TASK = PyTask("benchmarks.durable:noop", (1,))


async def _measure(queue: Queue, durable: bool) -> tuple[float, float]:
    """(µs per enqueue one at a time, enqueues per second 10,000 at once)."""
    started = time.perf_counter()
    for _ in range(2000):
        await queue.enqueue(TASK, durable=durable)
    one_at_a_time = (time.perf_counter() - started) / 2000 * 1e6
    started = time.perf_counter()
    await asyncio.gather(*(queue.enqueue(TASK, durable=durable) for _ in range(10_000)))
    return one_at_a_time, 10_000 / (time.perf_counter() - started)


async def main(rounds: int) -> None:
    with (
        EmbeddedRedis(_SYNC) as primary,
        EmbeddedRedis({**_SYNC, "replicaof": f"127.0.0.1 {primary.port}"}),
    ):
        client = redis.Redis(port=primary.port)
        while await client.incr("probe") and await client.wait(1, 100) < 1:
            pass  # until the replica acknowledges writes
        queue = Queue("jobs", client)
        for _ in range(rounds):
            for durable in (False, True):
                one, many = await _measure(queue, durable)
                label = "durable" if durable else "plain  "
                print(f"{label}: {one:5.0f} µs per enqueue one at a time;", end=" ")
                print(f"10,000 at once {many:,.0f}/s")
            await client.delete("jobs", "jobs_noti")
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
