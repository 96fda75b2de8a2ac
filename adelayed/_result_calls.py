"""The Queue's side of kept results: ``get(id)``, and the worker's FINISH and the handles'
STATUS calls (scripts in adelayed._protocol.results)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._finish_batch import FinishBatch
from ._protocol import results as protocol
from .errors import ConfigurationError
from .results import TaskHandle
from .retry import seconds_of

if TYPE_CHECKING:
    from ._wire import Wire

# The longest a result may be kept: Redis's PEXPIRE takes ms in a 64-bit integer, and a
# result kept for years is a leak, not a feature.
MAX_KEEP = 366 * 24 * 3600.0
# How long the "aborted" record of an aborted task is kept when it has no keep_result.
ABORTED_KEPT = 3600.0


def keep_ms_of(keep: float) -> int:
    """FINISH's ms to keep a result for ``keep`` seconds (0: none; at least 1 ms)."""
    return max(1, round(keep * 1000)) if keep else 0


class ResultCalls:
    """Mixed into Queue."""

    if TYPE_CHECKING:  # Queue's and Scheduling's
        _name: str
        _jobs_key: str
        _scheduled_key: str
        _ready_key: str
        _noti_key: str
        _active_key: str
        _dedup_key: str
        _dead_key: str
        _dead_letter_limit: int

        def _wire(self) -> Wire: ...

    def _init_results(self, keep_result: float | timedelta | None) -> None:
        self._keep_result: float | None = None
        if keep_result is not None:
            where = f"queue {self._name!r}: keep_result"
            self._keep_result = seconds_of(keep_result, where)
            if not 0 < self._keep_result <= MAX_KEEP:
                raise ConfigurationError(f"{where} must be over 0 and at most {MAX_KEEP:g}s")
        self._result_prefix = self._name + protocol.RESULT_INFIX
        self._progress_prefix = self._name + protocol.PROGRESS_INFIX
        self._results_channel = self._name + protocol.RESULTS_CHANNEL_SUFFIX
        self._abort_channel = self._name + protocol.ABORT_CHANNEL_SUFFIX
        self._aborting_prefix = self._name + protocol.ABORTING_INFIX
        self._finishes: FinishBatch | None = None

    def get(self, id_: str) -> TaskHandle:
        """The handle of the task of id ``id_`` (from another process's handle, ``.id``); no
        round trip."""
        if not isinstance(id_, str) or len(id_) != 32:
            raise ConfigurationError(
                f"queue {self._name!r}: a task id is 32 hex characters (TaskHandle.id), not {id_!r}"
            )
        return TaskHandle(self, id_)  # type: ignore[arg-type]

    async def _status(self, id_: str) -> list[Any]:
        keys = (
            self._result_prefix + id_, self._jobs_key, self._scheduled_key, self._active_key,
            self._progress_prefix + id_,
        )  # fmt: skip
        reply: list[Any] = await protocol.STATUS(self._wire(), keys, (id_,))
        return reply

    async def _finish(
        self, field: str, id_: str, state: str, stored: bytes, worker: str, keep: float,
        dead: tuple[bytes, str, str], key: str = "",
    ) -> None:  # fmt: skip
        """Releases an enveloped task's slot, keeps its result record (``stored``, but for
        its end time) for ``keep`` seconds (0: none), frees its dedup ``key`` and buries it
        (``dead``: the payload, reason and traceback of its dead letter). Tasks that end
        otherwise go through FINISH_MANY (BatchedSettle)."""
        keys = (
            self._active_key, self._jobs_key, self._result_prefix + id_, self._dead_key,
            self._progress_prefix + id_, self._dedup_key,
        )  # fmt: skip
        payload, reason, trace = dead
        args = (
            field, id_, state, stored, keep_ms_of(keep), self._results_channel, key,
            self._dead_letter_limit, payload, reason, worker, trace,
        )  # fmt: skip
        await protocol.FINISH(self._wire(), keys, args)

    def _finish_batch(self) -> FinishBatch:
        """The batcher of this queue's FINISH calls on the running loop."""
        batch = self._finishes
        if batch is None or batch._loop is not asyncio.get_running_loop():
            batch = self._finishes = FinishBatch(self)  # type: ignore[arg-type]
        return batch

    async def _progress(self, id_: str, fraction: float, message: str, keep: float) -> None:
        keys = (self._progress_prefix + id_,)
        args = (repr(float(fraction)), message, max(1, round(keep * 1000)))
        await protocol.PROGRESS(self._wire(), keys, args)

    async def _abort(self, id_: str) -> str:
        keys = (
            self._jobs_key, self._scheduled_key, self._ready_key, self._noti_key,
            self._active_key, self._result_prefix + id_, self._progress_prefix + id_,
            self._aborting_prefix + id_,
        )  # fmt: skip
        keep_ms = round((self._keep_result or ABORTED_KEPT) * 1000)
        args = (id_, keep_ms, self._results_channel, self._abort_channel)
        outcome = await protocol.ABORT(self._wire(), keys, args)
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()
