"""A worker's concurrency slots: which are free, running, or finished awaiting release, and
the hand-over of a fetched task to the slot's runner."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._finish_batch import Record


class Slots:
    """Slot numbers 0..n-1. A slot is free, running a task, or finished: its task is done and
    its release not yet sent (the next fetch, or the releaser, sends it). A slot is refilled
    only once its release has landed in Redis.

    Each slot has a long-lived runner that waits for its next task (``next_task``): handing
    a task over resolves the future its runner waits on, no new task. Bare asyncio futures:
    this is the per-task hot path, and redis.asyncio already ties the worker to asyncio."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._free = dict.fromkeys(range(count))  # an ordered set: O(1) removal
        self._finished: list[int] = []
        self._done = [False] * count  # finished: its task ended, its release not yet landed
        self._changed: asyncio.Event | None = None
        self._closed = False
        self._fetching = True
        self._inbox: list[bytes | None] = [None] * count  # handed, not yet picked up
        self.enveloped = [False] * count  # whether the task handed to each slot is an envelope
        self.ids: list[str | None] = [None] * count  # the id of each slot's enveloped task
        # the FINISH_MANY record of each finished slot whose task is settled by one
        self.finishes: list[Record | None] = [None] * count
        self._finishing = 0  # how many slots have one (none: plain releases skip them)
        self._waiting: list[asyncio.Future[None] | None] = [None] * count  # idle runners

    @property
    def count(self) -> int:
        return self._count

    def free(self) -> list[int]:
        return list(self._free)

    def busy(self) -> list[bool]:
        """Which slots run a task, for the lease's REFRESH; safe from another thread. A
        finished slot is not busy: its release may have landed (its field gone) before the
        worker read the reply, and REFRESH must not take that for a sweep's requeue and let
        the slot's key lapse (a sweep would then requeue the slot's next task while it runs)."""
        free, done = self._free.copy(), self._done.copy()  # each one call: atomic under the GIL
        return [slot not in free and not done[slot] for slot in range(self._count)]

    def hand(self, slot: int, payload: bytes, enveloped: bool = False) -> None:
        """Gives ``payload`` (an envelope if ``enveloped``) to the runner of the free
        ``slot``, which is now running."""
        del self._free[slot]
        self.enveloped[slot] = enveloped
        self._inbox[slot] = payload
        waiter, self._waiting[slot] = self._waiting[slot], None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_task(self, slot: int) -> bytes:
        """The next payload handed to ``slot`` (its runner calls this)."""
        if self._inbox[slot] is None:
            waiter = self._waiting[slot] = asyncio.get_running_loop().create_future()
            await waiter
        payload, self._inbox[slot] = self._inbox[slot], None
        assert payload is not None
        return payload

    def releases(self, slots: list[int], fields: list[str]) -> tuple[list[str], list[str]]:
        """The slot ``fields`` of finished v1 tasks, and the (field, id, ...) of enveloped
        ones."""
        ids = self.ids
        v1 = [fields[slot] for slot in slots if ids[slot] is None]
        if len(v1) == len(slots):
            return v1, []
        ended: list[str] = []
        finishes = self.finishes
        for slot in slots:
            id_ = ids[slot]
            if id_ is not None and finishes[slot] is None:  # FINISH_MANY releases the others
                ended += (fields[slot], id_)
        return v1, ended

    def finishes_of(self, slots: list[int]) -> list[Record]:
        """The FINISH_MANY records of those finished ``slots`` that have one."""
        if not self._finishing:
            return []
        finishes = self.finishes
        return [record for slot in slots if (record := finishes[slot]) is not None]

    def unclaimed(self, slot: int) -> bytes | None:
        """A payload handed to ``slot`` that its runner has not picked up (at shutdown)."""
        payload, self._inbox[slot] = self._inbox[slot], None
        return payload

    def give(self, slot: int) -> None:
        """A running slot is free again."""
        self._free[slot] = None
        self._wake()

    def finish(self, slot: int, record: Record | None = None) -> None:
        """A running slot's task is done; its release is due (or, with ``record``, the
        FINISH_MANY that settles it)."""
        if record is not None:
            self.finishes[slot] = record
            self._finishing += 1
        self._done[slot] = True
        self._finished.append(slot)
        self._wake()

    def take_finished(self) -> list[int]:
        """Hands over every finished slot, whose release the caller now sends."""
        finished, self._finished = self._finished, []
        return finished

    def released(self, slots: list[int]) -> None:
        if self._finishing:
            finishes = self.finishes
            for slot in slots:
                if finishes[slot] is not None:
                    finishes[slot] = None
                    self._finishing -= 1
        done = self._done
        for slot in slots:
            done[slot] = False
        self._free.update(dict.fromkeys(slots))
        if slots:
            self._wake()

    def unreleased(self, slots: list[int]) -> None:
        """The release of these slots failed: they are finished again, to be retried."""
        self._finished.extend(slots)

    def close(self) -> None:
        """Makes wait_free() return False from now on."""
        self._closed = True
        self._wake()

    def fetching_ended(self) -> None:
        """The fetch loop has ended: no task is handed over any more, and none is on its way."""
        self._fetching = False
        self._wake()

    async def wait_fetching_ended(self) -> None:
        """Waits for the fetch loop to end. A task requeued at stop waits for this: a fetch still
        waiting in Redis would take it straight back."""
        while self._fetching:
            await self._wait_change()

    async def wait_free(self) -> bool:
        """Waits until a slot is free or finished; False once closed."""
        while not self._closed and not self._free and not self._finished:
            await self._wait_change()
        return not self._closed

    async def wait_finished(self) -> None:
        while not self._finished:
            await self._wait_change()

    async def wait_all_free(self) -> None:
        while len(self._free) < self._count:
            await self._wait_change()

    async def wait_change(self) -> None:
        """Waits for any change: a slot freed, finished or handed a task, or a poke()."""
        await self._wait_change()

    def poke(self) -> None:
        """Wakes whoever waits in wait_change() (a waiter of another queue returned)."""
        self._wake()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
