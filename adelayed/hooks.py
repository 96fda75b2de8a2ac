"""A worker's hooks: ``on_startup`` / ``on_shutdown`` around its life, and ``before_task`` /
``after_task`` / ``on_failure`` around each attempt of each task.

Each hook may be a plain function or an ``async def`` one (a plain one runs on the event loop:
keep it quick); a Worker argument takes one hook or a sequence of them, run in order.

- ``on_startup(state)`` runs once, after the worker's start-up check of Redis and before it
  takes a task; ``state`` is ``worker.state``, a dict every task reads as
  ``current_task().state`` (a database pool opened once per worker, a client, settings). A
  startup hook that raises stops the worker with HookError before it takes any task; the
  shutdown hooks do not run then.
- ``on_shutdown(state)`` runs once, after the last task ended (also when ``run()`` ends with
  an error or is cancelled); all run, each one's error is logged; together they get
  ``grace_period`` seconds.
- ``before_task(task)``, ``after_task(task)`` and ``on_failure(task, error)`` get the attempt's
  TaskContext, the same object ``current_task()`` returns in the task, and run in the task's
  own context (a ContextVar set in ``before_task`` is seen in the task and in ``after_task``).
  ``before_task`` hooks that raise fail that attempt, and only it: the task does not run, the
  failure (a HookError) goes through the task's retry policy as the task's own error would.
  ``on_failure`` runs after an attempt that raised (its exception, a timeout included), then
  ``after_task`` runs after every attempt that began, whatever its outcome; an error in either
  is logged, and the attempt's outcome stands. None runs for an attempt a hard stop cancels. A
  process-isolated task's hooks run in the worker's process, around the child.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from .context import TaskContext, pin
from .errors import HookError

logger = logging.getLogger(__name__)

State = dict[str, Any]
WorkerHook = Callable[[State], Awaitable[None] | None]
TaskHook = Callable[[TaskContext], Awaitable[None] | None]
FailureHook = Callable[[TaskContext, BaseException], Awaitable[None] | None]


def _listed(hooks: Any) -> list[Any]:
    if hooks is None:
        return []
    return [hooks] if callable(hooks) else list(hooks)


def _name(hook: Any) -> str:
    return f"{getattr(hook, '__module__', '?')}:{getattr(hook, '__qualname__', repr(hook))}"


async def _call(hook: Callable[..., Any], *args: Any) -> None:
    result = hook(*args)
    if inspect.isawaitable(result):
        await result


class Hooks:
    """A worker's hooks, and its state."""

    def __init__(
        self,
        on_startup: WorkerHook | Sequence[WorkerHook] | None,
        on_shutdown: WorkerHook | Sequence[WorkerHook] | None,
        before_task: TaskHook | Sequence[TaskHook] | None,
        after_task: TaskHook | Sequence[TaskHook] | None,
        on_failure: FailureHook | Sequence[FailureHook] | None,
    ) -> None:
        self.state: State = {}
        self._startup: list[WorkerHook] = _listed(on_startup)
        self._shutdown: list[WorkerHook] = _listed(on_shutdown)
        self._before: list[TaskHook] = _listed(before_task)
        self._after: list[TaskHook] = _listed(after_task)
        self._failure: list[FailureHook] = _listed(on_failure)
        self.per_task = bool(self._before or self._after or self._failure)

    async def start(self, who: str) -> None:
        for hook in self._startup:
            try:
                await _call(hook, self.state)
            except Exception as exc:
                raise HookError(
                    f"{who}: on_startup hook {_name(hook)} failed ({type(exc).__name__}: "
                    f"{exc}); the worker took no task. Fix the hook, or what it connects to, "
                    "and start the worker again"
                ) from exc

    async def stop(self, who: str, within: float) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(within) as scope:
            for hook in self._shutdown:
                try:
                    await _call(hook, self.state)
                except Exception:
                    logger.exception("%s: on_shutdown hook %s failed", who, _name(hook))
        if scope.cancelled_caught:
            logger.error("%s: on_shutdown hooks cut off after %gs (grace_period)", who, within)

    async def run(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Runs one attempt, ``call``, between the task hooks (its context entered); returns
        what it returned."""
        task = pin()
        try:
            for hook in self._before:
                try:
                    await _call(hook, task)
                except Exception as exc:
                    raise HookError(
                        f"queue {task.queue!r}: before_task hook {_name(hook)} failed for task "
                        f"{task.func_path!r} ({type(exc).__name__}: {exc}); the task did not "
                        "run this attempt"
                    ) from exc
            value = await call()
        except (Exception, SystemExit) as exc:
            await self._each(self._failure, "on_failure", task, exc)
            await self._each(self._after, "after_task", task)
            raise
        await self._each(self._after, "after_task", task)
        return value

    @staticmethod
    async def _each(hooks: Sequence[Callable[..., Any]], kind: str, *args: Any) -> None:
        for hook in hooks:
            try:
                await _call(hook, *args)
            except Exception:
                task: TaskContext = args[0]
                logger.exception(
                    "queue %r: %s hook %s failed for task %r (the task's outcome stands)",
                    task.queue, kind, _name(hook), task.func_path,
                )  # fmt: skip
