"""Task handles and kept results: keep_result, result(), status(), Queue.get."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
import redis.asyncio as redis

from adelayed import (
    ConfigurationError,
    PyTask,
    Queue,
    ResultTimeoutError,
    Sweeper,
    TaskFailed,
    TaskNotFoundError,
)
from adelayed._result_listener import listener_of
from tests import result_tasks
from tests.helpers import make_worker, running, wait_for

pytestmark = pytest.mark.timeout(60)


def worker(queue: Queue, **options: Any) -> Any:
    return make_worker(queue, tasks=["tests.result_tasks"], **options)


def task(func: Any, *args: Any, **options: Any) -> PyTask:
    return PyTask(func, args=args, **options)


async def test_a_kept_result_comes_back_from_coroutines_and_threads(
    client: redis.Redis, queue: Queue
) -> None:
    value = {"total": 42, "items": [1, "two", 3.0, None, True], "blob": b"\x00\xff"}
    coroutine = await queue.enqueue(task(result_tasks.echo, value), keep_result=60)
    thread = await queue.enqueue(task(result_tasks.echo_in_thread, [1, 2]), keep_result=60)
    assert coroutine.id is not None and len(coroutine.id) == 32
    async with running(worker(queue)) as w:
        assert await coroutine.result(timeout=5) == value
        assert await thread.result(timeout=5) == [1, 2]
        status = await coroutine.status()
    assert (status.state, status.attempt, status.worker) == ("done", 1, w.id)
    assert status.finished is not None and status.error is None
    assert await client.ttl(f"jobs_result:{coroutine.id}") > 55
    assert await client.hlen("jobs_jobs") == 0 and await client.hlen("jobs_active") == 0


async def test_a_failure_raises_task_failed_with_the_remote_error(queue: Queue) -> None:
    failed = await queue.enqueue(task(result_tasks.fail, "no such user"), keep_result=60)
    async with running(worker(queue)):
        with pytest.raises(TaskFailed) as raised:
            await failed.result(timeout=5)
        status = await failed.status()
    error = raised.value
    assert (error.type_name, error.message, error.dead) == ("LookupError", "no such user", False)
    assert "in fail" in error.traceback_text and "raise LookupError" in error.traceback_text
    assert status.state == "failed" and status.error is not None
    assert status.error.type_name == "LookupError"


async def test_a_dead_lettered_task_reads_dead(client: redis.Redis, queue: Queue) -> None:
    handle = await queue.enqueue(
        task(result_tasks.fail, "bad row"), keep_result=60, dead_letter_on_failure=True
    )
    async with running(worker(queue)):
        with pytest.raises(TaskFailed) as raised:
            await handle.result(timeout=5)
    assert raised.value.dead and raised.value.message == "bad row"
    assert (await handle.status()).state == "dead"
    [dead] = await queue.dead_tasks()
    assert "LookupError: bad row" in dead.reason


async def test_a_return_value_msgpack_cannot_carry_is_a_clear_failure(queue: Queue) -> None:
    bad = await queue.enqueue(task(result_tasks.returns_a_set), keep_result=60)
    good = await queue.enqueue(task(result_tasks.echo, 1), keep_result=60)
    async with running(worker(queue)):
        with pytest.raises(TaskFailed) as raised:
            await bad.result(timeout=5)
        assert await good.result(timeout=5) == 1  # the worker went on
    assert raised.value.type_name == "TaskDataError"
    assert "returns_a_set" in raised.value.message and "set" in raised.value.message
    assert "pass a list" in raised.value.message


async def test_status_follows_the_task_from_scheduled_to_done(queue: Queue) -> None:
    handle = await queue.enqueue(task(result_tasks.nap, 0.5), keep_result=60, delay=0.3)
    first = await handle.status()
    assert first.state == "scheduled" and first.due is not None and first.attempt == 1
    await anyio.sleep(0.4)
    await Sweeper([queue], interval=1).sweep()  # a sweep promotes what is due: no worker
    assert (await handle.status()).state == "queued"
    async with running(worker(queue)) as w:
        await wait_for(lambda: _state(handle, "running"), what="running")
        running_now = await handle.status()
        assert (running_now.attempt, running_now.worker) == (1, w.id)
        assert await handle.result(timeout=5) == "rested"


async def _state(handle: Any, state: str) -> bool:
    return bool((await handle.status()).state == state)


async def test_a_retried_task_keeps_the_result_of_its_last_attempt(queue: Queue) -> None:
    result_tasks.attempts.clear()
    handle = await queue.enqueue(task(result_tasks.fail_once, "r", retry=1), keep_result=60)
    async with running(worker(queue)):
        assert await handle.result() == "r on attempt 2"  # no timeout: as long as it takes
    assert (await handle.status()).attempt == 2


async def test_errors_say_what_is_wrong(client: redis.Redis, queue: Queue) -> None:
    plain = await queue.enqueue(task(result_tasks.echo, 1))
    assert plain.id is None
    with pytest.raises(ConfigurationError, match="keep_result=seconds"):
        await plain.result()
    waiting = await queue.enqueue(task(result_tasks.echo, 1), keep_result=60)
    with pytest.raises(ResultTimeoutError, match="may still be queued or running"):
        await waiting.result(timeout=0.2)  # no worker
    with pytest.raises(TaskNotFoundError, match="knows no task"):
        await queue.get("0" * 32).result(timeout=1)
    with pytest.raises(ConfigurationError, match="32 hex"):
        queue.get("nope")
    assert (await queue.get("0" * 32).status()).state == "unknown"


async def test_another_process_handle_reads_by_id_and_results_expire(
    client: redis.Redis, queue: Queue, redis_server: Any
) -> None:
    handle = await queue.enqueue(task(result_tasks.echo, "x"), keep_result=0.5)
    other_client = redis.Redis.from_url(redis_server.url)
    try:
        other = Queue("jobs", other_client).get(str(handle.id))
        async with running(worker(queue)):
            assert await other.result(timeout=5) == "x"
    finally:
        await other_client.aclose()
    await anyio.sleep(0.7)
    assert (await handle.status()).state == "unknown"
    # An expired result takes no space; jobs_stats is the queue's minute counts for `adelayed
    # info` (a ring of 64 minutes: bounded per queue, whatever the tasks).
    assert await client.keys("jobs_*") == [b"jobs_stats"]


async def test_results_are_kept_only_when_asked(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue(task(result_tasks.echo, 1), timeout=5)  # an envelope, no keep_result
    await queue.enqueue(task(result_tasks.echo, 2))
    async with running(worker(queue)):
        await wait_for(lambda: _empty(client), what="both to end")
    # Finished tasks take no space; jobs_stats: the queue's minute counts (bounded, see above).
    assert await client.keys("jobs*") == [b"jobs_stats"]


async def _empty(client: redis.Redis) -> bool:
    return not await client.llen("jobs") and not await client.hlen("jobs_jobs")


async def test_a_queue_default_keeps_every_result(client: redis.Redis) -> None:
    queue = Queue("kept", client, keep_result=30)
    handle = await queue.enqueue(task(result_tasks.echo, "y"))
    assert handle.id is not None
    async with running(worker(queue)):
        assert await handle.result(timeout=5) == "y"


async def test_many_waiters_share_one_connection_and_outlive_its_loss(
    client: redis.Redis, queue: Queue
) -> None:
    handles = [await queue.enqueue(task(result_tasks.echo, i), keep_result=60) for i in range(1000)]
    waiting = [asyncio.ensure_future(h.result(timeout=20)) for h in handles]
    await wait_for(lambda: _subscribers(client, 1), what="the listener")
    await client.client_kill_filter(_type="pubsub")  # every waiter's one connection
    async with running(worker(queue, concurrency=50)):
        values = await asyncio.gather(*waiting)
        assert values == list(range(1000))
    assert await _pubsub_connections(client) <= 1


async def _pubsub_connections(client: redis.Redis) -> int:
    return sum(1 for c in await client.client_list() if int(c.get("sub", 0)) > 0)


async def _subscribers(client: redis.Redis, count: int) -> bool:
    return await _pubsub_connections(client) == count


@pytest.mark.parametrize("func", [result_tasks.in_steps, result_tasks.in_steps_in_thread])
async def test_status_shows_the_latest_progress_and_finish_clears_it(
    client: redis.Redis, queue: Queue, func: Any
) -> None:
    handle = await queue.enqueue(task(func, 3), keep_result=60)
    async with running(worker(queue)):
        await wait_for(lambda: _progress(handle, 2 / 3), what="step 2")
        status = await handle.status()
        assert (status.state, status.message) == ("running", "step 2 of 3")
        assert status.reported is not None
        await client.config_resetstat()
        assert await handle.result(timeout=5) == "all steps"
        stats = await client.info("commandstats")
    assert int(stats["cmdstat_hset"]["calls"]) <= 2  # the last report, and the result
    assert await client.exists(f"jobs_progress:{handle.id}") == 0
    assert (await handle.status()).progress is None


async def _progress(handle: Any, fraction: float) -> bool:
    status = await handle.status()
    return status.progress is not None and abs(status.progress - fraction) < 1e-9


async def test_progress_of_a_plain_task_writes_nothing(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue(task(result_tasks.plain_progress))
    async with running(worker(queue)):
        await wait_for(lambda: _empty(client), what="the task")
    assert await client.keys("jobs_progress:*") == []


async def test_a_decorated_function_returns_its_handle(client: redis.Redis) -> None:
    from adelayed import delayed

    queue = Queue("decorated", client)
    task = delayed(queue)
    send = task(keep_result=30)(result_tasks.echo_in_thread)
    handle = await send.delay("a")
    again = await send.options(key="only-once").delay("b")
    duplicate = await send.options(key="only-once").delay("c")
    assert duplicate.duplicate and duplicate.id == again.id
    async with running(worker(queue)):
        assert await handle.result(timeout=5) == "a"
        assert await again.result(timeout=5) == "b"


async def test_finish_many_settles_tasks_ending_together_in_one_call_and_twice_changes_nothing(
    client: redis.Redis, queue: Queue
) -> None:
    from adelayed._finish_batch import unfinished_record
    from adelayed._protocol.results import FINISH_MANY

    ids = ["a" * 32, "b" * 32]
    await client.hset("jobs_active", mapping={"slot:0": ids[0], "slot:1": ids[1]})
    await client.hset("jobs_jobs", mapping={ids[0]: b"e0", ids[1]: b"e1"})
    await client.hset("jobs_keys", "k", ids[1])
    import msgpack

    keys = ["jobs_active", "jobs_jobs", "jobs_keys"]
    records = []
    for slot, (id_, keep, key) in enumerate([(ids[0], 60000, ""), (ids[1], 0, "k")]):
        keys.append(f"jobs_result:{id_}")
        records.append((f"slot:{slot}", id_, keep, key, unfinished_record("done", 1, 1, "w"), 0))
    args: list[Any] = ["jobs_results", msgpack.packb(records, use_bin_type=False)]
    pubsub = client.pubsub()
    await pubsub.subscribe("jobs_results")
    try:
        assert await FINISH_MANY(queue._wire(), keys, args) == [1, 1]
        assert await FINISH_MANY(queue._wire(), keys, args) == [0, 0]  # a re-send
        messages = [await pubsub.get_message(timeout=1) for _ in range(2)]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert messages[1] is not None  # one message: the kept task's record, its data in it
    id_, record = msgpack.unpackb(messages[1]["data"], raw=True)
    assert id_ == ids[0].encode() and record == await client.get(f"jobs_result:{ids[0]}")
    assert msgpack.unpackb(record)[:4] == ["done", 1, 1, "w"]
    assert await client.exists(f"jobs_result:{ids[1]}") == 0  # not kept: its key only
    assert await client.keys("jobs_*") == [b"jobs_result:" + ids[0].encode()]


async def test_a_large_result_is_read_by_its_waiter_a_small_one_comes_with_its_message(
    queue: Queue,
) -> None:
    big, small = "x" * 5000, "y"
    handles = [
        await queue.enqueue(task(result_tasks.echo, v), keep_result=60) for v in (big, small)
    ]
    reads = [0]
    status = queue._status

    async def counted(id_: str) -> Any:
        reads[0] += 1
        return await status(id_)

    queue._status = counted  # type: ignore[method-assign]
    waiting = [asyncio.ensure_future(h.result(timeout=5)) for h in handles]
    await wait_for(lambda: reads[0] == 2, what="both waiters' first read")
    async with running(worker(queue)):
        assert await asyncio.gather(*waiting) == [big, small]
    assert reads[0] == 3  # one more read: the large one's (over 1,024 bytes, not published)


class _CountedStatus:
    """Counts a queue's STATUS calls (the read a result() may skip), passing each on."""

    def __init__(self, queue: Queue) -> None:
        self.calls = 0
        self._status = queue._status
        queue._status = self  # type: ignore[method-assign]

    async def __call__(self, id_: str) -> Any:
        self.calls += 1
        return await self._status(id_)


