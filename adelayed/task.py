"""Tasks and their msgpack payloads, byte-compatible with delayed 1.2 and go-delayed.

Payload shapes (PROTOCOL.md):

- Python task: ``[func_path, args, kwargs, retry]``; trailing defaults are dropped when writing
  (retry 0, then empty kwargs, then empty args); readers accept 1 to 4 items, args may be nil.
- Go task: ``[func_path, payload]`` with payload msgpack *bin* holding the args' msgpack (nil
  when there are none, as go-delayed writes it); read also as ``[func_path]``,
  ``[func_path, nil]`` or delayed 1.2's bare ``func_path`` string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from ._values import (
    DECODE_ERRORS,
    INT_MAX,
    INT_MIN,
    INT_RANGE,
    check_shape,
    explain,
    is_flat,
)
from .errors import ConfigurationError, PayloadError, TaskDataError

FUNC_SEPARATOR = ":"


def func_path_of(func: Callable[..., Any]) -> str:
    """The ``module:name`` path a worker imports to find ``func``."""
    module = getattr(func, "__module__", None)
    name = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", name)
    if not module or not name or qualname != name or name == "<lambda>":
        raise ConfigurationError(
            f"cannot make a task of {func!r}: a task function must be defined at the top level "
            "of an importable module, or be named by a 'module:func' string"
        )
    if module == "__main__":
        raise ConfigurationError(
            f"cannot make a task of {name!r}: it is defined in __main__, which a worker cannot "
            "import; move it to a module, or name it by a 'module:func' string"
        )
    return f"{module}{FUNC_SEPARATOR}{name}"


class PyTask:
    """A call of a Python function, to be run by a worker.

    ``func`` is a function defined at a module's top level or a ``"module.path:func"`` string.
    ``args`` is a list or tuple, ``kwargs`` a dict with str keys; their values must be what a
    worker's msgpack decoder accepts (None, bool, int in 64 bits, float, str, bytes, lists,
    tuples, dicts with str or bytes keys): anything else raises TaskDataError here or at
    ``serialize()``, before it is sent. ``retry`` is how many times a failure raised inside the
    function is retried (negative: until it succeeds).
    """

    __slots__ = ("_args", "_func_path", "_kwargs", "_payload", "_retry")

    def __init__(
        self,
        func: Callable[..., Any] | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        retry: int = 0,
    ) -> None:
        if isinstance(func, str):
            if FUNC_SEPARATOR not in func:
                raise ConfigurationError(
                    f"task function path {func!r} has no ':'; write it as 'module.path:func'"
                )
            self._func_path = func
        elif callable(func):
            self._func_path = func_path_of(func)
        else:
            raise ConfigurationError(
                f"a task needs a function or a 'module:func' path, not {func!r}"
            )
        if type(retry) is not int or not INT_MIN <= retry <= INT_MAX:
            _check_retry(self._func_path, retry)
        # Exact types first: the checks cost little on the hot path; check_shape refuses or
        # accepts what is left (subclasses, str subclass keys) with the argument named.
        if args is None:
            args = ()
        if kwargs is None:
            kwargs = {}
        if (type(args) is not tuple and type(args) is not list) or type(kwargs) is not dict:
            check_shape(self._func_path, args, kwargs)
        for key in kwargs:
            if type(key) is not str:
                check_shape(self._func_path, args, kwargs)
                break
        self._args: Sequence[Any] = args
        self._kwargs: Mapping[str, Any] = kwargs
        self._retry = retry
        self._payload: bytes | None = None

    @classmethod
    def _unchecked(
        cls, func_path: str, args: Sequence[Any], kwargs: Mapping[str, Any], retry: int
    ) -> PyTask:
        """A task whose fields came from a payload a worker decoded: nothing to check again."""
        task = cls.__new__(cls)
        task._func_path, task._args, task._kwargs, task._retry = func_path, args, kwargs, retry
        task._payload = None
        return task

    @property
    def func_path(self) -> str:
        return self._func_path

    @property
    def args(self) -> Sequence[Any]:
        return self._args

    @property
    def kwargs(self) -> Mapping[str, Any]:
        return self._kwargs

    @property
    def retry(self) -> int:
        return self._retry

    def serialize(self) -> bytes:
        """The v1 payload, byte-identical to delayed 1.2's ``PyTask.serialize()``; raises
        TaskDataError, naming the argument, for a value a worker could not decode."""
        if self._payload is None:
            fields: tuple[Any, ...] = (self._func_path, self._args, self._kwargs, self._retry)
            if self._retry == 0:
                fields = fields[:3]
                if not self._kwargs:
                    fields = fields[:2]
                    if not self._args:
                        fields = fields[:1]
            try:
                self._payload = msgpack.packb(fields)
                if len(fields) > 1 and not is_flat(self._payload, fields):
                    msgpack.unpackb(self._payload)  # as decode_task does: str, bytes map keys
            except DECODE_ERRORS as exc:
                self._payload = None
                raise TaskDataError(explain(self._func_path, fields, exc)) from exc
        return self._payload

    def retried(self) -> PyTask:
        """The same call with one retry used up (a negative count stays: retry forever)."""
        retry = self._retry - (self._retry > 0)
        return PyTask._unchecked(self._func_path, self._args, self._kwargs, retry)

    def __repr__(self) -> str:
        return (
            f"PyTask({self._func_path!r}, args={self._args!r}, kwargs={self._kwargs!r}, "
            f"retry={self._retry})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PyTask):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(self.serialize())


def _check_retry(func_path: str, retry: object) -> None:
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise ConfigurationError(f"retry of task {func_path!r} must be an int, not {retry!r}")
    if not INT_MIN <= retry <= INT_MAX:
        raise ConfigurationError(
            f"retry of task {func_path!r} is outside {INT_RANGE}; use -1 to retry until it succeeds"
        )


class GoTask:
    """A call of a Go function (``"package.Func"``), run by go-delayed workers only."""

    __slots__ = ("_args", "_func_path", "_payload")

    def __init__(self, func_path: str, args: Any = None) -> None:
        if not isinstance(func_path, str) or not func_path:
            raise ConfigurationError(f"a Go task needs a 'package.Func' path, not {func_path!r}")
        self._func_path = func_path
        self._args = args
        self._payload: bytes | None = None

    @property
    def func_path(self) -> str:
        return self._func_path

    @property
    def args(self) -> Any:
        return self._args

    def serialize(self) -> bytes:
        """The payload go-delayed writes and reads: ``[func_path, bin(msgpack of args)]``.
        With no args that is a bin holding msgpack nil, as go-delayed writes it, where delayed
        1.2 writes the bare string, which go-delayed's worker cannot decode (the task is lost)."""
        if self._payload is None:
            self._payload = msgpack.packb((self._func_path, msgpack.packb(self._args)))
        return self._payload

    def __repr__(self) -> str:
        return f"GoTask({self._func_path!r}, args={self._args!r})"


