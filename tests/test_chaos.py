"""Kill chaos: thousands of tasks, three worker processes, a sweeper process, and SIGKILLs at
random moments. Nothing is lost; a task runs twice only if a killed worker held it."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed.embedded import EmbeddedRedis
from tests import processes
from tests.helpers import raw, text, texts

TASKS = 5000
WORKERS = 3
CONCURRENCY = 20
MIN_KILLS = 15


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_sigkill_chaos_loses_no_task(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    chance = random.Random(20261122)
    await queue.enqueue_many(
        PyTask("tests.tasks:chaos_run", args=(f"t{i}", chance.uniform(0.02, 0.12)))
        for i in range(TASKS)
    )
    logs = iter(tmp_path / f"worker{i}.log" for i in range(1000))

    def start() -> tuple[subprocess.Popen[bytes], Path]:
        log = next(logs)
        process = processes.adelayed_worker(
            redis_server.url, log, concurrency=CONCURRENCY,
            keep_alive_timeout=1, keep_alive_interval=0.25,
        )  # fmt: skip
        return process, log

    workers = [start() for _ in range(WORKERS)]
    sweeper = processes.adelayed_sweeper(redis_server.url, tmp_path / "sweeper.log")
    held_by_killed: Counter[bytes] = Counter()  # payload -> times it sat in a killed worker
    kills = 0
    started = time.monotonic()
    try:
        while kills < MIN_KILLS or not await _drained(client):
            assert time.monotonic() - started < 150, f"stuck: {await client.llen('done')} done"
            await anyio.sleep(chance.uniform(0.1, 0.3))
            if kills >= MIN_KILLS:
                continue
            victim = chance.randrange(WORKERS)
            process, log = workers[victim]
            processes.stop(process, signal.SIGKILL)
            kills += 1
            worker_id = processes.worker_id_in(log)
            if worker_id is not None:
                entries = await client.hgetall("jobs_processing")
                for field, payload in entries.items():
                    if text(field).startswith(worker_id + ":"):
                        held_by_killed[raw(payload)] += 1
            workers[victim] = start()
    finally:
        for process, _ in workers:
            processes.stop(process, signal.SIGTERM)
        processes.stop(sweeper, signal.SIGTERM)

    runs = Counter(run.split("|")[0] for run in texts(await client.lrange("runs", 0, -1)))
    done = Counter(run.split("|")[0] for run in texts(await client.lrange("done", 0, -1)))
    tags = {f"t{i}" for i in range(TASKS)}
    lost = tags - set(done)
    duplicates = {tag: count for tag, count in runs.items() if count > 1}
    held = Counter({str(_tag_of(payload)): count for payload, count in held_by_killed.items()})
    print(
        f"chaos: {TASKS} tasks, {kills} kills, {sum(held.values())} tasks held by killed "
        f"workers, {len(lost)} lost, {len(duplicates)} run more than once "
        f"({sum(duplicates.values()) - len(duplicates)} extra runs), "
        f"{time.monotonic() - started:.1f}s"
    )
    assert kills >= MIN_KILLS
    assert not lost
    assert set(done) == tags
    for tag, count in duplicates.items():
        assert count - 1 <= held[tag], (
            f"{tag} ran {count} times, held by killed workers {held[tag]}"
        )
    assert await client.llen("jobs") == 0
    assert await client.llen("jobs_noti") == 0
    assert await client.hlen("jobs_processing") == 0
    assert await client.llen("jobs_dead") == 0


async def _drained(client: redis.Redis) -> bool:
    return (
        await client.llen("done") >= TASKS
        and await client.llen("jobs") == 0
        and await client.hlen("jobs_processing") == 0
    )


def _tag_of(payload: bytes) -> str:
    import msgpack

    return str(msgpack.unpackb(payload)[1][0])
