"""Workers started the way an application starts them, not through the CLI:
``python -m tests.run_workers RUNNER URL QUEUE [QUEUE...]`` runs one Worker per queue, all in
one process under ``asyncio.run`` or ``anyio.run`` (RUNNER), and logs at DEBUG to stderr."""

from __future__ import annotations

import asyncio
import logging
import sys

import anyio
import redis.asyncio as redis

from adelayed import Queue, Worker


async def serve(url: str, names: list[str]) -> None:
    client = redis.Redis.from_url(url)
    workers = [
        Worker(
            Queue(name, client, keep_alive_timeout=2),
            2,
            0.5,
            tasks=["tests.tasks"],
            sweep_interval=None,
            grace_period=30,
        )
        for name in names
    ]
    try:
        async with anyio.create_task_group() as group:
            for worker in workers:
                group.start_soon(worker.run)
    finally:
        await client.aclose()
    stops = [worker.hard_stop_signal for worker in workers]
    logging.getLogger("adelayed").info("hard stop signals: %s", stops)


def main() -> None:
    runner, url, *names = sys.argv[1:]
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("adelayed").setLevel(logging.DEBUG)
    if runner == "asyncio":
        asyncio.run(serve(url, names))
    else:
        anyio.run(serve, url, names)


if __name__ == "__main__":
    main()
