"""A client used from more than one event loop: one after the other (``asyncio.run`` twice,
pytest-asyncio's loop per test) and at once (a loop per thread). Each loop gets a connection of
its own, made when it first needs one; a closed loop's connection is closed when another loop
next uses the client, and none is left open or unclosed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator

import anyio
import pytest
import redis
import redis.asyncio

from adelayed import PyTask, Queue
from adelayed._takeover import close_without_loop
from adelayed._wire import Wire
from adelayed.embedded import EmbeddedRedis


@pytest.fixture
def admin(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A sync client to look at the server from outside any event loop."""
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushall()
    yield conn
    conn.close()


def connections(admin: redis.Redis, name: str, expected: int) -> int:
    """How many connections named ``name`` the server has, once it shows ``expected`` or 2 s
    passed (a closed socket is seen by the server a moment later)."""
    deadline = time.monotonic() + 2
    while True:
        count = sum(entry["name"] == name for entry in admin.client_list())
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


async def enqueue_and_count(queue: Queue, tag: int) -> int:
    with anyio.fail_after(5):  # the bug this guards against was a hang
        await queue.enqueue(PyTask("mod:f", args=(tag,)))
        return await queue.len()


def test_a_module_level_client_works_under_a_second_asyncio_run(
    admin: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    queue = Queue("jobs", client)
    assert asyncio.run(enqueue_and_count(queue, 1)) == 1
    assert asyncio.run(enqueue_and_count(queue, 2)) == 2

    async def third_loop() -> int:
        count = await enqueue_and_count(queue, 3)
        await client.aclose()  # no "Event loop is closed" from an earlier loop's connection
        return count

    assert asyncio.run(third_loop()) == 3
    assert admin.lrange("jobs", 0, -1) == [
        PyTask("mod:f", args=(i,)).serialize() for i in (1, 2, 3)
    ]


async def every_queue_call(queue: Queue, wire: Wire) -> tuple[int, ...]:
    """Each Queue method that talks to Redis, the worker's side included; what they return."""
    with anyio.fail_after(5):
        await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b"), PyTask("mod:c")])
        [(_, first)] = await queue._fetch(wire, "test:hand", ["test:0"])
        await queue._requeue("test:0", first, at_head=True)
        [(_, first)] = await queue._fetch(wire, "test:hand", ["test:0"])
        await queue._bury("test:0", first, "refused", "test-worker")
        await queue._fetch(wire, "test:hand", ["test:1"])
        await queue._release("test:hand", ["test:1"])
        await queue._return_tokens("test:hand")
        dead = len(await queue.dead_tasks())
        requeued_dead = await queue.requeue_dead()
        await queue.enqueue(PyTask("mod:d"))
        await queue._bury("test:missing", b"x", "nothing in that slot", "test-worker")
        return (
            dead,
            requeued_dead,
            await queue.purge_dead(),
            await queue.requeue_lost(),
            await queue.in_flight(),
            await queue.len(),
        )


def test_every_queue_call_works_from_a_second_loop_without_redis_pys_pool(
    admin: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    queue = Queue("jobs", client)

    async def run() -> tuple[int, ...]:
        wire = Wire(client, "a worker's fetch wire")  # one per worker, on the worker's loop
        try:
            return await every_queue_call(queue, wire)
        finally:
            await wire.aclose()

    for _ in range(2):
        admin.flushall()
        assert asyncio.run(run()) == (1, 1, 0, 0, 0, 3)
        assert client.connection_pool._available_connections == []  # none used, none left

    async def close() -> None:
        await client.aclose()

    asyncio.run(close())


# pytest-asyncio gives each test its own event loop: an app's module-level client meets a new
# loop in every test. These two run in this order, the second on a loop of its own.

_app_client: list[redis.asyncio.Redis] = []


def _app_queue(redis_server: EmbeddedRedis) -> Queue:
    if not _app_client:
        _app_client.append(redis.asyncio.Redis.from_url(redis_server.url))
    return Queue("jobs", _app_client[0])


async def test_an_apps_first_test_enqueues(admin: redis.Redis, redis_server: EmbeddedRedis) -> None:
    assert await enqueue_and_count(_app_queue(redis_server), 1) == 1


async def test_an_apps_second_test_enqueues_on_its_own_loop(
    admin: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    queue = _app_queue(redis_server)
    try:
        assert await enqueue_and_count(queue, 2) == 1  # admin flushed the first test's task
        assert await queue.in_flight() == 0
    finally:
        await _app_client.pop().aclose()


def test_a_loop_per_thread_each_gets_its_own_connection(
    admin: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, client_name="two-threads")
    queue = Queue("jobs", client)
    both_running = threading.Barrier(3, timeout=10)
    errors: list[BaseException] = []

    async def produce(thread: int) -> None:
        with anyio.fail_after(10):
            for round_ in range(2):
                tags = range(thread * 1000 + round_ * 100, thread * 1000 + round_ * 100 + 100)
                await asyncio.gather(*(queue.enqueue(PyTask("mod:f", args=(t,))) for t in tags))
                await queue.len()
                await asyncio.to_thread(both_running.wait)  # this loop stays alive meanwhile

    def run(thread: int) -> None:
        try:
            asyncio.run(produce(thread))
        except BaseException as exc:
            errors.append(exc)
            both_running.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    try:
        both_running.wait()  # both loops alive, both have enqueued
        assert connections(admin, "two-threads", 2) == 2
        both_running.wait()
    finally:
        for thread in threads:
            thread.join(10)
    assert not errors, errors
    assert admin.llen("jobs") == admin.llen("jobs_noti") == 400
    asyncio.run(client.aclose())  # from a third loop, once theirs are closed
    assert connections(admin, "two-threads", 0) == 0


def test_closed_loops_leave_no_connection_open_and_none_unclosed(
    admin: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, client_name="many-loops")
    queue = Queue("jobs", client)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for tag in range(1, 31):
            assert asyncio.run(enqueue_and_count(queue, tag)) == tag
            assert connections(admin, "many-loops", 1) == 1  # the closed loops' were closed

        async def last_loop() -> None:
            await queue.len()
            await client.aclose()

        asyncio.run(last_loop())
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert connections(admin, "many-loops", 0) == 0


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_closed_loops_socket_is_closed_from_another_loop(
    tls: bool, certificate: tuple[str, str]
) -> None:
    """What closing a closed loop's connection comes down to (rediss:// included; this host's
    redis-server has no TLS): the peer sees the end, and nothing is left unclosed."""
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    ended = threading.Event()

    def serve() -> None:
        peer, _ = listener.accept()
        with contextlib.suppress(OSError):
            if tls:
                peer = server_side.wrap_socket(peer, server_side=True)
            while peer.recv(100):
                pass
        peer.close()
        ended.set()

    threading.Thread(target=serve, daemon=True).start()
    opened: list[asyncio.StreamWriter] = []  # held, as redis-py's connection holds it

    async def open_and_leave() -> None:
        context = ssl.create_default_context(cafile=cert) if tls else None
        _, writer = await asyncio.open_connection(*listener.getsockname(), ssl=context)
        opened.append(writer)

    with listener, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(open_and_leave())  # its loop closes with the socket open
        close_without_loop(opened[0].transport)  # type: ignore[arg-type]
        assert ended.wait(5)
        opened.clear()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
