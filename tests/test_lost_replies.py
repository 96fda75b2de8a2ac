"""Lost replies (PROTOCOL.md hole 9): a proxy between a worker and Redis cuts the connection
right after Redis ran a task-moving command (fetch, release, retry, dead-letter) and before its
reply came back, many times over a run. Both kinds of re-send are exercised: redis-py's own (a
client built with the constructor retries ConnectionError) and adelayed's (``from_url`` gives
a client with no retries, so only the worker's fetch and settle loops send again).

adelayed sends its scripts without redis-py's retry layer (``_protocol.send``, and the worker's
own connection for fetches, ``_wire``), so redis-py re-sends only plain commands (the standalone
release HDEL); the worker re-sends fetches and settles itself.

No worker dies and no lease lapses here, so the at-least-once promise allows no second run:
every task runs exactly as often as its retries say, and nothing is lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any

import anyio
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed import _protocol as protocol
from adelayed._wire import Wire
from adelayed.embedded import EmbeddedRedis
from tests.helpers import make_worker, running, text, texts, wait_for
from tests.proxy import redis_proxy

pytestmark = pytest.mark.timeout(60)

SEED = 20240611
KINDS = ("fetch", "release", "requeue", "bury")
_SCRIPTS = {"fetch": protocol.FETCH, "requeue": protocol.REQUEUE, "bury": protocol.BURY}
_BY_SHA = {script.sha.encode(): kind for kind, script in _SCRIPTS.items()}
_BY_TEXT = {script.text.encode(): kind for kind, script in _SCRIPTS.items()}

# How the worker's client is built: the constructor's has redis-py's default Retry (10 tries
# in redis 8.1), so redis-py itself re-sends a command whose reply was lost; from_url's has none.
CLIENTS: dict[str, Callable[[int], redis.Redis]] = {
    "redis-py-resends": lambda port: redis.Redis(host="127.0.0.1", port=port),
    "adelayed-resends": lambda port: redis.Redis.from_url(f"redis://127.0.0.1:{port}"),
}


def classify(command: list[bytes], previous: list[bytes]) -> str | None:
    """The kind of task move a command makes, or None. A fetch sent right behind a BLMOVE (the
    worker waited for a token) is a "fetch-after-wait"."""
    name = command[0].upper()
    kind = None
    if name == b"EVALSHA" and len(command) > 1:
        kind = _BY_SHA.get(command[1].lower())
    elif name == b"EVAL" and len(command) > 1:
        kind = _BY_TEXT.get(command[1])
    elif name == b"HDEL" and command[1:2] == [b"jobs_processing"]:
        kind = "release"
    after_wait = previous[:1] and previous[0].upper() == b"BLMOVE"
    return "fetch-after-wait" if kind == "fetch" and after_wait else kind


def releases(fetch: list[bytes]) -> int:
    """EVALSHA sha 7 queue noti processing hand ready active jobs waited RELEASED ENDED
    field...: how many finished slots the fetch releases on the way."""
    return int(fetch[11]) if fetch[11:12] and fetch[11].isdigit() else 0


def moved(kind: str, command: list[bytes], reply: Any) -> bool:
    """The command moved a task: a fetch that took or released one, a release (HDEL) that
    removed a field, a retry or dead-letter that acted (a re-sent one that did nothing is not
    worth a cut)."""
    if kind.startswith("fetch"):
        return bool(reply) or releases(command) > 0
    return isinstance(reply, bytes) and int(reply) > 0


@dataclass
class EveryKth:
    """Cuts the k-th, 2k-th, ... command of each kind that moved a task (a fetch sent behind
    a BLMOVE counts apart, as "fetch-after-wait")."""

    every: dict[str, int]
    moves: Counter[str] = field(default_factory=Counter)
    cuts: Counter[str] = field(default_factory=Counter)

    def __call__(self, kind: str, command: list[bytes], reply: Any) -> bool:
        if not moved(kind, command, reply):
            return False
        self.moves[kind] += 1
        if self.moves[kind] % self.every[kind]:
            return False
        self.cuts[kind] += 1
        self.cuts["fetch-releasing"] += kind.startswith("fetch") and releases(command) > 0
        return True


def first_fetch_only() -> Callable[[str, list[bytes], Any], bool]:
    cut: list[bool] = []

    def decide(kind: str, command: list[bytes], reply: Any) -> bool:
        if not kind.startswith("fetch") or not reply or cut:
            return False
        cut.append(True)
        return True

    return decide


# Task functions. Each run is recorded on the real server, not through the proxy.

_log: list[redis.Redis] = []


def _runs() -> redis.Redis:
    return _log[0]


async def succeed(tag: str, seconds: float = 0.0) -> None:
    await _runs().hincrby("attempts", tag, 1)
    await anyio.sleep(seconds)
    await _runs().rpush("done", tag)


async def flaky(tag: str, failures: int) -> None:
    """Fails on its first ``failures`` runs, then succeeds."""
    attempt = await _runs().hincrby("attempts", tag, 1)
    if attempt <= failures:
        raise RuntimeError(f"{tag}: planned failure {attempt}")
    await _runs().rpush("done", tag)


async def forbidden(tag: str) -> None:
    """Not in the worker's allowlist: must never run."""
    await _runs().hincrby("attempts", tag, 1)


