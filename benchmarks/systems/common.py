"""What every system runner shares: arguments, the completion counter, timing, JSON output.

Standard library only: this module runs inside each peer's own virtualenv.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

Result = dict[str, Any]
Handler = Callable[[argparse.Namespace], Awaitable[Result]]

SINK_KEY = "bench:latency"  # probe tasks RPUSH their measured latency (seconds) here
WARMUP_SAMPLES = 5  # latency probes sent and dropped before the measured ones
DELAYED_WARMUP = 2  # the same for delayed probes (each costs up to a promoter's period)
SAMPLE_GAP = 0.02  # seconds between one probe's completion and the next probe: worker idles
POP_TIMEOUT = 10  # seconds a latency probe may take before the run is declared failed
FILL_CHUNK = 200  # concurrent single enqueues per batch when a system has no bulk API


class Completion:
    """Counts finished no-op tasks in-process and timestamps the first and the latest.

    The no-op tasks call ``hit()``: one C-level ``next()`` on an itertools counter (atomic under
    the GIL, so safe from task threads), one clock read and two comparisons. It costs no Redis
    command, and the same for every system."""

    def __init__(self) -> None:
        self.arm(0, None)

    def arm(self, target: int, on_done: Callable[[], object] | None) -> None:
        self.target = target
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self._on_done = on_done
        self._counter = itertools.count(1)
        # perf_counter -> wall clock (time.time()), for runs timed against a due time.
        self.wall_offset = time.time() - time.perf_counter()

    def hit(self) -> None:
        seen = next(self._counter)
        now = time.perf_counter()
        if seen == 1:
            self.first = now
        if seen > self.seen:
            self.seen = seen
            if seen <= self.target:
                self.last = now
        if seen == self.target and self._on_done is not None:
            self._on_done()

    def result(self, capped: bool = False) -> Result:
        """Tasks per second from the first task to the latest one (the target-th at most):
        (tasks - 1) / elapsed. ``extra``: runs past the target (a task run twice)."""
        seconds = self.last - self.first
        tasks = min(self.seen, self.target)
        return {
            "tasks": tasks,
            "extra": self.seen - tasks,
            "capped": capped,
            "seconds": seconds,
            "rate": (tasks - 1) / seconds if seconds > 0 else 0.0,
            "rss_peak_mb": peak_rss_mb(),
            "first_wall": self.first + self.wall_offset,
            "last_wall": self.last + self.wall_offset,
        }


DONE = Completion()


async def noop() -> None:
    """The async no-op task of the systems that call tasks without a context argument."""
    DONE.hit()


def noop_sync() -> None:
    """The plain-function no-op task, run in a worker thread."""
    DONE.hit()


RESULT = 1  # what the results scenario's tasks return, for the system to store


async def noop_result() -> int:
    """The results scenario's task (systems that call tasks without a context): the no-op's
    count, and a small return value that the system keeps."""
    DONE.hit()
    return RESULT


_FAILED_ONCE: set[int] = set()


def first_try(number: int) -> bool:
    """True the first time task ``number`` runs in this process, False after: the retry
    scenario's tasks fail on their first run and succeed (``DONE.hit()``) on the next. A set
    lookup and insert, the same for every system (safe from threads under the GIL)."""
    if number in _FAILED_ONCE:
        return False
    _FAILED_ONCE.add(number)
    return True


class FirstTryError(Exception):
    """What a retry-scenario task raises on its first run."""


def flaky(number: int) -> None:
    """The retry scenario's task body: fails on its first run, counts on the second."""
    if first_try(number):
        raise FirstTryError(f"task {number}: first try fails")
    DONE.hit()


async def flaky_async(number: int) -> None:
    """``flaky`` as a coroutine, for the systems that call tasks without a context."""
    flaky(number)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rate_result(tasks: int, seconds: float) -> Result:
    return {"tasks": tasks, "seconds": seconds, "rate": tasks / seconds}


def latency_result(lags: Sequence[float]) -> Result:
    """p50 and p99 (nearest rank) of the measured latencies, in milliseconds."""
    ordered = sorted(lags)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
        return ordered[index] * 1000

    return {
        "samples": len(ordered),
        "p50_ms": rank(50),
        "p99_ms": rank(99),
        "max_ms": ordered[-1] * 1000,
        "mean_ms": sum(ordered) / len(ordered) * 1000,
    }


