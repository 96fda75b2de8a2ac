"""The floor: plain redis.asyncio RPUSH of a task-sized payload, no task queue at all.

``enqueue``: one awaited RPUSH per task. ``bulk``: RPUSH pipelined 100 at a time (one round
trip per 100). Runs in adelayed's virtualenv (redis-py with hiredis, like adelayed)."""

from __future__ import annotations

import argparse

import redis.asyncio as redis

from systems import common

PAYLOAD = b"\x91\xb3systems.common:noop"  # the size of adelayed's no-op task payload
PIPELINE = 100


async def enqueue(args: argparse.Namespace) -> common.Result:
    client = redis.Redis.from_url(args.url)
    return await common.one_at_a_time(args.count, lambda: client.rpush(args.queue, PAYLOAD))


async def bulk(args: argparse.Namespace) -> common.Result:
    client = redis.Redis.from_url(args.url)

    async def body() -> None:
        for start in range(0, args.count, PIPELINE):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(min(PIPELINE, args.count - start)):
                    pipe.rpush(args.queue, PAYLOAD)
                await pipe.execute()

    return await common.timed_rate(args.count, body)
