"""The options every ``adelayed`` command shares (the connection and the queues), accepted
before or after the command's name, and the queues they describe.

A value given after the command wins over one given before it; ``--queue`` given on both sides
adds up, in the order written. ``--redis-url`` falls back to ``$ADELAYED_REDIS_URL``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import redis.asyncio as redis
from click.core import ParameterSource

from .errors import ConfigurationError
from .queue import Queue

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--redis-url", "--url", "redis_url"), {
        "envvar": "ADELAYED_REDIS_URL", "default": "redis://localhost:6379/0",
        "show_envvar": True, "metavar": "URL",
        "help": "Redis URL (redis://, rediss://, unix://)",
    }),
    (("--queue", "-q", "queue"), {
        "multiple": True, "metavar": "QUEUE",
        "help": "queue name (default: default); repeat it for several, highest priority first",
    }),
    (("--keep-alive-timeout", "keep_alive_timeout"), {
        "type": float, "default": 60.0, "metavar": "SECONDS",
        "help": "a worker silent this long is dead: its tasks are requeued",
    }),
    (("--max-deliveries", "max_deliveries"), {
        "type": click.IntRange(min=0), "default": 5, "metavar": "N",
        "help": "dead-letter a task whose worker died this many times (0: requeue it forever)",
    }),
    (("--max-payload-size", "max_payload_size"), {
        "type": click.IntRange(min=1), "default": 1 << 20, "metavar": "BYTES",
        "help": "largest task payload, in bytes",
    }),
    (("--allow-eviction", "allow_eviction"), {
        "is_flag": True, "default": False,
        "help": "start although Redis's maxmemory-policy may evict keys (an evicted liveness "
        "key gets a running task run twice)",
    }),
    (("--log-level", "log_level"), {
        "type": click.Choice(LOG_LEVELS, case_sensitive=False), "default": "INFO",
    }),
]  # fmt: skip
_NAMES = [decls[-1] for decls, _ in _OPTIONS]


@dataclass(frozen=True)
class QueueOptions:
    """The shared options of one command line, both sides merged."""

    redis_url: str
    queues: tuple[str, ...]
    keep_alive_timeout: float
    max_deliveries: int
    max_payload_size: int
    allow_eviction: bool
    log_level: str

    def client(self) -> redis.Redis:
        try:
            return redis.Redis.from_url(self.redis_url)
        except ValueError as exc:
            raise ConfigurationError(f"--redis-url: {exc}") from exc

    def queues_on(self, client: redis.Redis) -> list[Queue]:
        return [
            Queue(
                name,
                client,
                keep_alive_timeout=self.keep_alive_timeout,
                max_deliveries=self.max_deliveries or None,
                max_payload_size=self.max_payload_size,
            )
            for name in self.queues
        ]


def shared_options(func: F) -> F:
    """Adds the shared options to a command (or to the group, for before its name)."""
    for decls, attrs in reversed(_OPTIONS):
        func = click.option(*decls, **attrs)(func)
    return func


def with_queue_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """A command taking the shared options after its name too, handed to ``func`` merged
    with those before it as its first argument."""

    @functools.wraps(func)
    def command(**params: Any) -> Any:
        options = merged(click.get_current_context(), {name: params.pop(name) for name in _NAMES})
        logging.getLogger("adelayed").setLevel(options.log_level)
        return func(options, **params)

    return shared_options(command)


def merged(ctx: click.Context, after: dict[str, Any]) -> QueueOptions:
    root = ctx.find_root()  # the group: the options before the command's name
    before = root.params if root is not ctx else after
    values: dict[str, Any] = {}
    for name in _NAMES:
        given_after = ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        values[name] = after[name] if given_after else before[name]
    queues = (*before["queue"], *after["queue"]) if before is not after else after["queue"]
    if len(set(queues)) < len(queues):
        raise click.UsageError(f"--queue names a queue twice: {list(queues)}")
    del values["queue"]
    return QueueOptions(queues=queues or ("default",), **values)
