"""Durable enqueues: ``enqueue(..., durable=True)`` returns only once Redis's replicas hold the
task, so an acknowledged task survives a failover to one of them.

A durable enqueue goes out on a wire of its own (one per client and event loop, as the shared
one), then ``WAIT replicas timeout`` on that same connection: Redis answers it once that many
replicas have acknowledged every write the connection made before it, or when the timeout passes.
Concurrent durable enqueues share one WAIT: each waits for the first WAIT sent after its own
last write on the connection, so a thousand enqueues in one loop turn cost one WAIT, not a
thousand. The WAIT holds that connection (Redis reads nothing more from it until it answers),
which is why durable enqueues do not share the wire of the others.

Where the server has ``WAITAOF`` (Redis 7.2 and later) and its append-only file is on, the
enqueue also waits for the primary to fsync it (``WAITAOF 1 0``, pipelined before the WAIT).
On 7.0 and older there is no WAITAOF: an acknowledged task is in the replicas' memory, not
necessarily on any disk, so it survives the loss of the primary but not of every copy at once.

A WAIT that counts too few replicas raises EnqueueNotDurableError: the task is in the queue (it
ran on the primary) but may be lost if the primary fails now. So does a connection lost between
the enqueue's reply and the WAIT's: a WAIT on a new connection would prove nothing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError, ResponseError

from ._wire import ReplyLostError, Wire, shared_wire
from .errors import ConfigurationError, EnqueueNotDurableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._wire import _Replies
    from .task import Task

__all__ = ["Durable", "durable_context", "durable_setting", "run_durable"]

T = TypeVar("T")


@dataclass(frozen=True)
class Durable:
    """How a durable enqueue waits: until ``replicas`` replicas acknowledged the task, for at
    most ``timeout`` seconds (then EnqueueNotDurableError). ``Queue(durable=True)`` and
    ``enqueue(..., durable=True)`` mean ``Durable()``: one replica, one second."""

    replicas: int = 1
    timeout: float = 1.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.replicas, int)
            or isinstance(self.replicas, bool)
            or (self.replicas < 1)
        ):
            raise ConfigurationError(
                f"Durable(replicas={self.replicas!r}): the number of replicas that must hold an "
                "enqueued task is a whole number, 1 or more"
            )
        timeout = self.timeout
        if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
            raise ConfigurationError(
                f"Durable(timeout={timeout!r}): the seconds an enqueue waits for its replicas "
                "must be positive (a WAIT with no timeout could wait forever)"
            )


def durable_setting(setting: bool | Durable | None, default: Durable | None) -> Durable | None:
    """A ``durable=`` argument as a Durable, or None: not durable. None: the queue's default;
    True: the queue's Durable, if it has one, else Durable()."""
    if setting is None:
        return default
    if isinstance(setting, Durable):
        return setting
    if setting is True:
        return default or Durable()
    if setting is False:
        return None
    raise ConfigurationError(f"durable={setting!r}: pass True, False or a Durable(...)")


class _Call:
    """What one durable enqueue sent on the durable wire: the connection and its last write."""

    __slots__ = ("replies", "write")

    def __init__(self) -> None:
        self.replies: _Replies | None = None
        self.write = 0


# The durable wire and call of the durable enqueue running in this context (Queue._wire).
durable_context: ContextVar[tuple[Wire, _Call] | None] = ContextVar("durable", default=None)


