"""adelayed's kept results, on one private Redis: how long an enqueue-then-``result()`` round
trip takes on an idle worker, and what 10,000 concurrent ``result()`` calls cost.

    .venv/bin/python benchmarks/result_waiters.py [--probes 300] [--pauses 0,1,10]
                                                  [--waiters 10000]

- Round trip: one task at a time (``keep_result=60``, an ``async def`` returning its
  argument), from just before ``enqueue`` to ``result()`` returning, the worker idle (blocked
  waiting for a task) in between; p50, p90 and p99 in ms. Each probe comes after a pause (0,
  1 and 10 ms by default): the longer the host's CPUs sit idle, the longer each process takes
  to wake, so the pause, not the queue, sets most of the number on a virtual machine. Twice:
  the worker in a process of its own, as deployed, and the worker in this process (one event
  loop runs both sides). Beside them, the host's floors: a PING round trip after the same pause
  (one of the path's hops), and
  a bare relay of the same hops in plain redis-py, with no queue at all: the prober LPUSHes, a
  relay blocked in BLPOP (in a process of its own, then in this one) PUBLISHes what it popped,
  and the prober's subscription receives it. No queue that hands a result back through Redis
  can beat that relay on this host.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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

# The bare relay in its own process: BLPOP "relay:in", PUBLISH what it popped on "relay:out".
_RELAY = """
import asyncio, sys
import redis.asyncio as redis
from result_waiters import relay
asyncio.run(relay(redis.Redis.from_url(sys.argv[1])))
"""


async def relay(client: redis.Redis) -> None:
    """Hand each value LPUSHed on ``relay:in`` back on the ``relay:out`` channel, forever."""
    while True:
        _, value = await client.blpop(["relay:in"])  # type: ignore[misc]
        await client.publish("relay:out", value)


Probe = Callable[[int], Awaitable[None]]


async def timed(probe: Probe, probes: int, pauses: list[float]) -> dict[float, list[float]]:
    """Each pause's ``probes`` round trips of ``probe`` (ms, sorted), that pause before each."""
    lags: dict[float, list[float]] = {}
    for pause in pauses:
        lags[pause] = []
        for i in range(probes):
            await asyncio.sleep(pause)
            started = time.perf_counter()
            await probe(i)
            lags[pause].append((time.perf_counter() - started) * 1000)
        lags[pause].sort()
    return lags


async def relay_trips(
    client: redis.Redis, probes: int, pauses: list[float], own_process: bool
) -> dict[float, list[float]]:
    """The bare relay's round trips: LPUSH to a BLPOP that PUBLISHes it back."""
    url = _url_of(client)
    if own_process:
        relaying: Any = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RELAY, url, cwd=_HERE
        )
    else:
        relaying = asyncio.create_task(relay(redis.Redis.from_url(url)))
    subscription = client.pubsub()
    await subscription.subscribe("relay:out")
    await asyncio.sleep(1.0)

    async def probe(i: int) -> None:
        await client.lpush("relay:in", i)  # type: ignore[misc]
        while True:
            message = await subscription.get_message(timeout=5)
            if message is not None and message["type"] == "message":
                break
        assert int(message["data"]) == i

    lags = await timed(probe, probes, pauses)
    await subscription.aclose()
    if own_process:
        relaying.terminate()
        await relaying.wait()
    else:
        relaying.cancel()
    return lags


async def round_trips(
    client: redis.Redis, probes: int, pauses: list[float], own_process: bool
) -> dict[float, list[float]]:
    """adelayed's enqueue-then-``result()`` round trips on an idle worker."""
    queue = Queue("rt", client)
    if own_process:
        worker_process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, _url_of(client), cwd=_HERE
        )
    else:
        worker = Worker(
            queue, 10, handle_signals=False, sweep_interval=None, tasks=[time_tasks.echo]
        )
        running = asyncio.create_task(worker.run())
    await asyncio.sleep(1.0)

    async def probe(i: int) -> None:
        handle = await queue.enqueue(PyTask(time_tasks.echo, args=(i,)), keep_result=60)
        assert await handle.result(timeout=5) == i

    lags = await timed(probe, probes, pauses)
    if own_process:
        worker_process.terminate()
        await worker_process.wait()
    else:
        worker.stop()
        await running
    return lags


def _url_of(client: redis.Redis) -> str:
    kwargs = client.get_connection_kwargs()
    return f"redis://{kwargs['host']}:{kwargs['port']}"


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


async def floor(client: redis.Redis, probes: int, pauses: list[float]) -> dict[float, list[float]]:
    """The host's floor: a PING round trip after each pause."""

    async def probe(i: int) -> None:
        await client.ping()  # type: ignore[misc]

    return await timed(probe, probes, pauses)


async def main(probes: int, pauses: list[float], count: int) -> None:
    server = Server.start()
    client = redis.Redis.from_url(server.url)
    rows: dict[str, dict[float, list[float]]] = {}
    try:
        rows["floor: a PING"] = await floor(client, probes, pauses)
        for what, measure in (("floor: a bare relay", relay_trips), ("adelayed", round_trips)):
            for where in ("its own process", "this process"):
                lags = await measure(client, probes, pauses, own_process=where == "its own process")
                rows[f"{what}, its worker in {where}"] = lags
        connections, pubsub, elapsed = await waiters(client, count)
    finally:
        await client.aclose()
        server.embedded.stop()
    print(f"round trips, {probes} probes per pause: p50 / p90 / p99 in ms")
    for what, by_pause in rows.items():
        for pause, lag in by_pause.items():
            pick = " / ".join(f"{lag[int(len(lag) * q)]:.3f}" for q in (0.5, 0.9, 0.99))
            print(f"  {what}, after a {pause * 1000:g} ms pause: {pick}")
    print(f"{count:,} concurrent result() calls: {connections} connections of this process to "
          f"Redis while they waited ({pubsub} pub/sub); all returned {elapsed:.2f} s after the "
          f"worker started ({count / elapsed:,.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--pauses", default="0,1,10", help="ms before each probe, comma-separated")
    parser.add_argument("--waiters", type=int, default=10_000)
    options = parser.parse_args()
    pauses = [float(ms) / 1000 for ms in options.pauses.split(",")]
    asyncio.run(main(options.probes, pauses, options.waiters))
