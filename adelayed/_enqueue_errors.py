"""What an enqueue that failed raises: whether the task may have been added, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    OutOfMemoryError,
    RedisError,
    TimeoutError,
)

from ._fatal import configuration_error
from ._wire import ReplyLostError, ReplyTimeoutError
from .errors import EnqueueError, EnqueueOutcomeUnknownError, EnqueueTimeoutError
from .task import Task


def enqueue_error(
    queue: str, enqueue_timeout: float | None, exc: RedisError, tasks: Sequence[Task]
) -> Exception:
    """The error an enqueue raises for ``exc``: it says whether the task may have been added."""
    what = f"task {tasks[0].func_path!r}"
    if len(tasks) > 1:
        what = f"{len(tasks)} tasks (the first: {tasks[0].func_path!r})"
    where = f"queue {queue!r}: {what}"
    fatal = configuration_error(exc, f"{where} was not enqueued (nothing was added)")
    if fatal is not None:
        return fatal
    if isinstance(exc, ReplyTimeoutError):
        why, fix = str(exc), "raise the client's socket_timeout"
        if exc.deadline:
            why = f"no reply within enqueue_timeout ({enqueue_timeout}s)"
            fix = "raise Queue(enqueue_timeout=...)"
        return EnqueueTimeoutError(
            f"{where} may or may not have been enqueued: {why}. Check whether it was before "
            f"enqueueing it again, make the task idempotent, or {fix}"
        )
    if isinstance(exc, ReplyLostError):
        return EnqueueOutcomeUnknownError(
            f"{where} may or may not have been enqueued: the connection was lost after it "
            f"was sent ({exc}). Check whether it was before enqueueing it again, or make "
            "the task idempotent"
        )
    refused = isinstance(exc, (AuthenticationError, AuthorizationError))  # as redis-py's
    if isinstance(exc, (ConnectionError, TimeoutError)) and not refused:  # nothing sent
        return EnqueueError(
            f"{where} was not enqueued: cannot reach Redis ({exc}); nothing was added. "
            "Enqueue it again once Redis answers"
        )
    # Redis 7 replies OOM; 6.2 wraps it in a script error. Either way the script's first
    # write was refused, so nothing was added.
    if not isinstance(exc, OutOfMemoryError) and "OOM command not allowed" not in str(exc):
        return exc
    return EnqueueError(
        f"{where}: Redis refused it for lack of memory ({exc}); nothing was added. Let "
        "workers drain the queue, or raise Redis's maxmemory"
    )
