"""Helpers for testing an app that uses adelayed, on a real Redis (the pytest plugin in
``adelayed.testing.plugin`` starts one): ``drain()`` runs a worker until its queues are empty,
scheduled tasks included (their time moved forward, so a delay or a retry's backoff costs the
test nothing), and returns what ran, what failed and what was dead-lettered::

    async def test_signup_sends_a_welcome_email(adelayed_redis_url):
        client = redis.asyncio.Redis.from_url(adelayed_redis_url)
        queue = Queue("emails", client)
        await signup(queue, "ada@example.com")        # the code under test enqueues
        drained = await drain(queue, tasks=["app.tasks"])
        assert [run.args for run in drained.ran] == [("ada@example.com",)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._dead_letters import DeadTask
from .._observe import add_hooks
from .._queue_info import _pairs
from ..context import TaskContext
from ..errors import AdelayedError
from ..queue import Queue
from ..worker import Worker

__all__ = ["DrainTimeoutError", "Drained", "TaskRun", "advance_scheduled", "drain"]


@dataclass(frozen=True)
class TaskRun:
    """One attempt of a task: what ran, with which arguments, and how it ended."""

    func_path: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    queue: str
    task_id: str | None
    attempt: int
    error: BaseException | None = None  # None: it returned


@dataclass
class Drained:
    """What ``drain()`` saw: ``ran`` (attempts that returned), ``failed`` (attempts that
    raised: a retried one too), ``dead`` (dead letters added meanwhile, newest first)."""

    ran: list[TaskRun] = field(default_factory=list)
    failed: list[TaskRun] = field(default_factory=list)
    dead: list[DeadTask] = field(default_factory=list)


class DrainTimeoutError(AdelayedError, TimeoutError):
    """The queues did not empty within ``drain()``'s timeout (a task that never ends, or a
    task enqueued again and again)."""


class _Recorder:
    def __init__(self) -> None:
        self.drained = Drained()
        self._errors: dict[int, BaseException] = {}

    def failed(self, task: TaskContext, error: BaseException) -> None:
        self._errors[id(task)] = error

    def after(self, task: TaskContext) -> None:
        error = self._errors.pop(id(task), None)
        run = TaskRun(task.func_path, tuple(task.args), dict(task.kwargs), task.queue,
                      task.task_id, task.attempt, error)  # fmt: skip
        (self.drained.ran if error is None else self.drained.failed).append(run)


async def drain(
    target: Queue | Worker,
    *,
    tasks: Iterable[Any] = (),
    advance: bool = True,
    timeout: float = 30.0,  # noqa: ASYNC109 - the helper's own deadline, as in result()
    **worker_options: Any,
) -> Drained:
    """Runs ``target`` (a Worker, or a Queue: a worker of it is made, for ``tasks``, or for any
    importable function when none are named) until every queue it serves holds no task,
    queued, in flight or (``advance``: their time moved forward) scheduled; then stops it.
    Raises DrainTimeoutError past ``timeout`` seconds."""
    if isinstance(target, Worker):
        worker = target
    else:
        tasks = list(tasks)
        options = {"handle_signals": False, "sweep_interval": None, **worker_options}
        worker = Worker(target, tasks=tasks, allow_any_function=not tasks, **options)
    recorder = _Recorder()
    add_hooks(worker, after_task=recorder.after, on_failure=recorder.failed)
    queues: list[Queue] = worker._queues
    dead_before = [await _dead_count(queue) for queue in queues]
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        with anyio.move_on_after(timeout) as waiting:
            await _until_empty(queues, advance)
        left = await _what_is_left(queues, timeout) if waiting.cancelled_caught else ""
        worker.stop(now=bool(left))  # a task still running is requeued, not waited for
    if left:
        raise DrainTimeoutError(left)
    for queue, before in zip(queues, dead_before, strict=True):
        added = await _dead_count(queue) - before
        recorder.drained.dead += await queue.dead_tasks(added) if added > 0 else []
    return recorder.drained


async def _until_empty(queues: list[Queue], advance: bool) -> None:
    quiet = 0
    while quiet < 3:  # empty three looks in a row: nothing was between two places
        await anyio.sleep(0.01)
        busy = [await q.len() + await q.in_flight() for q in queues]
        if any(busy) or (advance and any([await advance_scheduled(q) for q in queues])):
            quiet = 0
        elif not advance or not any([await q.scheduled() for q in queues]):
            quiet += 1


async def advance_scheduled(queue: Queue) -> int:
    """Moves the queue's scheduled tasks forward in time, all by the same amount, so that the
    earliest is due now (their order and spacing kept), and promotes those due; returns how
    many became due. Time for these tasks only: Redis's clock does not move."""
    wire = queue._wire()
    earliest = await wire.call("ZRANGE", queue._scheduled_key, 0, 0, "WITHSCORES")
    if not earliest:
        return 0
    [(_, score)] = _pairs(earliest)
    seconds, micros = await wire.call("TIME")
    shift = float(score) - (int(seconds) * 1000 + int(micros) / 1000)
    if shift > 0:
        entries = _pairs(await wire.call("ZRANGE", queue._scheduled_key, 0, -1, "WITHSCORES"))
        moved = [item for member, due in entries for item in (float(due) - shift, member)]
        # XX: a task promoted meanwhile is not added back
        await wire.call("ZADD", queue._scheduled_key, "XX", *moved)
    promoted, _, _ = await queue._promote(wire)
    return int(promoted)


async def _dead_count(queue: Queue) -> int:
    return int(await queue._wire().call("LLEN", queue._dead_key))


async def _what_is_left(queues: list[Queue], waited: float) -> str:
    left = [
        f"{q.name!r}: {await q.len()} queued, {await q.in_flight()} in flight, "
        f"{await q.scheduled()} scheduled"
        for q in queues
    ]
    return f"drain(): the queues were not empty after {waited:g}s ({'; '.join(left)})"
