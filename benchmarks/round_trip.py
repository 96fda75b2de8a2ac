"""One round trip to Redis, three ways: sync redis-py, redis.asyncio, and adelayed's worker
connection (``adelayed._wire``); hot (back to back) and idle (after a 5 ms pause, as an idle
worker's pickup is). Why the worker's fetch loop has a connection of its own.

    .venv/bin/python benchmarks/round_trip.py [samples]

Each line: the median over the samples, measured in turn (one of each way, then the next).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio

from adelayed._wire import Wire
from adelayed.embedded import EmbeddedRedis

IDLE_PAUSE = 0.005
PREFERRED_BINARY = "/usr/bin/redis-server"


async def measure(url: str, samples: int) -> dict[str, list[float]]:
    sync_client = redis.Redis.from_url(url)
    async_client = redis.asyncio.Redis.from_url(url)
    wire = Wire(async_client, "round trip")

    async def sync_ping() -> object:
        return sync_client.ping()

    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "sync redis-py PING": sync_ping,
        "redis.asyncio PING": async_client.ping,
        "adelayed wire PING": lambda: wire.call("PING"),
    }
    modes = ("hot", "idle")
    times: dict[str, list[float]] = {f"{way}, {mode}": [] for way in ways for mode in modes}
    for call in ways.values():
        await call()  # connect
    for _ in range(samples):
        for way, call in ways.items():
            for mode in modes:
                await call()  # hot: right behind another round trip
                if mode == "idle":
                    await asyncio.sleep(IDLE_PAUSE)
                started = time.perf_counter()
                await call()
                times[f"{way}, {mode}"].append(time.perf_counter() - started)
    wire.close()
    await async_client.aclose()
    sync_client.close()
    return times


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    binary = PREFERRED_BINARY if os.access(PREFERRED_BINARY, os.X_OK) else None
    with EmbeddedRedis(binary=binary) as server:
        times = asyncio.run(measure(server.url, samples))
    for name, values in times.items():
        print(f"{name:32s} median {statistics.median(values) * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
