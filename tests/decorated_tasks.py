"""Task functions made with the delayed() decorator; bound to the test's queue at run time."""

from __future__ import annotations

from typing import Any

from adelayed import Queue, delayed

results: list[int] = []
double: Any = None


def bind(queue: Queue) -> None:
    global double
    task = delayed(queue)

    @task(retry=1)
    async def double(value: int) -> int:
        results.append(value * 2)
        return value * 2

    globals()["double"] = double


def plain(value: int) -> None:
    results.append(value)