async def _kept(client: redis.Redis, id_: str | None) -> bool:
    return bool(await client.exists(f"jobs_result:{id_}"))


async def test_a_result_enqueued_while_subscribed_skips_its_read_even_when_it_ends_first(
    client: redis.Redis, queue: Queue
) -> None:
    """Enqueued while this process's listener is subscribed, a task cannot end unseen: its
    message is kept even before result() is called, and result() reads nothing, whether the
    task ended before it was called or after."""
    async with running(worker(queue)):
        first = await queue.enqueue(task(result_tasks.echo, 0), keep_result=60)
        assert await first.result(timeout=5) == 0  # subscribes the listener
        status = _CountedStatus(queue)
        handle = await queue.enqueue(task(result_tasks.echo, 1), keep_result=60)
        await wait_for(lambda: _kept(client, handle.id), what="the task ended")
        await anyio.sleep(0.05)  # its message arrives, with no waiter yet
        assert await handle.result(timeout=5) == 1
        later = await queue.enqueue(task(result_tasks.nap, 0.2), keep_result=60)
        assert await later.result(timeout=5) == "rested"  # waited for, not read
        assert status.calls == 0


async def test_a_result_enqueued_before_the_listener_lost_its_connection_is_read(
    client: redis.Redis, queue: Queue
) -> None:
    """The listener's connection is lost after the enqueue, and the task's message with it:
    result() sees the lost connection and reads the result instead of waiting for it."""
    first = await queue.enqueue(task(result_tasks.echo, 0), keep_result=60)
    async with running(worker(queue)):
        assert await first.result(timeout=5) == 0
    listener = listener_of(client)
    handle = await queue.enqueue(task(result_tasks.echo, 2), keep_result=60)
    await client.client_kill_filter(_type="pubsub")
    await wait_for(lambda: listener._pubsub is None, what="the listener saw its loss")
    async with running(worker(queue)):
        await wait_for(lambda: _kept(client, handle.id), what="the task ended")
        status = _CountedStatus(queue)
        assert await handle.result(timeout=2) == 2
    assert status.calls == 1
