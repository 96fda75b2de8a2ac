"""Task functions made with the delayed() decorator; bound to the test's queue at run time."""

from __future__ import annotations

from typing import Any

from adelayed import Backoff, Queue, delayed

results: list[int] = []
double: Any = None
greet: Any = None
record: Any = None
timed: Any = None


def bind(queue: Queue) -> None:
    global double, greet, record, timed
    task = delayed(queue)

    @task(retry=1)
    async def double(value: int) -> int:
        results.append(value * 2)
        return value * 2

    @task
    def greet(name: str, greeting: str = "hello", /, *, loud: bool = False) -> str:
        return f"{greeting} {name}{'!' if loud else ''}"

    @task
    def record(first: int, *more: int, **tags: str) -> None:
        results.extend((first, *more))

    @task(retry=2, timeout=5, backoff=Backoff.fixed(1))
    async def timed(value: int) -> None:
        results.append(value)

    globals().update(double=double, greet=greet, record=record, timed=timed)


def plain(value: int) -> None:
    results.append(value)
