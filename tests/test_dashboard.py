"""``adelayed web`` end to end, in a real headless Chromium (Debian's, driven by Playwright;
nothing downloads a browser): the page loads, its numbers match Redis, a click on a dead
letter's requeue moves it back and a worker runs it. Also what guards the server: a POST
without the page's CSRF token or from another origin is refused, a token is required off
loopback and then asked of every request. With 1,000,000 tasks queued, one refresh costs
Redis the same few commands as with none."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue
from adelayed.embedded import EmbeddedRedis
from tests import tasks
from tests.helpers import make_worker, running, wait_for
from tests.test_cli import free_port
from tests.test_cli_ops import dead_record

pytestmark = pytest.mark.timeout(180)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
# As this machine's notes advise for a closed network: no background connections.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("ADELAYED_REQUIRE_CHROMIUM"):  # CI: .ci/run installs it
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _serve(url: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "adelayed", "--url", url, "-q", "jobs", "web", "--port",
         str(port), *extra], cwd=ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError("adelayed web did not start within 20 s")


@pytest.fixture
def dashboard(redis_server: EmbeddedRedis) -> Iterator[str]:
    port = free_port()
    process = _serve(redis_server.url, port)
    yield f"http://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    executable = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def test_the_page_shows_redis_and_a_click_requeues_a_dead_letter(
    client: redis.Redis, queue: Queue, dashboard: str, browser: object, tmp_path: Path
) -> None:
    await queue.enqueue_many([PyTask("tests.tasks:async_record", args=(i,)) for i in range(3)])
    await queue.enqueue(PyTask("tests.tasks:async_record", args=("later",)), delay=3600)
    await client.lpush("jobs_dead", dead_record("tests.tasks:async_record", "back from the dead"))
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(dashboard)
    await page.wait_for_selector('body[data-loaded="1"]')
    shown = {key: await page.text_content(f'[data-count="{key}"]') for key in
             ("queued", "scheduled", "dead", "in_flight", "workers")}  # fmt: skip
    assert shown == {"queued": "3", "scheduled": "1", "dead": "1", "in_flight": "0", "workers": "0"}
    assert "tests.tasks:async_record" in await page.text_content('section[data-queue="jobs"]')
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if os.environ.get("ADELAYED_SCREENSHOT"):  # how docs/dashboard.png was made
        shutil.copy(tmp_path / "dashboard.png", os.environ["ADELAYED_SCREENSHOT"])
    await page.click("[data-requeue]")
    await wait_for(lambda: _requeued(client), what="the dead letter back in the queue")
    await page.wait_for_selector('[data-count="dead"]:text-is("0")')
    kept = await queue.enqueue(PyTask("tests.tasks:async_record", args=("kept",)), keep_result=60)
    async with running(make_worker(queue)):
        await wait_for(lambda: "back from the dead" in tasks.ran, what="the worker ran it")
        await kept.result(timeout=10)
    await page.wait_for_selector('[data-count="queued"]:text-is("0")')
    await page.fill("#lookup-queue", "jobs")  # a task looked up by id
    await page.fill("#lookup-id", str(kept.id))
    await page.click("#lookup button")
    await page.wait_for_selector('#lookup-result:has-text("done")')


async def _requeued(client: redis.Redis) -> bool:
    return int(await client.llen("jobs_dead")) == 0 and int(await client.llen("jobs")) == 4


async def test_a_post_without_the_pages_token_or_from_elsewhere_is_refused(
    client: redis.Redis, dashboard: str
) -> None:
    await client.lpush("jobs_dead", dead_record("m:f", "kept"))
    purge = f"{dashboard}/api/queues/jobs/dead/purge"
    async with httpx.AsyncClient() as http:
        assert (await http.post(purge, json={"all": True})).status_code == 403
        page = (await http.get(dashboard)).text
        csrf = page.split('name="csrf" content="')[1].split('"')[0]
        foreign = {"X-Adelayed-CSRF": csrf, "Origin": "https://evil.example"}
        assert (await http.post(purge, json={"all": True}, headers=foreign)).status_code == 403
        assert await client.llen("jobs_dead") == 1
        mine = {"X-Adelayed-CSRF": csrf}
        assert (await http.post(purge, json={"all": True}, headers=mine)).json() == {"moved": 1}
    assert await client.llen("jobs_dead") == 0


def test_off_loopback_a_token_is_required_and_then_asked(redis_server: EmbeddedRedis) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "adelayed", "--url", redis_server.url, "web", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode == 1 and "give --token" in refused.stderr
    port = free_port()
    process = _serve(redis_server.url, port, "--token", "s3cret")
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/overview").status_code == 401
        assert httpx.get(f"{base}/api/overview", auth=("ops", "wrong")).status_code == 401
        assert httpx.get(f"{base}/api/overview", auth=("ops", "s3cret")).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{base}/api/overview", headers=bearer).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


@pytest.mark.slow
async def test_a_refresh_costs_a_few_commands_whatever_the_queue_length(
    client: redis.Redis, queue: Queue, dashboard: str
) -> None:
    costs = []
    for count in (0, 1_000_000):
        await client.flushall()
        for start in range(0, count, 100_000):
            await queue.enqueue_many(
                PyTask("tests.tasks:async_record", args=(i,)) for i in range(start, start + 100_000)
            )
        paths = ("/api/overview", "/api/queues/jobs/scheduled", "/api/queues/jobs/dead")
        async with httpx.AsyncClient(base_url=dashboard, timeout=30) as http:
            for path in paths:  # a first refresh loads the scripts (after FLUSHALL too)
                await http.get(path)
            await client.config_resetstat()
            started = time.monotonic()
            for path in paths:
                assert (await http.get(path)).status_code == 200
            took = time.monotonic() - started
        stats = await client.info("commandstats")
        calls = sum(int(v["calls"]) for v in stats.values()) - 1  # not CONFIG RESETSTAT
        print(f"{count:,} tasks queued: {calls} commands for one refresh, {took * 1000:.0f} ms")
        costs.append(calls)  # counted inside scripts too (INFO's LLENs, its HMGET)
        assert await queue.len() == count
    assert costs[0] == costs[1] <= 25, costs
