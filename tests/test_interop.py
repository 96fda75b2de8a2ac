"""Interop with the real delayed 1.2 package (PyPI delayed==1.2.0b2): tasks cross both ways,
and each side's sweeper recovers the other side's killed workers' tasks."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgpack
import pytest
import redis
import redis.asyncio as aredis
from delayed.delay import delayed as delayed_decorator
from delayed.queue import Queue as DelayedQueue
from delayed.task import PyTask as DelayedPyTask

from adelayed import PyTask, Queue, Sweeper
from adelayed.embedded import EmbeddedRedis
from tests import processes, tasks
from tests.helpers import make_worker, running, texts, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def their_queue(redis_server: EmbeddedRedis) -> Iterator[DelayedQueue]:
    conn = redis.Redis.from_url(redis_server.url)
    yield DelayedQueue("jobs", conn, dequeue_timeout=0.2, keep_alive_timeout=2)
    conn.close()


async def listed(client: aredis.Redis, key: str) -> list[str]:
    return texts(await client.lrange(key, 0, -1))


async def has(client: aredis.Redis, key: str, count: int) -> bool:
    return int(await client.llen(key)) >= count


async def settled(client: aredis.Redis) -> tuple[int, int, int]:
    return (
        await client.llen("jobs"),
        await client.llen("jobs_noti"),
        await client.hlen("jobs_processing"),
    )


async def test_our_tasks_run_on_a_delayed_worker(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path
) -> None:
    await queue.enqueue(PyTask("tests.tasks:record_run", args=("positional",)))
    await queue.enqueue(PyTask("tests.tasks:record_run", kwargs={"tag": "keyword"}))
    await queue.enqueue_many(PyTask("tests.tasks:record_run", args=(f"bulk{i}",)) for i in range(5))
    worker = processes.delayed_worker(redis_server.url, log)
    try:
        await wait_for(lambda: has(client, "finished", 7), what="7 tasks run by delayed")
    finally:
        processes.stop(worker, signal.SIGHUP)
    assert sorted(await listed(client, "finished")) == sorted(
        ["positional", "keyword", *(f"bulk{i}" for i in range(5))]
    )
    assert await settled(client) == (0, 0, 0)


async def test_delayed_tasks_run_on_our_worker(
    client: aredis.Redis, queue: Queue, their_queue: DelayedQueue
) -> None:
    their_queue.enqueue(DelayedPyTask(tasks.sync_record, args=("plain",)))
    their_queue.enqueue(DelayedPyTask("tests.tasks:async_record", kwargs={"value": "kw"}))
    their_queue.enqueue(DelayedPyTask(tasks.fail_until, args=("retried", 2), retry=1))
    delayed_decorator(their_queue)(tasks.sync_record).delay("decorated")
    # go-delayed's NewPyTask writes three items, nil for empty args or kwargs.
    await client.rpush("jobs", msgpack.packb(["tests.tasks:sync_record", ["from-go"], None]))
    await client.rpush("jobs_noti", "1")
    async with running(make_worker(queue)):
        await wait_for(lambda: tasks.call_count("retried") == 2 and len(tasks.ran) == 6)
    assert sorted(map(str, tasks.ran)) == sorted(
        ["plain", "kw", "decorated", "from-go", "('retried', 1)", "('retried', 2)"]
    )
    assert await settled(client) == (0, 0, 0)


async def test_delayed_sweeper_requeues_the_task_of_our_killed_worker(
    client: aredis.Redis, queue: Queue, their_queue: DelayedQueue,
    redis_server: EmbeddedRedis, log: Path,
) -> None:  # fmt: skip
    await queue.enqueue(PyTask("tests.tasks:record_run", args=("victim", 60)))
    worker = processes.adelayed_worker(redis_server.url, log, keep_alive_timeout=1.5)
    await wait_for(lambda: has(client, "started", 1), what="the task to start")
    assert their_queue.requeue_lost() == 0  # a live adelayed worker's task stays put
    processes.stop(worker, signal.SIGKILL)
    assert await settled(client) == (0, 0, 1)

    deadline = time.monotonic() + 10
    while their_queue.requeue_lost() == 0:  # once the killed worker's lease has expired
        assert time.monotonic() < deadline, "delayed's sweeper never requeued the task"
        await anyio.sleep(0.1)
    assert await settled(client) == (1, 1, 0)

    await queue.redis.delete("started")
    rerun = processes.delayed_worker(redis_server.url, log)
    try:
        await wait_for(lambda: has(client, "started", 1), what="delayed to run it again")
    finally:
        processes.stop(rerun, signal.SIGKILL)
    assert await listed(client, "started") == ["victim"]


async def test_our_sweeper_requeues_the_task_of_a_killed_delayed_worker(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path
) -> None:
    await queue.enqueue(PyTask("tests.tasks:record_run", args=("victim", 60)))
    worker = processes.delayed_worker(redis_server.url, log, keep_alive_timeout=1)
    await wait_for(lambda: has(client, "started", 1), what="the task to start")
    sweeper = Sweeper([queue], interval=0.1)
    assert await sweeper.sweep() == 0  # the delayed worker is alive
    processes.stop(worker, signal.SIGKILL)

    deadline = time.monotonic() + 10
    while await sweeper.sweep() == 0:
        assert time.monotonic() < deadline, "our sweeper never requeued the task"
        await anyio.sleep(0.1)
    assert await settled(client) == (1, 1, 0)
    await client.delete("started")
    tasks_ran = processes.adelayed_worker(redis_server.url, log)
    try:
        await wait_for(lambda: has(client, "started", 1), what="our worker to run it again")
    finally:
        processes.stop(tasks_ran, signal.SIGKILL)
    assert await listed(client, "started") == ["victim"]


async def test_a_delayed_sweep_while_our_tasks_run_requeues_none(
    client: aredis.Redis, queue: Queue, their_queue: DelayedQueue,
    redis_server: EmbeddedRedis, log: Path,
) -> None:  # fmt: skip
    await queue.enqueue_many(PyTask("tests.tasks:record_run", args=(f"t{i}", 3)) for i in range(8))
    worker = processes.adelayed_worker(
        redis_server.url, log, concurrency=5, keep_alive_timeout=1, keep_alive_interval=0.2
    )
    try:
        await wait_for(lambda: has(client, "started", 5), what="5 running tasks")
        for _ in range(15):  # across several lease refreshes
            assert their_queue.requeue_lost() == 0
            assert await client.hlen("jobs_processing") == 5
            await anyio.sleep(0.1)
        await wait_for(lambda: has(client, "finished", 8), what="all tasks", timeout=20)
    finally:
        processes.stop(worker, signal.SIGTERM)
    assert sorted(await listed(client, "started")) == sorted(f"t{i}" for i in range(8))
