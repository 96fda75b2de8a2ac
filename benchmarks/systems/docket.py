"""docket (PyPI ``pydocket``: Redis streams, redis-py), in benchmarks/.venvs/docket, with its
defaults (execution state kept 15 min; the worker's scheduler loop moves due tasks to the
stream every ``scheduling_resolution`` = 250 ms; an idle worker blocks in XREADGROUP) except
``minimum_check_interval`` = 100 ms, as its production docs and its CLI set it.

docket runs coroutine functions only: ``sync`` is unsupported. Bulk: ``Docket.add_many`` of
``Docket.call`` specs (pipelined, 1,000 a round trip by default). Delays: ``add(when=)``.
Retries: a ``Retry(attempts=2)`` default parameter (2 attempts in all, no delay)."""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import redis.asyncio as redis
from docket import Docket, Perpetual, Retry, Worker

from systems import common

_sink: list[redis.Redis] = []
# docs/production.md's setting (and the `docket worker` CLI's default; Worker()'s is 250 ms):
# how long XREADGROUP blocks, and the pause while every slot is busy.
CHECK_INTERVAL = timedelta(milliseconds=100)
SCHEDULING_RESOLUTION = 0.25  # seconds: the default pace of the worker's due-task mover


async def noop() -> None:
    common.DONE.hit()


async def noop_result() -> int:
    """Its return value is kept (docket stores a result that is not None, execution_ttl)."""
    common.DONE.hit()
    return common.RESULT


async def probe(sent: float) -> None:
    lag = time.time() - sent
    await _sink[0].rpush(common.SINK_KEY, repr(lag))  # type: ignore[misc]


async def flaky(number: int, retry: Retry = Retry(attempts=2)) -> None:  # noqa: B008
    common.flaky(number)


EVERY = Perpetual(every=timedelta(seconds=common.TICK_EVERY), automatic=True)


async def tick(perpetual: Perpetual = EVERY) -> None:
    await _sink[0].rpush(common.SINK_KEY, repr(time.time()))  # type: ignore[misc]


FUNCTIONS = (noop, noop_result, probe, flaky)


@asynccontextmanager
async def _docket(args: argparse.Namespace) -> AsyncIterator[Docket]:
    # docs/production.md: max_connections (redis-py's pool: 100 by default) at or above the
    # worker's concurrency; with 100 at c=100 the worker ran out ("Too many connections").
    url = f"{args.url}?max_connections={args.concurrency + 100}"
    async with Docket(name=args.queue, url=url) as docket:
        for function in FUNCTIONS:
            docket.register(function)
        if args.scenario == "periodic":  # an automatic Perpetual: the worker schedules it
            docket.register(tick)
        yield docket


async def worker(args: argparse.Namespace) -> common.Result:
    if args.kind != "async":
        return {"unsupported": "docket runs coroutine functions only"}
    _sink.append(redis.Redis.from_url(args.url))
    options = {"concurrency": args.concurrency, "minimum_check_interval": CHECK_INTERVAL}
    async with _docket(args) as docket, Worker(docket, **options) as runner:
        return await common.drive_worker(runner.run_forever, args)


async def fill(args: argparse.Namespace) -> common.Result:
    if args.kind != "async":
        return {"unsupported": "docket runs coroutine functions only"}
    async with _docket(args) as docket:
        if args.scenario == "retry":
            calls = [docket.call(flaky)(n) for n in range(args.count)]
        else:
            task = noop_result if args.scenario == "results" else noop
            calls = [docket.call(task)() for _ in range(args.count)]
        await docket.add_many(calls)
        return {"filled": len(calls)}


async def enqueue(args: argparse.Namespace) -> common.Result:
    async with _docket(args) as docket:
        # add() draws the task's key when called: one call per task, or all share one key
        return await common.one_at_a_time(args.count, lambda: docket.add(noop)())


async def bulk(args: argparse.Namespace) -> common.Result:
    async with _docket(args) as docket:

        async def body() -> None:
            await docket.add_many([docket.call(noop)() for _ in range(args.count)])

        return await common.timed_rate(args.count, body)


async def latency(args: argparse.Namespace) -> common.Result:
    async with _docket(args) as docket:
        client = redis.Redis.from_url(args.url)

        async def send(sent: float) -> None:
            await docket.add(probe)(sent)

        return await common.latency_through(send, client.blpop, args.count)


async def delayed_latency(args: argparse.Namespace) -> common.Result:
    async with _docket(args) as docket:
        client = redis.Redis.from_url(args.url)

        async def send(due: float) -> None:
            when = datetime.now(timezone.utc) + timedelta(seconds=args.delay)
            await docket.add(probe, when=when)(due)

        return await common.delayed_latency_through(
            send, client.blpop, args, jitter=SCHEDULING_RESOLUTION
        )


async def fill_due(args: argparse.Namespace) -> common.Result:
    when = datetime.fromtimestamp(args.due, timezone.utc)
    async with _docket(args) as docket:
        await docket.add_many([docket.call(noop, when=when)() for _ in range(args.count)])
        return common.due_result(args.count, args.due, docket.queue_key)


async def ticks(args: argparse.Namespace) -> common.Result:
    """A Perpetual's next run counts from the end of the last one: no fixed grid."""
    client = redis.Redis.from_url(args.url)
    return await common.collect_ticks(client.blpop, args.count, grid=None)
