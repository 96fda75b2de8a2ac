"""App CPU per request of one enqueue in a web handler, under FastAPI (uvicorn) and aiohttp.

    .venv/bin/pip install -r benchmarks/app_enqueue.txt
    .venv/bin/python benchmarks/app_enqueue.py [--requests N] [--rounds R] [--concurrency C]

Each app runs in a server process of its own with four endpoints: ``POST /noop`` (the
framework's own cost), ``POST /pause`` (one ``await asyncio.sleep(0)``: what the framework adds
when a handler suspends once), ``POST /rpush`` (one redis-py ``RPUSH`` of a task's payload) and
``POST /enqueue`` (one ``await queue.enqueue(PyTask(...))``, the task made per request). A
separate load process sends N requests per endpoint, C at a time, over keep-alive connections;
the server process's CPU time (all its threads, from /proc) over those requests, divided by N,
is the app CPU per request. Endpoints are measured in turn, R rounds; the table shows the
median round. Both servers run on asyncio's event loop (uvicorn with h11, aiohttp's own HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import redis.asyncio as redis
import uvicorn
from aiohttp import web
from fastapi import FastAPI, Request

from adelayed import PyTask, Queue
from adelayed.embedded import EmbeddedRedis

ENDPOINTS = ("noop", "pause", "rpush", "enqueue")
FRAMEWORKS = ("fastapi", "aiohttp")
PREFERRED_BINARY = "/usr/bin/redis-server"
TASK = PyTask("app.tasks:send_welcome_email", ("ada@example.com", 1))
RAW_KEY = "raw"
REPLY = {"ok": True}


# The apps: one Redis client and Queue each, made at start-up on the app's event loop.


class Handlers:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.queue = Queue("bench", client)
        self.payload = TASK.serialize()

    async def noop(self) -> None:
        pass

    async def pause(self) -> None:
        await asyncio.sleep(0)  # the handler's task suspends once, as an awaited I/O does

    async def rpush(self) -> None:
        await self.client.rpush(RAW_KEY, self.payload)

    async def enqueue(self) -> None:
        await self.queue.enqueue(PyTask("app.tasks:send_welcome_email", ("ada@example.com", 1)))


@asynccontextmanager
async def handlers(url: str) -> AsyncIterator[Handlers]:
    client = redis.Redis.from_url(url)
    try:
        yield Handlers(client)
    finally:
        await client.aclose()


def serve_fastapi(url: str, port: int) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Handlers]]:
        async with handlers(url) as made:
            yield {"handlers": made}

    def endpoint(name: str) -> Any:
        async def handle(request: Request) -> dict[str, bool]:
            await getattr(request.state.handlers, name)()
            return REPLY

        return handle

    app = FastAPI(lifespan=lifespan)
    for name in ENDPOINTS:
        app.post(f"/{name}")(endpoint(name))
    config = uvicorn.Config(
        app, "127.0.0.1", port, loop="asyncio", http="h11", log_level="warning", access_log=False
    )
    uvicorn.Server(config).run()


def serve_aiohttp(url: str, port: int) -> None:
    key = web.AppKey("handlers", Handlers)

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with handlers(url) as made:
            app[key] = made
            yield

    def endpoint(name: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            await getattr(request.app[key], name)()
            return web.json_response(REPLY)

        return handle

    app = web.Application()
    app.cleanup_ctx.append(context)
    for name in ENDPOINTS:
        app.router.add_post(f"/{name}", endpoint(name))
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# The load: a process of its own, so that its CPU is not the app's.


async def load(base: str, path: str, count: int, concurrency: int) -> dict[str, Any]:
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def client(share: int) -> None:
            nonlocal errors
            for _ in range(share):
                async with session.post(path) as response:
                    await response.read()
                    errors += response.status != 200

        started = time.perf_counter()
        shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
        await asyncio.gather(*(client(share) for share in shares))
    return {"seconds": time.perf_counter() - started, "errors": errors}


def run_load(base: str, path: str, count: int, concurrency: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "load", base, path, str(count), str(concurrency)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the load on {path} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["errors"]:
        raise SystemExit(f"{path}: {result['errors']} of {count} requests failed")
    return result


# The measurement.


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``, all its threads, in ns resolution (/proc/PID/task/*/
    schedstat: its first field is the time on a CPU; /proc/PID/stat counts clock ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total / 1e9


@contextmanager
def server_process(framework: str, url: str) -> Iterator[tuple[int, str]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, __file__, "serve", framework, url, str(port)]
    process = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{base}/noop", method="POST"))
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"the {framework} server did not start") from None
                time.sleep(0.05)
        yield process.pid, base
    finally:
        process.terminate()
        process.wait(timeout=10)


def measure(framework: str, url: str, options: argparse.Namespace) -> dict[str, list[float]]:
    """µs of server CPU per request, per endpoint, one value per round."""
    per_request: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    with server_process(framework, url) as (pid, base):
        for name in ENDPOINTS:  # warm up: connections, imports, caches
            run_load(base, f"/{name}", options.requests // 4, options.concurrency)
        for _ in range(options.rounds):
            for name in ENDPOINTS:
                before = cpu_seconds(pid)
                run_load(base, f"/{name}", options.requests, options.concurrency)
                spent = cpu_seconds(pid) - before
                per_request[name].append(spent / options.requests * 1e6)
    return per_request


def table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        "| framework | no-op | pause | raw RPUSH | enqueue | pause - no-op | RPUSH - no-op "
        "| enqueue - no-op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for framework, per_request in results.items():
        noop, pause, rpush, enqueue = (statistics.median(per_request[name]) for name in ENDPOINTS)
        lines.append(
            f"| {framework} | {noop:.0f} | {pause:.0f} | {rpush:.0f} | {enqueue:.0f} "
            f"| {pause - noop:.0f} | {rpush - noop:.0f} | **{enqueue - noop:.0f}** |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--only", choices=FRAMEWORKS, action="append")
    options = parser.parse_args()
    binary = PREFERRED_BINARY if os.access(PREFERRED_BINARY, os.X_OK) else None
    started = time.monotonic()
    results: dict[str, dict[str, list[float]]] = {}
    with EmbeddedRedis(binary=binary) as server:
        for framework in options.only or FRAMEWORKS:
            results[framework] = measure(framework, server.url, options)
    print(f"µs of app CPU per request (median of {options.rounds} rounds of "
          f"{options.requests} requests, {options.concurrency} concurrent; "
          f"{time.monotonic() - started:.0f} s in all)")  # fmt: skip
    print(table(results))
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        framework, url, port = sys.argv[2:5]
        {"fastapi": serve_fastapi, "aiohttp": serve_aiohttp}[framework](url, int(port))
    elif sys.argv[1:2] == ["load"]:
        base, path, count, concurrency = sys.argv[2:6]
        print(json.dumps(asyncio.run(load(base, path, int(count), int(concurrency)))))
    else:
        main()
