"""``adelayed doctor``: audits a live queue's invariants and says, for each problem found, what
it means and the exact command that repairs it; ``repair`` applies the safe repairs only.

Checked: tokens against tasks (missing tokens strand tasks for delayed's and go-delayed's
workers; phantom ones cost empty fetches), tasks in flight whose worker's lease is gone (they
wait for a sweep), envelopes in no place (``NAME_jobs`` against scheduled + ready + active),
scheduled tasks long overdue (no adelayed worker promotes them), tasks queued with no live
adelayed worker, dead letters added lately, and live workers whose clocks or versions differ.
A count read while a worker's fetch holds a token in its hand is off by one for a moment: a
token difference is reported only when two audits a moment apart both show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import anyio

from ._protocol.audit import AUDIT
from ._protocol.scheduled import PROMOTE
from .queue import Queue

OVERDUE_MS = 60_000  # a scheduled task this late has no promoter
SKEW_S = 2.0
_RECHECK_S = 0.2


@dataclass(frozen=True)
class Finding:
    """One problem: ``what`` it is and means, ``repair`` the command that fixes it, ``safe``
    when ``doctor --repair`` applies it (it only runs what every sweep or promoter runs)."""

    check: str
    what: str
    repair: str
    safe: bool


class _Audit(NamedTuple):
    now: int
    waiting: int
    ready: int
    tokens: int
    scheduled: int
    active: int
    processing: int
    jobs: int
    earliest: float | None
    holders: list[bytes]  # the liveness keys of every task in flight


async def _audit(queue: Queue) -> _Audit:
    keys = (
        queue.name, queue._noti_key, queue._ready_key, queue._scheduled_key, queue._active_key,
        queue._processing_key, queue._jobs_key,
    )  # fmt: skip
    reply = cast(list[Any], await AUDIT(queue._wire(), keys, ()))
    now, waiting, ready, tokens, scheduled, active, processing, jobs = map(int, reply[:8])
    earliest = None if reply[8] is None else float(reply[8])
    holders = [*reply[9], *reply[10]]
    return _Audit(
        now, waiting, ready, tokens, scheduled, active, processing, jobs, earliest, holders
    )


async def examine(queue: Queue, command: str) -> list[Finding]:
    """Every problem found on ``queue``; ``command`` is how to name it on a command line
    (``adelayed -q NAME``)."""
    first = await _audit(queue)
    await anyio.sleep(_RECHECK_S)
    second = await _audit(queue)
    found = _tokens(first, second, command)
    found += await _lost(queue, second, command)
    found += _places(second, command)
    found += await _liveness(queue, second, command)
    return found


def _tokens(first: _Audit, second: _Audit, command: str) -> list[Finding]:
    gaps = [a.tokens - (a.waiting + a.ready) for a in (first, second)]
    if gaps[0] == 0 or gaps[1] == 0 or (gaps[0] > 0) != (gaps[1] > 0):
        return []
    gap = gaps[1]
    if gap < 0:
        what = (
            f"{-gap} queued task(s) have no token: delayed's and go-delayed's workers, which "
            "wait on tokens, will not take them (adelayed's take them at their next fetch)"
        )
    else:  # fmt: skip
        what = f"{gap} phantom token(s) with no task behind them: each costs one empty fetch"
    return [Finding("tokens", what, f"{command} doctor --repair  (a sweep: REQUEUE_LOST)", True)]


async def _lost(queue: Queue, audit: _Audit, command: str) -> list[Finding]:
    if not audit.holders:
        return []
    wire = queue._wire()
    sent = [await wire.send("EXISTS", holder) for holder in audit.holders]
    alive = [int(await wire.reply_to(waiter)) for waiter in sent]
    lost = alive.count(0)
    if not lost:
        return []
    what = (f"{lost} task(s) in flight belong to workers whose lease is gone (dead or cut "
            "off): no sweep has requeued them yet (is a sweeper or worker running?)")  # fmt: skip
    return [Finding("lost", what, f"{command} doctor --repair  (a sweep: REQUEUE_LOST)", True)]


def _places(audit: _Audit, command: str) -> list[Finding]:
    placed = audit.scheduled + audit.ready + audit.active
    found = []
    if audit.jobs != placed:
        what = (f"NAME_jobs holds {audit.jobs} envelope(s) but scheduled + ready + active hold "
                f"{placed} id(s): an envelope in no place never runs, or an id without its "
                "envelope is dead-lettered when fetched")  # fmt: skip
        repair = "no safe repair: report it (with `redis-cli HKEYS` of NAME_jobs) as a bug"
        found.append(Finding("places", what, repair, False))
    if audit.earliest is not None and audit.now - audit.earliest > OVERDUE_MS:
        late = (audit.now - audit.earliest) / 1000
        what = (
            f"the earliest scheduled task is {late:,.0f}s overdue: no adelayed worker "
            "promotes this queue's scheduled tasks (delayed's and go-delayed's cannot)"
        )
        repair = f"start an adelayed worker on it, or {command} doctor --repair (promotes them)"
        found.append(Finding("overdue", what, repair, True))
    return found


async def _liveness(queue: Queue, audit: _Audit, command: str) -> list[Finding]:
    found = []
    info = await queue.info(15)
    live = [worker for worker in await queue.workers() if worker.alive]
    if not live and audit.waiting + audit.ready:
        what = (f"{audit.waiting + audit.ready} task(s) wait and no adelayed worker is alive "
                "(delayed's and go-delayed's workers do not register)")  # fmt: skip
        found.append(Finding("workers", what, f"{command} worker MODULE", False))
    dead = sum(minute.dead for minute in info.minutes)
    if dead:
        what = f"{dead} task(s) dead-lettered in the last 15 minutes ({info.dead} in all)"
        repair = f"{command} dead list; fix the cause, then {command} dead requeue"
        found.append(Finding("dead", what, repair, False))
    for worker in live:
        if abs(worker.clock_skew) > SKEW_S:
            what = (f"worker {worker.id} on {worker.host} (pid {worker.pid}): its clock is "
                    f"{worker.clock_skew:+.1f}s off Redis's (adelayed times everything on Redis's "
                    "clock; the task's own timestamps are off)")  # fmt: skip
            found.append(Finding("clock", what, "fix the host's time sync (NTP)", False))
    versions = sorted({worker.version for worker in live})
    if len(versions) > 1:
        what = f"live workers run different adelayed versions: {', '.join(versions)}"
        found.append(Finding("versions", what, "finish the rolling upgrade", False))
    return found


async def repair(queue: Queue, found: list[Finding]) -> list[str]:
    """Applies the safe repairs among ``found``; returns what each did."""
    done = []
    checks = {finding.check for finding in found if finding.safe}
    if checks & {"tokens", "lost"}:
        requeued = await queue.requeue_lost()
        done.append(f"swept: {requeued} lost task(s) requeued, tokens restored")
    if "overdue" in checks:
        moved = 0
        keys = (queue._scheduled_key, queue._ready_key, queue._noti_key)
        while count := int((await PROMOTE(queue._wire(), keys, (1000,)))[0]):
            moved += count
        done.append(f"promoted {moved} due task(s)")
    return done
