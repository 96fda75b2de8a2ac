"""Prometheus metrics of a worker (the ``prometheus`` extra: prometheus-client)::

    metrics = WorkerMetrics(worker)   # before worker.run()
    metrics.serve(9100)                # or: adelayed worker ... --metrics-port 9100

Per queue: ``adelayed_queue_tasks{queue, state}`` (queued, scheduled, in_flight, dead: read
with one INFO call a queue every ``interval`` seconds while the worker runs) and the worker's
counters ``adelayed_tasks_total{queue, outcome}`` (done, failed, retried, dead_lettered: the
same counts ``adelayed info`` shows). Per function: ``adelayed_task_duration_seconds{queue,
function}`` (a histogram of attempts, failed ones included) and
``adelayed_task_attempts_total{queue, function, outcome}`` (ok, error).

A worker without metrics pays nothing: the durations come from task hooks, added only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ._observe import add_hooks
from .context import TaskContext
from .worker import Worker

logger = logging.getLogger(__name__)

__all__ = ["WorkerMetrics"]

_OUTCOMES = ("done", "failed", "retried", "dead_lettered")


class WorkerMetrics:
    """The metrics of one worker, in ``registry`` (default: a registry of its own)."""

    def __init__(
        self, worker: Worker, registry: CollectorRegistry | None = None, interval: float = 5.0
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._worker, self._interval = worker, interval
        registry = self.registry
        self._depth = Gauge(
            "adelayed_queue_tasks", "Tasks of the queue, by state", ["queue", "state"],
            registry=registry,
        )  # fmt: skip
        self._duration = Histogram(
            "adelayed_task_duration_seconds", "Attempt durations", ["queue", "function"],
            registry=registry,
        )  # fmt: skip
        self._attempts = Counter(
            "adelayed_task_attempts", "Attempts, by outcome", ["queue", "function", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.registry.register(_Counts(worker))
        self._started: dict[int, float] = {}  # attempt (its context's id) -> start
        self._errored: set[int] = set()
        self._refresher: asyncio.Task[None] | None = None
        add_hooks(
            worker, on_startup=self._start, on_shutdown=self._stop, before_task=self._before,
            after_task=self._after, on_failure=self._failed,
        )  # fmt: skip

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serves /metrics on ``addr:port`` from a thread (prometheus-client's server)."""
        start_http_server(port, addr=addr, registry=self.registry)

    def _before(self, task: TaskContext) -> None:
        self._started[id(task)] = time.monotonic()

    def _after(self, task: TaskContext) -> None:
        started = self._started.pop(id(task), None)
        if started is not None:
            self._duration.labels(task.queue, task.func_path).observe(time.monotonic() - started)
        errored = id(task) in self._errored
        self._errored.discard(id(task))
        self._attempts.labels(task.queue, task.func_path, "error" if errored else "ok").inc()

    def _failed(self, task: TaskContext, error: BaseException) -> None:
        self._errored.add(id(task))  # read by _after, which runs right after, same attempt

    async def _start(self, state: dict[str, Any]) -> None:
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _stop(self, state: dict[str, Any]) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # Redis away: the gauges keep their last values
                logger.warning("metrics: queue depths not read (%s)", exc)
            await asyncio.sleep(self._interval)

    async def refresh(self) -> None:
        """Reads every queue's depths now (the worker does it every ``interval``)."""
        for queue in self._worker._queues:
            info = await queue.info(1)
            for state, value in (("queued", info.queued), ("scheduled", info.scheduled),
                                 ("in_flight", info.in_flight), ("dead", info.dead)):  # fmt: skip
                self._depth.labels(queue.name, state).set(value)


class _Counts(Collector):
    """The worker's own counts of what its tasks did (adelayed._registry.Counts), per queue."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "adelayed_tasks", "Tasks this worker ended, by outcome", labels=["queue", "outcome"]
        )
        for queue, counts in zip(self._worker._queues, self._worker._registry.counts, strict=True):
            for outcome, value in zip(_OUTCOMES, counts.values(), strict=True):
                family.add_metric([queue.name, outcome], value)
        yield family
