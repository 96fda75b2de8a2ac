"""The operator's commands, each run as a real process against the test Redis: ``info``,
``task``, ``enqueue``, ``dead list|show|requeue|purge``; and what ``worker`` takes from its
modules and options (schedules, hooks, ``--reload``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed._protocol.dead import MOVE_DEAD_RECORDS
from adelayed.embedded import EmbeddedRedis
from tests.helpers import command, make_worker, running, texts, wait_for
from tests.test_cli import Command, free_port, project  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(120)


class Ran:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code, self.out, self.err = done.returncode, done.stdout, done.stderr

    def json(self) -> Any:
        return json.loads(self.out)


def adelayed(url: str, *args: str, cwd: Path | None = None, stdin: str = "") -> Ran:
    """One run of the command, with the Redis URL from $ADELAYED_REDIS_URL, as a user sets it."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(ADELAYED_REDIS_URL=url, COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "adelayed", *args], capture_output=True, text=True, env=env,
        cwd=cwd or os.getcwd(), timeout=60, input=stdin,
    )  # fmt: skip
    return Ran(done)


def dead_record(func_path: str, reason: str) -> bytes:
    """A dead-letter record as BURY writes it (adelayed._protocol.v1.DEAD_RECORD)."""
    payload = PyTask(func_path, args=(reason,)).serialize()
    record = {"payload": payload, "reason": reason, "worker": "w",
              "failed_at": time.time()}  # fmt: skip
    return bytes(msgpack.packb(record, use_bin_type=False))


# info ----------------------------------------------------------------------------------------


async def test_info_counts_each_state_and_the_workers_and_what_they_did(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis
) -> None:
    await queue.enqueue_many([PyTask("tests.tasks:async_record", args=(i,)) for i in range(3)])
    await queue.enqueue(PyTask("tests.tasks:async_record", args=("later",)), delay=3600)
    await client.lpush("jobs_dead", dead_record("app:gone", "ImportError: gone"))
    [before] = adelayed(redis_server.url, "-q", "jobs", "info", "--json").json()
    assert (before["queued"], before["scheduled"], before["dead"]) == (3, 1, 1)
    assert (before["in_flight"], before["live_workers"], before["tokens"]) == (0, 0, 3)
    assert before["earliest_due"] is not None
    await queue.enqueue(PyTask("tests.tasks:fail_until", args=("k", 99)))  # fails: no retry
    async with running(make_worker(queue, keep_alive_interval=0.2)):
        await wait_for(lambda: _done_counted(queue, 3), what="the counts sent at a refresh")
        during = adelayed(redis_server.url, "-q", "jobs", "info", "--json").json()
        assert during[0]["live_workers"] == 1 and during[0]["queued"] == 0
        table = adelayed(redis_server.url, "info", "-q", "jobs", "--minutes", "2")
        assert table.code == 0 and "jobs" in table.out and "workers" in table.out, table.err
        [worker] = await queue.workers()
        assert worker.alive and worker.concurrency == 10 and worker.pid == os.getpid()
        assert abs(worker.clock_skew) < 1
    info = await queue.info()
    assert sum(m.done for m in info.minutes) == 3 and sum(m.failed for m in info.minutes) == 1
    assert info.live_workers == 0 and await queue.workers() == []  # a clean stop withdraws


async def _done_counted(queue: Queue, wanted: int) -> bool:
    info = await queue.info()
    return sum(m.done for m in info.minutes) == wanted and info.live_workers == 1


