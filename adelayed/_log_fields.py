"""The structured fields of a log record about one task: ``extra=task_fields(...)`` gives the
record ``queue``, ``function``, ``task_id``, ``attempt``, ``worker`` and ``duration`` (seconds
the attempt ran, when the worker timed it: a task with an option; else None), for a JSON
formatter or a log shipper. Built only when such a record is logged (a failure, a retry, a
dead letter): nothing on a task that succeeds."""

from __future__ import annotations

import time
from typing import Any

from .context import NotInTaskError, current_task


def task_fields(queue: str, function: str, attempt: int | None = None) -> dict[str, Any]:
    try:
        task = current_task()
    except NotInTaskError:  # outside the task's own context: what the caller knows
        return {"queue": queue, "function": function, "task_id": None, "attempt": attempt,
                "worker": None, "duration": None}  # fmt: skip
    duration = time.monotonic() - task.started if task.started else None
    return {
        "queue": queue, "function": function, "task_id": task.task_id,
        "attempt": task.attempt if attempt is None else attempt, "worker": task.worker_id,
        "duration": duration,
    }  # fmt: skip
