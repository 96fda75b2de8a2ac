"""Worker hooks: on_startup / on_shutdown around the worker, before_task / after_task /
on_failure around each attempt, and the state startup hooks share with tasks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from adelayed import HookError, PyTask, Queue
from tests import hook_tasks as hooks
from tests.helpers import make_worker, running, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _reset() -> None:
    hooks.reset()


def worker(queue: Queue, **options: Any) -> Any:
    return make_worker(queue, tasks=["tests.hook_tasks"], **options)


def kinds() -> list[str]:
    return [str(event[0]) for event in hooks.events]


async def test_startup_state_reaches_tasks_and_shutdown_runs_after_the_last(
    queue: Queue,
) -> None:
    await queue.enqueue(PyTask(hooks.uses_pool, args=("a",)))
    await queue.enqueue(PyTask(hooks.uses_pool_in_thread, args=("b",)))
    w = worker(queue, on_startup=hooks.open_pool, on_shutdown=[hooks.close_pool])
    async with running(w):
        await wait_for(lambda: kinds().count("task") == 2)
        assert w.state == {"pool": "pool-1"}
    assert kinds() == ["startup", "task", "task", "shutdown"]
    tasks = sorted(event[1:3] for event in hooks.events if event[0] == "task")
    assert tasks == [("a", "pool-1"), ("b", "pool-1")]  # a coroutine's and a thread's
    assert hooks.events[-1] == ("shutdown", "close_pool", "pool-1")


async def test_a_failing_startup_hook_stops_the_worker_before_it_takes_a_task(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(PyTask(hooks.uses_pool, args=("a",)))
    w = worker(queue, on_startup=[hooks.broken, hooks.open_pool], on_shutdown=hooks.close_pool)
    with pytest.raises(HookError) as raised:
        await w.run()
    message = str(raised.value)
    assert "worker of queue 'jobs'" in message and "tests.hook_tasks:broken" in message
    assert "ConnectionRefusedError: database at 127.0.0.1:1 refused" in message
    assert "took no task" in message
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert hooks.events == []  # neither the next startup hook nor any shutdown hook ran
    assert await queue.len() == 1 and await client.hlen("jobs_processing") == 0
    assert await client.keys("adelayed:worker:*") == []  # no lease was claimed


async def test_task_hooks_share_the_tasks_context_in_order(queue: Queue) -> None:
    await queue.enqueue(PyTask(hooks.uses_pool, args=("ok",)))
    await queue.enqueue(PyTask(hooks.fails, args=("bad",)))
    w = worker(
        queue, on_startup=hooks.open_pool, before_task=hooks.before, after_task=hooks.after,
        on_failure=[hooks.on_failure],
    )  # fmt: skip
    async with running(w):
        await wait_for(lambda: kinds().count("after") == 2)
    by_task = {
        path: [e for e in hooks.events if len(e) > 1 and path in str(e[1])]
        for path in ("uses_pool", "fails")
    }
    assert [e[0] for e in by_task["uses_pool"]] == ["before", "after"]
    ok_task = next(e for e in hooks.events if e[0] == "task" and e[1] == "ok")
    assert ok_task[3] == "set before attempt 1"  # a ContextVar set in before_task
    before, after = by_task["uses_pool"]
    assert before[3] is after[3] is hooks.contexts[0]  # one TaskContext for hooks and task
    assert after[2] == "set before attempt 1"
    assert [e[0] for e in by_task["fails"]] == ["before", "failure", "after"]
    assert by_task["fails"][1][2:] == ("ValueError", "bad fails")


async def test_a_failing_before_hook_fails_that_attempt_only(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    hooks.fail_before["tests.hook_tasks:uses_pool"] = 1
    await queue.enqueue(PyTask(hooks.uses_pool, args=("retried",), retry=1))
    await queue.enqueue(PyTask(hooks.uses_pool_in_thread, args=("other",)))
    w = worker(
        queue, on_startup=hooks.open_pool, before_task=hooks.before, on_failure=hooks.on_failure
    )
    async with running(w):
        await wait_for(lambda: kinds().count("task") == 2)
    ran = [e[1] for e in hooks.events if e[0] == "task"]
    assert sorted(ran) == ["other", "retried"]  # each once: the failed attempt did not run
    [failure] = [e for e in hooks.events if e[0] == "failure"]
    assert failure[2] == "HookError" and "before_task hook tests.hook_tasks:before" in failure[3]
    assert "did not run" in failure[3]
    retried = [e for e in hooks.events if e[0] == "before" and e[1].endswith(":uses_pool")]
    assert [e[2] for e in retried] == [2]  # the retry, attempt 2, ran


async def test_a_failing_after_or_failure_hook_is_logged_and_the_outcome_stands(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """The task that succeeded is not retried, nor the one that failed given more attempts:
    each ran once, and the worker goes on."""
    await queue.enqueue(PyTask(hooks.uses_pool, args=("ok",)))
    await queue.enqueue(PyTask(hooks.fails, args=("bad",), retry=0))
    await queue.enqueue(PyTask(hooks.uses_pool, args=("later",)), delay=0.3)
    w = worker(
        queue, on_startup=hooks.open_pool, after_task=[hooks.broken_task_hook, hooks.after],
        on_failure=hooks.broken_task_hook,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="adelayed"):
        async with running(w):
            await wait_for(lambda: kinds().count("after") == 3)
    ran = sorted(e[1] for e in hooks.events if e[0] == "task")
    assert ran == ["bad", "later", "ok"]  # once each
    logged = [r.getMessage() for r in caplog.records if " hook " in r.getMessage()]
    assert any("after_task hook tests.hook_tasks:broken_task_hook failed" in m for m in logged)
    assert any("on_failure hook tests.hook_tasks:broken_task_hook failed" in m for m in logged)
    assert all("outcome stands" in m for m in logged)


async def test_a_timeout_reaches_on_failure_and_a_failing_shutdown_hook_lets_the_rest_run(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue(PyTask(hooks.slow, args=("slow",)), timeout=0.2)
    w = worker(
        queue, on_startup=hooks.open_pool, on_failure=hooks.on_failure,
        on_shutdown=[hooks.broken, hooks.close_pool],
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="adelayed"):
        async with running(w):
            await wait_for(lambda: "failure" in kinds())
    [failure] = [e for e in hooks.events if e[0] == "failure"]
    assert failure[2] == "TaskTimeoutError"
    assert hooks.events[-1] == ("shutdown", "close_pool", "pool-1")
    assert any("on_shutdown hook tests.hook_tasks:broken failed" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_a_process_isolated_tasks_hooks_run_in_the_worker_around_the_child(
    queue: Queue, tmp_path: Path
) -> None:
    from tests import isolated_tasks

    path = str(tmp_path / "pid")
    await queue.enqueue(PyTask(isolated_tasks.record_pid, args=(path,)), isolation="process")
    await queue.enqueue(PyTask(isolated_tasks.segfault), isolation="process")
    w = make_worker(
        queue, tasks=["tests.isolated_tasks"], before_task=hooks.before, after_task=hooks.after,
        on_failure=hooks.on_failure,
    )  # fmt: skip
    async with running(w):
        await wait_for(lambda: kinds().count("after") == 2, timeout=20)
    child = int(Path(path).read_text())
    assert child != os.getpid()  # the task ran in a child; its hooks in this process
    assert sorted(kinds()) == ["after", "after", "before", "before", "failure"]
    [failure] = [e for e in hooks.events if e[0] == "failure"]
    assert failure[1] == "tests.isolated_tasks:segfault" and failure[2] == "TaskCrashedError"
