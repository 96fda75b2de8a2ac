"""``python -m systems NAME COMMAND --url URL ...``: one measurement of one system, as JSON.

Run from benchmarks/ with the system's own interpreter (a peer's venv, or adelayed's).
The system's module is imported as ``systems.NAME``, so its task functions have an
importable path for workers that import tasks by name.
"""

import importlib
import sys

from systems import common

if len(sys.argv) < 2:
    raise SystemExit("usage: python -m systems NAME COMMAND --url URL [options]")
module = importlib.import_module(f"systems.{sys.argv[1]}")
common.main(module, sys.argv[2:])
