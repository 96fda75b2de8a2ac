"""One producer process of tests/test_dedup.py's race: waits for the start time, then enqueues
``dedup:record`` under the key, and prints "added" or "duplicate" and the id."""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as redis

from adelayed import PyTask, Queue


async def main(url: str, start_at: float, number: int) -> None:
    client = redis.Redis.from_url(url)
    try:
        queue = Queue("jobs", client)
        await queue.scheduled()  # its connection open: the enqueues race, not the connects
        await asyncio.sleep(max(0.0, start_at - time.time()))
        handle = await queue.enqueue(
            PyTask("tests.result_tasks:echo", args=(number,)), key="invoice-42", keep_result=60
        )
        print("duplicate" if handle.duplicate else "added", handle.id, flush=True)
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
