"""Helpers shared by the tests: run a worker in the test's event loop, poll for a condition."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis

from adelayed import Queue, Worker
from adelayed.embedded import EmbeddedRedis

FAST_SYNC = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0"}  # replicas sync at once


def start_replica(primary: EmbeddedRedis) -> EmbeddedRedis:
    """A new server, made a replica of ``primary`` (by REPLICAOF: Redis 6.2 cannot take
    ``--replicaof host port`` as one argument)."""
    replica = EmbeddedRedis(dict(FAST_SYNC)).start()
    with redis.Redis(port=replica.port) as client:
        client.replicaof("127.0.0.1", str(primary.port))
    return replica


def make_worker(queue: Queue, **options: Any) -> Worker:
    settings: dict[str, Any] = {
        "tasks": ["tests.tasks"],
        "handle_signals": False,
        "sweep_interval": None,
        "keep_alive_interval": 1,
        "retry_backoff": (0.01, 0.05),  # retries in ms, not the default seconds
        **options,
    }
    return Worker(queue, **settings)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Runs ``worker`` in the background; on exit stops it and waits for run() to return."""
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        yield worker
        worker.stop()


async def wait_for(condition: Callable[[], object], timeout: float = 10, what: str = "") -> None:
    """Waits until ``condition()`` (or what it returns, awaited) is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await anyio.sleep(0.01)


def texts(items: Iterable[Any]) -> list[str]:
    """Redis replies (a list's items, a hash's fields, a sorted set's members) as text."""
    return [item.decode() if isinstance(item, bytes) else str(item) for item in items]


def text(item: bytes | str | None) -> str:
    """One Redis reply as text (AssertionError when the key or field is missing)."""
    assert item is not None, "missing in Redis"
    return item.decode() if isinstance(item, bytes) else item


def raw(item: bytes | str | None) -> bytes:
    """One Redis reply as bytes (AssertionError when missing)."""
    assert item is not None, "missing in Redis"
    return item if isinstance(item, bytes) else item.encode()


async def command(client: Any, *args: Any) -> Any:
    """``client.execute_command(*args)`` (redis-py leaves it untyped)."""
    return await client.execute_command(*args)
