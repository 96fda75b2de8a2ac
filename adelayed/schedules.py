"""Periodic tasks declared in code: ``Cron`` and ``Every``, run by workers given them.

    worker = Worker(queue, schedules=[
        Every(timedelta(minutes=5), PyTask(refresh_cache)),
        Cron("0 9 * * 1-5", PyTask(send_report, ["daily"]), tz="Europe/Paris"),
    ])

Each tick is enqueued exactly once however many workers are given the schedule (give it to
every worker of the queue, or to a few: a worker that dies leaves its ticks to the others), and
any worker of the queue, delayed's included, may run the task it enqueues. The next tick of
every schedule lives in the queue's ``NAME_schedules`` hash (adelayed._protocol.schedules): at a
tick, every worker compares-and-sets it to the tick after, and only the one that moved it
enqueues. Ticks are on Redis's clock, never a worker's. A tick found more than ``grace`` late
(every worker was down) is skipped, not run late, and the next one is waited for; within
``grace`` it runs once, however many ticks were missed. ``await queue.schedules()`` lists each
schedule's next run.

Cron expressions are parsed by cronsim (the ``cron`` extra: ``pip install 'adelayed[cron]'``),
chosen over croniter: it has no dependencies (croniter needs python-dateutil), is one small
typed module (py.typed; croniter ships no types), works with zoneinfo and follows Debian cron
at DST changes (a time the clocks skip runs right after the gap, a time they repeat runs once,
while ``*/15``-style schedules run in real time), and has been kept by one maintainer, with
steady releases, for years; croniter was declared abandoned by its maintainer in 2025 before
Pallets-Eco took it over, and has a long record of DST bugs. cronsim's BSD licence suits an MIT
project. Its 2.8 needs Python 3.11; 2.7 serves 3.10.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._protocol.schedules import SCHEDULES_SUFFIX, decode_value
from .errors import ConfigurationError
from .task import GoTask, PyTask, Task

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["Cron", "Every", "Schedule", "ScheduledRun", "next_runs"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OFFSET_ZONE = re.compile(r"UTC([+-])(\d\d):(\d\d)")
_SPANS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"))


class ScheduledRun(NamedTuple):
    """A schedule's next run, as ``queue.schedules()`` lists it."""

    name: str
    next_run: datetime  # aware, in the schedule's time zone (UTC for ``Every``)
    description: str


