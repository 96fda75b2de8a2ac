"""The service a worker runs for its schedules (``Worker(schedules=...)``): one loop per
schedule, each sleeping until its next tick and then calling TICK (adelayed._protocol.schedules).

Time: the runner never reads the local wall clock. Every TICK reply carries Redis's time; the
runner keeps the offset between it and the event loop's monotonic clock, and sleeps by the
loop's clock until the tick it waits for. The offset is taken when the reply arrives, after
Redis read its clock, so the runner's estimate of Redis's time lags, never leads, by a reply's
trip: it wakes a little late, and a call that does come early (the clocks drifted) is answered
EARLY and sleeps again. Between ticks it sends nothing: one call per schedule per tick, or two
when the clocks drifted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
from redis.exceptions import RedisError

from . import _protocol as protocol
from ._backoff import backoff
from ._fatal import configuration_error
from ._protocol import schedules as wire_protocol
from .errors import ConfigurationError
from .queue import Queue
from .schedules import Schedule

__all__ = ["Schedule", "ScheduleRunner"]

logger = logging.getLogger(__name__)

_REDIS_ERRORS = (RedisError, OSError)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ScheduleRunner:
    """Enqueues the ticks of ``schedules`` into ``queue``, each exactly once across every
    runner of the queue; ``run()`` until cancelled."""

    def __init__(self, queue: Queue, schedules: Iterable[Schedule]) -> None:
        self.schedules = list(schedules)
        names: set[str] = set()
        for schedule in self.schedules:
            if not isinstance(schedule, Schedule):
                raise ConfigurationError(
                    f"queue {queue.name!r}: schedules must be Cron or Every, not {schedule!r}"
                )
            if schedule.name in names:
                raise ConfigurationError(
                    f"queue {queue.name!r}: two schedules are named {schedule.name!r}; give "
                    "one of them another name= (each tick of each name runs once)"
                )
            names.add(schedule.name)
            queue._payload_of(schedule.task)  # PayloadTooLargeError now, not at a tick
        self._queue = queue
        name = queue.name
        self._keys = (name, name + protocol.NOTI_SUFFIX, name + wire_protocol.SCHEDULES_SUFFIX)
        self._offset_ms = 0.0  # Redis's time minus the loop's, as of the last reply

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            for schedule in self.schedules:
                group.start_soon(self._keep, schedule)

    async def _keep(self, schedule: Schedule) -> None:
        """Runs one schedule's ticks. ``expected``: the value its field held at the last
        reply; ``tick``: the tick that value names when it is this schedule's (None: absent,
        not known yet, or another definition's)."""
        expected: str | bytes = wire_protocol.READ_ONLY
        tick: int | None = None
        failures = 0
        while True:
            if tick is not None:
                await self._sleep_until(tick)
            try:
                args = self._args(schedule, expected, tick)
                reply = await wire_protocol.TICK(self._queue._wire(), self._keys, args)
            except ConfigurationError as exc:  # a cron expression with no time left
                logger.error("queue %r: %s; the schedule stops", self._queue.name, exc)
                return
            except _REDIS_ERRORS as exc:
                fatal = configuration_error(exc, f"schedules of queue {self._queue.name!r}")
                if fatal is not None:
                    raise fatal from exc
                failures += 1
                logger.warning(
                    "queue %r: schedule %r: tick call failed (%s); retrying in %.1fs",
                    self._queue.name, schedule.name, exc, backoff(failures),
                )  # fmt: skip
                await anyio.sleep(backoff(failures))  # then sent again: safe to run twice
                continue
            failures = 0
            expected, tick = self._after(schedule, args, reply)

    def _args(self, schedule: Schedule, expected: str | bytes, tick: int | None) -> tuple[Any, ...]:
        """TICK's ARGV: run ``tick`` (moving the field to the first tick after now), or, with
        no tick, read the field (expected unknown) or set it to the first tick after now."""
        field, grace = schedule.name, schedule.grace_ms
        if expected == wire_protocol.READ_ONLY:
            return field, expected, "", 0, grace, ""
        now = self._now_ms()
        new = schedule.next_after(int(now) if tick is None else max(tick, int(now)))
        value = wire_protocol.encode_value(new, schedule.zone, schedule.description)
        if tick is None:
            return field, expected, value, 0, grace, ""
        return field, expected, value, tick, grace, schedule.payload

    def _after(
        self, schedule: Schedule, args: tuple[Any, ...], reply: list[Any]
    ) -> tuple[bytes, int | None]:
        """Learns Redis's time from a reply, logs what the call did; returns the new state
        (the field's bytes as they are: the next call must expect them exactly)."""
        code, now, stored = int(reply[0]), int(reply[1]), reply[2]
        self._offset_ms = now - asyncio.get_running_loop().time() * 1000
        decoded = wire_protocol.decode_value(stored.decode(errors="replace"))
        if decoded is None:
            return stored, None  # absent (or unreadable): set it to this schedule's next tick
        next_tick, zone, description = decoded
        if (zone, description) != (schedule.zone, schedule.description):
            logger.warning(
                "queue %r: schedule %r is also declared as %r; using this worker's %r",
                self._queue.name, schedule.name, description, schedule.description,
            )  # fmt: skip
            return stored, None
        self._log(schedule, code, int(args[3]), now, next_tick)
        return stored, next_tick

    def _log(self, schedule: Schedule, code: int, due: int, now: int, next_tick: int) -> None:
        where = f"queue {self._queue.name!r}: schedule {schedule.name!r}"
        if code == wire_protocol.SKIPPED:
            logger.warning(
                "%s: the tick of %s was found %.3fs late, over its grace of %.3fs (no worker "
                "ran it in time): skipped, not run late",
                where, _iso(due), (now - due) / 1000, schedule.grace_ms / 1000,
            )  # fmt: skip
        elif code == wire_protocol.RAN:
            logger.debug("%s: tick %d enqueued", where, due)
            if schedule.next_after(due) < next_tick:
                logger.warning(
                    "%s: ran the tick of %s %.3fs late; the ticks after it up to now were "
                    "missed (no worker ran them) and are skipped",
                    where, _iso(due), (now - due) / 1000,
                )  # fmt: skip

    def _now_ms(self) -> float:
        """Redis's time now, as estimated from the last reply and the loop's clock."""
        return asyncio.get_running_loop().time() * 1000 + self._offset_ms

    async def _sleep_until(self, tick: int) -> None:
        delay = (tick - self._now_ms()) / 1000
        if delay > 0:
            await anyio.sleep(delay)


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat()
