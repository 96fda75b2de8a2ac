"""A Worker's settings checked at construction: its queues (one, or several in priority
order), their caps, and the values that could not work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import ConfigurationError
from .queue import Queue


def queues_of(queue: Queue | Sequence[Queue]) -> list[Queue]:
    """The worker's queues, highest priority first."""
    queues = [queue] if isinstance(queue, Queue) else list(queue)
    if not queues or not all(isinstance(q, Queue) for q in queues):
        raise ConfigurationError(
            f"a worker needs a Queue, or a list of Queues in priority order, not {queue!r}"
        )
    names = [q.name for q in queues]
    if len(set(names)) < len(names):
        raise ConfigurationError(f"a worker's queues must have distinct names, not {names}")
    if any(q.redis is not queues[0].redis for q in queues):
        raise ConfigurationError(
            f"the queues {names} of one worker must share one Redis client (one fetch call "
            "serves them all): create the Queues with the same redis.asyncio.Redis"
        )
    return queues


def caps_of(
    queues: Sequence[Queue], concurrency: int, queue_concurrency: Mapping[str, int] | None
) -> list[int]:
    """How many tasks of each queue may run at once (at most ``concurrency``)."""
    given = dict(queue_concurrency or {})
    unknown = set(given) - {q.name for q in queues}
    if unknown:
        raise ConfigurationError(
            f"queue_concurrency names queues this worker does not serve: {sorted(unknown)}"
        )
    for name, cap in given.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigurationError(f"queue_concurrency[{name!r}] must be >= 1, not {cap!r}")
    return [min(concurrency, given.get(q.name, concurrency)) for q in queues]


def check_settings(queue: Queue, concurrency: int, keep_alive_interval: float) -> None:
    if concurrency < 1:
        raise ConfigurationError(f"worker of queue {queue.name!r}: concurrency must be >= 1")
    if not 0 < keep_alive_interval < queue.keep_alive_timeout:
        raise ConfigurationError(
            f"worker of queue {queue.name!r}: keep_alive_interval ({keep_alive_interval}s) "
            f"must be positive and below the queue's keep_alive_timeout "
            f"({queue.keep_alive_timeout}s), or the lease lapses between refreshes"
        )
