"""``adelayed verify``: a chaos check anyone can run against their own Redis, on a scratch
queue deleted afterwards. It enqueues tasks (coroutines and threads, plain and enveloped),
runs real worker processes with the given settings, SIGKILLs them at random (starting a new
one each time) and cuts their Redis connections once, then counts every execution one by one
from the tasks' own log (``_verify_tasks``):

- lost: a task that never completed (and is not in the dead-letter list);
- duplicated: a task that completed more than once. Delivery is at least once: a worker
  killed after its task ran but before the release had it, and a sweep gave it to another.
  Such a duplicate is *explained* when the task sat in a killed worker's slot as many times as
  it ran more than once (read from the queue just before each kill); any other is a defect.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as redis

from ._protocol import hash_tag
from ._queue_info import _as_dict
from .queue import Queue
from .task import PyTask, decode_task


@dataclass(frozen=True)
class Plan:
    tasks: int = 2000
    workers: int = 3
    concurrency: int = 10
    kills: int = 5
    keep_alive_interval: float = 15.0
    sweep_interval: float = 60.0
    cut: bool = True


@dataclass
class Verdict:
    queue: str
    tasks: int
    kills: int = 0
    cuts: int = 0  # connections cut
    interrupted: int = 0  # tasks in the slots of killed workers, counted at each kill
    executions: int = 0
    lost: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)  # tag -> extra completions
    unexplained: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexplained


def scratch_name(like: str) -> str:
    """A fresh queue name in the same Cluster slot family as ``like`` (its hash tag)."""
    return f"{hash_tag(like)}adelayed_verify_{secrets.token_hex(4)}"


class _Fleet:
    """The worker processes: started with the user's settings, killed, replaced, stopped."""

    def __init__(self, url: str, name: str, args: list[str], logs: Path) -> None:
        named = _named(url, name)  # the workers' connections, which the cut finds by name
        self._command = [sys.executable, "-m", "adelayed", "--redis-url", named, "-q", name, *args]
        self._env = {**os.environ, "ADELAYED_VERIFY_URL": url}  # the tasks' log: never cut
        self._logs, self._started = logs, 0
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self._started += 1
        with (self._logs / f"worker{self._started}.log").open("wb") as log:
            process = subprocess.Popen(
                self._command, env=self._env, stdout=log, stderr=log, cwd=self._logs
            )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.processes.remove(process)

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def verify(
    queue: Queue, url: str, plan: Plan, worker_args: list[str], progress: Callable[[int], None]
) -> Verdict:
    """Runs the check on ``queue`` (a scratch queue: its keys are deleted at the end)."""
    log_key, verdict, began = (
        queue.name + "_verify_log",
        Verdict(queue.name, plan.tasks),
        time.monotonic(),
    )
    chance = random.Random()
    ids = await _fill(queue, plan, log_key, chance)
    with tempfile.TemporaryDirectory(prefix="adelayed-verify-") as logs:
        fleet = _Fleet(url, queue.name, worker_args, Path(logs))
        try:
            for _ in range(plan.workers):
                fleet.start()
            held = await _chaos(queue, fleet, plan, verdict, chance, ids, log_key, progress)
        finally:
            fleet.stop()
    await _tally(queue, log_key, held, verdict)
    await _clean(queue)
    verdict.seconds = time.monotonic() - began
    return verdict


async def _fill(queue: Queue, plan: Plan, log: str, chance: random.Random) -> dict[str, str]:
    """Enqueues the tasks: even ones plain (delayed's bytes), odd ones with an option (the
    enveloped path); every third one a plain function. Returns enveloped ids -> tags."""
    plain, ids = [], {}
    for i in range(plan.tasks):
        func = "adelayed._verify_tasks:" + ("run_in_thread" if i % 3 == 0 else "run")
        task = PyTask(func, args=(f"t{i}", chance.uniform(0.01, 0.1), log))
        if i % 2 == 0:
            plain.append(task)
        else:
            ids[str((await queue.enqueue(task, timeout=300)).id)] = f"t{i}"
    await queue.enqueue_many(plain)
    return ids


