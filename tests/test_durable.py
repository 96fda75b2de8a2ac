"""Durable enqueues (adelayed._durable) on a real primary and replica: an acknowledged durable
enqueue is on the replica, a replica that does not answer makes it fail loudly, concurrent ones
share one WAIT, and over 20 failovers no acknowledged durable task is lost while plain enqueues
lose theirs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import cast

import pytest
import redis.asyncio as redis

from adelayed import (
    ConfigurationError,
    Durable,
    EnqueueNotDurableError,
    EnqueueOutcomeUnknownError,
    PyTask,
    Queue,
    decode_task,
)
from adelayed._durable import durable_setting, durable_wire, run_durable, wait_for_aof
from adelayed.embedded import EmbeddedRedis
from tests import tasks
from tests.helpers import FAST_SYNC, start_replica

_FAST_SYNC = FAST_SYNC


async def _in_sync(primary: redis.Redis, replicas: int = 1, within: float = 20) -> None:
    """Waits until ``replicas`` replicas acknowledge a write (a new replica answers WAIT only
    some time after its full sync)."""
    deadline = time.monotonic() + within
    while await primary.incr("sync-probe") and await primary.wait(replicas, 100) < replicas:
        assert time.monotonic() < deadline, "the replica never caught up"
    await primary.delete("sync-probe")


@contextmanager
def _paused(server: EmbeddedRedis) -> Iterator[None]:
    """The server stopped (SIGSTOP): it holds its connections but answers nothing."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis]]:
    with EmbeddedRedis(_FAST_SYNC) as primary:
        replica = start_replica(primary)
        client = redis.Redis(port=primary.port)
        try:
            await _in_sync(client)
            yield primary, replica, client
        finally:
            await client.aclose()
            replica.close()


def _task(n: int) -> PyTask:
    return PyTask(tasks.async_record, (n,))


def test_durable_settings_are_checked() -> None:
    assert durable_setting(True, None) == Durable(replicas=1, timeout=1.0)
    assert durable_setting(None, Durable(2)) == Durable(2)
    assert durable_setting(False, Durable(2)) is None
    for wrong in (dict(replicas=0), dict(replicas=1.5), dict(timeout=0), dict(timeout=-1)):
        with pytest.raises(ConfigurationError, match="Durable"):
            Durable(**wrong)
    with pytest.raises(ConfigurationError, match="durable='yes'"):
        durable_setting("yes", None)  # type: ignore[arg-type]


def test_waitaof_only_where_the_server_has_it_and_aof_is_on() -> None:
    def info(version: str, aof: int) -> bytes:
        return f"redis_version:{version}\r\n# Persistence\r\naof_enabled:{aof}\r\n".encode()

    assert wait_for_aof(info("7.2.4", 1))
    assert wait_for_aof(info("8.0.0", 1))
    assert not wait_for_aof(info("7.2.4", 0))  # WAITAOF 1 would be refused
    assert not wait_for_aof(info("7.0.15", 1))  # no WAITAOF before 7.2: WAIT only
    assert not wait_for_aof(info("6.2.6", 1))
    assert not wait_for_aof(b"")  # INFO refused


async def test_an_acknowledged_durable_enqueue_is_on_the_replica(
    pair: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis],
) -> None:
    _, replica, client = pair
    queue = Queue("jobs", client, durable=True)
    on_replica = redis.Redis(port=replica.port)
    try:
        for n in range(20):
            await queue.enqueue(_task(n))  # plain: delayed's bytes
            await queue.enqueue(_task(100 + n), delay=60)  # enveloped
            assert await on_replica.llen("jobs") == n + 1
            assert await on_replica.zcard("jobs_scheduled") == n + 1
        assert await queue.enqueue_many([_task(n) for n in range(200, 210)]) == 10
        assert await on_replica.llen("jobs") == 30
        # A durable plain task is still delayed 1.2's bytes.
        assert (await on_replica.lindex("jobs", 0)) == _task(0).serialize()
    finally:
        await on_replica.aclose()


async def test_a_replica_that_does_not_answer_fails_the_enqueue_loudly(
    pair: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis],
) -> None:
    _, replica, client = pair
    queue = Queue("jobs", client)
    with _paused(replica):
        started = time.monotonic()
        with pytest.raises(EnqueueNotDurableError) as raised:
            await queue.enqueue(_task(1), durable=Durable(timeout=0.3))
        assert 0.25 < time.monotonic() - started < 2
        message = str(raised.value)
        assert "queue 'jobs'" in message and "async_record" in message
        assert "only 0 of 1 replica(s)" in message and "may or may not" in message
        assert isinstance(raised.value, EnqueueOutcomeUnknownError)  # callers catching it see it
        assert await client.llen("jobs") == 1  # it ran on the primary, as the message says
        with pytest.raises(EnqueueNotDurableError, match="2 tasks"):
            await queue.enqueue_many([_task(2), _task(3)], durable=Durable(timeout=0.1))
        await queue.enqueue(_task(4))  # not durable: acknowledged by the primary alone
    assert await client.llen("jobs") == 4


