"""Hooks added to a Worker after it was made, after its own: how ``adelayed.testing.drain``
records what ran and how ``adelayed.metrics`` measures it. A worker with no hook at all keeps
its hook-free fast path until one is added."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hooks import FailureHook, TaskHook, WorkerHook

if TYPE_CHECKING:
    from .worker import Worker


def add_hooks(
    worker: Worker,
    *,
    on_startup: WorkerHook | None = None,
    on_shutdown: WorkerHook | None = None,
    before_task: TaskHook | None = None,
    after_task: TaskHook | None = None,
    on_failure: FailureHook | None = None,
) -> None:
    hooks = worker._hooks
    for kept, hook in (
        (hooks._startup, on_startup), (hooks._shutdown, on_shutdown),
        (hooks._before, before_task), (hooks._after, after_task), (hooks._failure, on_failure),
    ):  # fmt: skip
        if hook is not None:
            kept.append(hook)  # type: ignore[arg-type]
    hooks.per_task = bool(hooks._before or hooks._after or hooks._failure)
    for executor in worker._executors:
        executor.hooks = hooks if hooks.per_task else None