async def timed_rate(tasks: int, body: Callable[[], Awaitable[None]]) -> Result:
    start = time.perf_counter()
    await body()
    return rate_result(tasks, time.perf_counter() - start)


async def one_at_a_time(count: int, enqueue_one: Callable[[], Awaitable[Any]]) -> Result:
    """The rate of ``count`` awaited calls of ``enqueue_one``, one after the other."""

    async def body() -> None:
        for _ in range(count):
            await enqueue_one()

    return await timed_rate(count, body)


async def latency_through(
    send: Callable[[float], Awaitable[Any]],
    blpop: Callable[[list[str], float], Awaitable[Any]],
    samples: int,
    jitter: float = 0.0,
    warmup: int = WARMUP_SAMPLES,
) -> Result:
    """latency_loop, reading each probe's report with ``blpop`` (a client's BLPOP)."""

    async def pop() -> float | None:
        reply = await blpop([SINK_KEY], POP_TIMEOUT)
        return float(reply[1]) if reply else None

    return await latency_loop(send, pop, samples, jitter, warmup)


async def in_chunks(count: int, one: Callable[[], Awaitable[Any]]) -> None:
    """``count`` calls of ``one``, FILL_CHUNK at a time concurrently (filling a queue fast)."""
    for start in range(0, count, FILL_CHUNK):
        await asyncio.gather(*(one() for _ in range(min(FILL_CHUNK, count - start))))


