"""Redis memory per queued task: adelayed beside the peers, on one private Redis.

    .venv/bin/python benchmarks/memory.py [--tasks 1000000] [--peer-tasks 100000] [--only ...]

For each system, the Redis is flushed, then its runner's ``fill`` enqueues N of the same no-op
task every system runs (``benchmarks/systems``), and ``fill_due`` N more due in an hour (a
delayed task), where the system has delays. Each figure is Redis's ``used_memory`` after minus
before, over N: the bytes one waiting task costs in Redis, keys, tokens and indexes included.
Prints a Markdown table. The peers fill ``--peer-tasks`` (most have no bulk enqueue, and
fill a few thousand a second: a million would take each of them 5 to 10 minutes per figure);
memory per task does not depend on the count once it is in the thousands.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.measure import Runner
from harness.redis_server import Server
from harness.systems import SYSTEMS, project_python
from harness.venvs import PeerUnavailableError, ensure

_LIMIT_S = 1800  # the most one fill may take


def _used(server: Server) -> int:
    return int(server.client.info("memory")["used_memory"])


def _bytes_per_task(runner: Runner, server: Server, command: str, tasks: int) -> str:
    server.reset()
    before = _used(server)
    options = {"due": time.time() + 3600} if command == "fill_due" else {}
    started = time.perf_counter()
    result = runner.call(command, limit=_LIMIT_S, count=tasks, kind="async", **options)
    seconds = time.perf_counter() - started
    if "error" in result or "unsupported" in result:
        return f"n/a ({result.get('error') or result.get('unsupported')})"
    keys = int(server.client.dbsize())
    per_task = (_used(server) - before) / tasks
    return f"{per_task:,.0f} B ({keys:,} keys; {seconds:.0f} s to fill)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="adelayed's tasks")
    parser.add_argument("--peer-tasks", type=int, default=100_000, help="each peer's tasks")
    parser.add_argument("--only", default=",".join(system.name for system in SYSTEMS))
    options = parser.parse_args()
    wanted = [s for s in SYSTEMS if s.name in options.only.split(",")]
    server = Server.start()
    log: list[str] = []
    out = Path(__file__).resolve().parent / ".memory-logs"
    out.mkdir(exist_ok=True)
    print(f"Redis {server.version()}; tasks per figure: adelayed {options.tasks:,}, "
          f"the peers {options.peer_tasks:,}\n")  # fmt: skip
    print("| system | a task queued now | a task due in an hour |")
    print("| --- | --- | --- |")
    try:
        for system in wanted:
            try:
                python = ensure(system.name, log) if system.peer else project_python()
            except PeerUnavailableError as exc:
                print(f"| {system.title} | unavailable: {exc} | |")
                continue
            runner = Runner(system.name, python, server, out / f"{system.name}.log")
            tasks = options.peer_tasks if system.peer else options.tasks
            now = _bytes_per_task(runner, server, "fill", tasks)
            later = _bytes_per_task(runner, server, "fill_due", tasks)
            print(f"| {system.title} | {now} | {later} |", flush=True)
    finally:
        server.close()


if __name__ == "__main__":
    main()
