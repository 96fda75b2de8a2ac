"""The Queue's side of deduplication keys: ``enqueue(task, key=..., key_lifetime=...,
debounce=...)`` (script in adelayed._protocol.dedup).

``key_lifetime``: "running" (the default: held while the task waits, is due, runs or waits
for a retry), "queued" (freed when a worker takes it), or seconds (a throttle: held that long
from the enqueue, whatever becomes of the task). ``debounce``: a later enqueue with the key
replaces the holder while it still waits (its arguments and due time are the new ones);
otherwise it is a duplicate and nothing is enqueued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.exceptions import RedisError

from . import _envelope as envelope
from ._envelope import Options
from ._protocol import dedup as protocol
from .errors import ConfigurationError
from .retry import seconds_of

if TYPE_CHECKING:
    from ._wire import Wire
    from .errors import QueueFullError
    from .task import Task

LIFETIMES = ("running", "queued")


class KeySpec(NamedTuple):
    key: str
    ttl_ms: int  # 0: held while the task lives (or waits)
    while_queued: bool
    debounce: bool


def key_spec(
    where: str, key: str | None, lifetime: str | float | timedelta, debounce: bool
) -> KeySpec | None:
    """The checked dedup options of an enqueue (None: no key)."""
    if key is None:
        if debounce or lifetime != "running":
            raise ConfigurationError(f"{where}: key_lifetime and debounce need a key=")
        return None
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"{where}: key must be a non-empty str, not {key!r}")
    if isinstance(lifetime, str):
        if lifetime not in LIFETIMES:
            raise ConfigurationError(
                f"{where}: key_lifetime must be 'running', 'queued' or seconds, not {lifetime!r}"
            )
        return KeySpec(key, 0, lifetime == "queued", bool(debounce))
    seconds = seconds_of(lifetime, f"{where}: key_lifetime")
    if seconds == 0:
        raise ConfigurationError(f"{where}: key_lifetime in seconds must be positive")
    return KeySpec(key, max(1, round(seconds * 1000)), False, bool(debounce))


class Dedup:
    """Mixed into Queue."""

    if TYPE_CHECKING:  # Queue's and Scheduling's
        _name: str
        _noti_key: str
        _jobs_key: str
        _dedup_key: str
        _scheduled_key: str
        _ready_key: str
        _wake_key: str
        _max_length: int

        def _wire(self) -> Wire: ...
        def _deadline(self) -> float | None: ...
        def _full_error(self, admitted: int) -> QueueFullError: ...
        def _enqueue_error(self, exc: RedisError, tasks: Sequence[Task]) -> Exception: ...

    async def _enqueue_keyed(
        self, task: Task, payload: bytes, id_: str, options: Options, due: str, spec: KeySpec
    ) -> tuple[str, str]:
        """Enqueues one task under a dedup key; returns (the holder's id, the outcome:
        added, duplicate or replaced)."""
        if spec.ttl_ms == 0:  # held while it lives: the worker frees it
            options = replace(options, key=spec.key, key_while_queued=spec.while_queued)
        keys = (
            self._name, self._noti_key, self._jobs_key, self._scheduled_key, self._ready_key,
            self._wake_key, self._dedup_key,
            self._name + protocol.KEYS_UNTIL_SUFFIX,
        )  # fmt: skip
        args: tuple[Any, ...] = (
            self._max_length, id_, envelope.pack(id_, payload, 1, options), due, spec.key,
            "ttl" if spec.ttl_ms else "task", spec.ttl_ms, int(spec.debounce),
        )  # fmt: skip
        try:
            holder, outcome = await protocol.ENQUEUE_KEYED(
                self._wire(), keys, args, self._deadline()
            )
        except RedisError as exc:
            raise self._enqueue_error(exc, (task,)) from exc
        if outcome == b"full":
            raise self._full_error(1)
        return holder.decode(), outcome.decode()

    async def _release_key(self, key: str, id_: str) -> None:
        await protocol.RELEASE_KEY(self._wire(), (self._dedup_key,), (key, id_))
