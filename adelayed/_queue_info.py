"""What a queue holds and who works on it: ``Queue.info()`` (one INFO call) and
``Queue.workers()`` (the fleet's entries), read by ``adelayed info`` and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

import msgpack

from ._protocol.fleet import INFO, STAT_KINDS, STATS_MINUTES
from ._registry import fleet_keys
from ._wire import Wire
from .errors import ConfigurationError


@dataclass(frozen=True)
class MinuteStats:
    """What the workers counted in one minute of Redis's clock (sent at their lease
    refreshes, so up to ``keep_alive_interval`` late)."""

    minute: datetime  # its start, UTC
    done: int
    failed: int  # attempts that raised (a retried one included)
    retried: int
    dead: int  # dead-lettered by a worker


@dataclass(frozen=True)
class QueueInfo:
    """A queue at one moment (Redis's clock), read in one call."""

    name: str
    at: datetime
    queued: int  # due, waiting for a worker
    scheduled: int  # waiting for their due time
    in_flight: int  # held by workers
    dead: int
    live_workers: int  # adelayed workers whose lease holds (delayed's and go-delayed's unseen)
    tokens: int  # NAME_noti's length (one per queued task when all is well)
    earliest_due: datetime | None  # the soonest scheduled task's due time
    minutes: list[MinuteStats] = field(default_factory=list)  # oldest first, current last

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        return {
            "name": self.name, "at": self.at.isoformat(), "queued": self.queued,
            "scheduled": self.scheduled, "in_flight": self.in_flight, "dead": self.dead,
            "live_workers": self.live_workers, "tokens": self.tokens,
            "earliest_due": self.earliest_due.isoformat() if self.earliest_due else None,
            "minutes": [
                {"minute": m.minute.isoformat(), "done": m.done, "failed": m.failed,
                 "retried": m.retried, "dead": m.dead}
                for m in self.minutes
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class WorkerInfo:
    """One adelayed worker of a queue, as it last described itself."""

    id: str
    alive: bool  # its lease holds
    lease_until: datetime
    seen: datetime  # its last refresh (Redis's clock)
    clock_skew: float  # seconds its clock was ahead of Redis's at that refresh
    host: str
    pid: int
    version: str
    concurrency: int
    running: int
    queues: list[str]


def _time(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


class QueueInfoCalls:
    """The Queue's fleet views (a base class of Queue, which has the keys and wire)."""

    _name: str
    _noti_key: str
    _processing_key: str
    _dead_key: str
    _ready_key: str
    _scheduled_key: str
    _active_key: str

    def _wire(self) -> Wire:
        raise NotImplementedError

    async def info(self, minutes: int = 15) -> QueueInfo:
        """Counts of the queue's tasks and live workers, and what the workers counted in each
        of the last ``minutes`` minutes: one read-only call, whatever the queue's length."""
        if not 1 <= minutes < STATS_MINUTES:
            raise ConfigurationError(f"info(minutes=...) must be 1 to {STATS_MINUTES - 1}")
        workers, _, stats = fleet_keys(self._name)
        keys = (
            self._name, self._noti_key, self._ready_key, self._scheduled_key,
            self._processing_key, self._active_key, self._dead_key, workers, stats,
        )  # fmt: skip
        reply = cast(list[Any], await INFO(self._wire(), keys, (minutes,)))
        now, waiting, ready, tokens, scheduled, earliest, v1, enveloped, dead, live = reply[:10]
        counts = reply[10:]
        first = (int(now) // 60000 - minutes + 1) * 60000
        kinds = len(STAT_KINDS)
        return QueueInfo(
            self._name, _time(int(now)), int(waiting) + int(ready), int(scheduled),
            int(v1) + int(enveloped), int(dead), int(live), int(tokens),
            None if earliest is None else _time(float(earliest)),
            [
                MinuteStats(_time(first + 60000 * i), *map(int, counts[kinds * i : kinds * i + 4]))
                for i in range(minutes)
            ],
        )  # fmt: skip

    async def workers(self) -> list[WorkerInfo]:
        """The adelayed workers of this queue: live ones, and those that stopped answering
        within the last hour (``alive`` False); a clean stop removes its worker at once."""
        workers_key, info_key, _ = fleet_keys(self._name)
        wire = self._wire()
        deadlines = await wire.send("ZRANGE", workers_key, 0, -1, "WITHSCORES")
        entries = await wire.send("HGETALL", info_key)
        clock = await wire.send("TIME")
        listed = _pairs(await wire.reply_to(deadlines))
        described = await wire.reply_to(entries)  # a map (RESP3) or a flat list
        seconds, micros = cast(list[bytes], await wire.reply_to(clock))
        now = int(seconds) * 1000 + int(micros) // 1000
        about = _as_dict(described)
        found = []
        for member, score in listed:
            if member in about:
                found.append(_worker(member.decode(), float(score), about[member], now))
        return found


def _pairs(reply: Any) -> list[tuple[bytes, bytes]]:
    """A ZRANGE WITHSCORES reply: pairs (RESP3) or a flat list."""
    if reply and isinstance(reply[0], list):
        return [(member, score) for member, score in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


def _as_dict(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _worker(id_: str, until: float, entry: bytes, now: int) -> WorkerInfo:
    written, _, blob = entry.partition(b":")
    info = msgpack.unpackb(blob)
    return WorkerInfo(
        id_, until > now, _time(until), _time(int(written)),
        (int(info["clock"]) - int(written)) / 1000, str(info["host"]), int(info["pid"]),
        str(info["version"]), int(info["concurrency"]), int(info["running"]),
        [str(name) for name in info["queues"]],
    )  # fmt: skip
