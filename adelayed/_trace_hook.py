"""Where adelayed.tracing plugs into enqueue: ``producer`` is None (no tracing, the default:
a plain task stays delayed's bytes and costs one module lookup more) until
``adelayed.tracing.instrument()`` sets it."""

from __future__ import annotations

from typing import Any

producer: Any = None  # adelayed.tracing._Producer once instrumented
