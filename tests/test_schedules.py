"""Periodic tasks: the next-tick maths of Cron and Every, the TICK script's compare-and-set, the
runner (late ticks, Redis's clock, its cost), queue.schedules(), and worker processes that run
each tick exactly once while one of them is killed."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest
import redis.asyncio as redis

from adelayed import (
    ConfigurationError,
    Cron,
    Every,
    PayloadTooLargeError,
    PyTask,
    Queue,
    RedisConfigurationError,
    ScheduledRun,
    TaskDataError,
)
from adelayed._protocol import schedules as wire_protocol
from adelayed._schedule_runner import ScheduleRunner
from adelayed._wire import Wire
from adelayed.embedded import EmbeddedRedis
from adelayed.schedules import Schedule
from tests import processes, tasks
from tests.helpers import command, make_worker, raw, running, text, wait_for
from tests.proxy import redis_proxy
from tests.run_scheduled_workers import RECORDS

NY = ZoneInfo("America/New_York")
TASK = PyTask(tasks.async_record, ["tick"])
KEYS = ("jobs", "jobs_noti", "jobs_schedules")


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def ticks(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    """The ``count`` ticks after ``start``, in ``start``'s zone."""
    found, at = [], ms(start)
    for _ in range(count):
        at = schedule.next_after(at)
        found.append(datetime.fromtimestamp(at / 1000, start.tzinfo))
    return found


async def redis_ms(client: redis.Redis) -> int:
    seconds, micros = await client.time()
    return seconds * 1000 + micros // 1000


async def field(client: redis.Redis, name: str) -> tuple[int, str, str] | None:
    value = await client.hget("jobs_schedules", name)
    return (
        None if value is None else wire_protocol.decode_value(raw(value).decode(errors="replace"))
    )


@asynccontextmanager
async def runner(queue: Queue, *schedules: Schedule) -> AsyncIterator[ScheduleRunner]:
    service = ScheduleRunner(queue, schedules)
    async with anyio.create_task_group() as group:
        group.start_soon(service.run)
        yield service
        group.cancel_scope.cancel()


# Next-tick maths.


def test_every_ticks_at_multiples_of_its_interval_from_the_epoch() -> None:
    every = Every(0.2, TASK)
    assert [every.next_after(t) for t in (0, 1, 199, 200, 201)] == [200, 200, 200, 400, 400]
    hourly = Every(timedelta(hours=1), TASK)
    start = datetime(2026, 12, 1, 10, 47, 21, tzinfo=timezone.utc)
    assert ticks(hourly, start, 2) == [start.replace(hour=11, minute=0, second=0),
                                       start.replace(hour=12, minute=0, second=0)]  # fmt: skip
    assert every.name == "tests.tasks:async_record every 200ms"
    assert every.description == "every 200ms"
    assert Every(timedelta(minutes=5), TASK).description == "every 5m"


@pytest.mark.parametrize("interval", [0, -1, 0.0005, 0.0015, float("inf"), "1"])
def test_every_refuses_an_interval_that_is_not_whole_positive_milliseconds(
    interval: float,
) -> None:
    with pytest.raises(ConfigurationError, match="whole number of milliseconds"):
        Every(interval, TASK)


def test_cron_ticks_strictly_after_the_time_given() -> None:
    cron = Cron("*/5 * * * *", TASK)
    start = datetime(2026, 12, 1, 10, 47, 21, tzinfo=timezone.utc)
    assert ticks(cron, start, 3) == [start.replace(minute=m, second=0) for m in (50, 55)] + [
        start.replace(hour=11, minute=0, second=0)
    ]
    on_a_tick = ms(datetime(2026, 12, 1, 10, 50, tzinfo=timezone.utc))
    assert cron.next_after(on_a_tick) == on_a_tick + 5 * 60_000
    assert cron.next_after(on_a_tick - 1) == on_a_tick


def test_cron_runs_a_time_the_clocks_skip_right_after_the_gap() -> None:
    # New York springs forward on 2026-03-08: 02:00 EST becomes 03:00 EDT; 02:30 never comes.
    cron = Cron("30 2 * * *", TASK, tz="America/New_York")
    assert [t.isoformat() for t in ticks(cron, datetime(2026, 3, 7, tzinfo=NY), 3)] == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_cron_runs_a_time_the_clocks_repeat_once() -> None:
    # New York falls back on 2026-11-01: 01:00-02:00 comes twice (EDT, then EST).
    cron = Cron("30 1 * * *", TASK, tz=NY)
    assert [t.isoformat() for t in ticks(cron, datetime(2026, 10, 31, tzinfo=NY), 3)] == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_cron_with_a_step_in_minutes_runs_in_real_time_through_a_repeated_hour() -> None:
    cron = Cron("*/30 * * * *", TASK, tz="America/New_York")
    start = datetime(2026, 11, 1, 0, 10, tzinfo=NY)
    assert [t.isoformat() for t in ticks(cron, start, 6)] == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    times = [ms(t) for t in ticks(cron, start, 6)]
    assert {b - a for a, b in itertools.pairwise(times)} == {30 * 60_000}  # in real time


