"""arq code and its adelayed equivalent (run by tests/test_docs.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis.asyncio as aredis

from adelayed import Backoff, Every, PyTask, Queue, Worker
from adelayed.testing import drain


async def startup(state: dict[str, Any]) -> None:  # arq: on_startup(ctx)
    state["greeting"] = "hello"


async def greet(name: str) -> str:  # arq: async def greet(ctx, name)
    from adelayed import current_task

    return f"{current_task().state['greeting']} {name}"


async def main(url: str) -> str:
    client = aredis.Redis.from_url(url)
    try:
        queue = Queue("arq-like", client, keep_result=60)  # arq: keep_result (seconds)
        # arq: await redis.enqueue_job("greet", "ada", _defer_by=10, _job_id="greet-ada")
        handle = await queue.enqueue(
            PyTask(greet, ("ada",)), delay=10, key="greet-ada", backoff=Backoff.fixed(5)
        )
        # arq: class WorkerSettings: functions = [greet]; on_startup = startup;
        #      cron_jobs = [cron(greet, minute=0)]
        worker = Worker(
            queue, tasks=[greet], on_startup=startup, handle_signals=False, sweep_interval=None,
            schedules=[Every(timedelta(hours=1), PyTask(greet, ("everyone",)))],
        )  # fmt: skip
        await drain(worker)  # the delay of 10 s is moved forward: it runs now
        value: str = await handle.result(timeout=5)  # arq: await job.result()
        return value
    finally:
        await client.aclose()
