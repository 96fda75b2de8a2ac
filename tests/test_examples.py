"""The web examples (examples/fastapi_app.py, examples/aiohttp_app.py), each driven through its
framework's test client against a real redis-server: accepted signups run exactly once; a
Redis that is down, frozen, full or crashing gets the documented answers, each of them true."""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as redis
import redis.exceptions as redis_errors
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from adelayed import PyTask, Queue, decode_task
from adelayed.embedded import EmbeddedRedis
from examples import aiohttp_app, fastapi_app, signups
from examples.signups import Settings
from tests.helpers import make_worker, running, wait_for

with warnings.catch_warnings():
    # Recent Starlette warns when its TestClient runs on httpx, which it must on Python 3.10
    # (httpx2, which it prefers, needs 3.11).
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

# (status, headers with lower-case names, JSON body) of one POST /signup
Reply = tuple[int, dict[str, str], dict[str, Any]]
Post = Callable[[dict[str, Any]], Awaitable[Reply]]

FRAMEWORKS = ["fastapi", "aiohttp"]
TASK_PATH = "examples.signups:send_welcome_email"


@asynccontextmanager
async def fastapi_served(settings: Settings) -> AsyncIterator[Post]:
    """The FastAPI app in TestClient, which runs it (lifespan included) on an event loop of its
    own in a thread; requests are sent from worker threads so that many are in flight."""
    with TestClient(fastapi_app.create_app(settings)) as client:

        async def post(body: dict[str, Any]) -> Reply:
            response = await anyio.to_thread.run_sync(lambda: client.post("/signup", json=body))
            return response.status_code, dict(response.headers), response.json()

        yield post


@asynccontextmanager
async def aiohttp_served(settings: Settings) -> AsyncIterator[Post]:
    """The aiohttp app on a real loopback server, on the test's event loop."""
    async with AiohttpClient(TestServer(aiohttp_app.create_app(settings))) as client:

        async def post(body: dict[str, Any]) -> Reply:
            async with client.post("/signup", json=body) as response:
                headers = {name.lower(): value for name, value in response.headers.items()}
                return response.status, headers, await response.json()

        yield post


def served(framework: str, settings: Settings) -> Any:
    return {"fastapi": fastapi_served, "aiohttp": aiohttp_served}[framework](settings)


async def post_many(
    post: Post, count: int, concurrency: int = 20, replies: dict[str, Reply] | None = None
) -> dict[str, Reply]:
    """``count`` signups, ``concurrency`` at a time; the reply to each, by address (filled in
    ``replies`` as they come, when given)."""
    replies = {} if replies is None else replies
    limit = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        address = f"user{i}@example.com"
        async with limit:
            replies[address] = await post({"email": address, "user_id": i})

    async with anyio.create_task_group() as group:
        for i in range(count):
            group.start_soon(one, i)
    return replies


def accepted(replies: dict[str, Reply]) -> set[str]:
    return {address for address, (status, _, _) in replies.items() if status == 202}


@pytest.fixture(autouse=True)
def _no_emails_sent() -> None:
    signups.sent_emails.clear()


