"""Task functions of benchmarks/queues.py (a module of their own: a worker imports them)."""

from __future__ import annotations

done = 0
failed: set[int] = set()


async def noop(i: int) -> None:
    global done
    done += 1


async def flaky(i: int) -> None:
    """Fails its first run, then succeeds."""
    global done
    if i not in failed:
        failed.add(i)
        raise RuntimeError("first run fails")
    done += 1


async def echo(value: object) -> object:
    """Returns its argument (benchmarks/result_waiters.py keeps it as the result)."""
    return value
