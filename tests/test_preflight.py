"""Start-up checks: a worker and a sweeper refuse an evicting maxmemory-policy, and end at once
(RedisConfigurationError) on what no retry can fix: a wrong or missing password, an unknown
database, an ACL refusal. Only connection trouble is waited out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
from redis.exceptions import OutOfMemoryError

from adelayed import PyTask, Queue, RedisConfigurationError, Sweeper, TaskAborted, _preflight
from adelayed._fatal import ACL_CHANNELS_FIRST, ACL_COMMANDS, ACL_KEYS
from adelayed._lease import Lease, sync_twin
from adelayed.embedded import EmbeddedRedis
from tests import tasks
from tests.helpers import command, make_worker, running, wait_for

pytestmark = pytest.mark.timeout(60)

PASSWORD = "s3cret pass"
QUEUE_KEYS = ("~jobs", "~jobs_*", "~adelayed:*")

Start = Callable[[Queue], Coroutine[Any, Any, None]]


async def start_worker(queue: Queue) -> None:
    await make_worker(queue, sweep_interval=0.1).run()


async def start_sweeper(queue: Queue) -> None:
    await Sweeper([queue], interval=0.1).run()


STARTS = pytest.mark.parametrize("start", [start_worker, start_sweeper], ids=["worker", "sweeper"])


async def refused(start: Start, queue: Queue) -> str:
    """Runs ``start`` and returns the message of the RedisConfigurationError it must end with,
    within a few seconds."""
    with anyio.fail_after(5), pytest.raises(RedisConfigurationError) as error:
        await start(queue)
    return str(error.value)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return [message for message in messages if text in message]


# Defect 2: an evicting maxmemory-policy.


@pytest.fixture
async def evicting(client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """The test server's policy set to volatile-lru for one test."""
    await client.config_set("maxmemory-policy", "volatile-lru")
    try:
        yield "volatile-lru"
    finally:
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", 0)


@STARTS
@pytest.mark.parametrize(
    "policy", ["volatile-lru", "allkeys-lru", "volatile-ttl", "allkeys-random"]
)
async def test_an_evicting_policy_is_refused_naming_the_policy_and_the_fix(
    start: Start, policy: str, queue: Queue, client: redis.asyncio.Redis, evicting: str
) -> None:
    await client.config_set("maxmemory-policy", policy)
    message = await refused(start, queue)
    assert f"maxmemory-policy is {policy!r}" in message
    assert "CONFIG SET maxmemory-policy noeviction" in message
    assert "parameter group" in message
    assert "allow_eviction=True" in message and "--allow-eviction" in message
    assert "queue 'jobs'" in message
    assert await client.keys("adelayed:worker:*") == []  # no lease was claimed


