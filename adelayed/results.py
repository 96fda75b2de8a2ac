"""Task handles: what ``Queue.enqueue`` returns, and ``Queue.get(id)`` makes.

A task enqueued with ``keep_result=seconds`` (or on a Queue made with ``keep_result=``) has its
outcome stored when it ends: its return value, or its error. ``await handle.result()``
returns the value, or raises TaskFailed. ``await handle.status()`` says where the task is.
The result expires ``keep_result`` seconds after the task ended, and then the task is unknown.
A task enqueued without it stores nothing when it ends (delayed's promise: finished tasks
take no space), so its handle can say nothing about it, and a plain task (no option at all)
has no id either: it travels as delayed 1.2's bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import msgpack

from . import _envelope as envelope
from ._result_listener import listener_of
from .errors import (
    ConfigurationError,
    ResultTimeoutError,
    TaskAborted,
    TaskFailed,
    TaskNotFoundError,
)

if TYPE_CHECKING:
    from .queue import Queue

State = Literal["queued", "scheduled", "running", "done", "failed", "dead", "aborted", "unknown"]


@dataclass(frozen=True)
class TaskStatus:
    """Where a task is. ``state``: queued (due, waiting for a worker), scheduled (waiting for
    its due time: ``due``), running (``attempt`` on ``worker``), done, failed (out of
    retries), dead (dead-lettered), aborted (``TaskHandle.abort()``), or unknown (never
    enqueued with ``keep_result`` on this queue, or its result expired). Ended tasks have
    ``finished``, the ``attempt`` that ended and its ``worker``, and, when failed or dead,
    ``error``. A running task that reported progress (``current_task().progress(...)``) has
    its latest ``progress`` (0 to 1), ``message`` and ``reported`` (when, by Redis's clock)."""

    state: State
    attempt: int | None = None
    worker: str | None = None
    due: datetime | None = None
    finished: datetime | None = None
    error: TaskFailed | None = None
    progress: float | None = None
    message: str | None = None
    reported: datetime | None = None


class TaskHandle:
    """A task's handle: ``id`` (None for a plain task), ``result()``, ``status()``,
    ``abort()``. ``duplicate``: the enqueue found its ``key`` held, and this is the holder's
    handle (nothing was enqueued)."""

    __slots__ = ("_queue", "duplicate", "func_path", "id")

    def __init__(
        self, queue: Queue, id_: str | None, func_path: str = "", duplicate: bool = False
    ) -> None:
        self._queue = queue
        self.id = id_
        self.func_path = func_path
        self.duplicate = duplicate

    def __repr__(self) -> str:
        return f"TaskHandle({self._queue.name!r}, {self.id!r})"

    async def status(self) -> TaskStatus:
        return status_of(await self._queue._status(self._known_id()))

    async def abort(self) -> str:
        """Aborts the task. A scheduled or queued one is removed with its token at once; a
        running one is stopped by its worker within milliseconds (an ``async def`` task is
        cancelled, a process-isolated one's child killed; a plain function in a thread
        cannot be stopped: it runs on, and its outcome is discarded). Its status then reads
        aborted, and ``result()`` raises TaskAborted. Returns what it found: "aborted"
        (removed), "running" (its worker was told), "ended" or "unknown" (nothing to do)."""
        return await self._queue._abort(self._known_id())

    async def result(self, timeout: float | None = None) -> Any:
        """The task's return value once it ended; waits up to ``timeout`` seconds (None: as
        long as it takes). Raises TaskFailed when it failed or was dead-lettered,
        ResultTimeoutError when the time passed first (it may still be queued or running),
        and TaskNotFoundError when the queue knows no such task (or its result expired)."""
        id_, queue = self._known_id(), self._queue
        loop_deadline = math.inf if timeout is None else queue._loop_time() + timeout
        ended = await listener_of(queue.redis).wait(
            queue._results_channel, id_, self._ended, self._published, loop_deadline
        )
        if ended is None:
            raise ResultTimeoutError(
                f"queue {queue.name!r}: task {id_} has no result after {timeout:g}s; it may "
                "still be queued or running (see status()): wait longer, or check its workers"
            )
        if ended.state == "done":
            return ended.value
        if ended.state == "aborted":
            raise TaskAborted(f"queue {queue.name!r}: task {id_} was aborted")
        assert ended.error is not None
        raise ended.error

    async def _ended(self) -> _Ended | None:
        reply = await self._queue._status(self._known_id())
        if reply[0] == b"unknown":
            raise TaskNotFoundError(
                f"queue {self._queue.name!r} knows no task {self.id}: it was not enqueued "
                "there with keep_result, or it ended more than keep_result seconds ago"
            )
        if reply[0] != b"result":
            return None
        return _ended_of(reply[1], self.id or "")

    def _published(self, record: bytes) -> _Ended:
        """What a results message said of this task: its result record."""
        return _ended_of(record, self.id or "")

    def _known_id(self) -> str:
        if self.id is None:
            raise ConfigurationError(
                f"queue {self._queue.name!r}: task {self.func_path!r} was enqueued with no "
                "option, so it has no id and keeps no result: enqueue it with "
                "keep_result=seconds (or make the Queue with keep_result=...)"
            )
        return self.id


@dataclass(frozen=True)
class _Ended:
    state: str
    value: Any
    error: TaskFailed | None


class _Record(NamedTuple):
    """A result record (adelayed._protocol.results), as read."""

    state: str
    data: Any  # the return value, or the error's [type name, message, traceback]
    attempt: int
    worker: str
    finished: float  # ms, Redis's clock


def _record_of(stored: bytes) -> _Record:
    return _Record(*msgpack.unpackb(stored))


def _ended_of(stored: bytes, id_: str) -> _Ended:
    record = _record_of(stored)
    state = record.state
    if state == "done":
        return _Ended(state, record.data, None)
    if state == "aborted":
        return _Ended(state, None, None)
    return _Ended(state, None, _error_of(record, id_))


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _error_of(record: _Record, id_: str) -> TaskFailed:
    type_name, message, trace = record.data
    return TaskFailed(type_name, message, trace, task_id=id_, dead=record.state == "dead")


def _when(ms: bytes | float) -> datetime:
    return datetime.fromtimestamp(float(ms) / 1000, timezone.utc)


def status_of(reply: list[Any]) -> TaskStatus:
    """A STATUS reply (adelayed._protocol.results) as a TaskStatus."""
    where = reply[0].decode()
    if where == "unknown":
        return TaskStatus("unknown")
    if where == "result":
        record = _record_of(reply[1])
        state = record.state
        error = None if state in ("done", "aborted") else _error_of(record, "")
        return TaskStatus(
            state, record.attempt, record.worker,  # type: ignore[arg-type]
            finished=_when(record.finished), error=error,
        )  # fmt: skip
    attempt = envelope.unpack(reply[1]).attempt
    if where == "scheduled":
        return TaskStatus("scheduled", attempt, due=_when(reply[2]))
    if where == "running":
        worker = reply[2].decode().rsplit(":", 1)[0]
        if not reply[3]:
            return TaskStatus("running", attempt, worker)
        report = _fields(reply[3])
        return TaskStatus(
            "running", attempt, worker, progress=float(report[b"fraction"]),
            message=report[b"message"].decode(), reported=_when(report[b"at"]),
        )  # fmt: skip
    return TaskStatus("queued", attempt)
