"""Task functions for tests/test_isolation.py: each runs in a child process of
``adelayed._isolation.call_in_process``."""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def nested(data: bytes) -> dict[str, Any]:
    return {"list": [1, [2.5, None, True]], "bytes": data, "map": {"a": {"b": ["c"]}}}


async def add_later(a: int, b: int) -> tuple[int, bool]:
    await asyncio.sleep(0.01)
    return a + b, asyncio.get_running_loop().is_running()


class OwnError(Exception):
    pass


def fail(message: str) -> None:
    raise ValueError(message)


def fail_with_own_error() -> None:
    raise OwnError("own")


def record_pid(path: str, pid: int | None = None) -> None:
    """Writes ``pid`` (this process's by default) to ``path``, never seen half-written."""
    Path(path + ".partial").write_text(str(pid or os.getpid()))
    os.replace(path + ".partial", path)


def spin(pid_file: str | None = None) -> None:
    """A runaway task: never returns, never sleeps."""
    if pid_file is not None:
        record_pid(pid_file)
    while True:
        pass


def spin_under_a_sleeper(pid_file: str) -> None:
    """Starts a subprocess that would outlive the task, records its pid, then spins."""
    record_pid(pid_file, subprocess.Popen(["sleep", "60"]).pid)
    spin()


def nap_then_return(pid_file: str, seconds: float) -> str:
    record_pid(pid_file)
    time.sleep(seconds)
    return "rested"


def segfault() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the test's directory
    ctypes.string_at(0)


def killed_by_the_oom_killer() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer sends


def exit_at_once() -> None:
    os._exit(3)


def unpicklable_result() -> Any:
    return lambda: None


def large(size: int) -> bytes:
    return b"x" * size


def process_group() -> tuple[int, int]:
    return os.getpid(), os.getpgrp()


def argv() -> list[str]:
    return sys.argv
