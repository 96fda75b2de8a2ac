"""A worker's releaser: the releases (and FINISH_MANY records) of finished slots, carried by a
busy fetch loop's next fetch or sent by the releaser itself.

A busy fetch loop releases the finished slots in its next FETCH; the releaser sends those it
did not carry within RELEASE_DELAY, and all of them at once while the fetch loop is parked
(waiting for a token, backing off, or stopped)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import anyio

from ._finish_batch import finish_records
from ._lease import Lease
from ._settle import Settler
from ._slots import Slots
from .queue import Queue

if TYPE_CHECKING:
    from ._wire import Wire

# How long a finished task's release may wait for a busy fetch loop to carry it (seconds).
RELEASE_DELAY = 0.005


class Releaser:
    def __init__(self, slots: Slots, settler: Settler, lease: Lease, queues: list[Queue]) -> None:
        self._slots = slots
        self._settler = settler
        self._lease = lease
        self._queues = queues
        self.parked = False  # the fetch loop is idle: release at once
        self.hands = [""]  # each queue's hand (set once the worker runs)
        # ``slots`` grouped by their tasks' queue (a worker of several queues); None: one
        self.by_queue: Callable[[list[int]], list[list[int]]] | None = None

    def fields_of(self, slots: list[int]) -> tuple[list[str], list[str]]:
        """The slot fields of finished v1 tasks, and the (field, id, ...) of enveloped ones."""
        return self._slots.releases(slots, self._lease.fields)

    async def fetch_releasing(
        self, wire: Wire, offered: list[str]
    ) -> tuple[list[tuple[int, bytes]], Exception | None]:
        """The fetch of a single-queue worker's busy cycle into the ``offered`` slot fields,
        carrying the releases (and FINISH_MANY records) of the finished slots. Returns the
        tasks taken, and the error of a FINISH_MANY that failed (its slots stay finished, for
        the next cycle)."""
        slots, queue, hand = self._slots, self._queues[0], self.hands[0]
        finished = slots.take_finished()
        records = slots.finishes_of(finished)
        fields, ended = self.fields_of(finished)
        try:
            if not records:
                taken = await queue._fetch(wire, hand, offered, fields, ended)
                slots.released(finished)
                return taken, None
            taken, failed = await queue._fetch_finishing(
                wire, hand, offered, fields, ended, records
            )
        except BaseException:
            slots.unreleased(finished)
            raise
        if failed is None:
            slots.released(finished)
            return taken, None
        finishing = [slot for slot in finished if slots.finishes[slot] is not None]
        slots.released([slot for slot in finished if slots.finishes[slot] is None])
        slots.unreleased(finishing)
        return taken, failed

    async def run(self) -> None:
        while True:
            await self._slots.wait_finished()
            if not self.parked:
                await anyio.sleep(RELEASE_DELAY)
            await self.release(self._slots.take_finished())

    async def release(self, slots: list[int]) -> None:
        if not slots:
            return
        groups = [slots] if self.by_queue is None else self.by_queue(slots)
        for queue, hand, mine in zip(self._queues, self.hands, groups, strict=True):
            if mine:
                fields, ended = self.fields_of(mine)
                records = self._slots.finishes_of(mine)
                with anyio.CancelScope(shield=True):
                    if fields or ended:
                        await self._settler.settle(partial(queue._release, hand, fields, ended))
                    if records:
                        finish = partial(finish_records, queue, queue._wire(), records)
                        await self._settler.settle(finish)
        self._slots.released(slots)
