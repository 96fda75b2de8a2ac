"""The Queue: enqueue tasks and run the protocol's scripts on one named queue."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, OutOfMemoryError, RedisError, ResponseError

from . import _protocol as protocol
from ._wire import Wire, shared_wire
from .errors import (
    ConfigurationError,
    EnqueueError,
    PayloadTooLargeError,
    QueueFullError,
)
from .task import Task

logger = logging.getLogger(__name__)

_DELIVERIES_MEMORY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class DeadTask:
    """A task that could not run, as kept in the queue's dead-letter list."""

    payload: bytes
    reason: str
    failed_at: float
    worker: str


class Queue:
    """A named task queue on Redis, compatible with delayed's and go-delayed's.

    ``dequeue_timeout``: how long a worker blocks waiting for a task before it looks around.
    ``keep_alive_timeout``: how long a worker's lease outlives its last refresh, so how long a
    dead worker's tasks wait before a sweep requeues them (seconds).
    ``max_length``: enqueue refuses (QueueFullError) past this many waiting tasks (None: no
    limit). ``max_payload_size``: largest serialized task, in bytes, on enqueue and on dequeue.
    ``max_deliveries``: a task whose worker died this many times is dead-lettered, not requeued
    (None: requeue forever, as delayed does). ``dead_letter_limit``: the dead-letter list's cap.
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
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a queue needs a non-empty name, not {name!r}")
        for setting, value in (
            ("dequeue_timeout", dequeue_timeout),
            ("keep_alive_timeout", keep_alive_timeout),
            ("max_length", max_length or 1),
            ("max_payload_size", max_payload_size),
            ("max_deliveries", max_deliveries or 1),
            ("dead_letter_limit", dead_letter_limit),
        ):
            if value <= 0:
                raise ConfigurationError(f"queue {name!r}: {setting} must be positive, not {value}")
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

    def __repr__(self) -> str:
        return f"Queue({self._name!r})"

    async def enqueue(self, task: Task) -> None:
        """Adds one task: its payload and its token in one script call (one round trip).
        Raises QueueFullError, PayloadTooLargeError or EnqueueError; then nothing was added."""
        payload = self._payload_of(task)
        keys = (self._name, self._noti_key)
        try:
            pushed = await protocol.ENQUEUE(
                shared_wire(self._redis), keys, (self._max_length, 1, payload)
            )
        except ResponseError as exc:
            raise self._enqueue_error(exc) from exc
        if pushed == -1:
            raise self._full_error(1)

    async def enqueue_many(self, tasks: Iterable[Task]) -> int:
        """Adds many tasks in one round trip; returns how many. Up to MAX_ITEMS_PER_CALL
        (10,000) tasks go in one atomic script call: all of them or, on an error, none."""
        payloads = [self._payload_of(task) for task in tasks]
        if not payloads:
            return 0
        step = protocol.MAX_ITEMS_PER_CALL
        groups = [payloads[i : i + step] for i in range(0, len(payloads), step)]
        if self._max_length and len(groups) > 1:
            # The first group is admitted against the whole call; the rest follow it only then.
            await self._push(groups.pop(0), admitted=len(payloads))
            await self._push(*groups, admitted=0)
        else:
            await self._push(*groups, admitted=len(payloads))
        return len(payloads)

    async def len(self) -> int:
        """How many tasks wait in the queue (not counting those being run)."""
        return int(await self._redis.llen(self._name))

    async def in_flight(self) -> int:
        """How many tasks workers are running now (entries of the processing hash)."""
        return int(await self._redis.hlen(self._processing_key))

    async def requeue_lost(self) -> int:
        """Puts back the tasks of dead workers (dead-lettering those whose workers died
        max_deliveries times) and restores missing tokens; returns how many tasks were
        requeued. Run it periodically: a Sweeper does."""
        keys = (
            self._name,
            self._noti_key,
            self._processing_key,
            self._deliveries_key,
            self._dead_key,
        )
        args = (self._max_deliveries, time.time(), self._dead_letter_limit, _DELIVERIES_MEMORY_MS)
        requeued, buried, tokens = await protocol.REQUEUE_LOST(self._redis, keys, args)
        if buried:
            logger.error(
                "queue %r: %d task(s) dead-lettered: their workers died on each of %d deliveries",
                self._name, buried, self._max_deliveries,
            )  # fmt: skip
        if requeued or tokens:
            logger.info(
                "queue %r: requeued %d lost task(s); tokens %+d", self._name, requeued, tokens
            )
        return int(requeued)

    # The dead-letter list.

    async def dead_tasks(self, limit: int = 100) -> list[DeadTask]:
        """The newest dead letters, newest first."""
        records = await self._redis.lrange(self._dead_key, 0, limit - 1)
        return [_decode_dead(record) for record in cast(list[bytes], records)]

    async def requeue_dead(self, count: int | None = None) -> int:
        """Moves up to ``count`` dead letters (all when None), oldest first, back onto the
        queue; returns how many. Fix what killed them first."""
        if count is None:
            count = int(await self._redis.llen(self._dead_key))
        keys = (self._name, self._noti_key, self._dead_key)
        return int(await protocol.REQUEUE_DEAD(self._redis, keys, (count,)))

    async def purge_dead(self) -> int:
        """Deletes every dead letter; returns how many there were."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.llen(self._dead_key)
            pipe.delete(self._dead_key)
            count, _ = await pipe.execute()
        return int(count)

    # Internals.

    def _payload_of(self, task: Task) -> bytes:
        payload = task.serialize()
        if len(payload) > self.max_payload_size:
            raise PayloadTooLargeError(
                f"task {task.func_path!r} for queue {self._name!r} is {len(payload)} bytes, over "
                f"max_payload_size ({self.max_payload_size}); pass a reference to the data (a "
                "key, an id, a URL) instead of the data, or raise Queue(max_payload_size=...)"
            )
        return payload

    async def _push(self, *groups: list[bytes], admitted: int) -> None:
        """One round trip: each group of payloads in one ENQUEUE call, pipelined."""
        args = [(self._max_length, admitted, *group) for group in groups]
        try:
            replies = await self._run_pipelined(
                protocol.ENQUEUE, (self._name, self._noti_key), args
            )
        except ResponseError as exc:
            raise self._enqueue_error(exc) from exc
        if -1 in replies:
            raise self._full_error(admitted)

    def _enqueue_error(self, exc: ResponseError) -> Exception:
        # Redis 7 replies OOM; 6.2 wraps it in a script error. Either way the script's first
        # write was refused, so nothing was added.
        if not isinstance(exc, OutOfMemoryError) and "OOM command not allowed" not in str(exc):
            return exc
        return EnqueueError(
            f"queue {self._name!r}: Redis refused the task(s) for lack of memory ({exc}); "
            "nothing was added. Let workers drain the queue, or raise Redis's maxmemory"
        )

    def _full_error(self, admitted: int) -> QueueFullError:
        return QueueFullError(
            f"queue {self._name!r} is full: adding {admitted} task(s) would pass its "
            f"max_length of {self._max_length}; nothing was added. Retry later, add workers, "
            "or raise Queue(max_length=...)"
        )

    async def _run_pipelined(
        self, script: protocol.Script, keys: Sequence[str], calls: Sequence[Sequence[Any]]
    ) -> list[Any]:
        """Runs ``script`` once per ``calls`` entry, all sent before the first reply is read;
        raises the first error once every reply is in."""
        wire = shared_wire(self._redis)
        if len(calls) == 1:
            return [await script(wire, keys, calls[0])]
        sent = [await wire.send("EVALSHA", script.sha, len(keys), *keys, *args) for args in calls]
        replies: list[Any] = []
        for waiter in sent:
            try:
                replies.append(await wire.reply_to(waiter))
            except RedisError as exc:
                replies.append(exc)
        unloaded = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unloaded:  # those calls did not run: load the script and send them again
            await wire.call("SCRIPT", "LOAD", script.text)
            again = await self._run_pipelined(script, keys, [calls[i] for i in unloaded])
            for i, reply in zip(unloaded, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    # The worker's side of the protocol; one round trip each.

    async def _fetch(
        self,
        wire: Wire,
        hand: str,
        fields: Sequence[str],
        release: Sequence[str] = (),
        *,
        wait: bool = False,
    ) -> list[tuple[int, bytes]]:
        """Releases the ``release`` fields, then takes up to len(fields) tasks into the given
        slot fields; returns (index in fields, payload) pairs. With ``wait``, first waits
        up to dequeue_timeout for a token (a BLMOVE into ``hand``, sent with the fetch)."""
        keys = (self._name, self._noti_key, self._processing_key, hand)
        timeout = self._dequeue_timeout
        try:
            if wait:
                move = ("BLMOVE", self._noti_key, hand, "LEFT", "RIGHT", timeout)
                await wire.send(*move, blocking_for=timeout)
            flat = await protocol.FETCH(wire, keys, (int(wait), len(release), *release, *fields))
        except asyncio.CancelledError:
            if wait:  # Redis drops a pending BLMOVE, and the fetch behind it, with the connection
                wire.close()
            raise
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def _return_tokens(self, hand: str) -> None:
        """Puts back on noti any token a failed fetch left in a worker's ``hand``."""
        while await self._redis.lmove(hand, self._noti_key):
            pass

    async def _release(self, fields: Sequence[str]) -> None:
        await self._redis.hdel(self._processing_key, *fields)

    async def _requeue(self, field: str, payload: bytes, *, at_head: bool) -> None:
        keys = (self._name, self._noti_key, self._processing_key)
        await protocol.REQUEUE(self._redis, keys, (field, payload, "head" if at_head else "tail"))

    async def _bury(self, field: str, payload: bytes, reason: str, worker: str) -> None:
        # use_bin_type=False: Redis's Lua cmsgpack (REQUEUE_DEAD) reads no bin type.
        fields = {"payload": payload, "reason": reason, "failed_at": time.time(), "worker": worker}
        record = msgpack.packb(fields, use_bin_type=False)
        keys = (self._processing_key, self._dead_key)
        await protocol.BURY(self._redis, keys, (field, record, self._dead_letter_limit))


def _decode_dead(record: bytes) -> DeadTask:
    # raw=True: records carry the payload as a msgpack str (Lua's cmsgpack has no bin type).
    fields = msgpack.unpackb(record, raw=True)

    def text(name: bytes) -> str:
        return bytes(fields.get(name, b"")).decode("utf-8", "replace")

    return DeadTask(
        bytes(fields[b"payload"]), text(b"reason"), float(fields[b"failed_at"]), text(b"worker")
    )
