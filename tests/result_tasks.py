"""Task functions of tests/test_results.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio


async def echo(value: Any) -> Any:
    return value


def echo_in_thread(value: Any) -> Any:
    return value


async def fail(message: str) -> None:
    raise LookupError(message)


async def returns_a_set() -> Any:
    return {1, 2}


async def nap(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "rested"


def nap_in_thread(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


attempts: dict[str, int] = {}


async def fail_once(tag: str) -> str:
    attempts[tag] = attempts.get(tag, 0) + 1
    if attempts[tag] == 1:
        raise RuntimeError("first attempt fails")
    return f"{tag} on attempt {attempts[tag]}"


async def in_steps(steps: int) -> str:
    from adelayed import current_task

    for step in range(steps):
        await current_task().progress((step + 1) / steps, f"step {step + 1} of {steps}")
        await anyio.sleep(0.3)
    return "all steps"


def in_steps_in_thread(steps: int) -> str:
    from adelayed import current_task

    for step in range(steps):
        current_task().progress_from_thread((step + 1) / steps, f"step {step + 1} of {steps}")
        time.sleep(0.3)
    return "all steps"


async def plain_progress() -> None:
    from adelayed import current_task

    await current_task().progress(0.5, "no id: nothing is written")


events: dict[str, float] = {}


async def until_cancelled(tag: str) -> str:
    events[f"{tag} started"] = time.monotonic()
    try:
        await anyio.sleep(30)
    except BaseException:
        events[f"{tag} cancelled"] = time.monotonic()
        raise
    return "not aborted"


def thread_until(tag: str, seconds: float) -> str:
    events[f"{tag} started"] = time.monotonic()
    time.sleep(seconds)
    events[f"{tag} returned"] = time.monotonic()
    return "discarded"


async def cancel_requests() -> int:
    """The cancellation requests pending on the task running it (Python 3.11+): 0 unless
    something left one behind."""
    return asyncio.current_task().cancelling()  # type: ignore[union-attr]


runs: dict[int, int] = {}


async def counted(i: int) -> int:
    """Returns ``i``, counting its runs in ``runs``."""
    runs[i] = runs.get(i, 0) + 1
    return i
