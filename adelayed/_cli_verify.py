"""``adelayed verify``: the self-test of a deployment (``_verify``), on a scratch queue of the
user's Redis, with their workers' settings. Exit code 0 when no task was lost or duplicated
beyond what a kill explains, 4 otherwise."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import anyio
import click

from ._cli_doctor import PROBLEMS_FOUND
from ._cli_options import QueueOptions, with_queue_options
from ._cli_output import progress
from ._verify import Plan, Verdict, scratch_name, verify
from .queue import Queue


@click.command("verify")
@click.option("--tasks", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--kills", type=click.IntRange(min=0), default=5, show_default=True,
              help="worker processes SIGKILLed at random (each replaced)")  # fmt: skip
@click.option("--keep-alive-interval", type=float, default=15.0, show_default=True)
@click.option("--sweep-interval", type=float, default=60.0, show_default=True)
@click.option("--no-cut", is_flag=True, help="do not cut the workers' Redis connections")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@with_queue_options
def verify_command(options: QueueOptions, as_json: bool, no_cut: bool, **given: Any) -> int:
    """Run a chaos check on a scratch queue of this Redis (deleted afterwards): real workers
    with these settings, SIGKILLs at random, a connection cut; report lost and duplicated
    executions, counted one by one. It lasts about keep-alive-timeout + 2 sweep intervals per
    kill round."""
    plan = Plan(cut=not no_cut, **given)
    return int(anyio.run(_verify, options, plan, as_json))


async def _verify(options: QueueOptions, plan: Plan, as_json: bool) -> int:
    client = options.client()
    name = scratch_name(options.queues[0])
    try:
        queue = Queue(
            name, client, keep_alive_timeout=options.keep_alive_timeout,
            max_deliveries=options.max_deliveries or None,
        )  # fmt: skip
        args = _worker_args(options, plan)
        with progress(f"verify on {name!r}", plan.tasks) as bar:
            verdict = await verify(queue, options.redis_url, plan, args, bar.update)
    finally:
        await client.aclose()
    if as_json:
        click.echo(json.dumps({**asdict(verdict), "ok": verdict.ok}, indent=2))
    else:
        _print(verdict)
    return 0 if verdict.ok else PROBLEMS_FOUND


def _worker_args(options: QueueOptions, plan: Plan) -> list[str]:
    return [
        "--keep-alive-timeout", str(options.keep_alive_timeout),
        "--max-deliveries", str(options.max_deliveries), "--log-level", "WARNING",
        "worker", "adelayed._verify_tasks", "--concurrency", str(plan.concurrency),
        "--keep-alive-interval", str(plan.keep_alive_interval),
        "--sweep-interval", str(plan.sweep_interval),
    ]  # fmt: skip


def _print(verdict: Verdict) -> None:
    click.echo(
        f"{verdict.tasks:,} tasks, {verdict.executions:,} completed runs, {verdict.kills} "
        f"worker(s) SIGKILLed holding {verdict.interrupted} task(s), {verdict.cuts} "
        f"connection(s) cut, {verdict.seconds:.0f}s"
    )
    click.echo(
        f"lost: {len(verdict.lost)}"
        + (f" ({', '.join(verdict.lost[:20])})" if verdict.lost else "")
    )
    click.echo(f"dead-lettered (their workers died max-deliveries times): {verdict.dead_lettered}")
    explained = sum(verdict.duplicates.values()) - sum(verdict.unexplained.values())
    click.echo(f"duplicated runs explained by a kill (at-least-once delivery): {explained}")
    click.echo(
        f"duplicated runs no kill explains: {sum(verdict.unexplained.values())}"
        + (f" ({', '.join(list(verdict.unexplained)[:20])})" if verdict.unexplained else "")
    )
    click.echo("ok" if verdict.ok else "FAILED: see above")


def _first(tags: Any) -> str:
    """The first 20 tags, or nothing."""
    listed = list(tags)[:20]
    return f" ({', '.join(listed)})" if listed else ""
