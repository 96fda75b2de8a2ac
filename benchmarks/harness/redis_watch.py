"""How long Redis keeps another client waiting while a system works: a thread PINGs on a
connection of its own, and SLOWLOG records every command that ran 5 ms or longer.

The PING round trips include this machine's scheduling (2 shared cores: the pinger, the
worker and redis-server compete), so they bound Redis's stalls from above; SLOWLOG's
durations are the time each command (a whole script call) ran inside Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from .redis_server import Server

SLOW_US = 5_000  # SLOWLOG threshold: the bound for one script call
PING_PAUSE = 0.001  # seconds between one PING's reply and the next PING
_SLOWLOG_LEN = 10_000


class RedisWatch:
    """``with RedisWatch(server) as watch: ...``; then ``watch.result()``.

    ``pending_key``: a sorted set holding the tasks not yet due (promoted out of it): the
    probe is then ``ZCARD`` of it instead of PING (as cheap), and the watch notes the wall
    time it was first found empty."""

    def __init__(self, server: Server, pending_key: str | None = None) -> None:
        self._server = server
        self._pending_key = pending_key
        self.emptied_at = 0.0  # time.time() when pending_key was first seen empty
        self._client = redis.Redis.from_url(server.url)
        self._rtts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ping, daemon=True)
        self._slow: list[dict[str, Any]] = []
        self._started = 0.0
        self._seconds = 0.0

    def __enter__(self) -> RedisWatch:
        admin = self._server.client
        admin.config_set("slowlog-log-slower-than", SLOW_US)
        admin.config_set("slowlog-max-len", _SLOWLOG_LEN)
        admin.slowlog_reset()
        self._client.ping()  # connected before the clock starts
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._seconds = time.perf_counter() - self._started
        self._slow = list(self._server.client.slowlog_get(_SLOWLOG_LEN))
        self._server.client.config_set("slowlog-log-slower-than", 10_000)  # Redis's default
        self._client.close()

    def _ping(self) -> None:
        key = self._pending_key
        while not self._stop.is_set():
            start = time.perf_counter()
            left = self._client.zcard(key) if key else self._client.ping()
            self._rtts.append(time.perf_counter() - start)
            if key and not left and not self.emptied_at:
                self.emptied_at = time.time()
            time.sleep(PING_PAUSE)

    def result(self) -> dict[str, Any]:
        rtts = sorted(self._rtts)
        if not rtts:
            return {"pings": 0}
        slow_ms = sorted((entry["duration"] / 1000 for entry in self._slow), reverse=True)
        worst = max(self._slow, key=lambda entry: entry["duration"], default=None)
        return {
            "pings": len(rtts),
            "seconds": self._seconds,
            "ping_p50_ms": rtts[len(rtts) // 2] * 1000,
            "ping_p99_ms": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] * 1000,
            "ping_max_ms": rtts[-1] * 1000,
            "pings_over_5ms": sum(1 for rtt in rtts if rtt > SLOW_US / 1e6),
            "slow_calls": len(slow_ms),
            "slow_max_ms": slow_ms[0] if slow_ms else 0.0,
            "slowest_command": _command(worst) if worst else "",
        }


def _command(entry: dict[str, Any]) -> str:
    command = entry.get("command", b"")
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return " ".join(text.split()[:2])[:60]