async def test_two_replicas_asked_of_one_fail(
    pair: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis],
) -> None:
    _, _, client = pair
    queue = Queue("jobs", client, durable=Durable(replicas=2, timeout=0.1))
    with pytest.raises(EnqueueNotDurableError, match="only 1 of 2 replica"):
        await queue.enqueue(_task(1), keep_result=60)
    await queue.enqueue(_task(2), durable=False)  # the queue's default, overridden


async def test_concurrent_durable_enqueues_share_their_waits(
    pair: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis],
) -> None:
    _, _, client = pair
    queue = Queue("jobs", client, durable=True)
    await client.config_resetstat()
    await asyncio.gather(*(queue.enqueue(_task(n)) for n in range(1000)))
    assert await client.llen("jobs") == 1000
    waits = (await client.info("commandstats"))["cmdstat_wait"]["calls"]
    assert 1 <= waits <= 20, f"{waits} WAITs for 1,000 concurrent durable enqueues"


async def test_a_connection_lost_before_the_wait_proves_nothing(
    pair: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis],
) -> None:
    _, _, client = pair
    queue = Queue("jobs", client)

    async def enqueue_then_lose_the_connection() -> None:
        await queue.enqueue(_task(1))  # on the durable wire (this runs inside run_durable)
        durable_wire(client).close()

    with pytest.raises(EnqueueNotDurableError, match="connection was lost"):
        await run_durable(client, Durable(), enqueue_then_lose_the_connection, ("jobs", [_task(1)]))
    await queue.enqueue(_task(2), durable=True)  # the durable wire opens a new connection
    assert await client.llen("jobs") == 2


async def test_no_replica_at_all(client: redis.Redis) -> None:
    queue = Queue("jobs", client, durable=Durable(timeout=0.05))
    with pytest.raises(EnqueueNotDurableError, match="only 0 of 1"):
        await queue.enqueue(_task(1))


async def _enqueue_all(queue: Queue, numbers: range, durable: bool) -> set[int]:
    """Enqueues a task per number at once; returns the numbers whose enqueue was acknowledged."""
    replies = await asyncio.gather(
        *(queue.enqueue(_task(n), durable=durable) for n in numbers), return_exceptions=True
    )
    for reply in replies:
        if isinstance(reply, BaseException) and not isinstance(reply, EnqueueOutcomeUnknownError):
            raise reply  # anything but "may or may not be there" is a bug
    return {
        n for n, reply in zip(numbers, replies, strict=True) if not isinstance(reply, BaseException)
    }


async def _fail_over(primary: EmbeddedRedis, replica: EmbeddedRedis) -> EmbeddedRedis:
    """Promotes the replica of a dead primary; starts a new replica of it and returns that."""
    promoted = redis.Redis(port=replica.port)
    try:
        await promoted.replicaof("NO", "ONE")
        successor = start_replica(replica)
        await _in_sync(promoted)
    finally:
        await promoted.aclose()
    primary.close()
    return successor


@asynccontextmanager
async def _cut_off(replica: EmbeddedRedis) -> AsyncIterator[None]:
    """The replica's link to its primary cut, as by a network partition: pointed at a port
    nobody listens on, it keeps its data and receives nothing more."""
    client = redis.Redis(port=replica.port)
    try:
        await client.replicaof("127.0.0.1", str(_unused_port()))
        yield
    finally:
        await client.aclose()


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _failovers(durable: bool, rounds: int = 20, per_round: int = 500) -> tuple[int, int]:
    """``rounds`` failovers: in each, half the round's enqueues while the replica keeps up,
    half after its link is cut; then the primary is SIGKILLed and the replica promoted.
    Returns (acknowledged, acknowledged but lost)."""
    primary = EmbeddedRedis(_FAST_SYNC).start()
    replica = start_replica(primary)
    acknowledged: set[int] = set()
    try:
        for round_ in range(rounds):
            client = redis.Redis(port=primary.port)
            await _in_sync(client)
            queue = Queue("jobs", client, durable=Durable(timeout=0.2), enqueue_timeout=2)
            first = round_ * per_round
            acknowledged |= await _enqueue_all(queue, range(first, first + per_round // 2), durable)
            async with _cut_off(replica):
                half = range(first + per_round // 2, first + per_round)
                acknowledged |= await _enqueue_all(queue, half, durable)
                await client.aclose()
                primary.stop(kill=True)
            primary, replica = replica, await _fail_over(primary, replica)
        survivor = redis.Redis(port=primary.port)
        payloads: list[bytes] = await survivor.lrange("jobs", 0, -1)  # type: ignore[assignment]
        present = {cast(PyTask, decode_task(p)).args[0] for p in payloads}
        await survivor.aclose()
    finally:
        primary.close()
        replica.close()
    return len(acknowledged), len(acknowledged - present)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_over_20_failovers_no_acknowledged_durable_enqueue_is_lost() -> None:
    acknowledged, lost = await _failovers(durable=True)
    print(f"durable: {acknowledged} of 10,000 acknowledged, {lost} of them lost")
    assert lost == 0
    assert acknowledged >= 20 * 250 * 0.9  # the enqueues made while the replica kept up
    acknowledged, lost = await _failovers(durable=False)
    print(f"not durable: {acknowledged} of 10,000 acknowledged, {lost} of them lost")
    assert acknowledged == 10_000 and lost >= 20 * 250 * 0.5  # the test can tell
