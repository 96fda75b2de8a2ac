"""Interop with the real go-delayed (its source at its repository's HEAD, dependencies at the
versions its go.mod pins, vendored in ../shared/peers/go-delayed): tasks cross both ways, and
each side's sweeper recovers the other side's killed workers' tasks."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aredis

from adelayed import GoTask, PyTask, Queue, decode_task
from adelayed.embedded import EmbeddedRedis
from tests import go_peer, processes, tasks
from tests.go_peer import GoPeer
from tests.helpers import make_worker, running, texts, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
def gopeer_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = go_peer.unavailable()
    if reason is not None:
        pytest.skip(f"go-delayed interop not tested: {reason}")
    return go_peer.build(tmp_path_factory.mktemp("gopeer"))


@pytest.fixture
def go(gopeer_binary: Path, redis_server: EmbeddedRedis) -> GoPeer:
    return GoPeer(gopeer_binary, redis_server.url)


@pytest.fixture
def go_worker(go: GoPeer, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A go-delayed worker on queue ``jobs``: yields (its record of runs, its log)."""
    out, log = tmp_path / "runs.txt", tmp_path / "go-worker.log"
    worker = go.worker("jobs", out, log)
    yield out, log
    processes.stop(worker, signal.SIGKILL)
    print(log.read_text()[-3000:])


# Values sent as the one argument of main.Echo: each must reach go-delayed intact. nil only
# inside a container: go-delayed reuses a handler's argument between tasks, and a nil argument
# leaves the previous task's value in place (test_go_delayed_keeps_the_last_value_for_nil).
ECHOED = [
    0, 1, -1, 127, 128, -33, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**64 - 1,
    1.5, -0.25, 1e300, True, False, [None], "", "text ü ✓", b"", b"\x00\xff bytes",
    [], [1, [2, [3, "x"]]], {"a": {"b": [1, 2]}, "c": None, "d": b"\x01"},
]  # fmt: skip


async def test_go_delayed_writes_what_adelayed_writes(go: GoPeer) -> None:
    ping, add = go.go_tasks()
    assert GoTask("main.Ping").serialize() == ping  # 92 a9 'main.Ping' c4 01 c0
    assert GoTask("main.Add", (1, 2)).serialize() == add
    assert ping.hex() == "92a96d61696e2e50696e67c401c0"


async def test_adelayed_go_tasks_run_on_go_delayed_worker_with_arguments_intact(
    client: aredis.Redis, queue: Queue, go_worker: tuple[Path, Path]
) -> None:
    out, _ = go_worker
    await queue.enqueue(GoTask("main.Ping"))
    await queue.enqueue(GoTask("main.Add", (40, 2)))
    await queue.enqueue_many(GoTask("main.Echo", value) for value in ECHOED)
    expected = 2 + len(ECHOED)
    await wait_for(lambda: len(go_peer.runs(out)) >= expected, what="go-delayed ran every task")
    ran = go_peer.runs(out)
    assert ran[:2] == [("Ping", None), ("Add", 42)]
    assert [value for _, value in ran[2:]] == [
        list(v) if isinstance(v, tuple) else v for v in ECHOED
    ]
    assert await client.llen("jobs") == 0
    assert await client.llen("jobs_noti") == 0


async def test_go_delayed_keeps_the_last_value_for_nil(
    queue: Queue, go_worker: tuple[Path, Path]
) -> None:
    """What a mixed fleet must know: a Go handler given nil (GoTask(path) or GoTask(path,
    None)) sees the argument of the task it ran before, as go-delayed's own tasks do."""
    out, _ = go_worker
    await queue.enqueue_many([GoTask("main.Echo", "before"), GoTask("main.Echo", None)])
    await wait_for(lambda: len(go_peer.runs(out)) == 2, what="go-delayed ran both tasks")
    assert go_peer.runs(out) == [("Echo", "before"), ("Echo", "before")]


async def test_go_delayed_py_tasks_run_on_adelayed_worker(queue: Queue, go: GoPeer) -> None:
    go.enqueue_py_task("jobs", "tests.tasks:sync_record", ["positional"], None)
    go.enqueue_py_task("jobs", "tests.tasks:async_record", None, {"value": {"k": [1, -2, 2.5]}})
    go.enqueue_py_task("jobs", "tests.tasks:sync_record", [2**63 - 1], {})
    async with running(make_worker(queue)):
        await wait_for(lambda: len(tasks.ran) == 3, what="3 go-delayed PyTasks run")
    assert sorted(map(repr, tasks.ran)) == sorted(
        map(repr, ["positional", {"k": [1, -2, 2.5]}, 2**63 - 1])
    )
    assert await queue.len() == 0
    assert await queue.in_flight() == 0
    assert await queue.dead_tasks() == []


