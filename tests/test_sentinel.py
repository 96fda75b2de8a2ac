"""adelayed through Sentinel (``redis.asyncio.sentinel``): one primary, two replicas and three
sentinels on loopback (tests/sentinels.py). The primary is SIGKILLed, or frozen with SIGSTOP,
while a worker and a producer run: the worker runs tasks again within 5 s of the switch, and
every task the producer was told is enqueued (durable, so acknowledged by a replica) runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from redis.asyncio.sentinel import Sentinel

from adelayed import Durable, EnqueueError, PyTask, Queue
from adelayed._lease import sync_twin
from adelayed._wire import Wire
from adelayed.embedded import EmbeddedRedis
from tests import tasks
from tests.helpers import make_worker, running, wait_for
from tests.sentinels import SERVICE, Sentinels, sentinel_setup

_TIMEOUTS: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}


@contextlib.asynccontextmanager
async def _client(setup: Sentinels) -> AsyncIterator[redis.Redis]:
    """A client of the primary, through the sentinels; closed with the sentinels' clients."""
    sentinels = Sentinel(setup.addresses, sentinel_kwargs=_TIMEOUTS, **_TIMEOUTS)  # type: ignore[no-untyped-call]
    client = sentinels.master_for(SERVICE, **_TIMEOUTS)
    try:
        yield client
    finally:
        await client.aclose()
        for sentinel in sentinels.sentinels:
            await sentinel.aclose()


class _Producer:
    """Enqueues a durable task every 10 ms; remembers which were acknowledged, and when."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.acknowledged: dict[int, float] = {}

    async def run(self) -> None:
        n = 0
        while True:
            n += 1
            with contextlib.suppress(EnqueueError):  # refused or unknown: not acknowledged
                await self.queue.enqueue(PyTask(tasks.async_sleep, (0.02, n)))
                self.acknowledged[n] = time.monotonic()
            await asyncio.sleep(0.01)


@pytest.fixture
async def setup() -> AsyncIterator[Sentinels]:
    with sentinel_setup(replicas=2) as servers:
        yield servers


async def test_the_lease_thread_refreshes_through_the_sentinels(setup: Sentinels) -> None:
    async with _client(setup) as client:
        twin = sync_twin(client, socket_timeout=1)
        try:
            assert twin.set("through-sentinel", 1)
        finally:
            twin.close()
    primary = redis.Redis(port=setup.primary_port())
    assert await primary.get("through-sentinel") == b"1"  # the primary's, not localhost's
    await primary.aclose()


async def test_a_wire_on_a_demoted_primary_reconnects(setup: Sentinels) -> None:
    """A READONLY reply (the server became a replica) closes the wire's connection: the next
    call opens a new one, which Sentinel points at the primary."""
    old = setup.primary()
    client = redis.Redis(port=old.port)
    wire = Wire(client, "test wire")
    try:
        first = await wire.call("CLIENT", "ID")
        other = setup.servers[1]
        await client.replicaof("127.0.0.1", str(other.port))  # as Sentinel does in a failover
        with pytest.raises(redis.ReadOnlyError):
            await wire.call("SET", "key", 1)
        assert await wire.call("CLIENT", "ID") != first  # a new connection
    finally:
        wire.close()
        await client.aclose()


async def _fail(setup: Sentinels, failure: str) -> tuple[EmbeddedRedis, float]:
    """Fails the primary (SIGKILL, or SIGSTOP: it stays frozen until ``_end``); returns it
    and when the sentinels' new primary took writes."""
    old = setup.primary()
    if failure == "kill":
        old.stop(kill=True)
    else:
        os.kill(old.pid, signal.SIGSTOP)
    switched = await asyncio.to_thread(setup.wait_for_new_primary, old.port)
    return old, switched


def _end(old: EmbeddedRedis, failure: str) -> None:
    """A frozen primary thaws (the sentinels then make it a replica of the new one)."""
    if failure == "stop":
        os.kill(old.pid, signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("failure", ["kill", "stop"])
async def test_workers_resume_within_5_s_of_a_failover(setup: Sentinels, failure: str) -> None:
    async with _client(setup) as client:
        queue = Queue("jobs", client, dequeue_timeout=0.5, durable=Durable(timeout=0.5))
        resumed, acknowledged = await _run_through_failover(setup, queue, failure)
    print(f"{failure}: the worker ran tasks {resumed:.2f}s after the switch; "
          f"{len(acknowledged)} acknowledged enqueues, all run")  # fmt: skip
    assert resumed < 5


async def _run_through_failover(
    setup: Sentinels, queue: Queue, failure: str
) -> tuple[float, set[int]]:
    """A worker and a producer through a failover; returns how long after the switch the
    worker ran tasks again, and the acknowledged enqueues (each has run)."""
    producer = _Producer(queue)
    async with running(make_worker(queue, concurrency=10, keep_alive_interval=0.5)):
        filling = asyncio.create_task(producer.run())
        await wait_for(lambda: len(tasks.ran) >= 20, what="tasks running before the failure")
        old, switched = await _fail(setup, failure)
        done_at_switch = len(tasks.ran)
        await wait_for(lambda: len(tasks.ran) > done_at_switch + 5, timeout=5,
                       what="the worker running tasks within 5 s of the switch")  # fmt: skip
        resumed = time.monotonic() - switched
        _end(old, failure)
        await wait_for(lambda: any(at > switched for at in producer.acknowledged.values()),
                       timeout=10, what="an enqueue acknowledged after the switch")  # fmt: skip
        await asyncio.sleep(1)
        filling.cancel()
        acknowledged = set(producer.acknowledged)
        await wait_for(lambda: acknowledged <= set(tasks.ran), timeout=30,
                       what="every acknowledged task run")  # fmt: skip
    return resumed, acknowledged
