"""Bad input is harmless: dead-lettered with its reason, never lost, never fatal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgpack
import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adelayed import (
    PayloadError,
    PayloadTooLargeError,
    PyTask,
    Queue,
    QueueFullError,
    decode_task,
)
from adelayed.task import GoTask
from tests import tasks
from tests.helpers import make_worker, running, wait_for

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip
task_like = st.tuples(
    st.sampled_from(["tests.tasks:sync_record", "os:system", "mod:f", "nocolon", ""]),
    msgpack_values,
    msgpack_values,
    msgpack_values,
).flatmap(lambda fields: st.integers(0, 4).map(lambda n: list(fields[:n])))


@given(st.binary(max_size=200))
def test_random_bytes_decode_to_a_task_or_a_payload_error(payload: bytes) -> None:
    try:
        task = decode_task(payload)
    except PayloadError:
        return
    assert isinstance(task, PyTask | GoTask)


@given(st.one_of(msgpack_values, task_like))
def test_random_msgpack_decodes_to_a_task_or_a_payload_error(value: object) -> None:
    try:
        payload = msgpack.packb(value)
    except (ValueError, OverflowError, TypeError):
        return
    try:
        task = decode_task(payload)
    except PayloadError:
        return
    assert isinstance(task, PyTask | GoTask)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(payloads=st.lists(st.one_of(st.binary(max_size=60), task_like.map(msgpack.packb)),
                         min_size=1, max_size=8))  # fmt: skip
async def test_the_worker_survives_random_payloads_and_loses_none(
    redis_server: object, payloads: list[bytes]
) -> None:
    client = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    await client.flushall()
    queue = Queue("jobs", client, dequeue_timeout=0.1, keep_alive_timeout=5)
    tasks.reset()
    for payload in payloads:
        await client.rpush("jobs", payload)
        await client.rpush("jobs_noti", "1")
    await queue.enqueue(PyTask(tasks.sync_record, args=("sentinel",)))
    async with running(make_worker(queue)):
        await wait_for(lambda: "sentinel" in tasks.ran, what="the valid task after the garbage")
        await wait_for(lambda: _settled(client), what="every payload settled")
    dead = await queue.dead_tasks(100)
    ran = len(tasks.ran) - 1
    assert len(dead) + ran >= len(payloads)  # each payload ran (a valid call) or is dead
    assert {d.payload for d in dead} <= set(payloads)
    await client.aclose()


async def _settled(client: redis.Redis) -> bool:
    return (await client.llen("jobs"), await client.hlen("jobs_processing")) == (0, 0)


async def test_an_oversized_payload_is_refused_on_enqueue(client: redis.Redis) -> None:
    queue = Queue("jobs", client, max_payload_size=100)
    with pytest.raises(PayloadTooLargeError, match=r"'mod:f' for queue 'jobs' is \d+ bytes"):
        await queue.enqueue(PyTask("mod:f", args=("x" * 200,)))
    with pytest.raises(PayloadTooLargeError):
        await queue.enqueue_many([PyTask("mod:f"), PyTask("mod:f", args=("x" * 200,))])
    assert await client.exists("jobs", "jobs_noti") == 0


async def test_an_oversized_payload_is_dead_lettered_on_dequeue(client: redis.Redis) -> None:
    writer = Queue("jobs", client)
    big = PyTask(tasks.sync_record, args=("x" * 500,))
    await writer.enqueue(big)
    await writer.enqueue(PyTask(tasks.sync_record, args=("small",)))
    reader = Queue("jobs", client, dequeue_timeout=0.1, max_payload_size=200)
    async with running(make_worker(reader)):
        await wait_for(lambda: tasks.ran == ["small"])
        await wait_for(lambda: reader.dead_tasks())
    [dead] = await reader.dead_tasks()
    assert dead.payload == big.serialize() and "PayloadTooLargeError" in dead.reason


async def test_a_full_queue_refuses_enqueue_and_writes_nothing(client: redis.Redis) -> None:
    queue = Queue("jobs", client, max_length=3)
    await queue.enqueue_many([PyTask("mod:f")] * 2)
    with pytest.raises(QueueFullError, match=r"queue 'jobs' is full.*max_length of 3"):
        await queue.enqueue_many([PyTask("mod:f")] * 2)
    await queue.enqueue(PyTask("mod:f"))
    with pytest.raises(QueueFullError):
        await queue.enqueue(PyTask("mod:f"))
    assert (await client.llen("jobs"), await client.llen("jobs_noti")) == (3, 3)


async def test_a_full_queue_refuses_a_large_batch_whole(client: redis.Redis) -> None:
    queue = Queue("jobs", client, max_length=15_000)
    await queue.enqueue(PyTask("mod:f"))
    with pytest.raises(QueueFullError):
        await queue.enqueue_many([PyTask("mod:f")] * 15_000)  # two groups: neither is written
    assert await client.llen("jobs") == 1
    assert await queue.enqueue_many([PyTask("mod:f")] * 14_999) == 14_999
    assert (await client.llen("jobs"), await client.llen("jobs_noti")) == (15_000, 15_000)


async def test_dead_letters_can_be_listed_requeued_and_purged(client: redis.Redis) -> None:
    queue = Queue("jobs", client, dequeue_timeout=0.1)
    await queue.enqueue_many(PyTask("tests.tasks:not_a_function", args=(i,)) for i in range(3))
    async with running(make_worker(queue, concurrency=1)):  # one at a time: a known order
        await wait_for(lambda: _dead_count(queue, 3))
    dead = await queue.dead_tasks()
    assert [msgpack.unpackb(d.payload)[1] for d in dead] == [[2], [1], [0]]  # newest first
    assert all(d.failed_at > 0 and d.worker.startswith("adelayed:worker:") for d in dead)
    assert await queue.requeue_dead(2) == 2  # the oldest two, in their order
    assert [msgpack.unpackb(p)[1] for p in await client.lrange("jobs", 0, -1)] == [[0], [1]]
    assert await client.llen("jobs_noti") == 2
    assert await queue.purge_dead() == 1
    assert await queue.dead_tasks() == []


async def _dead_count(queue: Queue, count: int) -> bool:
    return len(await queue.dead_tasks()) == count


# isolation="process" pickles a call and its outcome between the worker and its own child,
# over socketpairs the two inherit: nothing read from Redis is ever unpickled.
_PICKLE_BETWEEN_OWN_PROCESSES = {"_isolation.py", "_isolation_server.py"}


def test_no_pickle_anywhere_in_the_package_but_between_a_worker_and_its_children() -> None:
    package = Path(__file__).resolve().parent.parent / "adelayed"
    found = subprocess.run(
        ["grep", "-rlwE", "--include=*.py", "pickle|cPickle|dill|marshal", str(package)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert {Path(line).name for line in found.stdout.split()} <= _PICKLE_BETWEEN_OWN_PROCESSES


async def test_a_record_that_is_not_a_dead_letter_is_kept_not_lost(client: redis.Redis) -> None:
    """requeue_dead reads a record before it removes it: Redis does not undo a script's
    earlier writes when it fails, so popping first lost whatever it could not decode."""
    queue = Queue("jobs", client)
    await client.hset("jobs_processing", "field", PyTask("mod:f").serialize())
    await queue._bury("field", PyTask("mod:f").serialize(), "TaskError: test", "w")
    await client.rpush("jobs_dead", b"\xc1 not msgpack", msgpack.packb({"no": "payload"}))
    assert await queue.requeue_dead() == 1  # the real record, oldest end first
    assert await client.lrange("jobs", 0, -1) == [PyTask("mod:f").serialize()]
    kept = await queue.dead_tasks()
    assert sorted(task.payload for task in kept) == sorted(
        [b"\xc1 not msgpack", msgpack.packb({"no": "payload"})]
    )
    assert all(task.reason.startswith("not a dead-letter record") for task in kept)


async def test_the_batches_after_the_first_of_an_admitted_enqueue_many_are_not_refused(
    client: redis.Redis,
) -> None:
    """max_length admits a batch of more than one script call whole, by its first call: a
    later call must not be refused when the queue grew meanwhile (the batch was half-written
    while the error said nothing was added)."""
    queue = Queue("jobs", client, max_length=10)
    await client.rpush("jobs", *[b"\x91\xa5mod:f"] * 20)  # a v1 producer ignores max_length
    await queue._push([PyTask("mod:f").serialize()], admitted=None, deadline=None)
    assert await client.llen("jobs") == 21


async def test_a_plain_payload_that_begins_as_an_envelope_does_is_dead_lettered(
    client: redis.Redis, queue: Queue
) -> None:
    """Any bytes can be pushed onto NAME: a v1 payload starting with the envelope's magic is
    still a v1 payload (FETCH says where each task came from). Found by the test above."""
    await client.rpush("jobs", b"AD1", b"AD1\x00garbage")
    await client.rpush("jobs_noti", "1", "1")
    async with running(make_worker(queue)):
        await wait_for(lambda: _dead(queue, 2), what="both dead-lettered")
        await wait_for(lambda: _settled(client), what="nothing left in processing")


async def _dead(queue: Queue, count: int) -> bool:
    return len(await queue.dead_tasks()) == count
