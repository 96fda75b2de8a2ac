"""Markdown tables from the repetitions' results: medians, marks, and adelayed's ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .systems import RAW, System

Result = dict[str, Any]
Results = dict[str, dict[str, list[Result]]]  # system -> metric -> one result per repetition

TIMES, DASH = "\u00d7", "\u2013"  # the multiplication sign and the dash of the tables
CAPPED = "*"
SEQUENTIAL = "†"
_WORKER_RUNS = ("c10", "c100", "sync")  # the metrics of throughput runs (plain)


@dataclass(frozen=True)
class Column:
    title: str
    metric: str  # key in Results[system]
    field: str  # key in each result
    fmt: Callable[[float], str]
    higher_is_better: bool
    missing: str = "n/a"  # shown when the system does not support the measurement


def rate(value: float) -> str:
    return f"{value:,.0f}"


def ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def two(value: float) -> str:
    return f"{value:.2f}"


def one(value: float) -> str:
    return f"{value:.1f}"


def median(reps: Sequence[Result], field: str) -> float | None:
    values = [float(r[field]) for r in reps if field in r and "error" not in r]
    return statistics.median(values) if values else None


def _cell(system: System, reps: Sequence[Result], column: Column) -> tuple[float | None, str]:
    value = median(reps, column.field)
    if value is None:
        if any(r.get("pending") for r in reps):
            return None, "not yet"
        if not reps or any("unsupported" in r for r in reps):
            return None, column.missing
        if not any("error" in r for r in reps):  # ran, but this figure does not apply
            return None, "n/a"
        return None, "error"
    marks = CAPPED if any(r.get("capped") for r in reps) else ""
    if system.sequential and column.metric in _WORKER_RUNS:
        marks += SEQUENTIAL
    return value, column.fmt(value) + marks


def _ratio(ours: float | None, theirs: dict[str, float], higher_is_better: bool) -> str:
    if ours is None or not theirs:
        return DASH
    pick = max if higher_is_better else min
    best = pick(theirs, key=lambda name: theirs[name])
    if not theirs[best]:  # e.g. no call over 5 ms: no ratio to show
        return f"{DASH} (vs {best}: 0)"
    return f"{ours / theirs[best]:.2f}{TIMES} (vs {best})"


def table(
    results: Results,
    systems: Sequence[System],
    columns: Sequence[Column],
    extra_rows: Sequence[tuple[str, list[str]]] = (),
) -> str:
    """One row per system, then adelayed ÷ best peer per column, then ``extra_rows``."""
    header = ["system", *(c.title for c in columns)]
    rows: list[list[str]] = []
    values: dict[str, dict[str, float]] = {c.title: {} for c in columns}
    for system in systems:
        row = [system.title]
        for column in columns:
            value, text = _cell(system, results.get(system.name, {}).get(column.metric, []), column)
            row.append(text)
            if value is not None:
                values[column.title][system.name] = value
        rows.append(row)
    if any(s.name == "adelayed" for s in systems) and len(systems) > 1:
        ratio_row = ["**adelayed ÷ best peer**"]
        for column in columns:
            found = values[column.title]
            peers = {name: v for name, v in found.items() if name != "adelayed"}
            ratio_row.append(_ratio(found.get("adelayed"), peers, column.higher_is_better))
        rows.append(ratio_row)
    rows += [[label, *cells] for label, cells in extra_rows]
    return _markdown([header, *rows])


def _markdown(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


THROUGHPUT = (
    Column("async no-op, c=10", "c10", "rate", rate, True),
    Column("async no-op, c=100", "c100", "rate", rate, True),
    Column("sync no-op in threads, c=10", "sync", "rate", rate, True),
)
ENQUEUE = (
    Column("one at a time", "enqueue", "rate", rate, True),
    Column("bulk API", "bulk", "rate", rate, True, missing="none"),
)
LATENCY = (
    Column("p50 ms", "latency", "p50_ms", ms, False),
    Column("p99 ms", "latency", "p99_ms", ms, False),
)
RESOURCES = (
    Column("cmds/task: enqueue", "enqueue", "commands", two, False),
    Column("cmds/task: processing (c=100)", "c100", "commands", two, False),
    Column("worker peak RSS MB (c=100)", "c100", "rss_peak_mb", one, False),
)


DELAYED = (
    Column("due-to-start lag p50 ms", "delayed_latency", "p50_ms", ms, False),
    Column("p99 ms", "delayed_latency", "p99_ms", ms, False),
)
PROMOTION = (
    Column("tasks/s, due to last start", "promotion", "rate", rate, True),
    Column("tasks/s into the queue", "promotion", "promoted_rate", rate, True),
    Column("first start after due, ms", "promotion", "first_lag_ms", ms, False),
    Column("PING p99 ms", "promotion", "ping_p99_ms", ms, False),
    Column("PING max ms", "promotion", "ping_max_ms", ms, False),
    Column("calls >= 5 ms", "promotion", "slow_calls", rate, False),
    Column("slowest call ms", "promotion", "slow_max_ms", ms, False),
)
PERIODIC = (
    Column("mean interval - 1 s, ms", "periodic", "drift_ms", ms, False),
    Column("interval jitter p50 ms", "periodic", "jitter_p50_ms", ms, False),
    Column("jitter max ms", "periodic", "jitter_max_ms", ms, False),
    Column("lag behind the tick p50 ms", "periodic", "tick_lag_p50_ms", ms, False),
    Column("lag max ms", "periodic", "tick_lag_max_ms", ms, False),
    Column("skipped or doubled", "periodic", "skipped_or_doubled", rate, False),
)
RESULTS = (
    Column("results kept: c=10", "results_c10", "rate", rate, True),
    Column("plain c=10", "c10", "rate", rate, True),
    Column("kept / plain c=10", "results_c10", "of_plain", two, True),
    Column("results kept: c=100", "results_c100", "rate", rate, True),
    Column("plain c=100", "c100", "rate", rate, True),
    Column("kept / plain c=100", "results_c100", "of_plain", two, True),
    Column("cmds/task: kept, c=100", "results_c100", "commands", two, False),
    Column("cmds/task: plain, c=100", "c100", "commands", two, False),
)
RETRY = (
    Column("fails once, then succeeds: tasks/s", "retry", "rate", rate, True),
    Column("retry rate / own plain c=100", "retry", "of_plain", two, True),
)


def promotion_table(results: Results, systems: Sequence[System], full: int) -> str:
    """PROMOTION's table, with adelayed's run at ``full`` tasks as an extra row (if any)."""
    reps = results.get("adelayed", {}).get("promotion_full", [])
    extra = []
    if full and reps:
        adelayed = next(s for s in systems if s.name == "adelayed")
        cells = [_cell(adelayed, reps, column)[1] for column in PROMOTION]
        extra.append((f"adelayed, N = {full:,}", cells))
    return table(results, systems, PROMOTION, extra)


def enqueue_table(results: Results, systems: Sequence[System]) -> str:
    raw = results.get(RAW.name, {})
    raw_single = median(raw.get("enqueue", []), "rate")
    raw_bulk = median(raw.get("bulk", []), "rate")
    ours = results.get("adelayed", {})
    ours_single = median(ours.get("enqueue", []), "rate")
    ours_bulk = median(ours.get("bulk", []), "rate")
    if raw_single is None or raw_bulk is None:
        return table(results, systems, ENQUEUE)

    def versus(value: float | None, floor: float) -> str:
        return DASH if value is None else f"{value / floor:.2f}{TIMES}"

    extra = [
        (f"raw RPUSH (awaited; pipelined {TIMES}100)", [rate(raw_single), rate(raw_bulk)]),
        (
            "**adelayed \u00f7 raw RPUSH**",
            [versus(ours_single, raw_single), versus(ours_bulk, raw_bulk)],
        ),
    ]
    return table(results, systems, ENQUEUE, extra)


def total_commands(results: Results, systems: Sequence[System]) -> str:
    """Enqueue + processing commands per task, and adelayed's ratio to the lowest peer."""
    totals: dict[str, float] = {}
    for system in systems:
        found = results.get(system.name, {})
        parts = [median(found.get(metric, []), "commands") for metric in ("enqueue", "c100")]
        if None not in parts:
            totals[system.name] = sum(p for p in parts if p is not None)
    rows = [["system", "Redis commands per task (enqueue + processing)"]]
    rows += [[s.title, two(totals[s.name]) if s.name in totals else DASH] for s in systems]
    peers = {name: v for name, v in totals.items() if name != "adelayed"}
    if "adelayed" in totals and peers:
        rows.append(["**adelayed ÷ lowest peer**", _ratio(totals["adelayed"], peers, False)])
    return _markdown(rows)


_BREAKDOWN = (
    ("enqueue", "enqueue"),
    ("c100", "processing, c=100"),
    ("results_c100", "processing with results kept, c=100"),
)


def command_breakdown(results: Results, systems: Sequence[System]) -> str:
    """Per system: each command's calls per task (medians' source: the first repetition)."""
    lines = []
    for system in systems:
        for metric, what in _BREAKDOWN:
            reps = [r for r in results.get(system.name, {}).get(metric, []) if "by_command" in r]
            if reps:
                calls = sorted(reps[0]["by_command"].items(), key=lambda item: -item[1])
                shown = ", ".join(f"{name} {count:.3g}" for name, count in calls if count >= 0.001)
                lines.append(f"- **{system.title}**, {what}: {shown}")
    return "\n".join(lines)
