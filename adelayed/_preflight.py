"""Start-up checks of the Redis a worker or a sweeper uses, and which Redis errors are fatal.

A worker or sweeper checks once, before anything else starts (nothing is checked per task):

- ``maxmemory-policy`` must be ``noeviction``. Any other policy lets Redis evict keys when memory
  is full, the keys with a TTL first, and those are the workers' liveness keys: a sweep then
  takes their running tasks for lost and requeues them, so each runs twice (an ``allkeys-*``
  policy may evict the queues themselves too).
- The connection's password, username and database, and (for a worker) every command and key
  the worker sends, each tried once in a harmless form: an ACL that refuses one of them ends
  start-up instead of failing in the fetch loop.

Errors no retry can fix (wrong or missing credentials, an unknown database, an ACL refusal) are
told apart from connection trouble (refused, reset, timeouts, LOADING) by
``_fatal.configuration_error``, which the lease, the sweeper and enqueue use too: only connection
trouble is retried.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _protocol as protocol
from ._backoff import backoff
from ._fatal import configuration_error
from ._protocol import priority, scheduled
from .errors import RedisConfigurationError
from .queue import Queue

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
# How long the start-up check waits for its replies before it counts as connection trouble.
REPLY_TIMEOUT = 5.0


async def check_worker_start(queues: Sequence[Queue], *, allow_eviction: bool) -> None:
    """A worker's start-up check of its queues' Redis: one connection per Redis client its
    queues use (its handshake, then every command for every queue pipelined in one round
    trip)."""
    await _check_by_client(queues, "worker", allow_eviction, _worker_probe)


async def check_sweeper_start(queues: Sequence[Queue], *, allow_eviction: bool) -> None:
    """A sweeper's start-up check: once per Redis client its queues use."""
    await _check_by_client(queues, "sweeper", allow_eviction, lambda queue: [])


async def _check_by_client(
    queues: Sequence[Queue],
    role: str,
    allow_eviction: bool,
    probe_of: Callable[[Queue], list[tuple[Any, ...]]],
) -> None:
    by_client: dict[int, list[Queue]] = {}
    for queue in queues:
        by_client.setdefault(id(queue.redis), []).append(queue)
    for group in by_client.values():
        names = ", ".join(repr(queue.name) for queue in group)
        who = f"{role} of queue{'s' if len(group) > 1 else ''} {names}"
        probe = [command for queue in group for command in probe_of(queue)]
        await _check(group[0].redis, who, allow_eviction, probe)


def _worker_probe(queue: Queue) -> list[tuple[Any, ...]]:
    """Every command a worker (and the sweeper it embeds) sends, in a form that changes
    nothing a worker would not change: on keys of a worker id no worker holds, or emptied and
    deleted in the same call. Redis checks the ACL of each, so a refusal shows at start."""
    worker = protocol.worker_key("probe" + secrets.token_hex(8), queue.name)
    hand, field = protocol.hand_key(worker), protocol.slot_key(worker, 0)
    name = queue.name
    noti, processing = name + protocol.NOTI_SUFFIX, name + protocol.PROCESSING_SUFFIX
    fetch, promote, many = protocol.FETCH, scheduled.PROMOTE, priority.FETCH_MANY
    enveloped = [
        name + suffix
        for suffix in (scheduled.READY_SUFFIX, scheduled.ACTIVE_SUFFIX, scheduled.JOBS_SUFFIX)
    ]
    ready = enveloped[0]
    wake = name + scheduled.WAKE_SUFFIX
    return [
        ("SET", worker, 1, "PX", 1000, "NX"),
        ("SCRIPT", "LOAD", fetch.text),
        ("EVALSHA", fetch.sha, 7, name, noti, processing, hand, *enveloped, 0, 0, 0),  # no task
        ("SCRIPT", "LOAD", many.text),  # a worker of several queues: no free slot, no task
        ("EVALSHA", many.sha, 7, name, noti, processing, *enveloped, hand, 1, 0, 0, 1, 0, 0),
        # PROMOTE changes nothing the worker's promoter would not: it moves what is due.
        ("SCRIPT", "LOAD", promote.text),
        ("EVALSHA", promote.sha, 3, name + scheduled.SCHEDULED_SUFFIX, ready, noti, 1),
        ("HDEL", processing, field),
        ("HDEL", name + protocol.DELIVERIES_SUFFIX, field),
        ("LTRIM", name + protocol.DEAD_SUFFIX, 0, -1),
        ("LMOVE", hand, noti, "LEFT", "RIGHT"),  # hand is empty: moves nothing
        # BLMOVE from a list that is not empty does not block (on Redis 6.2 a short timeout
        # can block for good): the probe's own hand, rotated onto itself.
        ("RPUSH", hand, "probe"),
        ("PEXPIRE", hand, 10_000),  # a worker killed before the DEL below leaves nothing
        ("BLMOVE", hand, hand, "LEFT", "RIGHT", 1),
        ("RPUSH", wake, 0),  # a wake: a promoter that pops it plans again, nothing more
        ("BLPOP", wake, 1),  # NAME_wake is not empty: does not block
        ("DEL", worker, hand),
    ]


