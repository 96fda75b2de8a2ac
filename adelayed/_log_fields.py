"""The structured fields of a log record about one task: ``extra=task_fields(...)`` gives the
record ``queue``, ``function``, ``task_id``, ``attempt``, ``worker`` and ``duration`` (seconds
the attempt ran), for a JSON formatter or a log shipper. Built only when such a record is
logged (a failure, a retry, a dead letter): nothing on a task that succeeds."""

from __future__ import annotations

import time
from typing import Any

from .context import NotInTaskError, current_task


def task_fields(queue: str, function: str, attempt: int | None = None) -> dict[str, Any]:
    """The fields of the task whose attempt this coroutine (or thread) runs now."""
    try:
        task = current_task()
    except NotInTaskError:  # outside the task's own context: what the caller knows
        return not_run_fields(queue, function, attempt, None, None)
    duration = time.monotonic() - task.started if task.started else None
    return {
        "queue": queue, "function": function, "task_id": task.task_id,
        "attempt": task.attempt if attempt is None else attempt, "worker": task.worker_id,
        "duration": duration,
    }  # fmt: skip


def not_run_fields(
    queue: str, function: str, attempt: int | None, task_id: str | None, worker: str | None
) -> dict[str, Any]:
    """The fields of a task refused before it ran (no attempt, so no duration)."""
    return {"queue": queue, "function": function, "task_id": task_id, "attempt": attempt,
            "worker": worker, "duration": None}  # fmt: skip
