"""adelayed, from the project's own virtualenv (installed editable)."""

from __future__ import annotations

import argparse
import time

import redis.asyncio as redis

from adelayed import PyTask, Queue, Worker
from systems import common

FUNCTIONS = {"async": "systems.common:noop", "sync": "systems.common:noop_sync"}
_sink: list[redis.Redis] = []  # the worker's client for latency probes


async def probe(sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, repr(lag))


def _queue(args: argparse.Namespace) -> Queue:
    return Queue(args.queue, redis.Redis.from_url(args.url))


async def worker(args: argparse.Namespace) -> common.Result:
    _sink.append(redis.Redis.from_url(args.url))
    queue = _queue(args)
    allowed = ["systems.adelayed", *FUNCTIONS.values()]  # the probe, and the shared no-ops
    runner = Worker(queue, concurrency=args.concurrency, tasks=allowed, sweep_interval=None)
    return await common.drive_worker(runner.run, args)


async def fill(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    await queue.enqueue_many([PyTask(FUNCTIONS[args.kind]) for _ in range(args.count)])
    return {"filled": await queue.len()}


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
