"""The ``delayed(queue)`` decorator factory: task functions that enqueue themselves."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, ParamSpec, Protocol, TypedDict, TypeVar, cast, overload

from ._functions import register_decorated
from .errors import ConfigurationError, TaskDataError
from .queue import Queue
from .results import TaskHandle
from .retry import Backoff
from .task import PyTask

P = ParamSpec("P")
_SHAPES_KEPT = 64  # per function: a **kwargs function may be called with any set of names
R = TypeVar("R", covariant=True)


class Options(TypedDict, total=False):
    """Queue.enqueue's options, as the decorator and ``.options()`` take them."""

    delay: float | timedelta | None
    eta: datetime | None
    timeout: float | timedelta | None
    backoff: Backoff | None
    retry_on: tuple[type[BaseException], ...]
    dead_letter_on_failure: bool
    isolation: str | None
    keep_result: float | timedelta | None
    key: str | None
    key_lifetime: str | float | timedelta
    debounce: bool


class Delayer(Protocol[P]):
    """``f.options(...)``: enqueues calls of ``f`` with these options."""

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, TaskHandle]: ...


class DelayedFunction(Protocol[P, R]):
    """A task function: call it to run it here and now, ``await f.delay(...)`` to enqueue it,
    ``await f.options(delay=60).delay(...)`` to enqueue it with options (Queue.enqueue's);
    both return its handle."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, TaskHandle]: ...

    def options(
        self,
        *,
        retry: int | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        timeout: float | timedelta | None = None,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        dead_letter_on_failure: bool = False,
        isolation: str | None = None,
        keep_result: float | timedelta | None = None,
        key: str | None = None,
        key_lifetime: str | float | timedelta = "running",
        debounce: bool = False,
    ) -> Delayer[P]: ...


class _Delayer:
    __slots__ = ("_enqueue",)

    def __init__(self, enqueue: Callable[..., Coroutine[Any, Any, TaskHandle]]) -> None:
        self._enqueue = enqueue

    def delay(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, TaskHandle]:
        return self._enqueue(args, kwargs)


class delayed:  # noqa: N801 - named after delayed's decorator factory, which users know
    """Makes task functions for ``queue``: ``task = delayed(queue)``, then ``@task`` or
    ``@task(retry=3, timeout=30, ...)`` (Queue.enqueue's options, as defaults of every call)
    on a function defined at a module's top level.

    Decorating also allows the function on workers whose process imports its module.
    ``f.delay(...)`` checks its arguments against ``f``'s signature before sending, so a call
    the worker would refuse raises TaskDataError here.
    """

    def __init__(self, queue: Queue) -> None:
        if not isinstance(queue, Queue):  # ``@delayed`` bare, on the function itself
            raise ConfigurationError(
                f"delayed() takes the Queue its tasks go to, not {queue!r}: make the decorator "
                "first (task = delayed(queue)), then put @task on the function"
            )
        self._queue = queue

    @overload
    def __call__(
        self, func: Callable[P, R], *, retry: int = 0, **options: Any
    ) -> DelayedFunction[P, R]: ...

    @overload
    def __call__(
        self, func: None = None, *, retry: int = 0, **options: Any
    ) -> Callable[[Callable[P, R]], DelayedFunction[P, R]]: ...

    def __call__(
        self, func: Callable[P, R] | None = None, *, retry: int = 0, **options: Any
    ) -> DelayedFunction[P, R] | Callable[[Callable[P, R]], DelayedFunction[P, R]]:
        unknown = set(options) - set(Options.__annotations__)
        if unknown:
            raise TypeError(f"delayed(queue)(...) got unknown options {sorted(unknown)}")
        if func is None:
            return lambda f: self._wrap(f, retry, cast(Options, options))
        return self._wrap(func, retry, cast(Options, options))

    def _wrap(self, func: Callable[P, R], retry: int, defaults: Options) -> DelayedFunction[P, R]:
        path = register_decorated(func)
        queue = self._queue
        check_call = call_checker(func, path, queue.name)
        default_retry = retry

        async def enqueue(
            args: tuple[Any, ...], kwargs: dict[str, Any], retry: int, options: Options
        ) -> TaskHandle:
            check_call(args, kwargs)
            return await queue.enqueue(PyTask(path, args, kwargs, retry), **options)

        async def delay(*args: P.args, **kwargs: P.kwargs) -> TaskHandle:
            return await enqueue(args, kwargs, retry, defaults)

        def options(*, retry: int | None = None, **chosen: Any) -> _Delayer:
            merged = cast(Options, {**defaults, **chosen})
            tries = default_retry if retry is None else retry
            return _Delayer(lambda args, kwargs: enqueue(args, kwargs, tries, merged))

        delay.__doc__ = f"Enqueues a call of {path} on queue {queue.name!r}."
        func.delay = delay  # type: ignore[attr-defined]
        func.options = options  # type: ignore[attr-defined]
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
