"""Task functions of the time features' tests (tests/test_scheduled.py): each records when it ran
and what its context said, in ``runs``."""

from __future__ import annotations

import time
from typing import Any

import anyio

from adelayed import Retry, current_task

runs: list[dict[str, Any]] = []
_failures: dict[str, int] = {}


def reset() -> None:
    runs.clear()
    _failures.clear()


def _record(name: str) -> None:
    context = current_task()
    runs.append({
        "name": name, "at": time.monotonic(), "attempt": context.attempt,
        "task_id": context.task_id, "due": context.due, "worker": context.worker_id,
        "queue": context.queue, "timeout": context.timeout, "left": context.time_left(),
    })  # fmt: skip


async def record(name: str) -> None:
    _record(name)


def record_in_thread(name: str) -> None:
    _record(name)


def _builtin(error: str) -> type[BaseException]:
    import builtins

    cls = getattr(builtins, error)
    assert isinstance(cls, type) and issubclass(cls, BaseException)
    return cls


async def fail_times(name: str, times: int, error: str = "ValueError") -> None:
    """Fails its first ``times`` runs, then succeeds."""
    _record(name)
    done = _failures.get(name, 0)
    if done < times:
        _failures[name] = done + 1
        raise _builtin(error)(f"{name}: failure {done + 1} of {times}")


async def ask_retry(name: str, delay: float, times: int) -> None:
    """Raises Retry(delay) on its first ``times`` runs."""
    _record(name)
    done = _failures.get(name, 0)
    if done < times:
        _failures[name] = done + 1
        raise Retry(delay, reason="not yet")


async def fail(name: str, error: str = "ValueError") -> None:
    """Fails every time, with the named builtin exception."""
    _record(name)
    raise _builtin(error)(name)


async def sleep(name: str, seconds: float) -> None:
    _record(name)
    await anyio.sleep(seconds)
    runs.append({"name": name + ":done", "at": time.monotonic()})


def sleep_in_thread(name: str, seconds: float) -> None:
    _record(name)
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # Python bytecode: a timeout's exception lands here
        time.sleep(0.01)
    runs.append({"name": name + ":done", "at": time.monotonic()})
