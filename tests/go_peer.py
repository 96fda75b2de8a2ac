"""The real go-delayed for the interop tests: builds tests/peers/go_delayed (our small driver of
go-delayed's Worker, RequeueLost and Enqueue) once per session, offline, against the vendored
go-delayed source in ../shared/peers/go-delayed/vendor, and runs it as processes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msgpack

from tests.processes import ROOT

SOURCE = ROOT / "tests" / "peers" / "go_delayed"
VENDOR = Path(
    os.environ.get("ADELAYED_GO_DELAYED_VENDOR", ROOT.parent / "shared/peers/go-delayed/vendor")
)
_BUILD_ENV = {
    "GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GOSUMDB": "off", "GOTOOLCHAIN": "local",
    "CGO_ENABLED": "0",
}  # fmt: skip


def unavailable() -> str | None:
    """Why the go-delayed peer cannot be built here, or None when it can."""
    if shutil.which("go") is None:
        return "no Go toolchain on PATH (apt-get install golang-go; .ci/run does)"
    if not (VENDOR / "modules.txt").exists():
        return f"no vendored go-delayed at {VENDOR} (set ADELAYED_GO_DELAYED_VENDOR)"
    return None


def build(folder: Path) -> Path:
    """Compiles the peer into ``folder``; returns the binary's path."""
    work = folder / "src"
    shutil.copytree(SOURCE, work)
    shutil.copytree(VENDOR, work / "vendor")
    binary = folder / "gopeer"
    env = {**os.environ, **_BUILD_ENV, "GOCACHE": str(folder / "cache"), "HOME": str(folder)}
    subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=work, env=env, check=True,
        capture_output=True, timeout=300,
    )  # fmt: skip
    return binary


def address(url: str) -> str:
    """host:port of a redis:// URL (go-delayed's pool dials an address)."""
    return url.split("://", 1)[1].split("/", 1)[0]


class GoPeer:
    """Runs the built peer against one Redis."""

    def __init__(self, binary: Path, url: str) -> None:
        self.binary = binary
        self.addr = address(url)

    def worker(self, queue: str, out: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                [str(self.binary), "worker", self.addr, queue, str(out)],
                stdout=output, stderr=output,
            )  # fmt: skip

    def sweep(self, queue: str) -> int:
        done = subprocess.run(
            [str(self.binary), "sweep", self.addr, queue], check=True, capture_output=True
        )
        return int(done.stdout)

    def enqueue_py_task(self, queue: str, func_path: str, args: object, kwargs: object) -> None:
        fields = msgpack.packb([func_path, args, kwargs]).hex()
        subprocess.run(
            [str(self.binary), "enqueue", self.addr, queue, fields], check=True,
            capture_output=True,
        )  # fmt: skip

    def go_tasks(self) -> list[bytes]:
        """The payloads go-delayed writes for NewGoTask("main.Ping") and ("main.Add", 1, 2)."""
        done = subprocess.run(
            [str(self.binary), "gotask", self.addr, "unused"], check=True, capture_output=True
        )
        return [bytes.fromhex(line) for line in done.stdout.decode().split()]


def runs(out: Path) -> list[tuple[str, object]]:
    """What the peer's worker ran: (handler name, the value it received), in order."""
    if not out.exists():
        return []
    lines = out.read_text().splitlines()
    return [
        (name, msgpack.unpackb(bytes.fromhex(packed), strict_map_key=False))
        for name, packed in (line.split(" ", 1) for line in lines)
    ]
