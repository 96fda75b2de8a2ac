"""The ``delayed(queue)`` decorator factory: task functions that enqueue themselves."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from ._functions import register_decorated
from .errors import TaskDataError
from .queue import Queue
from .task import PyTask

P = ParamSpec("P")
_SHAPES_KEPT = 64  # per function: a **kwargs function may be called with any set of names
R = TypeVar("R", covariant=True)


class DelayedFunction(Protocol[P, R]):
    """A task function: call it to run it here and now, ``await f.delay(...)`` to enqueue it."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]: ...


class delayed:  # noqa: N801 - named after delayed's decorator factory, which users know
    """Makes task functions for ``queue``: ``task = delayed(queue)``, then ``@task`` or
    ``@task(retry=3)`` on a function defined at a module's top level.

    Decorating also allows the function on workers whose process imports its module.
    ``f.delay(...)`` checks its arguments against ``f``'s signature before sending, so a call
    the worker would refuse raises TaskDataError here.
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
        check_call = call_checker(func, path, queue.name)

        async def delay(*args: P.args, **kwargs: P.kwargs) -> None:
            check_call(args, kwargs)
            await queue.enqueue(PyTask(path, args, kwargs, retry))

        delay.__doc__ = f"Enqueues a call of {path} on queue {queue.name!r}."
        func.delay = delay  # type: ignore[attr-defined]
        return cast(DelayedFunction[P, R], func)


def call_checker(
    func: Callable[..., Any], path: str, queue_name: str
) -> Callable[[tuple[Any, ...], dict[str, Any]], None]:
    """A check that ``func(*args, **kwargs)`` would bind, as the worker will call it.

    Whether a call binds depends only on its shape (how many positional arguments, which
    keyword names), never on the values, so the shapes that bound once are remembered: binding
    costs over a microsecond, a set lookup a few dozen nanoseconds.
    """
    try:
        signature = inspect.signature(func, follow_wrapped=False)  # what the worker calls
    except (TypeError, ValueError):  # no signature to check against (some builtins)
        return lambda args, kwargs: None
    fits: set[tuple[Any, ...]] = set()

    def check_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        shape = (len(args), *kwargs)
        if shape in fits:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            name = path.rpartition(":")[2]
            raise TaskDataError(
                f"cannot enqueue {path} on queue {queue_name!r}: the call does not fit "
                f"{name}{_bare(signature)}: {exc}; pass the arguments {name}() takes"
            ) from None
        if len(fits) < _SHAPES_KEPT:
            fits.add(shape)

    return check_call


def _bare(signature: inspect.Signature) -> inspect.Signature:
    """The signature without annotations, which postponed evaluation shows as strings."""
    params = [param.replace(annotation=param.empty) for param in signature.parameters.values()]
    return signature.replace(parameters=params, return_annotation=signature.empty)