class Schedule(ABC):
    """A task enqueued at every tick of a schedule (``Cron`` or ``Every``)."""

    def __init__(self, task: Task, spec: str, name: str | None, grace: float | timedelta) -> None:
        if not isinstance(task, (PyTask, GoTask)):
            raise ConfigurationError(f"a schedule needs a PyTask or GoTask, not {task!r}")
        self.task = task
        self.payload = task.serialize()  # a TaskDataError here, not at the first tick
        self.name = f"{task.func_path} {spec}" if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"a schedule's name must be a non-empty str, not {name!r}")
        seconds = grace.total_seconds() if isinstance(grace, timedelta) else grace
        if not (isinstance(seconds, (int, float)) and 0 < seconds < math.inf):
            raise ConfigurationError(
                f"schedule {self.name!r}: grace must be positive seconds, not {grace!r}"
            )
        self.grace_ms = max(1, round(seconds * 1000))

    @property
    @abstractmethod
    def zone(self) -> str:
        """The time zone a next run is shown in: a zoneinfo key, ``UTC`` or ``UTC+HH:MM``."""

    @property
    @abstractmethod
    def description(self) -> str:
        """What the schedule is, for people (``queue.schedules()``)."""

    @abstractmethod
    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms`` (milliseconds since the epoch, Redis's clock)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Every(Schedule):
    """Runs ``task`` every ``interval`` (a timedelta, or seconds; a whole number of
    milliseconds, sub-second allowed), at the multiples of it counted from the Unix epoch on
    Redis's clock: ``Every(timedelta(hours=1), ...)`` ticks on the hour (UTC), and every worker
    agrees on the ticks. ``name``: the schedule's field in ``NAME_schedules`` (by default the
    task's function path and the interval; give one when the same function runs at the same
    interval with other arguments). ``grace``: how late (seconds) a tick may still run."""

    def __init__(
        self,
        interval: timedelta | float,
        task: Task,
        *,
        name: str | None = None,
        grace: float | timedelta = 60,
    ) -> None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        number = isinstance(seconds, (int, float)) and 0 < seconds < 1e12
        ms = round(seconds * 1000) if number else 0
        if not ms or abs(seconds * 1000 - ms) > 1e-6:
            raise ConfigurationError(
                f"Every's interval must be a positive whole number of milliseconds, "
                f"not {interval!r} (task {getattr(task, 'func_path', task)!r})"
            )
        self.interval_ms = ms
        super().__init__(task, f"every {_span(ms)}", name, grace)

    @property
    def zone(self) -> str:
        return "UTC"

    @property
    def description(self) -> str:
        return f"every {_span(self.interval_ms)}"

    def next_after(self, ms: int) -> int:
        return (ms // self.interval_ms + 1) * self.interval_ms


class Cron(Schedule):
    """Runs ``task`` at the times a standard 5-field cron expression names (minute, hour, day
    of month, month, day of week; cronsim's ``L``, ``W`` and ``#`` are accepted too), in time
    zone ``tz`` (a zoneinfo name such as ``"Europe/Paris"``, or a tzinfo; default UTC). At DST
    changes it does as Debian's cron: a time the clocks skip runs right after the gap, a time
    they repeat runs once. Needs ``pip install 'adelayed[cron]'``. ``name`` and ``grace``: as
    for ``Every`` (the default name holds the expression and the zone)."""

    def __init__(
        self,
        expr: str,
        task: Task,
        *,
        tz: str | tzinfo | None = None,
        name: str | None = None,
        grace: float | timedelta = 60,
    ) -> None:
        self._tz = _tzinfo(tz, expr)
        self._zone = _zone_label(self._tz)
        self.expr = " ".join(expr.split()) if isinstance(expr, str) else ""
        self._explained = _check_cron(self.expr, expr, self._tz)
        where = "" if self._zone == "UTC" else f" {self._zone}"
        super().__init__(task, f"cron '{self.expr}'{where}", name, grace)

    @property
    def zone(self) -> str:
        return self._zone

    @property
    def description(self) -> str:
        return f"cron '{self.expr}' ({self._zone}): {self._explained}"

    def next_after(self, ms: int) -> int:
        from cronsim import CronSim

        # cronsim returns the first match strictly after the whole second it is given.
        start = datetime.fromtimestamp(ms // 1000, self._tz)
        try:
            found = next(CronSim(self.expr, start))
        except StopIteration:
            raise ConfigurationError(
                f"schedule {self.name!r}: cron '{self.expr}' has no time in the 50 years after "
                f"{start.isoformat()}"
            ) from None
        return int(found.timestamp()) * 1000


async def next_runs(queue: Queue) -> list[ScheduledRun]:
    """Every schedule of ``queue`` that a worker has run, soonest first: its name, its next
    run (an aware datetime in the schedule's time zone) and what it is. A schedule no worker
    runs any more stays listed, with a next run in the past, until its field is deleted
    (``HDEL NAME_schedules <name>``)."""
    fields = await queue._wire().call("HGETALL", queue.name + SCHEDULES_SUFFIX)
    if not isinstance(fields, dict):  # a RESP2 connection's flat list
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    runs = []
    for field, value in fields.items():
        decoded = decode_value(value.decode(errors="replace"))
        if decoded is not None:
            tick, zone, description = decoded
            when = (_EPOCH + timedelta(milliseconds=tick)).astimezone(_zone_of(zone))
            runs.append(ScheduledRun(field.decode(errors="replace"), when, description))
    return sorted(runs, key=lambda run: run.next_run)


def _span(ms: int) -> str:
    """An interval for a name: ``200ms``, ``5m``, ``1h``, ``90s``."""
    for size, unit in _SPANS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _tzinfo(tz: str | tzinfo | None, expr: str) -> tzinfo:
    if tz is None:
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"cron {expr!r}: unknown time zone {tz!r} ({exc}); give a zoneinfo name such as "
            "'Europe/Paris' (install the tzdata package where the system has no zone files)"
        ) from None


def _zone_label(tz: tzinfo) -> str:
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)  # zoneinfo's, pytz's
    if isinstance(key, str) and key:
        return key
    offset = tz.utcoffset(None)
    if offset is None:
        return "".join(str(tz).split()) or "UTC"
    sign, minutes = ("-" if offset < timedelta(0) else "+"), abs(offset) // timedelta(minutes=1)
    return "UTC" if not minutes else f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _zone_of(label: str) -> tzinfo:
    """The time zone a schedules value names; UTC when this machine does not know it."""
    if label == "UTC":
        return timezone.utc
    offset = _OFFSET_ZONE.fullmatch(label)
    if offset:
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(label)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _check_cron(expr: str, given: object, tz: tzinfo) -> str:
    """Parses a 5-field expression; returns cronsim's plain-words account of it."""
    try:
        from cronsim import CronSim, CronSimError
    except ImportError:
        raise ConfigurationError(
            f"Cron({given!r}) needs the cronsim package: pip install 'adelayed[cron]'"
        ) from None
    if len(expr.split()) != 5:
        raise ConfigurationError(
            f"cron {given!r} is not a 5-field expression (minute hour day-of-month month "
            "day-of-week), e.g. '*/5 * * * *'"
        )
    try:
        parsed = CronSim(expr, datetime(2000, 1, 1, tzinfo=tz))
    except CronSimError as exc:
        raise ConfigurationError(f"cron {given!r} does not parse: {exc}") from None
    try:
        return parsed.explain()
    except Exception:  # an account is a nicety: an expression cronsim cannot put in words
        return expr
