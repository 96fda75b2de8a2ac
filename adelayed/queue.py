"""The Queue: enqueue tasks and run the protocol's scripts on one named queue.

Everything a Queue sends goes out on the wire its client shares on the running event loop
(``_wire.shared_wire``), never on a connection of redis-py's pool: a pooled connection belongs to
the loop that opened it, and a client must work from whichever loop uses it next (a module-level
client under pytest-asyncio, or a loop per thread). The worker's fetches have a wire of their
own.

An enqueue is bounded by ``enqueue_timeout`` and says, when it fails, whether the task may have
been added: ``EnqueueTimeoutError`` or ``EnqueueOutcomeUnknownError`` once it was sent (it may or
may not be in the queue), ``EnqueueError`` when nothing was.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import _protocol as protocol
from . import _trace_hook
from ._dead_letters import DeadLetters, DeadTask
from ._dedup import Dedup
from ._durable import Durable, durable_context, durable_setting, run_durable
from ._enqueue_errors import enqueue_error
from ._envelope import new_id
from ._queue_info import QueueInfoCalls
from ._result_calls import ResultCalls
from ._scheduling import Scheduling
from ._sweep import Sweeping
from ._wire import Wire, shared_wire
from ._worker_calls import WorkerCalls
from .errors import (
    ConfigurationError,
    PayloadTooLargeError,
    QueueFullError,
)
from .results import TaskHandle
from .retry import Backoff
from .schedules import ScheduledRun, next_runs
from .task import Task

__all__ = ["DeadTask", "Queue"]

logger = logging.getLogger(__name__)


class Queue(DeadLetters, Scheduling, Sweeping, Dedup, ResultCalls, WorkerCalls, QueueInfoCalls):
    """A named task queue on Redis, compatible with delayed's and go-delayed's.

    ``dequeue_timeout``: how long a worker blocks waiting for a task before it looks around.
    ``keep_alive_timeout``: how long a worker's lease outlives its last refresh, so how long a
    dead worker's tasks wait before a sweep requeues them (seconds).
    ``max_length``: enqueue refuses (QueueFullError) past this many waiting tasks (None: no
    limit). ``max_payload_size``: largest serialized task, in bytes, on enqueue and on dequeue.
    ``max_deliveries``: a task whose worker died this many times is dead-lettered, not requeued
    (None: requeue forever, as delayed does). ``dead_letter_limit``: the dead-letter list's cap.
    Its dead-letter list: ``dead_tasks()``, ``requeue_dead()``, ``purge_dead()``.
    ``enqueue_timeout``: the most an ``enqueue`` or ``enqueue_many`` waits, connecting included
    (seconds; None: no deadline but the client's ``socket_timeout``). When it passes after the
    task was sent, EnqueueTimeoutError: the task may or may not have been enqueued; before
    (still connecting), EnqueueError: nothing was added. ``durable``: enqueues wait for
    replicas by default (True, or a Durable; adelayed._durable).
    """

    def __init__(
        self,
        name: str,
        redis: Redis,
        dequeue_timeout: float = 1,
        keep_alive_timeout: float = 60,
        *,
        max_length: int | None = None,
        max_payload_size: int = 1 << 20,
        max_deliveries: int | None = 5,
        dead_letter_limit: int = 10_000,
        enqueue_timeout: float | None = 5,
        keep_result: float | timedelta | None = None,
        durable: bool | Durable = False,
    ) -> None:
        _check_settings(
            name, dequeue_timeout=dequeue_timeout, keep_alive_timeout=keep_alive_timeout,
            max_length=max_length or 1, max_payload_size=max_payload_size,
            max_deliveries=max_deliveries or 1, dead_letter_limit=dead_letter_limit,
        )  # fmt: skip
        if enqueue_timeout is not None:  # None: no deadline
            _check_settings(name, enqueue_timeout=enqueue_timeout)
        _check_client(name, redis)
        self._name = name
        self._redis = redis
        self._dequeue_timeout = dequeue_timeout
        self._keep_alive_timeout = keep_alive_timeout
        self._max_length = max_length or 0
        self.max_payload_size = max_payload_size
        self._max_deliveries = max_deliveries or 0
        self._dead_letter_limit = dead_letter_limit
        self._noti_key = name + protocol.NOTI_SUFFIX
        self._processing_key = name + protocol.PROCESSING_SUFFIX
        self._dead_key = name + protocol.DEAD_SUFFIX
        self._deliveries_key = name + protocol.DELIVERIES_SUFFIX
        self._enqueue_timeout = enqueue_timeout
        self._loop_wire: tuple[asyncio.AbstractEventLoop | None, Wire | None] = (None, None)
        self._init_scheduling()
        self._init_results(keep_result)
        self._durable = durable_setting(durable, None)

    @property
    def name(self) -> str:
        return self._name

    @property
    def redis(self) -> Redis:
        return self._redis

    @property
    def dequeue_timeout(self) -> float:
        return self._dequeue_timeout

    @property
    def keep_alive_timeout(self) -> float:
        return self._keep_alive_timeout

    @property
    def enqueue_timeout(self) -> float | None:
        return self._enqueue_timeout

    def __repr__(self) -> str:
        return f"Queue({self._name!r})"

    async def enqueue(
        self,
        task: Task,
        *,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        timeout: float | timedelta | None = None,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        dead_letter_on_failure: bool = False,
        isolation: str | None = None,
        keep_result: float | timedelta | None = None,
        key: str | None = None,
        key_lifetime: str | float | timedelta = "running",
        debounce: bool = False,
        durable: bool | Durable | None = None,
    ) -> TaskHandle:
        """Adds one task in one round trip; returns its handle (adelayed.results). A task with
        no option stays delayed 1.2's bytes (its handle has no id). Options, each in the README:
        ``delay`` or ``eta`` (by Redis's clock), ``timeout``, ``backoff``, ``retry_on``,
        ``dead_letter_on_failure``, ``isolation``, ``keep_result``, ``key``, ``key_lifetime``
        and ``debounce`` (adelayed._dedup), only adelayed's workers run such tasks; ``durable``
        (adelayed._durable). Raises EnqueueTimeoutError or EnqueueOutcomeUnknownError when no
        reply came (it may or may not have been added); QueueFullError, TaskDataError,
        PayloadTooLargeError, ConfigurationError or EnqueueError when nothing was added."""
        keep_result = self._keep_result if keep_result is None else keep_result
        plain = (
            key is None and delay is None and eta is None and timeout is None and backoff is None
            and not retry_on and not dead_letter_on_failure and isolation is None
            and keep_result is None and not debounce and key_lifetime == "running"
        )  # fmt: skip
        if plain and _trace_hook.producer is None and durable is None and self._durable is None:
            await self._enqueue_v1(task)
            return TaskHandle(self, None, task.func_path)
        given: dict[str, Any] = dict(
            delay=delay, eta=eta, timeout=timeout, backoff=backoff, retry_on=retry_on,
            dead_letter_on_failure=dead_letter_on_failure, isolation=isolation,
            keep_result=keep_result, key=key, key_lifetime=key_lifetime, debounce=debounce,
        )  # fmt: skip
        return await self._enqueue_durable(task, plain, durable, given)

    async def _enqueue_durable(
        self, task: Task, plain: bool, durable: bool | Durable | None, given: dict[str, Any]
    ) -> TaskHandle:
        """The rest of ``enqueue``: a plain task as delayed's bytes, any other through
        ``_enqueue_traced``; with ``durable`` (or the Queue's), waiting for replicas."""
        enqueue: Callable[[], Awaitable[TaskHandle | None]]
        if plain and _trace_hook.producer is None:  # adelayed.tracing.instrument() sets it
            enqueue = functools.partial(self._enqueue_v1, task)
        else:
            dedup = (given.pop("key"), given.pop("key_lifetime"), given.pop("debounce"))
            enqueue = functools.partial(self._enqueue_traced, task, dedup, given)
        setting = durable_setting(durable, self._durable)
        if setting is None:
            handle = await enqueue()
        else:
            handle = await run_durable(self._redis, setting, enqueue, (self._name, [task]))
        return handle or TaskHandle(self, None, task.func_path)

    async def _enqueue_traced(
        self, task: Task, dedup: tuple[Any, ...], given: dict[str, Any]
    ) -> TaskHandle:
        """The option path of ``enqueue``, in a span of adelayed.tracing when instrumented."""
        producer = _trace_hook.producer
        if producer is None:
            return await self._enqueue_one(task, dedup, **given)
        with producer.span(self._name, task) as trace:  # its context travels in the envelope
            return await self._enqueue_one(task, dedup, trace=trace, **given)

    async def _enqueue_v1(self, task: Task) -> None:
        payload = self._payload_of(task)
        keys = self._enqueue_keys
        wire = self._wire()
        try:
            pushed = await protocol.ENQUEUE(
                wire, keys, (self._max_length, 1, payload), self._deadline()
            )
        except RedisError as exc:
            raise self._enqueue_error(exc, (task,)) from exc
        if pushed == -1:
            raise self._full_error(1)

    async def enqueue_many(
        self,
        tasks: Iterable[Task],
        *,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        timeout: float | timedelta | None = None,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        dead_letter_on_failure: bool = False,
        isolation: str | None = None,
        keep_result: float | timedelta | None = None,
        durable: bool | Durable | None = None,
    ) -> int:
        """Adds many tasks in one round trip; returns how many. Up to MAX_ITEMS_PER_CALL
        (10,000) tasks go in one atomic script call: all of them or, on an error, none (with
        options: up to 1,000 per call). The options, as ``enqueue``'s, apply to every task.
        Raises as ``enqueue`` does; ``enqueue_timeout`` bounds the whole call."""
        given: dict[str, Any] = dict(
            delay=delay, eta=eta, timeout=timeout, backoff=backoff, retry_on=retry_on,
            dead_letter_on_failure=dead_letter_on_failure, isolation=isolation,
            keep_result=self._keep_result if keep_result is None else keep_result,
        )  # fmt: skip
        tasks = list(tasks)
        setting = durable_setting(durable, self._durable)
        if setting is None:
            return await self._enqueue_many(tasks, given)
        enqueue = functools.partial(self._enqueue_many, tasks, given)
        return await run_durable(self._redis, setting, enqueue, (self._name, tasks))

    async def _enqueue_many(self, tasks: list[Task], given: dict[str, Any]) -> int:
        payloads = [self._payload_of(task) for task in tasks]
        if not payloads:
            return 0
        if any(
            value is not None and value is not False and value != () for value in given.values()
        ):
            ids = [new_id() for _ in payloads]
            return await self._enqueue_with_options(tasks, payloads, ids, **given)
        return await self._enqueue_many_v1(tasks, payloads)

    async def _enqueue_many_v1(self, tasks: list[Task], payloads: list[bytes]) -> int:
        step = protocol.MAX_ITEMS_PER_CALL
        groups = [payloads[i : i + step] for i in range(0, len(payloads), step)]
        deadline = self._deadline()
        try:
            if self._max_length and len(groups) > 1:
                # The first group is admitted against the whole call; the rest follow it then.
                await self._push(groups.pop(0), admitted=len(payloads), deadline=deadline)
                await self._push(*groups, admitted=None, deadline=deadline)
            else:
                await self._push(*groups, admitted=len(payloads), deadline=deadline)
        except RedisError as exc:
            raise self._enqueue_error(exc, tasks) from exc
        return len(payloads)

    async def len(self) -> int:
        """How many tasks wait in the queue (not counting those being run, nor those
        scheduled for later: see ``scheduled()``)."""
        wire = self._wire()
        waiting = await wire.send("LLEN", self._name)
        due = await wire.send("LLEN", self._ready_key)
        return int(await wire.reply_to(waiting)) + int(await wire.reply_to(due))

    async def in_flight(self) -> int:
        """How many tasks workers are running now (entries of the processing hash)."""
        wire = self._wire()
        v1 = await wire.send("HLEN", self._processing_key)
        enveloped = await wire.send("HLEN", self._active_key)
        return int(await wire.reply_to(v1)) + int(await wire.reply_to(enveloped))

    async def schedules(self) -> list[ScheduledRun]:
        """Each periodic task's (name, next run, description), soonest first (see Cron, Every)."""
        return await next_runs(self)

    # Internals.

    def _wire(self) -> Wire:
        """The client's wire on the running loop (remembered for the loop that used it last),
        or, inside a durable enqueue, the durable wire it runs on."""
        if (durable := durable_context.get()) is not None:
            return durable[0]
        loop = asyncio.get_running_loop()
        used_on, wire = self._loop_wire
        if used_on is not loop or wire is None:
            wire = shared_wire(self._redis)
            self._loop_wire = (loop, wire)
        return wire

    def _deadline(self) -> float | None:
        timeout = self._enqueue_timeout
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    def _payload_of(self, task: Task) -> bytes:
        payload = task.serialize()
        if len(payload) > self.max_payload_size:
            raise PayloadTooLargeError(
                f"task {task.func_path!r} for queue {self._name!r} is {len(payload)} bytes, over "
                f"max_payload_size ({self.max_payload_size}); pass a reference to the data (a "
                "key, an id, a URL) instead of the data, or raise Queue(max_payload_size=...)"
            )
        return payload

    async def _push(
        self, *groups: list[bytes], admitted: int | None, deadline: float | None
    ) -> None:
        """One round trip: each group of payloads in one ENQUEUE call, pipelined. ``admitted``:
        how many tasks max_length is checked against; None: already admitted, not checked."""
        limit = 0 if admitted is None else self._max_length
        args = [(limit, admitted or 0, *group) for group in groups]
        keys = self._enqueue_keys
        replies = await protocol.ENQUEUE.pipelined(self._wire(), keys, args, deadline)
        if -1 in replies:
            raise self._full_error(admitted or 0)

    def _enqueue_error(self, exc: RedisError, tasks: Sequence[Task]) -> Exception:
        return enqueue_error(self._name, self._enqueue_timeout, exc, tasks)

    def _full_error(self, admitted: int) -> QueueFullError:
        return QueueFullError(
            f"queue {self._name!r} is full: adding {admitted} task(s) would pass its "
            f"max_length of {self._max_length}; nothing was added. Retry later, add workers, "
            "or raise Queue(max_length=...)"
        )


def _is_given(option: object) -> bool:
    """Whether an option of ``enqueue_many`` differs from its default (None, False or ())."""
    return not (option is None or option is False or option == ())


def _check_client(name: str, client: object) -> None:
    """Refuses, saying what to pass instead, a client adelayed cannot drive."""
    if isinstance(client, Redis):
        return
    kind = f"{type(client).__module__}.{type(client).__qualname__}"
    if "cluster" in kind.lower():
        raise ConfigurationError(
            f"queue {name!r}: Redis Cluster ({kind}) is not supported yet; give the Queue a "
            "redis.asyncio.Redis of one server, or of a primary under Sentinel "
            "(Sentinel(...).master_for(...), docs/redis.md); docs/scaling.md says how to "
            "spread queues over several servers"
        )
    hint = " (the blocking client): adelayed is asyncio-native" if kind.startswith("redis.") else ""
    raise ConfigurationError(
        f"queue {name!r} needs a redis.asyncio.Redis client, not {kind}{hint}; make one with "
        "redis.asyncio.Redis.from_url(url)"
    )


def _check_settings(name: str, **settings: float) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a queue needs a non-empty name, not {name!r}")
    for setting, value in settings.items():
        if not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ConfigurationError(f"queue {name!r}: {setting} must be positive, not {value!r}")
