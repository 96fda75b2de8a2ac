"""Which functions a worker may run: the allowlist that closes PROTOCOL.md hole 5.

delayed imports and calls any ``module:func`` it finds in the queue, so whoever can write to the
Redis can run ``os:system`` on every worker. An adelayed worker runs only:

- functions named in ``Worker(tasks=...)``: callables, ``"module:func"`` paths, or module names
  (then every function defined in that module, not ones it merely imports);
- functions decorated with ``delayed(queue)`` in the worker's process;
- anything importable, when the worker was built with ``allow_any_function=True``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, cast

from .errors import ConfigurationError, FunctionNotAllowedError
from .task import FUNC_SEPARATOR, func_path_of

TaskFunction = Callable[..., Any]

# Filled by the delayed() decorator when a module defining tasks is imported.
_decorated: dict[str, TaskFunction] = {}


def register_decorated(func: TaskFunction) -> str:
    path = func_path_of(func)
    _decorated[path] = func
    return path


def _import(module_name: str, wanted_by: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import module {module_name!r} for {wanted_by}: {exc}; check the name and "
            "that the worker runs where the module is importable (PYTHONPATH)"
        ) from exc


def _attribute(path: str) -> Any:
    module_name, _, name = path.partition(FUNC_SEPARATOR)
    return getattr(_import(module_name, f"task {path!r}"), name, None)


class FunctionTable:
    """Maps a task's function path to the function a worker may call, or refuses it."""

    def __init__(self, tasks: Iterable[TaskFunction | str], *, allow_any: bool = False) -> None:
        self._allow_any = allow_any
        self._allowed: dict[str, TaskFunction] = {}
        self._modules: set[str] = set()
        for entry in tasks:
            self._add(entry)

    def _add(self, entry: TaskFunction | str) -> None:
        if callable(entry):
            self._allowed[func_path_of(entry)] = entry
        elif isinstance(entry, str) and FUNC_SEPARATOR in entry:
            func = _attribute(entry)
            if not callable(func):
                raise ConfigurationError(f"tasks=: {entry!r} names no function; check the spelling")
            self._allowed[entry] = func
        elif isinstance(entry, str) and entry:
            _import(entry, "tasks=")  # also runs its @delayed decorators
            self._modules.add(entry)
        else:
            raise ConfigurationError(
                f"tasks= takes functions, 'module:func' paths and module names, not {entry!r}"
            )

    def resolve(self, path: str) -> TaskFunction:
        """The function to call for ``path``; raises FunctionNotAllowedError with the reason."""
        func = self._allowed.get(path) or _decorated.get(path)
        if func is None:
            func = self._look_up(path)
            self._allowed[path] = func
        return func

    def _look_up(self, path: str) -> TaskFunction:
        module_name = path.partition(FUNC_SEPARATOR)[0]
        if not (self._allow_any or module_name in self._modules):
            raise FunctionNotAllowedError(
                f"function {path!r} is not allowed on this worker; add it (or its module) to "
                "Worker(tasks=...), decorate it with delayed(queue), or set "
                "allow_any_function=True if every writer to this Redis is trusted"
            )
        try:
            func = _attribute(path)
        except ConfigurationError as exc:
            raise FunctionNotAllowedError(str(exc)) from exc
        if not callable(func):
            raise FunctionNotAllowedError(f"function {path!r} does not exist on this worker")
        if not self._allow_any and getattr(func, "__module__", None) != module_name:
            raise FunctionNotAllowedError(
                f"function {path!r} is imported into {module_name!r}, not defined there; "
                "allow it by its own path in Worker(tasks=...)"
            )
        return cast(TaskFunction, func)


_ASYNC: dict[TaskFunction, bool] = {}  # per function (only allowed ones are ever asked about)


def is_async(func: TaskFunction) -> bool:
    """Whether ``func`` is an ``async def``; asked once per task run, so remembered."""
    try:
        return _ASYNC[func]
    except KeyError:
        answer = _ASYNC[func] = inspect.iscoroutinefunction(func)
        return answer
    except TypeError:  # an unhashable callable object
        return inspect.iscoroutinefunction(func)
