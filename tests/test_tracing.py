"""adelayed.tracing with the OpenTelemetry SDK's in-memory exporter, on a real Redis and a real
worker: the span of an attempt is the child of the span that enqueued it (its context carried
in the envelope), a failed attempt records its exception, and without instrument() a plain task
stays delayed's bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as redis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adelayed import PyTask, Queue, tracing
from tests import tasks
from tests.helpers import make_worker, running, wait_for


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider)
    yield provider, exporter
    tracing.uninstrument()


async def test_the_attempt_is_a_child_of_the_span_that_enqueued_it(
    queue: Queue, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("POST /signup") as request:
        handle = await queue.enqueue(PyTask("tests.tasks:async_record", args=("traced",)))
    assert handle.id is not None  # traced: enveloped
    await queue.enqueue(PyTask("tests.tasks:fail_until", args=("k", 0)))
    worker = make_worker(queue)
    tracing.trace_worker(worker, provider)
    async with running(worker):
        await wait_for(lambda: len(_named(exporter, "jobs process")) == 2, what="two attempts")
    [publish, failed_publish] = _named(exporter, "jobs publish")
    ok, failed = sorted(
        _named(exporter, "jobs process"), key=lambda s: s.status.is_ok, reverse=True
    )
    assert (
        publish.parent is not None and publish.parent.span_id == request.get_span_context().span_id
    )
    assert publish.kind == trace.SpanKind.PRODUCER and ok.kind == trace.SpanKind.CONSUMER
    assert ok.context.trace_id == request.get_span_context().trace_id
    assert ok.parent is not None and ok.parent.span_id == publish.context.span_id
    assert ok.attributes is not None and ok.attributes["messaging.message.id"] == handle.id
    assert ok.attributes["adelayed.function"] == "tests.tasks:async_record"
    assert failed.parent is not None and failed.parent.span_id == failed_publish.context.span_id
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert tasks.ran[0] == "traced"


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_without_instrument_a_plain_task_stays_v1(client: redis.Redis, queue: Queue) -> None:
    task = PyTask("tests.tasks:async_record", args=(1,))
    assert (await queue.enqueue(task)).id is None
    assert await client.lrange("jobs", 0, -1) == [task.serialize()]
