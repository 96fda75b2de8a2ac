"""Task arguments a worker can decode, checked in the producer so bad data never reaches Redis.

A worker (adelayed's, and delayed 1.2's: both call ``msgpack.unpackb`` with its defaults) refuses
a map key that is not str or bytes, so a dict with int keys that msgpack packs happily would be
dead-lettered. ``PyTask.serialize`` packs a task's fields and, unless every argument is a
scalar (``is_flat``: then the decoder can refuse nothing), decodes them again as the worker
will: the C decoder is faster than walking the values in Python (measured: about 0.45 us for a
dict and a list of 20 ints, against 0.8 us for a walk). Only when either step fails does
``explain`` walk the data, to name the argument at fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from .errors import TaskDataError

INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1
INT_RANGE = "msgpack's 64-bit integer range (-2**63 to 2**64-1)"
_DECODE_LIMIT = 100 * 1024 * 1024  # msgpack.unpackb's default max_buffer_size: str, bin, arrays
_FLAT = frozenset((str, bytes, int, float, bool, type(None)))
# msgpack's packer refuses a value nested deeper than this below the task's field array.
_PACK_DEPTH = 1024
_BINARY = (bytes, bytearray, memoryview)
_SCALARS = (type(None), bool, float, msgpack.ExtType, msgpack.Timestamp, *_BINARY)
DECODE_ERRORS = (TypeError, ValueError, OverflowError, msgpack.UnpackException)
_HINTS = {
    "set": "pass a list (list(...) or sorted(...))",
    "frozenset": "pass a list (list(...) or sorted(...))",
    "datetime": "pass a str (.isoformat()) or a timestamp",
    "date": "pass a str (.isoformat())",
    "Decimal": "pass a str (str(value))",
    "UUID": "pass a str (str(value))",
}


def check_shape(func_path: str, args: Any, kwargs: Any) -> None:
    """args must pack as an array and kwargs as a map of keyword names, as workers call
    ``func(*args, **kwargs)``; a str or bytes given as args is the common slip."""
    if not isinstance(args, (list, tuple)):
        raise TaskDataError(
            f"task {func_path!r}: args must be a list or tuple of positional arguments, not "
            f"{_show(args)} ({type(args).__name__}); for one argument write args=(value,)"
        )
    if not isinstance(kwargs, dict):
        raise TaskDataError(
            f"task {func_path!r}: kwargs must be a dict of keyword arguments, not "
            f"{_show(kwargs)} ({type(kwargs).__name__}); write kwargs={{'name': value}}"
        )
    for key in kwargs:
        if type(key) is not str and not isinstance(key, str):
            raise TaskDataError(
                f"task {func_path!r}: kwargs has a key {_show(key)} ({type(key).__name__}); "
                "keyword argument names must be str"
            )


def is_flat(payload: bytes, fields: tuple[Any, ...]) -> bool:
    """Whether the packed ``fields`` hold only scalars and no map but kwargs, with str keys:
    then the decoder can refuse nothing, and decoding again is skipped."""
    if len(payload) >= _DECODE_LIMIT:
        return False
    for value in fields[1]:
        if type(value) not in _FLAT:
            return False
    if len(fields) > 2:  # keys again: the dict may have changed since PyTask checked them
        for key, value in fields[2].items():
            if type(key) is not str or type(value) not in _FLAT:
                return False
    return True


def explain(func_path: str, fields: tuple[Any, ...], exc: Exception) -> str:
    names = ("args", "kwargs", "retry")
    for name, value in zip(names, fields[1:], strict=False):  # trailing defaults are dropped
        problem = next(_problems(value, name), None)
        if problem is not None:
            return f"cannot enqueue task {func_path!r}: {problem}"
    return (
        f"cannot enqueue task {func_path!r}: its arguments cannot be sent with msgpack ({exc}); "
        "pass only None, bool, int, float, str, bytes, lists, tuples and dicts with str keys"
    )


def explain_value(func_path: str, value: Any, exc: Exception) -> str:
    """Why a task's return value cannot be kept as its result."""
    problem = next(_problems(value, "its return value"), None)
    if problem is None:
        problem = f"its return value cannot be sent with msgpack ({exc})"
    return (
        f"task {func_path!r} finished, but {problem}: return only None, bool, int, float, str, "
        "bytes, lists, tuples and dicts with str keys (its result is this error)"
    )


def _problems(value: Any, where: str) -> Iterator[str]:
    """What a worker could not decode in ``value``, depth first; an explicit stack, as a value
    may be nested (or contain itself) deeper than Python's recursion limit."""
    stack = [(value, where, 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > _PACK_DEPTH:
            yield (
                f"{where[:40]}... is nested over {_PACK_DEPTH} levels deep, or contains itself; "
                "pass a flatter value"
            )
            return
        if isinstance(value, str):
            problem = _bad_str(value, where)
        elif isinstance(value, int) and not isinstance(value, bool):
            problem = _bad_int(value, where)
        elif isinstance(value, (list, tuple)):
            problem = None
            items = [(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
            stack.extend(reversed(items))
        elif isinstance(value, dict):
            problem = next(filter(None, (_bad_key(key, where) for key in value)), None)
            items = [(item, f"{where}[{_show(key)}]", depth + 1) for key, item in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, _SCALARS):
            problem = None
        else:
            problem = _bad_type(value, where)
        if problem is not None:
            yield problem


def _bad_key(key: Any, where: str) -> str | None:
    if isinstance(key, str):
        return _bad_str(key, f"a key of {where}")
    if isinstance(key, _BINARY):
        return None
    return (
        f"{where} has a key {_show(key)} ({type(key).__name__}); a worker's msgpack decoder "
        "accepts only str (or bytes) map keys: use str keys"
    )


def _bad_str(value: str, where: str) -> str | None:
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        return (
            f"{where} is a str msgpack cannot encode as UTF-8 ({exc.reason} at {exc.start}); "
            "pass bytes, or a str without lone surrogates"
        )
    return None


def _bad_int(value: int, where: str) -> str | None:
    if INT_MIN <= value <= INT_MAX:
        return None
    return (
        f"{where} is {_show(value)}, outside {INT_RANGE}; pass it as a str (str(n)) and "
        "convert it back with int() in the task"
    )


def _bad_type(value: Any, where: str) -> str:
    kind = type(value).__name__
    hint = _HINTS.get(kind, "convert it to None, bool, int, float, str, bytes, a list or a dict")
    return f"{where} is {_show(value)} ({kind}), which msgpack cannot carry; {hint}"


def _show(value: Any) -> str:
    """A short repr; an int too long to print whole (or to print at all) is shown by size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        sign, size = "-" if value < 0 else "", abs(value)
        if size & (size - 1) == 0:
            return f"{sign}2**{size.bit_length() - 1}"
        if size.bit_length() > 128:
            return f"an int of {size.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the refusal
        return f"a {type(value).__name__}"
    return text if len(text) <= 60 else f"{text[:57]}..."
