"""An alarm clock for the event loop, precise to a fraction of a millisecond.

asyncio's timers wake up to a millisecond late: the selector's timeout is in whole
milliseconds, rounded up. A promoter waiting for a task's due time would add that to every
delayed task's start. The alarm waits in a thread of its own instead (a lock's timed wait, to
tens of microseconds), then wakes the loop through its self-pipe, at once.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable


class Alarm:
    """Calls ``ring`` on ``loop`` at the ``time.monotonic()`` instant last given to ``set``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, ring: Callable[[], None], name: str
    ) -> None:
        self._loop, self._ring = loop, ring
        self._changed = threading.Condition()
        self._at = math.inf
        self._closed = False
        threading.Thread(target=self._run, name=f"adelayed alarm of {name}", daemon=True).start()

    def set(self, at: float) -> None:
        """Rings at ``at`` (monotonic seconds; math.inf: not at all), instead of any earlier
        setting."""
        with self._changed:
            self._at = at
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                left = self._at - time.monotonic()
                if left > 0:
                    self._changed.wait(None if left == math.inf else left)
                    continue
                self._at = math.inf
                try:
                    self._loop.call_soon_threadsafe(self._ring)
                except RuntimeError:  # the loop is closed
                    return
