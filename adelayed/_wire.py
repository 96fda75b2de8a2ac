"""adelayed's own connections to Redis: a worker's fetch loop has one, and everything a Queue
sends through a client shares one per event loop (``shared_wire``). Commands go out as RESP;
replies are parsed by hiredis as they arrive and handed straight to the call waiting for them.

redis-py opens each connection (address, TLS, AUTH, SELECT, client name: whatever the client
was configured with): a new one of the pool's connection class, on the running event loop, kept
in the pool's in-use set so closing the client closes it; the wire then takes its socket over
(``_takeover``). From then on no asyncio stream, lock or pool sits between a reply and its
caller: a round trip costs a quarter to a half of redis-py's (``benchmarks/round_trip.py``), and
concurrent calls are pipelined on the one socket.

Event loops: a socket belongs to the loop it was made on, so a wire never takes over one made on
another loop (redis-py's pool would hand back such a connection, and a reply to it would never be
read). A wire used from a new loop opens a new connection there; ``shared_wire`` keeps one wire
per client and loop, so two loops alive at once (a loop per thread) each have their own. A loop
that is closed cannot close its sockets any more: the next wire opened on the same pool, from any
loop, closes them and drops them from the pool's in-use set, and closing the client closes them
from any loop or thread (``_takeover``). Each call costs one loop identity check for all this.

Replies come back in the order commands went out, so a call whose caller was cancelled keeps
its place: its reply is still read, and dropped, and the connection stays in step. A connection
lost after a command was sent fails every waiting call with ``ReplyLostError``; a reply that
does not come before the caller's deadline, or within the client's ``socket_timeout``, raises
``ReplyTimeoutError`` and closes the connection. Either way the command may or may not have run.
The next call opens a new connection; an error while opening it means nothing was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
import weakref
from collections import deque
from typing import Any, NoReturn

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

from ._takeover import (
    close_orphans,
    close_without_loop,
    give_back,
    new_connection,
    take_over,
    transport_of,
)
from .errors import ConfigurationError

# Error replies by their first word, as redis-py raises them (so callers catch the same classes
# whichever path a command took).
_ERRORS: dict[str, type[Exception]] = {
    "ERR": ResponseError,
    "NOSCRIPT": NoScriptError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "LOADING": BusyLoadingError,
    "NOPERM": NoPermissionError,
}


class ReplyLostError(ConnectionError):
    """The connection was lost or closed after the command was sent: it may or may not have
    run."""


class ReplyTimeoutError(TimeoutError):
    """No reply in time (the connection is closed): the command may or may not have run.
    ``deadline``: the caller's deadline passed, not the client's ``socket_timeout``."""

    def __init__(self, message: str, *, deadline: bool) -> None:
        super().__init__(message)
        self.deadline = deadline


class _ReplyError(Exception):
    """What hiredis makes of an error reply; turned into a redis-py exception when raised."""


class _ExpiredError(Exception):
    """Set on a waiter whose time ran out; ``deadline``: its caller's (not socket_timeout)."""

    def __init__(self, deadline: bool) -> None:
        super().__init__()
        self.deadline = deadline


def _raise_error(reply: _ReplyError) -> NoReturn:
    message = str(reply)
    code, _, rest = message.partition(" ")
    error_class = _ERRORS.get(code)
    if error_class is None:
        raise ResponseError(message)
    raise error_class(rest)


