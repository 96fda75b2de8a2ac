"""A worker's side of ``TaskHandle.abort()``: it listens on its queues' abort channels (one
pub/sub connection per Redis client, no per-task polling) and stops the running task the
message names.

An ``async def`` task is cancelled (adelayed._stops: the slot and the worker go on), a
process-isolated one's child is killed (cancelling its call does that); a plain function in a
thread cannot be stopped, so it runs on and its outcome is discarded. Either
way the attempt ends as aborted: FINISH records it, and no retry follows. A message lost
while the connection is down is not seen again (the abort then waits for the task's end,
which is recorded as it ended).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import anyio
from redis.exceptions import RedisError

from ._backoff import backoff
from ._stops import Stop
from .queue import Queue

logger = logging.getLogger(__name__)


class Aborts:
    def __init__(self, queues: Sequence[Queue]) -> None:
        self._by_client: dict[int, tuple[Any, list[str]]] = {}
        for queue in queues:
            entry = self._by_client.setdefault(id(queue.redis), (queue.redis, []))
            entry[1].append(queue._abort_channel)
        self._running: dict[str, Stop] = {}  # task id -> its attempt

    def watch(self, id_: str, cancellable: bool) -> Stop:
        """Registers the attempt of task ``id_`` the running task starts: an abort stops it
        (cancels it when ``cancellable``). Call ``unwatch`` when it ends."""
        stop = self._running[id_] = Stop(cancellable)
        return stop

    def unwatch(self, id_: str, stop: Stop) -> None:
        stop.settled()
        if self._running.get(id_) is stop:
            del self._running[id_]

    def abort(self, id_: str) -> None:
        stop = self._running.get(id_)
        if stop is None:  # another worker's task (every worker hears every abort)
            return
        stop.abort()
        logger.info("task %s: aborted%s", id_, "" if stop.cancellable else " (runs on)")

    async def listen(self) -> None:
        """Listens on every queue's abort channel until cancelled."""
        async with anyio.create_task_group() as group:
            for redis, channels in self._by_client.values():
                group.start_soon(self._listen, redis, channels)

    async def _listen(self, redis: Any, channels: list[str]) -> None:
        failures = 0
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        self.abort(data.decode() if isinstance(data, bytes) else data)
            except (RedisError, OSError) as exc:
                failures += 1
                logger.warning("abort listener: connection lost (%s); reconnecting", exc)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await anyio.sleep(backoff(failures))
