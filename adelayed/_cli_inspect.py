"""``adelayed info`` (each queue at a glance, one round trip a queue) and ``adelayed task ID``
(where one task is, and its result or error)."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import click

from ._cli_options import QueueOptions, with_queue_options
from ._cli_output import console, table
from ._queue_info import QueueInfo
from .errors import AdelayedError, TaskFailed
from .queue import Queue

NOT_FOUND = 3  # the exit code of a lookup that found nothing


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@click.option("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS")
@click.option(
    "--minutes", type=click.IntRange(1, 60), default=5, show_default=True,
    help="the window of the throughput and failure counts",
)  # fmt: skip
@with_queue_options
def info(options: QueueOptions, as_json: bool, watch: float | None, minutes: int) -> int:
    """Show each queue: queued, scheduled, in flight, dead, live workers, and what its tasks
    did over the last minutes."""
    return int(anyio.run(_info, options, as_json, watch, minutes))


async def _info(options: QueueOptions, as_json: bool, watch: float | None, minutes: int) -> int:
    client = options.client()
    try:
        queues = options.queues_on(client)
        if watch is None or as_json:
            infos = [await queue.info(minutes) for queue in queues]
            if as_json:
                click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
            else:
                console().print(_info_table(infos, minutes))
            return 0
        await _watch(queues, watch, minutes)
        return 0
    finally:
        await client.aclose()


async def _watch(queues: list[Queue], every: float, minutes: int) -> None:
    from rich.live import Live

    with Live(console=console(), auto_refresh=False) as live:
        while True:
            live.update(_info_table([await q.info(minutes) for q in queues], minutes))
            live.refresh()
            await anyio.sleep(every)


def _info_table(infos: list[QueueInfo], minutes: int) -> Any:
    shown = table(
        "queue", "queued", "scheduled", "in flight", "dead", "workers",
        f"done/s ({minutes} min)", f"failed ({minutes} min)", "retried", "dead-lettered",
    )  # fmt: skip
    for i in infos:
        done = sum(m.done for m in i.minutes)
        shown.add_row(
            i.name, f"{i.queued:,}", f"{i.scheduled:,}", f"{i.in_flight:,}", f"{i.dead:,}",
            str(i.live_workers), f"{done / (60 * minutes):,.1f}",
            f"{sum(m.failed for m in i.minutes):,}", f"{sum(m.retried for m in i.minutes):,}",
            f"{sum(m.dead for m in i.minutes):,}",
        )  # fmt: skip
    return shown


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@with_queue_options
def task(options: QueueOptions, task_id: str, as_json: bool) -> int:
    """Show one task (enqueued with an option, so it has an ID): its state, attempt and
    worker, and its result or error once it ended. Exit code 3 when the queue knows no such
    task."""
    return int(anyio.run(_task, options, task_id, as_json))


async def _task(options: QueueOptions, task_id: str, as_json: bool) -> int:
    client = options.client()
    try:
        queue = options.queues_on(client)[0]
        found = await _task_fields(queue, task_id)
    finally:
        await client.aclose()
    if found["state"] == "unknown":
        print(
            f"adelayed: queue {queue.name!r} knows no task {task_id!r}: it was enqueued on "
            "another queue (-q), with no option (a plain task has no id), or its result expired",
            file=sys.stderr,
        )
        return NOT_FOUND
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
    else:
        for name, value in found.items():
            if value is not None:
                click.echo(f"{name:>9}: {value}")
    return 0


async def _task_fields(queue: Queue, task_id: str) -> dict[str, Any]:
    handle = queue.get(task_id)
    status = await handle.status()
    fields: dict[str, Any] = {
        "id": task_id, "queue": queue.name, "state": status.state, "attempt": status.attempt,
        "worker": status.worker, "due": status.due, "finished": status.finished,
        "progress": status.progress, "message": status.message,
    }  # fmt: skip
    if status.state == "done":
        try:
            fields["result"] = await handle.result(timeout=1)
        except AdelayedError as exc:  # expired in between
            fields["result"] = f"(not readable: {exc})"
    error: TaskFailed | None = status.error
    if error is not None:
        fields["error"] = f"{error.type_name}: {error.message}"
        fields["traceback"] = error.traceback_text
    return fields
