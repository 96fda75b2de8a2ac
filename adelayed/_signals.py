"""Stop signals for every worker of a process.

An event loop keeps one handler per signal (``loop.add_signal_handler``: the last installer
wins), so two workers each installing their own would leave one of them deaf. Here the first
worker on a loop installs one handler per stop signal, every signal is fanned out to each
worker listening on that loop, and the last one to leave puts back the handlers found before.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

Listener = Callable[[signal.Signals], None]


def listening(handle: bool, listener: Listener) -> AbstractContextManager[None]:
    """Stop signals for ``listener`` when ``handle`` and this is the main thread (only it
    receives signals); else nothing."""
    if handle and threading.current_thread() is threading.main_thread():
        return stop_signals(listener)
    return nullcontext()


@contextmanager
def stop_signals(listener: Listener) -> Iterator[None]:
    """Calls ``listener`` with each stop signal the process receives meanwhile. Call it on the
    event loop, from the main thread (only the main thread receives signals)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = _Hub(loop)
    hub.listeners.append(listener)
    try:
        yield
    finally:
        hub.listeners.remove(listener)
        if not hub.listeners:
            del _hubs[loop]
            hub.restore()


class _Hub:
    """One per event loop while any worker on it listens."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.listeners: list[Listener] = []
        self._previous: dict[signal.Signals, tuple[Any, Any]] = {}
        loop_handlers = getattr(loop, "_signal_handlers", {})  # asyncio's Unix loops
        for sig in STOP_SIGNALS:
            self._previous[sig] = (signal.getsignal(sig), loop_handlers.get(sig))
            loop.add_signal_handler(sig, self._deliver, sig)

    def _deliver(self, sig: signal.Signals) -> None:
        for listener in list(self.listeners):
            try:
                listener(sig)
            except Exception:  # one worker's bug must not keep the signal from the others
                logger.exception("a listener of %s failed", sig.name)

    def restore(self) -> None:
        """Puts back what handled each signal before: a handler of the loop's, or of Python's."""
        for sig, (handler, loop_handle) in self._previous.items():
            if loop_handle is not None and not loop_handle.cancelled():
                self._loop.add_signal_handler(sig, loop_handle._callback, *loop_handle._args)
                continue
            self._loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)


_hubs: dict[asyncio.AbstractEventLoop, _Hub] = {}
