"""The Queue's side of enveloped tasks: enqueueing with options (a delay, an eta, a retry
policy, a timeout, an isolation), and the worker's calls that promote, retry, bury and requeue
them (scripts in adelayed._protocol.scheduled)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from . import _envelope as envelope
from ._envelope import Options
from ._protocol import scheduled as protocol
from ._protocol.dedup import KEYS_SUFFIX
from .errors import ConfigurationError
from .retry import Backoff, seconds_of
from .task import GoTask, Task

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._dedup import KeySpec
    from ._wire import Wire
    from .errors import QueueFullError
    from .results import TaskHandle

# Tasks per SCHEDULE call (each is 3 arguments): bounds the time one call holds Redis.
_SCHEDULE_BATCH = 1000
ISOLATIONS = (None, "thread", "process")


def options_of(
    queue: str,
    func_path: str,
    *,
    delay: float | timedelta | None,
    eta: datetime | None,
    timeout: float | timedelta | None,
    backoff: Backoff | None,
    retry_on: tuple[type[BaseException], ...],
    dead_letter_on_failure: bool,
    isolation: str | None,
    keep_result: float | timedelta | None = None,
    trace: tuple[tuple[str, str], ...] = (),
) -> tuple[Options, str]:
    """The checked options of an enqueue, and its due spec for the SCHEDULE script."""
    where = f"queue {queue!r}: task {func_path!r}"
    if timeout is not None:
        timeout = seconds_of(timeout, f"{where}: timeout")
        if timeout == 0:
            raise ConfigurationError(f"{where}: timeout must be positive (None: no timeout)")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise ConfigurationError(
            f"{where}: backoff must be Backoff.fixed(...) or Backoff.exponential(...), "
            f"not {backoff!r}"
        )
    if isolation not in ISOLATIONS:
        raise ConfigurationError(
            f"{where}: isolation must be 'thread' (the default for plain functions) or "
            f"'process', not {isolation!r}"
        )
    options = Options(
        timeout=timeout,
        backoff=backoff,
        retry_on=envelope.retry_on_names(_errors(where, retry_on)),
        dead_letter_on_failure=bool(dead_letter_on_failure),
        isolation=None if isolation == "thread" else isolation,
        keep_result=_kept(where, keep_result),
        trace=trace,
    )
    return options, _due(where, delay, eta)


def _kept(where: str, keep_result: float | timedelta | None) -> float | None:
    if keep_result is None:
        return None
    seconds = seconds_of(keep_result, f"{where}: keep_result")
    if seconds == 0:
        raise ConfigurationError(f"{where}: keep_result must be positive (None: not kept)")
    return seconds


def refuse_go_task(queue: str, task: Task) -> None:
    if isinstance(task, GoTask):
        raise ConfigurationError(
            f"queue {queue!r}: Go task {task.func_path!r} cannot take delay, eta, timeout, "
            "backoff, retry_on, dead_letter_on_failure or isolation: go-delayed's workers read "
            "none of them; enqueue it without options"
        )


def _due(where: str, delay: float | timedelta | None, eta: datetime | None) -> str:
    """The SCHEDULE script's due spec: ms from now, or '@' and an absolute time in ms."""
    if delay is not None and eta is not None:
        raise ConfigurationError(f"{where}: pass delay= or eta=, not both")
    if delay is not None:
        return f"{seconds_of(delay, f'{where}: delay') * 1000:.3f}"
    if eta is None:
        return "0"
    if not isinstance(eta, datetime) or eta.tzinfo is None:
        raise ConfigurationError(
            f"{where}: eta must be an aware datetime (e.g. datetime.now(timezone.utc) + "
            f"timedelta(minutes=5)), not {eta!r}: a naive one has no time zone"
        )
    return f"@{eta.timestamp() * 1000:.3f}"


def _errors(where: str, retry_on: Any) -> tuple[type[BaseException], ...]:
    errors = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not all(isinstance(cls, type) and issubclass(cls, BaseException) for cls in errors):
        raise ConfigurationError(f"{where}: retry_on must be exception classes, not {retry_on!r}")
    return errors


