"""Robustness of delayed tasks (the scheduled set, NAME_ready, NAME_active, NAME_wake), with
real Redis and real processes: workers and producers whose clocks are an hour off (Debian's
``faketime``), a Redis crash with AOF, a worker SIGKILLed while it promotes 20,000 due tasks,
lost replies to PROMOTE and to the other scripts that move enveloped tasks, a worker SIGKILLed
while it runs an enveloped task (and which sweeper puts it back), a fleet mixing delayed 1.2's
worker and sweeper with adelayed's, four workers promoting the same due tasks at once, the
worker that took a wake dying or stopping, and what a wake costs among idle workers. Task
functions and process helpers: tests/scheduled_fleet.py."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import msgpack
import pytest
import redis
import redis.asyncio as aredis
from delayed.queue import Queue as DelayedQueue
from delayed.sweeper import Sweeper as DelayedSweeper

from adelayed import Backoff, PyTask, Queue, Sweeper
from adelayed import _envelope as envelope
from adelayed._protocol import FETCH
from adelayed._protocol.scheduled import (
    BURY_ENVELOPED,
    PROMOTE,
    PROMOTE_BATCH,
    REQUEUE_ENVELOPED,
    RESCHEDULE,
)
from adelayed.embedded import EmbeddedRedis
from adelayed.task import decode_task
from tests import processes
from tests import scheduled_fleet as fleet
from tests.helpers import raw, text, texts, wait_for
from tests.proxy import redis_proxy

pytestmark = pytest.mark.timeout(60)

DURABLE = {"appendonly": "yes", "appendfsync": "always"}
HOUR_MS = 3_600_000
PROMOTED = re.compile(r"(\d+) due task\(s\) promoted")  # a worker's DEBUG log of a PROMOTE
# How late a due task may start on this (shared, 2-core) machine: the promoter wakes 1 ms
# after the due time, then a fetch and a process hop; seconds would mean the clock was wrong.
LATE_MS = 1000

# The keys of queue "jobs".
QUEUE, NOTI, PROCESSING = "jobs", "jobs_noti", "jobs_processing"
JOBS, SCHEDULED, READY, ACTIVE = "jobs_jobs", "jobs_scheduled", "jobs_ready", "jobs_active"


async def redis_ms(client: aredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def listed(client: aredis.Redis, key: str) -> bool:
    """Whether the list ``key`` has an item."""
    return int(await client.llen(key)) > 0


async def stamps(client: aredis.Redis) -> dict[str, tuple[int, int]]:
    """Tag -> (Redis's time, the worker's wall clock) of each run of ``fleet.stamp`` (ms)."""
    found: dict[str, tuple[int, int]] = {}
    for item in await client.lrange(fleet.STAMPS, 0, -1):
        tag, ran, wall = text(item).split()
        assert tag not in found, f"{tag} ran twice"
        found[tag] = (int(ran), int(wall))
    return found


async def runs(client: aredis.Redis) -> Counter[str]:
    return Counter(texts(await client.lrange(fleet.RUNS, 0, -1)))


async def drained(client: aredis.Redis) -> bool:
    """Nothing waits, is due, runs or is stored: every task of queue "jobs" is over."""
    async with client.pipeline(transaction=True) as pipe:
        for key in (QUEUE, NOTI, READY):
            pipe.llen(key)
        pipe.zcard(SCHEDULED)
        for key in (PROCESSING, ACTIVE, JOBS):
            pipe.hlen(key)
        return not any(await pipe.execute())


async def script_calls(client: aredis.Redis) -> int:
    """Script calls Redis served since its stats were last reset (EVALSHA and EVAL)."""
    stats = await client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


def tag_of(stored: bytes) -> str:
    """The first argument of the task an envelope carries."""
    return str(decode_task(envelope.unpack(stored).payload).args[0])


@asynccontextmanager
async def worker_process(
    log: Path, url: str, **options: Any
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A CLI worker (fleet.cli_worker) that has started serving; SIGKILLed at the end."""
    process = fleet.cli_worker(url, log, **options)
    try:
        await wait_for(lambda: fleet.started(log) or process.poll() is not None, what="a worker")
        assert process.poll() is None, log.read_text()[-3000:]
        yield process
    finally:
        fleet.stop(process)


