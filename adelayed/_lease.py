"""A worker's lease: its unique id and one liveness key per concurrency slot, kept alive.

Each slot key doubles as the slot's field in ``NAME_processing``. A sweeper (ours, delayed's or
go-delayed's) requeues a task only when its field's key is gone, so every task a live worker is
running stays put, however many run at once.
"""

from __future__ import annotations

import logging
import secrets

import anyio
from redis.exceptions import RedisError

from . import _protocol as protocol
from ._backoff import backoff
from .queue import Queue

logger = logging.getLogger(__name__)


class Lease:
    def __init__(self, queue: Queue, slots: int, keep_alive_interval: float) -> None:
        self._queue = queue
        self._slots = slots
        self._interval = keep_alive_interval
        self._ttl_ms = max(1, int(queue.keep_alive_timeout * 1000))
        self.worker_id = ""
        self.fields: list[str] = []

    async def claim(self) -> None:
        """Picks a random id no live worker holds, then makes every slot key live; waits out
        Redis errors (a worker may well start before its Redis)."""
        failures = 0
        while True:
            try:
                await self._claim_once()
                return
            except (RedisError, OSError) as exc:
                failures += 1
                delay = backoff(failures)
                logger.warning(
                    "worker on queue %r: cannot reach Redis to start (%s); retrying in %.1fs",
                    self._queue.name, exc, delay,
                )  # fmt: skip
                await anyio.sleep(delay)

    async def _claim_once(self) -> None:
        redis = self._queue.redis
        while True:
            worker_id = protocol.worker_key(secrets.token_hex(8), self._queue.name)
            if await redis.set(worker_id, 1, px=self._ttl_ms, nx=True):
                break
        self.worker_id = worker_id
        self.fields = [protocol.slot_key(worker_id, slot) for slot in range(self._slots)]
        await self.refresh()

    async def refresh(self) -> None:
        """One round trip: every key of the lease gets a full keep_alive_timeout again."""
        async with self._queue.redis.pipeline(transaction=False) as pipe:
            for key in (self.worker_id, *self.fields):
                pipe.set(key, 1, px=self._ttl_ms)
            await pipe.execute()

    async def keep_alive(self) -> None:
        """Refreshes the lease every keep_alive_interval until cancelled."""
        while True:
            await anyio.sleep(self._interval)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                logger.warning(
                    "worker %s on queue %r: lease refresh failed (%s); retrying in %ss",
                    self.worker_id,
                    self._queue.name,
                    exc,
                    self._interval,
                )

    async def drop(self) -> None:
        """Deletes the lease's keys: the worker is gone (its slots must be empty by now)."""
        await self._queue.redis.delete(self.worker_id, *self.fields)