def test_info_watch_refreshes_until_interrupted(redis_server: EmbeddedRedis) -> None:
    env = {**os.environ, "ADELAYED_REDIS_URL": redis_server.url, "COLUMNS": "200"}
    watching = subprocess.Popen(
        [sys.executable, "-m", "adelayed", "info", "--watch", "0.1"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.5)
    watching.send_signal(signal.SIGINT)
    out, _ = watching.communicate(timeout=10)
    assert watching.returncode == 130
    assert b"default" in out


# task and enqueue ----------------------------------------------------------------------------


async def test_task_shows_a_result_an_error_and_exit_code_3_for_an_unknown_id(
    queue: Queue, redis_server: EmbeddedRedis
) -> None:
    done = await queue.enqueue(PyTask("tests.result_tasks:echo", args=("ab",)), keep_result=60)
    failed = await queue.enqueue(PyTask("tests.tasks:fail_timed", args=("x",)), keep_result=60)
    waiting = adelayed(redis_server.url, "task", str(done.id), "-q", "jobs", "--json")
    assert waiting.code == 0 and waiting.json()["state"] == "queued"
    async with running(make_worker(queue, tasks=["tests.tasks", "tests.result_tasks"])):
        await wait_for(lambda: _ended(queue, str(failed.id)), what="both tasks")
    shown = adelayed(redis_server.url, "-q", "jobs", "task", str(done.id))
    assert shown.code == 0 and "state: done" in shown.out and "result:" in shown.out, shown.out
    error = adelayed(redis_server.url, "-q", "jobs", "task", str(failed.id), "--json").json()
    assert error["state"] == "failed" and "Traceback" in error["traceback"]
    unknown = adelayed(redis_server.url, "-q", "jobs", "task", "0" * 32)
    assert unknown.code == 3 and "knows no task" in unknown.err


async def _ended(queue: Queue, id_: str) -> bool:
    return (await queue.get(id_).status()).state == "failed"


async def test_enqueue_takes_json_arguments_and_options_and_refuses_bad_json(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis
) -> None:
    plain = adelayed(redis_server.url, "-q", "jobs", "enqueue", "tests.tasks:async_record",
                     "--args", '["hello"]')  # fmt: skip
    assert plain.code == 0 and "no id" in plain.out
    later = adelayed(
        redis_server.url, "-q", "jobs", "enqueue", "tests.tasks:async_record",
        "--kwargs", '{"value": 1}', "--delay", "60", "--keep-result", "30",
    )  # fmt: skip
    id_ = later.out.strip()
    assert later.code == 0 and len(id_) == 32, later.err
    assert (await queue.get(id_).status()).state == "scheduled"
    assert await queue.len() == 1 and await queue.scheduled() == 1
    bad = adelayed(redis_server.url, "enqueue", "tests.tasks:async_record", "--args", "[1,")
    assert bad.code == 2 and "not JSON" in bad.err and "Traceback" not in bad.err
    wrong = adelayed(redis_server.url, "enqueue", "tests.tasks:async_record", "--args", "{}")
    assert wrong.code == 2 and "JSON array" in wrong.err


# dead ----------------------------------------------------------------------------------------


async def test_dead_list_show_requeue_and_purge_by_function_and_reason(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis
) -> None:
    records = [dead_record("app.a:one", "ValueError: bad input"),
               dead_record("app.b:two", "ImportError: gone"),
               dead_record("app.a:one", "ImportError: gone")]  # fmt: skip
    await client.lpush("jobs_dead", *records)  # newest first: the last one is #0
    url = redis_server.url
    listed = adelayed(url, "-q", "jobs", "dead", "list", "--json").json()
    assert [d["function"] for d in listed] == ["app.a:one", "app.b:two", "app.a:one"]
    only = adelayed(url, "dead", "list", "-q", "jobs", "--json", "--function", "app.a:one",
                    "--reason", "ImportError").json()  # fmt: skip
    assert [d["#"] for d in only] == [0]
    shown = adelayed(url, "-q", "jobs", "dead", "show", "1")
    assert shown.code == 0 and "app.b:two" in shown.out and "ImportError: gone" in shown.out
    assert adelayed(url, "-q", "jobs", "dead", "show", "7").code == 3
    requeued = adelayed(url, "-q", "jobs", "dead", "requeue", "--function", "app.a:one")
    assert requeued.code == 0 and "requeued 2 dead letter(s)" in requeued.out, requeued.err
    assert await client.llen("jobs") == 2 and await client.llen("jobs_noti") == 2
    assert await queue.dead_tasks() == [await _only_dead(queue)]
    refused = adelayed(url, "-q", "jobs", "dead", "purge", stdin="n\n")
    assert refused.code == 130 or refused.code == 1, refused.err
    assert await client.llen("jobs_dead") == 1
    purged = adelayed(url, "-q", "jobs", "dead", "purge", "--yes", "--reason", "ImportError")
    assert purged.code == 0 and "purged 1" in purged.out
    assert await client.llen("jobs_dead") == 0


async def _only_dead(queue: Queue) -> object:
    [only] = await queue.dead_tasks()
    assert b"app.b:two" in only.payload
    return only


async def test_requeueing_thousands_of_dead_letters_shows_progress_and_loses_none(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis
) -> None:
    big = Queue("big", client, dead_letter_limit=100_000)
    await client.lpush("big_dead", *[dead_record("app.a:one", f"e{i}") for i in range(5000)])
    await client.lpush("big_dead", *[dead_record("app.b:two", f"e{i}") for i in range(500)])
    ran = adelayed(redis_server.url, "-q", "big", "dead", "requeue", "--function", "app.a:one")
    assert ran.code == 0 and "requeued 5,000" in ran.out, ran.err
    assert "5000/5000" in ran.err  # the progress bar's last state
    assert await client.llen("big") == 5000 and await client.llen("big_noti") == 5000
    assert len(await big.dead_tasks(10_000)) == 500
    everything = adelayed(redis_server.url, "-q", "big", "dead", "requeue")
    assert everything.code == 0 and "requeued 500" in everything.out
    assert await client.llen("big") == 5500 and await client.llen("big_dead") == 0


# worker: schedules and hooks from the command line -------------------------------------------

SCHEDULED = """
import os
from datetime import timedelta

import redis

from adelayed import Every, PyTask


def tick():
    with redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"]) as client:
        client.rpush("ticks", "1")


def opened(state):
    with redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"]) as client:
        client.rpush("hooks", "startup")


every_second = Every(timedelta(seconds=1), PyTask(tick))
"""


async def test_the_worker_runs_its_modules_schedules_and_the_hooks_it_is_given(
    client: redis.Redis,
    redis_server: EmbeddedRedis,
    project: Path,  # noqa: F811
) -> None:
    (project / "app" / "periodic.py").write_text(SCHEDULED)
    args = ["--url", redis_server.url, "worker", "app.periodic", "--sweep-interval", "0",
            "--on-startup", "app.periodic:opened"]  # fmt: skip
    worker = Command(project, redis_server.url, args)
    await wait_for(lambda: _length(client, "ticks", 2), what="two ticks", timeout=20)
    assert worker.stop(signal.SIGTERM) == 0
    assert texts(await client.lrange("hooks", 0, -1)) == ["startup"]
    missing = Command(project, redis_server.url, [*args[:-1], "app.periodic:nothing"])
    assert missing.wait() == 1
    missing.assert_short_errors("--on-startup 'app.periodic:nothing'", "has no function")


async def _length(client: redis.Redis, key: str, at_least: int) -> bool:
    return int(await client.llen(key)) >= at_least


RELOADED = """
import os
import redis


def record(tag):
    with redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"]) as client:
        client.rpush("ran", "{version}:" + tag)
"""


async def test_reload_restarts_the_worker_on_a_code_change(
    client: redis.Redis,
    redis_server: EmbeddedRedis,
    project: Path,  # noqa: F811
) -> None:
    jobs = Queue("default", client)
    (project / "app" / "live.py").write_text(RELOADED.format(version="v1"))
    args = ["--url", redis_server.url, "worker", "app.live", "--reload", "--sweep-interval", "0"]
    worker = Command(project, redis_server.url, args)
    await jobs.enqueue(PyTask("app.live:record", args=("a",)))
    await wait_for(lambda: _length(client, "ran", 1), what="the first run", timeout=20)
    (project / "app" / "live.py").write_text(RELOADED.format(version="v2"))
    await wait_for(lambda: "stopped" in worker.log(), what="the restart", timeout=20)
    await wait_for(lambda: worker.log().count("started on queue") == 2, what="the new worker")
    await jobs.enqueue(PyTask("app.live:record", args=("b",)))
    await wait_for(lambda: _length(client, "ran", 2), what="the second run", timeout=20)
    assert texts(await client.lrange("ran", 0, -1)) == ["v1:a", "v2:b"]
    assert worker.stop(signal.SIGINT) in (0, 130)


@pytest.mark.parametrize("command", [["info"], ["task", "0" * 32], ["dead", "list"]])
def test_an_unreachable_redis_or_a_wrong_password_is_one_line_and_exit_code_1(
    redis_server: EmbeddedRedis, command: list[str]
) -> None:
    nowhere = adelayed(f"redis://127.0.0.1:{free_port()}/0", *command)
    assert nowhere.code == 1 and "Traceback" not in nowhere.err, nowhere.err
    assert (
        nowhere.err.startswith("adelayed: error: cannot reach Redis")
        and "--redis-url" in nowhere.err
    )
    wrong = adelayed(f"redis://nobody:wrong@127.0.0.1:{redis_server.port}/0", *command)
    assert wrong.code == 1 and "Traceback" not in wrong.err and "password" in wrong.err, wrong.err


async def test_moving_a_page_of_dead_letters_twice_moves_it_once(
    client: redis.Redis, queue: Queue
) -> None:
    records = [dead_record("app.a:one", f"e{i}") for i in range(4)]
    await client.lpush("jobs_dead", *records)  # records[0] is the oldest
    args = ["1", "1", records[0], "3", records[2], "4", b"not the record there"]
    keys = ("jobs", "jobs_noti", "jobs_dead")
    assert await MOVE_DEAD_RECORDS(queue._wire(), keys, args) == 2
    assert await MOVE_DEAD_RECORDS(queue._wire(), keys, args) == 0  # a re-send
    assert await client.lrange("jobs_dead", 0, -1) == [records[3], records[1]]
    assert await client.llen("jobs") == 2 and await client.llen("jobs_noti") == 2


@pytest.mark.parametrize("args", [["info"], ["dead", "list"], ["doctor"]])
async def test_a_refused_acl_is_one_line_naming_the_refusal(
    client: redis.Redis, redis_server: EmbeddedRedis, args: list[str]
) -> None:
    rules = ["~*", "+@all", "-@scripting", "-lrange"]  # no scripts, no LRANGE
    await command(client, "ACL", "SETUSER", "blind", "on", ">pw", *rules)
    try:
        url = f"redis://blind:pw@127.0.0.1:{redis_server.port}/0"
        refused = adelayed(url, "-q", "jobs", *args)
    finally:
        await command(client, "ACL", "DELUSER", "blind")
    assert refused.code == 1 and "Traceback" not in refused.err, refused.err
    assert refused.err.startswith("adelayed: error: Redis") and "ACL" in refused.err, refused.err
