"""``adelayed dead list|show|requeue|purge``: the dead-letter list of a queue, filtered by
reason (a substring) and function (its exact path); requeue and purge show their progress."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

import anyio
import click

from ._cli_inspect import NOT_FOUND
from ._cli_options import QueueOptions, with_queue_options
from ._cli_output import console, progress, table
from ._dead_letters import DeadTask
from ._dead_repair import DeadFilter, count_matching, function_of, repair
from .queue import Queue


def _filters(func: Any) -> Any:
    func = click.option("--reason", default=None, help="only those whose reason contains this")(
        func
    )
    return click.option("--function", default=None, metavar="MODULE:FUNC", help="only its tasks")(
        func
    )


@click.group()
def dead() -> None:
    """A queue's dead letters: the tasks that could not run, with why."""


@dead.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@_filters
@with_queue_options
def list_(options: QueueOptions, limit: int, as_json: bool, **which: Any) -> int:
    """The newest dead letters, newest first (# is what `dead show` takes)."""
    return int(anyio.run(_list, options, limit, as_json, DeadFilter(**which)))


async def _list(options: QueueOptions, limit: int, as_json: bool, which: DeadFilter) -> int:
    found = await _on_queue(options, lambda queue: _newest(queue, which, limit))
    if as_json:
        click.echo(json.dumps([_as_dict(i, d) for i, d in found], indent=2))
        return 0
    shown = table("#", "failed at (UTC)", "function", "reason", "worker")
    for index, dead_task in found:
        shown.add_row(
            str(index), _when(dead_task), function_of(dead_task), dead_task.reason[:100],
            dead_task.worker,
        )  # fmt: skip
    console().print(shown)
    return 0


@dead.command()
@click.argument("index", type=click.IntRange(min=0), metavar="#")
@with_queue_options
def show(options: QueueOptions, index: int) -> int:
    """One dead letter in full (# from `dead list`: 0 is the newest)."""
    return int(anyio.run(_show, options, index))


async def _show(options: QueueOptions, index: int) -> int:
    found = await _on_queue(options, lambda queue: queue.dead_tasks(index + 1))
    if len(found) <= index:
        print(f"adelayed: no dead letter #{index} (there are {len(found)})", file=sys.stderr)
        return NOT_FOUND
    for name, value in _as_dict(index, found[index]).items():
        click.echo(f"{name}: {value}")
    return 0


@dead.command()
@_filters
@with_queue_options
def requeue(options: QueueOptions, **which: Any) -> int:
    """Move the dead letters back onto the queue, oldest first (fix what killed them first)."""
    return int(anyio.run(_repair, options, DeadFilter(**which), True))


@dead.command()
@_filters
@click.option("--yes", is_flag=True, help="do not ask")
@with_queue_options
def purge(options: QueueOptions, yes: bool, **which: Any) -> int:
    """Delete the dead letters for good."""
    if not yes:
        click.confirm("delete these dead letters for good?", abort=True, err=True)
    return int(anyio.run(_repair, options, DeadFilter(**which), False))


async def _repair(options: QueueOptions, which: DeadFilter, requeue: bool) -> int:
    async def run(queue: Queue) -> int:
        total = await count_matching(queue, which)
        verb = "requeueing" if requeue else "purging"
        with progress(f"{verb} {queue.name!r}", total) as bar:
            return await repair(queue, which, requeue, bar.advance)

    moved = await _on_queue(options, run)
    click.echo(f"{'requeued' if requeue else 'purged'} {moved:,} dead letter(s)")
    return 0


async def _on_queue(options: QueueOptions, call: Any) -> Any:
    client = options.client()
    try:
        return await call(options.queues_on(client)[0])
    finally:
        await client.aclose()


async def _newest(queue: Queue, which: DeadFilter, limit: int) -> list[tuple[int, DeadTask]]:
    scanned = await queue.dead_tasks(limit if which.everything else queue._dead_letter_limit)
    return [(i, d) for i, d in enumerate(scanned) if which.matches(d)][:limit]


def _when(dead_task: DeadTask) -> str:
    moment = datetime.fromtimestamp(dead_task.failed_at, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _as_dict(index: int, dead_task: DeadTask) -> dict[str, Any]:
    return {
        "#": index, "failed_at": _when(dead_task), "function": function_of(dead_task),
        "reason": dead_task.reason, "worker": dead_task.worker,
        "traceback": dead_task.traceback, "payload": dead_task.payload.hex(),
    }  # fmt: skip
