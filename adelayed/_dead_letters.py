"""A queue's dead-letter list (``NAME_dead``): the tasks that could not run, with the reason;
read, requeued or purged through the Queue, written by a worker (``_bury``) or a sweep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import msgpack

from . import _protocol as protocol
from ._wire import Wire


@dataclass(frozen=True)
class DeadTask:
    """A task that could not run, as kept in the queue's dead-letter list."""

    payload: bytes
    reason: str
    failed_at: float
    worker: str
    traceback: str = ""  # the last error's, for a task dead-lettered on failure


class DeadLetters:
    """The Queue's dead-letter methods (a base class of Queue, which has the keys and wire)."""

    _name: str
    _noti_key: str
    _processing_key: str
    _dead_key: str
    _dead_letter_limit: int

    def _wire(self) -> Wire:
        raise NotImplementedError

    async def dead_tasks(self, limit: int = 100) -> list[DeadTask]:
        """The newest dead letters, newest first."""
        records = await self._wire().call("LRANGE", self._dead_key, 0, limit - 1)
        return [_decode(record) for record in cast(list[bytes], records)]

    async def requeue_dead(self, count: int | None = None) -> int:
        """Moves up to ``count`` dead letters (all when None), oldest first, back onto the
        queue; returns how many. Fix what killed them first."""
        wire = self._wire()
        if count is None:
            count = int(await wire.call("LLEN", self._dead_key))
        keys = (self._name, self._noti_key, self._dead_key)
        return int(await protocol.REQUEUE_DEAD(wire, keys, (count,)))

    async def purge_dead(self) -> int:
        """Deletes every dead letter; returns how many there were."""
        wire = self._wire()
        # Written back to back (no other call comes between while connected), read in turn.
        commands = (("MULTI",), ("LLEN", self._dead_key), ("DEL", self._dead_key), ("EXEC",))
        sent = [await wire.send(*command) for command in commands]
        replies = [await wire.reply_to(waiter) for waiter in sent]
        count, _ = replies[-1]
        return int(count)

    async def _bury(
        self, field: str, payload: bytes, reason: str, worker: str, trace: str = ""
    ) -> None:
        """A worker's: moves the task in ``field`` to the dead-letter list (one round trip),
        dated by Redis's clock."""
        keys = (self._processing_key, self._dead_key)
        args = (field, self._dead_letter_limit, payload, reason, worker, trace)
        await protocol.BURY(self._wire(), keys, args)


def _decode(record: bytes) -> DeadTask:
    """A record as BURY (or the sweep's poison check) writes it; anything else written to the
    list is shown as it is, with a reason saying so (requeue_dead leaves it in place)."""
    # raw=True: records carry the payload as a msgpack str (Lua's cmsgpack has no bin type).
    try:
        fields = msgpack.unpackb(record, raw=True)

        def text(name: bytes) -> str:
            return bytes(fields.get(name, b"")).decode("utf-8", "replace")

        payload = bytes(fields[b"payload"])
        failed_at = float(fields[b"failed_at"])
        return DeadTask(payload, text(b"reason"), failed_at, text(b"worker"), text(b"traceback"))
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
        return DeadTask(record, "not a dead-letter record (written by something else)", 0.0, "")
