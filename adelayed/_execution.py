"""Running one delivery of a task: decode it (a v1 payload or an envelope), call its function
(on the loop, in a thread or in a child process, within its timeout, with its context set), and
say how to settle it: None when a release will do, else the Redis call to make (retry through
the scheduled set, dead-letter)."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _envelope as envelope
from ._envelope import NO_OPTIONS, Options
from ._functions import FunctionTable, TaskFunction, is_async
from ._kept_results import KeptResults
from ._log_fields import not_run_fields, task_fields
from ._registry import Counts
from ._retries import Retries
from ._settle import Settle
from ._threads import ThreadRunner, call_task
from .context import enter
from .errors import (
    PayloadError,
    PayloadTooLargeError,
    TaskCallError,
    TaskError,
    TaskTimeoutError,
    UnsupportedTaskError,
)
from .queue import Queue
from .task import GoTask, PyTask, decode_task

if TYPE_CHECKING:
    from ._aborts import Aborts
    from ._stops import Stop
    from .hooks import Hooks

logger = logging.getLogger(__name__)


class Delivery(NamedTuple):
    """A task as fetched: its v1 payload, and what its envelope says (None: a v1 task)."""

    payload: bytes
    id: str | None
    attempt: int
    due_ms: float
    options: Options


def delivery_of(data: bytes, enveloped: bool) -> Delivery:
    """What a fetch returned for a slot: a v1 payload, or (``enveloped``) an envelope. An
    envelope that cannot be read is delivered as the bytes it is: it fails to decode, and is
    dead-lettered."""
    if not enveloped:
        return Delivery(data, None, 1, 0.0, NO_OPTIONS)
    try:
        id_, payload, attempt, due_ms, options = envelope.parts_of(data)
    except PayloadError as exc:  # its id is unknown: "" has BURY_ENVELOPED take the slot's
        logger.error("%s", exc)
        return Delivery(data, "", 1, 0.0, NO_OPTIONS)
    return Delivery(payload, id_, attempt, due_ms, options)


class Executor:
    """Runs deliveries for one worker."""

    def __init__(
        self,
        queue: Queue,
        functions: FunctionTable,
        threads: ThreadRunner,
        retries: Retries,
        hooks: Hooks,
        aborts: Aborts,
        counts: Counts,
    ) -> None:
        self._queue = queue
        self.counts = counts  # what its tasks did (sent with the lease: adelayed info)
        self._functions = functions
        self._threads = threads
        self._retries = retries
        self.queue_name = queue.name
        self.results = KeptResults(queue)
        self.aborts = aborts
        self.state: dict[str, Any] = hooks.state  # the worker's (TaskContext.state)
        self.hooks = hooks if hooks.per_task else None  # None: the hot path checks only that

    @property
    def worker_id(self) -> str:
        return self.results.worker_id

    @worker_id.setter
    def worker_id(self, worker_id: str) -> None:  # set on the worker's loop as it starts
        self.results.bind(worker_id)

    async def run(self, field: str, payload: bytes, delivery: Delivery | None) -> Settle | None:
        """Runs the task once; returns how to settle it (None: a release will do).
        ``delivery``: what its envelope says, None for a v1 payload (the hot path: nothing
        is made for it)."""
        try:
            task = self._decode(payload if delivery is None else delivery.payload)
            func = self._functions.resolve(task.func_path)
        except TaskError as exc:
            return self._bury(field, delivery or delivery_of(payload, False), exc, ran=False)
        except Exception as exc:  # a decoder or import bug must not end the worker
            error = PayloadError(f"unreadable task: {exc!r}")
            return self._bury(field, delivery or delivery_of(payload, False), error, ran=False)
        if delivery is not None and delivery.options is not NO_OPTIONS:
            return await self._run_enveloped(field, delivery, task, func)
        try:
            enter((self, delivery, task, time.monotonic()))  # its logs' duration
            if self.hooks is None:
                await call_task(func, task, self._threads)
            else:
                await self.hooks.run(partial(call_task, func, task, self._threads))
        except TaskCallError as exc:
            return self._bury(field, delivery or delivery_of(payload, False), exc)
        except (Exception, SystemExit) as exc:
            return self._after_failure(field, delivery or delivery_of(payload, False), task, exc)
        self.counts.done += 1
        return None

    async def _run_enveloped(
        self, field: str, delivery: Delivery, task: PyTask, func: TaskFunction
    ) -> Settle | None:
        """An attempt of a task with options: within its timeout, abortable, its result kept
        when asked."""
        enter((self, delivery, task, time.monotonic()))
        options, error, value = delivery.options, None, None
        if options.key_while_queued and options.key:  # its key frees now it was taken
            await self.results.release_key(options.key, delivery.id or "")
        id_, cancellable = delivery.id or "", is_async(func) or options.isolation == "process"
        stop = self.aborts.watch(id_, cancellable)
        try:
            if stop.requested:  # its abort came before it started: it does not run
                pass
            elif self.hooks is None:
                value = await self._call(func, task, options, stop)
            else:
                value = await self.hooks.run(partial(self._call, func, task, options, stop))
        except asyncio.CancelledError:
            if not (stop.requested and stop.cancelled):  # the worker's (a hard stop)
                raise
        except (Exception, SystemExit) as exc:
            error = exc
        finally:
            self.aborts.unwatch(id_, stop)
        if stop.requested:  # its outcome, if any, is discarded
            return self.results.aborted(field, delivery)
        if isinstance(error, TaskCallError):
            return self._bury(field, delivery, error)
        if error is not None:
            return self._after_failure(field, delivery, task, error)
        self.counts.done += 1
        return self.results.done(field, delivery, task, value)

    async def _call(self, func: TaskFunction, task: PyTask, options: Options, stop: Stop) -> Any:
        timeout = options.timeout
        if options.isolation == "process":  # the child times itself out
            from ._isolation import call_in_process

            return await call_in_process(task.func_path, task.args, task.kwargs, timeout)
        threads = self._threads
        if timeout is None:
            return await call_task(func, task, threads)
        timer = stop.expire_after(timeout)
        try:
            return await call_task(func, task, threads)
        except asyncio.CancelledError:
            if not (stop.timed_out and stop.cancelled):
                raise
            stop.settled()
            raise TaskTimeoutError(
                f"queue {self._queue.name!r}: task {task.func_path!r} ran past its timeout "
                f"of {timeout:g}s and was cancelled"
            ) from None
        finally:
            timer.cancel()

    def _after_failure(
        self, field: str, delivery: Delivery, task: PyTask, error: BaseException
    ) -> Settle | None:
        pause = self._retries.after_failure(task, delivery.options, error, delivery.attempt)
        queue, counts = self._queue, self.counts
        counts.failed += 1
        if pause is not None:
            counts.retried += 1
            id_ = delivery.id or envelope.new_id()
            next_attempt = envelope.pack(
                id_, task.retried().serialize(), delivery.attempt + 1, delivery.options
            )
            v1 = delivery.id is None
            return lambda: queue._reschedule(field, id_, next_attempt, pause, v1=v1)
        if delivery.options.keep_result is not None or delivery.options.key:
            dead = delivery.options.dead_letter_on_failure
            return self.results.failed(field, delivery, error, dead)
        if not delivery.options.dead_letter_on_failure:
            return None
        reason = f"{type(error).__name__}: {error} (after {delivery.attempt} attempt(s))"
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return self._bury(field, delivery, None, reason=reason, trace=trace)

    def _decode(self, payload: bytes) -> PyTask:
        limit = self._queue.max_payload_size
        if len(payload) > limit:
            raise PayloadTooLargeError(
                f"payload of {len(payload)} bytes is over the queue's max_payload_size ({limit})"
            )
        task = decode_task(payload)
        if isinstance(task, GoTask):
            raise UnsupportedTaskError(
                f"Go task {task.func_path!r} reached a Python worker; run Go workers on its queue"
            )
        return task

    def _bury(
        self,
        field: str,
        delivery: Delivery,
        error: TaskError | None,
        *,
        reason: str = "",
        trace: str = "",
        ran: bool = True,  # False: refused before it ran (this coroutine's context is stale)
    ) -> Settle:
        queue, worker, id_, payload = self._queue, self.worker_id, delivery.id, delivery.payload
        self.counts.dead += 1
        function = function_path_of(payload)
        if ran:
            fields = task_fields(queue.name, function, delivery.attempt)
        else:
            fields = not_run_fields(queue.name, function, delivery.attempt, id_ or None, worker)
        if error is not None:
            logger.error(
                "queue %r: task sent to the dead-letter list: %s", queue.name, error, extra=fields
            )
            reason = f"{type(error).__name__}: {error}"
        else:
            logger.error(
                "queue %r: failed task sent to the dead-letter list: %s", queue.name, reason,
                extra=fields,
            )  # fmt: skip
        if id_ is None:
            return lambda: queue._bury(field, payload, reason, worker, trace)
        if id_ and (delivery.options.keep_result is not None or delivery.options.key):
            return self.results.buried(field, delivery, reason, trace)
        return lambda: queue._bury_enveloped(field, id_, payload, reason, worker, trace)


def function_path_of(payload: bytes) -> str:
    """The function path of a payload ("(undecodable)" when it cannot be read)."""
    try:
        return decode_task(payload).func_path
    except Exception:
        return "(undecodable)"


def name_of(payload: bytes) -> str:
    """The function path of a payload, quoted, for a log line."""
    name = function_path_of(payload)
    return name if name == "(undecodable)" else repr(name)
