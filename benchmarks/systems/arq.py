"""arq, in benchmarks/.venvs/arq: its defaults (poll_delay 0.5 s, results kept 1 h: every
job's result is stored, the plain no-op's None included; the results scenario's task returns 1).

arq runs coroutine functions only (a plain function is refused at start-up), and has no bulk
enqueue: ``sync`` and ``bulk`` are unsupported."""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from typing import Any

import redis.asyncio as redis
from arq import Worker, create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.cron import cron
from arq.worker import Retry, func

from systems import common

POLL_DELAY = 0.5  # arq's default Worker(poll_delay=...)
CRON_MICROSECOND = 123_456  # arq's default cron(microsecond=...): when in each second it is due
_sink: list[redis.Redis] = []


async def noop(ctx: dict[str, Any]) -> None:
    common.DONE.hit()


async def noop_result(ctx: dict[str, Any]) -> int:
    common.DONE.hit()
    return common.RESULT


async def probe(ctx: dict[str, Any], sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, repr(lag))  # type: ignore[misc]  # redis-py 5 typing


async def flaky(ctx: dict[str, Any], number: int) -> None:
    if common.first_try(number):
        raise Retry()  # no defer: back in the queue at its score, already due
    common.DONE.hit()


async def tick(ctx: dict[str, Any]) -> None:
    await _sink[0].rpush(common.SINK_KEY, repr(time.time()))  # type: ignore[misc]


async def _pool(args: argparse.Namespace) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(args.url), default_queue_name=args.queue)


async def worker(args: argparse.Namespace) -> common.Result:
    if args.kind != "async":
        return {"unsupported": "arq runs coroutine functions only"}
    _sink.append(redis.Redis.from_url(args.url))
    functions = [func(f, name=f.__name__) for f in (noop, noop_result, probe, flaky)]
    runner = Worker(
        functions=functions,
        redis_settings=RedisSettings.from_dsn(args.url),
        queue_name=args.queue,
        max_jobs=args.concurrency,
        handle_signals=False,
        cron_jobs=[cron(tick, second=set(range(60)))] if args.scenario == "periodic" else None,
    )
    return await common.drive_worker(runner.async_run, args)


async def fill(args: argparse.Namespace) -> common.Result:
    pool = await _pool(args)
    if args.scenario == "retry":
        numbers = iter(range(args.count))
        await common.in_chunks(args.count, lambda: pool.enqueue_job("flaky", next(numbers)))
    else:  # results: Worker(keep_result=3600) by default
        name = "noop_result" if args.scenario == "results" else "noop"
        await common.in_chunks(args.count, lambda: pool.enqueue_job(name))
    return {"filled": await pool.zcard(args.queue)}


async def fill_due(args: argparse.Namespace) -> common.Result:
    pool = await _pool(args)
    when = datetime.fromtimestamp(args.due, timezone.utc)
    await common.in_chunks(args.count, lambda: pool.enqueue_job("noop", _defer_until=when))
    return common.due_result(args.count, args.due)


async def delayed_latency(args: argparse.Namespace) -> common.Result:
    pool = await _pool(args)

    async def send(due: float) -> None:
        await pool.enqueue_job("probe", due, _defer_by=args.delay)

    return await common.delayed_latency_through(send, pool.blpop, args, jitter=POLL_DELAY)


async def enqueue(args: argparse.Namespace) -> common.Result:
    pool = await _pool(args)
    return await common.one_at_a_time(args.count, lambda: pool.enqueue_job("noop"))


async def latency(args: argparse.Namespace) -> common.Result:
    pool = await _pool(args)

    async def send(sent: float) -> None:
        await pool.enqueue_job("probe", sent)

    return await common.latency_through(send, pool.blpop, args.count, jitter=POLL_DELAY)


async def ticks(args: argparse.Namespace) -> common.Result:
    pool = await _pool(args)
    return await common.collect_ticks(pool.blpop, args.count, grid=CRON_MICROSECOND / 1e6)