async def test_go_delayed_sweeper_requeues_a_killed_adelayed_worker_tasks_only(
    client: aredis.Redis, go: GoPeer, redis_server: EmbeddedRedis, queue: Queue, tmp_path: Path
) -> None:
    await queue.enqueue_many(PyTask("tests.tasks:record_run", args=(f"t{i}", 5)) for i in range(2))
    first = processes.adelayed_worker(redis_server.url, tmp_path / "first.log", concurrency=2)
    try:
        await wait_for(lambda: has(client, "started", 2), what="both tasks started")
        assert go.sweep("jobs") == 0  # a live worker's tasks stay put...
        await anyio.sleep(2.5)  # ...past its keep_alive_timeout (2 s): its lease is refreshed
        assert go.sweep("jobs") == 0
        assert await client.hlen("jobs_processing") == 2
    finally:
        processes.stop(first, signal.SIGKILL)
    await wait_for(lambda: requeued_by(go, 2), timeout=10, what="go sweeper requeued 2 tasks")
    second = processes.adelayed_worker(redis_server.url, tmp_path / "second.log", concurrency=2)
    try:
        await wait_for(lambda: has(client, "finished", 2), timeout=20, what="both tasks finished")
    finally:
        processes.stop(second, signal.SIGTERM)
    assert sorted(await listed(client, "finished")) == ["t0", "t1"]


async def test_adelayed_sweeper_requeues_a_killed_go_delayed_worker_task(
    client: aredis.Redis, queue: Queue, go: GoPeer, tmp_path: Path
) -> None:
    out = tmp_path / "runs.txt"
    first = go.worker("jobs", out, tmp_path / "first.log")
    try:
        await queue.enqueue(GoTask("main.Sleep", 3.0))
        await wait_for(lambda: in_flight(client, 1), what="go-delayed took the task")
    finally:
        processes.stop(first, signal.SIGKILL)
    assert go_peer.runs(out) == []
    # go-delayed's liveness key lives 5 s (KeepAliveTimeout in the peer) after its last refresh.
    await wait_for(lambda: swept(queue), timeout=10, what="adelayed's sweep requeued it")
    assert await queue.len() == 1
    second = go.worker("jobs", out, tmp_path / "second.log")
    try:
        await wait_for(lambda: len(go_peer.runs(out)) == 1, timeout=15, what="the task ran")
    finally:
        processes.stop(second, signal.SIGKILL)
    assert go_peer.runs(out) == [("Sleep", 3.0)]


async def test_go_delayed_runs_its_last_task_again_after_it_exits(
    client: aredis.Redis, queue: Queue, go: GoPeer, tmp_path: Path
) -> None:
    """What a mixed fleet must know: go-delayed never releases the task it ran last, so each
    of its exits, even a clean one (SIGHUP), has a sweep run that task once more."""
    out = tmp_path / "runs.txt"
    first = go.worker("jobs", out, tmp_path / "first.log")
    await queue.enqueue(GoTask("main.Echo", "last"))
    await wait_for(lambda: len(go_peer.runs(out)) == 1, what="the task ran")
    assert processes.stop(first, signal.SIGHUP) == 0
    assert await client.hlen("jobs_processing") == 1  # left behind by a clean exit
    # Its keep-alive goroutine may set the liveness key again after the exit's DEL, so the
    # sweep can requeue the task only once that key expires (5 s later, in the peer).
    await wait_for(lambda: swept(queue), timeout=10, what="a sweep requeued the last task")
    second = go.worker("jobs", out, tmp_path / "second.log")
    try:
        await wait_for(lambda: len(go_peer.runs(out)) == 2, what="the task ran again")
    finally:
        processes.stop(second, signal.SIGKILL)
    assert go_peer.runs(out) == [("Echo", "last"), ("Echo", "last")]


async def test_a_py_task_that_reaches_a_go_delayed_worker_is_lost(
    client: aredis.Redis, queue: Queue, go_worker: tuple[Path, Path]
) -> None:
    """What a mixed fleet must know: go-delayed stores a task in NAME_processing before it
    decodes it; a PyTask fails to decode, and the next task overwrites that entry. One queue
    per runtime."""
    out, log = go_worker
    python_task = PyTask("tests.tasks:sync_record", args=("lost",))
    await queue.enqueue(python_task)
    await wait_for(lambda: "Failed to deserialize task" in log.read_text(), what="decode error")
    assert await client.hvals("jobs_processing") == [python_task.serialize()]
    await queue.enqueue(GoTask("main.Echo", "next"))
    await wait_for(lambda: len(go_peer.runs(out)) == 1, what="the next task ran")
    assert await client.hvals("jobs_processing") == [GoTask("main.Echo", "next").serialize()]
    assert await client.llen("jobs") == 0  # the PyTask is nowhere now