class Scheduling:
    """Mixed into Queue: the keys and calls of enveloped tasks."""

    if TYPE_CHECKING:  # Queue's
        _redis: Redis
        _name: str
        _results_channel: str
        _noti_key: str
        _processing_key: str
        _dead_key: str
        _max_length: int
        _dead_letter_limit: int

        def _wire(self) -> Wire: ...
        def _payload_of(self, task: Task) -> bytes: ...
        async def _enqueue_keyed(
            self, task: Task, payload: bytes, id_: str, options: Options, due: str,
            spec: KeySpec,
        ) -> tuple[str, str]: ...  # fmt: skip
        def _deadline(self) -> float | None: ...
        def _full_error(self, admitted: int) -> QueueFullError: ...
        def _enqueue_error(self, exc: RedisError, tasks: Sequence[Task]) -> Exception: ...

    def _init_scheduling(self) -> None:
        name = self._name
        self._jobs_key = name + protocol.JOBS_SUFFIX
        self._scheduled_key = name + protocol.SCHEDULED_SUFFIX
        self._ready_key = name + protocol.READY_SUFFIX
        self._active_key = name + protocol.ACTIVE_SUFFIX
        self._wake_key = name + protocol.WAKE_SUFFIX
        self._dedup_key = name + KEYS_SUFFIX
        self._enqueue_keys: tuple[str, ...] = (name, self._noti_key)  # ENQUEUE's
        if self._max_length:  # due and scheduled tasks count as waiting too
            self._enqueue_keys += (self._ready_key, self._scheduled_key)

    async def scheduled(self) -> int:
        """How many tasks wait for their due time (delayed ones, and retries after a backoff)."""
        return int(await self._wire().call("ZCARD", self._scheduled_key))

    async def _enqueue_one(
        self, task: Task, dedup: tuple[str | None, str | float | timedelta, bool], **given: Any
    ) -> TaskHandle:
        """Queue.enqueue's path for a task with an option (``given``, as it takes them, and
        its ``dedup`` key, lifetime and debounce): checked, then enveloped and scheduled."""
        from ._dedup import key_spec
        from ._result_listener import expect
        from .results import TaskHandle

        spec = key_spec(f"queue {self._name!r}: task {task.func_path!r}", *dedup)
        id_, payload = envelope.new_id(), self._payload_of(task)
        if spec is None:
            if given.get("keep_result") is not None:  # its result() may skip a read
                expect(self._redis, self._results_channel, id_)
            await self._enqueue_with_options([task], [payload], [id_], **given)
            return TaskHandle(self, id_, task.func_path)  # type: ignore[arg-type]
        refuse_go_task(self._name, task)
        options, due = options_of(self._name, task.func_path, **given)
        holder, outcome = await self._enqueue_keyed(task, payload, id_, options, due, spec)
        return TaskHandle(self, holder, task.func_path, outcome == "duplicate")  # type: ignore[arg-type]

    async def _enqueue_with_options(
        self, tasks: Sequence[Task], payloads: Sequence[bytes], ids: Sequence[str], **given: Any
    ) -> int:
        """Queue.enqueue's and enqueue_many's path for tasks with an option (``given``, as
        they take them): checked, then enveloped under ``ids`` and scheduled."""
        for task in tasks:
            refuse_go_task(self._name, task)
        options, due = options_of(self._name, tasks[0].func_path, **given)
        try:
            return await self._enqueue_enveloped(payloads, ids, options, due)
        except RedisError as exc:
            raise self._enqueue_error(exc, tasks) from exc

    async def _enqueue_enveloped(
        self, payloads: Sequence[bytes], ids: Sequence[str], options: Options, due: str
    ) -> int:
        """Stores each task's envelope and schedules it (or makes it ready); returns how many.
        Groups of _SCHEDULE_BATCH tasks, pipelined in one round trip; the first is admitted
        against the queue's max_length for the whole call."""
        groups: list[list[Any]] = []
        for start in range(0, len(payloads), _SCHEDULE_BATCH):
            args: list[Any] = [0]
            for id_, payload in zip(
                ids[start : start + _SCHEDULE_BATCH],
                payloads[start : start + _SCHEDULE_BATCH],
                strict=True,
            ):
                args += (id_, envelope.pack(id_, payload, 1, options), due)
            groups.append(args)
        if self._max_length:
            if len(payloads) > self._max_length:
                raise self._full_error(len(payloads))
            groups[0][0] = self._max_length - (len(payloads) - (len(groups[0]) - 1) // 3)
        keys = (
            self._name, self._noti_key, self._jobs_key, self._scheduled_key, self._ready_key,
            self._wake_key,
        )  # fmt: skip
        replies = await protocol.SCHEDULE.pipelined(self._wire(), keys, groups, self._deadline())
        if -1 in replies:
            raise self._full_error(len(payloads))
        return sum(replies)

    async def _promote(self, wire: Wire) -> tuple[int, float | None, float]:
        """Moves up to PROMOTE_BATCH due tasks into ready; returns (moved, the next due time
        or None, Redis's time), times in ms on Redis's clock."""
        keys = (self._scheduled_key, self._ready_key, self._noti_key)
        moved, nearest, now = await protocol.PROMOTE(wire, keys, (protocol.PROMOTE_BATCH,))
        next_due = float(nearest)
        return int(moved), None if next_due < 0 else next_due, float(now)

    async def _reschedule(
        self, field: str, id_: str, next_envelope: bytes, delay: float, *, v1: bool
    ) -> None:
        keys = (
            self._noti_key, self._jobs_key, self._scheduled_key, self._ready_key,
            self._processing_key, self._active_key, self._wake_key,
        )  # fmt: skip
        args = (
            field,
            id_,
            next_envelope,
            f"{delay * 1000:.3f}",
            "v1" if v1 else "enveloped",
        )
        await protocol.RESCHEDULE(self._wire(), keys, args)

    async def _bury_enveloped(
        self, field: str, id_: str, payload: bytes, reason: str, worker: str, trace: str
    ) -> None:
        keys = (self._active_key, self._jobs_key, self._dead_key)
        args = (field, id_, self._dead_letter_limit, payload, reason, worker, trace)
        await protocol.BURY_ENVELOPED(self._wire(), keys, args)

    async def _requeue_enveloped(self, field: str, id_: str) -> None:
        keys = (self._noti_key, self._ready_key, self._active_key)
        await protocol.REQUEUE_ENVELOPED(self._wire(), keys, (field, id_))
