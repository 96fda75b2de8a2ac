"""One measurement each: runs a system's runner (``python -m systems NAME ...``) in its own
process and interpreter, against the run's Redis, and returns the JSON it printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .redis_server import Server
from .redis_watch import RedisWatch
from .venvs import BENCH_DIR

Result = dict[str, Any]
QUEUE = "bench"
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


@dataclass(frozen=True)
class Settings:
    tasks: int  # N
    samples: int  # latency probes per repetition
    max_seconds: float  # a throughput run stops measuring this long after its first task
    worker_timeout: float  # a run that has not finished by then failed
    delayed_samples: int = 100  # delayed-task probes per repetition


@dataclass
class Runner:
    """Runs one system's measurements."""

    name: str
    python: Path
    server: Server
    log: Path  # the runners' stderr, appended

    def _args(self, command: str, options: dict[str, Any]) -> list[str]:
        args = [str(self.python), "-m", "systems", self.name, command, "--url", self.server.url]
        args += ["--queue", QUEUE]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        return args

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}

    def call(
        self, command: str, limit: float, prefix: tuple[str, ...] = (), **options: Any
    ) -> Result:
        """Runs one command to its end (``limit``: seconds); its last JSON line is the result."""
        args = [*prefix, *self._args(command, options)]
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
            try:
                done = subprocess.run(
                    args, cwd=BENCH_DIR, env=self._env(), stdout=subprocess.PIPE, stderr=log,
                    text=True, timeout=limit, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return {"error": f"{self.name} {command}: no result within {limit:.0f}s"}
        for line in reversed(done.stdout.strip().splitlines()):  # a profiler may print after it
            if line.startswith("{"):
                return dict(json.loads(line))
        return {"error": f"{self.name} {command}: exit {done.returncode}, see {self.log.name}"}

    def spawn(
        self, command: str, keep_output: bool = False, **options: Any
    ) -> subprocess.Popen[bytes]:
        """Starts a command in the background (``keep_output``: its stdout is a pipe)."""
        args = self._args(command, options)
        stdout = subprocess.PIPE if keep_output else subprocess.DEVNULL
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(args)} &\n")
            log.flush()
            return subprocess.Popen(args, cwd=BENCH_DIR, env=self._env(), stdout=stdout, stderr=log)


def _commands(server: Server, tasks: int) -> Result:
    calls = server.command_calls()
    per_task = {name: count / tasks for name, count in sorted(calls.items())} if tasks else {}
    return {"commands": sum(calls.values()) / tasks if tasks else 0.0, "by_command": per_task}


def enqueue(runner: Runner, settings: Settings) -> Result:
    """N awaited single enqueues from one producer; counts the commands they cost."""
    runner.server.reset()
    result = runner.call("enqueue", limit=600, count=settings.tasks)
    if "error" not in result and "unsupported" not in result:
        result |= _commands(runner.server, settings.tasks)
    return result


def bulk(runner: Runner, settings: Settings) -> Result:
    runner.server.reset()
    return runner.call("bulk", limit=600, count=settings.tasks)


def throughput(
    runner: Runner,
    settings: Settings,
    concurrency: int,
    kind: str,
    prefix: tuple[str, ...] = (),
    scenario: str = "plain",
) -> Result:
    """Pre-fills N no-op tasks, then runs a fresh worker process until all ran (or the time
    cap); counts the commands of the processing (fill excluded: enqueue() counts those).
    ``scenario="retry"``: tasks that fail on their first run and succeed on the second;
    ``scenario="results"``: tasks that return a small value, which the system stores."""
    runner.server.reset()
    extra: dict[str, Any] = {"scenario": scenario} if scenario != "plain" else {}
    filled = runner.call("fill", limit=600, count=settings.tasks, kind=kind, **extra)
    if "error" in filled or "unsupported" in filled:
        return filled
    runner.server.reset_stats()
    result = runner.call(
        "worker",
        limit=settings.worker_timeout + 30,
        prefix=prefix,
        count=settings.tasks,
        concurrency=concurrency,
        kind=kind,
        max_seconds=settings.max_seconds,
        timeout=settings.worker_timeout,
        **extra,
    )
    if "error" not in result and "unsupported" not in result:
        result |= _commands(runner.server, int(result["tasks"]))
    return result


def latency(runner: Runner, settings: Settings, kind: str, delay: float = 0.0) -> Result:
    """An idle worker (concurrency 10) in its own process; the producer sends one probe at a
    time and waits for it (see systems/common.py latency_loop). ``delay``: each probe is
    enqueued with that delay (seconds), and its lag counts from its due time."""
    runner.server.reset()
    worker = runner.spawn("worker", count=0, kind=kind, timeout=3600)
    extra: dict[str, Any] = {"delay": delay} if delay else {}
    command = "delayed_latency" if delay else "latency"
    samples = settings.delayed_samples if delay else settings.samples
    try:
        limit = 120 + samples * (3 + delay)
        return runner.call(command, limit=limit, count=samples, **extra)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()


WORKER_HEAD_START = 2.0  # seconds for a promotion run's worker to start and go idle


def promotion(runner: Runner, settings: Settings, count: int, lead: float) -> Result:
    """``count`` no-op tasks all due at one instant reach an idle worker (concurrency 100)
    that started before them: tasks / (the last one's start - the due time). The due time is
    ``lead`` seconds after the fill starts; a fill that ends after it voids the run. From the
    fill's end to the worker's exit, RedisWatch measures Redis's stalls for another client
    and, where the fill names the sorted set of tasks not yet due, when it emptied: the
    rate at which tasks reached the queue, whatever the worker's pace."""
    runner.server.reset()
    worker = runner.spawn(
        "worker", keep_output=True, count=count, concurrency=100, kind="async",
        timeout=settings.worker_timeout, max_seconds=settings.max_seconds,
    )  # fmt: skip
    try:
        time.sleep(WORKER_HEAD_START)
        due = time.time() + lead
        filled = runner.call("fill_due", limit=600, count=count, due=due)
        if "error" in filled or "unsupported" in filled:
            return filled
        if filled["fill_end"] > due:
            return {"error": f"the fill ended {filled['fill_end'] - due:.2f} s after the due "
                    f"time (lead {lead:.1f} s)", "late": True}  # fmt: skip
        with RedisWatch(runner.server, filled.get("pending_key")) as watch:
            out, _ = worker.communicate(timeout=settings.worker_timeout + 30)
        result = _last_json(out.decode(), runner.name)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    if "error" in result:
        return result
    seconds = result["last_wall"] - due
    result |= {
        "due": due,
        "lead": lead,
        "rate": result["tasks"] / seconds if seconds > 0 else 0.0,
        "first_lag_ms": (result["first_wall"] - due) * 1000,
        "last_lag_ms": seconds * 1000,
    }
    if watch.emptied_at > due:  # all ``count`` tasks had left the system's scheduled set
        result["promoted_rate"] = count / (watch.emptied_at - due)
        result["promoted_ms"] = (watch.emptied_at - due) * 1000
    return result | watch.result()


def _last_json(stdout: str, name: str) -> Result:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"error": f"{name} worker: no result, see {name}.log"}


def periodic(runner: Runner, settings: Settings, ticks: int) -> Result:
    """A worker whose schedule runs a task every second (the system's own API) idles in its
    own process; the producer collects the runs' start times (systems/common.py
    collect_ticks)."""
    runner.server.reset()
    worker = runner.spawn("worker", count=0, kind="async", timeout=3600, scenario="periodic")
    try:
        return runner.call("ticks", limit=60 + ticks * 4, count=ticks)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
