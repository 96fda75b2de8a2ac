"""What a running task can know about itself: ``adelayed.current_task()``."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone

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
    and has not been retried).
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

    @property
    def deadline(self) -> float | None:
        """The ``time.monotonic()`` value by which the attempt must end, or None."""
        return None if self.timeout is None else self.started + self.timeout

    def time_left(self) -> float | None:
        """Seconds left before the attempt's timeout, or None when it has none."""
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - time.monotonic())


class NotInTaskError(AdelayedError, LookupError):
    """``current_task()`` was called outside a task run by a worker."""


# Set for every task: a plain tuple, made into a TaskContext only when asked (the hot path
# pays for a tuple and a ContextVar.set, not a dataclass).
# (queue, worker id, task id, func path, attempt, retries left, timeout, due ms, started)
Facts = tuple[str, str, "str | None", str, int, int, "float | None", float, float]
_current: ContextVar[Facts] = ContextVar("adelayed_current_task")


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
    queue, worker, task_id, path, attempt, retries, timeout, due_ms, started = facts
    due = _due_of(due_ms)
    return TaskContext(queue, worker, task_id, path, attempt, retries, timeout, due, started)


def _due_of(due_ms: float) -> datetime | None:
    return None if due_ms <= 0 else datetime.fromtimestamp(due_ms / 1000, timezone.utc)


def enter(facts: Facts) -> None:
    """Makes ``facts`` the current task's, in the running coroutine's context (a thread task
    runs in a copy of it)."""
    _current.set(facts)
