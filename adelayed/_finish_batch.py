"""Batching a worker's FINISH calls: the tasks of one queue that end in the same turn of the
event loop are settled by one FINISH_MANY call (adelayed._protocol.results), as the fetch loop
batches plain releases. Each caller awaits its own task's outcome; a failed call fails every
caller, each of which sends its FINISH again (the Settler retries; FINISH is safe to run
twice)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ._protocol import results as protocol

if TYPE_CHECKING:
    from ._wire import Wire
    from .queue import Queue

_MAX_BATCH = 500  # tasks per call: bounds what one script call unpacks and holds Redis


Record = tuple[str, str, int, str, bytes, int]
"""What FINISH_MANY takes of one task: its slot field, id, ms to keep its result, dedup key,
result record without its end time (``unfinished_record``), and 1 when it may have a progress
key to delete (else 0)."""


def unfinished_record(state: str, data: Any, attempt: int, worker: str) -> bytes:
    """A result record (adelayed._protocol.results) but for its last item, which FINISH and
    FINISH_MANY append: the msgpack array header of five items, then the four packed here
    (``data``: the return value; an error's type name, message and traceback; or None)."""
    packed: bytes = msgpack.packb((state, data, attempt, worker))
    return b"\x95" + packed[1:]  # a fixarray of 4 becomes one of 5


def finish_call(queue: Queue, records: Sequence[Record]) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of one FINISH_MANY call for ``records``."""
    results, progress = queue._result_prefix, queue._progress_prefix
    keys = [queue._active_key, queue._jobs_key, queue._dedup_key]
    keys += [results + record[1] for record in records]
    keys += [progress + record[1] for record in records if record[5]]
    return keys, [queue._results_channel, msgpack.packb(records, use_bin_type=False)]


async def finish_records(queue: Queue, wire: Wire, records: Sequence[Record]) -> None:
    """Settles ``records`` in FINISH_MANY calls of up to _MAX_BATCH tasks each."""
    for start in range(0, len(records), _MAX_BATCH):
        await protocol.FINISH_MANY(wire, *finish_call(queue, records[start : start + _MAX_BATCH]))


class FinishBatch:
    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[Record, asyncio.Future[Any]]] = []

    async def finish(self, record: Record) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        waiter = self._loop.create_future()
        self._pending.append((record, waiter))
        await waiter

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._loop.create_task(self._send(pending))

    async def _send(self, batch: list[tuple[Record, asyncio.Future[Any]]]) -> None:
        try:
            await finish_records(self._queue, self._queue._wire(), [task for task, _ in batch])
        except BaseException as exc:
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for _, waiter in batch:
            if not waiter.done():
                waiter.set_result(None)