def faketime_or_skip() -> None:
    if shutil.which("faketime") is None:
        pytest.skip("Debian's faketime is not installed (apt-get install -y faketime)")


# 1. Clock skew: due times are Redis's, and a worker sleeps by the loop's monotonic clock.


@pytest.mark.parametrize("skew", ["+1h", "-1h"])
async def test_a_worker_whose_clock_is_an_hour_off_runs_a_delayed_task_on_time(
    skew: str, client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    faketime_or_skip()
    async with worker_process(tmp_path / "worker.log", redis_server.url, skew=skew):
        await client.config_resetstat()
        before = await redis_ms(client)
        await queue.enqueue(PyTask("tests.scheduled_fleet:stamp", args=("t",)), delay=1)
        await wait_for(lambda: listed(client, fleet.STAMPS), timeout=5, what="the task to run")
        scripts = await script_calls(client)
    ran, wall = (await stamps(client))["t"]
    assert 1000 <= ran - before <= 1000 + LATE_MS  # on Redis's time: not at once, not in an hour
    assert scripts < 20  # the wait was a sleep, not a loop of PROMOTE calls
    offset = HOUR_MS if skew == "+1h" else -HOUR_MS
    assert abs(wall - ran - offset) < 60_000  # the worker's own clock was an hour off


@pytest.mark.slow
async def test_a_producer_whose_clock_is_an_hour_off_schedules_on_redis_time(
    client: aredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    faketime_or_skip()
    async with worker_process(tmp_path / "worker.log", redis_server.url):
        for skew, offset in (("+1h", HOUR_MS), ("-1h", -HOUR_MS)):
            args = [sys.executable, "-m", "tests.run_skewed", redis_server.url, "jobs", skew, "1"]
            done = await anyio.run_process(
                fleet.command(args, skew), env=fleet.environment(redis_server.url, skew),
                cwd=fleet.ROOT,
            )  # fmt: skip
            before, wall = map(int, done.stdout.split())
            assert abs(wall - before - offset) < 60_000  # the producer's clock was an hour off
            await wait_for(partial(_has_stamp, client, skew), timeout=5, what=f"the {skew} task")
            ran, _ = (await stamps(client))[skew]
            assert 1000 <= ran - before <= 1000 + LATE_MS


async def test_a_worker_whose_clock_is_an_hour_off_dates_a_dead_letter_on_redis_time(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    faketime_or_skip()
    async with worker_process(tmp_path / "worker.log", redis_server.url, skew="+1h"):
        failing = PyTask("tests.scheduled_fleet:fail_once", args=("doomed",))
        await queue.enqueue(failing, delay=0.2, dead_letter_on_failure=True)
        await wait_for(lambda: listed(client, "jobs_dead"), what="the dead letter")
    (dead,) = await queue.dead_tasks()
    assert "planned first failure" in dead.reason
    assert abs(dead.failed_at * 1000 - await redis_ms(client)) < 60_000


# 2. A Redis restart with AOF: the scheduled set, the envelopes and the due times persist.


@pytest.fixture
def durable() -> Iterator[EmbeddedRedis]:
    """A server of the test's own (it is killed and restarted), writing an fsynced AOF."""
    with EmbeddedRedis(DURABLE) as own:
        yield own


@pytest.mark.slow
@pytest.mark.parametrize("worker_started", ["before", "after"])
async def test_a_scheduled_task_survives_a_redis_restart_with_aof(
    worker_started: str, durable: EmbeddedRedis, tmp_path: Path
) -> None:
    client = aredis.Redis.from_url(durable.url)
    log = tmp_path / "worker.log"
    try:
        async with _maybe_worker(worker_started == "before", log, durable.url):
            before = await redis_ms(client)
            await Queue("jobs", client).enqueue(
                PyTask("tests.scheduled_fleet:stamp", args=("survivor",)), delay=3, timeout=30
            )
            durable.stop(kill=True)  # a crash: nothing is written at shutdown
            durable.start()  # same port, same directory: it reads the AOF back
            await client.connection_pool.disconnect()
            assert await client.zcard(SCHEDULED) == 1  # still waiting for its due time
            async with _maybe_worker(worker_started == "after", log, durable.url):
                await wait_for(lambda: _has_stamp(client, "survivor"), timeout=10, what="a run")
                await wait_for(lambda: drained(client), what="its release")
        ran, _ = (await stamps(client))["survivor"]  # once: stamps() refuses a second run
        assert 3000 <= ran - before <= 3000 + LATE_MS
    finally:
        await client.aclose()


@asynccontextmanager
async def _maybe_worker(start: bool, log: Path, url: str) -> AsyncIterator[None]:
    if not start:
        yield
        return
    async with worker_process(log, url):
        yield


async def _has_stamp(client: aredis.Redis, tag: str) -> bool:
    return tag in await stamps(client)


# 3. A worker SIGKILLed while it promotes many due tasks.


@dataclass
class Snapshot:
    """Where every stored task of queue "jobs" is, read in one MULTI."""

    jobs: dict[str, str]  # id -> tag
    scheduled: list[str]
    ready: list[str]
    active: list[str]
    tokens: int  # in NAME_noti and in workers' hands
    waiting: int  # v1 tasks in NAME

    @classmethod
    async def read(cls, client: aredis.Redis) -> Snapshot:
        hands = [key async for key in client.scan_iter(match="adelayed:worker:*:hand")]
        async with client.pipeline(transaction=True) as pipe:
            pipe.hgetall(JOBS)
            pipe.zrange(SCHEDULED, 0, -1)
            pipe.lrange(READY, 0, -1)
            pipe.hvals(ACTIVE)
            pipe.llen(NOTI)
            pipe.llen(QUEUE)
            for hand in hands:
                pipe.llen(hand)
            jobs, scheduled, ready, active, noti, waiting, *held = await pipe.execute()
        return cls(
            {id_.decode(): tag_of(stored) for id_, stored in jobs.items()},
            [id_.decode() for id_ in scheduled],
            [id_.decode() for id_ in ready],
            [id_.decode() for id_ in active],
            noti + sum(held),
            waiting,
        )

    def check(self) -> None:
        """Each stored task is in exactly one place, and each due one has exactly one token."""
        places = self.scheduled + self.ready + self.active
        assert len(places) == len(set(places)), "a task is in two places (or twice in one)"
        assert set(places) == set(self.jobs), "a stored task is nowhere, or a place has no task"
        assert self.tokens == len(self.ready) + self.waiting, "tokens do not match ready tasks"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_worker_killed_while_promoting_loses_and_duplicates_nothing(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    count = 20_000
    tags = [f"t{i}" for i in range(count)]
    tasks = [PyTask("tests.scheduled_fleet:mark", args=(tag,)) for tag in tags]
    await queue.enqueue_many(tasks, delay=0.5, timeout=60)
    due = await redis_ms(client) + 500
    await wait_for(lambda: _past(client, due), what="the tasks to be due")
    assert await client.zcard(SCHEDULED) == count  # all due, none promoted yet
    interrupted = 0  # kills that fell amid a promotion
    for kill in range(6):
        if interrupted == 3 or not await client.zcard(SCHEDULED):
            break
        # holding: its tasks hang, so every run is the survivor's.
        process = fleet.cli_worker(
            redis_server.url, tmp_path / f"killed{kill}.log", concurrency=50,
            log_level="INFO", holding=True,
        )  # fmt: skip
        # As fast as Redis answers, kill it in the middle of its promotion: once a first
        # batch has moved (its start-up check promotes one task, as a probe of its ACL).
        batch = await client.zcard(SCHEDULED) - PROMOTE_BATCH
        while await client.zcard(SCHEDULED) > batch and process.poll() is None:
            pass
        fleet.stop(process)
        snapshot = await Snapshot.read(client)
        snapshot.check()
        assert len(snapshot.jobs) == count, "a task was lost (or ran)"
        interrupted += bool(snapshot.scheduled)
    assert interrupted > 0, "no kill fell amid a promotion"
    async with worker_process(
        tmp_path / "survivor.log", redis_server.url, concurrency=50, sweep_interval=0.5,
        log_level="INFO",
    ):  # fmt: skip
        await wait_for(lambda: drained(client), timeout=60, what="every task to run")
    ran = await runs(client)
    assert set(ran) == set(tags)
    assert max(ran.values()) == 1


async def _past(client: aredis.Redis, ms: int) -> bool:
    return await redis_ms(client) > ms


# 4. Lost replies to PROMOTE: the promoter sends it again, and it moves each task once.


def promote_calls(command: list[bytes], previous: list[bytes]) -> str | None:
    name = command[0].upper()
    if name == b"EVALSHA" and command[1:2] == [PROMOTE.sha.encode()]:
        return "promote"
    if name == b"EVAL" and command[1:2] == [PROMOTE.text.encode()]:
        return "promote"
    return None


@dataclass
class CutMovingPromotes:
    """Cuts every PROMOTE that moved a task (its reply: moved, next due, Redis's time), and
    counts the tasks those calls moved."""

    moved: int = 0

    def __call__(self, kind: str, command: list[bytes], reply: Any) -> bool:
        self.moved += int(reply[0])
        return int(reply[0]) > 0


async def test_lost_replies_to_promote_duplicate_and_lose_nothing(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    cut = CutMovingPromotes()
    async with redis_proxy(redis_server.port, promote_calls, cut) as proxy:
        behind = f"redis://127.0.0.1:{proxy.port}/0"
        log = tmp_path / "worker.log"
        async with worker_process(log, behind, record_url=redis_server.url, concurrency=20):
            tags: list[str] = []
            for group, delay in enumerate((0.5, 0.7, 0.9, 1.1, 1.3)):
                batch = [f"g{group}t{i}" for i in range(300 if group else 2500)]
                await queue.enqueue_many(
                    (PyTask("tests.scheduled_fleet:mark", args=(tag,)) for tag in batch),
                    delay=delay, timeout=30,
                )  # fmt: skip
                tags += batch
            await wait_for(lambda: drained(client), timeout=30, what="every task to run")
    # Every task was moved by a PROMOTE whose reply was lost (the first group's 2,500 take
    # three calls), and moved once: the calls sent again moved nothing more.
    assert cut.moved == len(tags)
    assert proxy.cuts["promote"] >= 3
    ran = await runs(client)
    assert set(ran) == set(tags)
    assert max(ran.values()) == 1  # no worker died, no lease lapsed: exactly once


# 5. A worker SIGKILLed while it runs an enveloped task: adelayed's sweeper puts it back,
# delayed 1.2's (which reads only NAME_processing) leaves it alone.


@pytest.fixture
def their_queue(redis_server: EmbeddedRedis) -> Iterator[DelayedQueue]:
    conn = redis.Redis.from_url(redis_server.url)
    yield DelayedQueue("jobs", conn, dequeue_timeout=0.2, keep_alive_timeout=2)
    conn.close()


async def test_an_enveloped_task_of_a_killed_worker_is_requeued_by_our_sweeper_only(
    client: aredis.Redis, queue: Queue, their_queue: DelayedQueue,
    redis_server: EmbeddedRedis, tmp_path: Path,
) -> None:  # fmt: skip
    task = PyTask("tests.scheduled_fleet:hang_first", args=("victim",))
    await queue.enqueue(task, delay=0.3, timeout=60)
    async with worker_process(tmp_path / "killed.log", redis_server.url, keep_alive_timeout=1):
        await wait_for(lambda: listed(client, fleet.STARTS), what="the task to start")
        (slot, id_), = (await client.hgetall(ACTIVE)).items()  # fmt: skip
        stored = await client.hget(JOBS, id_)
    # SIGKILLed (worker_process's exit): the task stays in its slot until its lease lapses.
    await wait_for(lambda: _gone(client, raw(slot)), timeout=5, what="the killed worker's lease")
    state = await _state(client)
    for _ in range(5):
        assert their_queue.requeue_lost() == 0  # delayed's sweeper: nothing of its own lost
    assert await _state(client) == state == {
        "active": {slot: id_}, "jobs": {id_: stored}, "ready": [], "noti": 0, "queue": 0,
        "processing": 0, "scheduled": 0,
    }  # fmt: skip
    assert await Sweeper([queue], interval=1).sweep() == 1
    after = await _state(client)
    assert {**after, "jobs": {}} == {
        "active": {}, "jobs": {}, "ready": [id_], "noti": 1, "queue": 0,
        "processing": 0, "scheduled": 0,
    }  # fmt: skip
    before, requeued = envelope.unpack(raw(stored)), envelope.unpack(raw(after["jobs"][id_]))
    # The envelope went back with its options, payload and due time, as the next delivery:
    assert (requeued.id, requeued.payload, requeued.options) == (
        before.id,
        before.payload,
        before.options,
    )
    assert (requeued.due_ms, requeued.attempt) == (before.due_ms, 2)
    async with worker_process(tmp_path / "second.log", redis_server.url):
        await wait_for(lambda: drained(client), what="another worker to run it")
    assert await runs(client) == {"victim": 1}
    assert texts(await client.lrange(fleet.STARTS, 0, -1)) == ["victim"] * 2


async def _gone(client: aredis.Redis, key: bytes) -> bool:
    return not await client.exists(key)


async def _state(client: aredis.Redis) -> dict[str, Any]:
    return {
        "active": await client.hgetall(ACTIVE),
        "jobs": await client.hgetall(JOBS),
        "ready": await client.lrange(READY, 0, -1),
        "noti": await client.llen(NOTI),
        "queue": await client.llen(QUEUE),
        "processing": await client.hlen(PROCESSING),
        "scheduled": await client.zcard(SCHEDULED),
    }


# 6. A mixed fleet: delayed 1.2's worker and sweeper beside an adelayed worker on one queue.


@contextmanager
def their_sweeper(queue: DelayedQueue, interval: float) -> Iterator[None]:
    """delayed 1.2's own Sweeper, run as its README runs one (here in a thread)."""
    sweeper = DelayedSweeper([queue], interval=interval)
    thread = threading.Thread(target=sweeper.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sweeper.stop()
        thread.join(timeout=10)


def _mixed_tasks() -> list[tuple[list[PyTask], dict[str, Any]]]:
    """Groups of tasks and the enqueue options of each: v1 ones (any worker), enveloped ones."""

    def tasks(func: str, prefix: str, count: int, *args: Any, retry: int = 0) -> list[PyTask]:
        path = f"tests.scheduled_fleet:{func}"
        return [PyTask(path, args=(f"{prefix}{i}", *args), retry=retry) for i in range(count)]

    return [
        (tasks("mark_sync", "v", 200, 0.01), {}),
        (tasks("fail_once", "vr", 20, retry=1), {}),
        (tasks("mark", "d", 100), {"delay": 1}),
        (tasks("mark_sync", "to", 50), {"timeout": 10}),
        (tasks("fail_once", "er", 30, retry=1), {"delay": 0.3, "backoff": Backoff.fixed(0.2)}),
        (tasks("fail_once", "ee", 20, retry=1), {"backoff": Backoff.exponential(0.1, 0.5)}),
        (tasks("mark", "kr", 30), {"keep_result": 60}),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("finder", [(), ("high", "default")], ids=["one-queue", "three-queue"])
async def test_a_mixed_fleet_runs_every_task_once_and_strands_none(
    client: aredis.Redis, queue: Queue, their_queue: DelayedQueue,
    redis_server: EmbeddedRedis, tmp_path: Path, finder: tuple[str, ...],
) -> None:  # fmt: skip
    """The worker that finds the tasks whose tokens delayed's worker took serves only their
    queue, or it and two higher ones (FETCH's borrow, or FETCH_MANY's after a timed-out
    wait)."""
    theirs = processes.delayed_worker(redis_server.url, tmp_path / "delayed.log")
    groups = _mixed_tasks()
    try:
        with their_sweeper(their_queue, interval=0.3):
            async with worker_process(tmp_path / "ours.log", redis_server.url, concurrency=10):
                for group, options in groups:
                    await queue.enqueue_many(group, **options)
                await wait_for(lambda: drained(client), timeout=40, what="every task")
            # Our worker is gone; delayed's takes the tokens of due enveloped tasks (its dequeue
            # finds nothing in NAME, and it backs off): two are left in ready with no token.
            stolen = [PyTask("tests.scheduled_fleet:mark", args=(f"stolen{i}",)) for i in range(2)]
            await queue.enqueue_many(stolen, delay=0)
            await wait_for(lambda: _tokens_gone(client), what="delayed's worker to take them")
            assert await client.llen(QUEUE) == 0
            async with worker_process(tmp_path / "ours2.log", redis_server.url, higher=finder):
                await wait_for(lambda: drained(client), what="our worker to find them")
        assert theirs.poll() is None, "delayed's worker died"
    finally:
        processes.stop(theirs, signal.SIGKILL)
    tags = {str(t.args[0]) for group, _ in groups for t in group} | {"stolen0", "stolen1"}
    ran = await runs(client)
    assert set(ran) == tags
    assert max(ran.values()) == 1
    by = {text(tag): int(who) for tag, who in (await client.hgetall(fleet.BY)).items()}
    theirs_ran = {tag for tag, who in by.items() if who == theirs.pid}
    assert theirs_ran  # delayed's worker took part
    assert all(tag.startswith("v") for tag in theirs_ran)  # and ran v1 tasks only
    for tag in tags:
        if tag.startswith(("vr", "er", "ee")):
            assert await client.get(f"attempts:{tag}") == b"2"  # failed once, then ran once
    assert await client.llen("jobs_dead") == 0
    kept = await client.keys("jobs_result:*")  # the keep_result group's, each stored once
    states = {msgpack.unpackb(await client.get(k))[0] for k in kept}  # the result records'
    assert len(kept) == 30 and states == {"done"}


async def _tokens_gone(client: aredis.Redis) -> bool:
    return await client.llen(NOTI) == 0 and await client.llen(READY) == 2


# 7. Four workers promote the same due tasks at the same moment.


@pytest.mark.slow
async def test_four_workers_promoting_at_once_run_each_task_once(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    count = 5000  # five PROMOTE calls of 1,000: on a loaded host one promoter that wakes first
    # could move two batches before the others wake
    due_ms = await redis_ms(client) + 4000
    eta = datetime.fromtimestamp(due_ms / 1000, timezone.utc)
    tags = [f"t{i}" for i in range(count)]
    await queue.enqueue_many(
        (PyTask("tests.scheduled_fleet:mark", args=(tag,)) for tag in tags), eta=eta
    )
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    workers = [fleet.cli_worker(redis_server.url, log, concurrency=20) for log in logs]
    try:
        await wait_for(lambda: all(map(fleet.started, logs)), what="four workers")
        # Each worker's first PROMOTE found the tasks not yet due: all four sleep until then.
        assert await redis_ms(client) < due_ms - 200 and await client.zcard(SCHEDULED) == count
        await wait_for(lambda: drained(client), timeout=20, what="every task")
        assert all(worker.poll() is None for worker in workers)
    finally:
        for worker in workers:
            fleet.stop(worker)
    ran = await runs(client)
    assert set(ran) == set(tags)
    assert max(ran.values()) == 1
    promoted = [[int(n) for n in PROMOTED.findall(log.read_text())] for log in logs]
    assert sum(map(sum, promoted)) == count  # each task moved once (a second copy in ready
    # would run only if its envelope were still stored, so runs alone do not show it)
    assert sum(1 for moves in promoted if moves) >= 2, "the promotion was not concurrent"


# 8. The worker whose promoter was woken for a new earliest task dies or stops: another runs
# it on time.


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_a_task_runs_on_time_when_the_woken_worker_goes(
    sig: signal.Signals, client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis,
    tmp_path: Path,
) -> None:  # fmt: skip
    async with worker_process(tmp_path / "woken.log", redis_server.url) as woken:
        await wait_for(lambda: _blocked_on_wake(client, 1), what="its promoter's waker")
        async with worker_process(tmp_path / "other.log", redis_server.url):
            await wait_for(lambda: _blocked_on_wake(client, 2), what="the second waker")
            before = await redis_ms(client)
            await queue.enqueue(PyTask("tests.scheduled_fleet:stamp", args=("t",)), delay=1)
            # Redis serves the client blocked first: the first worker's waker took the wake.
            # Once both wakers block again, each has done with it what it does.
            await wait_for(lambda: _wake_taken(client), what="the wake to be taken")
            await wait_for(lambda: _blocked_on_wake(client, 2), what="both wakers again")
            fleet.stop(woken, sig)
            await wait_for(lambda: _has_stamp(client, "t"), timeout=5, what="the task to run")
    ran, _ = (await stamps(client))["t"]
    assert 1000 <= ran - before <= 1000 + LATE_MS


async def _blocked_on_wake(client: aredis.Redis, count: int) -> bool:
    """Whether exactly ``count`` clients are blocked in a BLPOP (the promoters' wakers): the
    ``b`` flag, not only ``cmd`` (the last command a client sent: a waker that has just popped
    a wake, and not yet pushed it on, still shows blpop)."""
    clients = await client.client_list()
    blocked = [info for info in clients if "b" in info.get("flags", "")]
    return sum(1 for info in blocked if info.get("cmd") == "blpop") == count


async def _wake_taken(client: aredis.Redis) -> bool:
    return not await client.exists("jobs_wake")


# 9. Lost replies to the other scripts that move enveloped tasks: FETCH (taking and releasing
# them), RESCHEDULE (a retry through the scheduled set), BURY_ENVELOPED (a dead letter).

_MOVERS = {
    script.sha.encode(): name
    for name, script in (
        ("fetch", FETCH), ("reschedule", RESCHEDULE), ("bury", BURY_ENVELOPED),
        ("requeue", REQUEUE_ENVELOPED),
    )
}  # fmt: skip


def mover_calls(command: list[bytes], previous: list[bytes]) -> str | None:
    if command[0].upper() == b"EVALSHA" and len(command) > 1:
        return _MOVERS.get(command[1].lower())
    return None


@dataclass
class CutEveryThirdMove:
    """Cuts every third call of each kind that moved a task."""

    moves: Counter[str] = field(default_factory=Counter)

    def __call__(self, kind: str, command: list[bytes], reply: Any) -> bool:
        if kind == "fetch":  # ARGV 2 and 3: v1 slots and enveloped tasks it releases
            moved = bool(reply) or int(command[11]) > 0 or int(command[12]) > 0
        else:
            moved = int(reply) > 0
        if not moved:
            return False
        self.moves[kind] += 1
        return self.moves[kind] % 3 == 0


@pytest.mark.slow
async def test_lost_replies_to_scripts_moving_enveloped_tasks_duplicate_and_lose_nothing(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    cut = CutEveryThirdMove()
    async with redis_proxy(redis_server.port, mover_calls, cut) as proxy:
        behind = f"redis://127.0.0.1:{proxy.port}/0"
        log = tmp_path / "worker.log"
        async with worker_process(log, behind, record_url=redis_server.url, concurrency=4):
            done = [PyTask("tests.scheduled_fleet:mark", args=(f"d{i}",)) for i in range(60)]
            await queue.enqueue_many(done, delay=0.2, timeout=30)
            retried = [
                PyTask("tests.scheduled_fleet:fail_once", args=(f"r{i}",), retry=1)
                for i in range(30)
            ]
            await queue.enqueue_many(retried, backoff=Backoff.fixed(0.05))
            buried = [
                PyTask("tests.scheduled_fleet:fail_always", args=(f"b{i}",)) for i in range(30)
            ]
            await queue.enqueue_many(buried, dead_letter_on_failure=True)
            await wait_for(lambda: drained(client), timeout=30, what="every task to settle")
    assert {kind for kind, cuts in proxy.cuts.items() if cuts} == {"fetch", "reschedule", "bury"}
    ran = await runs(client)
    assert set(ran) == {f"d{i}" for i in range(60)} | {f"r{i}" for i in range(30)}
    assert max(ran.values()) == 1  # no worker died, no lease lapsed: exactly once
    for i in range(30):
        assert await client.get(f"attempts:r{i}") == b"2"  # failed, retried once
        assert await client.get(f"attempts:b{i}") == b"1"  # failed, dead-lettered at once
    dead = await queue.dead_tasks()
    assert sorted(str(decode_task(d.payload).args[0]) for d in dead) == sorted(
        f"b{i}" for i in range(30)
    )  # each once


# 10. Several idle workers and one wake: each plans once, then all wait without a command.


@pytest.mark.slow
async def test_a_wake_among_idle_workers_costs_a_few_commands_not_a_loop(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [fleet.cli_worker(redis_server.url, log, concurrency=2) for log in logs]
    try:
        await wait_for(lambda: _blocked_on_wake(client, 3), what="three idle wakers")
        await client.config_resetstat()
        before = await redis_ms(client)
        await queue.enqueue(PyTask("tests.scheduled_fleet:stamp", args=("t",)), delay=2)
        await anyio.sleep(1.5)  # a window to count commands in, while the task waits
        stats = await client.info("commandstats")
        await wait_for(lambda: _has_stamp(client, "t"), timeout=5, what="the task to run")
    finally:
        for worker in workers:
            fleet.stop(worker)
    calls = {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in (
        "blpop", "evalsha", "rpush", "lpush",
    )}  # fmt: skip
    # Per worker: a BLPOP or two for the wake, one PROMOTE, an idle fetch a second, and the
    # lease's REFRESH and REGISTER every keep_alive_interval (0.5 s here).
    assert calls["blpop"] <= 12 and calls["rpush"] + calls["lpush"] <= 12, calls
    assert calls["evalsha"] <= 20 + 3 * 2 * 4, calls
    ran, _ = (await stamps(client))["t"]
    assert 2000 <= ran - before <= 2000 + LATE_MS


# 11. A worker of several queues killed with a token in a hand: its waiter's BLMOVE was served,
# the FETCH_MANY that would use the token never sent.


async def test_a_token_in_a_killed_workers_hand_is_restored_by_a_sweep(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    log = tmp_path / "ours.log"
    async with worker_process(log, redis_server.url, higher=("high", "default")) as process:
        await anyio.sleep(0.5)  # idle: a waiter on each queue
        os.killpg(process.pid, signal.SIGSTOP)
        try:
            await queue.enqueue(PyTask("tests.scheduled_fleet:mark", args=("t",)))
            hands = await client.keys("adelayed:worker:*:hand*")
            assert await client.llen(NOTI) == 0 and len(hands) == 1  # Redis served the BLMOVE
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            os.killpg(process.pid, signal.SIGCONT)
    assert await client.llen(QUEUE) == 1 and await runs(client) == Counter()
    await anyio.sleep(2.5)  # the killed worker's lease expires (keep_alive_timeout 2 s)
    await Sweeper([queue], interval=1).sweep()
    assert await client.llen(NOTI) == 1  # the token is back
    async with worker_process(tmp_path / "ours2.log", redis_server.url):
        await wait_for(lambda: drained(client), what="the task to run")
    assert await runs(client) == Counter({"t": 1})


# 12. Fencing: a worker paused past its lease, whose task a sweep gave to another worker.


async def test_a_worker_that_lost_its_lease_changes_nothing_when_it_wakes(
    client: aredis.Redis, queue: Queue, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    task = PyTask("tests.scheduled_fleet:fenced", args=("f",), retry=3)
    handle = await queue.enqueue(task, keep_result=60)
    log = tmp_path / "stale.log"
    async with worker_process(log, redis_server.url, concurrency=1) as stale:
        await wait_for(lambda: listed(client, "fenced:f"), what="the first attempt")
        [(field, _)] = (await client.hgetall(ACTIVE)).items()
        stale_id = text(field).rsplit(":", 1)[0]
        os.killpg(stale.pid, signal.SIGSTOP)
        try:
            await wait_for(lambda: _gone(client, raw(field)), timeout=5, what="its lease to lapse")
            assert await Sweeper([queue], interval=1).sweep() == 1
            async with worker_process(tmp_path / "second.log", redis_server.url) as second:
                value = await handle.result(timeout=10)
                assert value == f"{second.pid}:2"  # the second delivery: attempt 2
                status = await handle.status()
        finally:
            os.killpg(stale.pid, signal.SIGCONT)
        await anyio.sleep(1.5)  # three of its lease refreshes (keep_alive_interval 0.5 s)
        assert await client.exists(stale_id) == 1  # it is alive again, and refreshing
        assert await client.exists(field) == 0  # but it did not revive its slot's lease
        await client.set("go:f", 1)  # its first attempt ends now: it fails, late
        await wait_for(lambda: "requeued by a sweep" in log.read_text(), what="its warning")
        await anyio.sleep(0.5)
        assert stale.poll() is None
    assert await client.zcard(SCHEDULED) == 0 and await client.hlen(JOBS) == 0  # no retry
    assert await handle.result(timeout=1) == value  # the newer delivery's result stands
    assert (await handle.status()).worker == status.worker != stale_id
    starts = texts(await client.lrange("fenced:f", 0, -1))
    assert [s.split(":")[1] for s in starts] == ["1", "2"]
