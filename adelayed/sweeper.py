"""The Sweeper: requeues the tasks of dead workers, on its own or inside any event loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
from redis.exceptions import RedisError

from .errors import ConfigurationError
from .queue import Queue

logger = logging.getLogger(__name__)


class Sweeper:
    """Every ``interval`` seconds (and once at start), runs ``requeue_lost()`` on each queue.

    Sweeping is atomic and idempotent, so any number of sweepers may run side by side, with
    delayed's and go-delayed's too. Redis errors are logged and the next sweep tries again.
    """

    def __init__(self, queues: Sequence[Queue], interval: float = 60) -> None:
        if not queues:
            raise ConfigurationError("a Sweeper needs at least one queue")
        if interval <= 0:
            raise ConfigurationError(f"sweeper interval must be positive seconds, not {interval!r}")
        self._queues = list(queues)
        self._interval = interval
        self._stopped = anyio.Event()

    async def sweep(self) -> int:
        """One pass over every queue; returns how many tasks were requeued."""
        requeued = 0
        for queue in self._queues:
            try:
                requeued += await queue.requeue_lost()
            except (RedisError, OSError) as exc:
                logger.warning(
                    "sweeper: queue %r could not be swept (%s); will retry", queue.name, exc
                )
        return requeued

    async def run(self) -> None:
        """Sweeps until ``stop()`` is called or the surrounding task is cancelled."""
        logger.info(
            "sweeper started on %s every %ss", [q.name for q in self._queues], self._interval
        )
        while not self._stopped.is_set():
            await self.sweep()
            with anyio.move_on_after(self._interval):
                await self._stopped.wait()
        logger.info("sweeper stopped")

    def stop(self) -> None:
        self._stopped.set()
