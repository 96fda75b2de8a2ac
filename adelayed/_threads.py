"""Calling a task's function: ``async def`` functions on the event loop, plain functions in
daemon threads of the worker's own.

Why not ``anyio.to_thread``: its threads are joined at interpreter exit, so a process whose
worker was hard-stopped past a running sync task could not exit until that task returned; and
the abandoned call ran on to completion after its task had been requeued, so the task ran twice.
Here a hard stop abandons the call:

- the thread is a daemon thread, so the process exits without waiting for it;
- an ``Abandoned`` exception (a BaseException) is raised into the thread (CPython's
  ``PyThreadState_SetAsyncExc``). It lands at the thread's next Python bytecode, so the function
  does not run on to completion, and its result is never settled. Like a KeyboardInterrupt, it
  can land anywhere in the function's Python code, its cleanup included. A function blocked in C
  (``time.sleep``, a socket read) gets it when that call returns to Python; C code that never
  returns to Python runs on until the process exits, which no longer waits for it. One race
  remains: a function that returns in the instant the stop is decided has completed, and is
  requeued all the same.

Threads are reused, so no thread is started per task; the worker's slots bound how many run.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Any

from ._functions import TaskFunction, is_async
from .errors import TaskCallError
from .task import PyTask

_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_set_async_exc = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)


class Abandoned(BaseException):
    """Raised into a thread whose call a hard stop abandoned (its task was requeued)."""


async def call_task(func: TaskFunction, task: PyTask, threads: ThreadRunner) -> Any:
    """Calls ``func`` with the task's arguments and returns what it returned; a call with
    wrong arguments raises TaskCallError (a failure inside the function raises what it
    raised)."""
    if is_async(func):
        try:
            coroutine = func(*task.args, **task.kwargs)
        except TypeError as exc:
            if _raised_by_call(exc):
                raise _call_error(exc, task) from exc
            raise
        return await coroutine
    # in a copy of this context: the thread sees current_task()
    return await threads.call(contextvars.copy_context().run, _call_in_thread, func, task)


class ThreadRunner:
    """Runs sync functions in daemon threads; an idle thread is reused, a cancelled call's
    thread is abandoned (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._idle: list[_TaskThread] = []

    async def call(self, func: Callable[..., Any], *args: Any) -> Any:
        thread = self._idle.pop() if self._idle else _TaskThread(self._name)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        thread.jobs.put((func, args, future))
        try:
            return await future
        except asyncio.CancelledError:
            if future.cancelled():  # the call runs on, or its outcome is on its way: drop it
                thread.abandon()
            raise
        finally:
            if future.done() and not future.cancelled():  # the call returned: reuse the thread
                self._idle.append(thread)

    def close(self) -> None:
        """Ends the idle threads (a running one ends when its call returns)."""
        idle, self._idle = self._idle, []
        for thread in idle:
            thread.jobs.put(None)


class _TaskThread(threading.Thread):
    def __init__(self, name: str) -> None:
        super().__init__(name=f"adelayed task thread of {name}", daemon=True)
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self.start()

    def run(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                func, args, future = job
                result, error = None, None
                try:
                    result = func(*args)
                except Abandoned:
                    return
                except BaseException as exc:
                    error = exc
                try:
                    self._loop.call_soon_threadsafe(_settle, future, result, error)
                except RuntimeError:  # the loop is closed: nobody awaits the outcome
                    return
        except Abandoned:  # landed after the call returned: its outcome is not settled
            return

    def abandon(self) -> None:
        """Stops the running call from completing, and the thread after it."""
        if _set_async_exc is not None and self.ident is not None:
            _set_async_exc(ctypes.c_ulong(self.ident), ctypes.py_object(Abandoned))
        self.jobs.put(None)  # a thread that already finished its call waits for work: end it


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: the call was abandoned
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _raised_by_call(exc: TypeError) -> bool:
    """True when the call itself failed (bad arguments): the traceback, caught in the frame
    that made the call, holds no frame of the function."""
    return exc.__traceback__ is not None and exc.__traceback__.tb_next is None


def _call_error(exc: TypeError, task: PyTask) -> TaskCallError:
    return TaskCallError(f"task {task.func_path!r} cannot be called with its arguments: {exc}")


def _call_in_thread(func: TaskFunction, task: PyTask) -> Any:
    try:
        return func(*task.args, **task.kwargs)
    except TypeError as exc:
        if _raised_by_call(exc):
            raise _call_error(exc, task) from exc
        raise
