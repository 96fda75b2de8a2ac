"""The wire protocol: every Redis key name and every Lua script, in this package.

- ``v1``: delayed v1's scripts as adelayed runs them (ENQUEUE, FETCH, REQUEUE, BURY,
  REQUEUE_LOST, REQUEUE_DEAD);
- ``scheduled``: tasks with options (envelopes): SCHEDULE, PROMOTE, RESCHEDULE, BURY_ENVELOPED,
  REQUEUE_ENVELOPED, and their keys (NAME_jobs, NAME_scheduled, NAME_ready, NAME_active,
  NAME_wake);
- ``priority``: FETCH_MANY, one fetch over a worker's several queues;
- ``schedules``: periodic tasks' TICK and NAME_schedules.

docs/protocol.md describes them all. Keys of a queue named NAME that v1 knows (PROTOCOL.md):

- ``NAME``             list of serialized tasks; producers push right, workers pop left.
- ``NAME_noti``        list of tokens (``1``), one per task in ``NAME``; workers block on it.
- ``NAME_processing``  hash: field = a liveness key, value = the task its holder is running.
- ``NAME_dead``        adelayed only: capped list of dead letters (tasks that cannot run).
- ``NAME_deliveries``  adelayed only: hash counting, per payload digest, deliveries to workers
                       that died (poison detection); expires when idle.
- ``<liveness key>``   a string with an expiry; while it exists its holder is alive.
- ``<worker key>:hand`` adelayed only: the token an idle worker's BLMOVE took, for a moment
                       (see FETCH).

adelayed's liveness keys are namespaced (``adelayed:worker:<64 random bits>:<slot>``): one per
concurrency slot, so every task in flight has its own processing field, under a key that delayed's
and go-delayed's sweepers see alive for as long as the worker lives.

Every script that moves a task is safe to run twice (redis-py re-sends a command whose reply was
lost, PROTOCOL.md hole 9): a second run finds its work done and changes nothing.
"""

from __future__ import annotations

NOTI_SUFFIX = "_noti"
PROCESSING_SUFFIX = "_processing"
DEAD_SUFFIX = "_dead"
DELIVERIES_SUFFIX = "_deliveries"
WORKER_KEY_PREFIX = "adelayed:worker:"

# Lua's unpack() is limited by the C stack (LUAI_MAXCSTACK = 8000 slots): scripts unpack at most
# 1000 items at a time. One ENQUEUE call carries up to this many tasks.
MAX_ITEMS_PER_CALL = 10_000


def hash_tag(queue_name: str) -> str:
    """The Redis Cluster hash tag of a queue name, by Redis's rule: from its first ``{`` to the
    first ``}`` after it, when at least one character lies between (``{{b}}`` -> ``{{b}``,
    hashed as ``{b``); '' when it has none (``a{}{b}`` hashes whole)."""
    start = queue_name.find("{")
    end = queue_name.find("}", start + 1) if start >= 0 else -1
    return queue_name[start : end + 1] if end > start + 1 else ""


def worker_key(worker_hex: str, queue_name: str) -> str:
    """The liveness key that claims a worker id; it carries the queue's hash tag, if any."""
    return f"{WORKER_KEY_PREFIX}{hash_tag(queue_name)}{worker_hex}"


def slot_key(worker_key_: str, slot: int) -> str:
    """The liveness key (and processing field) of one concurrency slot of a worker."""
    return f"{worker_key_}:{slot}"


def hand_key(worker_key_: str, index: int = 0) -> str:
    """The list an idle worker's BLMOVE puts a token in, for the FETCH right behind it (one
    per queue of the worker: ``index`` is the queue's place in its priority order)."""
    return f"{worker_key_}:hand" if index == 0 else f"{worker_key_}:hand{index}"


from .script import Script  # noqa: E402
from .v1 import BURY, ENQUEUE, FETCH, REQUEUE, REQUEUE_DEAD, REQUEUE_LOST  # noqa: E402

__all__ = [
    "BURY", "ENQUEUE", "FETCH", "REQUEUE", "REQUEUE_DEAD", "REQUEUE_LOST", "Script",
]  # fmt: skip