def test_cron_names_and_describes_itself() -> None:
    cron = Cron("0  9 * * 1-5", TASK, tz="Europe/Paris")
    assert cron.name == "tests.tasks:async_record cron '0 9 * * 1-5' Europe/Paris"
    explained = "At 09:00 on Monday through Friday"
    assert cron.description == f"cron '0 9 * * 1-5' (Europe/Paris): {explained}"
    assert Cron("0 9 * * *", TASK).name == "tests.tasks:async_record cron '0 9 * * *'"
    assert Cron("0 9 * * *", TASK, name="report").name == "report"


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("*/5 * * *", None, "not a 5-field expression"),
        ("0 */5 * * * *", None, "not a 5-field expression"),
        ("61 * * * *", None, "does not parse: Bad minute"),
        ("0 0 31 2 *", None, "does not parse"),
        ("* * * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_cron_refuses_what_it_cannot_run(expr: str, tz: str | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cron(expr, TASK, tz=tz)


def test_cron_without_cronsim_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cronsim", None)  # import cronsim raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'adelayed\[cron\]'"):
        Cron("* * * * *", TASK)
    assert Every(1, TASK).next_after(0) == 1000  # Every does not need it


def test_a_schedule_checks_its_task_and_settings_when_made() -> None:
    with pytest.raises(TaskDataError):
        Every(1, PyTask(tasks.async_record, [object()]))
    with pytest.raises(ConfigurationError, match="PyTask or GoTask"):
        Every(1, tasks.async_record)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="grace must be positive"):
        Every(1, TASK, grace=0)


def test_a_runner_refuses_two_schedules_of_one_name(queue: Queue) -> None:
    with pytest.raises(ConfigurationError, match="two schedules are named"):
        ScheduleRunner(queue, [Every(1, TASK), Every(1, PyTask(tasks.async_record, ["other"]))])
    ScheduleRunner(queue, [Every(1, TASK), Every(1, TASK, name="other")])


def test_a_runner_refuses_a_task_over_the_queue_max_payload_size(client: redis.Redis) -> None:
    small = Queue("jobs", client, max_payload_size=64)
    with pytest.raises(PayloadTooLargeError, match="max_payload_size"):
        ScheduleRunner(small, [Every(1, PyTask(tasks.async_record, ["x" * 100]))])


# The TICK script.


async def tick_args(
    client: redis.Redis, *, late_ms: int, grace_ms: int = 60_000
) -> list[str | bytes]:
    """Sets the field 'every' to a tick ``late_ms`` ago; returns TICK's arguments for it."""
    due = await redis_ms(client) - late_ms
    expected = wire_protocol.encode_value(due, "UTC", "every 1s")
    await client.hset("jobs_schedules", "every", expected)
    new = wire_protocol.encode_value(due + 60_000, "UTC", "every 1s")
    return ["every", expected, new, str(due), str(grace_ms), TASK.serialize()]


async def test_tick_enqueues_once_among_concurrent_callers(client: redis.Redis) -> None:
    args = await tick_args(client, late_ms=5)
    wires = [Wire(client, f"caller {i}") for i in range(8)]
    try:
        replies = await asyncio.gather(*(wire_protocol.TICK(w, KEYS, args) for w in wires))
    finally:
        for wire in wires:
            wire.close()
    codes = Counter(reply[0] for reply in replies)
    assert codes == {wire_protocol.RAN: 1, wire_protocol.MOVED: 7}
    assert {reply[2].decode() for reply in replies} == {args[2]}  # all learn the next tick
    assert await client.lrange("jobs", 0, -1) == [TASK.serialize()]
    assert await client.lrange("jobs_noti", 0, -1) == [b"1"]


