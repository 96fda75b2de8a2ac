"""``adelayed doctor``, run as a process against a queue broken on purpose, one way per test:
it names each problem and the command that repairs it, ``--repair`` applies the safe repairs
only, and the exit code says whether a problem remains (0 / 4). The clock check runs a real
worker under faketime."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgpack
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed._envelope import NO_OPTIONS, new_id, pack
from adelayed._protocol.fleet import REGISTER
from adelayed._registry import fleet_keys
from adelayed.embedded import EmbeddedRedis
from tests import scheduled_fleet as fleet
from tests.helpers import make_worker, running, wait_for
from tests.test_cli_ops import Ran, adelayed

pytestmark = pytest.mark.timeout(120)


def doctor(url: str, *args: str) -> Ran:
    return adelayed(url, "-q", "jobs", "doctor", *args)


def checks(ran: Ran) -> list[str]:
    report = json.loads(ran.out)
    return [finding["check"] for finding in report["jobs"]["found"]]


async def test_a_healthy_queue_is_ok_with_exit_code_0(
    queue: Queue, redis_server: EmbeddedRedis
) -> None:
    async with running(make_worker(queue)):
        await queue.enqueue(PyTask("tests.tasks:async_record", args=(1,)))
        await queue.enqueue(PyTask("tests.tasks:async_record", args=(2,)), delay=3600)
        await wait_for(lambda: _live(queue, 1), what="the worker registered")
        await wait_for(lambda: _taken(queue), what="the queued task taken")
        ran = doctor(redis_server.url)
    assert ran.code == 0 and ran.out.strip() == "jobs: ok", ran.out + ran.err


async def test_missing_and_phantom_tokens_are_found_and_repaired(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    payload = PyTask("tests.tasks:async_record", args=(1,)).serialize()
    await client.rpush("jobs", payload, payload)  # two tasks, no token
    found = doctor(redis_server.url)
    assert found.code == 4 and "2 queued task(s) have no token" in found.out, found.out
    assert "adelayed -q jobs doctor --repair" in found.out
    repaired = doctor(redis_server.url, "--repair")
    assert "repaired: swept" in repaired.out, repaired.out
    assert await client.llen("jobs_noti") == 2
    await client.rpush("jobs_noti", "1", "1", "1")
    assert "3 phantom token(s)" in doctor(redis_server.url).out
    # No worker is alive while tasks wait: reported, with no safe repair, so exit code 4.
    after = doctor(redis_server.url, "--repair", "--json")
    assert checks(after) == ["workers"] and after.code == 4
    assert await client.llen("jobs_noti") == 2


async def test_a_dead_workers_tasks_are_found_and_a_repair_requeues_them(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    payload = PyTask("tests.tasks:async_record", args=(1,)).serialize()
    await client.hset("jobs_processing", "adelayed:worker:00000000deadbeef:0", payload)
    found = doctor(redis_server.url, "--json")
    assert checks(found) == ["lost"] and found.code == 4
    repaired = doctor(redis_server.url, "--repair", "--json")
    assert json.loads(repaired.out)["jobs"]["repaired"][0].startswith("swept: 1 lost task(s)")
    assert await client.llen("jobs") == 1 and await client.hlen("jobs_processing") == 0


async def test_an_envelope_in_no_place_is_reported_but_not_repaired(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    id_ = new_id()
    envelope = pack(id_, PyTask("tests.tasks:async_record", args=(1,)).serialize(), 1, NO_OPTIONS)
    await client.hset("jobs_jobs", id_, envelope)  # in no place: not scheduled, ready, active
    ran = doctor(redis_server.url, "--repair", "--json")
    assert checks(ran) == ["places"] and ran.code == 4
    assert json.loads(ran.out)["jobs"]["repaired"] == []
    assert await client.hexists("jobs_jobs", id_)


async def test_overdue_scheduled_tasks_are_promoted_by_a_repair(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis
) -> None:
    handle = await queue.enqueue(PyTask("tests.tasks:async_record", args=(1,)), delay=3600)
    seconds, _ = await client.time()
    await client.zadd("jobs_scheduled", {str(handle.id): (seconds - 300) * 1000})  # 5 min late
    found = doctor(redis_server.url)
    assert found.code == 4 and re.search(r"30[01]s overdue", found.out), found.out
    repaired = doctor(redis_server.url, "--repair")
    assert "promoted 1 due task(s)" in repaired.out
    assert await client.lrange("jobs_ready", 0, -1) == [str(handle.id).encode()]
    assert await client.llen("jobs_noti") == 1


async def test_dead_letters_of_the_last_minutes_are_reported(
    queue: Queue, redis_server: EmbeddedRedis
) -> None:
    await queue.enqueue(PyTask("app_gone:run"))  # refused: dead-lettered by the worker
    async with running(make_worker(queue, keep_alive_interval=0.2)):
        await wait_for(lambda: _dead_counted(queue), what="the dead letter counted")
        ran = doctor(redis_server.url)
    assert ran.code == 4 and "1 task(s) dead-lettered in the last 15 minutes" in ran.out
    assert "adelayed -q jobs dead list" in ran.out


async def _dead_counted(queue: Queue) -> bool:
    return sum(minute.dead for minute in (await queue.info()).minutes) == 1


async def test_a_worker_an_hour_off_and_mixed_versions_are_reported(
    queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    worker = fleet.cli_worker(redis_server.url, tmp_path / "skewed.log", skew="+1h")
    try:
        await wait_for(lambda: _live(queue, 1), what="the skewed worker", timeout=20)
        other = {"host": "h", "pid": 1, "version": "0.0.9", "concurrency": 1, "queues": ["jobs"],
                 "running": 0, "clock": 0}  # fmt: skip
        seconds, _ = await queue.redis.time()
        other["clock"] = seconds * 1000
        entry = ("adelayed:worker:old", 60000, msgpack.packb(other), 0, 0, 0, 0)
        await REGISTER(queue._wire(), fleet_keys("jobs"), entry)  # a worker of 0.0.9
        ran = doctor(redis_server.url, "--json")
    finally:
        fleet.stop(worker)
    assert sorted(checks(ran)) == ["clock", "versions"], ran.out
    # +3600.0s, or +3599.9s when the skewed worker's report took a while to arrive (a busy host)
    assert re.search(r"\+(3600|3599)\.\ds off", ran.out) and "0.0.9" in ran.out, ran.out


async def _taken(queue: Queue) -> bool:
    return await queue.len() == 0 and await queue.in_flight() == 0


async def _live(queue: Queue, wanted: int) -> bool:
    return len([w for w in await queue.workers() if w.alive]) == wanted
