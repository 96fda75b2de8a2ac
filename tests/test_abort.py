"""TaskHandle.abort(): a scheduled or queued task removed with its token; a running one
stopped by its worker (cancelled, or its outcome discarded for a thread)."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue, TaskAborted, TaskFailed
from tests import result_tasks
from tests.helpers import make_worker, running, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _reset() -> None:
    result_tasks.events.clear()


def worker(queue: Queue, **options: Any) -> Any:
    return make_worker(queue, tasks=["tests.result_tasks", "tests.isolated_tasks"], **options)


async def test_a_scheduled_or_queued_task_is_removed_with_its_token(
    client: redis.Redis, queue: Queue
) -> None:
    scheduled = await queue.enqueue(PyTask(result_tasks.echo, args=(1,)), delay=60)
    queued = await queue.enqueue(PyTask(result_tasks.echo, args=(2,)), keep_result=60)
    kept = await queue.enqueue(PyTask(result_tasks.echo, args=(3,)), keep_result=60)
    assert await client.llen("jobs_noti") == 2
    assert await scheduled.abort() == "aborted"
    assert await queued.abort() == "aborted"
    assert await queued.abort() == "ended"  # safe to run twice
    assert await client.llen("jobs_noti") == 1 and await client.llen("jobs_ready") == 1
    assert await client.zcard("jobs_scheduled") == 0 and await client.hlen("jobs_jobs") == 1
    assert (await scheduled.status()).state == "aborted"
    with pytest.raises(TaskAborted, match="was aborted"):
        await queued.result(timeout=1)
    async with running(worker(queue)):
        assert await kept.result(timeout=5) == 3  # the one left runs
    assert await queue.get("0" * 32).abort() == "unknown"


async def test_a_running_coroutine_is_cancelled_within_100_ms(
    client: redis.Redis, queue: Queue
) -> None:
    handle = await queue.enqueue(  # an envelope (an id) with no keep_result
        PyTask(result_tasks.until_cancelled, args=("a",), retry=3), timeout=60
    )
    async with running(worker(queue, concurrency=1)):
        await wait_for(lambda: "a started" in result_tasks.events, what="the task")
        sent = time.monotonic()
        assert await handle.abort() == "running"
        await wait_for(lambda: "a cancelled" in result_tasks.events, timeout=2)
        assert result_tasks.events["a cancelled"] - sent < 0.1
        with pytest.raises(TaskAborted):
            await handle.result(timeout=5)
        after = await queue.enqueue(PyTask(result_tasks.echo, args=(4,)), keep_result=60)
        assert await after.result(timeout=5) == 4  # its one slot is free again
    assert (await handle.status()).state == "aborted"
    assert await client.zcard("jobs_scheduled") == 0  # no retry, despite retry=3
    assert await client.hlen("jobs_jobs") == 0 and await client.hlen("jobs_active") == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is Python 3.11+")
async def test_an_abort_and_a_timeout_leave_no_cancel_request_on_the_slot(queue: Queue) -> None:
    """An abort and a timeout each cancel the slot's task; each cancel is taken back, so the
    next task on that slot starts with none pending (one left behind would make the
    asyncio.timeout() and anyio scopes of later tasks on it misread their own cancels)."""
    aborted = await queue.enqueue(PyTask(result_tasks.until_cancelled, args=("b",)), timeout=60)
    timed_out = PyTask(result_tasks.until_cancelled, args=("c",))
    async with running(worker(queue, concurrency=1)):
        await wait_for(lambda: "b started" in result_tasks.events, what="the task")
        await aborted.abort()
        late = await queue.enqueue(timed_out, timeout=0.2, keep_result=60)
        with pytest.raises(TaskFailed, match="TaskTimeoutError"):
            await late.result(timeout=5)
        probe = await queue.enqueue(PyTask(result_tasks.cancel_requests), keep_result=60)
        assert await probe.result(timeout=5) == 0


async def test_a_running_thread_runs_on_and_its_outcome_is_discarded(queue: Queue) -> None:
    handle = await queue.enqueue(PyTask(result_tasks.thread_until, args=("t", 0.5)), keep_result=60)
    async with running(worker(queue)):
        await wait_for(lambda: "t started" in result_tasks.events, what="the task")
        assert await handle.abort() == "running"
        with pytest.raises(TaskAborted):
            await handle.result(timeout=5)
    assert "t returned" in result_tasks.events  # it ran to its end: a thread is not stopped
    assert (await handle.status()).state == "aborted"


async def test_a_process_isolated_task_is_killed(queue: Queue, tmp_path: Any) -> None:
    from tests import isolated_tasks

    pid_file = str(tmp_path / "pid")
    handle = await queue.enqueue(
        PyTask(isolated_tasks.spin, args=(pid_file,)), isolation="process", keep_result=60
    )
    async with running(worker(queue)):
        await wait_for(lambda: (tmp_path / "pid").exists(), what="the child")
        child = int((tmp_path / "pid").read_text())
        sent = time.monotonic()
        assert await handle.abort() == "running"
        with pytest.raises(TaskAborted):
            await handle.result(timeout=5)
        await wait_for(lambda: not _alive(child), timeout=2, what="the child to die")
        assert time.monotonic() - sent < 1


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_an_abort_heard_before_its_task_started_here_aborts_it_unrun(queue: Queue) -> None:
    """Every worker hears every abort. One heard for a task this worker has taken but not yet
    started (its message came between the fetch and the start) is kept, and the task is
    aborted as it starts, without running."""
    result_tasks.runs.clear()
    handle = await queue.enqueue(PyTask(result_tasks.counted, args=(7,)), keep_result=60)
    other = await queue.enqueue(PyTask(result_tasks.counted, args=(8,)), keep_result=60)
    unwatched = worker(queue)
    unwatched._aborts.abort(handle._known_id())  # the listener's call, for a task not started
    async with running(unwatched):
        with pytest.raises(TaskAborted):
            await handle.result(timeout=5)
        assert await other.result(timeout=5) == 8
    assert result_tasks.runs == {8: 1}  # 7 never ran
    assert (await handle.status()).state == "aborted"


async def test_an_abort_published_while_the_listener_reconnects_still_stops_the_task(
    client: redis.Redis, queue: Queue
) -> None:
    """ABORT writes a running task's abort down: a worker whose abort listener was not
    subscribed when it was published reads it once subscribed again, and stops the task."""
    handle = await queue.enqueue(PyTask(result_tasks.until_cancelled, args=("r",)), keep_result=60)
    async with running(worker(queue, concurrency=1)):
        await wait_for(lambda: "r started" in result_tasks.events, what="the task")
        await client.client_kill_filter(_type="pubsub")  # the worker's abort listener
        assert await handle.abort() == "running"  # published while nobody listens
        with pytest.raises(TaskAborted):
            await handle.result(timeout=5)
    assert "r cancelled" in result_tasks.events
    assert await client.exists(f"jobs_aborting:{handle._known_id()}") == 1  # expires by itself
