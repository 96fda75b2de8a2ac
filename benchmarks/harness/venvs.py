"""One virtualenv per peer under benchmarks/.venvs/<peer>, installed from peers/<peer>.txt.

The peers' pins conflict (arq 0.28 wants redis<6, taskiq-redis 1.2 wants redis>=8), so each
lives alone. A venv is reused while its recorded requirements match the pin file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
VENVS_DIR = BENCH_DIR / ".venvs"
PINS_DIR = BENCH_DIR / "peers"
_MARKER = ".bench-requirements"


class PeerUnavailableError(Exception):
    """The peer could not be installed or imported; the message says why."""


def _run(args: list[str], what: str, timeout: float = 600) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        tail = [line for line in lines if not line.startswith("WARNING:")][-15:]
        raise PeerUnavailableError(f"{what} failed (exit {done.returncode}): " + "\n".join(tail))


def _check_isolated(python: Path, peer: str) -> None:
    """Peer runners run from benchmarks/ and must not see adelayed (nor its dependencies)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('adelayed') is not None)"
    done = subprocess.run([str(python), "-c", probe], cwd=BENCH_DIR, check=False)
    if done.returncode != 0:
        raise PeerUnavailableError(f"adelayed is importable from {peer}'s venv: refusing to run it")


def ensure(peer: str, log: list[str]) -> Path:
    """The python of ``peer``'s venv, created or updated as needed; PeerUnavailableError if not."""
    pins = PINS_DIR / f"{peer}.txt"
    venv = VENVS_DIR / peer
    python = venv / "bin" / "python"
    wanted = pins.read_text()
    marker = venv / _MARKER
    if not (python.exists() and marker.exists() and marker.read_text() == wanted):
        if not python.exists():
            log.append(f"{peer}: creating {venv}")
            _run([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}")
        log.append(f"{peer}: pip install -r peers/{pins.name}")
        _run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
             str(pins)],
            f"pip install -r {pins.name}",
        )  # fmt: skip
        marker.write_text(wanted)
    _check_isolated(python, peer)
    return python
