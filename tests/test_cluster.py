"""Redis Cluster: a real three-master, three-replica cluster (tests/cluster.py). adelayed does
not run on one yet (docs/scaling.md says what is missing); these tests hold what is true now:
a cluster client is refused with an error that says what to use, and every key a hash-tagged
queue uses lands in its tag's slot, as the real cluster computes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from adelayed import ConfigurationError, Every, PyTask, Queue, Sweeper
from adelayed.embedded import EmbeddedRedis
from tests import tasks
from tests.cluster import redis_cluster
from tests.helpers import make_worker, running, wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[EmbeddedRedis]]:
    with redis_cluster() as nodes:
        yield nodes


async def test_a_cluster_client_is_refused_with_what_to_use(cluster: list[EmbeddedRedis]) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster[0].port)
    try:
        assert len(await client.cluster_nodes()) == 6  # a real, healthy cluster
        with pytest.raises(ConfigurationError) as refused:
            Queue("{emails}", client)  # type: ignore[arg-type]
        message = str(refused.value)
        assert "'{emails}'" in message and "not supported yet" in message
        assert "Sentinel" in message and "redis.asyncio.Redis" in message
    finally:
        await client.aclose()


def test_a_blocking_client_is_refused_with_what_to_use(redis_server: EmbeddedRedis) -> None:
    with pytest.raises(ConfigurationError, match=r"needs a redis.asyncio.Redis.*blocking"):
        Queue("emails", redis.Redis(port=redis_server.port))  # type: ignore[arg-type]


async def _use_every_feature(queue: Queue) -> set[str]:
    """Writes every kind of key a queue has: tasks plain and scheduled, kept results, dedup
    keys, a dead letter, a lost task swept (deliveries, the sweep lease), a worker's lease
    and registration, a schedule, an abort. Returns the keys there were, while the worker ran
    and after."""
    client = queue.redis
    await queue.enqueue(PyTask(tasks.async_record, ("plain",)))
    await queue.enqueue(PyTask(tasks.async_record, ("later",)), delay=60)
    await queue.enqueue(PyTask(tasks.async_record, ("keyed",)), key="k", key_lifetime=60)
    kept = await queue.enqueue(PyTask(tasks.async_record, ("kept",)), keep_result=60)
    await queue.enqueue(PyTask("os:getpid"))  # refused by the worker: a dead letter
    long = await queue.enqueue(PyTask(tasks.async_sleep, (30, "long")), keep_result=60)
    lost = PyTask(tasks.async_record, ("lost",)).serialize()
    await client.hset(f"{queue.name}_processing", f"adelayed:worker:{queue.name}gone:0", lost)
    await Sweeper([queue], interval=60).sweep()
    schedule = Every(3600, PyTask(tasks.async_record, ("tick",)))
    async with running(make_worker(queue, concurrency=4, schedules=[schedule])):
        assert await kept.result(timeout=10) is None
        await wait_for(lambda: tasks.active() == 1, what="the long task running")
        await long.abort()
        await wait_for(lambda: "lost" in tasks.ran, what="the swept task run")
        seen = set(await client.keys("*"))
    await queue.enqueue(PyTask(tasks.async_record, ("waiting",)))  # NAME and its token
    seen |= set(await client.keys("*"))
    return {key.decode() if isinstance(key, bytes) else key for key in seen}


async def test_every_key_of_a_tagged_queue_is_in_its_tag_slot(
    client: redis.asyncio.Redis, cluster: list[EmbeddedRedis]
) -> None:
    queue = Queue("{emails}", client, dequeue_timeout=0.2, keep_alive_timeout=5)
    keys = sorted(await _use_every_feature(queue))
    for kind in ("", "_noti", "_jobs", "_scheduled", "_dead", "_deliveries", "_keys",
                 "_keys_until", "_sweep", "_workers", "_worker_info", "_stats", "_schedules",
                 "_result:", "_aborting:"):  # fmt: skip
        assert any(key.startswith("{emails}" + kind) for key in keys), (kind, keys)
    assert any(key.startswith("adelayed:worker:{emails}") for key in keys), keys
    with redis.Redis(port=cluster[0].port) as node:
        slot = node.execute_command("CLUSTER", "KEYSLOT", "{emails}")
        elsewhere = [
            key for key in keys
            if node.execute_command("CLUSTER", "KEYSLOT", key) != slot
        ]  # fmt: skip
    assert elsewhere == [], f"keys outside slot {slot}: {elsewhere}"
