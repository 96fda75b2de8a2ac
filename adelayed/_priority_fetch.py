"""The fetch cycle of a worker that serves several queues in strict priority order.

Every cycle is one FETCH_MANY call (adelayed._protocol.priority): it releases every finished
slot and fills the free ones from the highest queue that has tasks, then the next, each queue
within its cap. Idle (the last call offered slots and got nothing): one waiter per queue
sends that queue's ``BLMOVE NAME_noti hand`` on a connection of its own and holds no slot; the
first that gets a token wakes the cycle, whose FETCH_MANY uses that token. So waiting on an
empty high queue never keeps a slot from a busy low one. A worker of one queue never uses this
module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import RedisError

from ._fatal import configuration_error
from ._protocol import priority
from ._protocol.priority import HAND_EMPTY, HAND_MAY_HOLD, WAIT_TIMED_OUT
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
        self._keys: list[str] = []  # FETCH_MANY's, once the hands are known (bind)
        self._parked = parked
        self._releases = releases
        self._no_groups: list[list[int]] = [[] for _ in self._queues]
        self.slot_queue = [0] * slots.count  # the queue index of each slot's task
        # Whether a free slot's field may hold a task in Redis that this worker does not know
        # of (a call failed or was cancelled): the next FETCH_MANY checks its fields first.
        self._suspect = True
        # What each queue's hand may hold, for FETCH_MANY's ``look``: set by its waiter, sent
        # (and cleared) by the next call.
        self._look = [HAND_MAY_HOLD] * len(self._queues)
        self._waiting: set[int] = set()  # queue indexes with a waiter in flight
        # FETCH_MANY's own connection, and one per queue's waiter: a waiter's BLMOVE holds
        # back every reply behind it on its connection
        names = ", ".join(repr(q.name) for q in self._queues)
        self._wire = Wire(self._queues[0].redis, f"worker of queues {names}")
        self._wires = [Wire(q.redis, f"waiter of queue {q.name!r}") for q in self._queues]
        self.fields: list[str] = []
        self._hands: list[str] = []
        self.group: TaskGroup | None = None

    def bind(self, fields: list[str], hands: list[str]) -> None:
        """The worker's slot fields, and its hand of each queue (known once it runs)."""
        self.fields, self._hands = fields, hands
        self._keys = [
            key
            for q, hand in zip(self._queues, hands, strict=True)
            for key in (q.name, q._noti_key, q._processing_key, q._ready_key, q._active_key,
                        q._jobs_key, hand)
        ]  # fmt: skip

    async def fetch(self, block: bool, finished: list[int]) -> tuple[bool, list[int]]:
        """One cycle; returns whether the next should block, and the slots it released."""
        free = self._slots.free()[:_MAX_BATCH]
        if block or (not free and not finished):
            if block:
                self._arm(bool(free))
            await self._parked(self._slots.wait_change())
            return False, []
        args, looked = self._fetch_args(free, finished)
        self._suspect = True  # until the reply is in: a lost one may have filled the slots
        try:
            flat = await priority.FETCH_MANY(self._wire, self._keys, args)
        except BaseException:
            self._look = [max(a, b) for a, b in zip(self._look, looked, strict=True)]
            raise
        self._suspect = False
        slot_queue, hand = self.slot_queue, self._slots.hand
        for at in range(0, len(flat), 3):  # (position, queue index, task) triples
            position = flat[at]  # an envelope's is -(position + 1)
            slot = free[position] if position >= 0 else free[-position - 1]
            slot_queue[slot] = flat[at + 1]
            hand(slot, flat[at + 2], position < 0)
        if flat:
            await asyncio.sleep(0)  # the runners start their tasks first
        return bool(free) and not flat, finished

    def _fetch_args(self, free: list[int], finished: list[int]) -> tuple[list[Any], list[int]]:
        """FETCH_MANY's ARGV (each queue's cap, look and releases, then the fields to fill),
        and the looks it sends (cleared here: a waiter may set them again meanwhile)."""
        caps, looked = self._caps, self._look
        self._look = [HAND_EMPTY] * len(looked)
        if self._capped:  # what each queue may still take
            caps = [
                max(0, cap - running) for cap, running in zip(caps, self._running(), strict=True)
            ]
        args: list[Any] = [len(self._queues), int(self._suspect)]
        releases: list[str] = []
        groups = self.by_queue(finished) if finished else self._no_groups
        for cap, look, mine in zip(caps, looked, groups, strict=True):
            if not mine:
                args += (cap, look, 0, 0)
                continue
            v1, ended = self._releases(mine)
            args += (cap, look, len(v1), len(ended) // 2)
            releases += v1
            releases += ended
        args += releases
        fields = self.fields
        args += [fields[slot] for slot in free]
        return args, looked

    def by_queue(self, slots: list[int]) -> list[list[int]]:
        """``slots`` grouped by the queue of their tasks, in priority order."""
        groups: list[list[int]] = [[] for _ in self._queues]
        slot_queue = self.slot_queue
        for slot in slots:
            groups[slot_queue[slot]].append(slot)
        return groups

    def _running(self) -> list[int]:
        counts = [0] * len(self._queues)
        free = set(self._slots.free())
        for slot, index in enumerate(self.slot_queue):
            if slot not in free:
                counts[index] += 1
        return counts

    def _arm(self, any_free: bool) -> None:
        """Starts a waiter for each queue that has none and is below its cap."""
        if not any_free or self.group is None:
            return
        counts = self._running()
        for index in range(len(self._queues)):
            if index not in self._waiting and counts[index] < self._caps[index]:
                self._waiting.add(index)
                self.group.start_soon(self._wait, index)

    async def _wait(self, index: int) -> None:
        """Waits up to dequeue_timeout for a token of queue ``index`` in its hand, then wakes
        the cycle; gives the token back at once when no slot is free."""
        queue, wire, hand = self._queues[index], self._wires[index], self._hands[index]
        move = ("BLMOVE", queue._noti_key, hand, "LEFT", "RIGHT", queue.dequeue_timeout)
        look = HAND_MAY_HOLD
        try:
            if await wire.reply_to(await wire.send(*move, blocking_for=move[-1])) is None:
                look = WAIT_TIMED_OUT
            elif not self._slots.free():  # another queue's tasks took them meanwhile
                await wire.call("LMOVE", hand, queue._noti_key, "LEFT", "RIGHT")
        except (RedisError, OSError) as exc:
            fatal = configuration_error(exc, f"worker of queue {queue.name!r}")
            if fatal is not None:  # e.g. its ACL changed: ends run(), as the fetch loop's
                raise fatal from exc
            await anyio.sleep(0.1)
        except BaseException:  # cancelled: Redis drops a pending BLMOVE with the connection
            wire.close()
            self._look[index] = HAND_MAY_HOLD
            raise
        finally:
            self._waiting.discard(index)
        self._look[index] = max(self._look[index], look)
        self._slots.poke()

    async def aclose(self) -> None:
        for wire in (self._wire, *self._wires):
            with anyio.CancelScope(shield=True):
                await wire.aclose()
