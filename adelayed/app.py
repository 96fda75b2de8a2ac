"""A web app's queues: the Redis client and Queues opened at start-up on the app's own event
loop, an embedded Sweeper beside them, and all of it closed at shutdown. One object serves
FastAPI (or Starlette) and aiohttp, without importing either::

    from adelayed.app import AppQueues

    tasks = AppQueues("emails", max_length=100_000)  # Redis: $ADELAYED_REDIS_URL

    # FastAPI: the lifespan, and a dependency per queue
    app = FastAPI(lifespan=tasks.lifespan)

    @app.post("/signup", status_code=202)
    async def signup(body: Signup, emails: Queue = Depends(tasks.queue("emails"))) -> None:
        await emails.enqueue(PyTask(send_welcome, (body.email,)))

    # aiohttp: a cleanup context, then tasks["emails"] in a handler
    app = web.Application()
    app.cleanup_ctx.append(tasks.cleanup_ctx)

The sweeper requeues the tasks of dead workers; an app with workers that embed their own
(the default) may pass ``sweep_interval=None``. A failed sweep is logged and retried; one that
Redis refuses for good (a wrong password, an ACL) is logged as an error, and the app serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import redis.asyncio as redis

from .errors import AdelayedError, ConfigurationError
from .queue import Queue
from .sweeper import Sweeper

logger = logging.getLogger(__name__)

__all__ = ["AppQueues"]


class AppQueues:
    """``names``: the queues (the first is ``queue()``'s default). ``redis_url``: default
    ``$ADELAYED_REDIS_URL``; ``client``: a client of your own instead (then not closed here).
    ``embedded``: with no URL at all, start a private redis-server (for trying an app out).
    ``client_options`` go to ``redis.asyncio.Redis.from_url``, ``queue_options`` to each
    Queue (``max_length``, ``enqueue_timeout``, ``keep_result``...)."""

    def __init__(
        self,
        *names: str,
        redis_url: str | None = None,
        client: redis.Redis | None = None,
        sweep_interval: float | None = 60,
        embedded: bool = False,
        client_options: dict[str, Any] | None = None,
        **queue_options: Any,
    ) -> None:
        if not names:
            raise ConfigurationError("AppQueues needs at least one queue name")
        self._names = names
        self._url, self._client = redis_url, client
        self._sweep_interval, self._embedded = sweep_interval, embedded
        self._client_options = client_options or {}
        self._queue_options = queue_options
        self._queues: dict[str, Queue] = {}
        self._stack: AsyncExitStack | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __getitem__(self, name: str) -> Queue:
        """The open queue ``name``; raises ConfigurationError before start-up, saying how."""
        if not self._queues:
            raise ConfigurationError(
                f"the queues {list(self._names)} are not open: pass lifespan=tasks.lifespan to "
                "FastAPI(...), or append tasks.cleanup_ctx to an aiohttp app's cleanup_ctx, or "
                "use `async with tasks:` around the code that enqueues"
            )
        if name not in self._queues:
            raise ConfigurationError(f"no queue {name!r} here: AppQueues{self._names!r}")
        return self._queues[name]

    def queue(self, name: str | None = None) -> Callable[[], Queue]:
        """A FastAPI dependency handing the queue ``name`` (default: the first) to an
        endpoint: ``queue: Queue = Depends(tasks.queue("emails"))``."""
        chosen = name or self._names[0]

        def dependency() -> Queue:
            return self[chosen]

        return dependency

    async def __aenter__(self) -> AppQueues:
        async with AsyncExitStack() as stack:
            client = self._client or await self._open_client(stack)
            self._queues = {n: Queue(n, client, **self._queue_options) for n in self._names}
            if self._sweep_interval is not None:
                await self._start_sweeper(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack, self._queues = self._stack, None, {}
        if stack is not None:
            await stack.aclose()

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[dict[str, Any]]:
        """FastAPI's / Starlette's lifespan: ``FastAPI(lifespan=tasks.lifespan)``. Requests
        also find the AppQueues as ``request.state.adelayed``."""
        async with self:
            yield {"adelayed": self}

    async def cleanup_ctx(self, app: object) -> AsyncIterator[None]:
        """aiohttp's cleanup context: ``app.cleanup_ctx.append(tasks.cleanup_ctx)``."""
        async with self:
            yield

    async def _open_client(self, stack: AsyncExitStack) -> redis.Redis:
        url = self._url or os.environ.get("ADELAYED_REDIS_URL")
        if url is None and self._embedded:
            from .embedded import EmbeddedRedis

            url = stack.enter_context(EmbeddedRedis()).url
            logger.warning("ADELAYED_REDIS_URL is not set: started a redis-server at %s", url)
        if url is None:
            raise ConfigurationError(
                "AppQueues: no Redis URL: set $ADELAYED_REDIS_URL, pass redis_url=..., or "
                "embedded=True to start a private redis-server (not for production)"
            )
        client = redis.Redis.from_url(url, **self._client_options)
        stack.push_async_callback(client.aclose)
        return client

    async def _start_sweeper(self, stack: AsyncExitStack) -> None:
        assert self._sweep_interval is not None
        sweeper = Sweeper(list(self._queues.values()), self._sweep_interval)
        running = asyncio.get_running_loop().create_task(_sweep(sweeper))

        async def stop() -> None:
            sweeper.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await running

        stack.push_async_callback(stop)


async def _sweep(sweeper: Sweeper) -> None:
    """Runs the app's sweeper; an error that ends it is logged, never raised into the app."""
    try:
        await sweeper.run()
    except AdelayedError as exc:
        logger.error("the app's sweeper stopped: %s", exc)
