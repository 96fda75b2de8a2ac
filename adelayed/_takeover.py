"""How a wire (``_wire``) gets its connection from a client's pool and gives it up, across event
loops: a new connection of the pool's class, made on the running loop and kept in the pool's
in-use set (so closing the client closes it); its socket taken over by the wire.

A socket belongs to the loop it was made on, and asyncio finishes closing one in a callback on
that loop. So a closed loop's connections are closed here instead: by the next wire that opens
a connection of the same pool, on any loop (``close_orphans``), or by closing the client from
any loop or thread (``Closer``, which stands in for redis-py's stream writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from typing import TYPE_CHECKING, Any, cast

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AuthenticationError

from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._wire import _Replies


class Closer:
    """Stands in for redis-py's stream writer on a connection a wire took over, so that closing
    the client (redis-py's ``disconnect()``) closes the wire's socket from whichever event loop
    or thread it runs in, and never waits on a future of another loop."""

    def __init__(self, replies: _Replies, writer: object) -> None:
        self._replies = replies
        self._writer = writer  # redis-py's, kept from being collected while the socket is open

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._replies.socket.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._replies.transport is None

    def close(self) -> None:
        self._replies.close_from_anywhere()

    async def wait_closed(self) -> None:
        pass


def close_without_loop(transport: asyncio.Transport) -> None:
    """Closes a transport whose event loop is closed. asyncio finishes a close (it closes the
    socket) in a callback on the transport's loop, which will not run again: that step is taken
    here. For TLS, the same for the TCP transport beneath."""
    beneath = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    layer: Any
    for layer in (transport, beneath):
        if layer is None:
            continue
        with contextlib.suppress(RuntimeError):  # "Event loop is closed"
            layer.abort()
        finish = getattr(layer, "_call_connection_lost", None)
        if finish is not None and getattr(layer, "_sock", None) is not None:
            with contextlib.suppress(RuntimeError):
                finish(None)


_TRANSPORT_METHODS = ("get_extra_info", "get_protocol", "set_protocol", "write", "abort")


def transport_of(connection: AbstractConnection, name: str) -> asyncio.Transport:
    """The transport of ``connection``'s socket, or ConfigurationError when it has none."""
    transport = getattr(getattr(connection, "_writer", None), "transport", None)
    if all(callable(getattr(transport, method, None)) for method in _TRANSPORT_METHODS):
        return cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport's
    kind = type(connection)
    if kind.__module__.startswith("redis."):  # redis-py's own connection: its internals changed
        raise ConfigurationError(
            f"{name}: cannot take over the socket of a redis-py {kind.__name__}; install a "
            "redis-py version within the range adelayed's pyproject.toml allows"
        )
    raise ConfigurationError(
        f"{name}: adelayed needs a real Redis server, and this client's connections "
        f"({kind.__module__}.{kind.__qualname__}) have no socket to one: fakeredis and other "
        "in-process fakes are not supported. For tests, run a private redis-server with "
        "adelayed.embedded.EmbeddedRedis (pip install 'adelayed[embedded]')"
    )


def in_use(pool: ConnectionPool) -> Any:
    """The pool's set of connections checked out (redis-py keeps no public handle on it)."""
    return pool._in_use_connections


async def new_connection(pool: ConnectionPool) -> AbstractConnection:
    """A new connection of ``pool``'s class, connected on the running loop, in the pool's
    in-use set. Never one of the pool's idle connections: it may belong to another loop."""
    connection: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
    checked_out = in_use(pool)
    checked_out.add(connection)
    retry = connection.retry
    connection.retry = _RefusalsNotRetried(retry)  # type: ignore[assignment]
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
    except BaseException:
        checked_out.discard(connection)
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=True)
        raise
    finally:
        connection.retry = retry
    return connection


class _RefusedError(Exception):
    """Carries a refusal through redis-py's Retry, which retries every ConnectionError."""


class _RefusalsNotRetried:
    """The pool's Retry, except that a wrong or missing password (an AuthenticationError, which
    redis-py counts as a ConnectionError) fails at once: redis-py 6+ retries the whole handshake
    with backoff, which took seconds to report what no retry can fix."""

    def __init__(self, retry: Any) -> None:
        self._retry = retry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._retry, name)

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        async def attempt() -> Any:
            try:
                return await do()
            except AuthenticationError as exc:
                raise _RefusedError(exc) from exc

        try:
            return await self._retry.call_with_retry(attempt, fail, *args, **kwargs)
        except _RefusedError as refused:
            raise refused.args[0] from None


# The connections wires took over, by pool: closed by the wire that gives them up, or, when their
# event loop was closed first, by the next wire that opens a connection of the same pool.
_taken: weakref.WeakKeyDictionary[ConnectionPool, dict[AbstractConnection, _Replies]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()  # wires of one pool may open on loops of different threads


def take_over(pool: ConnectionPool, connection: AbstractConnection, replies: _Replies) -> None:
    """Records that ``replies`` drives ``connection``'s socket now."""
    connection._writer = Closer(replies, connection._writer)  # type: ignore[assignment]
    with _lock:
        _taken.setdefault(pool, {})[connection] = replies


async def give_back(pool: ConnectionPool, connection: AbstractConnection) -> None:
    """Disconnects a connection taken over on the running loop; drops it from the pool."""
    with _lock:
        _taken.get(pool, {}).pop(connection, None)
    try:
        await connection.disconnect()
    finally:
        in_use(pool).discard(connection)


async def close_orphans(pool: ConnectionPool) -> None:
    """Closes the connections of ``pool`` that wires made on event loops closed since."""
    with _lock:
        taken = _taken.get(pool, {})
        orphans = [(conn, replies) for conn, replies in taken.items() if replies.loop.is_closed()]
        for connection, _ in orphans:
            del taken[connection]
    for connection, replies in orphans:
        replies.orphan()
        await connection.disconnect()  # the Closer: waits on nothing of the closed loop
        in_use(pool).discard(connection)
