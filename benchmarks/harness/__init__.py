"""The benchmark orchestrator: Redis, venvs, measurements, report (see run.py)."""
