"""A Sentinel-managed Redis on loopback for the tests: one primary, one replica, three
sentinels (real ``redis-server --sentinel`` processes), quick to notice a failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from adelayed.embedded import EmbeddedRedis, find_redis_server
from tests.helpers import start_replica

SERVICE = "jobs-primary"
DOWN_AFTER_MS = 1000  # a primary silent this long is down; sentinels then fail over
_SYNC = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sentinels:
    """The servers (``servers[0]`` the first primary) and the sentinels' ports."""

    servers: list[EmbeddedRedis]
    ports: list[int]
    folder: Path
    replicas: int = 1
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    def primary_port(self) -> int:
        """The primary's port, as the sentinels now say."""
        with redis.Redis(port=self.ports[0], socket_timeout=2) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def primary(self) -> EmbeddedRedis:
        port = self.primary_port()
        return next(server for server in self.servers if server.port == port)

    def wait_for_new_primary(self, old_port: int, within: float = 30) -> float:
        """Waits until the sentinels name another primary and it accepts writes; returns
        when (``time.monotonic()``)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port != old_port and _writable(port):
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"no failover within {within}s")


def _writable(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.info("replication")["role"] == "master")
    except redis.RedisError:
        return False


def _sentinel_conf(folder: Path, port: int, primary: int) -> Path:
    path = folder / f"sentinel-{port}.conf"
    path.write_text(
        f"port {port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n"
        f"dir {folder}\nlogfile sentinel-{port}.log\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SERVICE} 5000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )
    return path


@contextmanager
def sentinel_setup(replicas: int = 1) -> Iterator[Sentinels]:
    """A primary, ``replicas`` replicas and three sentinels (quorum 2), watching each other."""
    primary = EmbeddedRedis(dict(_SYNC)).start()
    servers = [primary] + [start_replica(primary) for _ in range(replicas)]
    folder = Path(tempfile.mkdtemp(prefix="adelayed-sentinel-"))
    setup = Sentinels(servers, [_free_port() for _ in range(3)], folder, replicas=replicas)
    try:
        for port in setup.ports:
            conf = _sentinel_conf(folder, port, primary.port)
            setup.processes.append(
                subprocess.Popen(
                    [find_redis_server(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        _wait_watching(setup)
        yield setup
    finally:
        for process in setup.processes:
            process.kill()
            process.wait()
        for server in setup.servers:
            if server._process is not None and server._process.poll() is None:
                os.kill(server.pid, signal.SIGCONT)  # a stopped one cannot be stopped
            server.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_watching(setup: Sentinels, within: float = 20) -> None:
    """Until every sentinel knows the replica and the other sentinels."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ready = all(_sees_everyone(port, setup.replicas) for port in setup.ports)
        except redis.RedisError:
            ready = False
        if ready:
            return
        time.sleep(0.1)
    raise AssertionError("the sentinels did not find each other and the replica")


def _sees_everyone(port: int, replicas: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as sentinel:
        fields = sentinel.sentinel_master(SERVICE)
        return int(fields["num-slaves"]) >= replicas and int(fields["num-other-sentinels"]) >= 2
