"""The one redis-server of a run, and the orchestrator's view of it: reset and command counts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import redis

from adelayed.embedded import EmbeddedRedis

PREFERRED_BINARY = "/usr/bin/redis-server"
# The orchestrator's own commands, never counted against a system.
_OWN_COMMANDS = frozenset(
    {"info", "config|resetstat", "flushall", "config|set", "slowlog|reset", "slowlog|get"}
)


@dataclass
class Server:
    """A private redis-server on a free loopback port (no persistence)."""

    embedded: EmbeddedRedis
    client: redis.Redis = field(init=False)

    @classmethod
    def start(cls) -> Server:
        binary = PREFERRED_BINARY if os.access(PREFERRED_BINARY, os.X_OK) else None
        server = cls(EmbeddedRedis(binary=binary).start())
        server.client = redis.Redis.from_url(server.url)
        return server

    @property
    def url(self) -> str:
        return self.embedded.url

    @property
    def binary(self) -> str:
        return self.embedded.binary

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def reset(self) -> None:
        """Empties every database and zeroes the command statistics."""
        self.client.flushall()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.client.config_resetstat()

    def command_calls(self) -> dict[str, int]:
        """Calls per command since the last reset (``INFO commandstats``: commands run by Lua
        scripts and functions are counted too), without the orchestrator's own."""
        stats = self.client.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()
        }
        return {name: n for name, n in calls.items() if name not in _OWN_COMMANDS}

    def close(self) -> None:
        self.client.close()
        self.embedded.close()
