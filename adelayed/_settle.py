"""Settling a task in Redis (release, retry, dead-letter, requeue) through Redis errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError

from ._backoff import backoff
from ._fatal import configuration_error
from ._lease import Lease

if TYPE_CHECKING:
    from ._finish_batch import Record
    from .queue import Queue

logger = logging.getLogger(__name__)

Settle = Callable[[], Awaitable[None]]


class BatchedSettle:
    """A settle that is one FINISH_MANY record (adelayed._finish_batch): a single-queue
    worker's fetch loop carries it in its next fetch, as it carries releases; otherwise it
    goes out in a batch sent by a task of the batch's own, so cancelling its caller cannot cut
    that call, and it is awaited unshielded (an anyio shield scope per task cost a fifth of
    the kept-results rate at c=100)."""

    __slots__ = ("queue", "record")

    def __init__(self, queue: Queue, record: Record) -> None:
        self.queue = queue
        self.record = record

    def __call__(self) -> Awaitable[None]:
        return self.queue._finish_batch().finish(self.record)


# How long a settle keeps trying once the worker is shutting down; after that the task stays in
# its processing slot, and a sweep requeues it when the lease expires.
SETTLE_TIMEOUT_AT_EXIT = 5.0


class Settler:
    """Retries a settle through Redis errors: while the worker runs, until it lands; once it
    is closing, for a few seconds (then the lease's expiry hands the task to a sweep). An error
    no retry can fix (RedisConfigurationError: an ACL that now refuses the worker) ends the
    worker: its slot must not take another task while the finished one is still in it."""

    def __init__(self, lease: Lease, queue_name: str) -> None:
        self._lease = lease
        self._processing = queue_name + "_processing"
        self._active = queue_name + "_active"
        self._closing_since: float | None = None

    def closing(self) -> None:
        """From now on, a settle gives up after SETTLE_TIMEOUT_AT_EXIT."""
        self._closing_since = time.monotonic()

    async def settle(self, settle: Settle) -> None:
        failures = 0
        while True:
            try:
                await settle()
                return
            except (RedisError, OSError) as exc:
                failures += 1
                fatal = configuration_error(exc, f"worker {self._lease.worker_id}")
                closing = self._closing_since
                late = closing is not None and time.monotonic() - closing > SETTLE_TIMEOUT_AT_EXIT
                if fatal is not None or late:
                    logger.error(
                        "worker %s: could not settle a task (%s); it stays in its slot (%r, "
                        "or %r for a task with options) until a sweep requeues it",
                        self._lease.worker_id, exc, self._processing, self._active,
                    )  # fmt: skip
                    if fatal is not None:  # no retry can fix it: the worker ends
                        raise fatal from exc
                    return
                delay = backoff(failures)
                logger.warning(
                    "worker %s: settle failed (%s); retrying in %.1fs",
                    self._lease.worker_id, exc, delay,
                )  # fmt: skip
                await anyio.sleep(delay)
