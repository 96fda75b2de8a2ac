"""The Worker, run in the test's event loop against a real redis-server."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
import redis.asyncio as redis

from adelayed import ConfigurationError, GoTask, PyTask, Queue, Worker
from tests import tasks
from tests.helpers import make_worker, running, text, wait_for


async def queue_state(client: redis.Redis) -> tuple[int, int, int]:
    return (
        await client.llen("jobs"),
        await client.llen("jobs_noti"),
        await client.hlen("jobs_processing"),
    )


async def test_runs_async_and_sync_tasks(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue(PyTask(tasks.async_record, args=("async",)))
    await queue.enqueue(PyTask("tests.tasks:sync_record", kwargs={"value": "sync"}))
    async with running(make_worker(queue)):
        await wait_for(lambda: len(tasks.ran) == 2)
    assert sorted(tasks.ran) == ["async", "sync"]  # type: ignore[type-var]
    assert await queue_state(client) == (0, 0, 0)


async def test_decorated_function_runs_directly_or_through_the_queue(
    client: redis.Redis, queue: Queue
) -> None:
    from tests import decorated_tasks

    decorated_tasks.bind(queue)
    assert await decorated_tasks.double(4) == 8  # a direct call still runs here
    await decorated_tasks.double.delay(21)
    worker = make_worker(queue, tasks=[])  # allowed because the decorator ran in this process
    async with running(worker):
        await wait_for(lambda: decorated_tasks.results == [8, 42])


async def test_concurrency_is_never_exceeded(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue_many(PyTask(tasks.async_sleep, args=(0.05, i)) for i in range(30))
    await queue.enqueue_many(PyTask(tasks.sync_sleep, args=(0.05, i)) for i in range(30))
    async with running(make_worker(queue, concurrency=7)):
        await wait_for(lambda: len(tasks.ran) == 60)
    assert tasks.peak() == 7


async def test_sync_tasks_run_in_threads_without_blocking_the_loop(queue: Queue) -> None:
    await queue.enqueue(PyTask(tasks.sync_sleep, args=(1.0, "slow")))
    await queue.enqueue_many(PyTask(tasks.async_record, args=(i,)) for i in range(20))
    started = time.monotonic()
    async with running(make_worker(queue, concurrency=5)):
        await wait_for(lambda: len(tasks.ran) == 20)
        assert time.monotonic() - started < 0.8
        assert "slow" not in tasks.ran
        await wait_for(lambda: "slow" in tasks.ran)


async def test_more_sync_tasks_than_anyio_default_thread_limit_run_at_once(queue: Queue) -> None:
    await queue.enqueue_many(PyTask(tasks.sync_sleep, args=(0.5, i)) for i in range(60))
    async with running(make_worker(queue, concurrency=60)):
        await wait_for(lambda: len(tasks.ran) == 60, timeout=5)
    assert tasks.peak() == 60


async def test_sync_tasks_reuse_threads_at_most_one_per_slot(queue: Queue) -> None:
    await queue.enqueue_many(
        PyTask(tasks.sync_record_thread, args=(i % 2 == 0,)) for i in range(60)
    )
    async with running(make_worker(queue, concurrency=3)):
        await wait_for(lambda: len(tasks.ran) == 60)
    assert len(set(tasks.ran)) <= 3  # failed calls' threads are reused too


async def test_retry_runs_a_failing_task_retry_plus_one_times(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(PyTask(tasks.fail_until, args=("always", 0), retry=3))
    await queue.enqueue(PyTask(tasks.fail_until, args=("third", 3), retry=-1))
    await queue.enqueue(PyTask(tasks.fail_until, args=("never-retried", 0)))
    async with running(make_worker(queue, retry_backoff=(0.01, 0.02))):
        await wait_for(lambda: tasks.call_count("always") == 4 and tasks.call_count("third") == 3)
        await anyio.sleep(0.3)
        assert await queue_state(client) == (0, 0, 0)
    assert tasks.call_count("always") == 4
    assert tasks.call_count("third") == 3
    assert tasks.call_count("never-retried") == 1


async def test_a_type_error_raised_inside_the_task_is_retried(queue: Queue) -> None:
    await queue.enqueue(PyTask(tasks.len_of_nothing, args=("len",), retry=2))
    async with running(make_worker(queue, retry_backoff=(0.01, 0.02))):
        await wait_for(lambda: tasks.call_count("len") == 3)
        await anyio.sleep(0.3)
    assert tasks.call_count("len") == 3
    assert await queue.dead_tasks() == []


async def test_a_call_with_wrong_arguments_is_dead_lettered_not_retried(
    client: redis.Redis, queue: Queue
) -> None:
    bad = PyTask(tasks.fail_until, args=(1, 2, 3, 4), retry=5)
    await queue.enqueue(bad)
    await queue.enqueue(PyTask(tasks.sync_record, args=("after",)))
    async with running(make_worker(queue)):
        await wait_for(lambda: tasks.ran == ["after"])
        await wait_for(lambda: queue.dead_tasks(), what="a dead letter")
    [dead] = await queue.dead_tasks()
    assert dead.payload == bad.serialize()
    assert "TaskCallError" in dead.reason and "tests.tasks:fail_until" in dead.reason
    assert await queue_state(client) == (0, 0, 0)


async def test_a_refused_function_is_not_run_not_lost_and_the_worker_goes_on(
    client: redis.Redis, queue: Queue
) -> None:
    evil = PyTask("os:system", args=("touch /tmp/adelayed-pwned",))
    await queue.enqueue(evil)
    await queue.enqueue(PyTask("tests.tasks:sync_record", args=("valid",)))
    async with running(make_worker(queue)):
        await wait_for(lambda: tasks.ran == ["valid"])
        await wait_for(lambda: queue.dead_tasks(), what="a dead letter")
    [dead] = await queue.dead_tasks()
    assert dead.payload == evil.serialize()
    assert "FunctionNotAllowedError" in dead.reason and "'os:system'" in dead.reason
    import os

    assert not os.path.exists("/tmp/adelayed-pwned")
    assert await queue_state(client) == (0, 0, 0)


async def test_a_function_imported_into_an_allowed_module_is_refused(queue: Queue) -> None:
    await queue.enqueue(PyTask("tests.tasks:getpid"))  # os.getpid, imported by tests.tasks
    await queue.enqueue(PyTask("tests.tasks:Lock"))
    async with running(make_worker(queue)):
        await wait_for(lambda: _count_dead(queue, 2))
    assert all("not defined there" in dead.reason for dead in await queue.dead_tasks())


async def _count_dead(queue: Queue, count: int) -> bool:
    return len(await queue.dead_tasks()) == count


async def test_allow_any_function_restores_delayed_behaviour(queue: Queue) -> None:
    await queue.enqueue(PyTask("tests.decorated_tasks:plain", args=(5,)))
    from tests import decorated_tasks

    async with running(make_worker(queue, tasks=[], allow_any_function=True)):
        await wait_for(lambda: decorated_tasks.results == [5])


async def test_a_go_task_is_dead_lettered_with_a_clear_reason(queue: Queue) -> None:
    await queue.enqueue(GoTask("fmt.Println", (1, "x")))
    async with running(make_worker(queue)):
        await wait_for(lambda: _count_dead(queue, 1))
    [dead] = await queue.dead_tasks()
    assert "Go task 'fmt.Println'" in dead.reason


async def test_an_undecodable_payload_is_dead_lettered(client: redis.Redis, queue: Queue) -> None:
    await client.rpush("jobs", b"\xc1\xc1 not msgpack")
    await client.rpush("jobs_noti", "1")
    await queue.enqueue(PyTask(tasks.sync_record, args=("valid",)))
    async with running(make_worker(queue)):
        await wait_for(lambda: tasks.ran == ["valid"])
        await wait_for(lambda: _count_dead(queue, 1))
    [dead] = await queue.dead_tasks()
    assert dead.payload == b"\xc1\xc1 not msgpack" and "PayloadError" in dead.reason


async def test_each_running_task_has_a_live_namespaced_processing_field(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue_many(PyTask(tasks.async_sleep, args=(0.5, i)) for i in range(3))
    worker = make_worker(queue, concurrency=5)
    async with running(worker):
        await wait_for(lambda: _processing_count(client, 3))
        fields = await client.hkeys("jobs_processing")
        assert len(set(fields)) == 3
        for field in fields:
            assert text(field).startswith(worker.id + ":")
            assert worker.id.startswith("adelayed:worker:")
            assert await client.get(field) == b"1"
            assert await client.pttl(field) > 0
    assert await client.keys("adelayed:worker:*") == []


async def _processing_count(client: redis.Redis, count: int) -> bool:
    return await client.hlen("jobs_processing") == count


async def test_stop_lets_running_tasks_finish(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue_many(PyTask(tasks.async_sleep, args=(0.3, i)) for i in range(10))
    worker = make_worker(queue, concurrency=4)
    async with running(worker):
        await wait_for(lambda: tasks.peak() == 4)
    assert len(tasks.ran) == 4
    assert await queue_state(client) == (6, 6, 0)


async def test_tasks_past_the_grace_period_are_requeued_at_the_head(
    client: redis.Redis, queue: Queue
) -> None:
    slow = [PyTask(tasks.async_sleep, args=(30, i)) for i in range(2)]
    await queue.enqueue_many([*slow, PyTask(tasks.async_record, args=("next",))])
    worker = make_worker(queue, concurrency=2, grace_period=0.2)
    async with running(worker):
        await wait_for(lambda: _processing_count(client, 2))
    assert tasks.ran == []
    assert await queue_state(client) == (3, 3, 0)
    payloads = await client.lrange("jobs", 0, -1)
    assert sorted(payloads[:2]) == sorted(t.serialize() for t in slow)


async def test_stop_now_requeues_sync_tasks_too(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue(PyTask(tasks.sync_sleep, args=(1.0, "thread")))
    worker = make_worker(queue)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await wait_for(lambda: _processing_count(client, 1))
        worker.stop(now=True)
    assert await queue_state(client) == (1, 1, 0)


async def test_a_hard_stop_abandons_a_sync_task_so_only_its_requeue_completes(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(PyTask(tasks.sync_sleep, args=(0.5, "thread")))
    worker = make_worker(queue)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await wait_for(lambda: tasks.active() == 1, what="the running task")
        worker.stop(now=True)
    assert await queue_state(client) == (1, 1, 0)
    await wait_for(lambda: tasks.active() == 0, what="the abandoned thread past its sleep")
    await wait_for(lambda: not _task_threads(), what="the task threads to end")
    assert tasks.ran == []  # the abandoned call did not go on to record its run


def _task_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("adelayed task thread")]


async def test_a_dropped_connection_does_not_end_the_worker(
    client: redis.Redis, queue: Queue
) -> None:
    worker = make_worker(queue)
    async with running(worker):
        await anyio.sleep(0.3)
        await client.client_kill_filter(_type="normal", skipme=True)
        await queue.enqueue(PyTask(tasks.async_record, args=("after-kill",)))
        await wait_for(lambda: tasks.ran == ["after-kill"])


async def test_worker_refuses_a_lease_that_would_lapse(queue: Queue) -> None:
    with pytest.raises(ConfigurationError, match="keep_alive_interval"):
        Worker(queue, keep_alive_interval=queue.keep_alive_timeout)


def test_worker_names_a_missing_task_module() -> None:
    import redis.asyncio as aredis

    queue = Queue("q", aredis.Redis())
    with pytest.raises(ConfigurationError, match="no_such_module"):
        Worker(queue, tasks=["no_such_module"])
