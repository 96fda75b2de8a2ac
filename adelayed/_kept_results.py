"""How an executor settles a task enqueued with ``keep_result`` (or a dedup key): one record
of a FINISH_MANY (release, result and key in one step, adelayed._protocol.results; a
BatchedSettle), or a FINISH for a dead letter, instead of the batched release."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any

import msgpack
from redis.exceptions import RedisError

from ._finish_batch import unfinished_record
from ._result_calls import ABORTED_KEPT, keep_ms_of
from ._settle import BatchedSettle, Settle
from ._values import DECODE_ERRORS, explain_value
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._execution import Delivery
    from .queue import Queue
    from .task import PyTask

logger = logging.getLogger(__name__)


# Return values that a reader decodes whenever msgpack packed them (a map or an array may not
# be: a map with an array for a key, say), so their check is skipped.
_READABLE = frozenset({type(None), bool, int, float, str, bytes})

# How long a task's latest progress report is kept after it (refreshed by each report): the
# task's timeout when it is longer; FINISH deletes it when the result is kept.
PROGRESS_KEPT = 3600.0
# How many ids of tasks that reported progress are remembered until they end: a task that
# ended with no FINISH (no result kept, no key) is forgotten when the oldest is dropped; a
# dropped id's progress key is then left to expire (status() reads the result first anyway).
PROGRESSED_KEPT = 10_000


class KeptResults:
    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self.worker_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker's, for threads
        # ids of tasks that reported progress, until they end (an ordered set, bounded)
        self._progressed: dict[str, None] = {}

    def bind(self, worker_id: str) -> None:
        """The worker's id and event loop (called on that loop, as the worker starts)."""
        self.worker_id, self._loop = worker_id, asyncio.get_running_loop()

    async def progress(self, delivery: Delivery | None, fraction: float, message: str) -> None:
        """TaskContext.progress: one PROGRESS call (nothing for a task with no id)."""
        if delivery is None or not delivery.id:
            return
        if not (isinstance(fraction, (int, float)) and 0 <= fraction <= 1):
            raise ConfigurationError(
                f"queue {self._queue.name!r}: progress must be a number from 0 to 1, not "
                f"{fraction!r}"
            )
        keep = max(PROGRESS_KEPT, delivery.options.timeout or 0.0)
        progressed = self._progressed
        if delivery.id not in progressed:
            if len(progressed) >= PROGRESSED_KEPT:
                del progressed[next(iter(progressed))]
            progressed[delivery.id] = None
        await self._queue._progress(delivery.id, fraction, str(message), keep)

    async def release_key(self, key: str, id_: str) -> None:
        """Frees the dedup key of a task held only while it waited (its worker took it); a
        failure is logged, and the key then frees when the task ends."""
        try:
            await self._queue._release_key(key, id_)
        except (RedisError, OSError) as exc:
            logger.warning("queue %r: key %r not freed at start (%s)", self._queue.name, key, exc)

    def progress_from_thread(
        self, delivery: Delivery | None, fraction: float, message: str
    ) -> None:
        loop = self._loop
        assert loop is not None  # a task runs only once its worker started
        future = asyncio.run_coroutine_threadsafe(self.progress(delivery, fraction, message), loop)
        future.result()

    def done(self, field: str, delivery: Delivery, task: PyTask, value: Any) -> Settle | None:
        """Settles a task that returned ``value`` (None: a release will do, nothing is kept);
        one msgpack cannot carry (or a reader could not decode) makes it a failure, with a
        message naming the task and the type."""
        options = delivery.options
        if options.keep_result is None:
            if options.key is None:
                if self._progressed:
                    self._progressed.pop(delivery.id or "", None)
                return None  # released in a batch
            return self._settle(field, delivery, "done", None)  # only its dedup key to free
        try:
            stored = unfinished_record("done", value, delivery.attempt, self.worker_id)
            if type(value) not in _READABLE:
                msgpack.unpackb(msgpack.packb(value))
        except DECODE_ERRORS as exc:
            message = explain_value(task.func_path, value, exc)
            logger.error("queue %r: %s", self._queue.name, message)
            return self._settle(field, delivery, "failed", ("TaskDataError", message, ""))
        return self._batched(field, delivery, stored)

    def failed(self, field: str, delivery: Delivery, error: BaseException, dead: bool) -> Settle:
        """Settles a task out of retries: its error kept (and, ``dead``, its dead letter)."""
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        data = (type(error).__name__, str(error), trace)
        if not dead:
            return self._settle(field, delivery, "failed", data)
        reason = f"{type(error).__name__}: {error} (after {delivery.attempt} attempt(s))"
        return self._settle(field, delivery, "dead", data, (delivery.payload, reason, trace))

    def buried(self, field: str, delivery: Delivery, reason: str, trace: str) -> Settle:
        """Settles a task dead-lettered before it ran (its payload unreadable, its function
        not allowed): kept as dead, with the reason as its error."""
        type_name, _, message = reason.partition(": ")
        data = (type_name, message, trace)
        return self._settle(field, delivery, "dead", data, (delivery.payload, reason, trace))

    def aborted(self, field: str, delivery: Delivery) -> Settle:
        """Settles an attempt stopped by an abort: recorded as aborted, never retried."""
        stored = unfinished_record("aborted", None, delivery.attempt, self.worker_id)
        keep = delivery.options.keep_result or ABORTED_KEPT
        return self._batched(field, delivery, stored, keep, key="")

    def _settle(
        self,
        field: str,
        delivery: Delivery,
        state: str,
        data: Any,
        dead: tuple[bytes, str, str] | None = None,
    ) -> Settle:
        """Settles a task that ended in ``state`` with ``data`` (its value, or its error's
        type, message and traceback), dead-lettered with ``dead`` (payload, reason, trace)."""
        keep = delivery.options.keep_result
        stored = unfinished_record(state, data, delivery.attempt, self.worker_id) if keep else b""
        if dead is None:
            return self._batched(field, delivery, stored)
        self._progress_of(delivery)
        queue, id_, key = self._queue, delivery.id or "", delivery.options.key or ""
        worker = self.worker_id
        return lambda: queue._finish(field, id_, state, stored, worker, keep or 0.0, dead, key)

    def _batched(
        self, field: str, delivery: Delivery, stored: bytes, keep: float | None = None,
        key: str | None = None,
    ) -> Settle:  # fmt: skip
        """A FINISH_MANY record's settle: ``stored``, the unfinished result record (b"": none
        is kept), kept ``keep`` seconds (default: the task's keep_result), freeing ``key``
        (default: the task's dedup key)."""
        options = delivery.options
        keep_ms = keep_ms_of((options.keep_result or 0.0) if keep is None else keep)
        key = (options.key or "") if key is None else key
        record = (field, delivery.id or "", keep_ms, key, stored, self._progress_of(delivery))
        return BatchedSettle(self._queue, record)

    def _progress_of(self, delivery: Delivery) -> int:
        """1 when the ending attempt's task may have a progress key (it reported progress, or
        an earlier attempt may have), else 0: FINISH_MANY deletes only those."""
        progressed = self._progressed
        if progressed and delivery.id in progressed:
            del progressed[delivery.id]
            return 1
        return 1 if delivery.attempt > 1 else 0