@pytest.fixture
def own_server() -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own, since the test stops or freezes it."""
    with EmbeddedRedis() as server:
        yield server


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_each_accepted_signup_is_in_the_queue(
    framework: str, redis_server: EmbeddedRedis, client: redis.Redis
) -> None:
    async with served(framework, Settings(redis_url=redis_server.url)) as post:
        replies = await post_many(post, 300)
    assert accepted(replies) == set(replies), {a: r for a, r in replies.items() if r[0] != 202}
    payloads = cast(list[bytes], await client.lrange(signups.QUEUE_NAME, 0, -1))
    tasks = [decode_task(payload) for payload in payloads]
    assert {task.func_path for task in tasks} == {TASK_PATH}
    assert sorted(task.args[0] for task in tasks) == sorted(replies)
    assert await client.llen(signups.QUEUE_NAME + "_noti") == 300


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_each_accepted_signup_runs_exactly_once(
    framework: str, redis_server: EmbeddedRedis, client: redis.Redis
) -> None:
    queue = Queue(signups.QUEUE_NAME, client, dequeue_timeout=0.2, keep_alive_timeout=5)
    worker = make_worker(queue, tasks=["examples.signups"], concurrency=20)
    async with running(worker), served(framework, Settings(redis_url=redis_server.url)) as post:
        replies = await post_many(post, 300)
        await wait_for(lambda: signups.sent_emails.total() >= len(replies), what="all emails")

        async def idle() -> bool:
            return await queue.in_flight() == 0

        await wait_for(idle, what="the worker to finish")
    assert accepted(replies) == set(replies)
    assert signups.sent_emails == dict.fromkeys(replies, 1)
    assert await queue.len() == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_without_a_redis_url_the_app_runs_its_own_redis(
    framework: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ADELAYED_REDIS_URL", raising=False)
    async with served(framework, Settings()) as post:
        status, _, body = await post({"email": "ada@example.com", "user_id": 1})
        [message] = [r.getMessage() for r in caplog.records if "started a redis-server" in r.msg]
        own = redis.Redis.from_url(message.rpartition(" ")[2])
        assert await own.llen(signups.QUEUE_NAME) == 1
    assert (status, body) == (202, {"outcome": "accepted"})
    with pytest.raises(redis_errors.ConnectionError):  # stopped with the app
        await own.ping()
    await own.aclose()


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_redis_down_gives_503_not_accepted_then_recovers(
    framework: str, own_server: EmbeddedRedis
) -> None:
    own_server.stop()
    async with served(framework, Settings(redis_url=own_server.url)) as post:
        status, headers, body = await post({"email": "ada@example.com", "user_id": 1})
        assert (status, headers["retry-after"]) == (503, signups.RETRY_AFTER_UNAVAILABLE)
        assert body["outcome"] == "not_accepted"
        assert "not accepted" in body["detail"]
        own_server.start()  # the same port
        status, _, body = await post({"email": "ada@example.com", "user_id": 1})
        assert (status, body) == (202, {"outcome": "accepted"})


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_a_refused_password_gives_503_not_accepted(framework: str) -> None:
    with EmbeddedRedis({"requirepass": "right"}) as server:
        url = server.url.replace(":right@", ":wrong@")
        async with served(framework, Settings(redis_url=url)) as post:
            status, headers, body = await post({"email": "ada@example.com", "user_id": 1})
    assert (status, headers["retry-after"]) == (503, signups.RETRY_AFTER_UNAVAILABLE)
    assert body["outcome"] == "not_accepted"


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_frozen_redis_gives_503_outcome_unknown(
    framework: str, own_server: EmbeddedRedis
) -> None:
    settings = Settings(redis_url=own_server.url, enqueue_timeout=0.5)
    async with served(framework, settings) as post:
        status, _, _ = await post({"email": "ada@example.com", "user_id": 1})
        assert status == 202  # connected
        os.kill(own_server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, headers, body = await post({"email": "bob@example.com", "user_id": 2})
            took = time.monotonic() - started
        finally:
            os.kill(own_server.pid, signal.SIGCONT)
    assert (status, headers["retry-after"]) == (503, signups.RETRY_AFTER_UNAVAILABLE)
    assert body["outcome"] == "unknown"
    assert "may have been accepted" in body["detail"]
    assert "safe only if the task is idempotent" in body["detail"]
    assert took < 2, f"the handler waited {took:.1f}s for a frozen Redis"


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_each_answer_is_true_across_a_redis_crash(framework: str) -> None:
    """Redis crashes (SIGKILL) in the middle of 300 signups and restarts 10 replies later: a
    202's task runs exactly once, a "not_accepted" one never, an "unknown" one at most once."""
    durable = {"appendonly": "yes", "appendfsync": "always"}  # so the crash loses no write
    replies: dict[str, Reply] = {}
    with EmbeddedRedis(durable) as server:

        async def crash_midway() -> None:
            await wait_for(lambda: len(replies) >= 100, what="100 replies")
            server.stop(kill=True)
            down = len(replies)
            await wait_for(lambda: len(replies) >= down + 10, what="10 replies while down")
            await anyio.to_thread.run_sync(server.start)

        settings = Settings(redis_url=server.url)
        async with served(framework, settings) as post, anyio.create_task_group() as group:
            group.start_soon(crash_midway)
            await post_many(post, 300, replies=replies)
        client = redis.Redis.from_url(server.url)
        queue = Queue(signups.QUEUE_NAME, client, dequeue_timeout=0.2, keep_alive_timeout=5)
        async with running(make_worker(queue, tasks=["examples.signups"], concurrency=20)):

            async def drained() -> bool:
                return await queue.len() == 0 and await queue.in_flight() == 0

            await wait_for(drained, what="the worker to run every task")
        await client.aclose()
    outcomes = {address: body.get("outcome") for address, (_, _, body) in replies.items()}
    runs = {address: signups.sent_emails[address] for address in replies}
    assert {runs[a] for a, outcome in outcomes.items() if outcome == "accepted"} == {1}
    assert {runs[a] for a, outcome in outcomes.items() if outcome == "not_accepted"} <= {0}
    assert {runs[a] for a, outcome in outcomes.items() if outcome == "unknown"} <= {0, 1}
    assert set(outcomes.values()) - {"accepted"}, "no request met the crash"


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_full_queue_gives_429(
    framework: str, redis_server: EmbeddedRedis, client: redis.Redis
) -> None:
    settings = Settings(redis_url=redis_server.url, max_length=5)
    async with served(framework, settings) as post:
        replies = [await post({"email": f"u{i}@example.com", "user_id": i}) for i in range(7)]
    assert [status for status, _, _ in replies] == [202] * 5 + [429] * 2
    _, headers, body = replies[-1]
    assert headers["retry-after"] == signups.RETRY_AFTER_FULL
    assert (body["outcome"], body["error"]) == ("not_accepted", "queue_full")
    assert await client.llen(signups.QUEUE_NAME) == 5


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_data_that_cannot_be_a_task_gives_422(
    framework: str, redis_server: EmbeddedRedis, client: redis.Redis
) -> None:
    async with served(framework, Settings(redis_url=redis_server.url)) as post:
        status, _, body = await post({"email": "ada@example.com", "user_id": 2**70})
    assert (status, body["error"]) == (422, "invalid_task_data")
    assert await client.llen(signups.QUEUE_NAME) == 0


