"""saq, in benchmarks/.venvs/saq, with its Redis queue and its defaults.

saq runs plain functions in a ThreadPoolExecutor of its own (default size: min(32, CPUs + 4)).
It has no bulk enqueue (``Queue.map`` enqueues one by one concurrently, then waits for the
results), so ``bulk`` is unsupported."""

from __future__ import annotations

import argparse
import time

import redis.asyncio as redis
from saq import CronJob, Queue, Worker
from saq.types import Context

from systems import common

FUNCTIONS = {"async": "noop", "sync": "noop_sync"}
SCHEDULE_EVERY = 1.0  # seconds: saq's default timers["schedule"], its scheduled-job promoter
_sink: list[redis.Redis] = []


async def noop(ctx: Context) -> None:
    common.DONE.hit()


def noop_sync(ctx: Context) -> None:
    common.DONE.hit()


async def noop_result(ctx: Context) -> int:
    common.DONE.hit()
    return common.RESULT


async def probe(ctx: Context, *, sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, repr(lag))  # type: ignore[misc]  # redis-py 7 typing


async def flaky(ctx: Context, *, number: int) -> None:
    common.flaky(number)


async def tick(ctx: Context) -> None:
    await _sink[0].rpush(common.SINK_KEY, repr(time.time()))  # type: ignore[misc]


async def _queue(args: argparse.Namespace) -> Queue:
    queue = Queue.from_url(args.url, name=args.queue)
    await queue.connect()
    return queue


async def worker(args: argparse.Namespace) -> common.Result:
    _sink.append(redis.Redis.from_url(args.url))
    crons = [CronJob(tick, cron="* * * * * *")] if args.scenario == "periodic" else None
    runner: Worker[Context] = Worker(
        await _queue(args),
        functions=[noop, noop_sync, noop_result, probe, flaky],
        concurrency=args.concurrency,
        cron_jobs=crons,
    )
    return await common.drive_worker(runner.start, args)


async def fill(args: argparse.Namespace) -> common.Result:
    queue = await _queue(args)
    if args.scenario == "retry":  # retries: attempts in all (saq's default 1: no retry)
        numbers = iter(range(args.count))
        await common.in_chunks(
            args.count, lambda: queue.enqueue("flaky", number=next(numbers), retries=2)
        )
    else:  # results: a job's record, its result in it, is kept its ttl (600 s by default)
        name = "noop_result" if args.scenario == "results" else FUNCTIONS[args.kind]
        await common.in_chunks(args.count, lambda: queue.enqueue(name))
    return {"filled": await queue.count("queued")}


async def fill_due(args: argparse.Namespace) -> common.Result:
    queue = await _queue(args)
    await common.in_chunks(args.count, lambda: queue.enqueue("noop", scheduled=args.due))
    return common.due_result(args.count, args.due)


async def delayed_latency(args: argparse.Namespace) -> common.Result:
    queue = await _queue(args)
    client = redis.Redis.from_url(args.url)

    async def send(due: float) -> None:  # scheduled: epoch seconds (a float is kept as is)
        await queue.enqueue("probe", sent=due, scheduled=due)

    return await common.delayed_latency_through(send, client.blpop, args, jitter=SCHEDULE_EVERY)


async def enqueue(args: argparse.Namespace) -> common.Result:
    queue = await _queue(args)
    return await common.one_at_a_time(args.count, lambda: queue.enqueue("noop"))


async def latency(args: argparse.Namespace) -> common.Result:
    queue = await _queue(args)
    client = redis.Redis.from_url(args.url)

    async def send(sent: float) -> None:
        await queue.enqueue("probe", sent=sent)

    return await common.latency_through(send, client.blpop, args.count)


async def ticks(args: argparse.Namespace) -> common.Result:
    """croniter's sixth field is the second: due on each whole second."""
    client = redis.Redis.from_url(args.url)
    return await common.collect_ticks(client.blpop, args.count, grid=0.0)
