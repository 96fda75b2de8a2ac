"""Retry policies a task can carry: a backoff between attempts, and ``raise Retry(...)`` from
inside a task to ask for another attempt."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from .errors import AdelayedError, ConfigurationError


class Backoff:
    """The pause before each retry of a task. ``Backoff.fixed(5)``: 5 s every time.
    ``Backoff.exponential(base=1, cap=300)``: full jitter, the n-th retry waits a random time
    between 0 and ``min(cap, base * 2**(n-1))`` seconds, so a crowd of failing tasks spreads out
    instead of retrying in step."""

    __slots__ = ("base", "cap", "kind")

    def __init__(self, kind: str, base: float, cap: float) -> None:
        if kind not in ("fixed", "exponential"):
            raise ConfigurationError(f"a backoff is 'fixed' or 'exponential', not {kind!r}")
        if not (0 <= base <= cap) or cap == float("inf"):
            raise ConfigurationError(
                f"a backoff needs 0 <= base <= cap (seconds, finite), not base={base}, cap={cap}"
            )
        self.kind, self.base, self.cap = kind, float(base), float(cap)

    @classmethod
    def fixed(cls, seconds: float | timedelta) -> Backoff:
        seconds = seconds_of(seconds, "Backoff.fixed")
        return cls("fixed", seconds, seconds)

    @classmethod
    def exponential(cls, base: float | timedelta = 1.0, cap: float | timedelta = 300.0) -> Backoff:
        return cls(
            "exponential",
            seconds_of(base, "Backoff.exponential base"),
            seconds_of(cap, "Backoff.exponential cap"),
        )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        if self.kind == "fixed":
            return self.base
        return random.uniform(0, min(self.cap, self.base * 2.0 ** min(retry - 1, 64)))

    def to_wire(self) -> list[Any]:
        return [self.kind, self.base, self.cap]

    @classmethod
    def from_wire(cls, fields: Any) -> Backoff:
        kind, base, cap = fields
        return cls(str(kind), float(base), float(cap))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backoff) and self.to_wire() == other.to_wire()

    def __hash__(self) -> int:
        return hash(tuple(self.to_wire()))

    def __repr__(self) -> str:
        if self.kind == "fixed":
            return f"Backoff.fixed({self.base:g})"
        return f"Backoff.exponential(base={self.base:g}, cap={self.cap:g})"


class Retry(AdelayedError):  # noqa: N818 - a request, named as arq and others name it
    """Raise it inside a task to have it run again: after ``delay`` (seconds or a timedelta),
    or after the task's backoff when None. It uses up one of the task's retries like any
    failure (``retry=`` on the task; with none left the task fails), and is retried whatever
    ``retry_on`` says."""

    def __init__(self, delay: float | timedelta | None = None, reason: str = "") -> None:
        self.delay = None if delay is None else seconds_of(delay, "Retry delay")
        self.reason = reason
        when = "after its backoff" if self.delay is None else f"in {self.delay:g}s"
        super().__init__(f"the task asked to be retried {when}" + (f": {reason}" if reason else ""))


def seconds_of(value: float | timedelta, what: str) -> float:
    """``value`` in seconds (a number or a timedelta), refusing negative or infinite ones."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{what} must be seconds (a number) or a timedelta, not {value!r}")
    if not 0 <= value < float("inf"):
        raise ConfigurationError(f"{what} must be zero or more seconds, not {value!r}")
    return float(value)
