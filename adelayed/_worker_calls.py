"""The worker's side of a Queue: fetch (with release), release, requeue at shutdown, and
returning the tokens of a worker's hand; one round trip each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError, RedisError

from . import _protocol as protocol
from ._finish_batch import finish_call
from ._protocol import results

if TYPE_CHECKING:
    from ._finish_batch import Record
    from ._wire import Wire


class WorkerCalls:
    """Mixed into Queue."""

    if TYPE_CHECKING:  # Queue's and Scheduling's
        _name: str
        _noti_key: str
        _processing_key: str
        _ready_key: str
        _active_key: str
        _jobs_key: str
        _dequeue_timeout: float

        def _wire(self) -> Wire: ...

    async def _fetch(
        self,
        wire: Wire,
        hand: str,
        fields: Sequence[str],
        release: Sequence[str] = (),
        ended: Sequence[str] = (),
        *,
        wait: bool = False,
    ) -> list[tuple[int, bytes]]:
        """Releases the ``release`` fields (v1 tasks) and the ``ended`` (field, id, field,
        id, ...) of enveloped tasks, then takes up to len(fields) tasks into the given slot
        fields; returns (index in fields, payload or envelope) pairs. With ``wait``, first
        waits up to dequeue_timeout for a token (a BLMOVE into ``hand``, sent with the
        fetch)."""
        keys = (
            self._name, self._noti_key, self._processing_key, hand,
            self._ready_key, self._active_key, self._jobs_key,
        )  # fmt: skip
        timeout = self._dequeue_timeout
        try:
            if wait:
                move = ("BLMOVE", self._noti_key, hand, "LEFT", "RIGHT", timeout)
                await wire.send(*move, blocking_for=timeout)
            args = (int(wait), len(release), len(ended) // 2, *release, *ended, *fields)
            flat = await protocol.FETCH(wire, keys, args)
        except asyncio.CancelledError:
            if wait:  # Redis drops a pending BLMOVE, and the fetch behind it, with the connection
                wire.close()
            raise
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def _fetch_finishing(
        self,
        wire: Wire,
        hand: str,
        fields: Sequence[str],
        release: Sequence[str],
        ended: Sequence[str],
        records: Sequence[Record],
    ) -> tuple[list[tuple[int, bytes]], Exception | None]:
        """``_fetch``, with a FINISH_MANY of ``records`` sent ahead of it in the same write
        (one round trip for both; no slot being finished is among ``fields``). Returns what
        the fetch took, and the error of the FINISH_MANY (its slots stay to be finished)."""
        keys, args = finish_call(self, records)  # type: ignore[arg-type]
        script = results.FINISH_MANY
        finishing = await wire.send("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            taken = await self._fetch(wire, hand, fields, release, ended)
        except BaseException:
            if finishing.done() and not finishing.cancelled():
                finishing.exception()  # the same loss as the fetch's, which is raised
            finishing.cancel()  # still due: read and dropped
            raise
        try:
            await wire.reply_to(finishing)
        except NoScriptError:  # it did not run: once more, loading the script
            await script(wire, keys, args)
        except RedisError as exc:
            return taken, exc
        return taken, None

    async def _return_tokens(self, hand: str) -> None:
        """Puts back on noti any token a failed fetch left in a worker's ``hand``."""
        wire = self._wire()
        while await wire.call("LMOVE", hand, self._noti_key, "LEFT", "RIGHT"):
            pass

    async def _release(self, hand: str, fields: Sequence[str], ended: Sequence[str] = ()) -> None:
        """Releases v1 ``fields`` (an HDEL) and enveloped ``ended`` (field, id, ...) pairs (a
        FETCH that takes nothing)."""
        if not ended:
            await self._wire().call("HDEL", self._processing_key, *fields)
            return
        keys = (
            self._name, self._noti_key, self._processing_key, hand,
            self._ready_key, self._active_key, self._jobs_key,
        )  # fmt: skip
        args = (0, len(fields), len(ended) // 2, *fields, *ended)
        await protocol.FETCH(self._wire(), keys, args)

    async def _requeue(self, field: str, payload: bytes, *, at_head: bool) -> None:
        keys = (self._name, self._noti_key, self._processing_key)
        await protocol.REQUEUE(self._wire(), keys, (field, payload, "head" if at_head else "tail"))
