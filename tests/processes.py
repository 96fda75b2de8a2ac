"""Real worker processes for the tests: adelayed's CLI worker and delayed's own worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADELAYED_TEST_REDIS_URL": url,
        "PYTHONUNBUFFERED": "1",
    }


def _spawn(args: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(args, cwd=ROOT, env=_env(url), stdout=output, stderr=output)


def adelayed_worker(
    url: str,
    log: Path,
    *,
    queue: str = "jobs",
    concurrency: int = 5,
    keep_alive_timeout: float = 2,
    keep_alive_interval: float = 0.5,
    grace_period: float = 30,
    sweep_interval: float = 0,
) -> subprocess.Popen[bytes]:
    return _spawn(
        [
            sys.executable, "-m", "adelayed", "--url", url, "-q", queue,
            "--keep-alive-timeout", str(keep_alive_timeout), "--log-level", "DEBUG",
            "worker", "tests.tasks", "--concurrency", str(concurrency),
            "--keep-alive-interval", str(keep_alive_interval),
            "--grace-period", str(grace_period), "--sweep-interval", str(sweep_interval),
        ],
        url,
        log,
    )  # fmt: skip


def adelayed_sweeper(
    url: str,
    log: Path,
    *,
    queue: str = "jobs",
    interval: float = 0.3,
    options: tuple[str, ...] = (),  # before the command: queue settings
) -> subprocess.Popen[bytes]:
    return _spawn(
        [sys.executable, "-m", "adelayed", "--url", url, "-q", queue, "--log-level", "DEBUG",
         *options, "sweep", "--interval", str(interval)],
        url,
        log,
    )  # fmt: skip


def script_workers(
    url: str, log: Path, *, runner: str = "asyncio", queues: tuple[str, ...] = ("jobs",)
) -> subprocess.Popen[bytes]:
    """Workers run by a plain script (tests/run_workers.py), not the CLI: one per queue, all
    in one process under ``asyncio.run`` or ``anyio.run``."""
    return _spawn([sys.executable, "-m", "tests.run_workers", runner, url, *queues], url, log)


def worker_id_in(log: Path) -> str | None:
    """The id an adelayed worker logged at start, or None if it logged none (yet)."""
    found = re.search(r"worker (adelayed:worker:[0-9a-f]+) started", log.read_text())
    return found.group(1) if found else None


def delayed_worker(
    url: str, log: Path, *, queue: str = "jobs", keep_alive_timeout: int = 2
) -> subprocess.Popen[bytes]:
    return _spawn(
        [sys.executable, "-m", "tests.peers.delayed_worker", url, queue,
         str(keep_alive_timeout), "0.5"],
        url,
        log,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 30) -> int:
    """Sends ``sig`` and waits for the process to exit; returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"process {process.pid} did not exit within {timeout}s of {sig}")
        time.sleep(0.02)
    return process.returncode