async def test_with_allow_eviction_a_worker_starts_and_logs_the_risk(
    queue: Queue, evicting: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    await queue.enqueue(PyTask(tasks.async_record, args=("ran",)))
    async with running(make_worker(queue, allow_eviction=True, sweep_interval=0.1)):
        await wait_for(lambda: tasks.ran == ["ran"])
    [warning] = warnings(caplog, "allow_eviction=True")  # once: the embedded sweeper reuses it
    assert "'volatile-lru'" in warning and "runs twice" in warning


async def test_with_allow_eviction_a_sweeper_starts_and_logs_the_risk(
    queue: Queue, evicting: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adelayed")
    sweeper = Sweeper([queue], interval=0.1, allow_eviction=True)
    async with anyio.create_task_group() as group:
        group.start_soon(sweeper.run)
        await wait_for(lambda: any("sweeper started" in r.getMessage() for r in caplog.records))
        sweeper.stop()
    assert len(warnings(caplog, "allow_eviction=True")) == 1


async def test_a_full_volatile_lru_redis_would_evict_the_lease_so_the_worker_refuses(
    client: redis.asyncio.Redis, queue: Queue, evicting: str
) -> None:
    # What the refusal prevents: under volatile-lru, app data filling memory evicts exactly the
    # keys with a TTL, the liveness keys of running tasks, and a sweep takes them for lost.
    await client.set("adelayed:worker:demo:0", 1, px=60_000)  # a running task's liveness key
    await client.hset("jobs_processing", "adelayed:worker:demo:0", b"task")
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", used + 200_000)
    with contextlib.suppress(OutOfMemoryError):  # once nothing is left to evict
        for i in range(100):  # the app's own keys, no TTL
            await client.set(f"app:{i}", "x" * 10_000)
    assert await client.exists("adelayed:worker:demo:0") == 0, "not evicted"
    await client.config_set("maxmemory", 0)
    assert await Sweeper([queue]).sweep() == 1  # the running task, requeued: it would run twice
    message = await refused(start_worker, queue)
    assert "maxmemory-policy is 'volatile-lru'" in message


@pytest.fixture
async def no_config_user(
    client: redis.asyncio.Redis, redis_server: EmbeddedRedis
) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of an ACL user that may do everything a worker does, but not CONFIG."""
    await command(
        client, "ACL", "SETUSER", "no-config", "on", ">pw", *QUEUE_KEYS, "+@all", "-config"
    )
    user = redis.asyncio.Redis(port=redis_server.port, username="no-config", password="pw")
    try:
        yield user
    finally:
        await user.aclose()
        await command(client, "ACL", "DELUSER", "no-config")


async def test_a_user_refused_config_starts_with_one_warning(
    no_config_user: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    queue = Queue("jobs", no_config_user, dequeue_timeout=0.2)
    await queue.enqueue(PyTask(tasks.async_record, args=("ran",)))
    async with running(make_worker(queue, sweep_interval=0.1)):
        await wait_for(lambda: tasks.ran == ["ran"])
        await anyio.sleep(0.3)  # a few embedded sweeps: none checks again
    [warning] = warnings(caplog, "could not check")
    assert "maxmemory-policy" in warning and "must be noeviction" in warning
    assert "no permissions" in warning


async def test_a_sweeper_whose_user_is_refused_config_starts_with_a_warning(
    no_config_user: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adelayed")
    sweeper = Sweeper([Queue("jobs", no_config_user)], interval=0.1)
    async with anyio.create_task_group() as group:
        group.start_soon(sweeper.run)
        await wait_for(lambda: any("sweeper started" in r.getMessage() for r in caplog.records))
        sweeper.stop()
    assert len(warnings(caplog, "could not check")) == 1


# Defect 6: what no retry can fix ends start-up at once.


@pytest.fixture(scope="module")
def locked_server() -> Iterator[EmbeddedRedis]:
    """A server with a password, 4 databases and two ACL users that lack what adelayed needs."""
    with EmbeddedRedis({"requirepass": PASSWORD, "databases": "4"}) as server:
        admin = redis.Redis(port=server.port, password=PASSWORD)
        admin.execute_command("ACL", "SETUSER", "app", "on", ">app pw", *QUEUE_KEYS, "+@all")  # type: ignore[no-untyped-call]
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "no-scripts", "on", ">pw", *QUEUE_KEYS, "+@all", "-@scripting"
        )
        admin.execute_command("ACL", "SETUSER", "other-keys", "on", ">pw", "~other:*", "+@all")  # type: ignore[no-untyped-call]
        admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "no-blocking", "on", ">pw", *QUEUE_KEYS, "+@all", "-@blocking"
        )
        admin.close()
        yield server


def locked_queue(server: EmbeddedRedis, **settings: Any) -> Queue:
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port, **settings)
    return Queue("jobs", client, dequeue_timeout=0.2)


@STARTS
async def test_a_wrong_password_ends_start_up(start: Start, locked_server: EmbeddedRedis) -> None:
    queue = locked_queue(locked_server, password="wrong")
    message = await refused(start, queue)
    assert "refused the username or password" in message and "queue 'jobs'" in message
    await queue.redis.aclose()


@STARTS
async def test_a_wrong_password_of_an_acl_user_ends_start_up(
    start: Start, locked_server: EmbeddedRedis
) -> None:
    queue = locked_queue(locked_server, username="app", password="wrong")
    message = await refused(start, queue)
    assert "refused the username or password" in message and "USER:PASSWORD" in message
    await queue.redis.aclose()


@STARTS
async def test_a_missing_password_ends_start_up(start: Start, locked_server: EmbeddedRedis) -> None:
    queue = locked_queue(locked_server)
    message = await refused(start, queue)
    assert "requires a password and none was given" in message
    await queue.redis.aclose()


@STARTS
async def test_a_database_the_server_does_not_have_ends_start_up(
    start: Start, locked_server: EmbeddedRedis
) -> None:
    queue = locked_queue(locked_server, password=PASSWORD, db=4)  # databases 0 to 3
    message = await refused(start, queue)
    assert "database number" in message and "DB index is out of range" in message
    assert "`databases` setting" in message
    await queue.redis.aclose()


@STARTS
@pytest.mark.parametrize("user", ["no-scripts", "other-keys"])
async def test_an_acl_that_refuses_what_adelayed_needs_ends_start_up(
    start: Start, user: str, locked_server: EmbeddedRedis
) -> None:
    queue = locked_queue(locked_server, username=user, password="pw")
    message = await refused(start, queue)
    assert "ACL refuses this user" in message and "no permissions" in message
    assert "~NAME ~NAME_* ~adelayed:*" in message and "+evalsha" in message
    await queue.redis.aclose()


async def test_a_worker_whose_acl_refuses_blmove_ends_start_up(
    locked_server: EmbeddedRedis,
) -> None:
    # Only the fetch loop sends BLMOVE: without the probe the worker would start, then retry
    # its fetch forever.
    queue = locked_queue(locked_server, username="no-blocking", password="pw")
    message = await refused(start_worker, queue)
    assert "'blmove'" in message and "+blmove" in message
    await queue.redis.aclose()


async def test_the_worker_s_acl_user_with_the_rules_the_message_names_works(
    locked_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose user has only the advised rules runs plain tasks and tasks with options,
    keeps results (FINISH_MANY publishes them), listens for aborts (SUBSCRIBE) and, once
    subscribed again, reads the aborts written down meanwhile (MGET)."""
    admin = redis.asyncio.Redis(port=locked_server.port, password=PASSWORD)
    rules = f"{ACL_CHANNELS_FIRST} {ACL_KEYS.format(name='jobs')} {ACL_COMMANDS}".split()
    await command(admin, "ACL", "SETUSER", "least", "on", ">pw", *rules)
    await Queue("jobs", admin).enqueue(PyTask(tasks.async_record, args=("least",)))
    kept = await Queue("jobs", admin).enqueue(
        PyTask(tasks.async_record, args=("kept",)), keep_result=60
    )
    queue = locked_queue(locked_server, username="least", password="pw")
    with caplog.at_level(logging.WARNING, logger="adelayed"):
        async with running(make_worker(queue, sweep_interval=0.1)):
            await wait_for(lambda: sorted(map(str, tasks.ran)) == ["kept", "least"])
            await kept.result(timeout=5)  # FINISH_MANY published it
            assert (await kept.status()).state == "done"
            await anyio.sleep(0.3)  # the abort listener has subscribed, or failed to
            long = await Queue("jobs", admin).enqueue(
                PyTask(tasks.async_sleep, args=(60,)), keep_result=60
            )
            await wait_for(lambda: tasks.active() == 1, what="the long task")
            await admin.client_kill_filter(_type="pubsub")  # the abort listener reconnects
            assert await long.abort() == "running"
            with pytest.raises(TaskAborted):
                await long.result(timeout=5)
    await admin.aclose()
    await queue.redis.aclose()
    # (+config|get is optional: the check is skipped; the cut connections are logged as such
    # where redis-py does not reconnect them by itself, as 5.0 does not)
    expected = ("maxmemory-policy", "connection lost (Connection closed by server.)")
    refused = [r for r in caplog.records if not any(e in r.getMessage() for e in expected)]
    assert refused == [], caplog.text


async def test_the_lease_refreshes_with_the_advised_rules_where_its_script_is_not_loaded(
    locked_server: EmbeddedRedis,
) -> None:
    """The refresh's EVALSHA finds no script on a server that never ran it (or flushed its
    scripts): it is loaded (SCRIPT LOAD) and sent again, as the rules have no EVAL."""
    admin = redis.asyncio.Redis(port=locked_server.port, password=PASSWORD)
    rules = f"{ACL_CHANNELS_FIRST} {ACL_KEYS.format(name='jobs')} {ACL_COMMANDS}".split()
    await command(admin, "ACL", "SETUSER", "least", "on", ">pw", *rules)
    await admin.script_flush()
    queue = locked_queue(locked_server, username="least", password="pw")
    lease = Lease(queue, 1, 1)
    await lease.claim()
    lease.hashes, lease.busy = [queue._processing_key, queue._active_key], lambda: [False]
    await admin.pexpire(lease.worker_id, 100)
    with sync_twin(queue.redis, socket_timeout=5) as client:
        lease._refresh(client)  # raised NoPermissionError on EVAL before
    assert await admin.pttl(lease.worker_id) > 500  # refreshed
    await lease.stop()
    await admin.aclose()
    await queue.redis.aclose()


async def test_the_lease_ends_at_once_on_an_acl_refusal(locked_server: EmbeddedRedis) -> None:
    # The lease shares the classification: a refusal after the start-up check is not retried.
    queue = locked_queue(locked_server, username="other-keys", password="pw")
    with anyio.fail_after(5), pytest.raises(RedisConfigurationError, match="ACL refuses"):
        await Lease(queue, 1, 1).claim()
    await queue.redis.aclose()


# Connection trouble is still waited out.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@STARTS
async def test_a_redis_down_at_start_is_waited_for(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adelayed")
    server = EmbeddedRedis()
    server.port = _free_port()
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
    queue = Queue("jobs", client, dequeue_timeout=0.2)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(start, queue)
            await wait_for(lambda: bool(warnings(caplog, "cannot start")), what="retries")
            server.start()
            await wait_for(
                lambda: any(" started " in r.getMessage() for r in caplog.records), what="a start"
            )
            group.cancel_scope.cancel()
    finally:
        await client.aclose()
        server.close()
    assert f"connecting to 127.0.0.1:{server.port}" in warnings(caplog, "cannot start")[0]


@STARTS
async def test_a_redis_frozen_at_start_is_waited_for(
    start: Start, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_preflight, "REPLY_TIMEOUT", 0.5)
    caplog.set_level(logging.INFO, logger="adelayed")
    with EmbeddedRedis() as server:
        client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
        os.kill(server.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(start, Queue("jobs", client, dequeue_timeout=0.2))
                await wait_for(lambda: bool(warnings(caplog, "no reply within 0.5s")))
                os.kill(server.pid, signal.SIGCONT)
                await wait_for(lambda: any(" started " in r.getMessage() for r in caplog.records))
                group.cancel_scope.cancel()
        finally:
            os.kill(server.pid, signal.SIGCONT)
            await client.aclose()


async def test_an_acl_revoked_while_the_worker_runs_ends_it_and_its_tasks_go_back(
    locked_server: EmbeddedRedis,
) -> None:
    """A refusal no retry can fix, met in the fetch loop (the user's rights changed while it
    ran), ends run() with RedisConfigurationError instead of retrying forever; the task it was
    running is put back when the refusal is lifted (requeued at stop, or by a sweep)."""
    admin = redis.asyncio.Redis(host="127.0.0.1", port=locked_server.port, password=PASSWORD)
    await command(admin, "ACL", "SETUSER", "revoked", "on", ">pw", *QUEUE_KEYS, "+@all", "-config")
    queue = locked_queue(locked_server, username="revoked", password="pw")
    await queue.enqueue(PyTask(tasks.async_sleep, args=(0.5, "survivor")))
    worker = asyncio.ensure_future(make_worker(queue, concurrency=2).run())
    await wait_for(lambda: queue.in_flight(), what="the task started")
    await command(admin, "ACL", "SETUSER", "revoked", "-evalsha")
    with pytest.raises(RedisConfigurationError, match="ACL"):
        await asyncio.wait_for(worker, 10)
    await command(admin, "ACL", "SETUSER", "revoked", "+evalsha")
    await Queue("jobs", admin).requeue_lost()  # its lease is gone: a sweep puts it back
    assert (await admin.llen("jobs"), await admin.hlen("jobs_processing")) == (1, 0)
    await queue.redis.aclose()
    await admin.flushall()
    await admin.aclose()
