"""The Worker: fetch tasks, run them with bounded concurrency, settle each one.

Shape of ``run()``: the lease is refreshed from its own thread; one task group holds the
services (loop watchdog, releaser, signal watcher, embedded sweeper); an inner group holds one
runner per concurrency slot. The fetch loop hands tasks to free slots, and each fetch's script
call also releases the slots whose tasks finished: one round trip per cycle, not per task.
Whatever moves a task in Redis (release, dead-letter, requeue at stop) runs shielded from
cancellation, so a shutdown never strands a task half-moved; a retry stays in its slot.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import anyio
from redis.exceptions import RedisError

from . import _protocol as protocol
from ._backoff import backoff
from ._fatal import configuration_error, sole_fatal
from ._functions import FunctionTable, TaskFunction
from ._lease import Lease
from ._preflight import check_worker_start
from ._retries import Retries, Retry
from ._settle import SETTLE_TIMEOUT_AT_EXIT, Settle, Settler
from ._signals import stop_signals
from ._slots import Slots
from ._threads import ThreadRunner, call_task
from ._watchdog import LoopWatchdog
from ._wire import Wire
from .errors import (
    ConfigurationError,
    PayloadError,
    PayloadTooLargeError,
    TaskCallError,
    TaskError,
    UnsupportedTaskError,
)
from .queue import Queue
from .sweeper import Sweeper
from .task import GoTask, PyTask, decode_task

logger = logging.getLogger(__name__)

_REDIS_ERRORS = (RedisError, OSError)
# Tasks taken per fetch at most: bounded by what one script call may unpack.
_MAX_BATCH = 500
# How long a finished task's release may wait for a busy fetch loop to carry it (seconds).
_RELEASE_DELAY = 0.005
T = TypeVar("T")


class Worker:
    """Runs the tasks of ``queue``: ``async def`` functions on the event loop, plain functions
    in daemon threads, never more than ``concurrency`` at once.

    Only functions the worker was told about run (``tasks=``, or decorated with ``delayed``);
    ``allow_any_function=True`` restores delayed's import-anything behaviour. On SIGTERM,
    SIGINT or SIGHUP (every worker of the process gets each signal) it takes no new tasks and
    gives running ones ``grace_period`` seconds; a second signal, or the end of the grace
    period, cancels them and puts them back on the queue (a sync task's thread is abandoned:
    see ``hard_stop_signal`` and adelayed._threads). ``sweep_interval`` runs a Sweeper for the
    queue inside the worker (None: no sweeper). While the event loop lags by more than
    ``max_loop_lag`` seconds, no new task is taken. At start it refuses a Redis whose
    ``maxmemory-policy`` can evict keys (its liveness keys would be evicted and its running
    tasks run twice; ``allow_eviction=True`` accepts the risk) and ends at once on settings no
    retry can fix (RedisConfigurationError: a wrong password, database or ACL).

    A failed task with retries left is retried in the same slot after a pause: the n-th retry
    waits a random time between ``base`` and ``min(cap, base * 2**n)`` seconds, with
    ``retry_backoff=(base, cap)``, by default (1, 300). The task stays in its slot across its
    attempts, so its attempt count is exact; a stop during a pause requeues it at once, with
    the retries it has left (a worker that dies leaves it as fetched: a sweep requeues it with
    its first retry count). A storm of retries is logged once, then summed up every minute.
    """

    def __init__(
        self,
        queue: Queue,
        concurrency: int = 10,
        keep_alive_interval: float = 15,
        *,
        tasks: Iterable[TaskFunction | str] = (),
        allow_any_function: bool = False,
        allow_eviction: bool = False,
        grace_period: float = 30,
        sweep_interval: float | None = 60,
        handle_signals: bool = True,
        max_loop_lag: float = 1.0,
        retry_backoff: tuple[float, float] = (1.0, 300.0),
    ) -> None:
        _check_settings(queue, concurrency, keep_alive_interval)
        self._queue = queue
        self._concurrency = concurrency
        self._functions = FunctionTable(tasks, allow_any=allow_any_function)
        self._grace_period = grace_period
        self._sweep_interval = sweep_interval
        self._allow_eviction = allow_eviction
        self._handle_signals = handle_signals
        self._max_loop_lag = max_loop_lag
        self._watchdog = LoopWatchdog("", max_loop_lag)
        self._lease = Lease(queue, concurrency, keep_alive_interval)
        self._settler = Settler(self._lease, queue.name)
        self._slots = Slots(concurrency)
        self._threads = ThreadRunner(f"queue {queue.name!r}")
        self._retries = Retries(retry_backoff, queue.name)
        self._stopping = False
        self._hard_stop_signal: signal.Signals | None = None
        self._running_scope: anyio.CancelScope | None = None
        self._fetch_parked = False
        self._fetch_scope: anyio.CancelScope | None = None
        self._wire = Wire(queue.redis, f"worker of queue {queue.name!r}")  # the fetch loop's
        self._hand = ""  # the key the fetch loop's BLMOVE puts a token in (set once running)

    @property
    def id(self) -> str:
        """The worker's liveness key, e.g. ``adelayed:worker:4f1c...`` (set once running)."""
        return self._lease.worker_id

    @property
    def hard_stop_signal(self) -> signal.Signals | None:
        """The signal that forced a hard stop (a second one), or None."""
        return self._hard_stop_signal

    def stop(self, *, now: bool = False) -> None:
        """Takes no new tasks; running ones finish within the grace period (``now``: cancel
        and requeue them at once). Call it from the worker's event loop."""
        self._stopping = True
        self._slots.close()
        self._retries.close()
        if now:
            self._settler.closing()
            for scope in (self._fetch_scope, self._running_scope):
                if scope is not None:
                    scope.cancel()

    async def run(self) -> None:
        """Runs until ``stop()`` or a signal; Redis errors are logged and outlived."""
        await check_worker_start(self._queue, allow_eviction=self._allow_eviction)
        await self._lease.claim()
        self._lease.start()
        self._hand = protocol.hand_key(self.id)
        self._watchdog = LoopWatchdog(self.id, self._max_loop_lag)
        with self._listening():  # from here on, a stop signal stops this worker cleanly
            logger.info(
                "worker %s started on queue %r, concurrency %d",
                self.id, self._queue.name, self._concurrency,
            )  # fmt: skip
            self._functions.warn_if_empty(f"worker {self.id}")
            try:
                await self._serve()
            except Exception as exc:  # a refusal no retry can fix, met by any of its tasks
                fatal = sole_fatal(exc)
                if fatal is None:
                    raise
                raise fatal from exc

    def _listening(self) -> AbstractContextManager[None]:
        """Stop signals for this worker, shared with every worker on this loop (only the main
        thread receives signals)."""
        if self._handle_signals and threading.current_thread() is threading.main_thread():
            return stop_signals(self._on_signal)
        return nullcontext()

    async def _serve(self) -> None:
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(self._watchdog.run)
                services.start_soon(self._release_finished)
                if self._sweep_interval is not None:
                    services.start_soon(Sweeper([self._queue], self._sweep_interval)._sweep_loop)
                await self._work()
                services.cancel_scope.cancel()
        finally:
            self._threads.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_TIMEOUT_AT_EXIT):
                try:
                    await self._wire.aclose()
                    await self._queue._return_tokens(self._hand)
                    await self._lease.stop()
                except _REDIS_ERRORS as exc:
                    logger.warning("worker %s: lease not deleted (%s); it expires", self.id, exc)
            logger.info("worker %s stopped", self.id)

    async def _work(self) -> None:
        async with anyio.create_task_group() as running:
            self._running_scope = running.cancel_scope
            for slot in range(self._concurrency):
                running.start_soon(self._run_slot, slot)
            with anyio.CancelScope() as self._fetch_scope:
                try:
                    await self._fetch_loop()
                finally:
                    self._slots.fetching_ended()
            self._fetch_parked = True  # from now on the releaser sends every release
            with anyio.move_on_after(self._grace_period):
                await self._slots.wait_all_free()
            self._settler.closing()
            running.cancel_scope.cancel()
        await self._release_slots(self._slots.take_finished())  # a hard stop leaves some

    async def _fetch_loop(self) -> None:
        block = False
        failures = 0
        while await self._slots.wait_free():
            if self._watchdog.stalled():
                await self._parked(anyio.sleep(self._watchdog.period))
                continue
            try:
                block = await self._fetch(block)
            except _REDIS_ERRORS as exc:
                fatal = configuration_error(exc, f"worker {self.id}")
                if fatal is not None:  # e.g. its ACL changed: ends run(), tasks go back
                    raise fatal from exc
                failures += 1
                delay = backoff(failures)
                logger.warning(
                    "worker %s: fetch failed (%s); retrying in %.1fs", self.id, exc, delay
                )
                await self._parked(anyio.sleep(delay))
                # The lost call may have filled slots: the next fetch, without blocking,
                # finds and returns them (a fetch is safe to run twice).
                block = False
                continue
            failures = 0

    async def _fetch(self, block: bool) -> bool:
        """One cycle: releases finished slots and takes up to one task per free slot, in one
        script call, and hands the tasks to their slots' runners. With ``block`` (the last
        cycle found nothing), the call first waits for a token and takes one task; finished
        slots are then left to the releaser, which acts at once meanwhile. Returns whether the
        next cycle should block: it offered slots and got no task."""
        free = self._slots.free()[:_MAX_BATCH]
        waiting = block and bool(free)
        if waiting:  # one slot: a loop stalled meanwhile holds back one task, not a batch
            free = free[:1]
        fields = self._lease.fields
        offered = [fields[slot] for slot in free]
        if waiting:
            fetch = self._queue._fetch(self._wire, self._hand, offered, wait=True)
            taken = await self._parked(fetch)
        else:
            finished = self._slots.take_finished()
            try:
                taken = await self._queue._fetch(
                    self._wire, self._hand, offered, [fields[slot] for slot in finished]
                )
            except BaseException:
                self._slots.unreleased(finished)
                raise
            self._slots.released(finished)
        for position, payload in taken:
            self._slots.hand(free[position], payload)
        if taken:  # the runners start their tasks before the next fetch goes out
            await asyncio.sleep(0)
        return bool(free) and not taken

    async def _parked(self, waiting: Awaitable[T]) -> T:
        """Awaits ``waiting`` with the fetch loop marked idle, so the releaser acts at once."""
        self._fetch_parked = True
        try:
            return await waiting
        finally:
            self._fetch_parked = False

    async def _release_finished(self) -> None:
        """Sends the releases a busy fetch loop did not carry within _RELEASE_DELAY, and all
        of them at once while it is idle (waiting for a token, backing off, or stopped)."""
        while True:
            await self._slots.wait_finished()
            if not self._fetch_parked:
                await anyio.sleep(_RELEASE_DELAY)
            await self._release_slots(self._slots.take_finished())

    async def _release_slots(self, slots: list[int]) -> None:
        if not slots:
            return
        fields = [self._lease.fields[slot] for slot in slots]
        with anyio.CancelScope(shield=True):
            await self._settler.settle(lambda: self._queue._release(fields))
        self._slots.released(slots)

    async def _run_slot(self, slot: int) -> None:
        """The runner of one slot: runs each task handed to it, one after the other."""
        try:
            while True:
                await self._run_task(slot, await self._slots.next_task(slot))
        except anyio.get_cancelled_exc_class():
            payload = self._slots.unclaimed(slot)  # handed over, never started: put it back
            if payload is not None:
                await self._requeue_at_shutdown(slot, payload, "not started at shutdown")
            raise

    async def _requeue_at_shutdown(self, slot: int, payload: bytes, why: str) -> None:
        field = self._lease.fields[slot]
        logger.warning("worker %s: task %s %s; requeued", self.id, _name_of(payload), why)
        with anyio.CancelScope(shield=True):
            await self._slots.wait_fetching_ended()
            await self._settler.settle(lambda: self._queue._requeue(field, payload, at_head=True))

    async def _run_task(self, slot: int, payload: bytes) -> None:
        """Runs a task to its end. A failure with retries left is retried in this slot after
        a backoff pause, with one retry used up (the payload a requeue would carry)."""
        field = self._lease.fields[slot]
        attempt = 1
        try:
            while isinstance(outcome := await self._execute(field, payload, attempt), Retry):
                payload = outcome.payload
                if not await self._retries.pause(outcome.pause):
                    break
                attempt += 1
        except anyio.get_cancelled_exc_class():
            await self._requeue_at_shutdown(slot, payload, "cancelled by a hard stop")
            raise
        if isinstance(outcome, Retry):  # the worker stopped during the pause
            await self._requeue_at_shutdown(slot, payload, "was waiting to be retried at stop")
        elif outcome is None:  # done: released in a batch by the next fetch or the releaser
            self._slots.finish(slot)
            return
        else:
            with anyio.CancelScope(shield=True):
                await self._settler.settle(outcome)
        self._slots.give(slot)

    async def _execute(self, field: str, payload: bytes, attempt: int) -> Settle | Retry | None:
        """Runs the task once; returns how to settle it (None: a release will do), or its
        next attempt."""
        try:
            task = self._decode(payload)
            func = self._functions.resolve(task.func_path)
        except TaskError as exc:
            return self._bury(field, payload, exc)
        except Exception as exc:  # a decoder or import bug must not end the worker
            return self._bury(field, payload, PayloadError(f"unreadable task: {exc!r}"))
        try:
            await call_task(func, task, self._threads)
        except TaskCallError as exc:
            return self._bury(field, payload, exc)
        except (Exception, SystemExit) as exc:
            return self._retries.after_failure(task, exc, attempt)
        return None

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

    def _bury(self, field: str, payload: bytes, error: TaskError) -> Settle:
        queue = self._queue
        logger.error("queue %r: task sent to the dead-letter list: %s", queue.name, error)
        reason = f"{type(error).__name__}: {error}"
        return lambda: queue._bury(field, payload, reason, self.id)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            logger.warning("worker %s: %s again, requeueing running tasks", self.id, sig.name)
            self._hard_stop_signal = self._hard_stop_signal or sig
            self.stop(now=True)
            return
        logger.info("worker %s: %s, finishing running tasks (again: stop now)", self.id, sig.name)
        self.stop()


def _check_settings(queue: Queue, concurrency: int, keep_alive_interval: float) -> None:
    if concurrency < 1:
        raise ConfigurationError(f"worker of queue {queue.name!r}: concurrency must be >= 1")
    if not 0 < keep_alive_interval < queue.keep_alive_timeout:
        raise ConfigurationError(
            f"worker of queue {queue.name!r}: keep_alive_interval ({keep_alive_interval}s) "
            f"must be positive and below the queue's keep_alive_timeout "
            f"({queue.keep_alive_timeout}s), or the lease lapses between refreshes"
        )


def _name_of(payload: bytes) -> str:
    """The function path of a payload, for a log line."""
    try:
        return repr(decode_task(payload).func_path)
    except Exception:
        return "(undecodable)"
