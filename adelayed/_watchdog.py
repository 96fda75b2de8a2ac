"""Watches the event loop's lag, so a worker takes no new task while its loop is stalled."""

from __future__ import annotations

import logging
import time

import anyio

logger = logging.getLogger(__name__)


class LoopWatchdog:
    """Beats every ``period`` seconds; a beat late by more than ``threshold`` means something
    blocked the loop (usually blocking code in an ``async def`` task)."""

    def __init__(self, worker_id: str, threshold: float, period: float = 0.25) -> None:
        self._worker_id = worker_id
        self._threshold = threshold
        self.period = period
        self._last_beat = time.monotonic()
        self._last_lag = 0.0

    def stalled(self) -> bool:
        """True while the last beat was late, or the next one is overdue."""
        overdue = time.monotonic() - self._last_beat > self.period + self._threshold
        return overdue or self._last_lag > self._threshold

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await anyio.sleep(self.period)
            self._last_beat = time.monotonic()
            self._last_lag = self._last_beat - started - self.period
            if self._last_lag > self._threshold:
                logger.warning(
                    "worker %s: the event loop was blocked for %.1fs; no new task is taken "
                    "until it runs freely. Blocking code belongs in a plain (non-async) task "
                    "function, which runs in a thread",
                    self._worker_id, self._last_lag,
                )  # fmt: skip