@pytest.fixture
async def runs_log(redis_server: EmbeddedRedis, client: redis.Redis) -> AsyncIterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    _log.append(conn)
    yield conn
    _log.clear()
    await conn.aclose()


@dataclass
class Workload:
    tasks: list[PyTask] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # runs expected, per tag
    done: list[str] = field(default_factory=list)  # tags expected to complete, once each
    dead: list[bytes] = field(default_factory=list)  # payloads expected in the dead list

    def add(self, task: PyTask, attempts: int, completes: bool) -> None:
        self.tasks.append(task)
        tag = task.args[0]
        if attempts:
            self.attempts[tag] = attempts
        else:
            self.dead.append(task.serialize())
        if completes:
            self.done.append(tag)


def workload(rng: Random) -> Workload:
    work = Workload()
    for i in range(300):
        work.add(PyTask(succeed, args=(f"ok{i}", rng.choice((0, 0, 0.005, 0.02)))), 1, True)
    for i in range(30):  # one retry (held in its slot: no REQUEUE), then released
        work.add(PyTask(flaky, args=(f"once{i}", 1), retry=1), 2, True)
    for i in range(20):  # retried forever; succeeds on its third run
        work.add(PyTask(flaky, args=(f"twice{i}", 2), retry=-1), 3, True)
    for i in range(10):  # retries exhausted: released as failed after its third run
        work.add(PyTask(flaky, args=(f"never{i}", 99), retry=2), 3, False)
    for i in range(12):  # refused function: dead-lettered (BURY), never run
        work.add(PyTask(forbidden, args=(f"refused{i}",)), 0, False)
    for i in range(12):  # wrong arguments: dead-lettered, never run
        work.add(PyTask(succeed, args=(f"badargs{i}", 0, "extra")), 0, False)
    rng.shuffle(work.tasks)
    return work


async def produce(queue: Queue, tasks: list[PyTask], rng: Random) -> None:
    """Enqueues in small groups with pauses, now and then once the worker drained the queue:
    the worker sometimes waits for a token (BLMOVE) and sometimes fetches without waiting."""
    start = 0
    while start < len(tasks):
        if rng.random() < 0.3:
            await wait_for(lambda: _is_empty(queue), timeout=20, what="a drained queue")
        count = rng.randint(1, 8)
        await queue.enqueue_many(tasks[start : start + count])
        start += count
        await anyio.sleep(rng.uniform(0.002, 0.03))


async def _is_empty(queue: Queue) -> bool:
    return await queue.len() == 0


async def queue_state(client: redis.Redis) -> tuple[int, int, int]:
    return (
        await client.llen("jobs"),
        await client.llen("jobs_noti"),
        await client.hlen("jobs_processing"),
    )


async def attempts(client: redis.Redis) -> dict[str, int]:
    return {text(tag): int(count) for tag, count in (await client.hgetall("attempts")).items()}


async def settled(client: redis.Redis, work: Workload) -> bool:
    runs = sum((await attempts(client)).values())
    return (
        await client.llen("done") >= len(work.done)
        and runs >= sum(work.attempts.values())
        and await client.llen("jobs_dead") >= len(work.dead)
        and await queue_state(client) == (0, 0, 0)
    )


