"""The Sweeper: requeues the tasks of dead workers, on its own or inside any event loop."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

import anyio
from redis.exceptions import RedisError

from ._fatal import configuration_error
from ._preflight import check_sweeper_start
from ._protocol.scheduled import PROMOTE_BATCH
from .errors import ConfigurationError
from .queue import Queue

logger = logging.getLogger(__name__)


class Sweeper:
    """Every ``interval`` seconds (and once at start), sweeps each queue (``requeue_lost()``)
    and promotes its due tasks (workers' promoters do too; each task moves once).

    Sweeping is atomic and idempotent, so any number of sweepers may run side by side, with
    delayed's and go-delayed's too. adelayed's share a lease per queue: a queue another
    sweeper swept less than ``interval`` ago is not swept again, so a fleet of workers, each
    with its sweeper, sweeps each queue about once per interval, not once per worker.
    Connection trouble is logged and the next sweep tries again; what retrying cannot fix
    (credentials, database, ACL) raises RedisConfigurationError.

    At start, ``run()`` refuses a Redis whose ``maxmemory-policy`` can evict the workers'
    liveness keys (their tasks would run twice) unless ``allow_eviction=True``.
    """

    def __init__(
        self, queues: Sequence[Queue], interval: float = 60, *, allow_eviction: bool = False
    ) -> None:
        if not queues:
            raise ConfigurationError("a Sweeper needs at least one queue")
        if interval <= 0:
            raise ConfigurationError(f"sweeper interval must be positive seconds, not {interval!r}")
        self._queues = list(queues)
        self._interval = interval
        self.id = secrets.token_hex(8)  # its name on the queues' sweep leases
        self._allow_eviction = allow_eviction
        self._stopped = anyio.Event()
        self._starting: anyio.CancelScope | None = None

    async def sweep(self) -> int:
        """One pass over every queue but those another sweeper swept less than ``interval``
        ago; returns how many tasks were requeued. Raises RedisConfigurationError for what
        retrying cannot fix; logs other Redis errors."""
        requeued = 0
        for queue in self._queues:
            try:
                swept = await queue._sweep(self.id, self._interval)
                if swept is None:
                    continue  # another sweeper's turn
                requeued += swept
                await _promote_all(queue)
            except (RedisError, OSError) as exc:
                fatal = configuration_error(exc, f"sweeper of queue {queue.name!r}")
                if fatal is not None:
                    raise fatal from exc
                logger.warning(
                    "sweeper: queue %r could not be swept (%s); will retry", queue.name, exc
                )
        return requeued

    async def run(self) -> None:
        """Checks Redis, then sweeps until ``stop()`` is called or the surrounding task is
        cancelled. Raises RedisConfigurationError when Redis is set up so it cannot work."""
        with anyio.CancelScope() as self._starting:  # stop() ends a wait for Redis too
            await check_sweeper_start(self._queues, allow_eviction=self._allow_eviction)
        if not self._starting.cancelled_caught:
            await self._sweep_loop()

    async def _sweep_loop(self) -> None:
        """run() without the start-up check: a worker's embedded sweeper uses the worker's."""
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
        if self._starting is not None:
            self._starting.cancel()


async def _promote_all(queue: Queue) -> None:
    """Moves every due task no worker's promoter moved, 1,000 per script call."""
    while (await queue._promote(queue._wire()))[0] >= PROMOTE_BATCH:
        pass
