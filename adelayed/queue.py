"""The Queue: enqueue tasks and run the protocol's scripts on one named queue."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import msgpack
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from . import _protocol as protocol
from .errors import ConfigurationError
from .task import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadTask:
    """A task that could not run, as kept in the queue's dead-letter list."""

    payload: bytes
    reason: str
    failed_at: float
    worker: str


class Queue:
    """A named task queue on Redis, compatible with delayed's and go-delayed's.

    ``dequeue_timeout`` is how long a worker blocks waiting for a task before it looks around
    (seconds); ``keep_alive_timeout`` is how long a worker's lease outlives its last refresh,
    so how long a dead worker's tasks wait before a sweep requeues them.
    """

    def __init__(
        self,
        name: str,
        redis: Redis,
        dequeue_timeout: float = 1,
        keep_alive_timeout: float = 60,
        *,
        dead_letter_limit: int = 10_000,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a queue needs a non-empty name, not {name!r}")
        if dequeue_timeout <= 0 or keep_alive_timeout <= 0:
            raise ConfigurationError(
                f"queue {name!r}: dequeue_timeout and keep_alive_timeout must be positive "
                f"seconds, not {dequeue_timeout!r} and {keep_alive_timeout!r}"
            )
        if dead_letter_limit < 1:
            raise ConfigurationError(f"queue {name!r}: dead_letter_limit must be at least 1")
        self._name = name
        self._redis = redis
        self._dequeue_timeout = dequeue_timeout
        self._keep_alive_timeout = keep_alive_timeout
        self._dead_letter_limit = dead_letter_limit
        self._noti_key = name + protocol.NOTI_SUFFIX
        self._processing_key = name + protocol.PROCESSING_SUFFIX
        self._dead_key = name + protocol.DEAD_SUFFIX

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
        """Adds one task: its payload and its token in one script call (one round trip)."""
        await protocol.ENQUEUE(self._redis, (self._name, self._noti_key), (task.serialize(),))

    async def enqueue_many(self, tasks: Iterable[Task]) -> int:
        """Adds many tasks in one round trip; returns how many. Each group of
        MAX_ITEMS_PER_CALL tasks is atomic; a failure part-way leaves whole groups only."""
        payloads = [task.serialize() for task in tasks]
        if not payloads:
            return 0
        step = protocol.MAX_ITEMS_PER_CALL
        groups = [payloads[i : i + step] for i in range(0, len(payloads), step)]
        pending = list(range(len(groups)))
        for _ in range(2):  # the second pass runs only the groups that met an unloaded script
            async with self._redis.pipeline(transaction=False) as pipe:
                for index in pending:
                    pipe.evalsha(
                        protocol.ENQUEUE.sha, 2, self._name, self._noti_key, *groups[index]
                    )
                replies = await pipe.execute(raise_on_error=False)
            failed = [
                i for i, reply in zip(pending, replies, strict=True) if isinstance(reply, Exception)
            ]
            errors = [reply for reply in replies if isinstance(reply, Exception)]
            if not errors:
                return len(payloads)
            if not all(isinstance(error, NoScriptError) for error in errors):
                raise next(e for e in errors if not isinstance(e, NoScriptError))
            await self._redis.script_load(protocol.ENQUEUE.text)
            pending = failed
        raise errors[0]

    async def len(self) -> int:
        """How many tasks wait in the queue (not counting those being run)."""
        return int(await self._redis.llen(self._name))

    async def in_flight(self) -> int:
        """How many tasks workers are running now (entries of the processing hash)."""
        return int(await self._redis.hlen(self._processing_key))

    async def requeue_lost(self) -> int:
        """Puts back the tasks of dead workers and restores missing tokens; returns how many
        tasks were requeued. Run it periodically (a Sweeper does)."""
        requeued, tokens = await protocol.REQUEUE_LOST(
            self._redis, (self._name, self._noti_key, self._processing_key), ()
        )
        if requeued or tokens:
            logger.info(
                "queue %r: requeued %d lost task(s); tokens %+d", self._name, requeued, tokens
            )
        return int(requeued)

    async def dead_tasks(self, limit: int = 100) -> list[DeadTask]:
        """The newest dead letters, newest first."""
        records = cast(list[bytes], await self._redis.lrange(self._dead_key, 0, limit - 1))
        return [_decode_dead(record) for record in records]

    # The worker's side of the protocol; one round trip each.

    async def _fetch(self, fields: Sequence[str], held_token: bool) -> list[tuple[int, bytes]]:
        """Takes up to len(fields) tasks into the given slot fields: (position, payload)."""
        keys = (self._name, self._noti_key, self._processing_key)
        flat = await protocol.FETCH(self._redis, keys, (int(held_token), *fields))
        return [(int(flat[i]) - 1, flat[i + 1]) for i in range(0, len(flat), 2)]

    async def _wait_token(self) -> bool:
        """Blocks up to dequeue_timeout for a token; True when one was taken."""
        return bool(await self._redis.blpop([self._noti_key], self._dequeue_timeout))

    async def _return_token(self) -> None:
        await self._redis.rpush(self._noti_key, protocol.TOKEN)

    async def _release(self, fields: Sequence[str]) -> None:
        await self._redis.hdel(self._processing_key, *fields)

    async def _requeue(self, field: str, payload: bytes, *, at_head: bool) -> None:
        keys = (self._name, self._noti_key, self._processing_key)
        await protocol.REQUEUE(self._redis, keys, (field, payload, "head" if at_head else "tail"))

    async def _bury(self, field: str, payload: bytes, reason: str, worker: str) -> None:
        record = msgpack.packb(
            {"payload": payload, "reason": reason, "failed_at": time.time(), "worker": worker}
        )
        keys = (self._processing_key, self._dead_key)
        await protocol.BURY(self._redis, keys, (field, record, self._dead_letter_limit))


def _decode_dead(record: bytes) -> DeadTask:
    fields = msgpack.unpackb(record)
    return DeadTask(fields["payload"], fields["reason"], fields["failed_at"], fields["worker"])
