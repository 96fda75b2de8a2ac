"""Batching a worker's FINISH calls: the tasks of one queue that end in the same turn of the
event loop are settled by one FINISH_MANY call (adelayed._protocol.results), as the fetch loop
batches plain releases. Each caller awaits its own task's outcome; a failed call fails every
caller, each of which sends its FINISH again (the Settler retries; FINISH is safe to run
twice)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._protocol import results as protocol
from ._protocol.dedup import KEYS_SUFFIX

if TYPE_CHECKING:
    from .queue import Queue

_MAX_BATCH = 500  # tasks per call: bounds what one script call unpacks and holds Redis


class FinishBatch:
    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []

    async def finish(
        self, field: str, id_: str, state: str, data: bytes, attempt: int, worker: str,
        keep_ms: int, key: str,
    ) -> None:  # fmt: skip
        if not self._pending:
            self._loop.call_soon(self._flush)
        waiter = self._loop.create_future()
        self._pending.append(((field, id_, state, data, attempt, worker, keep_ms, key), waiter))
        await waiter

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), _MAX_BATCH):
            self._loop.create_task(self._send(pending[start : start + _MAX_BATCH]))

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        queue = self._queue
        keys: list[str] = [queue._active_key, queue._jobs_key, queue._name + KEYS_SUFFIX]
        args: list[Any] = [len(batch), queue._results_channel]
        for task, _ in batch:
            keys += (queue._result_prefix + task[1], queue._progress_prefix + task[1])
            args += task
        try:
            await protocol.FINISH_MANY(queue._wire(), keys, args)
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
