"""adelayed, from the project's own virtualenv (installed editable)."""

from __future__ import annotations

import argparse
import inspect
import time
from typing import Any

import redis.asyncio as redis

from adelayed import PyTask, Queue, Worker
from systems import common

FUNCTIONS = {"async": "systems.common:noop", "sync": "systems.common:noop_sync"}
FLAKY = {"async": "systems.common:flaky_async", "sync": "systems.common:flaky"}
RESULT_TASK = "systems.common:noop_result"
KEEP_RESULT = 60.0  # seconds: the results scenario's keep_result (one FINISH call per task)
# A retry with no pause asked (retry_backoff's base must be above 0; the reschedule rounds
# the delay up to 1 ms).
NO_PAUSE = (1e-9, 1e-9)
NOT_YET = "not available yet: Queue.enqueue has no delay= in this adelayed"
_sink: list[redis.Redis] = []  # the worker's client for latency probes


async def probe(sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, repr(lag))


async def tick() -> None:
    await _sink[0].rpush(common.SINK_KEY, repr(time.time()))


def _queue(args: argparse.Namespace) -> Queue:
    return Queue(args.queue, redis.Redis.from_url(args.url))


async def worker(args: argparse.Namespace) -> common.Result:
    _sink.append(redis.Redis.from_url(args.url))
    queue = _queue(args)
    # the probe, the shared no-ops and the retry scenario's tasks
    allowed = ["systems.adelayed", *FUNCTIONS.values(), *FLAKY.values(), RESULT_TASK]
    options: dict[str, Any] = {"retry_backoff": NO_PAUSE} if args.scenario == "retry" else {}
    if args.scenario == "periodic":  # imported here: ab.py runs this file on older revisions too
        from adelayed import Every

        options["schedules"] = [Every(common.TICK_EVERY, PyTask("systems.adelayed:tick"))]
    runner = Worker(
        queue, concurrency=args.concurrency, tasks=allowed, sweep_interval=None, **options
    )
    return await common.drive_worker(runner.run, args)


async def fill(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    if args.scenario == "results":  # its return value kept KEEP_RESULT seconds
        if not has_option("keep_result"):
            return {"unsupported": "not available yet: no keep_result= in this adelayed"}
        tasks = [PyTask(RESULT_TASK) for _ in range(args.count)]
        await queue.enqueue_many(tasks, keep_result=KEEP_RESULT)
        return {"filled": await queue.len()}
    if args.scenario == "retry":  # retry=1: a second run after a failure
        tasks = [PyTask(FLAKY[args.kind], args=(n,), retry=1) for n in range(args.count)]
    else:
        tasks = [PyTask(FUNCTIONS[args.kind]) for _ in range(args.count)]
    await queue.enqueue_many(tasks)
    return {"filled": await queue.len()}


def has_option(name: str) -> bool:
    """Whether this adelayed's enqueue and enqueue_many take the option ``name`` (ab.py runs
    this file on older revisions too)."""
    return all(
        name in inspect.signature(method).parameters
        for method in (Queue.enqueue, Queue.enqueue_many)
    )


def has_delay() -> bool:
    """Whether this adelayed's enqueue and enqueue_many take ``delay=`` (being built)."""
    return has_option("delay")


async def fill_due(args: argparse.Namespace) -> common.Result:
    """N no-op tasks, all due at ``args.due``: enqueue_many in chunks, each with the delay
    left until then (the delay counts from Redis's clock when the chunk's script runs)."""
    if not has_delay():
        return {"unsupported": NOT_YET, "pending": True}
    queue = _queue(args)
    chunk = 10_000
    for start in range(0, args.count, chunk):
        tasks = [PyTask(FUNCTIONS["async"]) for _ in range(min(chunk, args.count - start))]
        await queue.enqueue_many(tasks, delay=max(0.0, args.due - time.time()))
    return common.due_result(args.count, args.due, f"{args.queue}_scheduled")


async def delayed_latency(args: argparse.Namespace) -> common.Result:
    if not has_delay():
        return {"unsupported": NOT_YET, "pending": True}
    queue = _queue(args)

    async def send(due: float) -> None:
        probe = PyTask("systems.adelayed:probe", args=(due,))
        await queue.enqueue(probe, delay=args.delay)

    return await common.delayed_latency_through(send, queue.redis.blpop, args)


async def enqueue(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    return await common.one_at_a_time(args.count, lambda: queue.enqueue(PyTask(FUNCTIONS["async"])))


async def bulk(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)

    async def body() -> None:
        await queue.enqueue_many([PyTask(FUNCTIONS["async"]) for _ in range(args.count)])

    return await common.timed_rate(args.count, body)


async def latency(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)

    async def send(sent: float) -> None:
        await queue.enqueue(PyTask("systems.adelayed:probe", args=(sent,)))

    return await common.latency_through(send, queue.redis.blpop, args.count)


async def ticks(args: argparse.Namespace) -> common.Result:
    """Every's ticks are the multiples of its interval on Redis's clock: grid 0."""
    return await common.collect_ticks(_queue(args).redis.blpop, args.count, grid=0.0)