async def test_tick_sent_again_changes_nothing(client: redis.Redis, wire: Wire) -> None:
    args = await tick_args(client, late_ms=5)
    first = await wire_protocol.TICK(wire, KEYS, args)
    again = await wire_protocol.TICK(wire, KEYS, args)
    assert (first[0], again[0]) == (wire_protocol.RAN, wire_protocol.MOVED)
    assert await client.llen("jobs") == await client.llen("jobs_noti") == 1
    assert text(await client.hget("jobs_schedules", "every")) == args[2]


async def test_tick_is_not_run_before_it_is_due_on_redis_clock(
    client: redis.Redis, wire: Wire
) -> None:
    args = await tick_args(client, late_ms=-10_000)  # due in 10 s
    code, now, stored = await wire_protocol.TICK(wire, KEYS, args)
    assert (code, stored.decode()) == (wire_protocol.EARLY, args[1])
    assert int(args[3]) - 10_000 <= now < int(args[3]) - 9_500  # the reply has Redis's time
    assert await client.llen("jobs") == 0


async def test_tick_more_than_grace_late_is_skipped(client: redis.Redis, wire: Wire) -> None:
    args = await tick_args(client, late_ms=5_000, grace_ms=1_000)
    code, _, stored = await wire_protocol.TICK(wire, KEYS, args)
    assert (code, stored.decode()) == (wire_protocol.SKIPPED, args[2])
    assert await client.llen("jobs") == await client.llen("jobs_noti") == 0
    args = await tick_args(client, late_ms=900, grace_ms=1_000)  # within grace: runs
    assert (await wire_protocol.TICK(wire, KEYS, args))[0] == wire_protocol.RAN


# The runner.