@pytest.mark.parametrize("resends", list(CLIENTS))
async def test_lost_replies_lose_no_task_and_run_none_twice(
    client: redis.Redis, redis_server: EmbeddedRedis, runs_log: redis.Redis, resends: str
) -> None:
    rng = Random(SEED)
    work = workload(rng)
    cutter = EveryKth({"fetch": 4, "fetch-after-wait": 2, "release": 4, "requeue": 3, "bury": 2})
    producer = Queue("jobs", client)
    async with redis_proxy(redis_server.port, classify, cutter) as proxy:
        worker_client = CLIENTS[resends](proxy.port)
        try:
            queue = Queue("jobs", worker_client, dequeue_timeout=0.2, keep_alive_timeout=5)
            worker = make_worker(queue, concurrency=10, tasks=[succeed, flaky])
            async with running(worker):
                await produce(producer, work.tasks, rng)
                await wait_for(lambda: settled(client, work), timeout=30, what="every task")
                await anyio.sleep(0.5)  # room for a duplicate run to show up
        finally:
            await worker_client.aclose()
    print(
        f"\n{resends}: cuts {dict(proxy.cuts)}, of which {dict(cutter.cuts)}; "
        f"replies seen {dict(proxy.seen)}"
    )

    assert await attempts(client) == work.attempts
    done = Counter(texts(await client.lrange("done", 0, -1)))
    assert done == Counter(work.done)  # each exactly once
    dead = await producer.dead_tasks(limit=1000)
    assert Counter(letter.payload for letter in dead) == Counter(work.dead)  # each exactly once
    for letter in dead:
        refused = b"refused" in letter.payload
        assert letter.reason.startswith("FunctionNotAllowedError" if refused else "TaskCallError")
    assert await queue_state(client) == (0, 0, 0)
    assert await client.keys("adelayed:worker:*") == []

    assert sum(proxy.cuts.values()) >= 50, proxy.cuts
    for kind in ("fetch", "release", "bury"):  # a retry waits in its slot: no REQUEUE
        assert proxy.cuts[kind] >= 5, proxy.cuts


@pytest.mark.parametrize("resends", ["redis-py-resends", "adelayed-resends"])
async def test_a_lost_fetch_reply_after_a_token_wait_strands_no_task(
    client: redis.Redis, redis_server: EmbeddedRedis, runs_log: redis.Redis, resends: str
) -> None:
    async with redis_proxy(redis_server.port, classify, first_fetch_only()) as proxy:
        worker_client = CLIENTS[resends](proxy.port)
        try:
            queue = Queue("jobs", worker_client, dequeue_timeout=0.2, keep_alive_timeout=5)
            async with running(make_worker(queue, concurrency=3, tasks=[succeed])):
                await anyio.sleep(0.5)  # the worker, idle, waits for a token
                await Queue("jobs", client).enqueue(PyTask(succeed, args=("alone",)))
                ran = await eventually(lambda: _done(client, 1), timeout=5)
                stranded = await client.hvals("jobs_processing")
                if ran:
                    await wait_for(lambda: _state_is(client, (0, 0, 0)), timeout=2)
        finally:
            await worker_client.aclose()
    assert proxy.cuts == {"fetch-after-wait": 1}
    assert ran, f"not run after 5 s; left in jobs_processing: {stranded}"
    assert await attempts(client) == {"alone": 1}


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    try:
        await wait_for(condition, timeout=timeout)
    except AssertionError:
        return False
    return True


async def _done(client: redis.Redis, count: int) -> bool:
    return bool(await client.llen("done") == count)


async def _state_is(client: redis.Redis, state: tuple[int, int, int]) -> bool:
    return await queue_state(client) == state


async def test_a_fetch_whose_reply_was_lost_after_a_wait_is_found_by_the_next(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    task = PyTask("mod:f", args=(1,))
    await Queue("jobs", client).enqueue(task)
    hand = "adelayed:worker:test:hand"
    async with redis_proxy(redis_server.port, classify, first_fetch_only()) as proxy:
        worker_client = CLIENTS["redis-py-resends"](proxy.port)
        wire = Wire(worker_client, "test wire")
        try:
            queue = Queue("jobs", worker_client)
            fields = ["adelayed:worker:test:0"]
            with pytest.raises(redis.ConnectionError):  # the wire re-sends nothing itself
                await queue._fetch(wire, hand, fields, wait=True)
            taken = await queue._fetch(wire, hand, fields)  # what the worker sends next
        finally:
            wire.close()
            await worker_client.aclose()
    assert proxy.cuts == {"fetch-after-wait": 1}  # the first run's reply was lost
    assert taken == [(0, task.serialize())]
    assert await queue_state(client) == (0, 0, 1)  # no token without its task
    assert await client.exists(hand) == 0
