"""The web examples served for real: the FastAPI app under uvicorn and the aiohttp app under
its own runner, each a process of its own, take a load of 3,000 signups over HTTP; a worker
then runs the queue dry, and every accepted signup's email went out exactly once. A SIGTERM
then stops the server cleanly (its lifespan or cleanup context closes the queue)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis.asyncio as redis

from adelayed import Queue
from adelayed.embedded import EmbeddedRedis
from examples import signups
from tests.helpers import make_worker, running, wait_for
from tests.test_cli import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
SIGNUPS = 3000


def _server_command(framework: str, port: int) -> list[str]:
    if framework == "fastapi":
        return [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host",
                "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    return [sys.executable, "-m", "examples.aiohttp_app"]


@pytest.fixture(params=["fastapi", "aiohttp"])
def server(
    request: pytest.FixtureRequest, redis_server: EmbeddedRedis, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    env = {**os.environ, "ADELAYED_REDIS_URL": redis_server.url, "PORT": str(port)}
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            _server_command(request.param, port), cwd=ROOT, env=env, stdout=output,
            stderr=output,
        )  # fmt: skip
    try:
        _wait_for_port(port, process, log)
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"the server did not listen on {port}:\n{log.read_text()}")


async def _post_all(base: str) -> dict[str, int]:
    """Every signup's status, 50 in flight at a time."""
    statuses: dict[str, int] = {}
    limit = anyio.Semaphore(50)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def one(i: int) -> None:
            address = f"user{i}@example.com"
            async with limit:
                reply = await http.post("/signup", json={"email": address, "user_id": i})
            statuses[address] = reply.status_code

        async with anyio.create_task_group() as group:
            for i in range(SIGNUPS):
                group.start_soon(one, i)
    return statuses


async def test_a_served_app_under_load_runs_each_accepted_signup_exactly_once(
    server: tuple[subprocess.Popen[bytes], str, Path], client: redis.Redis
) -> None:
    process, base, log = server
    signups.sent_emails.clear()
    statuses = await _post_all(base)
    accepted = {address for address, status in statuses.items() if status == 202}
    assert len(accepted) == SIGNUPS, {s for s in statuses.values()}
    queue = Queue(signups.QUEUE_NAME, client, dequeue_timeout=0.2)
    async with running(make_worker(queue, tasks=["examples.signups"], concurrency=50)):
        await wait_for(lambda: _drained(queue), what="the queue drained", timeout=60)
    assert dict(signups.sent_emails) == dict.fromkeys(accepted, 1)
    process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once it shut down cleanly: -SIGTERM after its lifespan ended.
    assert process.wait(30) in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text
    if "uvicorn" in " ".join(map(str, process.args)):  # type: ignore[arg-type]
        assert "Application shutdown complete" in text, text


async def _drained(queue: Queue) -> bool:
    return (
        await queue.len() == 0
        and await queue.in_flight() == 0
        and len(signups.sent_emails) == SIGNUPS
    )
