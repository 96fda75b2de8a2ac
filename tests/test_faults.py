"""Redis faults: workers and sweepers (real processes) outlive them, and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from adelayed import EnqueueError, PyTask, Queue
from adelayed.embedded import EmbeddedRedis
from tests import processes
from tests.helpers import texts, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DURABLE = {"appendonly": "yes", "appendfsync": "always"}


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    """A server of the test's own, since these tests stop, freeze and restart it."""
    with EmbeddedRedis(DURABLE) as own:
        yield own


@asynccontextmanager
async def fleet(
    server: EmbeddedRedis, tmp_path: Path, workers: int = 2, keep_alive_timeout: float = 5
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """Worker processes and a sweeper process on ``server``; stopped gracefully at the end."""
    os.environ["ADELAYED_TEST_REDIS_URL"] = server.url  # where tasks record their runs
    started = [
        processes.adelayed_worker(
            server.url,
            tmp_path / f"worker{i}.log",
            concurrency=10,
            keep_alive_timeout=keep_alive_timeout,
            keep_alive_interval=0.5,
        )
        for i in range(workers)
    ]
    started.append(processes.adelayed_sweeper(server.url, tmp_path / "sweeper.log"))
    try:
        yield started
        for process in started:
            assert process.poll() is None, f"process {process.args!r} died"
    finally:
        for process in started:
            processes.stop(process, signal.SIGTERM)


async def runs(client: redis.Redis, key: str = "finished") -> Counter[str]:
    return Counter(texts(await client.lrange(key, 0, -1)))


async def empty(client: redis.Redis) -> bool:
    lengths = (await client.llen("jobs"), await client.llen("jobs_noti"))
    return lengths == (0, 0) and await client.hlen("jobs_processing") == 0


async def enqueue_batch(client: redis.Redis, count: int, seconds: float = 0.05) -> set[str]:
    queue = Queue("jobs", client)
    tags = [f"t{i}" for i in range(count)]
    await queue.enqueue_many(PyTask("tests.tasks:record_run", args=(tag, seconds)) for tag in tags)
    return set(tags)


@dataclass
class FaultRun:
    client: redis.Redis
    finished: Counter[str] = field(default_factory=Counter)  # runs per task, once it is over


@asynccontextmanager
async def fault_run(
    server: EmbeddedRedis, tmp_path: Path, tasks: int, seconds: float, keep_alive_timeout: float = 5
) -> AsyncIterator[FaultRun]:
    """Enqueues ``tasks`` tasks of ``seconds`` each and runs a fleet on them while the body
    injects its fault; then waits until every task ran at least once and the queue, tokens and
    processing hash are empty, and counts the runs of each."""
    run = FaultRun(redis.Redis.from_url(server.url))
    try:
        tags = await enqueue_batch(run.client, tasks, seconds)
        async with fleet(server, tmp_path, keep_alive_timeout=keep_alive_timeout):
            yield run
            await wait_for(lambda: _all_done(run.client, tags), timeout=60, what="every task")
        run.finished = await runs(run.client)
        assert set(run.finished) == tags
        assert await empty(run.client)
    finally:
        await run.client.aclose()


async def test_a_redis_crash_loses_nothing_it_acknowledged(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    async with fault_run(server, tmp_path, 300, seconds=0.05) as run:
        await wait_for(lambda: _at_least(run.client, "finished", 50), what="50 tasks")
        server.stop(kill=True)  # a crash: SIGKILL, no shutdown save
        await anyio.sleep(1)
        server.start()
        await run.client.connection_pool.disconnect()
    # At least once each (fault_run checks it): a task running at the crash may run again.


async def test_killed_connections_are_outlived_and_nothing_runs_twice(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    async with fault_run(server, tmp_path, 400, seconds=0.02) as run:
        for _ in range(15):
            await anyio.sleep(0.2)
            await run.client.client_kill_filter(_type="normal", skipme=True)
    assert max(run.finished.values()) == 1  # no worker died and no lease lapsed: exactly once


async def test_a_server_that_stops_answering_for_10s_is_outlived(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    async with fault_run(server, tmp_path, 200, seconds=0.5, keep_alive_timeout=30) as run:
        await wait_for(lambda: _at_least(run.client, "started", 20), what="running tasks")
        os.kill(server.pid, signal.SIGSTOP)
        await anyio.sleep(10)
        os.kill(server.pid, signal.SIGCONT)
    assert max(run.finished.values()) == 1  # 10 s < keep_alive_timeout: no lease lapsed


async def test_maxmemory_refuses_enqueue_cleanly_and_workers_drain(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(server.url)
    queue = Queue("jobs", client)
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", used + 300_000)
    big = "x" * 2000
    accepted = 0
    with pytest.raises(EnqueueError, match=r"queue 'jobs'.*memory.*nothing was added"):
        for i in range(10_000):
            await queue.enqueue(PyTask("tests.tasks:record_run", args=(f"t{i}", 0, big)))
            accepted += 1
    with pytest.raises(EnqueueError, match="nothing was added"):
        bulk = [PyTask("tests.tasks:record_run", args=(f"b{i}", 0, big)) for i in range(50)]
        await queue.enqueue_many(bulk)
    assert accepted > 10
    assert await client.llen("jobs") == await client.llen("jobs_noti") == accepted

    await client.config_set("maxmemory", used + 2_000_000)  # room for the workers' records
    async with fleet(server, tmp_path):
        await wait_for(lambda: _at_least(client, "finished", accepted), timeout=60)
        await queue.enqueue(PyTask("tests.tasks:record_run", args=("after", 0)))
        await wait_for(lambda: _at_least(client, "finished", accepted + 1))
    assert await empty(client)
    await client.aclose()


async def _at_least(client: redis.Redis, key: str, count: int) -> bool:
    return int(await client.llen(key)) >= count


async def _all_done(client: redis.Redis, tags: set[str]) -> bool:
    return await empty(client) and set(await runs(client)) >= tags
