"""Backoff between retries of a failed Redis call: 0.1 s doubling to 2 s (so a worker is back
within about 2 s of its Redis, or of a failover to a new primary)."""

from __future__ import annotations


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures."""
    return min(0.05 * 2.0 ** min(failures, 10), 2.0)
