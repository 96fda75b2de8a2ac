"""Task functions the tests enqueue. Process-level tests record runs in Redis
(``$ADELAYED_TEST_REDIS_URL``); in-process tests read the ``ran`` list."""

from __future__ import annotations

import os
import threading
import time
import uuid
from os import getpid  # noqa: F401 - imported on purpose: a worker must refuse it
from pathlib import Path
from threading import Lock  # noqa: F401 - imported on purpose: a worker must refuse it
from typing import Any

import anyio
import redis

ran: list[object] = []
_active = 0
_peak = 0
_lock = threading.Lock()
_calls: dict[str, int] = {}


def reset() -> None:
    global _active, _peak
    ran.clear()
    _calls.clear()
    call_times.clear()
    _active = _peak = 0


def peak() -> int:
    return _peak


def active() -> int:
    """How many sync_sleep/async_sleep calls are inside their sleep now."""
    return _active


def _enter() -> None:
    global _active, _peak
    with _lock:
        _active += 1
        _peak = max(_peak, _active)


def _leave() -> None:
    global _active
    with _lock:
        _active -= 1


async def async_record(value: object) -> None:
    ran.append(value)


def sync_record(value: object) -> None:
    ran.append(value)


def sync_record_thread(fail: bool = False) -> None:
    """Records the thread it runs in; raises after that if ``fail``."""
    ran.append(threading.get_ident())
    if fail:
        raise RuntimeError("planned failure")


async def async_sleep(seconds: float, value: object = None) -> None:
    _enter()
    try:
        await anyio.sleep(seconds)
    finally:
        _leave()
    ran.append(value)


def sync_sleep(seconds: float, value: object = None) -> None:
    _enter()
    try:
        time.sleep(seconds)
    finally:
        _leave()
    ran.append(value)


def fail_until(key: str, successful_call: int) -> None:
    """Raises on calls 1 .. successful_call-1 (0: always raises), then records ``key``."""
    _calls[key] = _calls.get(key, 0) + 1
    ran.append((key, _calls[key]))
    if successful_call == 0 or _calls[key] < successful_call:
        raise RuntimeError(f"{key}: planned failure {_calls[key]}")


def call_count(key: str) -> int:
    return _calls.get(key, 0)


call_times: dict[str, list[float]] = {}


def fail_timed(key: str) -> None:
    """Always raises; records the time of each call in ``call_times[key]``."""
    call_times.setdefault(key, []).append(time.monotonic())
    raise RuntimeError(f"{key}: planned failure {len(call_times[key])}")


def len_of_nothing(key: str) -> int:
    """Raises TypeError from inside the function: a failure of the task, not a bad call."""
    _calls[key] = _calls.get(key, 0) + 1
    return len(None)  # type: ignore[arg-type]


# Process-level tasks: sync, so that delayed's workers can run them too.


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"])


def record_run(tag: str, seconds: float = 0.0, ballast: str = "") -> None:
    """Records ``tag`` in ``started``, sleeps, then records it in ``finished``."""
    _push_through_faults("started", tag)
    time.sleep(seconds)
    _push_through_faults("finished", tag)


# RPUSH once per marker: a re-sent record (its reply lost to a fault) is not counted twice.
_RECORD_ONCE = """
if redis.call('set', KEYS[2], 1, 'NX', 'EX', 600) then redis.call('rpush', KEYS[1], ARGV[1]) end
"""


def _push_through_faults(key: str, value: str) -> None:
    """Records ``value`` exactly once, waiting out a Redis outage, so a fault test's task
    neither fails of the fault nor is counted twice when its reply is lost."""
    marker = f"record:{uuid.uuid4().hex}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with _redis() as conn:
                conn.eval(_RECORD_ONCE, 2, key, marker, value)
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def async_record_run(tag: str, seconds: float = 0.0) -> None:
    import redis.asyncio as aredis

    conn = aredis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"])
    try:
        await conn.rpush("started", tag)
        await anyio.sleep(seconds)
        await conn.rpush("finished", tag)
    finally:
        await conn.aclose()


_shared: dict[int, object] = {}


def _async_redis() -> object:
    """One asyncio client per worker process (a worker process runs one event loop)."""
    import redis.asyncio as aredis

    if os.getpid() not in _shared:
        _shared[os.getpid()] = aredis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"])
    return _shared[os.getpid()]


async def chaos_run(tag: str, seconds: float) -> None:
    """Records each run in Redis: ``runs`` on start and ``done`` on finish, as tag|pid."""
    conn: Any = _async_redis()
    run = f"{tag}|{os.getpid()}"
    await conn.rpush("runs", run)
    await anyio.sleep(seconds)
    await conn.rpush("done", run)


def kill_my_worker(tag: str) -> None:
    """A poison task: records its run, then kills the worker process running it."""
    import signal

    with _redis() as conn:
        conn.rpush("runs", tag)
    os.kill(os.getpid(), signal.SIGKILL)


async def block_the_loop(seconds: float) -> None:
    """Blocking code in an ``async def``: the mistake the lease thread and watchdog are for."""
    _push_through_faults("started", f"blocker {time.time()}")
    time.sleep(seconds)  # noqa: ASYNC251 - on purpose
    _push_through_faults("finished", f"blocker {time.time()}")


async def nap_then_block_the_loop(nap: float, seconds: float) -> None:
    """Like block_the_loop, after ``nap`` seconds in which the worker's loop runs freely."""
    _push_through_faults("started", f"blocker {time.time()}")
    await anyio.sleep(nap)
    time.sleep(seconds)  # noqa: ASYNC251 - on purpose
    _push_through_faults("finished", f"blocker {time.time()}")


def stamp(tag: str) -> None:
    _push_through_faults("started", f"{tag} {time.time()}")


def sleep_then_mark(path: str) -> None:
    """Sleeps (blocked in C) for the seconds written in ``path + '.seconds'``, then appends a
    line to ``path``: one line per run that completed."""
    time.sleep(float(Path(path + ".seconds").read_text()))
    with open(path, "a") as marker:
        marker.write(f"done by {os.getpid()}\n")
