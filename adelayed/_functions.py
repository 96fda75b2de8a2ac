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
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any, cast

from .errors import ConfigurationError, FunctionNotAllowedError, TaskError
from .task import FUNC_SEPARATOR, func_path_of

logger = logging.getLogger(__name__)

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
        raise ConfigurationError(f"{wanted_by}: {_import_failure(module_name, exc)}") from exc


def _import_failure(module_name: str, exc: ImportError) -> str:
    """Why ``module_name`` did not import, and what to do about it."""
    missing = exc.name or ""
    if isinstance(exc, ModuleNotFoundError) and f"{module_name}.".startswith(f"{missing}."):
        return f"cannot import module {module_name!r} ({exc}); {_where_to_run()}"
    return (
        f"module {module_name!r} was found but its import failed ({exc}); install or fix what "
        "it imports in the worker's environment"
    )


def _where_to_run() -> str:
    return (
        "check the spelling, and run the worker where the module is importable: the adelayed "
        "command looks in its current directory (start it from the project's root; it runs in "
        f"{os.getcwd()}), any other process needs the project's directory on PYTHONPATH"
    )


def _missing_part(module_name: str) -> str | None:
    """The first part of a dotted module name that cannot be found, or None when it can be.
    Imports nothing: a worker must not run the code of a module nobody allowed."""
    parts = module_name.split(".")
    locations: Sequence[str] | None = None
    for index in range(1, len(parts) + 1):
        name = ".".join(parts[:index])
        module = sys.modules.get(name)
        if module is not None:
            locations = getattr(module, "__path__", None)
            continue
        if not parts[index - 1] or (index > 1 and locations is None):  # a parent is no package
            return name
        spec = _find_spec(name, locations, top_level=index == 1)
        if spec is None:
            return name
        locations = spec.submodule_search_locations
    return None


def _find_spec(
    name: str, locations: Sequence[str] | None, *, top_level: bool
) -> importlib.machinery.ModuleSpec | None:
    try:
        if top_level:  # finds a top-level module without importing it
            return importlib.util.find_spec(name)
        return importlib.machinery.PathFinder.find_spec(name, list(locations or ()))
    except (ImportError, ValueError):
        return None


def _attribute(path: str, wanted_by: str) -> Any:
    module_name, _, name = path.partition(FUNC_SEPARATOR)
    return getattr(_import(module_name, wanted_by), name, None)


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
            func = _attribute(entry, f"Worker(tasks=...) entry {entry!r}")
            if not callable(func):
                raise ConfigurationError(f"tasks=: {entry!r} names no function; check the spelling")
            self._allowed[entry] = func
        elif isinstance(entry, str) and entry:
            _import(entry, "Worker(tasks=...)")  # also runs its @delayed decorators
            self._modules.add(entry)
        else:
            raise ConfigurationError(
                f"tasks= takes functions, 'module:func' paths and module names, not {entry!r}"
            )

    def warn_if_empty(self, owner: str) -> None:
        """Logs a warning when no task at all can run: every task would be dead-lettered."""
        if self._allow_any or self._allowed or self._modules or _decorated:
            return
        logger.warning(
            "%s: no task can run here: tasks= names nothing, no function decorated with "
            "delayed(queue) was imported, and allow_any_function is off, so every task will be "
            "dead-lettered; name the task modules on the command line (adelayed worker "
            "app.tasks) or in Worker(tasks=[...])",
            owner,
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
            missing = _missing_part(module_name)
            if missing is not None:
                raise TaskError(
                    f"task {path!r}: cannot import module {module_name!r} on this worker "
                    f"(No module named {missing!r}), and it is not among the worker's tasks; "
                    f"{_where_to_run()}; and name it in Worker(tasks=...) or on the command line"
                )
            raise FunctionNotAllowedError(
                f"function {path!r} is not allowed on this worker; add it (or its module) to "
                "Worker(tasks=...), decorate it with delayed(queue), or set "
                "allow_any_function=True if every writer to this Redis is trusted"
            )
        try:
            func = _attribute(path, f"task {path!r}")
        except ConfigurationError as exc:  # cannot import: say so, it is not a refusal
            raise TaskError(str(exc)) from exc
        if not callable(func):
            raise TaskError(f"function {path!r} does not exist on this worker; check the spelling")
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
