"""A worker's entry in its queues' fleet keys (``_protocol.fleet``): who it is, that it lives,
and what its tasks did, so ``adelayed info`` (and a dashboard) can show the fleet.

The counts are plain integers the worker's executors add to as tasks end (no Redis call per
task); the lease thread sends them, with the worker's description, at each refresh: one
REGISTER per queue, pipelined. Withdrawn at a clean stop.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgpack
import redis
from redis.exceptions import NoScriptError

from ._protocol.fleet import REGISTER, STATS_SUFFIX, WITHDRAW, WORKER_INFO_SUFFIX, WORKERS_SUFFIX

if TYPE_CHECKING:
    from .queue import Queue


class Counts:
    """What one queue's tasks did on this worker since it started."""

    __slots__ = ("dead", "done", "failed", "retried")

    def __init__(self) -> None:
        self.done = self.failed = self.retried = self.dead = 0

    def values(self) -> tuple[int, int, int, int]:
        return self.done, self.failed, self.retried, self.dead


def fleet_keys(queue_name: str) -> tuple[str, str, str]:
    return (
        queue_name + WORKERS_SUFFIX,
        queue_name + WORKER_INFO_SUFFIX,
        queue_name + STATS_SUFFIX,
    )


class Registry:
    """One worker's entry in each of its queues' fleet keys, and its per-queue Counts."""

    def __init__(self, queues: Sequence[Queue], concurrency: int) -> None:
        self._queues = queues
        self._names = [q.name for q in queues]
        self._lease_ms = max(1, int(queues[0].keep_alive_timeout * 1000))
        self._concurrency = concurrency
        self.counts = [Counts() for _ in queues]
        self._sent = [(0, 0, 0, 0) for _ in queues]
        self.worker_id = ""
        self.busy: Callable[[], list[bool]] = lambda: []

    def flush(self, client: redis.Redis) -> None:
        """One REGISTER per queue, in one round trip (from the lease thread)."""
        info = self._describe()
        now = [counts.values() for counts in self.counts]
        calls = []
        for name, current, sent in zip(self._names, now, self._sent, strict=True):
            deltas = [c - s for c, s in zip(current, sent, strict=True)]
            calls.append((*fleet_keys(name), self.worker_id, self._lease_ms, info, *deltas))
        try:
            self._send(client, calls)
        except NoScriptError:
            client.script_load(REGISTER.text)
            self._send(client, calls)
        self._sent = now

    @staticmethod
    def _send(client: redis.Redis, calls: list[tuple[object, ...]]) -> None:
        with client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(REGISTER.sha, 3, *call)  # type: ignore[arg-type]
            pipe.execute()

    async def withdraw(self) -> None:
        for queue in self._queues:
            workers, info, _ = fleet_keys(queue.name)
            await WITHDRAW(queue._wire(), (workers, info), (self.worker_id,))

    def _describe(self) -> bytes:
        from . import __version__

        packed: bytes = msgpack.packb(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "version": __version__,
                "concurrency": self._concurrency,
                "queues": self._names,
                "running": sum(self.busy()),
                "clock": int(time.time() * 1000),  # its own clock: readers see its skew
            }
        )
        return packed