async def test_adelayed_sweep_removes_a_phantom_token_before_go_delayed_chokes_on_it(
    client: aredis.Redis, queue: Queue, go: GoPeer, tmp_path: Path
) -> None:
    """go-delayed's dequeue script fails on a token with no task behind it (it sees LPOP's
    false and HSETs it). adelayed's sweep trims tokens down to the tasks they stand for."""
    await client.rpush("jobs_noti", 1, 1)  # two tokens, no task: as a crashed v1 producer leaves
    await queue.requeue_lost()
    assert await client.llen("jobs_noti") == 0
    out, log = tmp_path / "runs.txt", tmp_path / "go.log"
    worker = go.worker("jobs", out, log)
    try:
        await queue.enqueue(GoTask("main.Echo", 1))
        await wait_for(lambda: len(go_peer.runs(out)) == 1, what="the task ran")
    finally:
        processes.stop(worker, signal.SIGKILL)
    assert "Failed to dequeue" not in log.read_text()


async def test_go_delayed_fails_on_a_phantom_token(
    client: aredis.Redis, go: GoPeer, tmp_path: Path
) -> None:
    """The hazard the previous test guards against, shown on go-delayed itself."""
    await client.rpush("jobs_noti", 1)
    log = tmp_path / "go.log"
    worker = go.worker("jobs", tmp_path / "runs.txt", log)
    try:
        await wait_for(lambda: "Failed to dequeue" in log.read_text(), what="go-delayed failed")
    finally:
        processes.stop(worker, signal.SIGKILL)


def test_every_go_task_shape_decodes() -> None:
    """delayed 1.2's bare string and each array shape go-delayed reads or writes."""
    for shape in ("a96d61696e2e50696e67", "91a96d61696e2e50696e67", "92a96d61696e2e50696e67c0",
                  "92a96d61696e2e50696e67c401c0", "92a96d61696e2e50696e67c40190"):  # fmt: skip
        task = decode_task(bytes.fromhex(shape))
        assert isinstance(task, GoTask) and task.func_path == "main.Ping", shape


async def has(client: aredis.Redis, key: str, count: int) -> bool:
    return int(await client.llen(key)) >= count


async def in_flight(client: aredis.Redis, count: int) -> bool:
    return int(await client.hlen("jobs_processing")) >= count


async def listed(client: aredis.Redis, key: str) -> list[str]:
    return texts(await client.lrange(key, 0, -1))


async def swept(queue: Queue) -> bool:
    return await queue.requeue_lost() == 1


def requeued_by(go: GoPeer, count: int) -> bool:
    return go.sweep("jobs") == count


async def test_tasks_with_options_run_once_on_adelayed_beside_a_go_delayed_worker(
    client: aredis.Redis, go: GoPeer, go_worker: tuple[Path, Path]
) -> None:
    """go-delayed reads only NAME, NAME_noti and NAME_processing: a task with options waits in
    keys it never reads; it may take such a task's token (its dequeue then finds NAME empty,
    fails and backs off), and adelayed's worker still takes the task without it."""
    out, _ = go_worker
    queue = Queue("jobs", client, dequeue_timeout=0.2)
    for i in range(20):  # first, so that go-delayed's back-off (after a stolen token) is moot
        await queue.enqueue(GoTask("main.Echo", i))
    await wait_for(lambda: len(go_peer.runs(out)) == 20, timeout=20, what="every Go task")
    for i in range(20):
        await queue.enqueue(PyTask(tasks.async_record, args=(f"opt{i}",)), delay=0.2, timeout=5)
    async with running(make_worker(queue)):
        await wait_for(lambda: len(tasks.ran) == 20, timeout=20, what="every task with options")
        await anyio.sleep(0.5)
    assert sorted(map(str, tasks.ran)) == sorted(f"opt{i}" for i in range(20))  # each once
    assert sorted(int(str(arg)) for _, arg in go_peer.runs(out)) == list(range(20))
    for key in ("jobs_scheduled", "jobs_ready", "jobs_active", "jobs_jobs"):
        assert not await client.exists(key), key


async def test_the_go_tasks_example_hands_each_task_to_go_delayed_once(
    client: aredis.Redis, go: GoPeer, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    out, log = tmp_path / "runs.txt", tmp_path / "go-worker.log"
    worker = go.worker("go_jobs", out, log)
    try:
        env = {**os.environ, "ADELAYED_REDIS_URL": redis_server.url}
        sent = await anyio.run_process(
            [sys.executable, "-m", "examples.go_tasks", "200"], env=env, check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        assert sent.returncode == 0 and b"enqueued 201 Go task(s)" in sent.stdout, sent.stderr
        await wait_for(lambda: len(go_peer.runs(out)) >= 201, what="go-delayed ran them all")
    finally:
        processes.stop(worker, signal.SIGKILL)
    ran = go_peer.runs(out)
    assert sorted(int(str(v)) for name, v in ran if name == "Add") == [2 * i for i in range(200)]
    assert [value for name, value in ran if name == "Echo"] == [
        {"from": "python", "sizes": [1, 2, 3]}
    ]
    assert await client.llen("go_jobs") == 0 and await client.llen("go_jobs_noti") == 0