@pytest.mark.timeout(20)
async def test_a_queue_made_on_another_event_loop_serves_testclient(
    redis_server: EmbeddedRedis,
) -> None:
    """The module-level shape (a client and Queue made at import, as ``delayed(queue)`` leads
    to), used first on the test's loop, then from TestClient's loop in its thread (gone once
    the TestClient closes), then on the test's loop again, and closed there."""
    client = redis.Redis.from_url(redis_server.url)
    await client.flushall()
    queue = Queue(signups.QUEUE_NAME, client)
    await queue.enqueue(PyTask(signups.send_welcome_email, ("first@example.com", 0)))
    app = FastAPI()

    @app.post("/signup")
    async def signup(signup: fastapi_app.Signup) -> JSONResponse:
        answer = await signups.enqueue_signup(queue, signup.email, signup.user_id)
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    with TestClient(app) as test_client:
        body = {"email": "second@example.com", "user_id": 1}
        response = await anyio.to_thread.run_sync(lambda: test_client.post("/signup", json=body))
    assert response.status_code == 202
    await queue.enqueue(PyTask(signups.send_welcome_email, ("third@example.com", 2)))
    assert await queue.len() == 3
    await client.aclose()  # with a connection made on TestClient's loop, which is closed


@pytest.mark.parametrize("body", ["not json", '["a list"]', '{"email": "a@example.com"}'])
async def test_aiohttp_malformed_body_gives_400(redis_server: EmbeddedRedis, body: str) -> None:
    app = aiohttp_app.create_app(Settings(redis_url=redis_server.url))
    async with AiohttpClient(TestServer(app)) as client:
        response = await client.post("/signup", data=body)
        assert response.status == 400
        assert (await response.json())["error"] == "bad_request"
