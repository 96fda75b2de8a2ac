"""Hand work to Go: a Python producer enqueues tasks that go-delayed workers run.

The Go side, a go-delayed worker with its handlers (see go-delayed's README)::

    func Add(a int64, b int64) { ... }
    func Echo(v interface{})   { ... }

    worker := delayed.NewWorker(delayed.NewRedisQueue("go_jobs", pool, ...), 10, keepAlive)
    worker.RegisterHandlers(Add, Echo)
    worker.Run()

The Python side, this module, from the repository root, against the same Redis::

    ADELAYED_REDIS_URL=redis://... python -m examples.go_tasks 100

A GoTask names the handler by its Go path (``main.Add``) and carries its arguments as
msgpack; go-delayed decodes them into the handler's parameters (a tuple for several, one
value for one). Go tasks stay plain v1 tasks: no option (a delay, a timeout, a kept result)
applies, since only adelayed's workers read those; an adelayed worker on the same queue
dead-letters a Go task it takes ("run Go workers on its queue").
"""

from __future__ import annotations

import asyncio
import os
import sys

import redis.asyncio as redis

from adelayed import GoTask, Queue

QUEUE_NAME = os.environ.get("GO_QUEUE", "go_jobs")


async def enqueue_go_tasks(queue: Queue, count: int) -> int:
    """``count`` additions for the Go workers, then one Echo of a nested value."""
    added = await queue.enqueue_many(GoTask("main.Add", (i, i)) for i in range(count))
    await queue.enqueue(GoTask("main.Echo", {"from": "python", "sizes": [1, 2, 3]}))
    return added + 1


async def main(count: int) -> None:
    url = os.environ.get("ADELAYED_REDIS_URL")
    if url is None:
        raise SystemExit("set ADELAYED_REDIS_URL to the Redis your go-delayed workers use")
    client = redis.Redis.from_url(url)
    try:
        sent = await enqueue_go_tasks(Queue(QUEUE_NAME, client), count)
        print(f"enqueued {sent} Go task(s) on queue {QUEUE_NAME!r}")
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
