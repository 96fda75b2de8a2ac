"""Tasks and processes for tests/test_scheduled_faults.py: worker processes (adelayed's CLI
worker, optionally under Debian's ``faketime`` so its wall clock is off) whose tasks record each
run in Redis (``$ADELAYED_TEST_REDIS_URL``, which may differ from the worker's own URL: a worker
behind a proxy records straight to the server).

Records: ``runs`` (a list) gets one item per run of ``mark``/``mark_sync`` (the tag) and per
finished run of ``hang_first``/``fail_once``, and ``by`` (a hash) the pid of the process that
ran each tag (the last one); ``attempts:<tag>`` counts the runs of ``fail_once`` and
``fail_always``; ``stamps`` gets ``"<tag> <Redis ms> <wall ms>"``
per run of ``stamp`` (Redis's time and the worker's own clock, both when the task ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parent.parent
RUNS = "runs"
BY = "by"
STAMPS = "stamps"
STARTS = "starts"
HOLD = "ADELAYED_TEST_HOLD"

_STAMP = """
local t = redis.call('time')
redis.call('rpush', KEYS[1], ARGV[1] .. ' ' .. (t[1] * 1000 + math.floor(t[2] / 1000)) .. ' ' ..
    ARGV[2])
"""

_clients: dict[tuple[int, int], aredis.Redis] = {}


def _client() -> aredis.Redis:
    """One asyncio client per worker process and event loop (tasks run in worker processes)."""
    key = (os.getpid(), id(asyncio.get_running_loop()))
    if key not in _clients:
        _clients[key] = aredis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"])
    return _clients[key]


def _sync_client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"])


_RUN = "redis.call('rpush', KEYS[1], ARGV[1]) redis.call('hset', KEYS[2], ARGV[1], ARGV[2])"


async def mark(tag: str) -> None:
    """Records one run of ``tag`` in ``runs`` (and this process in ``by``); in a worker started
    with ``holding=True``, hangs instead (until its worker is killed)."""
    if os.environ.get(HOLD):
        await asyncio.sleep(3600)
    await _client().eval(_RUN, 2, RUNS, BY, tag, os.getpid())


def mark_sync(tag: str, seconds: float = 0.0) -> None:
    """As ``mark``, a plain function (delayed 1.2's worker runs only those), after a nap."""
    time.sleep(seconds)
    with _sync_client() as conn:
        conn.eval(_RUN, 2, RUNS, BY, tag, os.getpid())


async def stamp(tag: str) -> None:
    """Records ``tag``, Redis's time and this process's wall clock (ms) in ``stamps``."""
    await _client().eval(_STAMP, 1, STAMPS, tag, str(int(time.time() * 1000)))


def fail_once(tag: str) -> None:
    """Fails its first run (counted in Redis across processes), records the next in ``runs``."""
    with _sync_client() as conn:
        if conn.incr(f"attempts:{tag}") == 1:
            raise RuntimeError(f"{tag}: planned first failure")
        conn.eval(_RUN, 2, RUNS, BY, tag, os.getpid())


def fail_always(tag: str) -> None:
    """Fails every run (counted in ``attempts:<tag>``)."""
    with _sync_client() as conn:
        conn.incr(f"attempts:{tag}")
    raise RuntimeError(f"{tag}: planned failure")


async def hang_first(tag: str) -> None:
    """Records its start in ``starts``; the first run of ``tag`` then hangs (until its worker is
    killed), a later one records itself in ``runs``."""
    conn = _client()
    await conn.rpush(STARTS, tag)
    if await conn.incr(f"starts:{tag}") == 1:
        await asyncio.sleep(3600)
    await conn.eval(_RUN, 2, RUNS, BY, tag, os.getpid())


# Debian's libfaketime, preloaded directly rather than through the ``faketime`` wrapper: the
# wrapper keeps a named semaphore per pid that a SIGKILLed wrapper leaves behind, and a later
# wrapper given the same pid fails ("sem_open: File exists").
_LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)


