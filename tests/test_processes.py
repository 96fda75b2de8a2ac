"""Real worker processes, stopped with real signals: nothing is lost."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed.embedded import EmbeddedRedis
from tests import processes
from tests.helpers import texts, wait_for

pytestmark = pytest.mark.timeout(120)


async def listed(client: redis.Redis, key: str) -> list[str]:
    return texts(await client.lrange(key, 0, -1))


async def settled(client: redis.Redis) -> tuple[int, int, int]:
    return (
        await client.llen("jobs"),
        await client.llen("jobs_noti"),
        await client.hlen("jobs_processing"),
    )


@pytest.mark.parametrize("function", ["tests.tasks:record_run", "tests.tasks:async_record_run"])
async def test_sigterm_finishes_running_tasks_and_loses_none(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path, function: str
) -> None:
    total = 40
    await queue.enqueue_many(PyTask(function, args=(f"t{i}", 0.3)) for i in range(total))
    worker = processes.adelayed_worker(redis_server.url, log, concurrency=10)
    await wait_for(lambda: _length(client, "started", 10), what="10 running tasks")
    assert processes.stop(worker, signal.SIGTERM) == 0

    started, finished = await listed(client, "started"), await listed(client, "finished")
    assert sorted(started) == sorted(finished)  # every task it began, it finished
    waiting, tokens, processing = await settled(client)
    assert (waiting + len(finished), tokens, processing) == (total, waiting, 0)
    assert await client.keys("adelayed:worker:*") == []

    worker = processes.adelayed_worker(redis_server.url, log, concurrency=10)
    await wait_for(lambda: _length(client, "finished", total), what="all tasks")
    processes.stop(worker, signal.SIGTERM)
    assert Counter(await listed(client, "finished")) == Counter(f"t{i}" for i in range(total))


@pytest.mark.parametrize("function", ["tests.tasks:record_run", "tests.tasks:async_record_run"])
async def test_a_second_signal_stops_at_once_and_requeues_running_tasks(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path, function: str
) -> None:
    await queue.enqueue_many(PyTask(function, args=(f"t{i}", 60)) for i in range(8))
    worker = processes.adelayed_worker(redis_server.url, log, concurrency=5)
    await wait_for(lambda: _length(client, "started", 5), what="5 running tasks")
    worker.send_signal(signal.SIGTERM)
    await wait_for(lambda: "finishing running tasks" in log.read_text(), what="first signal")
    assert processes.stop(worker, signal.SIGTERM, timeout=10) == 128 + signal.SIGTERM
    assert await listed(client, "finished") == []
    assert await settled(client) == (8, 8, 0)


async def _length(client: redis.Redis, key: str, at_least: int) -> bool:
    return int(await client.llen(key)) >= at_least


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
async def test_sigint_and_sighup_stop_as_gracefully_as_sigterm(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path, sig: int
) -> None:
    await queue.enqueue_many(
        PyTask("tests.tasks:record_run", args=(f"t{i}", 0.3)) for i in range(6)
    )
    worker = processes.adelayed_worker(redis_server.url, log, concurrency=3)
    await wait_for(lambda: _length(client, "started", 3), what="3 running tasks")
    assert processes.stop(worker, sig) == 0
    started, finished = await listed(client, "started"), await listed(client, "finished")
    assert sorted(started) == sorted(finished)
    waiting, tokens, processing = await settled(client)
    assert (waiting + len(finished), tokens, processing) == (6, waiting, 0)


async def test_a_worker_started_before_its_redis_waits_for_it(log: Path) -> None:
    server = EmbeddedRedis()
    server.start()
    server.stop()  # the port is known, nothing listens on it yet
    worker = processes.adelayed_worker(server.url, log, concurrency=2)
    try:
        await anyio.sleep(1)
        assert worker.poll() is None
        server.start()
        client = redis.Redis.from_url(server.url)
        await Queue("jobs", client).enqueue(PyTask("tests.tasks:record_run", args=("late",)))
        await wait_for(lambda: _length(client, "finished", 1), what="the task", timeout=15)
        await client.aclose()
    finally:
        processes.stop(worker, signal.SIGTERM)
        server.close()


async def test_the_sweeper_cli_takes_the_queue_s_dead_letter_setting(
    client: redis.Redis, redis_server: EmbeddedRedis, log: Path
) -> None:
    # A task whose worker died (its liveness key is gone): by default a sweep requeues it;
    # with --max-deliveries 1 the first death is enough to dead-letter it.
    payload = PyTask("tests.tasks:stamp", args=("x",)).serialize()
    await client.hset("jobs_processing", "adelayed:worker:0123456789abcdef:0", payload)
    sweeper = processes.adelayed_sweeper(
        redis_server.url, log, interval=0.1, options=("--max-deliveries", "1")
    )
    try:
        await wait_for(lambda: _dead_letters(client, 1), what="the dead-lettered task")
    finally:
        processes.stop(sweeper, signal.SIGTERM)
    assert await client.llen("jobs") == 0
    assert [dead.payload for dead in await Queue("jobs", client).dead_tasks()] == [payload]


async def _dead_letters(client: redis.Redis, count: int) -> bool:
    return int(await client.llen("jobs_dead")) == count


@pytest.mark.parametrize("runner", ["asyncio", "anyio"])
async def test_a_hard_stop_under_a_plain_run_exits_at_once_and_the_requeue_is_the_only_run(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path, tmp_path: Path,
    runner: str,
) -> None:  # fmt: skip
    marker = tmp_path / "marker"
    Path(f"{marker}.seconds").write_text("30")  # the first run blocks in time.sleep(30)
    await queue.enqueue(PyTask("tests.tasks:sleep_then_mark", args=(str(marker),)))
    worker = processes.script_workers(redis_server.url, log, runner=runner)
    await wait_for(lambda: _processing(client, 1), what="the running task")
    worker.send_signal(signal.SIGINT)
    await wait_for(lambda: "finishing running tasks" in log.read_text(), what="first signal")
    started = time.monotonic()
    processes.stop(worker, signal.SIGINT, timeout=5)
    assert time.monotonic() - started < 5
    text = log.read_text()
    assert text.count("task 'tests.tasks:sleep_then_mark' cancelled by a hard stop; requeued") == 1
    assert "hard stop signals: [<Signals.SIGINT: 2>]" in text
    assert await settled(client) == (1, 1, 0)

    Path(f"{marker}.seconds").write_text("0.1")
    worker = processes.script_workers(redis_server.url, log, runner=runner)
    await wait_for(marker.exists, what="the requeued run")
    await wait_for(lambda: _settled_empty(client), what="the task released")
    processes.stop(worker, signal.SIGTERM)
    assert marker.read_text().count("done") == 1


async def _processing(client: redis.Redis, count: int) -> bool:
    return int(await client.hlen("jobs_processing")) == count


async def _settled_empty(client: redis.Redis) -> bool:
    return await settled(client) == (0, 0, 0)


async def test_one_sigterm_stops_every_worker_of_the_process_gracefully(
    client: redis.Redis, redis_server: EmbeddedRedis, log: Path
) -> None:
    for name in ("jobs", "other"):
        await Queue(name, client).enqueue_many(
            PyTask("tests.tasks:record_run", args=(f"{name}{i}", 1)) for i in range(3)
        )
    worker = processes.script_workers(redis_server.url, log, queues=("jobs", "other"))
    await wait_for(lambda: _length(client, "started", 4), what="2 running tasks per worker")
    assert processes.stop(worker, signal.SIGTERM, timeout=10) == 0
    started, finished = await listed(client, "started"), await listed(client, "finished")
    assert sorted(started) == sorted(finished)
    assert {tag[:-1] for tag in finished} == {"jobs", "other"}
    for name in ("jobs", "other"):
        assert await client.llen(name) == await client.llen(f"{name}_noti") == 1
        assert await client.hlen(f"{name}_processing") == 0


async def test_a_second_sigterm_hard_stops_every_worker_of_the_process(
    client: redis.Redis, redis_server: EmbeddedRedis, log: Path
) -> None:
    for name in ("jobs", "other"):
        await Queue(name, client).enqueue_many(
            PyTask("tests.tasks:record_run", args=(f"{name}{i}", 60)) for i in range(2)
        )
    worker = processes.script_workers(redis_server.url, log, queues=("jobs", "other"))
    await wait_for(lambda: _length(client, "started", 4), what="2 running tasks per worker")
    worker.send_signal(signal.SIGTERM)
    await wait_for(
        lambda: log.read_text().count("finishing running tasks") == 2, what="both workers"
    )
    assert processes.stop(worker, signal.SIGTERM, timeout=5) == 0
    assert log.read_text().count("SIGTERM again, requeueing running tasks") == 2
    assert await listed(client, "finished") == []
    for name in ("jobs", "other"):
        assert await client.llen(name) == await client.llen(f"{name}_noti") == 2
        assert await client.hlen(f"{name}_processing") == 0
