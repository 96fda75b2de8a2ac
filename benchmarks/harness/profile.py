"""``--profile``: adelayed's worker at concurrency 100 under py-spy, and where its time goes."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from .measure import Runner, Settings, throughput

PROFILE_TASKS = 200_000  # enough tasks for a couple of seconds of samples
_IN_LOOP = "BaseEventLoop._run_once"  # samples of the running event loop...
_IMPORTING = "_find_and_load"  # ...that are not importing (start-up)
_TRUNK_SHARE = 0.995  # frames on (nearly) every sample: the loop itself, not worth listing


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def cumulative(raw: Path, top: int) -> tuple[int, list[str], list[tuple[str, float]]]:
    """From py-spy's raw (collapsed) stacks of the worker's event loop at work (start-up
    imports excluded): the share of samples each function is on the stack in (cumulative
    time). Returns the sample count, the trunk (frames on nearly every sample: runpy, the
    loop) and the other functions, largest share first."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or _IMPORTING in stack or _IN_LOOP not in stack:
            continue
        count = int(count_text)
        total += count
        for frame in set(frames):  # once per sample, however deep the recursion
            inclusive[frame] += count
    if not total:
        return 0, [], []
    ranked = [(frame, count / total) for frame, count in inclusive.most_common()]
    trunk = [frame for frame, share in ranked if share >= _TRUNK_SHARE]
    return total, trunk, [(f, share) for f, share in ranked if share < _TRUNK_SHARE][:top]


def profile_adelayed(runner: Runner, settings: Settings, out_dir: Path) -> dict[str, Any]:
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy not found (pip install py-spy into the project venv)"}
    raw = out_dir / "adelayed-c100.pyspy.txt"
    prefix = (spy, "record", "--format", "raw", "--nolineno", "--rate", "500", "-o", str(raw), "--")
    tasks = max(PROFILE_TASKS, settings.tasks)
    result = throughput(runner, replace(settings, tasks=tasks, max_seconds=0), 100, "async", prefix)
    if "error" in result or not raw.exists():
        return {"error": result.get("error", "py-spy wrote no profile"), "raw": str(raw)}
    samples, trunk, shares = cumulative(raw, top=25)
    return {
        "tasks": tasks,
        "rate": result["rate"],
        "samples": samples,
        "trunk": trunk,
        "top": shares,
        "raw": str(raw),
    }