def environment(record_url: str, skew: str | None = None, holding: bool = False) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADELAYED_TEST_REDIS_URL": record_url,
        "PYTHONUNBUFFERED": "1",
    }
    if skew is not None:
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"  # asyncio's clock stays true: only wall time
        if _LIBFAKETIME is not None:
            env["LD_PRELOAD"], env["FAKETIME"] = _LIBFAKETIME, skew
    if holding:
        env[HOLD] = "1"
    return env


def command(args: list[str], skew: str | None = None) -> list[str]:
    """``args`` under ``faketime -f SKEW`` (e.g. ``+1h``: the process's wall clock is an hour
    ahead, and ticks normally) where libfaketime cannot be preloaded directly (see
    ``environment``), or as they are."""
    if skew is None or _LIBFAKETIME is not None:
        return args
    return ["faketime", "-f", skew, *args]


def spawn(
    args: list[str], record_url: str, log: Path, skew: str | None = None, holding: bool = False
) -> subprocess.Popen[bytes]:
    """Starts ``args`` in a process group of its own: ``faketime`` runs the program as its
    child, so ``stop`` signals the whole group."""
    with log.open("ab") as output:
        return subprocess.Popen(
            command(args, skew), cwd=ROOT, env=environment(record_url, skew, holding),
            stdout=output, stderr=output, start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 30) -> None:
    """Sends ``sig`` to the process group of a process ``spawn`` started, and waits until no
    process of the group runs (the process, and faketime's child if any: once its parent is
    gone, a dead child is a zombie until init reaps it, and counts as gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    deadline = time.monotonic() + timeout
    while process.poll() is None or _running_in_group(process.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"process group {process.pid} still runs {timeout}s after {sig}")
        time.sleep(0.02)


def _running_in_group(group: int) -> bool:
    """Whether a process of process group ``group`` runs (is not a zombie), by /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def cli_worker(
    url: str,
    log: Path,
    *,
    record_url: str | None = None,
    skew: str | None = None,
    queue: str = "jobs",
    higher: tuple[str, ...] = (),
    concurrency: int = 10,
    keep_alive_timeout: float = 2,
    keep_alive_interval: float = 0.5,
    sweep_interval: float = 0,
    log_level: str = "DEBUG",
    holding: bool = False,
) -> subprocess.Popen[bytes]:
    """adelayed's CLI worker on ``url`` serving this module's tasks (no embedded sweeper unless
    ``sweep_interval``; ``higher``: queues it serves before ``queue``; ``holding``: its
    ``mark`` tasks hang, never record a run)."""
    return spawn(
        [
            sys.executable, "-m", "adelayed", "--url", url,
            *[option for name in (*higher, queue) for option in ("-q", name)],
            "--keep-alive-timeout", str(keep_alive_timeout), "--log-level", log_level,
            "worker", "tests.scheduled_fleet", "--concurrency", str(concurrency),
            "--keep-alive-interval", str(keep_alive_interval),
            "--sweep-interval", str(sweep_interval), "--grace-period", "5",
        ],
        record_url or url,
        log,
        skew,
        holding,
    )  # fmt: skip


def started(log: Path) -> bool:
    """Whether the worker logging to ``log`` has started serving."""
    return log.exists() and re.search(" started on queues? ", log.read_text()) is not None


async def fenced(tag: str) -> str:
    """Records each start as ``<pid>:<attempt>`` in ``fenced:<tag>``. Its first attempt waits
    for the key ``go:<tag>`` and then fails (a late retry); later ones return
    ``<pid>:<attempt>``."""
    from adelayed import current_task

    attempt, conn = current_task().attempt, _client()
    await conn.rpush(f"fenced:{tag}", f"{os.getpid()}:{attempt}")
    if attempt > 1:
        return f"{os.getpid()}:{attempt}"
    while not await conn.exists(f"go:{tag}"):  # noqa: ASYNC110 - another process sets it
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{tag}: the stale first attempt fails, late")
