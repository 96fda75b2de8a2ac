"""A worker's concurrency slots: which are free, and waiting for one to free up."""

from __future__ import annotations

import anyio


class Slots:
    """Slot numbers 0..n-1; a running task holds one until its settle has landed in Redis."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._free = list(range(count))
        self._changed = anyio.Event()
        self._closed = False

    def free(self) -> list[int]:
        return list(self._free)

    def take(self, slot: int) -> None:
        self._free.remove(slot)

    def give(self, slot: int) -> None:
        self._free.append(slot)
        self._wake()

    def close(self) -> None:
        """Makes wait_free() return False from now on."""
        self._closed = True
        self._wake()

    async def wait_free(self) -> bool:
        """Waits until a slot is free; False once closed."""
        while not self._closed and not self._free:
            await self._wait_change()
        return not self._closed

    async def wait_all_free(self) -> None:
        while len(self._free) < self._count:
            await self._wait_change()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
