"""The sweep lease and the paged sweep (adelayed._sweep): however many sweepers run, a queue is
swept once per interval; a sweep of thousands of tasks in flight goes in short calls; each call
is safe to re-send."""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as redis

from adelayed import PyTask, Queue, Sweeper
from adelayed import _protocol as protocol
from adelayed._envelope import NO_OPTIONS, new_id, pack
from adelayed._sweep import SWEEP_PAGE
from adelayed.embedded import EmbeddedRedis


async def _lose(queue: Queue, count: int, *, enveloped: int = 0, alive: int = 0) -> None:
    """``count`` v1 tasks and ``enveloped`` enveloped ones held by dead workers' slots, and
    ``alive`` v1 tasks held by live ones."""
    client = queue.redis
    v1 = {f"adelayed:worker:dead:{n}": PyTask("app:work", (n,)).serialize() for n in range(count)}
    for n in range(alive):
        field = f"adelayed:worker:live:{n}"
        await client.set(field, 1, px=60_000)
        v1[field] = PyTask("app:work", (-n,)).serialize()
    if v1:
        await client.hset("jobs_processing", mapping=v1)  # type: ignore[arg-type]
    for n in range(enveloped):
        id_ = new_id()
        envelope = pack(id_, PyTask("app:work", (n,)).serialize(), 1, NO_OPTIONS)
        await client.hset("jobs_jobs", id_, envelope)
        await client.hset("jobs_active", f"adelayed:worker:gone:{n}", id_)


async def _balanced(client: redis.Redis) -> bool:
    tasks = await client.llen("jobs") + await client.llen("jobs_ready")
    return tasks == await client.llen("jobs_noti")


async def test_many_sweepers_sweep_a_queue_once_per_interval(queue: Queue) -> None:
    await _lose(queue, 10)
    sweepers = [Sweeper([queue], interval=60) for _ in range(5)]
    swept = [await sweeper.sweep() for sweeper in sweepers]
    assert swept == [10, 0, 0, 0, 0]  # the first took the queue's sweep; the others skipped
    await _lose(queue, 3)  # lost after that sweep
    assert [await sweeper.sweep() for sweeper in sweepers[1:]] == [0, 0, 0, 0]
    assert await queue.redis.hlen("jobs_processing") == 3  # still waiting: not their turn
    assert await queue.requeue_lost() == 3  # an explicit sweep sweeps regardless
    assert await queue.len() == 13
    assert await _balanced(queue.redis)


async def test_a_sweeper_sweeps_again_once_its_interval_passed(queue: Queue) -> None:
    fast, slow = Sweeper([queue], interval=0.3), Sweeper([queue], interval=60)
    await _lose(queue, 2)
    assert await slow.sweep() == 2
    await _lose(queue, 2)
    await asyncio.sleep(0.35)
    assert await fast.sweep() == 2  # the slow one's sweep is older than the fast one's interval
    await _lose(queue, 2)
    assert await slow.sweep() == 0  # the fast one swept less than 60 s ago
    assert await fast.sweep() == 2  # its own lease: a sweeper is never kept out by itself


async def test_a_sweep_of_thousands_in_flight_goes_in_bounded_calls(queue: Queue) -> None:
    client = queue.redis
    await _lose(queue, 2500, enveloped=1200, alive=300)
    await client.config_resetstat()
    assert await queue.requeue_lost() == 3700
    calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    pages = (2800 // SWEEP_PAGE) + (1200 // SWEEP_PAGE)
    assert calls >= pages, f"{calls} script calls for {pages} pages' worth of tasks"
    assert await client.hlen("jobs_processing") == 300  # the live workers' tasks stay
    assert await client.hlen("jobs_active") == 0
    assert await client.llen("jobs") == 2500 and await client.llen("jobs_ready") == 1200
    assert await _balanced(client)


async def test_a_page_sent_twice_changes_nothing_the_second_time(queue: Queue) -> None:
    await _lose(queue, 50, enveloped=20)
    keys = (
        "jobs", "jobs_noti", "jobs_processing", "jobs_deliveries", "jobs_dead", "jobs_ready",
        "jobs_active", "jobs_jobs", "jobs_sweep",
    )  # fmt: skip
    for hash_ in ("processing", "active"):
        args = (5, 100, 60_000, hash_, "0", 1000, "sweeper-a", 60_000)
        first = await protocol.REQUEUE_LOST(queue._wire(), keys, args)
        again = await protocol.REQUEUE_LOST(queue._wire(), keys, args)  # a lost reply, re-sent
        assert first[0] == again[0] == b"0"
        assert int(first[1]) == (50 if hash_ == "processing" else 20)
        assert again[1:] == [0, 0, 0]
    assert await queue.len() == 70 and await _balanced(queue.redis)
    # The same first call from another sweeper within its interval: skipped.
    other = (5, 100, 60_000, "processing", "0", 1000, "sweeper-b", 60_000)
    assert (await protocol.REQUEUE_LOST(queue._wire(), keys, other))[0] == b"skip"


_SWEEP_ONCE = """
import asyncio, sys
import redis.asyncio as redis
from adelayed import Queue, Sweeper

async def main():
    client = redis.Redis.from_url(sys.argv[1])
    queue = Queue("jobs", client)
    sweeper = Sweeper([queue], interval=60)
    sys.stdin.readline()  # all start together
    print(await sweeper.sweep())
    await client.aclose()

asyncio.run(main())
"""


async def test_sweepers_racing_in_processes_requeue_each_task_once(
    queue: Queue, redis_server: EmbeddedRedis
) -> None:
    await _lose(queue, 3000, enveloped=500)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SWEEP_ONCE, redis_server.url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(6)
    ]  # fmt: skip
    await asyncio.sleep(1.5)  # each has imported adelayed and connected
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"\n")
    replies = [asyncio.wait_for(process.communicate(), 30) for process in processes]
    swept = sorted(int(out) for out, _ in await asyncio.gather(*replies))
    assert swept == [0, 0, 0, 0, 0, 3500]  # one swept; the others found the queue's sweep taken
    assert await queue.len() == 3500 and await _balanced(queue.redis)
    assert await queue.redis.hlen("jobs_processing") == 0