def _named(url: str, name: str) -> str:
    """``url`` with a client name, so the connection cut finds the workers' connections."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


async def _chaos(
    queue: Queue, fleet: _Fleet, plan: Plan, verdict: Verdict, chance: random.Random,
    ids: dict[str, str], log_key: str, progress: Callable[[int], None],
) -> Counter[str]:  # fmt: skip
    """Kills and cuts while the tasks run; returns how often each task sat in a killed slot."""
    held: Counter[str] = Counter()
    deadline = _deadline(queue, plan)
    while True:
        await anyio.sleep(chance.uniform(0.2, 1.0))
        done = await _completed(queue, log_key)
        progress(done)
        if done >= plan.tasks and verdict.kills >= plan.kills:
            return held
        if time.monotonic() > deadline:
            return held
        if verdict.kills < plan.kills:
            await _kill_one(queue, fleet, chance, ids, held)
            verdict.kills += 1
            fleet.start()
            deadline = _deadline(queue, plan)
        if plan.cut and not verdict.cuts and verdict.kills * 2 >= plan.kills:
            verdict.cuts = await _cut(queue)


def _deadline(queue: Queue, plan: Plan) -> float:
    """How long after the last kill every task must have completed (its tasks wait out the
    lease, then a sweep), plus the time the tasks need."""
    recovery = queue.keep_alive_timeout + 2 * plan.sweep_interval + plan.keep_alive_interval
    work = plan.tasks * 0.1 / (plan.workers * plan.concurrency)
    return time.monotonic() + recovery + work + 30


async def _log(queue: Queue, log_key: str) -> list[str]:
    return [entry.decode() for entry in await queue._wire().call("LRANGE", log_key, 0, -1)]


async def _hash(queue: Queue, key: str) -> dict[bytes, bytes]:
    return _as_dict(await queue._wire().call("HGETALL", key))


def _tag(payload: bytes) -> str:
    """The tag of a verify task's payload ('' for anything else)."""
    try:
        task = decode_task(payload)
    except Exception:
        return ""
    return str(task.args[0]) if isinstance(task, PyTask) and task.args else ""


async def _completed(queue: Queue, log_key: str) -> int:
    return len({entry.split(" ")[0] for entry in await _log(queue, log_key) if " done " in entry})


async def _kill_one(
    queue: Queue, fleet: _Fleet, chance: random.Random, ids: dict[str, str], held: Counter[str]
) -> None:
    """SIGKILLs a random worker, first noting the tasks its slots hold."""
    victim = chance.choice(fleet.processes)
    by_pid = {worker.pid: worker.id for worker in await queue.workers()}
    worker_id = by_pid.get(victim.pid)
    if worker_id is not None:
        prefix = (worker_id + ":").encode()
        for slot, payload in (await _hash(queue, queue._processing_key)).items():
            if slot.startswith(prefix):
                held[_tag(payload)] += 1
        for slot, id_ in (await _hash(queue, queue._active_key)).items():
            if slot.startswith(prefix) and id_.decode() in ids:
                held[ids[id_.decode()]] += 1
    fleet.kill(victim)


async def _cut(queue: Queue) -> int:
    """Cuts every connection of the workers (by client name); 0 when the ACL forbids it."""
    try:
        clients = await queue.redis.client_list()
        mine = [c["id"] for c in clients if c.get("name") == queue.name]
        for client_id in mine:
            await queue.redis.client_kill_filter(_id=client_id)
    except redis.ResponseError:
        return 0
    return len(mine)


async def _tally(queue: Queue, log_key: str, held: Counter[str], verdict: Verdict) -> None:
    done = Counter(entry.split(" ")[0] for entry in await _log(queue, log_key) if " done " in entry)
    verdict.executions, verdict.interrupted = sum(done.values()), sum(held.values())
    dead = {_tag(dead_task.payload) for dead_task in await queue.dead_tasks(10_000)} - {""}
    verdict.dead_lettered = len(dead)
    tags = [f"t{i}" for i in range(verdict.tasks)]
    verdict.lost = [tag for tag in tags if done[tag] == 0 and tag not in dead]
    verdict.duplicates = {tag: n - 1 for tag, n in done.items() if n > 1}
    verdict.unexplained = {
        tag: extra for tag, extra in verdict.duplicates.items() if extra > held[tag]
    }


async def _clean(queue: Queue) -> None:
    """Deletes every key of the scratch queue (they all start with its name)."""
    keys: list[Any] = [key async for key in queue.redis.scan_iter(match=queue.name + "*")]
    for start in range(0, len(keys), 500):
        await queue.redis.delete(*keys[start : start + 500])
