"""taskiq with taskiq-redis's ListQueueBroker (LPUSH / BRPOP), in benchmarks/.venvs/taskiq.

The worker is taskiq's programmatic receiver (``taskiq.api.run_receiver_task``) with
``max_async_tasks`` = concurrency and a thread pool of the same size for plain functions; no
result backend (taskiq's default), except in the results scenario: taskiq-redis's
``RedisAsyncResultBackend`` (one SET with an expiry per task; its connection pool's default
size). taskiq has no bulk enqueue: ``bulk`` is unsupported."""

from __future__ import annotations

import argparse
import time

import redis.asyncio as redis
from taskiq.api import run_receiver_task
from taskiq.middlewares import SimpleRetryMiddleware
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from systems import common
from systems.common import flaky_async, noop, noop_result, noop_sync

FUNCTIONS = {"async": "noop", "sync": "noop_sync"}
KEEP_RESULT = 60  # seconds: the results scenario's result_ex_time (as adelayed's keep_result)
_sink: list[redis.Redis] = []


async def probe(sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, repr(lag))


def _broker(args: argparse.Namespace) -> ListQueueBroker:
    broker = ListQueueBroker(args.url, queue_name=args.queue)
    if args.scenario == "results":
        backend: RedisAsyncResultBackend[object] = RedisAsyncResultBackend(
            args.url, result_ex_time=KEEP_RESULT
        )
        broker = broker.with_result_backend(backend)
    for function in (noop, noop_sync, noop_result, probe):
        broker.register_task(function, task_name=function.__name__)
    # taskiq's retries: SimpleRetryMiddleware re-sends a failed task whose labels ask for it
    # (max_retries: attempts in all). Only the retry scenario's worker has the middleware.
    broker.register_task(flaky_async, task_name="flaky", retry_on_error=True, max_retries=2)
    if args.scenario == "retry":
        broker.add_middlewares(SimpleRetryMiddleware())
    return broker


async def _client(args: argparse.Namespace) -> ListQueueBroker:
    broker = _broker(args)
    await broker.startup()
    return broker


async def worker(args: argparse.Namespace) -> common.Result:
    _sink.append(redis.Redis.from_url(args.url))
    broker = _broker(args)

    async def run() -> None:
        await run_receiver_task(
            broker,
            max_async_tasks=args.concurrency,
            sync_workers=args.concurrency,
            run_startup=True,
        )

    return await common.drive_worker(run, args)


async def fill(args: argparse.Namespace) -> common.Result:
    broker = await _client(args)
    names = {"retry": "flaky", "results": "noop_result"}
    task = broker.find_task(names.get(args.scenario, FUNCTIONS[args.kind]))
    assert task is not None
    if args.scenario == "retry":
        numbers = iter(range(args.count))
        await common.in_chunks(args.count, lambda: task.kiq(next(numbers)))
    else:
        await common.in_chunks(args.count, task.kiq)
    return {"filled": await redis.Redis.from_url(args.url).llen(args.queue)}


async def enqueue(args: argparse.Namespace) -> common.Result:
    broker = await _client(args)
    task = broker.find_task("noop")
    assert task is not None
    return await common.one_at_a_time(args.count, task.kiq)


async def latency(args: argparse.Namespace) -> common.Result:
    broker = await _client(args)
    task = broker.find_task("probe")
    assert task is not None
    client = redis.Redis.from_url(args.url)

    async def send(sent: float) -> None:
        await task.kiq(sent)

    return await common.latency_through(send, client.blpop, args.count)
