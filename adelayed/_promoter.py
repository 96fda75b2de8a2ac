"""A worker's promoter: moves its queue's due tasks (delayed ones, retries after a backoff)
into ready, on Redis's clock, without polling.

Each PROMOTE call returns the next due time and Redis's time, both on Redis's clock; the
promoter sleeps for their difference by the event loop's clock (so a worker whose wall clock
is off still promotes on Redis's time), then promotes again. Meanwhile a waker blocks on
``NAME_wake`` on a connection of its own: a task scheduled earlier than any other pushes a
wake there; the waker that pops it passes it on (pushes it back, once), so it goes round every
promoter, and each plans again at once. While nothing is scheduled the
promoter sends nothing but the waker's BLPOP, renewed every WAKE_RENEWAL seconds; while
something is, one PROMOTE at its due time, or every WAKE_RENEWAL seconds if it is further off.
Any number of promoters (one per worker) may run at once: PROMOTE moves each id once. Should
a waker die between popping a wake and passing it on, the next sweep (which promotes too)
moves the task.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque

import anyio
from redis.exceptions import RedisError

from ._alarm import Alarm
from ._backoff import backoff
from ._fatal import configuration_error
from ._protocol.scheduled import PROMOTE_BATCH
from ._wire import Wire
from .queue import Queue

logger = logging.getLogger(__name__)

WAKE_RENEWAL = 60.0  # seconds a waker's BLPOP blocks before it is sent again
_EARLY_MS = 0.1  # wake this much after the due time (µs on both clocks: a hair is enough)


class Promoter:
    def __init__(self, queue: Queue, owner: str) -> None:
        self._queue = queue
        self._owner = owner
        self._woken = asyncio.Event()
        self._seen: deque[bytes] = deque(maxlen=64)  # the wakes passed on lately

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._wait_for_wakes)
            await self._promote_forever()

    async def _promote_forever(self) -> None:
        # A connection of its own: the app's (the queue's shared one) is left to the app.
        wire = Wire(self._queue.redis, f"promoter of queue {self._queue.name!r}")
        alarm = Alarm(asyncio.get_running_loop(), self._woken.set, f"queue {self._queue.name!r}")
        failures = 0
        try:
            while True:
                try:
                    wait = await self._promote_due(wire)
                except (RedisError, OSError) as exc:
                    failures += 1
                    self._failed(exc, failures)
                    wait = backoff(failures)
                else:
                    failures = 0
                alarm.set(time.monotonic() + wait)  # asyncio's timers are up to 1 ms late
                await self._woken.wait()
                self._woken.clear()
        finally:
            alarm.close()
            with anyio.CancelScope(shield=True):
                await wire.aclose()

    async def _promote_due(self, wire: Wire) -> float:
        """Promotes every due task (in bounded calls); returns the seconds until the next."""
        while True:
            moved, next_due, now = await self._queue._promote(wire)
            if moved:
                logger.debug("queue %r: %d due task(s) promoted", self._queue.name, moved)
            if moved < PROMOTE_BATCH:
                break
        if next_due is None:  # nothing scheduled: only a wake (or a sweep) brings work
            return math.inf
        return min(WAKE_RENEWAL, max(0.0, next_due - now + _EARLY_MS) / 1000)

    async def _wait_for_wakes(self) -> None:
        queue = self._queue
        wire = Wire(queue.redis, f"promoter's waker of queue {queue.name!r}")
        failures = 0
        try:
            while True:
                try:
                    waiter = await wire.send(
                        "BLPOP", queue._wake_key, WAKE_RENEWAL, blocking_for=WAKE_RENEWAL
                    )
                    woken = await wire.reply_to(waiter)
                    if woken:
                        await self._pass_on(wire, woken[1])
                except (RedisError, OSError) as exc:
                    failures += 1
                    self._failed(exc, failures)
                    await anyio.sleep(backoff(failures))
                    self._woken.set()  # wakes may have been missed meanwhile: plan again
                    continue
                failures = 0
        finally:
            wire.close()  # a pending BLPOP goes with its connection
            with anyio.CancelScope(shield=True):
                await wire.aclose()

    async def _pass_on(self, wire: Wire, wake: bytes) -> None:
        """A wake reaches one waker: the first time this one sees it, it pushes it back for
        the next (each waker passes a wake on once, so it goes round every promoter blocked on
        the list, then ends), and the promoter plans again."""
        if wake in self._seen:
            return
        self._seen.append(wake)
        self._woken.set()
        await wire.call("RPUSH", self._queue._wake_key, wake)

    def _failed(self, exc: Exception, failures: int) -> None:
        fatal = configuration_error(exc, f"worker {self._owner}")
        if fatal is not None:
            raise fatal from exc
        if failures == 1 or failures % 20 == 0:
            logger.warning(
                "worker %s: promoting due tasks of queue %r failed (%s); retrying",
                self._owner, self._queue.name, exc,
            )  # fmt: skip
