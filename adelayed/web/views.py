"""What the dashboard shows, read from Redis in a bounded number of commands per queue (never a
whole list): each queue's INFO, its workers and the tasks their slots hold, its schedules,
the next scheduled tasks, the newest dead letters; and the dead-letter actions."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any, cast

from .._dead_letters import DeadTask, _decode
from .._dead_repair import function_of
from .._envelope import parts_of
from .._execution import function_path_of
from .._protocol.dead import MOVE_DEAD_RECORDS
from .._queue_info import _as_dict, _pairs
from ..queue import Queue

SHOWN = 20  # scheduled tasks and dead letters listed per queue
SEARCHED = 1000  # dead letters a requeue or purge of one looks through for its record


async def overview(queue: Queue) -> dict[str, Any]:
    """The queue's counts, minutes, workers (and what each runs) and schedules."""
    info = await queue.info(15)
    workers = [asdict(worker) for worker in await queue.workers()]
    running = await _running(queue)
    for worker in workers:
        worker["tasks"] = sorted(running.get(worker["id"], []))
    schedules = [
        {"name": run.name, "next_run": run.next_run.isoformat(), "description": run.description}
        for run in await queue.schedules()
    ]
    return {**info.as_dict(), "workers": workers, "schedules": schedules}


async def _running(queue: Queue) -> dict[str, list[str]]:
    """Worker id -> the functions its slots run (one field per task in flight)."""
    wire = queue._wire()
    v1 = await wire.send("HGETALL", queue._processing_key)
    active = await wire.send("HGETALL", queue._active_key)
    by_worker: dict[str, list[str]] = {}
    for slot, payload in _as_dict(await wire.reply_to(v1)).items():
        by_worker.setdefault(slot.decode().rsplit(":", 1)[0], []).append(function_path_of(payload))
    ids = _as_dict(await wire.reply_to(active))
    envelopes = await _envelopes(queue, [id_.decode() for id_ in ids.values()])
    for slot, id_ in ids.items():
        func = envelopes.get(id_.decode(), "(unknown)")
        by_worker.setdefault(slot.decode().rsplit(":", 1)[0], []).append(func)
    return by_worker


async def _envelopes(queue: Queue, ids: list[str]) -> dict[str, str]:
    """Id -> function of these enveloped tasks (one HMGET)."""
    if not ids:
        return {}
    found = cast(list[bytes | None], await queue._wire().call("HMGET", queue._jobs_key, *ids))
    return {
        id_: function_path_of(parts_of(data)[1]) if data else "(gone)"
        for id_, data in zip(ids, found, strict=True)
    }


async def scheduled(queue: Queue) -> list[dict[str, Any]]:
    """The next SHOWN scheduled tasks, soonest first: id, function, due (ms)."""
    entries = _pairs(await queue._wire().call("ZRANGE", queue._scheduled_key, 0, SHOWN - 1,
                                              "WITHSCORES"))  # fmt: skip
    ids = [member.decode() for member, _ in entries]
    functions = await _envelopes(queue, ids)
    return [
        {"id": id_, "function": functions[id_], "due_ms": float(due)}
        for id_, (_, due) in zip(ids, entries, strict=True)
    ]


async def task(queue: Queue, task_id: str) -> dict[str, Any]:
    status = await queue.get(task_id).status()
    found = {key: value for key, value in asdict(status).items() if key != "error"}
    if status.error is not None:
        found["error"] = f"{status.error.type_name}: {status.error.message}"
        found["traceback"] = status.error.traceback_text
    return {key: value.isoformat() if hasattr(value, "isoformat") else value
            for key, value in found.items()}  # fmt: skip


async def dead(queue: Queue) -> list[dict[str, Any]]:
    """The newest SHOWN dead letters, each with the fingerprint that names it in an action."""
    records = cast(list[bytes], await queue._wire().call("LRANGE", queue._dead_key, 0, SHOWN - 1))
    return [_dead_row(record, _decode(record)) for record in records]


def _dead_row(record: bytes, dead_task: DeadTask) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint(record), "function": function_of(dead_task),
        "reason": dead_task.reason, "worker": dead_task.worker,
        "failed_at": dead_task.failed_at, "traceback": dead_task.traceback,
    }  # fmt: skip


def fingerprint(record: bytes) -> str:
    return hashlib.sha1(record).hexdigest()


async def move_dead(queue: Queue, fingerprints: set[str], requeue: bool) -> int:
    """Requeues (or deletes) the dead letters of these fingerprints among the newest
    SEARCHED, in one MOVE_DEAD_RECORDS call (safe to repeat)."""
    async with queue.redis.pipeline(transaction=True) as pipe:
        pipe.llen(queue._dead_key)
        pipe.lrange(queue._dead_key, 0, SEARCHED - 1)
        length, records = await pipe.execute()
    chosen: list[Any] = []
    for index, record in enumerate(records):
        if fingerprint(record) in fingerprints:
            chosen += [int(length) - index, record]  # its place counted from the oldest end
    if not chosen:
        return 0
    keys = (queue.name, queue._noti_key, queue._dead_key)
    return int(await MOVE_DEAD_RECORDS(queue._wire(), keys, ["1" if requeue else "0", *chosen]))
