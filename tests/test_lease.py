"""The lease lives on its own thread; the watchdog holds fetching while the loop is stalled;
poison tasks are counted and dead-lettered; a v1 worker that exits without releasing is swept."""

from __future__ import annotations

import logging
import signal
import subprocess
from pathlib import Path

import anyio
import msgpack
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue, Sweeper
from adelayed.embedded import EmbeddedRedis
from tests import processes, tasks
from tests.helpers import make_worker, running, text, wait_for

pytestmark = pytest.mark.timeout(90)


async def _length(client: redis.Redis, key: str, count: int) -> bool:
    return int(await client.llen(key)) >= count


async def test_a_task_blocking_the_loop_past_the_lease_timeout_is_not_swept(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    queue = Queue("jobs", client, keep_alive_timeout=1)
    await queue.enqueue(PyTask("tests.tasks:block_the_loop", args=(3,)))
    log = tmp_path / "worker.log"
    worker = processes.adelayed_worker(
        redis_server.url, log, keep_alive_timeout=1, keep_alive_interval=0.3
    )
    sweeper = Sweeper([queue], interval=0.1)
    try:
        await wait_for(lambda: _length(client, "started", 1), what="the blocking task")
        requeued = 0
        with anyio.move_on_after(4):
            while not await _length(client, "finished", 1):
                requeued += await sweeper.sweep()
                await anyio.sleep(0.1)
        assert requeued == 0, "the lease lapsed while the loop was blocked"
    finally:
        processes.stop(worker, signal.SIGTERM)
    assert await client.llen("started") == 1  # it ran once
    assert await client.llen("finished") == 1
    assert "event loop was blocked for" in log.read_text(), log.read_text()


async def test_no_task_is_taken_until_a_stalled_loop_runs_freely(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    queue = Queue("jobs", client)
    await queue.enqueue(PyTask("tests.tasks:block_the_loop", args=(1.5,)))
    worker = processes.adelayed_worker(redis_server.url, tmp_path / "worker.log")
    try:
        await wait_for(lambda: _length(client, "finished", 1), what="the end of the stall")
        await queue.enqueue_many(PyTask("tests.tasks:stamp", args=(f"quick{i}",)) for i in range(3))
        await wait_for(lambda: _length(client, "started", 4), what="the quick tasks")
    finally:
        processes.stop(worker, signal.SIGTERM)
    stall_ended = float(text(await client.lindex("finished", 0)).split()[1])
    quick = [float(s.split()[1]) for s in await client.lrange("started", 1, -1)]
    # Held back until the watchdog saw the loop run freely for a period (0.25 s); without
    # it the worker, waiting on a token, starts them within milliseconds.
    assert min(quick) - stall_ended >= 0.15


async def test_a_loop_stalled_while_waiting_for_a_token_holds_back_one_task_at_most(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # The stalled worker's fetch was already waiting (BLMOVE) when its loop blocked: Redis still
    # serves it, and it takes one task, not one per free slot; another worker runs the rest.
    queue = Queue("jobs", client)
    await queue.enqueue(PyTask("tests.tasks:nap_then_block_the_loop", args=(1.5, 2.5)))
    stalled = processes.adelayed_worker(redis_server.url, tmp_path / "stalled.log")
    other: subprocess.Popen[bytes] | None = None
    try:
        await wait_for(lambda: _length(client, "started", 1), what="the blocking task")
        other = processes.adelayed_worker(redis_server.url, tmp_path / "other.log")
        await anyio.sleep(2.0)  # the loop is blocked now, its fetch waiting in Redis
        await queue.enqueue_many(PyTask("tests.tasks:stamp", args=(f"quick{i}",)) for i in range(4))
        await wait_for(lambda: _length(client, "started", 5), what="the quick tasks")
        await wait_for(lambda: _length(client, "finished", 1), what="the end of the stall")
    finally:
        processes.stop(stalled, signal.SIGTERM)
        if other is not None:
            processes.stop(other, signal.SIGTERM)
    stall_ended = float(text(await client.lindex("finished", 0)).split()[1])
    quick = [float(s.split()[1]) for s in await client.lrange("started", 1, -1)]
    assert sum(started < stall_ended for started in quick) >= 3, (quick, stall_ended)


async def test_a_task_that_kills_its_worker_every_time_is_dead_lettered(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    queue = Queue("jobs", client, keep_alive_timeout=1, max_deliveries=3)
    poison = PyTask("tests.tasks:kill_my_worker", args=("poison",))
    await queue.enqueue(poison)
    sweeper = Sweeper([queue], interval=0.1)
    for death in range(1, 4):
        log = tmp_path / f"w{death}.log"
        worker = processes.adelayed_worker(
            redis_server.url, log, keep_alive_timeout=1, keep_alive_interval=0.3
        )
        with anyio.fail_after(10):
            while worker.poll() is None:  # noqa: ASYNC110 - polls a process
                await anyio.sleep(0.05)
        assert worker.returncode == -signal.SIGKILL
        assert await client.llen("runs") == death
        with anyio.fail_after(10):  # the dead worker's lease expires, then a sweep acts
            while await client.hlen("jobs_processing"):
                await sweeper.sweep()
                await anyio.sleep(0.1)
    [dead] = await queue.dead_tasks()
    assert dead.payload == poison.serialize()
    assert "PoisonTaskError" in dead.reason and "3 deliveries" in dead.reason
    assert (await client.llen("jobs"), await client.llen("jobs_noti")) == (0, 0)
    assert await client.exists("jobs_deliveries") == 0  # its count went with it

    await queue.enqueue(PyTask("tests.tasks:record_run", args=("healthy",)))
    worker = processes.adelayed_worker(redis_server.url, tmp_path / "last.log")
    try:
        await wait_for(lambda: _length(client, "finished", 1), what="a healthy task")
    finally:
        processes.stop(worker, signal.SIGTERM)


async def test_phantom_tokens_and_empty_dequeues_cause_no_error_and_no_busy_loop(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue_many(PyTask(tasks.async_record, args=(i,)) for i in range(5))
    await client.rpush("jobs_noti", *["1"] * 50)  # 50 tokens with no task behind them
    caplog.set_level(logging.WARNING, logger="adelayed")
    async with running(make_worker(queue, concurrency=3)):
        await wait_for(lambda: len(tasks.ran) == 5)
        await wait_for(lambda: _tokens_are(client, 0), what="phantoms consumed")
        await client.config_resetstat()
        await anyio.sleep(1.0)
        stats = await client.info("commandstats")
    calls = sum(int(v["calls"]) for v in stats.values())
    # Idle, each dequeue_timeout (0.2 s) costs a BLMOVE and the fetch behind it (EVALSHA, and
    # its LPOP finding the hand empty), plus the lease's REFRESH (its SETs) and REGISTER (about
    # 7 commands: the worker's entry for `adelayed info`) once a second here: about 30. A busy
    # loop would send thousands.
    assert calls <= 40, f"an idle worker sent {calls} commands in 1 s: {stats}"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert (await client.llen("jobs"), await client.hlen("jobs_processing")) == (0, 0)


async def _tokens_are(client: redis.Redis, count: int) -> bool:
    return int(await client.llen("jobs_noti")) == count


async def test_a_go_delayed_worker_that_exits_holding_its_last_task_has_it_rerun(
    client: redis.Redis, queue: Queue
) -> None:
    # go-delayed's worker never releases its last task: after it exits (deleting its liveness
    # key), its processing entry remains, so the next sweep requeues a task that already ran.
    go_worker_id = "9f86d081884c7d65"
    payload = msgpack.packb(["tests.tasks:sync_record", ["ran-on-go-worker"], None])
    await client.hset("jobs_processing", go_worker_id, payload)
    assert await Sweeper([queue]).sweep() == 1
    async with running(make_worker(queue)):
        await wait_for(lambda: tasks.ran == ["ran-on-go-worker"])
