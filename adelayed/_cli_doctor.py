"""``adelayed doctor [--repair] [--json]``: what is wrong with each queue, and the command that
fixes it. Exit code 0 when nothing was found (or ``--repair`` fixed all of it), 4 when a
problem remains."""

from __future__ import annotations

import json
from dataclasses import asdict

import anyio
import click

from ._cli_options import QueueOptions, with_queue_options
from ._doctor import Finding, examine, repair

PROBLEMS_FOUND = 4


@click.command()
@click.option("--repair", "apply", is_flag=True, help="apply the safe repairs (a sweep, a promote)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@with_queue_options
def doctor(options: QueueOptions, apply: bool, as_json: bool) -> int:
    """Audit each queue's invariants: tokens against tasks, tasks of dead workers, envelopes in
    no place, overdue scheduled tasks, workers, dead letters, clocks and versions. Exit code 4
    when a problem remains."""
    return int(anyio.run(_doctor, options, apply, as_json))


async def _doctor(options: QueueOptions, apply: bool, as_json: bool) -> int:
    client = options.client()
    remaining: list[tuple[str, Finding]] = []
    report: dict[str, object] = {}
    try:
        for queue in options.queues_on(client):
            command = f"adelayed -q {queue.name}"
            found = await examine(queue, command)
            repaired = await repair(queue, found) if apply and found else []
            if repaired:
                found = await examine(queue, command)
            remaining += [(queue.name, finding) for finding in found]
            report[queue.name] = {"found": [asdict(f) for f in found], "repaired": repaired}
            if not as_json:
                _print(queue.name, found, repaired)
    finally:
        await client.aclose()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    return PROBLEMS_FOUND if remaining else 0


def _print(name: str, found: list[Finding], repaired: list[str]) -> None:
    for line in repaired:
        click.echo(f"{name}: repaired: {line}")
    if not found:
        click.echo(f"{name}: ok")
    for finding in found:
        click.echo(f"{name}: {finding.check}: {finding.what}")
        click.echo(f"{' ' * len(name)}  repair: {finding.repair}")
