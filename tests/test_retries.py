"""Retries pause between attempts (exponential backoff with jitter and a cap) in the queue's
scheduled set, are logged without flooding, and the final failure says how many attempts ran."""

from __future__ import annotations

import inspect
import itertools
import logging
import re
import time

import anyio
import pytest
import redis.asyncio as redis

from adelayed import ConfigurationError, PyTask, Queue, Worker
from adelayed import _envelope as envelope
from adelayed import _retries as retries
from adelayed._retries import RetryBackoff
from tests import tasks
from tests.helpers import make_worker, raw, running, texts, wait_for


async def queue_state(client: redis.Redis) -> tuple[int, int, int]:
    return (
        await client.llen("jobs"),
        await client.llen("jobs_noti"),
        await client.hlen("jobs_processing"),
    )


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "adelayed._retries"]


async def test_each_retry_waits_at_least_the_backoff_base(queue: Queue) -> None:
    await queue.enqueue(PyTask(tasks.fail_timed, args=("thrice",), retry=3))
    async with running(make_worker(queue, retry_backoff=(0.1, 0.2))):
        await wait_for(lambda: len(tasks.call_times.get("thrice", [])) == 4)
    times = tasks.call_times["thrice"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.1 for gap in gaps), gaps


async def test_retrying_forever_is_bounded_per_second_and_logged_once(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue(PyTask(tasks.fail_timed, args=("forever",), retry=-1))
    async with running(make_worker(queue, retry_backoff=(0.05, 0.1))):
        await wait_for(lambda: "forever" in tasks.call_times, what="the first attempt")
        await anyio.sleep(1)
        attempts = len(tasks.call_times["forever"])
        assert 2 <= attempts <= 21  # at least 0.05 s apart
        assert await copies(client) == 1  # one task, wherever it is: never duplicated
    [line] = retry_lines(caplog)  # the first failure only, with its traceback
    assert line.exc_info is not None and "retry 1 of unlimited" in line.getMessage()


async def test_a_retry_storm_is_summed_up_once_per_interval(
    queue: Queue, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retries, "SUMMARY_INTERVAL", 0.3)
    await queue.enqueue(PyTask(tasks.fail_timed, args=("storm",), retry=-1))
    async with running(make_worker(queue, retry_backoff=(0.02, 0.02))):
        await wait_for(lambda: len(retry_lines(caplog)) == 3, what="two summaries")
    first, *summaries = retry_lines(caplog)
    assert "(attempt 1)" in first.getMessage() and first.exc_info is not None
    counts = [int(re.findall(r"(\d+) more retries of 'tests.tasks:fail_timed'", s.getMessage())[0])
              for s in summaries]  # fmt: skip
    assert all(count >= 5 for count in counts)  # 0.3 s of retries 0.02 s apart in each line
    assert 1 + sum(counts) <= len(tasks.call_times["storm"])


async def test_the_final_failure_says_how_many_attempts_ran(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue(PyTask(tasks.fail_timed, args=("twice",), retry=2))
    async with running(make_worker(queue, retry_backoff=(0.01, 0.02))):
        await wait_for(lambda: "failed after" in caplog.text, what="the final failure")
    assert len(tasks.call_times["twice"]) == 3
    [final] = [r for r in caplog.records if "failed after" in r.getMessage()]
    assert final.levelno == logging.ERROR and final.exc_info is not None
    assert "'tests.tasks:fail_timed' failed after 3 attempts" in final.getMessage()
    assert "failed (attempt 1), retry 1 of 2 in " in caplog.text
    assert "retry=0" not in caplog.text
    assert await queue_state(client) == (0, 0, 0)


async def copies(client: redis.Redis) -> int:
    """How many tasks the queue holds in every place a task can be."""
    places = [("llen", "jobs"), ("llen", "jobs_ready"), ("zcard", "jobs_scheduled"),
              ("hlen", "jobs_processing"), ("hlen", "jobs_active")]  # fmt: skip
    async with client.pipeline(transaction=True) as pipe:  # one snapshot: MULTI/EXEC
        for command, key in places:
            getattr(pipe, command)(key)
        return sum(await pipe.execute())


@pytest.mark.parametrize("now", [False, True])
async def test_a_retry_waits_in_the_scheduled_set_with_its_attempt_and_a_stop_does_not_wait(
    client: redis.Redis, queue: Queue, now: bool
) -> None:
    await queue.enqueue(PyTask(tasks.fail_timed, args=("paused",), retry=5))
    worker = make_worker(queue, retry_backoff=(30, 30), grace_period=30)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await wait_for(lambda: "paused" in tasks.call_times, what="the first attempt")
        await wait_for(queue.scheduled, what="the retry scheduled")
        assert await queue_state(client) == (0, 0, 0)  # the slot is free meanwhile
        stopped = time.monotonic()
        worker.stop(now=now)
    assert time.monotonic() - stopped < 2  # not the pause, not the grace period
    [id_] = texts(await client.zrange("jobs_scheduled", 0, -1))
    retry = envelope.unpack(raw(await client.hget("jobs_jobs", id_)))
    assert retry.attempt == 2 and retry.id == id_
    retried = PyTask(tasks.fail_timed, args=("paused",), retry=4)  # one retry used up
    assert retry.payload == retried.serialize()
    assert await copies(client) == 1


def test_the_backoff_is_jittered_grows_and_is_capped() -> None:
    backoff = RetryBackoff(1.0, 300.0, "jobs")
    for retry, ceiling in [(1, 2.0), (3, 8.0), (8, 256.0), (9, 300.0), (1000, 300.0)]:
        delays = [backoff.delay(retry) for _ in range(200)]
        assert all(1.0 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) == 200  # jittered: no two alike
        assert max(delays) > 1.0 + (ceiling - 1.0) * 0.8  # spread over the whole span
        assert min(delays) < 1.0 + (ceiling - 1.0) * 0.2


def test_the_default_backoff_starts_at_a_second_and_caps_at_five_minutes() -> None:
    assert inspect.signature(Worker).parameters["retry_backoff"].default == (1.0, 300.0)


@pytest.mark.parametrize("backoff", [(0, 1), (2, 1), (-1, 5)])
def test_a_backoff_that_could_not_pause_is_refused(
    queue: Queue, backoff: tuple[float, float]
) -> None:
    with pytest.raises(ConfigurationError, match="retry_backoff"):
        make_worker(queue, retry_backoff=backoff)