async def _check(
    client: Redis, who: str, allow_eviction: bool, probe: Sequence[tuple[Any, ...]]
) -> None:
    """Waits out connection trouble (a worker may start before its Redis); raises
    RedisConfigurationError at once for what retrying cannot fix."""
    failures = 0
    while True:
        exc: Exception
        try:
            with anyio.fail_after(REPLY_TIMEOUT):
                policy = await _read_policy(client, probe)
            break
        except TimeoutError:  # a frozen Redis, or one too busy to answer
            exc = RedisTimeoutError(f"no reply within {REPLY_TIMEOUT}s")
        except (RedisError, OSError) as error:
            exc = error
        fatal = configuration_error(exc, who)
        if fatal is not None:
            raise fatal from exc
        failures += 1
        delay = backoff(failures)
        logger.warning("%s: cannot start on Redis yet (%s); retrying in %.1fs", who, exc, delay)
        await anyio.sleep(delay)
    _judge_policy(policy, who, allow_eviction)


async def _read_policy(client: Redis, probe: Sequence[tuple[Any, ...]]) -> str | Exception:
    """CONFIG GET maxmemory-policy and the probe, pipelined on a connection of its own made
    without redis-py's retries (a wrong password fails at once, not after several tries).
    Returns the policy, or the error that refused CONFIG GET (managed Redis often does)."""
    pool = client.connection_pool
    settings = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    conn = pool.connection_class(**settings)
    try:
        await conn.connect()  # type: ignore[no-untyped-call]
        commands = [("CONFIG", "GET", "maxmemory-policy"), *probe]
        await conn.send_packed_command(conn.pack_commands(commands))
        policy: str | Exception
        try:
            policy = _policy_of(await conn.read_response())
        except ResponseError as exc:
            policy = exc
        for _ in probe:
            await conn.read_response()  # an error reply raises
        return policy
    finally:
        with anyio.CancelScope(shield=True):  # also when the deadline cut the call short
            await conn.disconnect()


def _policy_of(reply: Any) -> str | Exception:
    values = list(reply.values()) if isinstance(reply, dict) else list(reply or [])[1:]
    if not values:  # some managed Redis answer nothing for a setting they hide
        return ResponseError("CONFIG GET maxmemory-policy returned nothing")
    value = values[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _judge_policy(policy: str | Exception, who: str, allow_eviction: bool) -> None:
    if policy == SAFE_POLICY:
        return
    risk = (
        "when memory is full Redis may evict the workers' liveness keys (they carry a TTL), "
        "and a sweep then requeues every task they are running: each runs twice (allkeys-* "
        "policies may evict the queues' tasks too)"
    )
    if isinstance(policy, Exception):
        logger.warning(
            "%s: could not check Redis's maxmemory-policy (CONFIG GET refused: %s); it must be "
            "%s (set it in your Redis's configuration or managed service's parameter group): %s",
            who, policy, SAFE_POLICY, risk,
        )  # fmt: skip
    elif allow_eviction:
        logger.warning(
            "%s: Redis's maxmemory-policy is %r, accepted by allow_eviction=True: %s",
            who, policy, risk,
        )  # fmt: skip
    else:
        raise RedisConfigurationError(
            f"{who}: Redis's maxmemory-policy is {policy!r}, which can evict keys: {risk}. "
            f"Set it to {SAFE_POLICY} (CONFIG SET maxmemory-policy {SAFE_POLICY}, and in "
            "redis.conf; on a managed Redis, in its parameter group), or accept the risk with "
            "allow_eviction=True on Worker and Sweeper (CLI: --allow-eviction)"
        )
