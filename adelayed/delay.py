"""The ``delayed(queue)`` decorator factory: task functions that enqueue themselves."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from ._functions import register_decorated
from .queue import Queue
from .task import PyTask

P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class DelayedFunction(Protocol[P, R]):
    """A task function: call it to run it here and now, ``await f.delay(...)`` to enqueue it."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]: ...


class delayed:  # noqa: N801 - named after delayed's decorator factory, which users know
    """Makes task functions for ``queue``: ``task = delayed(queue)``, then ``@task`` or
    ``@task(retry=3)`` on a function defined at a module's top level.

    Decorating also allows the function on workers whose process imports its module.
    """

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    @overload
    def __call__(self, func: Callable[P, R], *, retry: int = 0) -> DelayedFunction[P, R]: ...

    @overload
    def __call__(
        self, func: None = None, *, retry: int = 0
    ) -> Callable[[Callable[P, R]], DelayedFunction[P, R]]: ...

    def __call__(
        self, func: Callable[P, R] | None = None, *, retry: int = 0
    ) -> DelayedFunction[P, R] | Callable[[Callable[P, R]], DelayedFunction[P, R]]:
        if func is None:
            return lambda f: self._wrap(f, retry)
        return self._wrap(func, retry)

    def _wrap(self, func: Callable[P, R], retry: int) -> DelayedFunction[P, R]:
        path = register_decorated(func)
        queue = self._queue

        async def delay(*args: P.args, **kwargs: P.kwargs) -> None:
            await queue.enqueue(PyTask(path, args, kwargs, retry))

        delay.__doc__ = f"Enqueues a call of {path} on queue {queue.name!r}."
        func.delay = delay  # type: ignore[attr-defined]
        return cast(DelayedFunction[P, R], func)
