"""A producer process for tests/test_scheduled_faults.py, meant to run under ``faketime``:
``python -m tests.run_skewed URL QUEUE TAG DELAY`` enqueues ``scheduled_fleet.stamp(TAG)`` with
``delay=DELAY`` seconds, and prints one line: Redis's time (ms) read just before the enqueue,
then this process's wall clock (ms) at that moment."""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as redis

from adelayed import PyTask, Queue


async def produce(url: str, name: str, tag: str, delay: float) -> None:
    client = redis.Redis.from_url(url)
    try:
        seconds, micros = await client.time()
        wall = time.time()
        await Queue(name, client).enqueue(
            PyTask("tests.scheduled_fleet:stamp", args=(tag,)), delay=delay
        )
        print(seconds * 1000 + micros // 1000, int(wall * 1000), flush=True)
    finally:
        await client.aclose()


def main() -> None:
    url, name, tag, delay = sys.argv[1:]
    asyncio.run(produce(url, name, tag, float(delay)))


if __name__ == "__main__":
    main()
