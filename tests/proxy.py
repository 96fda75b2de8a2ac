"""A TCP proxy in front of a redis-server that loses chosen replies after the server ran them.

It reads the RESP stream both ways. Client to server, it splits the bytes into commands and asks
``classify(command, previous)`` which ones are of interest (a name, or None); ``previous`` is the
command the same client sent before it. Server to client, it splits the bytes
into replies and matches each with its command (Redis answers in order). The reply of a command
of interest is held back until it has fully arrived: Redis writes a reply only after it ran the
command, so by then the server certainly ran it. ``decide(kind, command, reply)`` then says
whether to cut: the reply is dropped and both sides of that connection are closed, so the client
sees a connection error for a command that did run. Error replies (a NOSCRIPT: nothing ran) are
always passed on. Everything else passes through untouched.

While a command of interest waits for its reply, the proxy sends nothing more of that client's
bytes to the server, so a cut loses only that reply (and commands pipelined after it never
run). Commands queued inside MULTI are not of interest: their ``+QUEUED`` proves nothing ran.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream

Classify = Callable[[list[bytes], list[bytes]], "str | None"]
Decide = Callable[[str, list[bytes], Any], bool]

_STREAM_ENDED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class IncompleteError(Exception):
    """The buffer ends before the message does."""


@dataclass(frozen=True)
class ErrorReply:
    message: bytes


_LINE_TYPES = b"+-:_,#("  # simple string, error, integer; RESP3 null, double, boolean, big number
_BULK_TYPES = b"$!="  # bulk string; RESP3 bulk error, verbatim string
_AGGREGATE_TYPES = b"*~>%|"  # array; RESP3 set, push, map, attribute


def parse(buf: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One RESP2/RESP3 message at ``pos``: (value, position after it); raises IncompleteError.

    Values: bytes for strings and numbers, ErrorReply for errors, None for nulls, lists for
    aggregates (a map flattened to key, value, ...). A line that starts with no type byte is an
    inline command: its words."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise IncompleteError
    kind, line, after = buf[pos], bytes(buf[pos + 1 : end]), end + 2
    if kind in _LINE_TYPES:
        if kind == ord("-"):
            return ErrorReply(line), after
        return (None if kind == ord("_") else line), after
    if kind in _BULK_TYPES:
        return _bulk(buf, kind, int(line), after)
    if kind in _AGGREGATE_TYPES:
        return _aggregate(buf, kind, int(line), after)
    return bytes(buf[pos:end]).split(), after


def _bulk(buf: bytes | bytearray, kind: int, size: int, pos: int) -> tuple[Any, int]:
    if size < 0:
        return None, pos
    if len(buf) < pos + size + 2:
        raise IncompleteError
    value = bytes(buf[pos : pos + size])
    return (ErrorReply(value) if kind == ord("!") else value), pos + size + 2


def _aggregate(buf: bytes | bytearray, kind: int, count: int, pos: int) -> tuple[Any, int]:
    if count < 0:
        return None, pos
    items = []
    for _ in range(count * 2 if kind in b"%|" else count):
        item, pos = parse(buf, pos)
        items.append(item)
    return items, pos


@dataclass
class _Pending:
    kind: str | None  # of interest when not None
    command: list[bytes]


@dataclass
class _Connection:
    pending: deque[_Pending] = field(default_factory=deque)
    in_multi: bool = False
    previous: list[bytes] = field(default_factory=list)  # the command sent before
    reply_decided: anyio.Event | None = None  # set while a command of interest is in flight


class RedisProxy:
    """See the module's docstring. ``cuts`` and ``seen`` count, per kind, the replies lost on
    purpose and the replies of interest that came back."""

    def __init__(self, upstream_port: int, classify: Classify, decide: Decide) -> None:
        self._upstream_port = upstream_port
        self._classify = classify
        self._decide = decide
        self.port = 0
        self.cuts: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.connections = 0

    async def _serve(self, client: SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self._upstream_port)
            except OSError:
                return
            self.connections += 1
            connection = _Connection()
            async with upstream, anyio.create_task_group() as pumps:
                pumps.start_soon(self._to_server, client, upstream, connection, pumps.cancel_scope)
                pumps.start_soon(self._to_client, upstream, client, connection, pumps.cancel_scope)

    async def _to_server(
        self,
        client: SocketStream,
        upstream: SocketStream,
        connection: _Connection,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for command, raw in _messages(client):
                kind = self._of_interest(connection, command)
                if kind is not None:
                    connection.reply_decided = anyio.Event()
                connection.pending.append(_Pending(kind, command))
                await upstream.send(raw)
                if connection.reply_decided is not None:
                    await connection.reply_decided.wait()  # sends nothing after it meanwhile
                    connection.reply_decided = None
        except _STREAM_ENDED:
            pass
        finally:
            scope.cancel()

    def _of_interest(self, connection: _Connection, command: list[bytes]) -> str | None:
        name = command[0].upper() if command else b""
        previous, connection.previous = connection.previous, command
        if name == b"MULTI":
            connection.in_multi = True
        elif name in (b"EXEC", b"DISCARD"):
            connection.in_multi = False
        elif not connection.in_multi:
            return self._classify(command, previous)
        return None

    async def _to_client(
        self,
        upstream: SocketStream,
        client: SocketStream,
        connection: _Connection,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for reply, raw in _messages(upstream):
                if raw.startswith(b">") or not connection.pending:
                    # a RESP3 push, or a RESP2 pub/sub message: it answers no command
                    await client.send(raw)
                    continue
                pending = connection.pending.popleft()
                if pending.kind is not None and self._cut(pending, reply):
                    return  # the reply is dropped; finally closes both sides
                await client.send(raw)
                if pending.kind is not None and connection.reply_decided is not None:
                    connection.reply_decided.set()
        except _STREAM_ENDED:
            pass
        finally:
            scope.cancel()

    def _cut(self, pending: _Pending, reply: Any) -> bool:
        kind = pending.kind
        assert kind is not None
        if isinstance(reply, ErrorReply):
            return False
        self.seen[kind] += 1
        if not self._decide(kind, pending.command, reply):
            return False
        self.cuts[kind] += 1
        return True


async def _messages(stream: SocketStream) -> AsyncIterator[tuple[Any, bytes]]:
    """Each whole RESP message read from ``stream``: (parsed, raw bytes)."""
    buf = bytearray()
    while True:
        buf += await stream.receive()
        while buf:
            try:
                message, end = parse(buf)
            except IncompleteError:
                break
            raw = bytes(buf[:end])
            del buf[:end]
            yield message, raw


@asynccontextmanager
async def redis_proxy(
    upstream_port: int, classify: Classify, decide: Decide
) -> AsyncIterator[RedisProxy]:
    """Runs a RedisProxy on a free port of 127.0.0.1 (``proxy.port``) until the block exits;
    then closes every connection through it."""
    proxy = RedisProxy(upstream_port, classify, decide)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, proxy._serve)
        try:
            yield proxy
        finally:
            group.cancel_scope.cancel()
