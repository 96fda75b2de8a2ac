"""delayed 1.2 code and its adelayed equivalent, side by side (run by tests/test_docs.py)."""

from __future__ import annotations

import redis.asyncio as aredis

from adelayed import PyTask, Queue, Worker


def add(a: int, b: int) -> int:
    return a + b


# delayed 1.2:
#     conn = redis.Redis.from_url(url)
#     queue = delayed.queue.Queue("default", conn)
#     queue.enqueue(delayed.task.PyTask(add, (1, 2)))
#     worker = delayed.worker.Worker(queue); worker.run()
async def main(url: str) -> int:
    client = aredis.Redis.from_url(url)
    try:
        queue = Queue("default", client)  # the same keys: delayed's workers can run these tasks
        await queue.enqueue(PyTask(add, (1, 2)))  # the same bytes as delayed's enqueue
        worker = Worker(queue, tasks=[add], handle_signals=False, sweep_interval=None)
        from adelayed.testing import drain

        drained = await drain(worker)
        return len(drained.ran)
    finally:
        await client.aclose()
