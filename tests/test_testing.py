"""adelayed.testing, as an app's tests use it: the pytest plugin's ``adelayed_redis_url`` (a
real Redis, emptied per test), ``drain()`` running a queue dry with delays and retry backoffs
jumped over, and what it returns; and the README's recipe for testing a FastAPI endpoint that
enqueues."""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from adelayed import Backoff, PyTask, Queue, Worker
from adelayed.app import AppQueues
from adelayed.testing import DrainTimeoutError, advance_scheduled, drain
from tests import tasks


@pytest.fixture
async def emails(adelayed_redis_url: str) -> AsyncIterator[Queue]:
    client = redis.Redis.from_url(adelayed_redis_url)
    yield Queue("emails", client)
    await client.aclose()


async def test_the_plugin_gives_an_empty_real_redis(adelayed_redis_url: str) -> None:
    client = redis.Redis.from_url(adelayed_redis_url)
    try:
        assert await client.dbsize() == 0
        assert (await client.info("server"))["redis_version"]
        await client.set("left", 1)  # the next test's database is empty again
    finally:
        await client.aclose()


async def test_drain_runs_queued_delayed_and_retried_tasks_and_says_what_happened(
    emails: Queue,
) -> None:
    await emails.enqueue(PyTask("tests.tasks:async_record", args=("now",)))
    await emails.enqueue(PyTask("tests.tasks:async_record", args=("in an hour",)), delay=3600)
    await emails.enqueue(  # fails twice, each retry after a backoff of two minutes
        PyTask("tests.tasks:fail_until", args=("flaky", 3), retry=5),
        backoff=Backoff.fixed(120),
    )
    await emails.enqueue(PyTask("app_gone:run"))  # not allowed: dead-lettered
    started = time.monotonic()
    drained = await drain(emails, tasks=["tests.tasks"])
    assert time.monotonic() - started < 10  # the hour and the backoffs were jumped over
    assert sorted(str(run.args[0]) for run in drained.ran) == ["flaky", "in an hour", "now"]
    assert [(run.args, run.attempt) for run in drained.failed] == [
        (("flaky", 3), 1), (("flaky", 3), 2),
    ]  # fmt: skip
    assert all(isinstance(run.error, RuntimeError) for run in drained.failed)
    assert len(drained.dead) == 1 and "cannot import module 'app_gone'" in drained.dead[0].reason
    assert await emails.len() == await emails.scheduled() == await emails.in_flight() == 0


async def test_drain_of_a_worker_keeps_its_own_hooks(emails: Queue) -> None:
    seen: list[str] = []
    worker = Worker(emails, tasks=["tests.tasks"], handle_signals=False, sweep_interval=None,
                    after_task=lambda task: seen.append(task.func_path))  # fmt: skip
    await emails.enqueue_many([PyTask("tests.tasks:async_record", args=(i,)) for i in range(5)])
    drained = await drain(worker)
    assert sorted(run.args[0] for run in drained.ran) == list(range(5))
    assert seen == ["tests.tasks:async_record"] * 5


async def test_without_advance_scheduled_tasks_stay_and_a_stuck_queue_times_out(
    emails: Queue,
) -> None:
    await emails.enqueue(PyTask("tests.tasks:async_record", args=("later",)), delay=3600)
    drained = await drain(emails, advance=False)
    assert drained.ran == [] and await emails.scheduled() == 1
    assert await advance_scheduled(emails) == 1  # by hand: now due (and promoted)
    await emails.enqueue(PyTask("tests.tasks:async_sleep", args=(60,)))
    with pytest.raises(DrainTimeoutError, match=r"'emails': 0 queued, 1 in flight"):
        await drain(emails, timeout=1)


# The README's recipe: a FastAPI endpoint that enqueues, tested without sleeps -------------

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient


def make_app(redis_url: str) -> FastAPI:
    queues = AppQueues("emails", redis_url=redis_url, sweep_interval=None)
    app = FastAPI(lifespan=queues.lifespan)
    emails_queue = queues.queue("emails")

    @app.post("/signup", status_code=202)
    async def signup(address: str, queue: Queue = Depends(emails_queue)) -> dict[str, str]:
        await queue.enqueue(PyTask("tests.tasks:async_record", args=(address,)))
        return {"outcome": "accepted"}

    return app


async def test_a_fastapi_endpoint_that_enqueues(adelayed_redis_url: str) -> None:
    with TestClient(make_app(adelayed_redis_url)) as http:
        assert http.post("/signup", params={"address": "ada@example.com"}).status_code == 202
    client = redis.Redis.from_url(adelayed_redis_url)
    try:
        drained = await drain(Queue("emails", client), tasks=["tests.tasks"])
    finally:
        await client.aclose()
    assert [run.args for run in drained.ran] == [("ada@example.com",)]
    assert tasks.ran == ["ada@example.com"]  # the task's own effect
