"""One worker, several queues in strict priority order, with optional per-queue caps."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import anyio
import pytest
import redis.asyncio as redis

from adelayed import ConfigurationError, PyTask, Queue
from tests import timed_tasks
from tests.helpers import make_worker, running, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _reset() -> None:
    timed_tasks.reset()


@pytest.fixture
def queues(client: redis.Redis) -> list[Queue]:
    return [Queue(name, client, dequeue_timeout=0.5) for name in ("high", "default", "low")]


def worker(queues: list[Queue], **options: Any) -> Any:
    return make_worker(queues, tasks=["tests.timed_tasks"], **options)  # type: ignore[arg-type]


def record(name: str) -> PyTask:
    return PyTask(timed_tasks.record, args=(name,))


def sleep(name: str, seconds: float) -> PyTask:
    return PyTask(timed_tasks.sleep, args=(name, seconds))


def _started_once(prefix: str) -> bool:
    return len(started(prefix)) == 1


def started(prefix: str) -> list[dict[str, Any]]:
    return [r for r in timed_tasks.runs if r["name"].startswith(prefix) and "done" not in r["name"]]


async def test_one_slot_takes_the_highest_queue_first(queues: list[Queue]) -> None:
    high, default, low = queues
    for i in range(5):  # the lowest first: order of arrival must not matter
        await low.enqueue(record(f"low{i}"))
        await default.enqueue(record(f"default{i}"))
        await high.enqueue(record(f"high{i}"))
    async with running(worker(queues, concurrency=1)):
        await wait_for(lambda: len(timed_tasks.runs) == 15)
    order = [run["queue"] for run in timed_tasks.runs]
    assert order == ["high"] * 5 + ["default"] * 5 + ["low"] * 5
    assert [run["name"] for run in timed_tasks.runs][:5] == [f"high{i}" for i in range(5)]


async def test_free_slots_are_filled_from_the_next_queue_in_the_same_call(
    queues: list[Queue],
) -> None:
    high, _, low = queues
    await high.enqueue_many([sleep(f"high{i}", 0.3) for i in range(2)])
    await low.enqueue_many([sleep(f"low{i}", 0.3) for i in range(6)])
    async with running(worker(queues, concurrency=4)):
        await wait_for(lambda: len(started("")) >= 4)
        first = sorted(run["name"] for run in started(""))[:4]
        spread = max(r["at"] for r in started("")[:4]) - min(r["at"] for r in started("")[:4])
        await wait_for(lambda: len(started("")) == 8, timeout=10)
    assert first == ["high0", "high1", "low0", "low1"]
    assert spread < 0.1  # one fetch filled all four slots


async def test_a_high_task_waits_no_longer_than_one_task_under_a_low_flood(
    queues: list[Queue],
) -> None:
    high, _, low = queues
    await low.enqueue_many([sleep(f"low{i}", 0.2) for i in range(200)])
    async with running(worker(queues, concurrency=4)):
        await wait_for(lambda: len(started("low")) >= 8, timeout=10)  # saturated
        sent = time.monotonic()
        await high.enqueue(record("urgent"))
        await wait_for(lambda: len(started("urgent")) == 1, timeout=5)
        waited = started("urgent")[0]["at"] - sent
        assert await low.len() > 100  # the flood goes on behind it
    assert waited < 0.3  # a slot frees within one task duration (0.2 s)


async def test_an_idle_worker_wakes_for_any_of_its_queues(queues: list[Queue]) -> None:
    async with running(worker(queues)):
        await anyio.sleep(0.3)  # idle: every queue's waiter is blocked
        for queue in reversed(queues):
            sent = time.monotonic()
            await queue.enqueue(record(queue.name))
            await wait_for(partial(_started_once, queue.name), timeout=5)
            assert started(queue.name)[0]["at"] - sent < 0.1


async def test_waiting_on_empty_queues_keeps_no_slot_from_a_busy_one(
    client: redis.Redis,
) -> None:
    """An idle worker of three queues waits on each; when tasks come to one, every slot
    runs them at once, not only the slot of the waiter that woke (the others' waits on the
    empty queues last dequeue_timeout)."""
    queues = [Queue(name, client, dequeue_timeout=3) for name in ("high", "default", "low")]
    async with running(worker(queues, concurrency=3)):
        await anyio.sleep(0.3)  # idle: a wait on every queue
        await queues[2].enqueue_many([sleep(f"low{i}", 0.5) for i in range(3)])
        await wait_for(lambda: len(started("low")) == 3, timeout=5)
        starts = [run["at"] for run in started("low")]
    assert max(starts) - min(starts) < 0.2


async def test_a_queue_cap_bounds_its_tasks_in_flight(queues: list[Queue]) -> None:
    high, _, low = queues
    await low.enqueue_many([sleep(f"low{i}", 0.2) for i in range(4)])
    await high.enqueue_many([sleep(f"high{i}", 0.2) for i in range(4)])
    async with running(worker(queues, concurrency=4, queue_concurrency={"low": 1})):
        await wait_for(lambda: len(timed_tasks.runs) == 16, timeout=10)
    lows = sorted(started("low"), key=lambda r: r["at"])
    ends = sorted(
        r["at"] for r in timed_tasks.runs if r["name"].startswith("low") and "done" in r["name"]
    )
    assert all(
        start >= end - 0.01 for start, end in zip([r["at"] for r in lows[1:]], ends, strict=False)
    )


async def test_every_task_of_every_queue_runs_once_delayed_and_retried_ones_too(
    queues: list[Queue],
) -> None:
    for queue in queues:
        await queue.enqueue_many([record(f"{queue.name}{i}") for i in range(100)])
        await queue.enqueue(record(f"{queue.name}-later"), delay=0.3)
        await queue.enqueue(
            PyTask(timed_tasks.fail_times, args=(f"{queue.name}-flaky", 1), retry=1)
        )
    async with running(worker(queues, concurrency=20, retry_backoff=(0.05, 0.05))):
        await wait_for(lambda: len(timed_tasks.runs) == 3 * 103, timeout=15)
        await anyio.sleep(0.2)
    names = [run["name"] for run in timed_tasks.runs]
    assert len(names) == 3 * 103 and len(set(names)) == 3 * 102  # only the flaky ones twice
    assert all(
        run["queue"] == run["name"].rstrip("0123456789").split("-")[0] for run in timed_tasks.runs
    )


async def test_wrong_queue_lists_are_refused(client: redis.Redis, queues: list[Queue]) -> None:
    other = redis.Redis(host="127.0.0.1", port=client.connection_pool.connection_kwargs["port"])
    with pytest.raises(ConfigurationError, match="distinct names"):
        worker([queues[0], Queue("high", client)])
    with pytest.raises(ConfigurationError, match="share one Redis client"):
        worker([queues[0], Queue("other", other)])
    with pytest.raises(ConfigurationError, match="does not serve"):
        worker(queues, queue_concurrency={"nope": 1})
    with pytest.raises(ConfigurationError, match="a list of Queues"):
        worker([])
    await other.aclose()


async def test_fetch_many_uses_a_waiters_token_and_borrows_only_after_a_timed_out_wait(
    client: redis.Redis, queues: list[Queue]
) -> None:
    """FETCH_MANY on its own: a token a waiter's BLMOVE left in a hand counts as the queue's
    (and goes back to noti when the call has no field for it); a ready task whose token a
    delayed 1.2 worker took is taken without one only after a wait timed out."""
    from adelayed import _envelope as envelope
    from adelayed._protocol.priority import FETCH_MANY

    high = queues[0]
    wire = high._wire()
    keys = [
        *("high", "high_noti", "high_processing", "high_ready", "high_active", "high_jobs"),
        "hand",
    ]

    async def fetch(cap: int, look: int, *fields: str) -> list[Any]:
        return list(await FETCH_MANY(wire, keys, (1, 0, cap, look, 0, 0, *fields)))

    await high.enqueue(record("a"))
    await client.lmove("high_noti", "hand", "LEFT", "RIGHT")  # a waiter's BLMOVE
    assert await fetch(0, 1, "slot:0") == []  # capped: the token goes back
    assert await client.llen("hand") == 0 and await client.llen("high_noti") == 1
    await client.lmove("high_noti", "hand", "LEFT", "RIGHT")
    [index, queue, payload] = await fetch(1, 1, "slot:0")
    assert (index, queue, await client.hget("high_processing", "slot:0")) == (0, 0, payload)
    assert await client.llen("hand") == 0 and await client.llen("high_noti") == 0
    # An enveloped task due in ready whose token is gone (a v1 worker popped it):
    packed = envelope.pack("c" * 32, record("c").serialize(), 1, envelope.Options(timeout=5))
    await client.hset("high_jobs", "c" * 32, packed)
    await client.rpush("high_ready", "c" * 32)
    assert await fetch(1, 1, "slot:1") == []  # not after a wait that got a token
    assert await fetch(1, 2, "slot:1") == [-1, 0, packed]  # after a timed-out wait
    assert await client.hget("high_active", "slot:1") == b"c" * 32
