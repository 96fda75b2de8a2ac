"""The systems compared: what each supports, and where its interpreter is."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class System:
    name: str
    peer: bool  # runs in its own venv (benchmarks/.venvs/NAME); adelayed runs in the project's
    kinds: tuple[str, ...]  # worker variants it supports: "async" (coroutines), "sync" (threads)
    bulk: bool  # has a bulk enqueue API
    sequential: bool = False  # runs one task at a time per process, whatever the concurrency
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


SYSTEMS: tuple[System, ...] = (
    System("adelayed", peer=False, kinds=("async", "sync"), bulk=True),
    System("arq", peer=True, kinds=("async",), bulk=False),
    System("saq", peer=True, kinds=("async", "sync"), bulk=False),
    System("taskiq", peer=True, kinds=("async", "sync"), bulk=False, label="taskiq (ListQueue)"),
    System("streaq", peer=True, kinds=("async", "sync"), bulk=True),
    System("delayed", peer=True, kinds=("sync",), bulk=False, sequential=True),
    System("docket", peer=True, kinds=("async",), bulk=True, label="docket (pydocket)"),
    System("bullmq", peer=True, kinds=("async",), bulk=True),
)
BY_NAME = {system.name: system for system in SYSTEMS}
# The raw redis.asyncio baseline runs in adelayed's interpreter.
RAW = System("raw", peer=False, kinds=(), bulk=True, label="raw redis.asyncio RPUSH")


def project_python() -> Path:
    """The interpreter run.py runs under: the project's venv, where adelayed is installed."""
    return Path(sys.executable)
