"""Task functions and hooks of tests/test_hooks.py: each appends what it saw to ``events``."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import anyio

from adelayed import TaskContext, current_task

events: list[tuple[Any, ...]] = []
contexts: list[TaskContext] = []  # what current_task() gave each task run
seen_in_task: contextvars.ContextVar[str] = contextvars.ContextVar("seen_in_task", default="")
fail_before: dict[str, int] = {}  # func path -> how many before_task calls still raise


def reset() -> None:
    events.clear()
    contexts.clear()
    fail_before.clear()


async def uses_pool(name: str) -> None:
    contexts.append(current_task())
    events.append(("task", name, current_task().state["pool"], seen_in_task.get()))


def uses_pool_in_thread(name: str) -> None:
    contexts.append(current_task())
    events.append(("task", name, current_task().state["pool"], threading.current_thread().name))


async def fails(name: str) -> None:
    events.append(("task", name))
    raise ValueError(f"{name} fails")


async def slow(name: str) -> None:
    events.append(("task", name))
    await anyio.sleep(10)


async def open_pool(state: dict[str, Any]) -> None:
    await anyio.sleep(0.01)
    state["pool"] = "pool-1"
    events.append(("startup", "open_pool"))


def close_pool(state: dict[str, Any]) -> None:  # a plain function hook
    events.append(("shutdown", "close_pool", state.pop("pool")))


def broken(state: dict[str, Any]) -> None:
    raise ConnectionRefusedError("database at 127.0.0.1:1 refused")


async def before(task: TaskContext) -> None:
    left = fail_before.get(task.func_path, 0)
    if left:
        fail_before[task.func_path] = left - 1
        raise RuntimeError("no connection to spare")
    seen_in_task.set(f"set before attempt {task.attempt}")
    events.append(("before", task.func_path, task.attempt, task))


def after(task: TaskContext) -> None:
    events.append(("after", task.func_path, seen_in_task.get(), task))


async def on_failure(task: TaskContext, error: BaseException) -> None:
    events.append(("failure", task.func_path, type(error).__name__, str(error)))


def broken_task_hook(task: TaskContext, *error: BaseException) -> None:
    raise KeyError("a hook bug")
