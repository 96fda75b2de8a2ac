"""The Worker: fetch tasks, run them with bounded concurrency, settle each one.

Shape of ``run()``: the lease is refreshed from its own thread; one task group holds the
services (loop watchdog, releaser, signal watcher, embedded sweeper); an inner group holds one
runner per concurrency slot. The fetch loop hands tasks to free slots, and each fetch's script
call also releases the slots whose tasks finished: one round trip per cycle, not per task.
Whatever moves a task in Redis (release, retry, dead-letter, requeue at stop) runs shielded
from cancellation, so a shutdown never strands a task half-moved. Several queues: their fetch
cycle is adelayed._priority_fetch's; execution is adelayed._execution's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TypeVar

import anyio
from redis.exceptions import RedisError

from . import _protocol as protocol
from ._aborts import Aborts
from ._backoff import backoff
from ._execution import Delivery, Executor, delivery_of, name_of
from ._fatal import configuration_error, sole_fatal
from ._functions import FunctionTable, TaskFunction
from ._lease import Lease
from ._preflight import check_worker_start
from ._priority_fetch import PriorityFetch
from ._promoter import Promoter
from ._registry import Registry
from ._releaser import Releaser
from ._retries import Retries
from ._schedule_runner import Schedule, ScheduleRunner
from ._settle import SETTLE_TIMEOUT_AT_EXIT, BatchedSettle, Settler
from ._signals import listening
from ._slots import Slots
from ._threads import ThreadRunner
from ._watchdog import LoopWatchdog
from ._wire import Wire
from ._worker_settings import caps_of, check_settings, queues_of
from .hooks import FailureHook, Hooks, TaskHook, WorkerHook
from .queue import Queue
from .sweeper import Sweeper

logger = logging.getLogger(__name__)

_REDIS_ERRORS = (RedisError, OSError)
# Tasks taken per fetch at most: bounded by what one script call may unpack.
_MAX_BATCH = 500
# From this many slots a busy single-queue worker fetches in thirds of its slots, each fetch
# sent before the tasks just taken start, so Redis serves one third's fetch while the event
# loop runs another third's tasks (the last third waits for its release to come back: a fetch
# never fills a slot it releases). Below it a third is too few tasks to cover a round trip:
# the worker fetches for every free slot, and lets the tasks start first.
_THIRDS_FROM = 16
T = TypeVar("T")


class Worker:
    """Runs the tasks of ``queue`` (or of a list of queues, in strict priority order, each at
    most ``queue_concurrency[name]`` at once): ``async def`` functions on the event loop, plain
    functions in daemon threads, never more than ``concurrency`` at once.

    Only functions the worker was told about run (``tasks=``, or decorated with ``delayed``);
    ``allow_any_function=True`` restores delayed's import-anything behaviour. On SIGTERM,
    SIGINT or SIGHUP (every worker of the process gets each signal) it takes no new tasks and
    gives running ones ``grace_period`` seconds; a second signal, or the end of the grace
    period, cancels them and puts them back on the queue (a sync task's thread is abandoned:
    see ``hard_stop_signal`` and adelayed._threads). ``sweep_interval`` runs a Sweeper for the
    queue inside the worker (None: no sweeper). While the event loop lags by more than
    ``max_loop_lag`` seconds, no new task is taken. At start it refuses an evicting
    ``maxmemory-policy`` (``allow_eviction=True`` accepts the risk) and settings no retry can
    fix (RedisConfigurationError: a wrong password, database or ACL).

    A failed task with retries left is retried after its ``backoff``, else after a random
    time between ``base`` and ``min(cap, base * 2**n)`` seconds, ``retry_backoff=(base,
    cap)`` (1, 300). ``schedules``: its periodic tasks (Cron, Every), enqueued into its first
    queue. Hooks (``on_startup`` ... ``on_failure``) and ``state``: adelayed.hooks.
    """

    def __init__(
        self,
        queue: Queue | Sequence[Queue],
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
        schedules: Iterable[Schedule] = (),
        queue_concurrency: Mapping[str, int] | None = None,
        on_startup: WorkerHook | Sequence[WorkerHook] | None = None,
        on_shutdown: WorkerHook | Sequence[WorkerHook] | None = None,
        before_task: TaskHook | Sequence[TaskHook] | None = None,
        after_task: TaskHook | Sequence[TaskHook] | None = None,
        on_failure: FailureHook | Sequence[FailureHook] | None = None,
    ) -> None:
        self._queues = queues = queues_of(queue)
        self._queue = queue = queues[0]  # the lease's, the schedules', the logs'
        check_settings(queue, concurrency, keep_alive_interval)
        caps = caps_of(queues, concurrency, queue_concurrency)
        self._concurrency = concurrency
        self._functions = FunctionTable(tasks, allow_any=allow_any_function)
        self._grace_period = grace_period
        self._sweep_interval = sweep_interval
        self._allow_eviction = allow_eviction
        self._handle_signals = handle_signals
        self._max_loop_lag = max_loop_lag
        self._schedules = ScheduleRunner(queue, schedules)  # checked now, run in _serve
        self._lease = Lease(queue, concurrency, keep_alive_interval)
        self._hooks = Hooks(on_startup, on_shutdown, before_task, after_task, on_failure)
        self.state = self._hooks.state  # for its hooks and tasks (TaskContext.state)
        self._init_state(caps if len(queues) > 1 or queue_concurrency else None, retry_backoff)

    def _init_state(self, caps: list[int] | None, retry_backoff: tuple[float, float]) -> None:
        queues, name = self._queues, self._queue.name
        self._settler = Settler(self._lease, name)
        self._slots = Slots(self._concurrency)
        self._thirds = self._concurrency >= _THIRDS_FROM
        third = -(-self._concurrency // 3)
        self._batch = min(_MAX_BATCH, third) if self._thirds else _MAX_BATCH  # tasks per fetch
        self._threads = ThreadRunner(f"queue {name!r}")
        self._names = ", ".join(repr(q.name) for q in queues)
        self._aborts = aborts = Aborts(queues)  # TaskHandle.abort() of running tasks
        self._registry = Registry(queues, self._concurrency)  # what `adelayed info` shows
        self._executors = [
            Executor(q, self._functions, self._threads, Retries(retry_backoff, q.name),
                     self._hooks, aborts, counts)
            for q, counts in zip(queues, self._registry.counts, strict=True)
        ]  # fmt: skip
        self._releaser = Releaser(self._slots, self._settler, self._lease, queues)
        self._priority = None  # serves several queues: their fetches (one queue: none)
        if caps is not None:
            self._priority = PriorityFetch(
                self._queues, self._slots, caps, self._parked, self._releaser.fields_of
            )
            self._releaser.by_queue = self._priority.by_queue
        self._stopping = False
        self._hard_stop_signal: signal.Signals | None = None
        self._running_scope: anyio.CancelScope | None = None
        self._fetch_scope: anyio.CancelScope | None = None
        self._wire = Wire(self._queue.redis, f"worker of queue {self._queue.name!r}")  # fetches'
        self._hand = ""  # the key the fetch loop's BLMOVE puts a token in (set once running)
        self._hands = [""]  # each queue's hand, in priority order (set once running)
        self._watchdog = LoopWatchdog("", self._max_loop_lag)

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
        if now:
            self._settler.closing()
            for scope in (self._fetch_scope, self._running_scope):
                if scope is not None:
                    scope.cancel()

    async def run(self) -> None:
        """Runs until ``stop()`` or a signal; Redis errors are logged and outlived."""
        await check_worker_start(self._queues, allow_eviction=self._allow_eviction)
        who = "worker of queue" + ("s " if len(self._queues) > 1 else " ") + self._names
        await self._hooks.start(who)
        try:
            await self._run()
        finally:
            await self._hooks.stop(who, self._grace_period)

    async def _run(self) -> None:
        await self._lease.claim()
        self._lease.start(self._queues, self._slots.busy, self._registry)
        self._hands = [protocol.hand_key(self.id, index) for index in range(len(self._queues))]
        self._hand, self._releaser.hands = self._hands[0], self._hands
        for executor in self._executors:
            executor.worker_id = self.id
        if self._priority is not None:
            self._priority.bind(self._lease.fields, self._hands)
        self._watchdog = LoopWatchdog(self.id, self._max_loop_lag)
        # From here on, a stop signal (shared with every worker on this loop) stops it cleanly.
        with listening(self._handle_signals, self._on_signal):
            logger.info(
                "worker %s started on queue%s %s, concurrency %d", self.id,
                "s" if len(self._queues) > 1 else "", self._names, self._concurrency,
            )  # fmt: skip
            self._functions.warn_if_empty(f"worker {self.id}")
            try:
                await self._serve()
            except Exception as exc:  # a refusal no retry can fix, met by any of its tasks
                fatal = sole_fatal(exc)
                if fatal is None:
                    raise
                raise fatal from exc

    async def _serve(self) -> None:
        try:
            async with anyio.create_task_group() as services:
                services.start_soon(self._watchdog.run)
                services.start_soon(self._releaser.run)
                services.start_soon(self._aborts.listen)
                for queue in self._queues:
                    services.start_soon(Promoter(queue, self.id).run)
                if self._schedules.schedules:
                    services.start_soon(self._schedules.run)
                if self._sweep_interval is not None:
                    services.start_soon(Sweeper(self._queues, self._sweep_interval)._sweep_loop)
                await self._work()
                services.cancel_scope.cancel()
        finally:
            self._threads.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_TIMEOUT_AT_EXIT):
                try:
                    await self._wire.aclose()
                    if self._priority is not None:
                        await self._priority.aclose()
                    for queue, hand in zip(self._queues, self._hands, strict=True):
                        await queue._return_tokens(hand)
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
                    async with anyio.create_task_group() as waiters:  # of PriorityFetch
                        if self._priority is not None:
                            self._priority.group = waiters
                        await self._fetch_loop()
                        waiters.cancel_scope.cancel()
                finally:
                    self._slots.fetching_ended()
            self._releaser.parked = True  # from now on the releaser sends every release
            with anyio.move_on_after(self._grace_period):
                await self._slots.wait_all_free()
            self._settler.closing()
            running.cancel_scope.cancel()
        await self._releaser.release(self._slots.take_finished())  # a hard stop leaves some

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
        if self._priority is not None:  # several queues
            finished = [] if block else self._slots.take_finished()
            try:
                block, released = await self._priority.fetch(block, finished)
            except BaseException:
                self._slots.unreleased(finished)
                raise
            self._slots.released(released)
            return block
        free = self._slots.free()[: self._batch]
        waiting = block and bool(free)
        if waiting:  # one slot: a loop stalled meanwhile holds back one task, not a batch
            free = free[:1]
        fields = self._lease.fields
        offered = [fields[slot] for slot in free]
        failed = None
        if waiting:
            fetch = self._queue._fetch(self._wire, self._hand, offered, wait=True)
            taken = await self._parked(fetch)
        else:
            taken, failed = await self._releaser.fetch_releasing(self._wire, offered)
        for position, payload in taken:  # an envelope's position is -(position + 1)
            enveloped = position < 0
            self._slots.hand(free[-position - 1 if enveloped else position], payload, enveloped)
        if failed is not None:  # its tasks run; the loop backs off, then finishes the rest
            raise failed
        if taken and (waiting or not self._thirds):  # see _THIRDS_FROM
            await asyncio.sleep(0)  # the runners start their tasks before the next fetch
        return bool(free) and not taken

    async def _parked(self, waiting: Awaitable[T]) -> T:
        """Awaits ``waiting`` with the fetch loop marked idle, so the releaser acts at once."""
        self._releaser.parked = True
        try:
            return await waiting
        finally:
            self._releaser.parked = False

    async def _run_slot(self, slot: int) -> None:
        """The runner of one slot: runs each task handed to it, one after the other."""
        try:
            while True:
                await self._run_task(slot, await self._slots.next_task(slot))
        except anyio.get_cancelled_exc_class():
            payload = self._slots.unclaimed(slot)  # handed over, never started: put it back
            if payload is not None:
                delivery = delivery_of(payload, self._slots.enveloped[slot])
                await self._requeue_at_shutdown(slot, delivery, "not started at shutdown")
            raise

    async def _requeue_at_shutdown(self, slot: int, delivery: Delivery, why: str) -> None:
        field, id_, payload = self._lease.fields[slot], delivery.id, delivery.payload
        logger.warning("worker %s: task %s %s; requeued", self.id, name_of(payload), why)
        queue = self._queues[self._queue_of(slot)]
        with anyio.CancelScope(shield=True):
            await self._slots.wait_fetching_ended()
            if id_ is None:
                await self._settler.settle(lambda: queue._requeue(field, payload, at_head=True))
            else:
                await self._settler.settle(lambda: queue._requeue_enveloped(field, id_))

    def _queue_of(self, slot: int) -> int:
        priority = self._priority
        return 0 if priority is None else priority.slot_queue[slot]

    async def _run_task(self, slot: int, payload: bytes) -> None:
        """Runs a task to its end and settles it: a release (batched) when done, a retry
        through the scheduled set, or a dead letter."""
        field, delivery, ids = self._lease.fields[slot], None, self._slots.ids  # None: v1
        if self._slots.enveloped[slot]:
            delivery = delivery_of(payload, True)
        if ids[slot] is not None or delivery is not None:
            ids[slot] = None if delivery is None else delivery.id
        try:
            outcome = await self._executors[self._queue_of(slot)].run(field, payload, delivery)
        except anyio.get_cancelled_exc_class():
            delivery = delivery or delivery_of(payload, False)
            await self._requeue_at_shutdown(slot, delivery, "cancelled by a hard stop")
            raise
        if outcome is None:  # done: released in a batch by the next fetch or the releaser
            self._slots.finish(slot)
            return
        if type(outcome) is BatchedSettle:
            if self._priority is None:  # its FINISH_MANY rides on the next fetch, likewise
                self._slots.finish(slot, outcome.record)
                return
            await self._settler.settle(outcome)
        else:
            with anyio.CancelScope(shield=True):
                await self._settler.settle(outcome)
        self._slots.give(slot)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            logger.warning("worker %s: %s again, requeueing running tasks", self.id, sig.name)
            self._hard_stop_signal = self._hard_stop_signal or sig
            self.stop(now=True)
            return
        logger.info("worker %s: %s, finishing running tasks (again: stop now)", self.id, sig.name)
        self.stop()
