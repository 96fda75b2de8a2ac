"""Task functions made with the delayed() decorator; bound to the test's queue at run time."""

from __future__ import annotations

from typing import Any

from adelayed import Queue, delayed

results: list[int] = []
double: Any = None
greet: Any = None
record: Any = None


def bind(queue: Queue) -> None:
    global double, greet, record
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

    globals().update(double=double, greet=greet, record=record)


def plain(value: int) -> None:
    results.append(value)
