"""Helpers shared by the tests: run a worker in the test's event loop, poll for a condition."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from adelayed import Queue, Worker


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


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await anyio.sleep(0.01)