Task = PyTask | GoTask


def _decode_go(func_path: str, packed_args: bytes | None, payload: bytes) -> GoTask:
    args = None
    if packed_args is not None:
        try:
            args = msgpack.unpackb(packed_args)
        except (ValueError, msgpack.UnpackException) as exc:
            raise PayloadError(f"Go task {func_path!r} has undecodable arguments: {exc}") from exc
    task = GoTask(func_path, args)
    task._payload = payload
    return task


def _undecodable(payload: bytes, exc: Exception) -> str:
    try:  # only to say why: a key other than str or bytes is msgpack, but not a v1 task's
        msgpack.unpackb(payload, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return f"payload is not msgpack ({exc}): {payload[:64]!r}"
    return (
        f"payload has a map key that is neither str nor bytes ({exc}), which delayed's and "
        f"adelayed's workers cannot decode; adelayed's producers refuse it: {payload[:64]!r}"
    )


def decode_task(payload: bytes) -> Task:
    """The task a payload holds; raises PayloadError naming what is wrong with it."""
    try:
        fields = msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise PayloadError(_undecodable(payload, exc)) from exc
    if isinstance(fields, str) and fields:
        return _decode_go(fields, None, payload)
    if (
        not isinstance(fields, list)
        or not 1 <= len(fields) <= 4
        or not isinstance(fields[0], str)
        or not fields[0]
    ):
        raise PayloadError(f"payload is not a v1 task array [func_path, ...]: {fields!r:.200}")
    func_path = fields[0]
    go_args = fields[1] if len(fields) == 2 else None
    if isinstance(go_args, bytes) or (
        go_args is None and len(fields) <= 2 and FUNC_SEPARATOR not in func_path
    ):
        return _decode_go(func_path, go_args, payload)
    args, kwargs, retry = (*fields[1:], None, None, None)[:3]
    retry = 0 if retry is None else retry
    if FUNC_SEPARATOR not in func_path:
        raise PayloadError(f"task function path {func_path!r} has no ':' (module:func)")
    if args is not None and not isinstance(args, list):
        raise PayloadError(f"args of task {func_path!r} are not an array: {args!r:.200}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise PayloadError(f"kwargs of task {func_path!r} are not a map: {kwargs!r:.200}")
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise PayloadError(f"retry of task {func_path!r} is not an integer: {retry!r:.200}")
    task = PyTask._unchecked(func_path, () if args is None else args, kwargs or {}, retry)
    task._payload = payload
    return task
