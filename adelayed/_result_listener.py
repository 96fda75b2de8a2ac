"""Waiting for results without polling: one pub/sub connection per Redis client and event
loop, shared by every ``TaskHandle.result()`` call of the process on that client.

A waiter registers its id, makes sure the listener is subscribed to its queue's results
channel (the subscription confirmed), and only then reads the task's state: a result stored
before the subscription is seen by that read, one stored after it by the channel. A message
(the id of a finished task) wakes that id's waiters, which read the result. If the connection
is lost, the listener reconnects, subscribes again and wakes every waiter to read again (a
message may have been missed meanwhile). With no waiter left for LINGER seconds it closes.

A task this process enqueues while the listener is subscribed to its channel cannot end
unseen: its message comes after the subscription, on this connection, unless the connection
is lost first (each loss starts a new epoch). So ``expect()``, called as such an enqueue goes
out, keeps that task's message even before anyone waits for it, and a later ``result()`` of
the same epoch waits for the message without reading first: one round trip less.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ._backoff import backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")
LINGER = 5.0  # seconds an idle listener keeps its connection
EXPECTED_MAX = 10_000  # tasks expected at once (the oldest is forgotten: its waiter reads)
_NOT_YET = object()  # an expected task whose message has not come


class ResultListener:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._loop = asyncio.get_running_loop()
        self._waiters: dict[str, set[asyncio.Future[Any]]] = {}  # id -> its waiters
        self._confirmed: dict[str, asyncio.Future[None]] = {}  # channel -> subscribed
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._epoch = 0  # connections lost so far
        self._expected: dict[str, tuple[int, Any]] = {}  # id -> (epoch, its record so far)

    def expect(self, channel: str, id_: str) -> None:
        """Task ``id_`` is about to be enqueued: when subscribed to ``channel`` now, keeps
        its message for ``wait()``."""
        confirmed = self._confirmed.get(channel)
        if confirmed is None or not confirmed.done():
            return
        if len(self._expected) >= EXPECTED_MAX:
            del self._expected[next(iter(self._expected))]
        self._expected[id_] = (self._epoch, _NOT_YET)

    async def wait(
        self,
        channel: str,
        id_: str,
        read: Callable[[], Awaitable[T | None]],
        parse: Callable[[bytes], T | None],
        deadline: float,
    ) -> T | None:
        """``read()``'s first non-None value, read once subscribed and again at each wake
        (or ``parse()``'s of the record a message brought, when not None); None once the
        loop's clock passes ``deadline``."""
        woken, unread = self._kept(id_)
        while True:
            wake: asyncio.Future[Any] = self._loop.create_future()
            self._waiters.setdefault(id_, set()).add(wake)
            try:
                found = None if woken is None else parse(woken)
                if found is not None:
                    return found
                await self._subscribed(channel, deadline)
                found = None if unread else await read()
                unread = False
                if found is not None:
                    return found
                woken = await asyncio.wait_for(wake, self._left(deadline))
            except asyncio.TimeoutError:
                return None
            finally:
                waiting = self._waiters.get(id_)
                if waiting is not None:
                    waiting.discard(wake)
                    if not waiting:
                        del self._waiters[id_]

    def _kept(self, id_: str) -> tuple[Any, bool]:
        """What ``expect()`` kept of ``id_``: its record (None: none or unknown), and whether
        its first read can be skipped (its message is still to come, on this connection)."""
        epoch, record = self._expected.pop(id_, (-1, None))
        if epoch != self._epoch:
            return None, False
        if record is _NOT_YET:
            return None, True
        return record, False

    async def _subscribed(self, channel: str, deadline: float) -> None:
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = self._loop.create_future()
            if self._pubsub is not None:
                await self._pubsub.subscribe(channel)
        if self._reader is None or self._reader.done():
            self._reader = self._loop.create_task(self._read())
        await asyncio.wait_for(asyncio.shield(confirmed), self._left(deadline))

    def _left(self, deadline: float) -> float | None:
        return None if deadline == math.inf else max(0.0, deadline - self._loop.time())

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                await self._serve()
                failures = 0
            except (RedisError, OSError) as exc:
                failures += 1
                logger.warning("result listener: connection lost (%s); reconnecting", exc)
            finally:
                await self._close()
            if not self._waiters:  # idle (a later wait starts a reader again)
                return
            if failures:
                await asyncio.sleep(backoff(failures))

    async def _serve(self) -> None:
        """Subscribes to every channel waited on, then passes messages on until no waiter is
        left for LINGER seconds."""
        self._pubsub = pubsub = self._redis.pubsub()
        await pubsub.subscribe(*self._confirmed)
        idle_since = self._loop.time()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                self._dispatch(message)
            if self._waiters:
                idle_since = self._loop.time()
            elif self._loop.time() - idle_since > LINGER:
                return

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], _text(message["channel"])
        if kind == "subscribe":
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)  # its waiters (all woken by a loss) read again
        elif kind == "message":
            expected = self._expected
            for id_, record in _ended(message["data"]):
                for wake in self._waiters.get(id_, ()):
                    if not wake.done():
                        wake.set_result(record)
                if id_ in expected:  # None when the message carried no record: read it
                    expected[id_] = (self._epoch, record)

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for wake in waiting:
                if not wake.done():
                    wake.set_result(None)

    async def _close(self) -> None:
        """Drops the connection; every channel is subscribed again by the next reader, and
        every waiter reads again once it is (a message may be lost with the connection)."""
        pubsub, self._pubsub = self._pubsub, None
        self._epoch += 1  # what expect() kept may miss a message now
        for channel, confirmed in list(self._confirmed.items()):
            if confirmed.done():
                self._confirmed[channel] = self._loop.create_future()
        self._wake_all()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _ended(data: bytes | str) -> list[tuple[str, bytes | None]]:
    """The ids a results message names, each with its result record when it brought one: a
    msgpack array of id, record (false: not brought), id, record, ... (FINISH_MANY), or ids
    separated by spaces (FINISH, ABORT)."""
    if (
        isinstance(data, bytes)
        and data[:1]
        and (0x90 <= data[0] <= 0x9F or data[0] in (0xDC, 0xDD))
    ):
        try:
            flat = msgpack.unpackb(data, raw=True)
            pairs = zip(flat[::2], flat[1::2], strict=True)
            return [(id_.decode(), record or None) for id_, record in pairs]
        except (ValueError, TypeError, IndexError, AttributeError, msgpack.UnpackException):
            logger.warning("result listener: an unreadable results message: %r", data[:64])
            return []
    return [(id_, None) for id_ in _text(data).split()]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_listeners: weakref.WeakKeyDictionary[Any, ResultListener] = weakref.WeakKeyDictionary()


def expect(redis: Redis, channel: str, id_: str) -> None:
    """Task ``id_`` is about to be enqueued through ``redis``: see ResultListener.expect (no
    listener of ``redis`` on the running loop: nothing to do)."""
    listener = _listeners.get(redis.connection_pool)
    if listener is not None and listener._loop is asyncio.get_running_loop():
        listener.expect(channel, id_)


def listener_of(redis: Redis) -> ResultListener:
    """The listener of ``redis``'s connection pool on the running loop."""
    pool = redis.connection_pool
    listener = _listeners.get(pool)
    if listener is None or listener._loop is not asyncio.get_running_loop():
        listener = _listeners[pool] = ResultListener(redis)
    return listener
