"""streaq (Redis streams, coredis client), in benchmarks/.venvs/streaq, with its defaults
(results kept 5 minutes, prefetch = concurrency). Plain functions run in anyio worker threads,
at most ``concurrency`` at once. Bulk: ``Worker.enqueue_many`` (one pipeline)."""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from coredis import Redis
from streaq import Worker

from systems import common
from systems.common import noop, noop_sync

FUNCTIONS = {"async": "noop", "sync": "noop_sync"}
_sink: list[Redis[Any]] = []


async def probe(sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, [repr(lag)])


def _worker(args: argparse.Namespace) -> Worker[Any]:
    worker = Worker(redis_url=args.url, concurrency=args.concurrency, queue_name=args.queue)
    for function in (noop, noop_sync, probe):
        worker.task(name=function.__name__)(function)
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
        task = client.registry[FUNCTIONS[args.kind]]
        await client.enqueue_many([task.enqueue() for _ in range(args.count)])
        return {"filled": await client.queue_size()}


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
