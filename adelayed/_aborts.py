"""A worker's side of ``TaskHandle.abort()``: it listens on its queues' abort channels (one
pub/sub connection per Redis client, no per-task polling) and stops the running task the
message names.

An ``async def`` task is cancelled (adelayed._stops: the slot and the worker go on), a
process-isolated one's child is killed (cancelling its call does that); a plain function in a
thread cannot be stopped, so it runs on and its outcome is discarded. Either
way the attempt ends as aborted: FINISH records it, and no retry follows.

Two gaps are closed. A message that names a task this worker has taken but not yet started
is kept (the last HEARD_KEPT such ids), and the task is stopped as it starts. A message
published while the listener's connection was down is not received; ABORT also writes the
request down (``NAME_aborting:<id>``), and the listener, each time it is subscribed (again:
redis-py reconnects a pub/sub connection, and subscribes it again, by itself), reads those keys
for the tasks running here (one MGET per queue) and stops the ones it finds.
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

# How many ids of aborts heard for tasks not running here are kept, the oldest dropped first:
# a task taken but not started yet is among them (every worker hears every abort).
HEARD_KEPT = 10_000


class Aborts:
    def __init__(self, queues: Sequence[Queue]) -> None:
        # per Redis client: the client, its queues' abort channels, their aborting prefixes
        self._by_client: dict[int, tuple[Any, list[str], list[str]]] = {}
        for queue in queues:
            entry = self._by_client.setdefault(id(queue.redis), (queue.redis, [], []))
            entry[1].append(queue._abort_channel)
            entry[2].append(queue._aborting_prefix)
        self._running: dict[str, Stop] = {}  # task id -> its attempt
        self._heard: dict[str, None] = {}  # ids of aborts heard for tasks not running here

    def watch(self, id_: str, cancellable: bool) -> Stop:
        """Registers the attempt of task ``id_`` the running task starts: an abort stops it
        (cancels it when ``cancellable``). Call ``unwatch`` when it ends."""
        stop = self._running[id_] = Stop(cancellable)
        if self._heard and id_ in self._heard:  # its abort came before it started
            del self._heard[id_]
            stop.requested = True  # the attempt does not run (nothing to cancel)
            logger.info("task %s: aborted before it started", id_)
        return stop

    def unwatch(self, id_: str, stop: Stop) -> None:
        stop.settled()
        if self._running.get(id_) is stop:
            del self._running[id_]

    def abort(self, id_: str) -> None:
        stop = self._running.get(id_)
        if stop is None:  # another worker's task (every worker hears every abort), or one
            heard = self._heard  # this worker took but has not started yet
            heard[id_] = None
            if len(heard) > HEARD_KEPT:
                del heard[next(iter(heard))]
            return
        stop.abort()
        logger.info("task %s: aborted%s", id_, "" if stop.cancellable else " (runs on)")

    async def listen(self) -> None:
        """Listens on every queue's abort channel until cancelled."""
        async with anyio.create_task_group() as group:
            for redis, channels, prefixes in self._by_client.values():
                group.start_soon(self._listen, redis, channels, prefixes)

    async def _listen(self, redis: Any, channels: list[str], prefixes: list[str]) -> None:
        failures = 0
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(*channels)
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    kind = None if message is None else message["type"]
                    if kind == "message":
                        data = message["data"]
                        self.abort(data.decode() if isinstance(data, bytes) else data)
                    elif kind == "subscribe":  # subscribed, or again (redis-py reconnects)
                        await self._read_requests(redis, prefixes)
            except (RedisError, OSError) as exc:
                failures += 1
                logger.warning("abort listener: connection lost (%s); reconnecting", exc)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await anyio.sleep(backoff(failures))

    async def _read_requests(self, redis: Any, prefixes: list[str]) -> None:
        """Stops the running tasks whose abort was written down (ABORT), which a listener
        that was not subscribed then did not hear."""
        ids = list(self._running)
        if not ids:
            return
        for prefix in prefixes:
            found = await redis.mget([prefix + id_ for id_ in ids])
            for id_, request in zip(ids, found, strict=True):
                if request is not None and id_ in self._running:
                    self.abort(id_)
