"""Whether and when a failed task is retried, and a retry log that a storm cannot flood.

A retry goes through the queue's scheduled set (adelayed._protocol.scheduled.RESCHEDULE): the
slot is released and the next attempt scheduled in one step, as an envelope carrying its
attempt number (a v1 task's retry becomes enveloped: only adelayed's workers run it).
"""

from __future__ import annotations

import logging
import random
import time

from ._envelope import Options, matches
from ._log_fields import task_fields
from .errors import ConfigurationError
from .retry import Retry
from .task import PyTask

logger = logging.getLogger(__name__)

# After the first failure of a function (logged with its traceback), at most one line per
# function per this many seconds summarises its retries.
SUMMARY_INTERVAL = 60.0


class RetryBackoff:
    """Exponential backoff with jitter and a cap: the n-th retry waits a random time between
    ``base`` and ``min(cap, base * 2**n)`` seconds (uniform: full jitter above a floor of
    ``base``, so a crowd of failing tasks spreads out, and none retries faster than that)."""

    def __init__(self, base: float, cap: float, queue_name: str) -> None:
        if not 0 < base <= cap:
            raise ConfigurationError(
                f"worker of queue {queue_name!r}: retry_backoff must be (base, cap) in seconds "
                f"with 0 < base <= cap, not ({base}, {cap})"
            )
        self.base = base
        self.cap = cap

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(retry, 64))
        return random.uniform(self.base, ceiling)


class Retries:
    """A worker's retry rule (delayed's: a failure raised inside the function is retried while
    the task has retries left, negative meaning forever), refined by the task's options: only
    ``retry_on`` exceptions are retried, after the task's ``backoff`` (else the worker's); a
    ``Retry`` raised by the task is retried after its own delay."""

    def __init__(self, backoff: tuple[float, float], queue_name: str) -> None:
        self.backoff = RetryBackoff(*backoff, queue_name)
        self._log = RetryLog(queue_name)

    def after_failure(
        self, task: PyTask, options: Options, error: BaseException, attempt: int
    ) -> float | None:
        """Seconds before the task's next attempt, or None when it is not retried."""
        asked = isinstance(error, Retry)
        if not task.retry or (options.retry_on and not asked and not matches(
            error, options.retry_on
        )):  # fmt: skip
            self._log.failed(task, error, attempt)
            return None
        if isinstance(error, Retry) and error.delay is not None:
            pause = error.delay
        elif options.backoff is not None:
            pause = options.backoff.delay(attempt)
        else:
            pause = self.backoff.delay(attempt)
        self._log.retrying(task, error, attempt, pause)
        return pause


class RetryLog:
    """Logs the first failure of a function with its traceback, then at most one summary line
    per function per SUMMARY_INTERVAL while its tasks go on failing."""

    def __init__(self, queue_name: str) -> None:
        self._queue_name = queue_name
        self._storms: dict[str, tuple[float, int]] = {}  # path: (last line at, retries since)

    def retrying(self, task: PyTask, error: BaseException, attempt: int, pause: float) -> None:
        path, now = task.func_path, time.monotonic()
        last_line, unlogged = self._storms.get(path, (-SUMMARY_INTERVAL, 0))
        if now - last_line < SUMMARY_INTERVAL:
            self._storms[path] = (last_line, unlogged + 1)
        elif unlogged:
            logger.warning(
                "queue %r: %d more retries of %r in the last %.1fs; the latest: attempt %d "
                "failed (%r), %s in %.1fs",
                self._queue_name, unlogged + 1, path, now - last_line, attempt, error,
                _retry_of(task, attempt), pause, extra=task_fields(self._queue_name, path, attempt),
            )  # fmt: skip
            self._storms[path] = (now, 0)
        else:
            logger.warning(
                "queue %r: task %r failed (attempt %d), %s in %.1fs (further retries of %r "
                "are summed up every %gs)",
                self._queue_name, path, attempt, _retry_of(task, attempt), pause, path,
                SUMMARY_INTERVAL, exc_info=error,
                extra=task_fields(self._queue_name, path, attempt),
            )  # fmt: skip
            self._storms[path] = (now, 0)

    def failed(self, task: PyTask, error: BaseException, attempts: int) -> None:
        logger.error(
            "queue %r: task %r failed after %d attempt%s",
            self._queue_name, task.func_path, attempts, "" if attempts == 1 else "s",
            exc_info=error, extra=task_fields(self._queue_name, task.func_path, attempts),
        )  # fmt: skip


def _retry_of(task: PyTask, attempt: int) -> str:
    """E.g. 'retry 2 of 3' after attempt 2 (``task`` as it ran then)."""
    total = "unlimited" if task.retry < 0 else str(task.retry + attempt - 1)
    return f"retry {attempt} of {total}"
