"""``adelayed enqueue MODULE:FUNC``: one task from the command line (a retry by hand, a smoke
test of a deployment), with its arguments as JSON."""

from __future__ import annotations

import json
from typing import Any

import anyio
import click

from ._cli_options import QueueOptions, with_queue_options
from .task import PyTask


def _json(kind: type) -> Any:
    def parse(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return kind()
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON ({exc})") from None
        if not isinstance(parsed, kind):
            raise click.BadParameter(f"must be a JSON {'array' if kind is list else 'object'}")
        return parsed

    return parse


@click.command()
@click.argument("func_path", metavar="MODULE:FUNC")
@click.option("--args", callback=_json(list), help="positional arguments, a JSON array")
@click.option("--kwargs", callback=_json(dict), help="keyword arguments, a JSON object")
@click.option("--delay", type=click.FloatRange(min=0), default=None, metavar="SECONDS")
@click.option("--keep-result", type=click.FloatRange(min=0), default=None, metavar="SECONDS")
@click.option("--key", default=None, help="a deduplication key (while it is queued or running)")
@with_queue_options
def enqueue(options: QueueOptions, func_path: str, **settings: Any) -> int:
    """Enqueue one task of MODULE:FUNC; prints its id (a task with no option has none)."""
    return int(anyio.run(_enqueue, options, func_path, settings))


async def _enqueue(options: QueueOptions, func_path: str, settings: dict[str, Any]) -> int:
    task = PyTask(func_path, args=settings.pop("args"), kwargs=settings.pop("kwargs"))
    chosen = {name: value for name, value in settings.items() if value is not None}
    client = options.client()
    try:
        handle = await options.queues_on(client)[0].enqueue(task, **chosen)
    finally:
        await client.aclose()
    if handle.duplicate:
        click.echo(f"duplicate of {handle.id} (key {settings['key']!r} is held): nothing enqueued")
    else:
        click.echo(handle.id or "enqueued (a plain task: no id)")
    return 0
