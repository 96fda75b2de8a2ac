"""streaq (Redis streams, coredis client), in benchmarks/.venvs/streaq, with its defaults
(results kept 5 minutes, prefetch = concurrency). Plain functions run in anyio worker threads,
at most ``concurrency`` at once. Bulk: ``Worker.enqueue_many`` (one pipeline)."""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from coredis import Redis
from streaq import StreaqRetry, Worker

from systems import common
from systems.common import noop, noop_result, noop_sync

FUNCTIONS = {"async": "noop", "sync": "noop_sync"}
PROMOTER_EVERY = 0.5  # seconds: streaq's loop that moves due delayed tasks to the stream
_sink: list[Redis[Any]] = []


async def probe(sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, [repr(lag)])


async def flaky(number: int) -> None:
    if common.first_try(number):
        raise StreaqRetry(delay=0)  # max_tries: 3 by default
    common.DONE.hit()


async def tick() -> None:
    await _sink[0].rpush(common.SINK_KEY, [repr(time.time())])


def _worker(args: argparse.Namespace) -> Worker[Any]:
    worker = Worker(redis_url=args.url, concurrency=args.concurrency, queue_name=args.queue)
    for function in (noop, noop_sync, noop_result, probe, flaky):
        worker.task(name=function.__name__)(function)
    if args.scenario == "periodic":  # crontab's 7 fields: the first is the second
        worker.cron("* * * * * * *", name="tick")(tick)
    return worker


@asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[Worker[Any]]:
    worker = _worker(args)
    async with worker:
        yield worker


async def worker(args: argparse.Namespace) -> common.Result:
    async with Redis.from_url(args.url) as sink:
        _sink.append(sink)
        return await common.drive_worker(_worker(args).run_async, args)


async def fill(args: argparse.Namespace) -> common.Result:
    async with _client(args) as client:
        if args.scenario == "retry":
            flaky_task = client.registry["flaky"]
            tasks = [flaky_task.enqueue(n) for n in range(args.count)]
        else:  # results: every task's result is kept its ttl (5 minutes by default)
            name = "noop_result" if args.scenario == "results" else FUNCTIONS[args.kind]
            task = client.registry[name]
            tasks = [task.enqueue() for _ in range(args.count)]
        await client.enqueue_many(tasks)
        return {"filled": await client.queue_size()}


async def fill_due(args: argparse.Namespace) -> common.Result:
    when = datetime.fromtimestamp(args.due, timezone.utc)
    async with _client(args) as client:
        task = client.registry["noop"]
        await client.enqueue_many([task.enqueue().start(schedule=when) for _ in range(args.count)])
        return common.due_result(args.count, args.due)


async def delayed_latency(args: argparse.Namespace) -> common.Result:
    async with _client(args) as client, Redis.from_url(args.url) as sink:
        task = client.registry["probe"]
        delay = timedelta(seconds=args.delay)

        async def send(due: float) -> None:
            await task.enqueue(due).start(delay=delay)

        return await common.delayed_latency_through(send, sink.blpop, args, PROMOTER_EVERY)


async def enqueue(args: argparse.Namespace) -> common.Result:
    async with _client(args) as client:
        task = client.registry["noop"]
        return await common.one_at_a_time(args.count, task.enqueue)


async def bulk(args: argparse.Namespace) -> common.Result:
    async with _client(args) as client:
        task = client.registry["noop"]

        async def body() -> None:
            await client.enqueue_many([task.enqueue() for _ in range(args.count)])

        return await common.timed_rate(args.count, body)


async def latency(args: argparse.Namespace) -> common.Result:
    async with _client(args) as client, Redis.from_url(args.url) as sink:
        task = client.registry["probe"]

        async def send(sent: float) -> None:
            await task.enqueue(sent)

        return await common.latency_through(send, sink.blpop, args.count)


async def ticks(args: argparse.Namespace) -> common.Result:
    async with Redis.from_url(args.url) as client:
        return await common.collect_ticks(client.blpop, args.count, grid=0.0)
