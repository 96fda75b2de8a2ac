"""adelayed.app.AppQueues on a real Redis: the queues open at start-up and close at shutdown,
its sweeper requeues a dead worker's task meanwhile, and each mistake (a queue used before
start-up, no Redis URL) says how to fix it."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from adelayed import ConfigurationError, PyTask
from adelayed.app import AppQueues
from adelayed.embedded import EmbeddedRedis
from tests.helpers import wait_for


async def test_the_queues_open_and_close_around_the_app_and_a_sweeper_runs_meanwhile(
    client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    tasks = AppQueues("emails", "reports", redis_url=redis_server.url, sweep_interval=0.1)
    with pytest.raises(ConfigurationError, match=r"lifespan=tasks\.lifespan"):
        tasks["emails"]
    payload = PyTask("tests.tasks:async_record", args=(1,)).serialize()
    await client.hset("reports_processing", "adelayed:worker:00000000deadbeef:0", payload)
    async with tasks.lifespan(object()) as state:
        assert state == {"adelayed": tasks}
        emails = tasks.queue()()  # the FastAPI dependency of the first queue
        assert emails.name == "emails" and tasks["reports"].name == "reports"
        await emails.enqueue(PyTask("tests.tasks:async_record", args=(2,)))
        await wait_for(lambda: _requeued(client), what="the sweeper's requeue")
        with pytest.raises(ConfigurationError, match="no queue 'nope'"):
            tasks["nope"]
    assert await client.llen("emails") == 1
    with pytest.raises(ConfigurationError, match="not open"):
        tasks["emails"]


async def _requeued(client: redis.Redis) -> bool:
    return int(await client.llen("reports")) == 1


async def test_a_client_of_the_apps_own_stays_open(client: redis.Redis) -> None:
    async with AppQueues("emails", client=client, sweep_interval=None) as tasks:
        assert tasks["emails"].redis is client
    assert await client.ping()


async def test_no_redis_url_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADELAYED_REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"ADELAYED_REDIS_URL.*embedded=True"):
        async with AppQueues("emails"):
            pass
    async with AppQueues("emails", embedded=True, sweep_interval=None) as tasks:
        assert await tasks["emails"].len() == 0  # a private redis-server
