"""``adelayed verify``: run as a process on the test Redis with short leases it kills real
workers, cuts their connections, finds no lost and no unexplained duplicated execution, and
leaves no key of its scratch queue behind; and its tally (on a real Redis) tells a lost task,
a duplicate a kill explains and one no kill explains apart."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis.asyncio as redis

from adelayed import Queue
from adelayed._verify import Verdict, _tally
from adelayed.embedded import EmbeddedRedis
from tests.test_cli_ops import adelayed, dead_record

pytestmark = pytest.mark.timeout(240)


async def test_verify_kills_and_cuts_and_counts_every_execution(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    ran = adelayed(
        redis_server.url, "-q", "{emails}", "--keep-alive-timeout", "2", "verify", "--json",
        "--tasks", "1000", "--workers", "2", "--kills", "3", "--keep-alive-interval", "0.5",
        "--sweep-interval", "0.5",
    )  # fmt: skip
    assert ran.code == 0, ran.out + ran.err
    verdict = json.loads(ran.out)
    assert verdict["ok"] and verdict["lost"] == [] and verdict["unexplained"] == {}
    assert verdict["kills"] == 3 and verdict["cuts"] > 0
    assert verdict["interrupted"] > 0  # a kill caught tasks running: they ran again elsewhere
    assert verdict["executions"] == 1000 + sum(verdict["duplicates"].values())
    assert verdict["queue"].startswith("{emails}adelayed_verify_")  # the user's hash tag
    assert await client.keys(verdict["queue"].replace("{", "[{]") + "*") == []


async def test_the_tally_tells_lost_explained_and_unexplained_runs_apart(
    client: redis.Redis,
) -> None:
    queue = Queue("scratch", client)
    log = [
        "t0 started 1", "t0 done 1",  # once: fine
        "t1 started 1",  # never completed: lost
        "t2 started 1", "t2 done 1", "t2 started 2", "t2 done 2",  # twice, held by a kill
        "t3 started 1", "t3 done 1", "t3 started 1", "t3 done 1",  # twice, no kill: a defect
    ]  # fmt: skip
    await client.rpush("scratch_verify_log", *log)
    # t4 never ran: dead-lettered (not lost); a record that is none counts for nothing.
    await client.lpush("scratch_dead", dead_record("m:f", "t4"), b"not a record")
    verdict = Verdict("scratch", 5)
    await _tally(queue, "scratch_verify_log", Counter({"t2": 1}), verdict)
    assert verdict.lost == ["t1"] and verdict.dead_lettered == 1
    assert verdict.duplicates == {"t2": 1, "t3": 1} and verdict.unexplained == {"t3": 1}
    assert verdict.executions == 5 and not verdict.ok
