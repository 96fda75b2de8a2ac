"""Requeueing or purging the dead letters that match a filter, oldest first, a page at a
time, with progress: what ``adelayed dead requeue|purge --reason/--function`` (and a
dashboard) run. Each record moves in its own atomic, repeat-safe call (``_protocol.dead``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ._dead_letters import DeadTask, _decode
from ._execution import name_of
from ._protocol.dead import DROP_DEAD_RECORD, REQUEUE_DEAD_RECORD

if TYPE_CHECKING:
    from .queue import Queue

PAGE = 1000


@dataclass(frozen=True)
class DeadFilter:
    """Which dead letters: ``reason`` (a substring of it), ``function`` (its exact path)."""

    reason: str | None = None
    function: str | None = None

    def matches(self, dead: DeadTask) -> bool:
        if self.reason is not None and self.reason not in dead.reason:
            return False
        return self.function is None or function_of(dead) == self.function

    @property
    def everything(self) -> bool:
        return self.reason is None and self.function is None


def function_of(dead: DeadTask) -> str:
    return name_of(dead.payload).strip("'")


async def count_matching(queue: Queue, which: DeadFilter) -> int:
    if which.everything:
        return int(await queue._wire().call("LLEN", queue._dead_key))
    total, offset = 0, 0
    while page := await _page(queue, offset):
        total += sum(which.matches(dead) for _, dead in page)
        offset += len(page)
    return total


async def repair(
    queue: Queue, which: DeadFilter, requeue: bool, progress: Callable[[int], None]
) -> int:
    """Requeues (or, ``requeue`` False, deletes) every dead letter ``which`` matches; calls
    ``progress`` with each page's count; returns how many."""
    done, kept = 0, 0  # kept: records at the oldest end that stay (they do not match)
    while page := await _page(queue, kept):
        chosen = [record for record, dead in page if which.matches(dead)]
        moved = await _move(queue, chosen, requeue)
        kept += len(page) - moved  # a record that could not move stays too
        done += moved
        progress(moved)
    return done


async def _page(queue: Queue, kept: int) -> list[tuple[bytes, DeadTask]]:
    """The next PAGE records above the ``kept`` oldest ones, oldest first."""
    raw = await queue._wire().call("LRANGE", queue._dead_key, -(kept + PAGE), -(kept + 1))
    records = list(reversed(cast(list[bytes], raw)))
    return [(record, _decode(record)) for record in records]


async def _move(queue: Queue, records: list[bytes], requeue: bool) -> int:
    wire, moved = queue._wire(), 0
    for record in records:
        if requeue:
            keys = (queue._name, queue._noti_key, queue._dead_key)
            moved += int(await REQUEUE_DEAD_RECORD(wire, keys, (record,)))
        else:
            moved += int(await DROP_DEAD_RECORD(wire, (queue._dead_key,), (record,)))
    return moved
