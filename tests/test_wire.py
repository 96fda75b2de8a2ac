"""adelayed's own connections (adelayed._wire) against a real redis-server: replies in order,
error replies raised as redis-py raises them, cancelled calls, lost connections and closed ones;
a client's Queue calls share one per event loop, closed with the client (more on event loops in
test_event_loops.py)."""

from __future__ import annotations

import asyncio
import gc

import anyio
import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

from adelayed import PyTask, Queue
from adelayed._wire import Wire
from adelayed.embedded import EmbeddedRedis
from tests.helpers import wait_for


async def test_pipelined_calls_get_their_own_replies(wire: Wire) -> None:
    sent = [await wire.send("ECHO", f"reply {i}") for i in range(50)]
    assert [await wire.reply_to(waiter) for waiter in sent] == [
        f"reply {i}".encode() for i in range(50)
    ]


async def test_error_replies_raise_redis_py_exceptions(client: redis.Redis, wire: Wire) -> None:
    with pytest.raises(NoScriptError):
        await wire.call("EVALSHA", "0" * 40, 0)
    await client.set("a-string", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await wire.call("LPUSH", "a-string", "x")
    assert await wire.call("PING") == b"PONG"  # still in step


async def test_a_cancelled_call_leaves_the_connection_in_step(wire: Wire) -> None:
    with anyio.move_on_after(0.1):
        await wire.call("BLPOP", "nothing-here", 0.3)  # cancelled while Redis blocks
    assert await wire.call("ECHO", "next") == b"next"  # not the BLPOP's nil


async def test_a_lost_connection_fails_waiting_calls_and_the_next_call_reconnects(
    client: redis.Redis, wire: Wire
) -> None:
    await wire.call("CLIENT", "SETNAME", "the-wire")
    waiter = await wire.send("BLPOP", "nothing-here", 5)
    await anyio.sleep(0.05)
    await client.client_kill_filter(_type="normal", skipme=True, laddr=None, user=None)
    with pytest.raises(ConnectionError):
        await wire.reply_to(waiter)
    assert await wire.call("PING") == b"PONG"


async def test_socket_timeout_bounds_a_reply_beyond_a_blocking_wait(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    timing_out = redis.Redis.from_url(redis_server.url, socket_timeout=0.2)
    wire = Wire(timing_out, "test wire")
    try:
        # A blocking command's own timeout is allowed on top of socket_timeout...
        await wire.reply_to(await wire.send("BLPOP", "nothing-here", 0.5, blocking_for=0.5))
        # ...but a server that does not answer at all is given up on.
        client_id = await wire.call("CLIENT", "ID")
        await client.client_pause(1000, all=False)
        with pytest.raises(TimeoutError):
            await wire.call("SET", "k", "v")  # writes wait out a CLIENT PAUSE WRITE
        await client.client_unpause()
        assert await wire.call("CLIENT", "ID") != client_id  # a new connection
    finally:
        wire.close()
        await timing_out.aclose()


async def test_concurrent_enqueues_share_one_connection(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    producer = redis.Redis.from_url(redis_server.url, client_name="producer")
    queue = Queue("jobs", producer)
    try:
        # redis-py's pool would open a connection per enqueue in flight (and redis-py 8 refuses
        # a 101st): the enqueue wire pipelines them all on one.
        await asyncio.gather(*(queue.enqueue(PyTask("mod:f", args=(i,))) for i in range(1000)))
        assert await client.llen("jobs") == await client.llen("jobs_noti") == 1000
        assert await _connections_named(client, "producer") == 1
    finally:
        await producer.aclose()


async def test_closing_the_client_closes_its_enqueue_connection(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    producer = redis.Redis.from_url(redis_server.url, client_name="producer")
    await Queue("jobs", producer).enqueue(PyTask("mod:f"))
    assert await _connections_named(client, "producer") == 1
    await producer.aclose()
    await wait_for(lambda: _none_named(client, "producer"), timeout=2, what="the socket closed")


async def _connections_named(client: redis.Redis, name: str) -> int:
    return sum(entry["name"] == name for entry in await client.client_list())


async def _none_named(client: redis.Redis, name: str) -> bool:
    return await _connections_named(client, name) == 0


async def test_an_enqueue_after_a_server_restart_reconnects_before_sending() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        queue = Queue("jobs", client)
        try:
            await queue.enqueue(PyTask("mod:a"))
            server.stop()
            server.start()
            await anyio.sleep(0.2)  # the event loop sees the old socket close
            await queue.enqueue(PyTask("mod:b"))  # sent on a new connection: no error
            assert await client.lrange("jobs", 0, -1) == [PyTask("mod:b").serialize()]
        finally:
            await client.aclose()


async def test_a_closed_wires_blocked_command_gives_up_before_what_is_sent_next(
    client: redis.Redis, wire: Wire
) -> None:
    other = Wire(client, "another wire")
    try:
        await other.call("PING")  # connected
        waiter = await wire.send("BLMOVE", "from", "to", "LEFT", "RIGHT", 5, blocking_for=5)
        await wait_for(lambda: _blocked_clients(client, 1), timeout=2, what="the BLMOVE blocks")
        wire.close()  # as a cancelled fetch does, then a requeue follows at once
        assert await other.call("RPUSH", "from", "task") == 1
        with pytest.raises(ConnectionError):
            await wire.reply_to(waiter)
        assert await client.lrange("from", 0, -1) == [b"task"]  # not taken by the closed BLMOVE
    finally:
        other.close()


async def _blocked_clients(client: redis.Redis, count: int) -> bool:
    return int((await client.info("clients"))["blocked_clients"]) == count


async def test_a_connect_whose_caller_was_cancelled_fails_unseen() -> None:
    """A connect left behind by its cancelled caller (a Ctrl-C as a command starts) that then
    fails is no "Task exception was never retrieved" traceback at exit: the next call connects
    again and reports its own failure."""
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.2)  # the caller is cancelled meanwhile
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, retry_on_error=[], retry=None)  # type: ignore[arg-type]  # no retries at all
    wire = Wire(client, "test wire")
    try:
        with anyio.move_on_after(0.05):
            await wire.call("PING")
        await anyio.sleep(0.5)  # the connect fails, with nobody left to see it
        del wire  # as at exit
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(previous)
        server.close()
        await client.aclose()
