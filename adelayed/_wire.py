"""adelayed's own connections to Redis: a worker's fetch loop has one, and the producers of a
client share one. Commands go out as RESP; replies are parsed by hiredis as they arrive and handed
straight to the call waiting for them.

redis-py opens the connection (address, TLS, AUTH, SELECT, client name: whatever the client was
configured with) and the wire takes its socket over, leaving the connection checked out of the
client's pool, so closing the client closes it. From then on no asyncio stream, lock or pool sits
between a reply and its caller: a round trip costs a quarter to a half of redis-py's
(``benchmarks/round_trip.py``), and concurrent calls are pipelined on the one socket.

Replies come back in the order commands went out, so a call whose caller was cancelled keeps
its place: its reply is still read, and dropped, and the connection stays in step. A lost
connection fails every waiting call with redis-py's ``ConnectionError``; the next call opens a
new one.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections import deque
from typing import Any, NoReturn

import hiredis
from redis.asyncio import ConnectionPool, Redis
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


class _ReplyError(Exception):
    """What hiredis makes of an error reply; turned into a redis-py exception when raised."""


def _raise_error(reply: _ReplyError) -> NoReturn:
    message = str(reply)
    code, _, rest = message.partition(" ")
    error_class = _ERRORS.get(code)
    if error_class is None:
        raise ResponseError(message)
    raise error_class(rest)


class _Replies(asyncio.Protocol):
    """Feeds the socket's bytes to hiredis and resolves the oldest waiting call per reply."""

    def __init__(self, name: str, stream_protocol: asyncio.BaseProtocol) -> None:
        self._name = name
        self._stream_protocol = stream_protocol  # redis-py's, told when the socket closes
        self._parser = hiredis.Reader(replyError=_ReplyError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

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
            self.close(ConnectionError(f"{self._name}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(ConnectionError(f"{self._name}: connection lost ({exc or 'closed by server'})"))
        self._stream_protocol.connection_lost(exc)  # so redis-py's disconnect() completes

    def close(self, error: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # a waiter nobody awaits any more must not warn


class Wire:
    """One connection, opened on first use (and again after a loss) from ``redis``'s settings.

    The connection is checked out of the client's pool and stays in it, so closing the client
    (``aclose()``, or its pool's ``disconnect()``) closes the wire's socket too.

    Calls may overlap (they are pipelined); a blocking command holds up the ones behind it.
    ``socket_timeout`` from the client's settings bounds the wait for each reply, plus the time
    a blocking command ahead of it may take."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._pool = redis.connection_pool
        self._name = name
        self._replies: _Replies | None = None
        self._connection: AbstractConnection | None = None  # whose socket the wire drives
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Replies] | None = None
        timeout = self._pool.connection_kwargs.get("socket_timeout")
        self._socket_timeout: float | None = timeout
        self._blocked_until = 0.0  # loop time until which a blocking command may hold replies

    async def call(self, *command: Any) -> Any:
        """Sends ``command`` and returns its reply; raises its error reply as redis-py would."""
        return await self.reply_to(await self.send(*command))

    async def send(self, *command: Any, blocking_for: float = 0) -> asyncio.Future[Any]:
        """Writes ``command``; the returned future gets its reply (or its error reply).
        ``blocking_for``: the seconds a blocking command may wait before it replies."""
        loop = asyncio.get_running_loop()
        replies = self._replies
        if replies is None or replies.transport is None or loop is not self._loop:
            replies = await self._connect()
        assert replies.transport is not None
        waiter: asyncio.Future[Any] = loop.create_future()
        replies.waiting.append(waiter)
        replies.transport.write(hiredis.pack_command(command))
        if blocking_for:
            self._blocked_until = max(self._blocked_until, loop.time() + blocking_for)
        return waiter

    async def reply_to(self, waiter: asyncio.Future[Any]) -> Any:
        """Awaits the reply ``waiter`` stands for. Cancelled meanwhile, ``waiter`` is too, and
        its reply is read and dropped in turn."""
        timeout = self._socket_timeout
        try:
            if timeout is None:
                reply = await waiter
            else:
                blocked = max(0.0, self._blocked_until - asyncio.get_running_loop().time())
                reply = await asyncio.wait_for(waiter, timeout + blocked)
        except asyncio.TimeoutError:
            self.close()  # the reply may still come: the connection is out of step
            raise TimeoutError(f"{self._name}: no reply within {timeout}s") from None
        if isinstance(reply, _ReplyError):
            _raise_error(reply)
        return reply

    def close(self) -> None:
        """Closes the socket; calls still waiting fail with ConnectionError."""
        if self._replies is not None:
            self._replies.close(ConnectionError(f"{self._name}: connection closed"))
            self._replies = None

    async def aclose(self) -> None:
        """Closes the socket and gives its connection back to the client's pool (call it on
        the event loop the wire was used on)."""
        self.close()
        await self._give_back()

    async def _give_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
            await self._pool.release(connection)

    async def _connect(self) -> _Replies:
        """Opens the connection; calls arriving meanwhile wait for the same one."""
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Replies:
        if self._loop is asyncio.get_running_loop():
            self.close()  # lost: fail whatever still waits on it
            await self._give_back()
        else:  # made on another event loop, which may be gone: leave its socket be
            self._replies = self._connection = None
        connection = await checkout(self._pool)
        writer = getattr(connection, "_writer", None)
        transport = getattr(writer, "transport", None)
        if not isinstance(transport, asyncio.Transport):  # redis-py's internals changed
            await self._pool.release(connection)
            raise ConfigurationError(
                f"{self._name}: cannot take over the socket of a redis-py "
                f"{type(connection).__name__}; install a redis-py version within the range "
                "adelayed's pyproject.toml allows"
            )
        replies = _Replies(self._name, transport.get_protocol())
        transport.set_protocol(replies)
        replies.connection_made(transport)
        self._replies, self._connection = replies, connection
        self._loop = asyncio.get_running_loop()
        return replies


# redis-py 5.0 requires a command name here; later versions deprecate passing one.
_CHECKOUT_NEEDS_NAME = (
    inspect.signature(ConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
)


async def checkout(pool: ConnectionPool) -> AbstractConnection:
    """A connected connection from ``pool``, until ``pool.release()``."""
    if _CHECKOUT_NEEDS_NAME:
        return await pool.get_connection("_")  # type: ignore[no-any-return, no-untyped-call]
    return await pool.get_connection()  # type: ignore[no-any-return, no-untyped-call]


_shared: weakref.WeakKeyDictionary[Redis, Wire] = weakref.WeakKeyDictionary()


def shared_wire(redis: Redis) -> Wire:
    """The wire the producers using ``redis`` share: any number of concurrent enqueues go out
    pipelined on its one connection (redis-py's pool would open one connection per command in
    flight, up to its limit, then fail)."""
    wire = _shared.get(redis)
    if wire is None:
        wire = _shared[redis] = Wire(redis, "adelayed's enqueue connection")
    return wire
