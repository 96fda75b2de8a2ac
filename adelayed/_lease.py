"""A worker's lease: its unique id and one liveness key per concurrency slot, kept alive.

Each slot key doubles as the slot's field in ``NAME_processing``. A sweeper (ours, delayed's or
go-delayed's) requeues a task only when its field's key is gone, so every task a live worker is
running stays put, however many run at once.

The keys are refreshed from a thread of their own, over a connection of its own: a task that
blocks the event loop (or a loop too busy to keep up) cannot let the lease lapse, so it cannot
get its own task requeued and run twice while it is still running.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import redis
import redis.asyncio
import redis.sentinel
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import NoScriptError, RedisError

from . import _protocol as protocol
from ._backoff import backoff
from ._fatal import configuration_error
from ._protocol.lease import REFRESH
from ._registry import Registry
from .queue import Queue

logger = logging.getLogger(__name__)

_SHARED_SETTINGS = (
    "host", "port", "db", "username", "password", "credential_provider", "client_name",
    "socket_connect_timeout", "socket_keepalive", "protocol",
)  # fmt: skip
_SSL_SETTINGS = (
    "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data",
    "ssl_check_hostname", "ssl_min_version", "ssl_ciphers", "ssl_password",
)  # fmt: skip


def sync_twin(client: redis.asyncio.Redis, socket_timeout: float) -> redis.Redis:
    """A blocking client for the same server, database and credentials as ``client`` (through
    the same sentinels, for a client of ``redis.asyncio.sentinel``)."""
    pool = client.connection_pool
    settings = pool.connection_kwargs
    kind = pool.connection_class
    chosen = {name: settings[name] for name in _SHARED_SETTINGS if name in settings}
    chosen["socket_timeout"] = socket_timeout
    if isinstance(pool, SentinelConnectionPool):
        return _sentinel_twin(pool, chosen)
    connection_class: type[redis.Connection] | type[redis.UnixDomainSocketConnection]
    if issubclass(kind, redis.asyncio.UnixDomainSocketConnection):
        connection_class = redis.UnixDomainSocketConnection
        chosen["path"] = settings["path"]
        chosen.pop("host", None)
        chosen.pop("port", None)
    elif issubclass(kind, redis.asyncio.SSLConnection):
        connection_class = redis.SSLConnection
        chosen.update({name: settings[name] for name in _SSL_SETTINGS if name in settings})
    else:
        connection_class = redis.Connection
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=connection_class, **chosen)
    )


def _sentinel_twin(pool: SentinelConnectionPool, chosen: dict[str, Any]) -> redis.Redis:
    """The primary of ``pool``'s service, as blocking redis-py finds it through the same
    sentinels (asked again after a failover)."""
    manager = pool.sentinel_manager
    addresses = [
        (sentinel.connection_pool.connection_kwargs.get("host", "localhost"),
         sentinel.connection_pool.connection_kwargs.get("port", 26379))
        for sentinel in manager.sentinels
    ]  # fmt: skip
    for name in ("host", "port"):
        chosen.pop(name, None)
    if issubclass(pool.connection_class, redis.asyncio.SSLConnection):
        settings = pool.connection_kwargs
        chosen.update({name: settings[name] for name in _SSL_SETTINGS if name in settings})
        chosen["ssl"] = True
    sentinels = redis.sentinel.Sentinel(addresses, sentinel_kwargs=manager.sentinel_kwargs)  # type: ignore[no-untyped-call]
    twin: redis.Redis = sentinels.master_for(pool.service_name, **chosen)  # type: ignore[no-untyped-call]
    return twin


class Lease:
    def __init__(self, queue: Queue, slots: int, keep_alive_interval: float) -> None:
        self._queue = queue
        self._slots = slots
        self._interval = keep_alive_interval
        self._ttl_ms = max(1, int(queue.keep_alive_timeout * 1000))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker_id = ""
        self.fields: list[str] = []
        self.hashes: list[str] = []  # each queue's processing and active (REFRESH checks them)
        self.busy: Callable[[], list[bool]] = lambda: [False] * slots  # which slots run a task
        self._registry: Registry | None = None
        self._registry_failed = False  # warned once

    async def claim(self) -> None:
        """Picks a random id no live worker holds, then makes every slot key live; waits out
        connection trouble (a worker may well start before its Redis); raises
        RedisConfigurationError at once for what retrying cannot fix (credentials, ACL)."""
        failures = 0
        while True:
            try:
                await self._claim_once()
                return
            except (RedisError, OSError) as exc:
                fatal = configuration_error(exc, f"worker of queue {self._queue.name!r}")
                if fatal is not None:
                    raise fatal from exc
                failures += 1
                delay = backoff(failures)
                logger.warning(
                    "worker on queue %r: cannot reach Redis to start (%s); retrying in %.1fs",
                    self._queue.name, exc, delay,
                )  # fmt: skip
                await anyio.sleep(delay)

    async def _claim_once(self) -> None:
        client = self._queue.redis
        while True:
            worker_id = protocol.worker_key(secrets.token_hex(8), self._queue.name)
            if await client.set(worker_id, 1, px=self._ttl_ms, nx=True):
                break
        self.worker_id = worker_id
        self.fields = [protocol.slot_key(worker_id, slot) for slot in range(self._slots)]
        async with client.pipeline(transaction=False) as pipe:
            for key in self.fields:
                pipe.set(key, 1, px=self._ttl_ms)
            await pipe.execute()

    def start(
        self, queues: Sequence[Queue], busy: Callable[[], list[bool]], registry: Registry
    ) -> None:
        """Starts refreshing every keep_alive_interval, from a thread of its own; ``busy``
        says which slots run a task, whose fields the refresh looks for in ``queues``; the
        worker's entry in ``registry`` is sent at once, then after each refresh."""
        self.hashes = [key for q in queues for key in (q._processing_key, q._active_key)]
        self.busy = registry.busy = busy
        registry.worker_id = self.worker_id
        self._registry = registry
        client = sync_twin(self._queue.redis, socket_timeout=max(1.0, self._interval))
        self._thread = threading.Thread(
            target=self._keep_alive, args=(client,), name=f"adelayed lease {self.worker_id}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _keep_alive(self, client: redis.Redis) -> None:
        with client:
            self._register(client)
            while not self._stop.wait(self._interval):
                try:
                    self._refresh(client)
                except (RedisError, OSError) as exc:
                    logger.warning(
                        "worker %s on queue %r: lease refresh failed (%s); retrying in %ss",
                        self.worker_id, self._queue.name, exc, self._interval,
                    )  # fmt: skip
                    continue
                self._register(client)

    def _register(self, client: redis.Redis) -> None:
        """The worker's entry in its queues' fleet keys; a failure costs only the view."""
        if self._registry is None:
            return
        try:
            self._registry.flush(client)
        except (RedisError, OSError) as exc:
            log = logger.debug if self._registry_failed else logger.warning
            self._registry_failed = True
            log("worker %s: its entry for `adelayed info` not sent (%s)", self.worker_id, exc)

    def _refresh(self, client: redis.Redis) -> None:
        """One REFRESH call: a slot whose task a sweep took over is not revived."""
        keys = (self.worker_id, *self.fields, *self.hashes)
        busy = ["1" if running else "0" for running in self.busy()]
        args: list[str | int] = [self._ttl_ms, len(self.fields), len(self.hashes) // 2, *busy]
        lost: list[int]
        try:
            lost = client.evalsha(REFRESH.sha, len(keys), *keys, *args)
        except NoScriptError:  # loaded, then sent again: the advised ACL has no EVAL
            client.script_load(REFRESH.text)
            lost = client.evalsha(REFRESH.sha, len(keys), *keys, *args)
        for slot in lost:
            logger.warning(
                "worker %s: slot %d's task was requeued by a sweep (this worker missed its "
                "lease refreshes for keep_alive_timeout: paused or cut off); its run here "
                "changes nothing in Redis, and the slot's lease stays lapsed until it is free",
                self.worker_id, slot,
            )  # fmt: skip

    async def stop(self) -> None:
        """Stops refreshing, then deletes the lease's keys: the worker is gone, and its
        slots are empty by now (a slot still holding a task is requeued by the next sweep)."""
        self._stop.set()
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join)
        await self._queue.redis.delete(self.worker_id, *self.fields)
        if self._registry is not None:
            await self._registry.withdraw()
