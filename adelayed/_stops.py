"""Stopping a running attempt early, for an abort or at its timeout: the attempt's task (the
slot's runner) is cancelled, and the CancelledError that follows is recognised as this stop
and turned into the attempt's outcome.

No cancel scope is made per attempt (anyio's cost a few microseconds each, on every task with
an option): a ``Stop`` is a plain record, a timeout one timer handle. On Python 3.11+ each
cancel it made is taken back (``Task.uncancel``) once the attempt ends, so the cancellation
counts that asyncio and anyio keep stay as if it never happened. A cancellation that is not
this stop's (the worker's hard stop) propagates as it came; anyio delivers its own again at
the task's next await if one of ours swallowed it.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Stop:
    """One running attempt that an abort (``abort()``) or its timeout (``expire()``) may
    stop: ``requested`` and ``timed_out`` say which did, ``cancelled`` that this stop
    cancelled the task (so the CancelledError caught is this stop's)."""

    __slots__ = ("_task", "cancellable", "cancelled", "requested", "timed_out")

    def __init__(self, cancellable: bool) -> None:
        self._task = asyncio.current_task()
        self.cancelled = False
        self.cancellable = cancellable
        self.requested = False
        self.timed_out = False

    def abort(self) -> None:
        self.requested = True
        if self.cancellable:
            self._cancel()

    def expire(self) -> None:
        if not self.cancelled:  # not already being stopped by an abort
            self.timed_out = True
            self._cancel()

    def expire_after(self, seconds: float) -> asyncio.TimerHandle:
        """Times the attempt out ``seconds`` from now (cancel the handle when it ends)."""
        return asyncio.get_running_loop().call_later(seconds, self.expire)

    def settled(self) -> None:
        """Takes back the cancel this stop made, once the CancelledError it raised was caught
        (or swallowed by the task itself); safe to call again."""
        if self.cancelled:
            uncancel: Any = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            self.cancelled = False

    def _cancel(self) -> None:
        task = self._task
        if not self.cancelled and task is not None and task.cancel():
            self.cancelled = True
