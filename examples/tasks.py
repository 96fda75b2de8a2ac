"""An application's task module: the queue, and task functions made with ``delayed``.

The Redis URL comes from the environment, as it would in a deployed app.
"""

from __future__ import annotations

import os
import sys
import time

import anyio
import redis.asyncio as redis

from adelayed import Queue, delayed

client = redis.Redis.from_url(os.environ.get("ADELAYED_REDIS_URL", "redis://localhost:6379/0"))
queue = Queue("example", client)
task = delayed(queue)

_attempts: dict[str, int] = {}


@task
async def send_welcome_email(address: str) -> None:
    """A coroutine task: runs on the worker's event loop."""
    await anyio.sleep(0.1)  # pretend to talk to a mail server
    print(f"  sent a welcome email to {address}")


@task(retry=2)
def make_thumbnail(image: str, width: int = 128) -> None:
    """A plain function: runs in a worker thread, so blocking is fine."""
    time.sleep(0.2)  # pretend to resize an image
    sys.stdout.write(f"  made a {width}px thumbnail of {image} (in a thread)\n")


@task(retry=3)
async def call_flaky_api(request_id: str) -> None:
    """Fails twice, then succeeds: retry=3 covers it."""
    _attempts[request_id] = _attempts.get(request_id, 0) + 1
    if _attempts[request_id] < 3:
        print(f"  flaky API call {request_id}: attempt {_attempts[request_id]} failed, will retry")
        raise ConnectionError("the API is having a bad day")
    print(f"  flaky API call {request_id}: attempt {_attempts[request_id]} succeeded")
