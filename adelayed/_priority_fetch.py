"""The fetch cycle of a worker that serves several queues in strict priority order.

Busy (the last cycle found work): one FETCH_MANY call releases every finished slot and fills
the free ones from the highest queue that has tasks, then the next (adelayed._protocol.priority),
each queue within its cap. Idle (no queue had a task): one waiter per queue, each on a free slot
it reserves, sends that queue's ``BLMOVE`` + FETCH (one slot), as a worker of one queue does, in
the background; the first that gets a task wakes the cycle, which goes back to FETCH_MANY. A
waiter's slot stays reserved until its call returns (a task, or ``dequeue_timeout``), so a task
it takes always has a slot. A worker of one queue never uses this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from redis.exceptions import RedisError

from ._fatal import configuration_error
from ._protocol import priority
from ._slots import Slots
from ._wire import Wire
from .queue import Queue

_MAX_BATCH = 500


class PriorityFetch:
    def __init__(
        self,
        queues: Sequence[Queue],
        slots: Slots,
        caps: Sequence[int],
        parked: Callable[[Awaitable[Any]], Awaitable[Any]],
        releases: Callable[[list[int]], tuple[list[str], list[str]]],
    ) -> None:
        self._queues = list(queues)
        self._slots = slots
        self._caps = list(caps)
        self._capped = any(cap < slots.count for cap in caps)
        self._keys = [
            key
            for q in self._queues
            for key in (q.name, q._noti_key, q._processing_key, q._ready_key, q._active_key,
                        q._jobs_key)
        ]  # fmt: skip
        self._parked = parked
        self._releases = releases
        self.slot_queue = [0] * slots.count  # the queue index of each slot's task
        self._reserved: dict[int, int] = {}  # slot -> queue index of the waiter holding it
        # Whether a free slot's field may hold a task in Redis that this worker does not know
        # of (a call failed or was cancelled): the next FETCH_MANY checks its fields first.
        self._suspect = True
        self._waiting: set[int] = set()  # queue indexes with a waiter in flight
        # FETCH_MANY's own connection, and one per queue's waiter: a waiter's BLMOVE holds
        # back every reply behind it on its connection
        names = ", ".join(repr(q.name) for q in self._queues)
        self._wire = Wire(self._queues[0].redis, f"worker of queues {names}")
        self._wires = [Wire(q.redis, f"waiter of queue {q.name!r}") for q in self._queues]
        self.fields: list[str] = []
        self.hands: list[str] = []
        self.group: TaskGroup | None = None

    async def fetch(self, block: bool, finished: list[int]) -> tuple[bool, list[int]]:
        """One cycle; returns whether the next should block, and the slots it released."""
        free = [slot for slot in self._slots.free() if slot not in self._reserved][:_MAX_BATCH]
        if block or (not free and not finished):
            self._arm(free if block else [])
            await self._parked(self._slots.wait_change())
            return False, []
        taken = await self._fetch_many(free, finished)
        for position, index, payload in taken:  # an envelope's position is -(position + 1)
            slot = free[position] if position >= 0 else free[-position - 1]
            self.slot_queue[slot] = index
            self._slots.hand(slot, payload, enveloped=position < 0)
        if taken:
            await anyio.lowlevel.checkpoint()  # the runners start their tasks first
        return bool(free) and not taken, finished

    async def _fetch_many(self, free: list[int], finished: list[int]) -> list[Any]:
        caps = self._caps
        if self._capped:  # what each queue may still take
            caps = [
                max(0, cap - running) for cap, running in zip(caps, self._running(), strict=True)
            ]
        head: list[Any] = [len(self._queues), int(self._suspect)]
        releases: list[str] = []
        for cap, mine in zip(caps, self.by_queue(finished), strict=True):
            v1, ended = self._releases(mine)
            head += (cap, len(v1), len(ended) // 2)
            releases += (*v1, *ended)
        fields = self.fields
        args = (*head, *releases, *[fields[slot] for slot in free])
        self._suspect = True  # until the reply is in: a lost one may have filled the slots
        flat = await priority.FETCH_MANY(self._wire, self._keys, args)
        self._suspect = False
        return list(zip(flat[::3], flat[1::3], flat[2::3], strict=True))

    def by_queue(self, slots: list[int]) -> list[list[int]]:
        """``slots`` grouped by the queue of their tasks, in priority order."""
        groups: list[list[int]] = [[] for _ in self._queues]
        for slot in slots:
            groups[self.slot_queue[slot]].append(slot)
        return groups

    def _running(self) -> list[int]:
        counts = [0] * len(self._queues)
        free = set(self._slots.free())
        for slot, index in enumerate(self.slot_queue):
            if slot not in free:
                counts[index] += 1
        for index in self._reserved.values():
            counts[index] += 1
        return counts

    def _arm(self, free: list[int]) -> None:
        """Starts a waiter for each queue that has none, while free slots and caps allow."""
        counts = self._running()
        for index in range(len(self._queues)):
            if not free or self.group is None:
                return
            if index in self._waiting or counts[index] >= self._caps[index]:
                continue
            slot = free.pop(0)
            self._reserved[slot] = index
            self._waiting.add(index)
            self.group.start_soon(self._wait, index, slot)

    async def _wait(self, index: int, slot: int) -> None:
        queue = self._queues[index]
        try:
            taken = await queue._fetch(
                self._wires[index], self.hands[index], [self.fields[slot]], wait=True
            )
        except (RedisError, OSError) as exc:
            self._suspect = True
            fatal = configuration_error(exc, f"worker of queue {queue.name!r}")
            if fatal is not None:  # e.g. its ACL changed: ends run(), as the fetch loop's
                raise fatal from exc
            taken = []  # the next cycle's FETCH_MANY finds what a lost reply left in the slot
            await anyio.sleep(0.1)
        except BaseException:  # cancelled: its FETCH may have run
            self._suspect = True
            raise
        finally:
            del self._reserved[slot]
            self._waiting.discard(index)
        for position, payload in taken:
            self.slot_queue[slot] = index
            self._slots.hand(slot, payload, enveloped=position < 0)
        self._slots.poke()

    async def aclose(self) -> None:
        for wire in (self._wire, *self._wires):
            with anyio.CancelScope(shield=True):
                await wire.aclose()
