"""A queue's sweep: the tasks of dead workers back in the queue, page by page, and at most once
per interval across a fleet however many sweepers run (the sweep lease, ``NAME_sweep``; the
script is REQUEUE_LOST in adelayed._protocol.v1)."""

from __future__ import annotations

import logging

from . import _protocol as protocol
from ._wire import Wire

logger = logging.getLogger("adelayed.queue")  # where these records have always been

SWEEP_SUFFIX = "_sweep"
SWEEP_PAGE = 500  # processing or active entries a call looks at: each call stays short
DELIVERIES_MEMORY_MS = 24 * 3600 * 1000  # a dead worker's delivery count is kept this long


class Sweeping:
    """The Queue's sweep (a base class of Queue, which has the keys and wire)."""

    _name: str
    _noti_key: str
    _processing_key: str
    _deliveries_key: str
    _dead_key: str
    _ready_key: str
    _active_key: str
    _jobs_key: str
    _max_deliveries: int
    _dead_letter_limit: int

    def _wire(self) -> Wire:
        raise NotImplementedError

    async def requeue_lost(self) -> int:
        """Puts back the tasks of dead workers (dead-lettering those whose workers died
        max_deliveries times) and restores missing tokens; returns how many tasks were
        requeued. Run it periodically: a Sweeper does (and then, with many sweepers, only one
        sweeps a queue per interval); this call sweeps whenever it is called."""
        return await self._sweep("", 0) or 0

    async def _sweep(self, sweeper: str, interval: float) -> int | None:
        """One sweep, in pages; None when another sweeper swept the queue less than
        ``interval`` seconds ago (0: sweep regardless). ``sweeper``: the sweeper's id."""
        keys = (
            self._name, self._noti_key, self._processing_key, self._deliveries_key,
            self._dead_key, self._ready_key, self._active_key, self._jobs_key,
            self._name + SWEEP_SUFFIX,
        )  # fmt: skip
        wire, totals, interval_ms = self._wire(), [0, 0, 0], round(interval * 1000)
        for hash_ in ("processing", "active"):
            cursor: bytes | str = "0"
            while True:
                args = (
                    self._max_deliveries, self._dead_letter_limit, DELIVERIES_MEMORY_MS, hash_,
                    cursor, SWEEP_PAGE, sweeper, interval_ms,
                )  # fmt: skip
                cursor, *counts = await protocol.REQUEUE_LOST(wire, keys, args)
                if cursor == b"skip":
                    return None
                totals = [total + int(count) for total, count in zip(totals, counts, strict=True)]
                if cursor == b"0":
                    break
        self._log_sweep(*totals)
        return totals[0]

    def _log_sweep(self, requeued: int, buried: int, tokens: int) -> None:
        if buried:
            logger.error(
                "queue %r: %d task(s) dead-lettered: their workers died on each of %d deliveries",
                self._name, buried, self._max_deliveries,
            )  # fmt: skip
        if requeued or tokens:
            logger.info(
                "queue %r: requeued %d lost task(s); tokens %+d", self._name, requeued, tokens
            )
