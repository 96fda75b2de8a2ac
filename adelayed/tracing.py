"""OpenTelemetry spans (the ``otel`` extra: opentelemetry-api), linking a task's execution to
the span that enqueued it::

    from adelayed import tracing

    tracing.instrument()          # in producers: each enqueue() is a PRODUCER span
    tracing.trace_worker(worker)  # in workers: each attempt is a CONSUMER span, its child

With ``instrument()``, ``Queue.enqueue`` opens a span ``"<queue> publish"`` and the task
carries its W3C trace context (``traceparent``, ``tracestate``) in its envelope. **So a traced
task is always enveloped: only adelayed's workers run it** (delayed's and go-delayed's see its
token only, as for any task with an option); call ``instrument()`` only where every worker of
the queue is adelayed's. ``enqueue_many`` is not traced (its tasks stay as they are). The
worker's span ``"<queue> process"`` names the function, the task id and the attempt, records
the exception of an attempt that raised and sets its status to error; a task enqueued without
a trace context gets a span of its own, with no parent. The spans use the global tracer
provider unless one is given. Without these calls nothing is traced and nothing is paid.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace

from . import _trace_hook
from ._observe import add_hooks
from .context import TaskContext
from .task import Task
from .worker import Worker

__all__ = ["instrument", "trace_worker", "uninstrument"]

_NAME = "adelayed"


class _Producer:
    def __init__(self, provider: trace.TracerProvider | None) -> None:
        self._tracer = trace.get_tracer(_NAME, tracer_provider=provider)

    @contextmanager
    def span(self, queue: str, task: Task) -> Iterator[tuple[tuple[str, str], ...]]:
        attributes = {"messaging.system": _NAME, "messaging.destination.name": queue,
                      "adelayed.function": task.func_path}  # fmt: skip
        with self._tracer.start_as_current_span(
            f"{queue} publish", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield tuple(sorted(carrier.items()))


def instrument(tracer_provider: trace.TracerProvider | None = None) -> None:
    """Traces every ``Queue.enqueue`` of this process from now on."""
    _trace_hook.producer = _Producer(tracer_provider)


def uninstrument() -> None:
    _trace_hook.producer = None


class _Consumer:
    def __init__(self, provider: trace.TracerProvider | None) -> None:
        self._tracer = trace.get_tracer(_NAME, tracer_provider=provider)
        self._open: dict[int, tuple[trace.Span, Any]] = {}  # attempt -> span, context token

    def before(self, task: TaskContext) -> None:
        delivery = task._delivery
        carrier = dict(delivery.options.trace) if delivery is not None else {}
        parent = propagate.extract(carrier) if carrier else None
        attributes: dict[str, Any] = {
            "messaging.system": _NAME, "messaging.destination.name": task.queue,
            "adelayed.function": task.func_path, "adelayed.attempt": task.attempt,
        }  # fmt: skip
        if task.task_id is not None:
            attributes["messaging.message.id"] = task.task_id
        span = self._tracer.start_span(
            f"{task.queue} process", context=parent, kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )  # fmt: skip
        token = context.attach(trace.set_span_in_context(span))
        self._open[id(task)] = (span, token)

    def failed(self, task: TaskContext, error: BaseException) -> None:
        opened = self._open.get(id(task))
        if opened is not None:
            opened[0].record_exception(error)
            opened[0].set_status(trace.Status(trace.StatusCode.ERROR, str(error)))

    def after(self, task: TaskContext) -> None:
        opened = self._open.pop(id(task), None)
        if opened is not None:
            span, token = opened
            context.detach(token)
            span.end()


def trace_worker(worker: Worker, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Makes each attempt ``worker`` runs a span (before ``worker.run()``)."""
    consumer = _Consumer(tracer_provider)
    add_hooks(
        worker, before_task=consumer.before, after_task=consumer.after, on_failure=consumer.failed
    )
