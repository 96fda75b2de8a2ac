"""What an enqueue raises when Redis does not answer, loses the connection, cannot be reached,
or is not a Redis server at all: an AdelayedError that says whether the task may have been
added, within the queue's ``enqueue_timeout``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis.asyncio as redis

from adelayed import (
    ConfigurationError,
    EnqueueError,
    EnqueueOutcomeUnknownError,
    EnqueueTimeoutError,
    PyTask,
    Queue,
)
from adelayed import _protocol as protocol
from adelayed.embedded import EmbeddedRedis
from tests.proxy import redis_proxy

TASK = PyTask("mod:f", args=(1,))


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    """A server of the test's own, since these tests freeze it."""
    with EmbeddedRedis() as own:
        yield own


@pytest.fixture
async def own_client(server: EmbeddedRedis) -> AsyncIterator[redis.Redis]:
    conn = redis.Redis.from_url(server.url)
    yield conn
    await conn.aclose()


@contextmanager
def frozen(server: EmbeddedRedis) -> Iterator[None]:
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@contextmanager
def takes_about(seconds: float) -> Iterator[None]:
    started = time.monotonic()
    yield
    assert seconds * 0.9 <= time.monotonic() - started < seconds + 1


def test_enqueue_timeout_is_a_setting_of_the_queue(client: redis.Redis) -> None:
    assert Queue("jobs", client).enqueue_timeout == 5
    assert Queue("jobs", client, enqueue_timeout=None).enqueue_timeout is None
    assert Queue("jobs", client, enqueue_timeout=0.25).enqueue_timeout == 0.25
    for wrong in (0, -1, float("nan"), "5"):
        with pytest.raises(ConfigurationError, match="enqueue_timeout"):
            Queue("jobs", client, enqueue_timeout=wrong)  # type: ignore[arg-type]


async def test_an_enqueue_to_a_frozen_redis_times_out_saying_it_may_have_been_added(
    server: EmbeddedRedis, own_client: redis.Redis
) -> None:
    queue = Queue("jobs", own_client, enqueue_timeout=0.5)
    await queue.enqueue(TASK)  # connected
    with frozen(server), takes_about(0.5), pytest.raises(EnqueueTimeoutError) as raised:
        await queue.enqueue(TASK)
    message = str(raised.value)
    assert "queue 'jobs'" in message and "'mod:f'" in message
    assert "may or may not have been enqueued" in message
    assert "enqueue_timeout" in message and "idempotent" in message
    assert isinstance(raised.value, TimeoutError)
    await queue.enqueue(TASK)  # a new connection once Redis answers again
    assert await queue.len() == 3  # the one that timed out was added after all


async def test_an_enqueue_many_to_a_frozen_redis_times_out_too(
    server: EmbeddedRedis, own_client: redis.Redis
) -> None:
    queue = Queue("jobs", own_client, enqueue_timeout=0.3)
    await queue.len()
    many = [TASK, PyTask("mod:g")]
    with frozen(server), takes_about(0.3), pytest.raises(EnqueueTimeoutError, match="may or"):
        await queue.enqueue_many(many)


async def test_connecting_to_a_frozen_redis_is_bounded_too_and_adds_nothing(
    server: EmbeddedRedis, own_client: redis.Redis
) -> None:
    queue = Queue("jobs", own_client, enqueue_timeout=0.3)
    # The connection opens (the kernel accepts it) but its handshake gets no reply.
    with (
        frozen(server),
        takes_about(0.3),
        pytest.raises(EnqueueError, match="nothing was") as raised,
    ):
        await queue.enqueue(TASK)
    assert not isinstance(raised.value, EnqueueOutcomeUnknownError)
    assert await queue.len() == 0


async def test_socket_timeout_bounds_an_enqueue_without_a_deadline(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.url, socket_timeout=0.3)
    queue = Queue("jobs", client, enqueue_timeout=None)
    try:
        await queue.enqueue(TASK)
        expected = pytest.raises(EnqueueTimeoutError, match=r"may or may not.*within 0.3s")
        with frozen(server), takes_about(0.3), expected:
            await queue.enqueue(TASK)
    finally:
        await client.aclose()


def _is_enqueue(command: list[bytes], previous: list[bytes]) -> str | None:
    is_script = command[:1] == [b"EVALSHA"] and command[1:2] == [protocol.ENQUEUE.sha.encode()]
    return "enqueue" if is_script else None


def _always(kind: str, command: list[bytes], reply: Any) -> bool:
    return True


async def test_a_connection_lost_after_sending_says_the_task_may_have_been_added(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    async with redis_proxy(redis_server.port, _is_enqueue, _always) as proxy:
        through_proxy = redis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}")
        queue = Queue("jobs", through_proxy)
        try:
            with pytest.raises(EnqueueOutcomeUnknownError) as raised:
                await queue.enqueue(TASK)
            with pytest.raises(EnqueueOutcomeUnknownError, match="may or may not"):
                await queue.enqueue_many([TASK, TASK])
        finally:
            await through_proxy.aclose()
    assert proxy.cuts == {"enqueue": 2}
    message = str(raised.value)
    assert "queue 'jobs'" in message and "'mod:f'" in message
    assert "may or may not have been enqueued" in message and "idempotent" in message
    assert not isinstance(raised.value, EnqueueTimeoutError)
    assert await client.llen("jobs") == 3  # Redis ran both


async def test_a_refused_connection_says_nothing_was_added(client: redis.Redis) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{port}")
    queue = Queue("jobs", unreachable)
    try:
        with pytest.raises(EnqueueError, match="nothing was added") as raised:
            await queue.enqueue(TASK)
    finally:
        await unreachable.aclose()
    assert not isinstance(raised.value, EnqueueOutcomeUnknownError)
    assert "queue 'jobs'" in str(raised.value) and "'mod:f'" in str(raised.value)


async def test_an_enqueue_after_a_flushed_script_cache_loads_the_script(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(TASK)
    await client.script_flush()
    await queue.enqueue(TASK)
    assert await queue.len() == 2


class _NoSocket:
    """What an in-process fake (fakeredis) gives redis-py instead of a socket's writer."""

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class InProcessConnection(redis.Connection):
    """A connection to no server, as fakeredis's are."""

    async def _connect(self) -> None:
        self._reader = asyncio.StreamReader()
        self._writer = _NoSocket()  # type: ignore[assignment]

    async def on_connect(self) -> None:  # no handshake: nothing answers
        pass

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        pass

    async def can_read(self) -> bool:  # nothing waiting to be read
        return False


async def test_a_fake_redis_is_refused_with_a_pointer_to_the_embedded_server() -> None:
    pool = redis.ConnectionPool(connection_class=InProcessConnection)
    fake = redis.Redis(connection_pool=pool)
    queue = Queue("jobs", fake)
    try:
        for call in (lambda: queue.enqueue(TASK), queue.len):
            with pytest.raises(ConfigurationError) as raised:
                await call()
            message = str(raised.value)
            assert "needs a real Redis server" in message and "fakeredis" in message
            assert "adelayed.embedded.EmbeddedRedis" in message
            assert "pip install 'adelayed[embedded]'" in message
        assert list(pool._in_use_connections) == []  # nothing left checked out
    finally:
        await fake.aclose()
