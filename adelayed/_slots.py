"""A worker's concurrency slots: which are free, running, or finished awaiting release."""

from __future__ import annotations

import anyio


class Slots:
    """Slot numbers 0..n-1. A slot is free, running a task, or finished: its task is done and
    its release not yet sent (the next fetch, or the releaser, sends it). A slot is refilled
    only once its release has landed in Redis."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._free = list(range(count))
        self._finished: list[int] = []
        self._changed = anyio.Event()
        self._closed = False

    def free(self) -> list[int]:
        return list(self._free)

    def take(self, slot: int) -> None:
        self._free.remove(slot)

    def give(self, slot: int) -> None:
        """A running (or released) slot is free again."""
        self._free.append(slot)
        self._wake()

    def finish(self, slot: int) -> None:
        """A running slot's task is done; its release is due."""
        self._finished.append(slot)
        self._wake()

    def take_finished(self) -> list[int]:
        """Hands over every finished slot, whose release the caller now sends."""
        finished, self._finished = self._finished, []
        return finished

    def released(self, slots: list[int]) -> None:
        self._free.extend(slots)
        if slots:
            self._wake()

    def unreleased(self, slots: list[int]) -> None:
        """The release of these slots failed: they are finished again, to be retried."""
        self._finished.extend(slots)

    def has_finished(self) -> bool:
        return bool(self._finished)

    def close(self) -> None:
        """Makes wait_free() return False from now on."""
        self._closed = True
        self._wake()

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

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
