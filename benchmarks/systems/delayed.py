"""delayed 1.2.0b2 (the synchronous original), in benchmarks/.venvs/delayed.

One delayed worker runs one plain function at a time in its main thread: its figures are what
one worker process does. It runs no coroutines (``kind=async`` is unsupported) and has no bulk
enqueue. Its producer API is synchronous: "one at a time" is N blocking ``Queue.enqueue`` calls
(each a MULTI/EXEC pipeline of two RPUSHes)."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

import redis
from delayed.queue import Queue  # type: ignore[import-untyped]
from delayed.task import PyTask  # type: ignore[import-untyped]
from delayed.worker import Worker  # type: ignore[import-untyped]

from systems import common

_sink: list[redis.Redis] = []


def noop_sync() -> None:
    common.DONE.hit()


def probe(sent: float) -> None:
    lag = time.time() - sent
    _sink[0].rpush(common.SINK_KEY, repr(lag))


def _queue(args: argparse.Namespace) -> Queue:
    return Queue(args.queue, redis.Redis.from_url(args.url))


async def worker(args: argparse.Namespace) -> common.Result:
    """delayed's worker loop needs the main thread (it installs a signal handler), so the
    common driver (count, time cap, time-out, result and exit) runs in a thread beside it."""
    if args.kind != "sync":
        return {"unsupported": "delayed runs plain functions only"}
    if args.scenario == "results":
        return {"unsupported": NO_RESULTS}
    _sink.append(redis.Redis.from_url(args.url))
    armed = threading.Event()

    async def wait_forever() -> None:
        armed.set()  # the counter is armed: the worker may start
        await asyncio.Event().wait()

    async def drive() -> None:
        common.finish(await common.drive_worker(wait_forever, args))

    threading.Thread(target=asyncio.run, args=(drive(),), daemon=True).start()
    armed.wait()
    Worker(_queue(args)).run()  # until finish() ends the process
    return {"error": "delayed's worker stopped on its own"}


NO_RESULTS = "delayed 1.2 keeps no task results"


async def fill(args: argparse.Namespace) -> common.Result:
    if args.scenario == "results":
        return {"unsupported": NO_RESULTS}
    queue = _queue(args)
    for number in range(args.count):
        if args.scenario == "retry":  # retry=1: delayed requeues a failed task once
            queue.enqueue(PyTask("systems.common:flaky", args=(number,), retry=1))
        else:
            queue.enqueue(PyTask("systems.delayed:noop_sync"))
    return {"filled": queue.len()}


async def enqueue(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    start = time.perf_counter()
    for _ in range(args.count):
        queue.enqueue(PyTask("systems.delayed:noop_sync"))
    return common.rate_result(args.count, time.perf_counter() - start)


async def latency(args: argparse.Namespace) -> common.Result:
    queue = _queue(args)
    client = redis.Redis.from_url(args.url)

    async def send(sent: float) -> None:
        queue.enqueue(PyTask("systems.delayed:probe", args=(sent,)))

    async def blpop(keys: list[str], timeout: float) -> Any:  # delayed's client is synchronous
        return client.blpop(keys, timeout)

    return await common.latency_through(send, blpop, args.count)
