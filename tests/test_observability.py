"""What an operator sees of tasks without reading code: structured fields on the log records
of failures, retries and dead letters, and a worker's Prometheus metrics, scraped over HTTP
from a real worker process (``adelayed worker --metrics-port``)."""

from __future__ import annotations

import logging
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families

from adelayed import Backoff, PyTask, Queue
from adelayed.embedded import EmbeddedRedis
from tests.helpers import make_worker, running, wait_for
from tests.test_cli import Command, free_port, project  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(120)


async def test_failures_retries_and_dead_letters_carry_the_tasks_fields(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    flaky = await queue.enqueue(
        PyTask("tests.tasks:fail_until", args=("k", 0), retry=1), backoff=Backoff.fixed(0)
    )
    await queue.enqueue(PyTask("app_gone:run"))  # refused before it runs, after flaky ran
    await queue.enqueue(PyTask("tests.tasks:fail_until", args=("plain", 0)))  # no option
    async with running(make_worker(queue, concurrency=1)) as worker:  # one slot: in turn
        await wait_for(lambda: len(_records(caplog)) == 4, what="the four records")
    retry, dead, plain, failure = sorted(
        _records(caplog), key=lambda r: (r.levelno, _field(r, "function"), _field(r, "attempt"))
    )
    for record, attempt in ((retry, 1), (failure, 2)):
        assert (_field(record, "queue"), _field(record, "function")) == (
            "jobs",
            "tests.tasks:fail_until",
        )
        assert _field(record, "task_id") == flaky.id and _field(record, "attempt") == attempt
        assert _field(record, "worker") == worker.id and _field(record, "duration") >= 0
    assert _field(plain, "task_id") is None and _field(plain, "duration") >= 0  # timed too
    # Refused before it ran: its own fields, not those of the task before it in the slot.
    assert (_field(dead, "function"), _field(dead, "task_id")) == ("app_gone:run", None)
    assert _field(dead, "duration") is None and _field(dead, "worker") == worker.id


def _field(record: logging.LogRecord, name: str) -> Any:
    return getattr(record, name, None)


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "function")]


METRIC_TASKS = """
import time


def ok(seconds):
    time.sleep(seconds)


def broken():
    raise ValueError("broken")
"""


async def test_a_worker_serves_prometheus_metrics_that_match_redis(
    client: redis.Redis,
    redis_server: EmbeddedRedis,
    project: Path,  # noqa: F811
) -> None:
    (project / "app" / "metric_tasks.py").write_text(METRIC_TASKS)
    jobs = Queue("jobs", client)
    await jobs.enqueue_many([PyTask("app.metric_tasks:ok", args=(0.01,)) for _ in range(20)])
    await jobs.enqueue_many([PyTask("app.metric_tasks:broken") for _ in range(3)])
    await jobs.enqueue(PyTask("app.metric_tasks:ok", args=(0,)), delay=3600)
    port = free_port()
    worker = Command(project, redis_server.url, [
        "--url", redis_server.url, "-q", "jobs", "--keep-alive-timeout", "5", "worker",
        "app.metric_tasks", "--keep-alive-interval", "0.2", "--sweep-interval", "0",
        "--metrics-port", str(port),
    ])  # fmt: skip
    try:
        await wait_for(lambda: _scraped(port), what="the metrics of 23 tasks", timeout=30)
        value = _samples(port)
    finally:
        assert worker.stop(signal.SIGTERM) == 0, worker.log()
    ok, broken = "app.metric_tasks:ok", "app.metric_tasks:broken"
    assert value["adelayed_tasks_total", "done", "jobs"] == 20
    assert value["adelayed_tasks_total", "failed", "jobs"] == 3
    assert value["adelayed_queue_tasks", "jobs", "scheduled"] == 1
    assert value["adelayed_queue_tasks", "jobs", "queued"] == 0
    assert value["adelayed_task_duration_seconds_count", ok, "jobs"] == 20
    assert value["adelayed_task_duration_seconds_sum", ok, "jobs"] >= 0.2  # 20 x 10 ms
    assert value["adelayed_task_attempts_total", broken, "error", "jobs"] == 3


def _samples(port: int) -> dict[tuple[str, ...], float]:
    """Each sample's value by (name, its label values in label-name order); no buckets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "le" not in sample.labels:
                labels = tuple(value for _, value in sorted(sample.labels.items()))
                found[(sample.name, *labels)] = sample.value
    return found


def _scraped(port: int) -> bool:
    """All 23 tasks counted, and the depths read after they ran (every 5 s)."""
    try:
        value = _samples(port)
    except OSError:
        return False
    ended = value.get(("adelayed_tasks_total", "done", "jobs"), 0) + value.get(
        ("adelayed_tasks_total", "failed", "jobs"), 0
    )
    return ended == 23 and value.get(("adelayed_queue_tasks", "jobs", "queued")) == 0
