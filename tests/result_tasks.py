"""Task functions of tests/test_results.py."""

from __future__ import annotations

import time
from typing import Any

import anyio


async def echo(value: Any) -> Any:
    return value


def echo_in_thread(value: Any) -> Any:
    return value


async def fail(message: str) -> None:
    raise LookupError(message)


async def returns_a_set() -> Any:
    return {1, 2}


async def nap(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "rested"


def nap_in_thread(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


attempts: dict[str, int] = {}


async def fail_once(tag: str) -> str:
    attempts[tag] = attempts.get(tag, 0) + 1
    if attempts[tag] == 1:
        raise RuntimeError("first attempt fails")
    return f"{tag} on attempt {attempts[tag]}"
