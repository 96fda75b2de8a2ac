"""The tasks of ``adelayed verify``'s scratch queue: each records, in the queue's verify log,
when a run of it starts and when it ends, with the worker process's pid, so that every
execution is counted one by one. The workers ``verify`` starts find the Redis URL in
``$ADELAYED_VERIFY_URL``."""

from __future__ import annotations

import os
import time

import anyio
import redis
import redis.asyncio

_clients: dict[str, object] = {}


def _async_client() -> redis.asyncio.Redis:
    client = _clients.get("async")
    if client is None:
        client = _clients["async"] = redis.asyncio.Redis.from_url(os.environ["ADELAYED_VERIFY_URL"])
    assert isinstance(client, redis.asyncio.Redis)
    return client


def _sync_client() -> redis.Redis:
    client = _clients.get("sync")
    if client is None:
        client = _clients["sync"] = redis.Redis.from_url(os.environ["ADELAYED_VERIFY_URL"])
    assert isinstance(client, redis.Redis)
    return client


async def run(tag: str, pause: float, log: str) -> None:
    """A coroutine task: marks its start, works ``pause`` seconds, marks its end."""
    client = _async_client()
    await client.rpush(log, f"{tag} started {os.getpid()}")
    await anyio.sleep(pause)
    await client.rpush(log, f"{tag} done {os.getpid()}")


def run_in_thread(tag: str, pause: float, log: str) -> None:
    """The same as a plain function (a worker runs it in a thread)."""
    client = _sync_client()
    client.rpush(log, f"{tag} started {os.getpid()}")
    time.sleep(pause)
    client.rpush(log, f"{tag} done {os.getpid()}")
