"""What a running task can know about itself: ``adelayed.current_task()``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import AdelayedError


@dataclass(frozen=True)
class TaskContext:
    """The task being run by this coroutine or thread.

    ``queue``: the queue's name. ``worker_id``: the worker's liveness key. ``task_id``: the
    task's id (None for a task with no option, which carries none). ``func_path``: its
    ``module:func``. ``attempt``: 1 for the first run, 2 for the first retry, ... (a task with
    no option counts from 1 again if a sweep requeued it). ``retries_left``: as its ``retry``
    says now (negative: unlimited). ``timeout``: seconds the attempt may run (None: no limit).
    ``due``: when it became due by Redis's clock (None when it was enqueued without a delay
    and has not been retried). ``args`` and ``kwargs``: its arguments. ``state``: the
    worker's ``state`` dict, shared by all its tasks (filled by its ``on_startup`` hooks,
    adelayed.hooks).
    """

    queue: str
    worker_id: str
    task_id: str | None
    func_path: str
    attempt: int
    retries_left: int
    timeout: float | None
    due: datetime | None
    started: float  # time.monotonic() when the attempt started
    state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _executor: Any = field(default=None, compare=False, repr=False)
    _delivery: Any = field(default=None, compare=False, repr=False)
    _task: Any = field(default=None, compare=False, repr=False)  # the decoded PyTask

    @property
    def args(self) -> Sequence[Any]:
        return () if self._task is None else self._task.args

    @property
    def kwargs(self) -> Mapping[str, Any]:
        return {} if self._task is None else self._task.kwargs

    @property
    def deadline(self) -> float | None:
        """The ``time.monotonic()`` value by which the attempt must end, or None."""
        return None if self.timeout is None else self.started + self.timeout

    async def progress(self, fraction: float, message: str = "") -> None:
        """Reports how far the task got (``fraction`` from 0 to 1, and a message): the
        latest report shows in its handle's ``status()``. One Redis write per call; nothing
        for a task enqueued with no option (it has no id to report under)."""
        if self._executor is not None:
            await self._executor.results.progress(self._delivery, fraction, message)

    def progress_from_thread(self, fraction: float, message: str = "") -> None:
        """``progress()`` for a plain function running in a worker's thread (it waits for
        the write)."""
        if self._executor is not None:
            self._executor.results.progress_from_thread(self._delivery, fraction, message)

    def time_left(self) -> float | None:
        """Seconds left before the attempt's timeout, or None when it has none."""
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())


class NotInTaskError(AdelayedError, LookupError):
    """``current_task()`` was called outside a task run by a worker."""


# Set for every task: (the executor, the delivery or None for a v1 task, the decoded task,
# when the attempt started), made into a TaskContext only when asked: the hot path
# pays for a 4-tuple and a ContextVar.set, not for a dataclass.
# A worker with task hooks pins the TaskContext itself (pin), so its hooks and the task share
# one object.
Facts = tuple[Any, Any, Any, float]
_current: ContextVar[Facts | TaskContext] = ContextVar("adelayed_current_task")


def current_task() -> TaskContext:
    """The context of the task this code runs in (inside a task function, in its coroutine or
    its thread). Raises NotInTaskError elsewhere."""
    try:
        facts = _current.get()
    except LookupError:
        raise NotInTaskError(
            "adelayed.current_task() was called outside a task: only code run by a worker "
            "for a task has one"
        ) from None
    if isinstance(facts, TaskContext):
        return facts
    executor, delivery, task, started = facts
    if delivery is None:  # a v1 task: its first attempt here, no id, no options
        return TaskContext(
            executor.queue_name, executor.worker_id, None, task.func_path, 1, task.retry,
            None, None, started, executor.state, _task=task,
        )  # fmt: skip
    return TaskContext(
        executor.queue_name, executor.worker_id, delivery.id, task.func_path, delivery.attempt,
        task.retry, delivery.options.timeout, _due_of(delivery.due_ms), started, executor.state,
        executor, delivery, task,
    )  # fmt: skip


def pin() -> TaskContext:
    """Makes the running task's TaskContext once; current_task() returns that one from now
    on (in this context)."""
    context = current_task()
    _current.set(context)
    return context


def _due_of(due_ms: float) -> datetime | None:
    return None if due_ms <= 0 else datetime.fromtimestamp(due_ms / 1000, timezone.utc)


enter = _current.set  # enter(facts): the running coroutine's task (a thread runs in a copy)
