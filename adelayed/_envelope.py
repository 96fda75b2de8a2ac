"""Envelopes: how a task with options delayed 1.2 has no field for travels and waits.

A task with no new option is its v1 payload, nothing else. One with a delay, a retry policy,
a timeout, an isolation or a kept result is an envelope, stored in ``NAME_jobs`` under its id (see
adelayed._protocol.scheduled); only adelayed reads those keys. Layout (bytes):

- ``AD1``: the magic (a v1 payload starts with a msgpack array or string, never with ``A``);
- due time: 8 bytes, big-endian IEEE double, ms since the Unix epoch on Redis's clock, written
  by the script that schedules the attempt (0 until then);
- meta length: 4 bytes, big-endian unsigned;
- meta: a msgpack map: ``id``, ``attempt`` (of the attempt about to run, 1 for the first),
  and the options that are set: ``timeout`` (s), ``backoff`` ([kind, base, cap]), ``retry_on``
  (qualified exception names), ``dlq`` (dead-letter on final failure), ``isolation``,
  ``keep`` (seconds to keep the result, adelayed._protocol.results), ``key`` and ``keyq``
  (its dedup key, held while it lives, or while it waits: adelayed._protocol.dedup), ``trace``
  (the W3C trace context of the span that enqueued it, as [[header, value], ...]:
  adelayed.tracing);
- the v1 payload, unchanged (its retry count is the retries left).

Fixed offsets let a Lua script write the due time and cut out the v1 payload without a msgpack
decoder (Redis's cmsgpack cannot read msgpack bin).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from .errors import PayloadError
from .retry import Backoff

MAGIC = b"AD1"
_HEAD = struct.Struct(">dI")
_META_AT = len(MAGIC) + _HEAD.size


@dataclass(frozen=True)
class Options:
    """What a task carries beyond v1: see ``Queue.enqueue``."""

    timeout: float | None = None
    backoff: Backoff | None = None
    retry_on: tuple[str, ...] = ()
    dead_letter_on_failure: bool = False
    isolation: str | None = None
    keep_result: float | None = None  # seconds to keep the result (None: not kept)
    key: str | None = None  # its dedup key, when held while the task waits or lives
    key_while_queued: bool = False  # the key frees when a worker takes the task
    trace: tuple[tuple[str, str], ...] = ()  # the enqueuing span's context (adelayed.tracing)


NO_OPTIONS = Options()


class Envelope(NamedTuple):
    id: str
    payload: bytes
    attempt: int
    due_ms: float
    options: Options


def new_id() -> str:
    """A task id: 32 hex characters, random (made by the client: no round trip)."""
    return os.urandom(16).hex()


def is_envelope(data: bytes) -> bool:
    return data[:3] == MAGIC


def pack(id_: str, payload: bytes, attempt: int, options: Options) -> bytes:
    meta: dict[str, Any] = {"id": id_, "attempt": attempt}
    if options.timeout is not None:
        meta["timeout"] = options.timeout
    if options.backoff is not None:
        meta["backoff"] = options.backoff.to_wire()
    if options.retry_on:
        meta["retry_on"] = list(options.retry_on)
    if options.dead_letter_on_failure:
        meta["dlq"] = True
    if options.isolation is not None:
        meta["isolation"] = options.isolation
    if options.keep_result is not None:
        meta["keep"] = options.keep_result
    if options.key is not None:
        meta["key"] = options.key
        if options.key_while_queued:
            meta["keyq"] = True
    if options.trace:
        meta["trace"] = [list(pair) for pair in options.trace]
    packed: bytes = msgpack.packb(meta)
    return MAGIC + _HEAD.pack(0.0, len(packed)) + packed + payload


def unpack(data: bytes) -> Envelope:
    """The envelope ``data`` holds; PayloadError when it is not one."""
    return Envelope(*parts_of(data))


def parts_of(data: bytes) -> tuple[str, bytes, int, float, Options]:
    """``unpack``'s fields as a plain tuple (a worker's hot path makes its own record)."""
    try:
        due_ms, size = _HEAD.unpack_from(data, len(MAGIC))
        meta = msgpack.unpackb(data[_META_AT : _META_AT + size], use_list=False)
        id_, attempt = str(meta.pop("id")), int(meta.pop("attempt"))
        return id_, data[_META_AT + size :], attempt, due_ms, _cached_options(meta)
    except Exception as exc:
        raise PayloadError(f"unreadable envelope ({exc!r}): {data[:64]!r}") from exc


# The Options of the option maps seen last: the tasks of a queue mostly share a few, and an
# Options (a frozen dataclass) costs microseconds to build, on each task with an option.
_decoded: dict[tuple[Any, ...], Options] = {}
_DECODED_MAX = 1024


def _cached_options(meta: dict[str, Any]) -> Options:
    if "trace" in meta:  # each traced task's is its own: not worth a cache entry
        return _options_of(meta)
    seen = tuple(meta.items())  # the options, as the envelope's map lists them
    try:
        options = _decoded.get(seen)
    except TypeError:  # a value that is a map (a later version's field): not cached
        return _options_of(meta)
    if options is None:
        options = _options_of(meta)
        if len(_decoded) >= _DECODED_MAX:  # tasks with dedup keys: each one is new
            _decoded.clear()
        _decoded[seen] = options
    return options


def _options_of(meta: dict[str, Any]) -> Options:
    backoff = meta.get("backoff")
    return Options(
        timeout=meta.get("timeout"),
        backoff=None if backoff is None else Backoff.from_wire(backoff),
        retry_on=tuple(meta.get("retry_on", ())),
        dead_letter_on_failure=bool(meta.get("dlq", False)),
        isolation=meta.get("isolation"),
        keep_result=meta.get("keep"),
        key=meta.get("key"),
        key_while_queued=bool(meta.get("keyq", False)),
        trace=tuple((str(k), str(v)) for k, v in meta.get("trace", ())),
    )


def retry_on_names(errors: tuple[type[BaseException], ...]) -> tuple[str, ...]:
    """The qualified names an envelope carries for ``retry_on=`` exception classes."""
    return tuple(f"{cls.__module__}.{cls.__qualname__}" for cls in errors)


def matches(error: BaseException, names: tuple[str, ...]) -> bool:
    """Whether ``error`` is an instance of a class named in ``names`` (its own or a base)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" in names for cls in type(error).__mro__)
