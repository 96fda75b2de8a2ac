"""Deduplication keys: enqueue(task, key=..., key_lifetime=..., debounce=...)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as redis

from adelayed import ConfigurationError, PyTask, Queue
from tests import result_tasks
from tests.helpers import make_worker, running, wait_for

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent


def worker(queue: Queue, **options: Any) -> Any:
    return make_worker(queue, tasks=["tests.result_tasks"], **options)


def echo(value: Any) -> PyTask:
    return PyTask(result_tasks.echo, args=(value,))


async def test_a_key_held_while_its_task_lives_refuses_duplicates(
    client: redis.Redis, queue: Queue
) -> None:
    first = await queue.enqueue(echo(1), key="k", keep_result=60)
    again = await queue.enqueue(echo(2), key="k", keep_result=60)
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert await client.llen("jobs_noti") == 1 and await client.hlen("jobs_jobs") == 1
    async with running(worker(queue)):
        assert await first.result(timeout=5) == 1
        later = await queue.enqueue(echo(3), key="k", keep_result=60)  # its task ended
        assert not later.duplicate and await later.result(timeout=5) == 3
    assert await client.hlen("jobs_keys") == 0  # a freed key takes no space


async def test_a_key_held_while_running_refuses_and_queued_lifetime_frees_at_start(
    queue: Queue,
) -> None:
    running_one = await queue.enqueue(
        PyTask(result_tasks.nap, args=(0.5,)), key="r", keep_result=60
    )
    queued_one = await queue.enqueue(
        PyTask(result_tasks.nap, args=(0.5,)), key="q", key_lifetime="queued", keep_result=60
    )
    async with running(worker(queue)):
        await wait_for(lambda: _both_running(running_one, queued_one), what="both running")
        assert (await queue.enqueue(echo(1), key="r")).duplicate
        second = await queue.enqueue(echo(2), key="q", key_lifetime="queued", keep_result=60)
        assert not second.duplicate  # freed when a worker took the first
        assert await second.result(timeout=5) == 2


async def _both_running(*handles: Any) -> bool:
    return all([(await h.status()).state == "running" for h in handles])


async def test_a_throttle_holds_its_key_for_its_time_whatever_the_task_does(
    queue: Queue,
) -> None:
    first = await queue.enqueue(echo(1), key="t", key_lifetime=0.6, keep_result=60)
    async with running(worker(queue)):
        assert await first.result(timeout=5) == 1
        assert (await queue.enqueue(echo(2), key="t", key_lifetime=0.6)).duplicate
        await anyio.sleep(0.7)
        assert not (await queue.enqueue(echo(3), key="t", key_lifetime=0.6)).duplicate


async def test_debounce_replaces_the_waiting_tasks_arguments_and_due_time(
    client: redis.Redis, queue: Queue
) -> None:
    first = await queue.enqueue(echo("old"), key="d", debounce=True, delay=30, keep_result=60)
    second = await queue.enqueue(echo("new"), key="d", debounce=True, delay=0.2, keep_result=60)
    assert not second.duplicate and second.id != first.id
    assert await client.zcard("jobs_scheduled") == 1 and await client.hlen("jobs_jobs") == 1
    async with running(worker(queue)):
        assert await second.result(timeout=5) == "new"
    assert (await first.status()).state == "unknown"  # replaced: it never runs


async def test_a_key_whose_task_is_gone_holds_nothing(client: redis.Redis, queue: Queue) -> None:
    """A task a sweep dead-lettered (its workers kept dying) or that was aborted leaves its
    key's field behind; a held key counts only while its task is stored."""
    first = await queue.enqueue(echo(1), key="gone", delay=60)
    await client.hdel("jobs_jobs", str(first.id))  # as if dead-lettered by a sweep
    assert not (await queue.enqueue(echo(2), key="gone")).duplicate


async def test_key_options_are_checked(queue: Queue) -> None:
    with pytest.raises(ConfigurationError, match="need a key"):
        await queue.enqueue(echo(1), debounce=True)
    with pytest.raises(ConfigurationError, match="'running', 'queued' or seconds"):
        await queue.enqueue(echo(1), key="x", key_lifetime="forever")
    with pytest.raises(ConfigurationError, match="non-empty str"):
        await queue.enqueue(echo(1), key="")


def _producer(url: str, start_at: float, number: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.dedup_producer", url, str(start_at), str(number)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


async def test_fifty_producer_processes_racing_on_one_key_enqueue_one_task(
    client: redis.Redis, queue: Queue, redis_server: Any
) -> None:
    start_at = time.time() + 3  # after every process started and connected
    producers = [_producer(redis_server.url, start_at, i) for i in range(50)]
    lines = [p.communicate(timeout=30)[0].split() for p in producers]
    assert all(p.returncode == 0 for p in producers)
    outcomes = sorted(line[0] for line in lines)
    assert outcomes == ["added"] + ["duplicate"] * 49
    assert len({line[1] for line in lines}) == 1  # every handle is the holder's
    handle = queue.get(lines[0][1])
    async with running(worker(queue)):
        value = await handle.result(timeout=5)
        await anyio.sleep(0.3)
    assert isinstance(value, int) and await client.llen("jobs_noti") == 0
    assert await client.hlen("jobs_jobs") == 0  # exactly one task ran; nothing else waits