class DurableWire(Wire):
    """A wire that numbers the writes it sends and shares one WAIT among the enqueues whose
    writes went out before it."""

    def __init__(self, redis: Redis, name: str) -> None:
        super().__init__(redis, name)
        self._writes = 0
        # The last WAIT: its connection, the writes it covers, its Durable, and what sends it.
        self._wait: tuple[_Replies | None, int, Durable | None, asyncio.Future[list[Any]] | None]
        self._wait = (None, 0, None, None)
        self._aof: tuple[_Replies | None, bool] = (None, False)  # WAITAOF, by connection

    async def send(
        self, *command: Any, blocking_for: float = 0, deadline: float | None = None
    ) -> asyncio.Future[Any]:
        waiter = await super().send(*command, blocking_for=blocking_for, deadline=deadline)
        current = durable_context.get()
        if current is not None and current[0] is self:
            self._writes += 1
            current[1].replies, current[1].write = self._replies, self._writes
        return waiter

    async def confirm(self, call: _Call, durable: Durable) -> str | None:
        """Waits until ``call``'s writes are on ``durable.replicas`` replicas; returns why
        they may not be (None: they are). Joins the last WAIT when it covers them."""
        if call.replies is None:
            return None  # nothing was written
        if call.replies is not self._replies or call.replies.transport is None:
            return "the connection was lost before the replicas could be asked"
        sent_on, covers, asked, waiting = self._wait
        stale = sent_on is not call.replies or covers < call.write or asked != durable
        if waiting is None or stale:
            waiting = asyncio.ensure_future(self._send_wait(call.replies, durable))
            waiting.add_done_callback(self._forget_failed)
            self._wait = (call.replies, self._writes, durable, waiting)
        got = await asyncio.shield(waiting)
        if len(got) == 2 and int(got[0][0]) < 1:
            return "the primary did not write it to its append-only file in time (WAITAOF)"
        if int(got[-1]) < durable.replicas:
            return f"only {int(got[-1])} of {durable.replicas} replica(s) acknowledged it"
        return None

    def _forget_failed(self, waiting: asyncio.Future[list[Any]]) -> None:
        """A WAIT that failed (its error seen here, whoever still awaits it) is not joined by
        the enqueues that come after it: they send their own."""
        failed = waiting.cancelled() or waiting.exception() is not None
        if failed and self._wait[3] is waiting:
            self._wait = (None, 0, None, None)

    async def _send_wait(self, replies: _Replies, durable: Durable) -> list[Any]:
        """Sends WAIT (after WAITAOF, where the server can) on the connection ``replies``
        reads, never on another; returns their replies."""
        if self._aof[0] is not replies:
            try:
                info = await self.call("INFO", "server")
                info += await self.call("INFO", "persistence")
            except ResponseError:  # INFO refused (an ACL): no WAITAOF, WAIT still works
                info = b""
            self._aof = (replies, wait_for_aof(info))
        ms = max(1, round(durable.timeout * 1000))
        commands: list[tuple[Any, ...]] = [("WAIT", durable.replicas, ms)]
        if self._aof[1]:
            commands.insert(0, ("WAITAOF", 1, 0, ms))
        sent = []
        for command in commands:
            if replies is not self._replies or replies.transport is None:
                raise ReplyLostError(f"{self._name}: connection lost before WAIT")
            sent.append(await Wire.send(self, *command, blocking_for=durable.timeout))
        return [await self.reply_to(reply) for reply in sent]


def wait_for_aof(info: bytes | str) -> bool:
    """Whether ``INFO server`` + ``INFO persistence`` describe a server that can WAITAOF for
    its own append-only file: Redis 7.2 or later, with appendonly on."""
    text = info.decode() if isinstance(info, bytes) else info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    version = tuple(int(part) for part in fields.get("redis_version", "0").split(".")[:2])
    return version >= (7, 2) and fields.get("aof_enabled", "0").strip() == "1"


def durable_wire(redis: Redis) -> DurableWire:
    wire = shared_wire(redis, DurableWire)
    assert isinstance(wire, DurableWire)
    return wire


async def run_durable(
    redis: Redis,
    durable: Durable,
    enqueue: Callable[[], Awaitable[T]],
    what: tuple[str, Sequence[Task]],
) -> T:
    """Runs ``enqueue`` on the durable wire of ``redis``, then waits for its replicas; raises
    EnqueueNotDurableError, naming ``what`` (queue, tasks), if they did not all get it."""
    wire, call = durable_wire(redis), _Call()
    token = durable_context.set((wire, call))
    try:
        result = await enqueue()
    finally:
        durable_context.reset(token)
    try:
        why = await wire.confirm(call, durable)
    except RedisError as exc:
        why = f"asking the replicas failed ({exc})"
    if why is not None:
        raise EnqueueNotDurableError(_not_durable(*what, why, durable))
    return result


def _not_durable(queue: str, tasks: Sequence[Task], why: str, durable: Durable) -> str:
    what = f"task {tasks[0].func_path!r}"
    if len(tasks) > 1:
        what = f"{len(tasks)} tasks (the first: {tasks[0].func_path!r})"
    return (
        f"queue {queue!r}: {what} ran on the primary but may not survive a failover: {why} "
        f"within {durable.timeout}s. It is in the queue now, unless the primary has failed "
        "since; it may or may not be after a failover. Check whether it is there before "
        "enqueueing it again (it could run twice), or make the task idempotent; check the "
        "replicas (INFO replication) or raise Durable(timeout=...)"
    )
