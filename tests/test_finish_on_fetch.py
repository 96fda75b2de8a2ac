"""A single-queue worker's FINISH_MANY rides on its next fetch (sent ahead of it, one write and
one round trip for both, as releases ride on it): what a failed FINISH_MANY leaves, and what a
lost script cache does to the pair."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgpack
import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from adelayed import PyTask, Queue
from adelayed._finish_batch import unfinished_record
from adelayed._lease import Lease
from adelayed._releaser import Releaser
from adelayed._settle import Settler
from adelayed._slots import Slots
from adelayed._wire import Wire
from tests import result_tasks
from tests.helpers import make_worker, running

pytestmark = pytest.mark.timeout(120)

TASKS = 10_000


@pytest.fixture(autouse=True)
def _reset() -> None:
    result_tasks.runs.clear()


def worker(queue: Queue, **options: Any) -> Any:
    return make_worker(queue, tasks=["tests.result_tasks"], **options)


async def _enqueue(queue: Queue, count: int) -> list[Any]:
    return [
        await queue.enqueue(PyTask(result_tasks.counted, args=(i,)), keep_result=60)
        for i in range(count)
    ]


async def test_a_flushed_script_cache_loses_no_result_and_runs_no_task_twice(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """SCRIPT FLUSH, again and again while a busy worker keeps results: the FINISH_MANY sent
    ahead of a fetch meets NOSCRIPT and is sent again at once, every result is kept and no
    task runs twice. (A flush that lands between a reload and its call fails that fetch,
    which is retried: a few such failures are allowed, not one per flush.)"""
    handles = await _enqueue(queue, TASKS)
    flushes = 0
    with caplog.at_level(logging.WARNING, logger="adelayed"):
        async with running(worker(queue, concurrency=10)):
            while len(result_tasks.runs) < TASKS:
                await client.script_flush()
                flushes += 1
                await anyio.sleep(0.002)
            results = [await handle.result(timeout=30) for handle in handles]
    assert results == list(range(TASKS))
    assert result_tasks.runs == dict.fromkeys(range(TASKS), 1)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert flushes >= 50 and len(failures) <= flushes // 10, (flushes, caplog.text)
    assert await client.hlen("jobs_active") == 0 and await client.hlen("jobs_jobs") == 0


async def test_a_failed_finish_many_leaves_its_slot_finished_for_the_next_fetch(
    client: redis.Redis, queue: Queue
) -> None:
    """A FINISH_MANY that fails while the fetch behind it succeeds (here WRONGTYPE: the dedup
    keys' hash replaced by a string) is reported, and its slot stays finished with its record:
    the next fetch (or the releaser) carries it again, and then it lands."""
    slots = Slots(2)
    lease = Lease(queue, 2, 1)
    lease.fields = ["w:0", "w:1"]
    releaser = Releaser(slots, Settler(lease, "jobs"), lease, [queue])
    releaser.hands = ["w:hand"]
    await client.hset("jobs_active", "w:0", "a" * 32)
    await client.hset("jobs_keys", "k0", "a" * 32)
    record = ("w:0", "a" * 32, 60_000, "k0", unfinished_record("done", 1, 1, "w"), 0)
    slots.hand(0, b"envelope", enveloped=True)
    slots.finish(0, record)
    await client.delete("jobs_keys")
    await client.set("jobs_keys", "not a hash")
    wire = Wire(client, "test wire")
    try:
        taken, failed = await releaser.fetch_releasing(wire, ["w:1"])
        assert taken == [] and isinstance(failed, ResponseError) and "WRONGTYPE" in str(failed)
        assert slots.finishes[0] == record and slots.free() == [1]
        assert await client.hget("jobs_active", "w:0") == b"a" * 32  # nothing finished
        await client.delete("jobs_keys")
        taken, failed = await releaser.fetch_releasing(wire, ["w:1"])
        assert (taken, failed) == ([], None)
        assert slots.finishes[0] is None and sorted(slots.free()) == [0, 1]
        stored = await client.get(f"jobs_result:{'a' * 32}")
        assert msgpack.unpackb(stored)[0] == "done"
        assert await client.hlen("jobs_active") == 0
    finally:
        wire.close()
