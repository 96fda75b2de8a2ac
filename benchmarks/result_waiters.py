"""adelayed's kept results, on one private Redis: how long an enqueue-then-``result()`` round
trip takes on an idle worker, and what 10,000 concurrent ``result()`` calls cost.

    .venv/bin/python benchmarks/result_waiters.py [--probes 300] [--waiters 10000]

- Round trip: one task at a time (``keep_result=60``, an ``async def`` returning its
  argument), from just before ``enqueue`` to ``result()`` returning, the worker idle in between
  (a 10 ms pause per probe); p50, p90, p99 and max in ms. Twice: the worker in a process of its
  own, as deployed, and the worker in this process (one event loop runs both sides). Beside
  them, the host's floor: a PING round trip after the same pause (one of the path's hops).
- Waiters: ``--waiters`` tasks are enqueued, then as many ``result()`` calls start while no
  worker runs; once every waiter is subscribed and has read its task's state, the Redis
  connections of this process are counted (``CLIENT LIST``: total, and pub/sub ones), then a
  worker (c=100) runs them all; reports the time until every call returned and that each got
  its own task's value.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import time_tasks
from harness.redis_server import Server

from adelayed import PyTask, Queue, Worker

_HERE = Path(__file__).resolve().parent

# The worker of the own-process round trips: c=10 on queue "rt" of the Redis at argv[1].
_WORKER = """
import asyncio, sys
import redis.asyncio as redis
import time_tasks
from adelayed import Queue, Worker
queue = Queue("rt", redis.Redis.from_url(sys.argv[1]))
asyncio.run(Worker(queue, 10, sweep_interval=None, tasks=[time_tasks.echo]).run())
"""


async def round_trips(client: redis.Redis, probes: int, own_process: bool) -> list[float]:
    queue = Queue("rt", client)
    if own_process:
        url = client.get_connection_kwargs()
        worker_process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, f"redis://{url['host']}:{url['port']}",
            cwd=_HERE,
        )  # fmt: skip
    else:
        worker = Worker(
            queue, 10, handle_signals=False, sweep_interval=None, tasks=[time_tasks.echo]
        )
        running = asyncio.create_task(worker.run())
    await asyncio.sleep(1.0)
    lags = []
    for i in range(probes):
        started = time.perf_counter()
        handle = await queue.enqueue(PyTask(time_tasks.echo, args=(i,)), keep_result=60)
        assert await handle.result(timeout=5) == i
        lags.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    if own_process:
        worker_process.terminate()
        await worker_process.wait()
    else:
        worker.stop()
        await running
    return sorted(lags)


async def waiters(client: redis.Redis, count: int) -> tuple[int, int, float]:
    queue = Queue("many", client)
    tasks = [PyTask(time_tasks.echo, args=(i,)) for i in range(count)]
    handles = []
    for start in range(0, count, 1000):  # one handle per task: enqueue() one by one
        group = tasks[start : start + 1000]
        handles += await asyncio.gather(*(queue.enqueue(t, keep_result=60) for t in group))
    calls = [asyncio.ensure_future(h.result(timeout=120)) for h in handles]
    await asyncio.sleep(2)  # every waiter subscribed, its state read
    clients = await client.client_list()  # only this process uses this Redis
    pubsub = sum(1 for c in clients if int(c.get("sub", 0)) > 0)
    worker = Worker(queue, 100, handle_signals=False, sweep_interval=None, tasks=[time_tasks.echo])
    started = time.perf_counter()
    running = asyncio.create_task(worker.run())
    values = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - started
    worker.stop()
    await running
    assert values == list(range(count))
    return len(clients), pubsub, elapsed


async def floor(client: redis.Redis, probes: int) -> list[float]:
    """The host's floor: a PING round trip after the same 10 ms pause (ms, sorted)."""
    lags = []
    for _ in range(probes):
        started = time.perf_counter()
        await client.ping()
        lags.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    return sorted(lags)


async def main(probes: int, count: int) -> None:
    server = Server.start()
    client = redis.Redis.from_url(server.url)
    try:
        pings = await floor(client, probes)
        lags = {
            where: await round_trips(client, probes, own_process=where == "its own process")
            for where in ("its own process", "this process")
        }
        connections, pubsub, elapsed = await waiters(client, count)
    finally:
        await client.aclose()
        server.embedded.stop()
    print(f"floor: a PING round trip after a 10 ms pause, {probes} probes: p50 "
          f"{pings[len(pings) // 2]:.3f} ms")  # fmt: skip
    for where, lag in lags.items():
        pick = [lag[int(len(lag) * q)] for q in (0.5, 0.9, 0.99)]
        print(f"enqueue -> result() on an idle worker in {where}, {probes} probes: p50 "
              f"{pick[0]:.3f} ms, p90 {pick[1]:.3f} ms, p99 {pick[2]:.3f} ms, max "
              f"{lag[-1]:.3f} ms")  # fmt: skip
    print(f"{count:,} concurrent result() calls: {connections} connections of this process to "
          f"Redis while they waited ({pubsub} pub/sub); all returned {elapsed:.2f} s after the "
          f"worker started ({count / elapsed:,.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--waiters", type=int, default=10_000)
    options = parser.parse_args()
    asyncio.run(main(options.probes, options.waiters))