class _Replies(asyncio.Protocol):
    """Feeds the socket's bytes to hiredis and resolves the oldest waiting call per reply."""

    def __init__(self, name: str, transport: asyncio.Transport) -> None:
        self._name = name
        self._stream_protocol = transport.get_protocol()  # redis-py's, told when it closes
        self._parser = hiredis.Reader(replyError=_ReplyError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.loop = asyncio.get_running_loop()  # the socket's
        self.socket = transport  # kept to close it if its loop is closed first
        self.transport: asyncio.Transport | None = transport  # None once closed
        # Calls that must be answered in time, oldest first: (loop time, waiter, deadline?).
        self._watched: deque[tuple[float, asyncio.Future[Any], bool]] = deque()
        self._timer: asyncio.TimerHandle | None = None  # one for all of them
        self._timer_at = math.inf
        transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            while (reply := self._parser.gets()) is not False:
                if not self.waiting:
                    raise hiredis.ProtocolError("a reply arrived that no command asked for")
                waiter = self.waiting.popleft()
                if not waiter.done():
                    waiter.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.close(ReplyLostError(f"{self._name}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(ReplyLostError(f"{self._name}: connection lost ({exc or 'closed by server'})"))
        self._stream_protocol.connection_lost(exc)  # redis-py's reader sees the end too

    def watch(self, waiter: asyncio.Future[Any], when: float, deadline: bool) -> None:
        """Fails ``waiter`` with _ExpiredError, and closes the connection, if no reply came by
        ``when``. Costs no timer per call: one timer waits for the earliest time."""
        watched = self._watched
        while watched and watched[0][1].done():
            watched.popleft()
        watched.append((when, waiter, deadline))
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self.loop.call_at(when, self._expire), when

    def _expire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self.loop.time() + 0.001  # a timer may fire within the clock's resolution early
        pending = [entry for entry in self._watched if not entry[1].done()]
        due = [entry for entry in pending if entry[0] <= now]
        if not due:
            self._watched = deque(pending)
            if pending:
                when = min(entry[0] for entry in pending)
                self._timer, self._timer_at = self.loop.call_at(when, self._expire), when
            return
        for _, waiter, deadline in due:
            waiter.set_exception(_ExpiredError(deadline))
            waiter.exception()  # raised to its caller, if it still waits
        # The server does not answer: the next call opens a new connection.
        self.close(ReplyLostError(f"{self._name}: connection closed: a reply came too late"))

    def close(self, error: Exception) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._watched.clear()
        if self.transport is not None:
            # abort() closes the socket on the loop's next turn; the server should see the end
            # now, before anything sent after this (a blocked command of ours gives up first).
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.transport.abort()
            self.transport = None
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # a waiter nobody awaits any more must not warn

    def orphan(self) -> None:
        """Closes the socket of a closed event loop, from another one."""
        self.waiting.clear()  # the closed loop's futures: nothing awaits them any more
        self._watched.clear()
        self._timer = self.transport = None
        close_without_loop(self.socket)

    def close_from_anywhere(self) -> None:
        """Closes the socket from any event loop or thread (redis-py's disconnect())."""
        error = ReplyLostError(f"{self._name}: connection closed with its client")
        with contextlib.suppress(RuntimeError):  # no running loop
            if asyncio.get_running_loop() is self.loop:
                self.close(error)
                return
        try:
            self.loop.call_soon_threadsafe(self.close, error)
        except RuntimeError:  # the loop is closed
            self.orphan()


class Wire:
    """One connection, opened on first use (and again after a loss, or on another event loop)
    from ``redis``'s settings.

    The connection is in the client's pool's in-use set, so closing the client (``aclose()``,
    or its pool's ``disconnect()``) closes the wire's socket too.

    Calls may overlap (they are pipelined); a blocking command holds up the ones behind it.
    ``socket_timeout`` from the client's settings bounds the wait for each reply, plus the time
    a blocking command ahead of it may take; a caller's ``deadline`` (loop time) bounds its
    call as a whole, opening the connection included."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._pool = redis.connection_pool
        self._name = name
        self._replies: _Replies | None = None
        self._connection: AbstractConnection | None = None  # whose socket the wire drives
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[_Replies] | None = None
        timeout = self._pool.connection_kwargs.get("socket_timeout")
        self._socket_timeout: float | None = timeout
        self._blocked_until = 0.0  # loop time until which a blocking command may hold replies

    async def call(self, *command: Any, deadline: float | None = None) -> Any:
        """Sends ``command`` and returns its reply; raises its error reply as redis-py would."""
        return await self.reply_to(await self.send(*command, deadline=deadline))

    async def send(
        self, *command: Any, blocking_for: float = 0, deadline: float | None = None
    ) -> asyncio.Future[Any]:
        """Writes ``command``; the returned future gets its reply (or its error reply).
        ``blocking_for``: the seconds a blocking command may wait before it replies. An error
        raised here (opening the connection) means nothing was sent."""
        loop = asyncio.get_running_loop()
        replies = self._replies
        if replies is None or replies.transport is None or loop is not self._loop:
            replies = await self._connect(deadline)
        if replies.transport is None:  # closed (by the server) as soon as it was opened
            raise ConnectionError(f"{self._name}: connection lost before sending; nothing sent")
        waiter: asyncio.Future[Any] = loop.create_future()
        replies.waiting.append(waiter)
        replies.transport.write(hiredis.pack_command(command))
        if blocking_for:
            self._blocked_until = max(self._blocked_until, loop.time() + blocking_for)
        timeout = self._socket_timeout
        if timeout is not None:  # the reply is due then, or after the blocking ahead of it
            limit = max(loop.time(), self._blocked_until) + timeout
            if deadline is None or limit < deadline:
                replies.watch(waiter, limit, deadline=False)
                return waiter
        if deadline is not None:
            replies.watch(waiter, deadline, deadline=True)
        return waiter

    async def reply_to(self, waiter: asyncio.Future[Any]) -> Any:
        """Awaits the reply ``waiter`` stands for. Cancelled meanwhile, ``waiter`` is too, and
        its reply is read and dropped in turn."""
        try:
            reply = await waiter
        except _ExpiredError as exc:
            message = f"{self._name}: no reply in time"
            if not exc.deadline:
                message = f"{self._name}: no reply within {self._socket_timeout}s (socket_timeout)"
            raise ReplyTimeoutError(message, deadline=exc.deadline) from None
        if isinstance(reply, _ReplyError):
            if str(reply).startswith("READONLY"):  # the primary became a replica (failover)
                self.close()  # the next call connects again: to the new primary, via Sentinel
            _raise_error(reply)
        return reply

    def close(self) -> None:
        """Closes the socket; calls still waiting fail with ReplyLostError."""
        if self._replies is not None:
            self._replies.close(ReplyLostError(f"{self._name}: connection closed"))
            self._replies = None

    async def aclose(self) -> None:
        """Closes the socket and drops its connection from the client's pool (call it on the
        event loop the wire was used on)."""
        self.close()
        await self._give_back()

    async def _give_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await give_back(self._pool, connection)

    async def _connect(self, deadline: float | None) -> _Replies:
        """Opens the connection; calls arriving meanwhile wait for the same one."""
        loop = asyncio.get_running_loop()
        connecting = self._connecting
        if connecting is None or connecting.get_loop() is not loop:
            connecting = self._connecting = loop.create_task(self._open())
            connecting.add_done_callback(_seen)  # its callers may all be gone (cancelled)
        try:
            if deadline is None:
                return await asyncio.shield(connecting)
            return await asyncio.wait_for(asyncio.shield(connecting), deadline - loop.time())
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self._name}: no connection before the deadline") from None
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Replies:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            self.close()  # lost: fail whatever still waits on it
            await self._give_back()
        else:  # made on another loop: closed there, or below once that loop is closed
            self._replies = self._connection = None
        await close_orphans(self._pool)
        connection = await new_connection(self._pool)
        try:
            transport = transport_of(connection, self._name)
        except ConfigurationError:
            await give_back(self._pool, connection)
            raise
        replies = _Replies(self._name, transport)
        take_over(self._pool, connection, replies)
        self._replies, self._connection, self._loop = replies, connection, loop
        return replies


def _seen(task: asyncio.Task[Any]) -> None:
    """Marks the failure of a connect nobody waits for any more as seen: the next call
    connects again and reports its own failure (asyncio would log a traceback at exit)."""
    if not task.cancelled():
        task.exception()


_Shared = dict[tuple[asyncio.AbstractEventLoop, type["Wire"]], "Wire"]
_shared: weakref.WeakKeyDictionary[Redis, _Shared] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()  # loops of different threads may ask at once


def shared_wire(redis: Redis, kind: type[Wire] = Wire) -> Wire:
    """The wire every Queue call through ``redis`` on the running event loop shares: any number
    of concurrent enqueues go out pipelined on its one connection (redis-py's pool would open
    one connection per command in flight, up to its limit, then fail). Each loop has its own.
    ``kind``: a Wire subclass, for a wire of its own beside the shared one (adelayed._durable)."""
    loop = asyncio.get_running_loop()
    with _shared_lock:
        wires = _shared.setdefault(redis, {})
        wire = wires.get((loop, kind))
        if wire is None:
            for closed in [other for other in wires if other[0].is_closed()]:
                del wires[closed]  # their connections are closed by the next wire that opens
            name = "adelayed's connection" if kind is Wire else f"adelayed's {kind.__name__}"
            wire = wires[loop, kind] = kind(redis, name)
    return wire