async def test_runner_skips_a_tick_found_more_than_grace_late_and_logs_it(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    hourly = Every(timedelta(hours=1), TASK)
    now = await redis_ms(client)
    stale = hourly.next_after(now) - 3 * 3_600_000  # 2-3 h ago: every worker was down
    await client.hset("jobs_schedules", hourly.name, wire_protocol.encode_value(
        stale, hourly.zone, hourly.description))  # fmt: skip
    async with runner(queue, hourly):
        await wait_for(lambda: _moved_past(client, hourly.name, now), what="the field to move")
    assert await field(client, hourly.name) == (hourly.next_after(now), "UTC", "every 1h")
    assert await client.llen("jobs") == 0
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "skipped, not run late" in warning and hourly.name in warning


async def test_runner_runs_a_late_tick_within_grace_once_not_in_a_burst(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    hourly = Every(timedelta(hours=1), TASK, grace=timedelta(hours=4))
    now = await redis_ms(client)
    stale = hourly.next_after(now) - 3 * 3_600_000  # two or three ticks missed, within grace
    await client.hset("jobs_schedules", hourly.name, wire_protocol.encode_value(
        stale, hourly.zone, hourly.description))  # fmt: skip
    async with runner(queue, hourly):
        await wait_for(lambda: _moved_past(client, hourly.name, now), what="the field to move")
    assert await client.lrange("jobs", 0, -1) == [TASK.serialize()]  # one run, not three
    assert await field(client, hourly.name) == (hourly.next_after(now), "UTC", "every 1h")
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "late; the ticks after it up to now were missed" in warning


@pytest.mark.parametrize("value", [b"1000 UTC every 5s", b"not a tick", b"\xff\xfe"])
async def test_runner_replaces_a_field_another_definition_or_nobody_wrote(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    hourly = Every(timedelta(hours=1), TASK, name="shared")
    await client.hset("jobs_schedules", "shared", value)
    now = await redis_ms(client)
    async with runner(queue, hourly):
        await wait_for(lambda: _moved_past(client, "shared", now), what="the field to move")
    assert await field(client, "shared") == (hourly.next_after(now), "UTC", "every 1h")
    assert await client.llen("jobs") == 0  # replacing it runs nothing
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if value.endswith(b"every 5s"):
        [warning] = warnings
        assert "is also declared as 'every 5s'; using this worker's 'every 1h'" in warning
    else:
        assert warnings == []


async def test_runner_whose_tick_replies_are_lost_enqueues_each_tick_once(
    client: redis.Redis, redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adelayed")
    every = Every(0.2, TASK)
    first = every.next_after(await redis_ms(client) + 200)
    await client.hset("jobs_schedules", every.name, wire_protocol.encode_value(
        first, every.zone, every.description))  # fmt: skip
    ran: list[bool] = []

    def every_other_win(kind: str, command: list[bytes], reply: object) -> bool:
        if isinstance(reply, list) and reply[0] == str(wire_protocol.RAN).encode():
            ran.append(True)
            return len(ran) % 2 == 1  # Redis ran it; the runner sees the connection drop
        return False

    tick_sha = wire_protocol.TICK.sha.encode()
    async with redis_proxy(
        redis_server.port,
        lambda command, _: "tick" if command[1:2] == [tick_sha] else None,
        every_other_win,
    ) as proxy:
        proxied = redis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}")  # no retries of its own
        try:
            async with runner(Queue("jobs", proxied), every):
                await wait_for(lambda: len(ran) >= 8, what="8 ticks")
        finally:
            await proxied.aclose()
    found = await field(client, every.name)
    assert found is not None and proxy.cuts["tick"] >= 4
    assert await client.llen("jobs") == (found[0] - first) // 200  # each tick once, none lost
    assert any("tick call failed" in r.getMessage() for r in caplog.records)


class _Exhausted(Every):
    def next_after(self, ms: int) -> int:
        raise ConfigurationError("cron '0 0 29 2 1' has no time in the 50 years after ...")


async def test_runner_stops_a_schedule_that_has_no_next_tick_and_says_so(
    client: redis.Redis, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    every = Every(0.05, TASK)
    async with runner(queue, every, _Exhausted(0.05, TASK, name="exhausted")):
        await wait_for(lambda: _length(client, "jobs", 3), what="3 ticks of the other")
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "has no time in the 50 years" in error and "the schedule stops" in error
    assert await client.hkeys("jobs_schedules") == [every.name.encode()]


async def _moved_past(client: redis.Redis, name: str, now: int) -> bool:
    found = await field(client, name)
    return found is not None and found[0] > now


async def test_runner_costs_one_script_call_per_tick_and_nothing_between(
    client: redis.Redis, queue: Queue
) -> None:
    await client.script_load(wire_protocol.TICK.text)  # no NOSCRIPT reply to count
    before = await client.info("commandstats")
    async with runner(queue, Every(0.1, TASK)):
        await wait_for(lambda: _length(client, "jobs", 10), what="10 ticks")
        now = await redis_ms(client)
        await _sleep_until(client, now // 100 * 100 + 150)  # half-way between two ticks
        enqueued = await client.llen("jobs")
        after = await client.info("commandstats")
    calls = {
        name: stats["calls"] - before.get(name, {"calls": 0})["calls"]
        for name, stats in after.items()
    }
    for name in ("info", "llen", "hello", "client", "client|setinfo"):  # the test's, the wire's
        calls.pop(f"cmdstat_{name}", None)
    calls["cmdstat_time"] -= 2  # the test's own
    calls = {name: count for name, count in calls.items() if count}
    # The first call reads the field, the second adds it; then one call per tick. Each call of
    # the script shows as EVALSHA and, inside it, TIME and HGET (and the writes when it wins).
    assert calls.pop("cmdstat_evalsha") == enqueued + 2
    assert calls == {
        "cmdstat_time": enqueued + 2,
        "cmdstat_hget": enqueued + 2,
        "cmdstat_hset": enqueued + 1,
        "cmdstat_rpush": 2 * enqueued,
    }


async def test_runner_keeps_to_redis_clock_when_the_local_clock_is_an_hour_off(
    client: redis.Redis, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 3600)
    every = Every(0.05, TASK)
    async with runner(queue, every):
        await wait_for(lambda: _length(client, "jobs", 3), what="3 ticks")
        found = await field(client, every.name)
        now = await redis_ms(client)
    assert found is not None and abs(found[0] - now) < 1000  # not an hour off


async def test_queue_schedules_lists_each_next_run_in_its_zone(
    client: redis.Redis, queue: Queue
) -> None:
    daily = Cron("0 9 * * *", TASK, tz="Europe/Paris")
    every = Every(timedelta(hours=1), TASK)
    assert await queue.schedules() == []
    async with runner(queue, daily, every):
        await wait_for(lambda: _hlen(client, "jobs_schedules", 2), what="both fields")
    now = datetime.fromtimestamp(await redis_ms(client) / 1000, timezone.utc)
    runs = await queue.schedules()
    assert [run.name for run in runs] == [every.name, daily.name]  # soonest first
    assert runs[0] == ScheduledRun(
        every.name, now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
        "every 1h",
    )  # fmt: skip
    paris = runs[1].next_run
    assert paris.tzinfo == ZoneInfo("Europe/Paris") and (paris.hour, paris.minute) == (9, 0)
    assert now < paris <= now + timedelta(days=1)
    assert runs[1].description == daily.description


async def _length(client: redis.Redis, key: str, count: int) -> bool:
    return bool(await client.llen(key) >= count)


async def _hlen(client: redis.Redis, key: str, count: int) -> bool:
    return bool(await client.hlen(key) >= count)


async def test_a_worker_given_schedules_runs_their_ticks(client: redis.Redis, queue: Queue) -> None:
    every = Every(0.05, TASK)
    async with running(make_worker(queue, schedules=[every])):
        await wait_for(lambda: tasks.ran.count("tick") >= 3, what="3 ticks run by the worker")
    assert [run.name for run in await queue.schedules()] == [every.name]


def test_a_worker_checks_its_schedules_when_made(queue: Queue) -> None:
    with pytest.raises(ConfigurationError, match="two schedules are named"):
        make_worker(queue, schedules=[Every(1, TASK), Every(1, TASK)])


async def test_a_worker_whose_acl_refuses_the_tick_script_ends_with_the_fix(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    await command(client,
        "ACL", "SETUSER", "no-hget", "on", ">pw", "~jobs", "~jobs_*", "~adelayed:*", "+@all",
        "-hget",
    )  # fmt: skip
    user = redis.Redis(port=redis_server.port, username="no-hget", password="pw")
    try:
        worker = make_worker(Queue("jobs", user), schedules=[Every(0.05, TASK)])
        with pytest.raises(RedisConfigurationError, match="ACL refuses this user"):
            await worker.run()  # not retried forever
    finally:
        await user.aclose()
        await command(client, "ACL", "DELUSER", "no-hget")


# Worker processes.


async def test_a_real_delayed_worker_runs_the_ticks_as_plain_v1_tasks(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, log: Path
) -> None:
    every = Every(0.1, PyTask("tests.tasks:record_run", ["tick"]))
    worker = processes.delayed_worker(redis_server.url, log)
    try:
        async with runner(queue, every):
            await wait_for(lambda: _length(client, "finished", 3), 30, "3 ticks run by delayed")
    finally:
        processes.stop(worker)
    assert set(await client.lrange("finished", 0, -1)) == {b"tick"}
    assert await client.hlen("jobs_schedules") == 1  # its hash, untouched by delayed


INTERVAL_MS = 250


def _tick_of(record: bytes) -> int:
    """The tick a record belongs to: the last one at or before the time its task ran."""
    return int(record.split()[0]) // INTERVAL_MS * INTERVAL_MS


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_three_worker_processes_run_each_tick_once_while_one_is_killed(
    client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [_scheduled_worker(redis_server.url, log) for log in logs]
    try:
        await wait_for(lambda: all(processes.worker_id_in(log) for log in logs), 30, "3 workers")
        first = (await redis_ms(client) // INTERVAL_MS + 2) * INTERVAL_MS
        window = [first + i * INTERVAL_MS for i in range(24)]
        # Kill the one that enqueued the last tick, just before the 8th: the others go on.
        await _sleep_until(client, window[7] - 40)
        last_winner = max(range(3), key=lambda i: _last_tick_won(logs[i]))
        assert _last_tick_won(logs[last_winner]) == window[6]
        assert processes.stop(workers[last_winner]) == -signal.SIGKILL
        await _sleep_until(client, window[-1] + INTERVAL_MS // 2)
    finally:
        for worker in workers:
            processes.stop(worker, signal.SIGTERM)
        for log in logs:
            print(log.name, log.read_text()[-3000:])
    records = await client.lrange(RECORDS, 0, -1)
    counts = Counter(_tick_of(raw(record)) for record in records)
    lags = sorted(int(record.split()[0]) % INTERVAL_MS for record in records)  # a few ms
    assert [counts[tick] for tick in window] == [1] * len(window), (counts, lags)
    runners = {record.split()[1] for record in records}
    assert len(runners) >= 2  # the tasks themselves ran on several workers


def _last_tick_won(log: Path) -> int:
    """The last tick a worker's runner logged it enqueued (0: none)."""
    won = re.findall(r": tick (\d+) enqueued", log.read_text())
    return int(won[-1]) if won else 0


def _scheduled_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return processes._spawn(
        [sys.executable, "-m", "tests.run_scheduled_workers", url, "jobs",
         str(INTERVAL_MS / 1000)],
        url,
        log,
    )  # fmt: skip


async def _sleep_until(client: redis.Redis, at_ms: int) -> None:
    delay = (at_ms - await redis_ms(client)) / 1000
    if delay > 0:
        await anyio.sleep(delay)
