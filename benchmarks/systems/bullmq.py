"""bullmq 3.4 (the Python port of BullMQ: its Lua scripts over redis-py), in
benchmarks/.venvs/bullmq, with its defaults (completed jobs kept, a job's lock renewed every
15 s, stalled-job check every 30 s; a worker takes jobs with one moveToActive script per slot
and blocks in BZPOPMIN on its marker when idle; due delayed jobs are promoted inside
moveToActive).

bullmq's Python worker runs coroutine functions only: ``sync`` is unsupported. Bulk:
``Queue.addBulk`` (one MULTI/EXEC pipeline). Delays: the ``delay`` job option (ms). Retries:
the ``attempts: 2`` job option with no backoff (a failed job goes straight back to wait)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import redis.asyncio as redis
from bullmq import Queue, Worker

from systems import common

_sink: list[redis.Redis] = []
FILL_CHUNK = 1_000  # jobs per addBulk call when filling (one transaction each)


async def process(job: Any, token: str) -> int | None:
    """The one processor of the worker: dispatches on the job's name. What it returns is the
    completed job's returnvalue (kept with the job: no removeOnComplete)."""
    if job.name == "noop":
        common.DONE.hit()
    elif job.name == "noop_result":
        common.DONE.hit()
        return common.RESULT
    elif job.name == "probe":
        lag = time.time() - job.data["sent"]
        await _sink[0].rpush(common.SINK_KEY, repr(lag))  # type: ignore[misc]
    elif job.name == "flaky":
        common.flaky(job.data["n"])
    elif job.name == "tick":
        await _sink[0].rpush(common.SINK_KEY, repr(time.time()))  # type: ignore[misc]
    return None


def _queue(args: argparse.Namespace) -> Queue:
    return Queue(args.queue, {"connection": args.url})


async def worker(args: argparse.Namespace) -> common.Result:
    if args.kind != "async":
        return {"unsupported": "bullmq's Python worker runs coroutine functions only"}
    _sink.append(redis.Redis.from_url(args.url))
    options = {"connection": args.url, "concurrency": args.concurrency, "autorun": False}
    runner = Worker(args.queue, process, options)
    return await common.drive_worker(runner.run, args)


async def _add_bulk(queue: Queue, jobs: list[dict[str, Any]]) -> None:
    for start in range(0, len(jobs), FILL_CHUNK):
        await queue.addBulk(jobs[start : start + FILL_CHUNK])


async def fill(args: argparse.Namespace) -> common.Result:
    if args.kind != "async":
        return {"unsupported": "bullmq's Python worker runs coroutine functions only"}
    queue = _queue(args)
    if args.scenario == "retry":
        jobs = [
            {"name": "flaky", "data": {"n": n}, "opts": {"attempts": 2}} for n in range(args.count)
        ]
    else:
        name = "noop_result" if args.scenario == "results" else "noop"
        jobs = [{"name": name, "data": {}} for _ in range(args.count)]
    await _add_bulk(queue, jobs)
    return {"filled": await queue.getWaitingCount()}


async def enqueue(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    return await common.one_at_a_time(args.count, lambda: queue.add("noop", {}))


async def bulk(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)

    async def body() -> None:
        await queue.addBulk([{"name": "noop", "data": {}} for _ in range(args.count)])

    return await common.timed_rate(args.count, body)


async def latency(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    client = redis.Redis.from_url(args.url)

    async def send(sent: float) -> None:
        await queue.add("probe", {"sent": sent})

    return await common.latency_through(send, client.blpop, args.count)


async def delayed_latency(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    client = redis.Redis.from_url(args.url)
    delay_ms = round(args.delay * 1000)

    async def send(due: float) -> None:
        await queue.add("probe", {"sent": due}, {"delay": delay_ms})

    return await common.delayed_latency_through(send, client.blpop, args)


async def fill_due(args: argparse.Namespace) -> common.Result:
    """Each job's timestamp is its creation time and its delay what is left until the due
    time, so every job is due at args.due (to the millisecond)."""
    queue = _queue(args)
    due_ms = round(args.due * 1000)
    jobs = []
    for _ in range(args.count):
        now = round(time.time() * 1000)
        opts = {"timestamp": now, "delay": max(0, due_ms - now)}
        jobs.append({"name": "noop", "data": {}, "opts": opts})
    await _add_bulk(queue, jobs)
    return common.due_result(args.count, args.due, queue.toKey("delayed"))


async def ticks(args: argparse.Namespace) -> common.Result:
    """A job scheduler every 1,000 ms, made here; its grid is offset by its creation time."""
    queue = _queue(args)
    every = round(common.TICK_EVERY * 1000)
    await queue.upsertJobScheduler("tick", {"every": every}, "tick", {})
    client = redis.Redis.from_url(args.url)
    return await common.collect_ticks(client.blpop, args.count, grid=None)
