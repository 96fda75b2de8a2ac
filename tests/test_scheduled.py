"""Delayed tasks, retry policies, timeouts and the task context, in one worker process (the
faults: tests/test_scheduled_faults.py)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
import redis.asyncio as redis

from adelayed import (
    Backoff,
    ConfigurationError,
    NotInTaskError,
    PyTask,
    Queue,
    current_task,
)
from adelayed import _envelope as envelope
from tests import timed_tasks
from tests.helpers import make_worker, raw, running, text, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _reset() -> None:
    timed_tasks.reset()


def worker(queue: Queue, **options: Any) -> Any:
    return make_worker(queue, tasks=["tests.timed_tasks"], **options)


def runs_of(name: str) -> list[dict[str, Any]]:
    return [run for run in timed_tasks.runs if run["name"] == name]


def task(func: Any, *args: Any, retry: int = 0) -> PyTask:
    return PyTask(func, args=args, retry=retry)


async def test_a_delayed_task_runs_after_its_delay_and_not_before(queue: Queue) -> None:
    async with running(worker(queue)):
        await anyio.sleep(0.2)  # the promoter is up and idle
        sent = time.monotonic()
        await queue.enqueue(task(timed_tasks.record, "later"), delay=0.5)
        await queue.enqueue(task(timed_tasks.record, "sooner"), delay=timedelta(seconds=0.1))
        await wait_for(lambda: len(timed_tasks.runs) == 2)
    sooner, later = timed_tasks.runs
    assert (sooner["name"], later["name"]) == ("sooner", "later")
    assert 0.1 <= sooner["at"] - sent < 0.35
    assert 0.5 <= later["at"] - sent < 0.75
    assert later["due"] is not None and later["task_id"] is not None


async def test_an_eta_is_an_aware_datetime(queue: Queue) -> None:
    eta = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    sent = time.monotonic()
    async with running(worker(queue)):
        await queue.enqueue(task(timed_tasks.record, "eta"), eta=eta)
        assert await queue.scheduled() == 1 and await queue.len() == 0
        await wait_for(lambda: len(timed_tasks.runs) == 1)
    [run] = timed_tasks.runs
    assert 0.2 <= run["at"] - sent < 0.6  # the test's clock and Redis's are the same here
    assert abs((run["due"] - eta).total_seconds()) < 0.002


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"eta": datetime(2030, 1, 1)}, "aware datetime"),
        ({"delay": 1, "eta": datetime.now(timezone.utc)}, "not both"),
        ({"delay": -1}, "zero or more seconds"),
        ({"delay": "soon"}, "seconds"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"backoff": 5}, "Backoff.fixed"),
        ({"isolation": "fork"}, "isolation must be"),
        ({"retry_on": (ValueError, 3)}, "exception classes"),
    ],
)
async def test_wrong_options_are_refused_before_anything_is_sent(
    client: redis.Redis, queue: Queue, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says) as refused:
        await queue.enqueue(task(timed_tasks.record, "x"), **options)
    assert "queue 'jobs': task 'tests.timed_tasks:record'" in str(refused.value)
    assert await client.dbsize() == 0


async def test_a_plain_task_stays_delayed_1_2s_bytes(client: redis.Redis, queue: Queue) -> None:
    plain = task(timed_tasks.record, "plain")
    await queue.enqueue(plain)
    assert await client.lrange("jobs", 0, -1) == [plain.serialize()]
    assert sorted(await client.keys("*")) == [b"jobs", b"jobs_noti"]


async def test_an_idle_worker_is_woken_early_by_a_nearer_task(queue: Queue) -> None:
    async with running(worker(queue)):
        await queue.enqueue(task(timed_tasks.record, "far"), delay=30)
        await anyio.sleep(0.3)  # the promoter now sleeps until the far one is due
        sent = time.monotonic()
        await queue.enqueue(task(timed_tasks.record, "near"), delay=0.2)
        await wait_for(lambda: len(runs_of("near")) == 1, timeout=5)
    assert runs_of("near")[0]["at"] - sent < 0.45
    assert runs_of("far") == [] and await queue.scheduled() == 1


async def test_an_idle_promoter_sends_nothing_while_nothing_is_due(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    promote = Queue._promote

    async def counted(self: Queue, wire: Any) -> Any:
        calls.append(time.monotonic())
        return await promote(self, wire)

    monkeypatch.setattr(Queue, "_promote", counted)
    async with running(worker(queue)):
        await queue.enqueue(task(timed_tasks.record, "far"), delay=60)
        await anyio.sleep(2)
    assert len(calls) <= 2  # at start, and once woken by the far task's wake


async def test_many_due_tasks_are_promoted_in_bounded_calls_each_once(queue: Queue) -> None:
    count = 2500  # over two PROMOTE batches
    tasks = [task(timed_tasks.record, f"t{i}") for i in range(count)]
    assert await queue.enqueue_many(tasks, delay=0.3) == count
    async with running(worker(queue, concurrency=50)):
        await wait_for(lambda: len(timed_tasks.runs) == count, timeout=30)
    assert sorted(run["name"] for run in timed_tasks.runs) == sorted(f"t{i}" for i in range(count))
    assert await queue.scheduled() == 0 and await queue.len() == 0


async def test_a_retry_uses_the_tasks_backoff_and_counts_attempts(queue: Queue) -> None:
    await queue.enqueue(
        task(timed_tasks.fail_times, "twice", 2, retry=5), backoff=Backoff.fixed(0.2)
    )
    async with running(worker(queue, retry_backoff=(30, 30))):  # the worker's: not used
        await wait_for(lambda: len(runs_of("twice")) == 3, timeout=5)
    attempts = runs_of("twice")
    assert [run["attempt"] for run in attempts] == [1, 2, 3]
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(attempts)]
    assert all(0.2 <= gap < 0.45 for gap in gaps), gaps
    assert len({run["task_id"] for run in attempts}) == 1  # one task, one id


async def test_a_v1_tasks_retry_gets_an_id_and_attempt_numbers(queue: Queue) -> None:
    await queue.enqueue(task(timed_tasks.fail_times, "v1", 1, retry=1))
    async with running(worker(queue, retry_backoff=(0.05, 0.05))):
        await wait_for(lambda: len(runs_of("v1")) == 2, timeout=5)
    first, second = runs_of("v1")
    assert (first["attempt"], first["task_id"]) == (1, None)
    assert second["attempt"] == 2 and second["task_id"] is not None


async def test_retry_on_retries_only_those_errors(queue: Queue) -> None:
    await queue.enqueue(task(timed_tasks.fail, "key", "KeyError", retry=3), retry_on=(LookupError,))
    await queue.enqueue(
        task(timed_tasks.fail, "value", "ValueError", retry=3), retry_on=(LookupError,)
    )
    async with running(worker(queue, retry_backoff=(0.01, 0.01))):
        await wait_for(lambda: len(runs_of("key")) == 4, timeout=5)
        await anyio.sleep(0.2)
    assert len(runs_of("value")) == 1  # not a LookupError: failed at once


async def test_raise_retry_waits_its_delay_whatever_retry_on_says(queue: Queue) -> None:
    await queue.enqueue(task(timed_tasks.ask_retry, "asked", 0.3, 1, retry=1), retry_on=(KeyError,))
    async with running(worker(queue, retry_backoff=(30, 30))):
        await wait_for(lambda: len(runs_of("asked")) == 2, timeout=5)
    first, second = runs_of("asked")
    assert 0.3 <= second["at"] - first["at"] < 0.6


async def test_a_task_out_of_retries_is_dead_lettered_with_its_error_when_asked(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(task(timed_tasks.fail, "doomed", retry=1), dead_letter_on_failure=True)
    await queue.enqueue(task(timed_tasks.fail, "dropped", retry=1))
    async with running(worker(queue, retry_backoff=(0.01, 0.01))):
        await wait_for(lambda: len(runs_of("doomed")) == 2 and len(runs_of("dropped")) == 2)
        await wait_for(lambda: _dead_count(queue), what="the dead letter")
        await anyio.sleep(0.1)
    [dead] = await queue.dead_tasks()
    assert dead.payload == task(timed_tasks.fail, "doomed", retry=0).serialize()
    assert dead.reason.startswith("ValueError: doomed (after 2 attempt(s))")
    assert "Traceback" in dead.traceback and "raise _builtin(error)(name)" in dead.traceback
    for key in ("jobs_jobs", "jobs_active", "jobs_processing"):
        assert await client.hlen(key) == 0, key  # both settled, nothing left behind


async def _dead_count(queue: Queue) -> bool:
    return len(await queue.dead_tasks()) == 1


async def test_a_timeout_cancels_an_async_task_and_frees_its_slot(queue: Queue) -> None:
    await queue.enqueue(task(timed_tasks.sleep, "slow", 10, retry=1), timeout=0.3)
    await queue.enqueue(task(timed_tasks.record, "next"), delay=0.1)
    async with running(worker(queue, concurrency=1, retry_backoff=(0.01, 0.01))):
        await wait_for(lambda: len(runs_of("slow")) == 2, timeout=5)
        await wait_for(lambda: len(runs_of("next")) == 1, timeout=5)
    first, second = runs_of("slow")
    assert 0.3 <= second["at"] - first["at"] < 0.8  # cut at 0.3 s, then retried
    assert runs_of("slow:done") == []
    assert first["timeout"] == 0.3 and 0 < first["left"] <= 0.3


async def test_a_timeout_stops_a_thread_task_at_its_next_bytecode(queue: Queue) -> None:
    await queue.enqueue(task(timed_tasks.sleep_in_thread, "spin", 10), timeout=0.3)
    async with running(worker(queue, concurrency=1)) as running_worker:
        await wait_for(lambda: len(runs_of("spin")) == 1, timeout=5)
        started = time.monotonic()
        await wait_for(lambda: _slot_free(running_worker), timeout=5, what="the slot freed")
        assert time.monotonic() - started < 0.8
        await anyio.sleep(0.3)
    assert runs_of("spin:done") == []


def _slot_free(worker: Any) -> bool:
    return len(worker._slots.free()) == 1


async def test_the_context_tells_a_thread_task_its_queue_worker_and_attempt(
    queue: Queue,
) -> None:
    await queue.enqueue(task(timed_tasks.record_in_thread, "thread"))
    async with running(worker(queue)) as running_worker:
        await wait_for(lambda: len(timed_tasks.runs) == 1)
    [run] = timed_tasks.runs
    assert (run["queue"], run["worker"], run["attempt"]) == ("jobs", running_worker.id, 1)
    assert run["timeout"] is None and run["left"] is None and run["due"] is None


def test_current_task_outside_a_task_says_so() -> None:
    with pytest.raises(NotInTaskError, match="outside a task"):
        current_task()


async def test_the_envelope_keeps_the_v1_payload_and_options_intact(queue: Queue) -> None:
    payload = task(timed_tasks.record, "x", retry=2).serialize()
    options = envelope.Options(timeout=1.5, backoff=Backoff.exponential(2, 60),
                               retry_on=("builtins.KeyError",), dead_letter_on_failure=True,
                               isolation="process")  # fmt: skip
    packed = envelope.pack("ab" * 16, payload, 3, options)
    assert envelope.is_envelope(packed) and not envelope.is_envelope(payload)
    assert envelope.unpack(packed) == ("ab" * 16, payload, 3, 0.0, options)


async def test_a_runaway_sync_task_in_a_process_is_killed_at_its_timeout(queue: Queue) -> None:
    await queue.enqueue(PyTask("tests.isolated_tasks:spin"), timeout=1, isolation="process")
    await queue.enqueue(task(timed_tasks.record, "after"), delay=0.1)
    tasks = ["tests.timed_tasks", "tests.isolated_tasks"]
    async with running(make_worker(queue, tasks=tasks, concurrency=1)) as running_worker:
        await wait_for(lambda: not _slot_free(running_worker), timeout=5, what="the spin")
        started = time.monotonic()
        await wait_for(lambda: len(runs_of("after")) == 1, timeout=5)
    assert time.monotonic() - started < 2.5  # killed at 1 s; then the next task ran


@pytest.mark.parametrize("name", ["segfault", "killed_by_the_oom_killer", "exit_at_once"])
async def test_a_child_that_dies_is_a_failure_of_its_task_not_of_the_worker(
    queue: Queue, name: str
) -> None:
    await queue.enqueue(
        PyTask(f"tests.isolated_tasks:{name}"), isolation="process", dead_letter_on_failure=True
    )
    await queue.enqueue(task(timed_tasks.record, "after"), delay=0.1)
    tasks = ["tests.timed_tasks", "tests.isolated_tasks"]
    async with running(make_worker(queue, tasks=tasks, concurrency=1)):
        await wait_for(lambda: len(runs_of("after")) == 1, timeout=10)
        await wait_for(lambda: _dead_count(queue), what="the dead letter")
    [dead] = await queue.dead_tasks()
    assert dead.reason.startswith("TaskCrashedError:"), dead.reason


async def snapshot(client: redis.Redis, *names: str) -> dict[bytes, Any]:
    """Every key of these queues, with its content."""
    state: dict[bytes, Any] = {}
    for key in sorted(await client.keys("*")):
        if not any(text(key).startswith(name) for name in names):
            continue
        kind = text(await client.type(key))
        if kind == "list":
            state[raw(key)] = await client.lrange(key, 0, -1)
        elif kind == "hash":
            state[raw(key)] = await client.hgetall(key)
        else:
            state[raw(key)] = await client.zrange(key, 0, -1, withscores=True)
    return state


async def test_the_scheduling_scripts_are_safe_to_run_twice(
    client: redis.Redis, queue: Queue
) -> None:
    """A re-sent call (its reply lost) changes nothing: SCHEDULE, PROMOTE, RESCHEDULE,
    FETCH and FETCH_MANY over enveloped tasks."""
    from adelayed._protocol import priority, scheduled

    wire = queue._wire()
    payload = task(timed_tasks.record, "x", retry=1).serialize()
    keys = ("jobs", "jobs_noti", "jobs_jobs", "jobs_scheduled", "jobs_ready", "jobs_wake")
    for id_, due in (("a" * 32, "60000"), ("b" * 32, "0")):  # one scheduled, one due at once
        packed = envelope.pack(id_, payload, 1, envelope.Options(timeout=5))
        args = (0, id_, packed, due)
        assert await scheduled.SCHEDULE(wire, keys, args) == 1
        before = await snapshot(client, "jobs")
        assert await scheduled.SCHEDULE(wire, keys, args) == 0
        assert await snapshot(client, "jobs") == before
    await client.zadd("jobs_scheduled", {"a" * 32: 0})  # due now
    promote_keys = ("jobs_scheduled", "jobs_ready", "jobs_noti")
    assert (await scheduled.PROMOTE(wire, promote_keys, (1000,)))[0] == 1
    before = await snapshot(client, "jobs")
    assert (await scheduled.PROMOTE(wire, promote_keys, (1000,)))[0] == 0
    assert await snapshot(client, "jobs") == before
    many_keys = (
        "jobs", "jobs_noti", "jobs_processing", "jobs_ready", "jobs_active", "jobs_jobs", "hand"
    )  # fmt: skip
    fetch = (1, 1, 10, 0, 0, 0, "slot:0", "slot:1", "slot:2")  # n, check, cap, look, r, e, fields
    first = await priority.FETCH_MANY(wire, many_keys, fetch)
    before = await snapshot(client, "jobs")
    assert await priority.FETCH_MANY(wire, many_keys, fetch) == first and len(first) == 6
    assert await snapshot(client, "jobs") == before
    retry_keys = (*keys[1:5], "jobs_processing", "jobs_active", "jobs_wake")
    again = envelope.pack("a" * 32, payload, 2, envelope.Options(timeout=5))
    assert first[0] < 0 and first[3] < 0  # envelopes: an index -(index + 1)
    ours = [i for i in (0, 3) if envelope.unpack(first[i + 2]).id == "a" * 32]
    [field] = [f"slot:{-first[i] - 1}" for i in ours]
    resend = (field, "a" * 32, again, "60000", "enveloped")
    assert await scheduled.RESCHEDULE(wire, retry_keys, resend) == 1
    before = await snapshot(client, "jobs")
    assert await scheduled.RESCHEDULE(wire, retry_keys, resend) == 0
    assert await snapshot(client, "jobs") == before


async def test_an_envelope_no_worker_can_read_is_dead_lettered_once(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    unreadable = envelope.MAGIC + b"\x00" * 8 + b"\x00\x00\x00\x00"  # an empty meta
    await client.hset("jobs_jobs", "c" * 32, unreadable)
    await client.rpush("jobs_ready", "c" * 32)
    await client.rpush("jobs_noti", "1")
    async with running(worker(queue)):
        await wait_for(lambda: _dead_count(queue), what="the dead letter")
        await anyio.sleep(0.3)
    [dead] = await queue.dead_tasks()
    assert dead.payload == unreadable and dead.reason.startswith("PayloadError")
    assert await client.hlen("jobs_active") == 0 and await client.hlen("jobs_jobs") == 0
    assert len([r for r in caplog.records if "envelope" in r.getMessage()]) <= 2  # no loop


async def test_a_go_task_with_options_is_refused(client: redis.Redis, queue: Queue) -> None:
    from adelayed import GoTask

    with pytest.raises(ConfigurationError, match="go-delayed's workers read none of them"):
        await queue.enqueue(GoTask("main.Ping"), delay=5)
    with pytest.raises(ConfigurationError, match=r"Go task 'main\.Ping'"):
        await queue.enqueue_many([GoTask("main.Ping")], timeout=5)
    assert await client.dbsize() == 0


async def test_max_length_counts_due_and_scheduled_tasks_for_every_enqueue(
    client: redis.Redis,
) -> None:
    from adelayed import QueueFullError

    queue = Queue("jobs", client, max_length=2)
    await queue.enqueue(task(timed_tasks.record, "later"), delay=60)
    await queue.enqueue(task(timed_tasks.record, "due"), timeout=5)
    for delay in (None, 60):
        with pytest.raises(QueueFullError):
            await queue.enqueue(task(timed_tasks.record, "one too many"), delay=delay)
    assert await queue.scheduled() == 1 and await queue.len() == 1


async def test_a_sweep_promotes_every_due_task_when_no_worker_does(queue: Queue) -> None:
    from adelayed import Sweeper

    await queue.enqueue_many([task(timed_tasks.record, f"t{i}") for i in range(1500)], delay=0.05)
    await anyio.sleep(0.1)
    assert await queue.len() == 0  # due, but no promoter ran
    await Sweeper([queue]).sweep()
    assert await queue.len() == 1500 and await queue.scheduled() == 0