async def drive_worker(run: Callable[[], Awaitable[Any]], args: argparse.Namespace) -> Result:
    """Runs a worker coroutine until ``args.count`` no-op tasks finished (forever with 0), or
    ``args.max_seconds`` after the first one (a capped run); then lets it settle
    ``args.settle`` seconds (the last acknowledgements land) and returns the rate."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    DONE.arm(args.count, lambda: loop.call_soon_threadsafe(finished.set))
    worker = asyncio.ensure_future(run())
    waiter = asyncio.ensure_future(finished.wait())
    deadline = time.perf_counter() + args.timeout
    while not finished.is_set() and not worker.done():
        now = time.perf_counter()
        if now > deadline:
            return {"error": f"timeout after {args.timeout}s", "completed": DONE.seen}
        if DONE.seen and args.max_seconds and now - DONE.first > args.max_seconds:
            return DONE.result(capped=True)
        # Five wake-ups a second at most: a negligible cost, the same for every system.
        await asyncio.wait({worker, waiter}, timeout=0.2, return_when="FIRST_COMPLETED")
    if not finished.is_set():
        return {"error": f"worker ended: {worker.exception()!r}", "completed": DONE.seen}
    await asyncio.sleep(args.settle)
    return DONE.result()


async def latency_loop(
    enqueue: Callable[[float], Awaitable[Any]],
    pop: Callable[[], Awaitable[float | None]],
    samples: int,
    jitter: float = 0.0,
    warmup: int = WARMUP_SAMPLES,
) -> Result:
    """Sends one probe at a time (its argument: time.time() at sending) and waits for the
    latency it reports before sending the next; drops the first ``warmup``.

    ``jitter``: for a worker that polls every ``jitter`` seconds, a random extra pause of up to
    that long between probes, so probes arrive at random points of its polling cycle (a fixed
    pause would lock onto one phase of it)."""
    lags: list[float] = []
    for index in range(warmup + samples):
        await enqueue(time.time())
        lag = await pop()
        if lag is None:
            return {"error": f"probe {index} not run within {POP_TIMEOUT}s"}
        if index >= warmup:
            lags.append(lag)
        await asyncio.sleep(SAMPLE_GAP + random.uniform(0, jitter))
    return latency_result(lags)


COMMANDS = (
    "worker", "fill", "enqueue", "bulk", "latency", "delayed_latency", "fill_due", "ticks"
)  # fmt: skip
TICK_EVERY = 1.0  # seconds between a periodic schedule's runs (the peers' finest common step)


async def collect_ticks(
    blpop: Callable[[list[str], float], Awaitable[Any]], count: int, grid: float | None
) -> Result:
    """Reads ``count`` tick reports (each run's ``time.time()`` at its start) after dropping
    the first. Intervals: how far apart consecutive runs start (TICK_EVERY when exact).
    ``grid``: where the system's ticks are due within each TICK_EVERY (0.0: on the whole
    second), for the lag behind the due tick; None for schedules not on a fixed grid."""
    starts: list[float] = []
    for index in range(count + 1):
        reply = await blpop([SINK_KEY], TICK_EVERY * 3 + 5)
        if not reply:
            return {"error": f"tick {index} not run within {TICK_EVERY * 3 + 5:.0f}s"}
        starts.append(float(reply[1]))
    starts = starts[1:]
    intervals = [b - a for a, b in itertools.pairwise(starts)]
    off = sorted(abs(interval - TICK_EVERY) * 1000 for interval in intervals)
    result: Result = {
        "ticks": len(starts),
        "mean_interval_s": sum(intervals) / len(intervals),
        "drift_ms": abs(sum(intervals) / len(intervals) - TICK_EVERY) * 1000,
        "jitter_p50_ms": off[len(off) // 2],
        "jitter_max_ms": off[-1],
        "skipped_or_doubled": sum(1 for i in intervals if not 0.5 < i / TICK_EVERY < 1.5),
    }
    if grid is not None:
        lags = sorted((start - grid) % TICK_EVERY * 1000 for start in starts)
        result |= {"tick_lag_p50_ms": lags[len(lags) // 2], "tick_lag_max_ms": lags[-1]}
    return result


async def delayed_latency_through(
    send: Callable[[float], Awaitable[Any]],
    blpop: Callable[[list[str], float], Awaitable[Any]],
    args: argparse.Namespace,
    jitter: float = 0.0,
) -> Result:
    """latency_through for tasks enqueued with a delay of ``args.delay`` seconds: ``send(due)``
    enqueues the probe with that delay and the due time (time.time() before the enqueue, plus
    the delay) as its argument, so the probe reports its start minus its due time."""

    async def send_delayed(sent: float) -> None:
        await send(sent + args.delay)

    return await latency_through(send_delayed, blpop, args.count, jitter, DELAYED_WARMUP)


def due_result(count: int, due: float, pending_key: str | None = None) -> Result:
    """fill_due's reply: how many tasks, when they are due, and when the fill ended (after the
    due time: the run is void, as tasks were already running before the last was enqueued).
    ``pending_key``: the sorted set that holds the tasks until they are promoted, if any."""
    result: Result = {"filled": count, "due": due, "fill_end": time.time()}
    return result | ({"pending_key": pending_key} if pending_key else {})


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one benchmark measurement of one system")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--url", required=True, help="Redis URL")
    parser.add_argument("--queue", default="bench", help="queue name")
    parser.add_argument("--count", type=int, default=0, help="tasks (worker: 0 runs forever)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--kind", choices=("async", "sync"), default="async")
    parser.add_argument("--timeout", type=float, default=600, help="worker: give up after (s)")
    parser.add_argument("--settle", type=float, default=0.2, help="worker: wait after the last")
    parser.add_argument(
        "--max-seconds", type=float, default=0, help="worker: stop measuring after (0: never)"
    )
    parser.add_argument(
        "--scenario", choices=("plain", "retry", "results", "periodic"), default="plain",
        help="fill, worker: plain no-op tasks, tasks that fail once then succeed, tasks that"
        " return RESULT with result storage on, or (worker) a schedule that runs a task every"
        " TICK_EVERY seconds",
    )  # fmt: skip
    parser.add_argument("--delay", type=float, default=0.1, help="delayed_latency: seconds")
    parser.add_argument("--due", type=float, default=0, help="fill_due: time.time() all are due")
    return parser.parse_args(argv)


def finish(result: Result) -> None:
    """Prints the result as the last stdout line and exits at once: no library shutdown runs
    (its cost and duration differ per system and are not what is measured)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if "error" not in result else 3)


def main(system: ModuleType, argv: Sequence[str]) -> None:
    """Runs the command: the ``system`` module's function of that name (worker, fill, enqueue,
    bulk, latency); a system without it does not support it."""
    args = parse(argv)
    handler: Handler | None = getattr(system, args.command, None)
    if handler is None:
        finish({"unsupported": args.command})
        return

    async def run() -> None:
        finish(await handler(args))

    asyncio.run(run())
