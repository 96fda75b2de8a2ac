"""Requeueing or purging the dead letters that match a filter, oldest first, a page at a
time, with progress: what ``adelayed dead requeue|purge --reason/--function`` (and a
dashboard) run. Each page moves in one atomic, repeat-safe call (``_protocol.dead``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ._dead_letters import DeadTask, _decode
from ._execution import function_path_of
from ._protocol.dead import MOVE_DEAD_RECORDS

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
    return function_path_of(dead.payload)


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
    if which.everything:
        return await _everything(queue, requeue, progress)
    done, kept = 0, 0  # kept: records at the oldest end that stay (they do not match)
    while page := await _page(queue, kept):
        chosen = [(kept + 1 + i, record) for i, (record, dead) in enumerate(page)
                  if which.matches(dead)]  # fmt: skip
        moved = await _move(queue, chosen, requeue)
        kept += len(page) - moved  # a record that could not move stays too
        done += moved
        progress(moved)
    return done


async def _everything(queue: Queue, requeue: bool, progress: Callable[[int], None]) -> int:
    """No filter: REQUEUE_DEAD a page at a time (a record that is none stays), or one DEL."""
    if not requeue:
        purged = await queue.purge_dead()
        progress(purged)
        return purged
    done, total = 0, await count_matching(queue, DeadFilter())
    while done < total and (moved := await queue.requeue_dead(min(PAGE, total - done))):
        done += moved
        progress(moved)
    return done


async def _page(queue: Queue, kept: int) -> list[tuple[bytes, DeadTask]]:
    """The next PAGE records above the ``kept`` oldest ones, oldest first."""
    raw = await queue._wire().call("LRANGE", queue._dead_key, -(kept + PAGE), -(kept + 1))
    records = list(reversed(cast(list[bytes], raw)))
    return [(record, _decode(record)) for record in records]


async def _move(queue: Queue, chosen: list[tuple[int, bytes]], requeue: bool) -> int:
    """One MOVE_DEAD_RECORDS call: ``chosen`` are (position from the oldest end, record)."""
    if not chosen:
        return 0
    keys = (queue._name, queue._noti_key, queue._dead_key)
    args = ["1" if requeue else "0", *(item for pair in chosen for item in pair)]
    return int(await MOVE_DEAD_RECORDS(queue._wire(), keys, args))
