"""A worker process that runs a schedule, for tests/test_schedules.py:
``python -m tests.run_scheduled_workers URL QUEUE INTERVAL`` runs one Worker of QUEUE with
``Every(INTERVAL seconds, record)``; ``record`` appends Redis's time (ms) and the running
process's id to the list ``schedule_records``. Logs at DEBUG to stderr; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import redis.asyncio as redis

from adelayed import Every, PyTask, Queue, Worker

RECORDS = "schedule_records"
_RECORD = """
local t = redis.call('time')
redis.call('rpush', KEYS[1], (t[1] * 1000 + math.floor(t[2] / 1000)) .. ' ' .. ARGV[1])
"""


async def record() -> None:
    """Appends ``"<Redis time ms> <pid>"`` to RECORDS, in one call."""
    client = redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"])
    try:
        await client.eval(_RECORD, 1, RECORDS, os.getpid())
    finally:
        await client.aclose()


async def serve(url: str, name: str, interval: float) -> None:
    client = redis.Redis.from_url(url)
    task = PyTask("tests.run_scheduled_workers:record")
    worker = Worker(
        Queue(name, client, keep_alive_timeout=2),
        4,
        0.5,
        tasks=["tests.run_scheduled_workers:record"],
        sweep_interval=None,
        grace_period=5,
        schedules=[Every(interval, task)],
    )
    try:
        await worker.run()
    finally:
        await client.aclose()


def main() -> None:
    url, name, interval = sys.argv[1:]
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("adelayed").setLevel(logging.DEBUG)
    asyncio.run(serve(url, name, float(interval)))


if __name__ == "__main__":
    main()
