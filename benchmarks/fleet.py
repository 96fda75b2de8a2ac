"""What a fleet of workers costs Redis per minute: lease refreshes and sweeps.

    .venv/bin/python benchmarks/fleet.py [--workers 1000] [--slots 10] [--dead 0.05]

A private Redis holds one queue with ``workers`` worker identities of ``slots`` slots each, every
slot running a task (so ``workers * slots`` entries in ``jobs_processing``); the first ``dead``
fraction of the workers is dead (its liveness keys gone). The workers are simulated as their
leases: the same REFRESH and REGISTER scripts a worker's lease thread sends, with the same keys.
Then one minute of the fleet's calls, sent as fast as they go:

- leases: every worker refreshes every 15 s (``keep_alive_interval``): 4 REFRESH + 4 REGISTER;
- sweeps: every worker's embedded sweeper runs once a minute (``sweep_interval=60``): one
  ``Sweeper.sweep()`` per worker, each a sweeper of its own, as in a real fleet.

Reports Redis's CPU for each (``INFO cpu``, user + system) and the longest single call of each
script (``SLOWLOG``, server-side time). The minute's calls take less than a minute to send, so
the CPU per minute of a real fleet is the figure; the longest call is what Redis latency sees.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import msgpack
import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adelayed import PyTask, Queue, Sweeper
from adelayed import _protocol as protocol
from adelayed._protocol import scheduled
from adelayed._protocol.fleet import REGISTER
from adelayed._protocol.lease import REFRESH
from adelayed._protocol.script import Script
from adelayed.embedded import EmbeddedRedis

TTL_MS = 60_000
SCRIPTS = {
    script.sha: script.name
    for script in (REFRESH, REGISTER, *vars(protocol).values(), *vars(scheduled).values())
    if isinstance(script, Script)
}


async def populate(client: redis.Redis, workers: int, slots: int, dead: int) -> list[str]:
    """The fleet's keys; returns the worker ids."""
    ids = [protocol.worker_key(f"{w:016x}", "jobs") for w in range(workers)]
    for start in range(0, workers, 100):
        async with client.pipeline(transaction=False) as pipe:
            for w, worker_id in enumerate(ids[start : start + 100], start):
                fields = [protocol.slot_key(worker_id, s) for s in range(slots)]
                if w >= dead:
                    pipe.set(worker_id, 1, px=TTL_MS)
                    for field in fields:
                        pipe.set(field, 1, px=TTL_MS)
                tasks = {f: PyTask("app.tasks:work", (f,)).serialize() for f in fields}
                pipe.hset("jobs_processing", mapping=tasks)  # type: ignore[arg-type]
            await pipe.execute()
    return ids[dead:]


async def a_minute_of_leases(client: redis.Redis, ids: list[str], slots: int) -> None:
    """4 REFRESH and 4 REGISTER per live worker, 100 workers' calls pipelined at a time."""
    info = msgpack.packb({"host": "bench", "pid": 1, "concurrency": slots, "queues": ["jobs"]})
    hashes = ("jobs_processing", "jobs_active")
    for _ in range(4):
        for start in range(0, len(ids), 100):
            async with client.pipeline(transaction=False) as pipe:
                for worker_id in ids[start : start + 100]:
                    fields = [protocol.slot_key(worker_id, s) for s in range(slots)]
                    keys = (worker_id, *fields, *hashes)
                    pipe.evalsha(REFRESH.sha, len(keys), *keys, TTL_MS, slots, 1, *["1"] * slots)
                    pipe.evalsha(
                        REGISTER.sha, 3, "jobs_workers", "jobs_worker_info", "jobs_stats",
                        worker_id, TTL_MS, info, 0, 0, 0, 0,
                    )  # fmt: skip
                await pipe.execute()


async def a_minute_of_sweeps(client: redis.Redis, sweepers: int) -> None:
    """One sweep per worker's embedded sweeper, each a Sweeper of its own."""
    queue = Queue("jobs", client)
    for _ in range(sweepers):
        await Sweeper([queue], interval=60).sweep()


async def measured(client: redis.Redis, phase: object) -> tuple[float, dict[str, int], float]:
    """(Redis CPU seconds, the longest call of each script in µs, wall seconds) of ``phase``."""
    await client.slowlog_reset()
    before = await client.info("cpu")
    started = time.perf_counter()
    await phase  # type: ignore[misc]
    wall = time.perf_counter() - started
    after = await client.info("cpu")
    cpu = sum(after[k] - before[k] for k in ("used_cpu_user", "used_cpu_sys"))
    longest: dict[str, int] = {}
    for entry in await client.slowlog_get(1_000_000):
        command = entry["command"].split()
        if command[0].lower() != b"evalsha":  # a command inside a script, or another
            continue
        name = SCRIPTS.get(command[1].decode(), f"script {command[1][:8].decode()}")
        longest[name] = max(longest.get(name, 0), entry["duration"])
    return cpu, longest, wall


async def main(workers: int, slots: int, dead_fraction: float) -> None:
    with EmbeddedRedis({"slowlog-log-slower-than": "0", "slowlog-max-len": "1000000"}) as server:
        client = redis.Redis(port=server.port)
        await client.script_load(REFRESH.text)
        await client.script_load(REGISTER.text)
        dead = int(workers * dead_fraction)
        ids = await populate(client, workers, slots, dead)
        print(
            f"{workers} workers x {slots} slots, {workers * slots:,} tasks in flight, "
            f"{dead} workers dead ({dead * slots:,} tasks to requeue)"
        )
        for label, phase in (
            ("leases (4 REFRESH + 4 REGISTER a worker)", a_minute_of_leases(client, ids, slots)),
            (f"sweeps ({workers} sweepers, one sweep each)", a_minute_of_sweeps(client, workers)),
        ):
            cpu, longest, wall = await measured(client, phase)
            calls = ", ".join(f"{name} {us:,} µs" for name, us in sorted(longest.items()))
            print(f"a minute of {label}: Redis CPU {cpu * 1000:,.0f} ms ({wall:.1f} s to send)")
            print(f"  longest single call: {calls}")
        print(f"tasks in flight after: {await client.hlen('jobs_processing'):,}")
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--dead", type=float, default=0.05)
    options = parser.parse_args()
    asyncio.run(main(options.workers, options.slots, options.dead))
