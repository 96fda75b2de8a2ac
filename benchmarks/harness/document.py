"""RESULTS.md: what ran, on what, the tables, and exactly how each number was measured."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata, util
from pathlib import Path
from typing import Any

from . import report
from .measure import Settings
from .systems import System
from .venvs import BENCH_DIR, PINS_DIR

# The packages worth naming for each system (the rest of its pins are transitive).
_KEY_PACKAGES = {
    "arq": ("arq", "redis", "hiredis"),
    "saq": ("saq", "redis", "hiredis"),
    "taskiq": ("taskiq", "taskiq-redis", "redis", "hiredis"),
    "streaq": ("streaq", "coredis", "anyio"),
    "delayed": ("delayed", "redis", "hiredis"),
    "docket": ("pydocket", "redis", "hiredis"),
    "bullmq": ("bullmq", "redis", "hiredis"),
}


@dataclass
class Run:
    command: str
    date: datetime
    settings: Settings
    repetitions: int
    out_dir: Path
    started: float = field(default_factory=time.monotonic)
    results: report.Results = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    setup_log: list[str] = field(default_factory=list)
    systems: list[System] = field(default_factory=list)
    redis_version: str = ""
    redis_binary: str = ""
    profile: dict[str, Any] | None = None
    seconds: float = 0.0
    promotion_tasks: int = 0  # tasks all due at once in the promotion runs (0: not run)
    promotion_full: int = 0  # adelayed's extra promotion run at this size (0: none)
    adelayed_at_start: str = field(default_factory=lambda: adelayed_source())

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "date": self.date.isoformat(),
            "settings": asdict(self.settings),
            "repetitions": self.repetitions,
            "seconds": self.seconds,
            "redis": self.redis_version,
            "unavailable": self.unavailable,
            "promotion_tasks": self.promotion_tasks,
            "results": self.results,
            "profile": self.profile,
        }


def _cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def adelayed_source() -> str:
    """The commit, and a digest of adelayed's source files as they are on disk (the package
    is installed editable: an edit during a run changes what later processes run)."""
    return f"commit {_commit()}, source digest {source_digest()}"


def source_digest() -> str:
    """A digest of adelayed's source files as they are on disk."""
    spec = util.find_spec("adelayed")
    assert spec is not None and spec.origin is not None
    digest = hashlib.sha256()
    for path in sorted(Path(spec.origin).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return done.stdout.strip() or "unknown"


def _pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (PINS_DIR / f"{name}.txt").read_text().splitlines():
        package, _, version = line.partition("==")
        if version and not line.startswith("#"):
            pins[package.lower().replace("_", "-")] = version
    return pins


def _versions(systems: list[System]) -> list[str]:
    ours = ", ".join(f"{p} {metadata.version(p)}" for p in ("redis", "hiredis", "anyio", "msgpack"))
    lines = [f"- adelayed {metadata.version('adelayed')}, {adelayed_source()} ({ours})"]
    for system in systems:
        if system.peer:
            pins = _pins(system.name)
            named = ", ".join(f"{p} {pins[p]}" for p in _KEY_PACKAGES[system.name] if p in pins)
            lines.append(f"- {system.name}: {named} (all pins: `peers/{system.name}.txt`)")
    return lines


def _machine(run: Run) -> list[str]:
    changed = []
    if not run.adelayed_at_start.endswith(source_digest()):  # a commit alone changes nothing
        changed = [
            f"- **adelayed's source changed during the run**: {run.adelayed_at_start} at the "
            "start; processes started later ran the newer code"
        ]
    return [
        *changed,
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores (nproc); {_memory_gib():.0f} GiB RAM; "
        f"Linux {platform.release()}",
        f"- Redis {run.redis_version} ({run.redis_binary}), one server for the whole run, on "
        "loopback TCP, no persistence",
        f"- Python {platform.python_version()} ({sys.executable}) for adelayed, the orchestrator "
        "and the raw baseline; the peers' venvs are made from the same interpreter",
    ]


def render(run: Run) -> str:
    s = run.settings
    systems = run.systems
    parts = [
        "# adelayed benchmarks",
        f"Command: `{run.command}` — {run.date:%Y-%m-%d %H:%M} UTC — took {run.seconds:.0f} s.  ",
        f"N = {s.tasks:,} tasks per measurement; median of {run.repetitions} repetition(s); "
        f"{s.samples} latency probes per repetition; throughput runs capped at {s.max_seconds:g} s "
        "after their first task.",
        "## Machine and versions",
        "\n".join(_machine(run) + _versions(systems)),
    ]
    if run.unavailable:
        missing = "\n".join(f"- **{name}**: {error}" for name, error in run.unavailable.items())
        parts += ["## Not measured", missing]
    parts += [
        "## Processing throughput (tasks/s; higher is better)",
        report.table(run.results, systems, report.THROUGHPUT),
        MARKS,
        "## Enqueue throughput (tasks/s; higher is better)",
        report.enqueue_table(run.results, systems),
        'Ratios above 1: adelayed enqueues faster. "none": the system has no bulk enqueue API.',
        "## Idle end-to-end latency (ms; lower is better)",
        report.table(run.results, systems, report.LATENCY),
        "Ratios below 1: adelayed's latency is lower.",
        "## Redis commands per task and worker memory (lower is better)",
        report.table(run.results, systems, report.RESOURCES),
        report.total_commands(run.results, systems),
        "Ratios below 1: adelayed uses fewer commands / less memory.",
        *_time_sections(run),
        METHODS,
        TIME_METHODS,
        CAVEATS,
        "## Appendix: commands per task, by command (first repetition)",
        report.command_breakdown(run.results, systems),
    ]
    anomalies = _anomalies(run)
    if anomalies:
        parts += ["## Anomalies", anomalies]
    if run.profile:
        parts += ["## Profile: adelayed's worker, async no-op, c=100", _profile(run.profile)]
    return "\n\n".join(parts) + "\n"


def _has(run: Run, metric: str) -> bool:
    return any(metric in found for found in run.results.values())


def _time_sections(run: Run) -> list[str]:
    """The delayed-task, promotion and retry tables, for the scenarios that ran."""
    systems, parts = run.systems, []
    if _has(run, "delayed_latency"):
        parts += [
            "## Delayed tasks: due-to-start lag on an idle worker (ms; lower is better)",
            report.table(run.results, systems, report.DELAYED),
            DELAYED_NOTE,
        ]
    if _has(run, "promotion"):
        parts += [
            f"## Promotion: {run.promotion_tasks:,} tasks all due at once",
            report.promotion_table(run.results, systems, run.promotion_full),
            PROMOTION_NOTE,
        ]
    if _has(run, "periodic"):
        parts += [
            "## Periodic tasks: a schedule that runs a task every second",
            report.table(run.results, systems, report.PERIODIC),
            PERIODIC_NOTE,
        ]
    if _has(run, "results_c10") or _has(run, "results_c100"):
        parts += [
            "## Kept results: tasks that return a value the system stores (tasks/s; higher is "
            "better)",
            report.table(run.results, systems, report.RESULTS),
            RESULTS_NOTE,
        ]
    if _has(run, "retry"):
        parts += [
            "## Retries: every task fails once, then succeeds (c=100; higher is better)",
            report.table(run.results, systems, report.RETRY),
            RETRY_NOTE,
        ]
    return parts


def _anomalies(run: Run) -> str:
    """Failed measurements, and tasks that ran more often than they were enqueued."""
    lines = []
    for name, metrics in run.results.items():
        for metric, reps in metrics.items():
            for number, result in enumerate(reps, 1):
                if "error" in result:
                    lines.append(f"- {name} {metric}, repetition {number}: {result['error']}")
                elif result.get("extra"):
                    lines.append(
                        f"- {name} {metric}, repetition {number}: {result['extra']} task run(s) "
                        "beyond the N enqueued (a task run twice)"
                    )
    return "\n".join(lines)


def _profile(profile: dict[str, Any]) -> str:
    if "error" in profile:
        return f"Not profiled: {profile['error']}"
    rows = [["cumulative share", "function (file)"]]
    rows += [[f"{share:.1%}", f"`{frame}`"] for frame, share in profile["top"]]
    return (
        f"py-spy (`record --format raw --nolineno --rate 500`, the project venv's py-spy) over "
        f"{profile['tasks']:,} pre-filled tasks ({profile['rate']:,.0f} tasks/s under the "
        f"profiler); {profile['samples']} samples of the running event loop (start-up imports "
        "and idle waits excluded). Share: samples with the function anywhere on the stack. "
        "Frames on every sample (runpy, asyncio's run loop) are left out. Raw stacks: "
        f"`{Path(profile['raw']).relative_to(BENCH_DIR)}`.\n\n" + report._markdown(rows)
    )


MARKS = (
    f"`{report.SEQUENTIAL}` delayed: one worker process running one task at a time (it has no "
    "concurrency setting and runs plain functions only), so each column shows the same "
    f"sync no-op run. `{report.CAPPED}` capped: the worker had not finished N tasks "
    "max-seconds after its first task; the rate is over the tasks it did finish (arq's rate "
    'is bounded by its default `poll_delay` of 0.5 s). "n/a": the system cannot run that '
    "variant (arq refuses plain functions). Ratios above 1: adelayed processes faster."
)

METHODS = """## Methods

Everything runs on one machine against one private `redis-server` started for the run
(`FLUSHALL` and `CONFIG RESETSTAT` before each measurement). Every worker, producer and baseline
is a separate process started for that one measurement, from its system's own virtualenv
(`python -m systems NAME COMMAND` from `benchmarks/`; peers cannot import adelayed, which
run.py checks). Each figure is the median over the repetitions. Libraries run with their
defaults except where stated; no process is pinned to a core; no uvloop.

- **Processing throughput.** N no-op tasks are enqueued first (bulk API where there is one,
  else concurrent single enqueues). Then a fresh worker process starts. The no-op task
  (`async def noop()`, or `def noop_sync()` for the threads variant) only calls a shared
  in-process counter (`systems/common.py`, `Completion.hit`: one `itertools.count` step and
  one clock read, no Redis command), the same for every system. Rate = (tasks - 1) / (time of
  the last task - time of the first task), both read inside the worker process: start-up
  is excluded. A run stops after N tasks, or max-seconds after the first task (capped, `*`).
  Variants: coroutines at concurrency 10 and 100; plain functions in threads at concurrency
  10 (adelayed: anyio worker threads; saq: its ThreadPoolExecutor, default size min(32,
  CPUs + 4) = 6 here; taskiq: `sync_workers` = 10; streaq: `sync_concurrency` = 10).
  Concurrency means: adelayed `Worker(concurrency=)`, arq `max_jobs`, saq `concurrency`,
  taskiq `max_async_tasks`, streaq `concurrency` (prefetch defaults to the same again).
- **Enqueue, one at a time.** One producer process awaits N single enqueues in a loop
  (adelayed `Queue.enqueue`, arq `enqueue_job`, saq `Queue.enqueue`, taskiq `.kiq()`, streaq
  `await task.enqueue()`, delayed's blocking `Queue.enqueue`), timed from the first call to
  the last reply. **Bulk**: one call of the bulk API with N tasks (adelayed
  `enqueue_many`, streaq `Worker.enqueue_many`), task construction included.
  **Raw RPUSH**: redis.asyncio (with hiredis) RPUSH of a 22-byte payload, N awaited one at a
  time, and N pipelined 100 per round trip.
- **Idle end-to-end latency.** A worker (concurrency 10) idles in its own process. The
  producer sends one probe task at a time carrying `time.time()` at sending; the task's first
  act is `time.time() - sent`, which it RPUSHes to a Redis list; the producer BLPOPs it, waits
  20 ms (the worker goes back to idle), and sends the next. The first 5 probes are dropped.
  p50/p99: nearest rank over the probes of one repetition (with 50 probes, p99 is the
  maximum). For arq, which polls every `poll_delay` (0.5 s) instead of blocking, a random
  extra pause of 0 to 0.5 s spreads the probes over its polling cycle (a fixed pause would lock
  onto one phase of it).
- **Redis commands per task**, from `INFO commandstats` (calls of every command, those run
  inside Lua scripts and functions included; the orchestrator's own `INFO`, `CONFIG
  RESETSTAT` and `FLUSHALL` excluded): *enqueue* = the commands of the one-at-a-time enqueue
  run ÷ N (connection set-up included); *processing* = the commands from worker start to its
  exit in the concurrency-100 run ÷ tasks run (start-up, idle polling and acknowledgements
  included; the pre-fill excluded). The total is their sum.
- **Worker peak RSS**: `VmHWM` from the worker's `/proc/<pid>/status`, read by the worker
  process itself when its concurrency-100 run ends.
- After the last task the worker waits 0.2 s (so its last acknowledgements reach Redis and
  are counted), prints its result and exits with `os._exit`: no system's shutdown is timed
  or counted."""

CAVEATS = """## Fairness caveats

- Completion is detected the same way for every system: the in-process counter above, so no
  system pays a Redis command or a poll for being measured. It counts tasks *run*; a
  system's acknowledgement of the last few tasks may land after the clock stops.
- Defaults are kept, and they differ in what they promise. arq and streaq keep each task's
  result in Redis (arq 1 h, streaq 5 min); saq keeps job records; adelayed and delayed keep
  nothing after success. taskiq's ListQueueBroker pops with BRPOP and acknowledges nothing:
  a task is lost if its worker dies, so it does the least Redis work per task. adelayed, saq,
  streaq and delayed keep a running task recoverable; arq re-runs jobs whose worker died.
- arq's worker polls (poll_delay 0.5 s): its throughput and latency are bounded by that
  default, not by its per-task cost; a smaller poll_delay would change both.
- delayed is synchronous: one process runs one task at a time; its throughput would scale by
  running more processes, which no other column does.
- Everything shares 2 cores with redis-server; the producer or worker and Redis compete for
  them. Absolute figures depend on the machine; compare ratios.
- saq's thread pool (6 threads here) is below the concurrency of 10 in the sync variant.
- The pre-fill for processing runs uses the fastest enqueue path each system has; its cost is
  not in the processing figures."""

DELAYED_NOTE = (
    '"not yet": adelayed\'s `enqueue(delay=)` is not in this build. "n/a": no delayed tasks '
    "without a separate process (taskiq needs its scheduler process; delayed 1.2 has none). "
    "Each system's due tasks wait for its own promoter: arq polls every 0.5 s, saq's "
    "scheduler runs every 1 s, streaq's every 0.5 s, docket's every 250 ms "
    "(`scheduling_resolution`); adelayed's and bullmq's idle workers block until the next due "
    "time, but bullmq's Python worker rounds that wait up to whole seconds (`math.ceil` in "
    "`Worker.waitForJob`: it learns that Redis takes sub-second timeouts only from a version "
    "check its worker never runs), so a job due in 50 ms starts about 1 s later."
)

PROMOTION_NOTE = (
    "Rate: tasks ÷ (the last task's start - the due time), so it is bounded by the worker's "
    "processing rate (concurrency 100) as much as by the promotion: a lower bound on how fast tasks"
    " reach the queue. Into the queue: tasks ÷ (the time the system's set of not-yet-due tasks was "
    "first found empty - the due time), where the fill names that set (adelayed `NAME_scheduled`, "
    "docket `NAME:queue`, bullmq `bull:NAME:delayed`); the probe is then a ZCARD of it, 1 ms apart,"
    " instead of a PING. PING: round trips of a separate connection during the run (this machine's "
    "scheduling included); calls >= 5 ms: SLOWLOG entries of 5 ms or more (the time a command or a "
    "whole script call ran inside Redis). Ratios of the latency columns below 1: adelayed stalls "
    "Redis less."
)

RETRY_NOTE = (
    "Each task raises on its first run and succeeds on its second, with no pause asked: adelayed "
    "`PyTask(retry=1)` and `Worker(retry_backoff=(1e-9, 1e-9))` (the retry goes back through "
    "the queue's scheduled set: one RESCHEDULE script call, its delay rounded up to 1 ms, then "
    "promoted), arq `raise Retry()` (no defer: back at its due score), saq `retries=2`, streaq "
    "`raise StreaqRetry(delay=0)` (back through its delayed queue), docket `Retry(attempts=2)`, "
    "bullmq `attempts: 2` with no backoff, taskiq `SimpleRetryMiddleware` with the labels "
    "`retry_on_error=True, max_retries=2` (the task is sent again), delayed 1.2 "
    "`PyTask(retry=1)`. The rate counts the successful second runs; the second column divides "
    "it by the same system's plain c=100 rate in this run."
)

RESULTS_NOTE = (
    "As processing throughput (async, c=10 and c=100, N pre-filled), but each task returns the "
    "int 1 and the system stores it, each its own documented way: adelayed "
    "`enqueue_many(tasks, keep_result=60)` (the tasks that end together settled by one "
    "FINISH_MANY call, sent with the next fetch: the release and the result in one step), "
    "arq its default `keep_result` of 3,600 s, saq the "
    "job record (result included) kept its default `ttl` of 600 s, streaq its default result "
    "`ttl` of 5 min, taskiq-redis's `RedisAsyncResultBackend(result_ex_time=60)` on the "
    "ListQueueBroker, docket its default `execution_ttl` of 15 min (it stores a return value "
    "that is not None), bullmq the completed job's `returnvalue` (no `removeOnComplete`). "
    "delayed 1.2 keeps no results (n/a). arq, saq, streaq and bullmq store a record per task "
    "in the plain run too (its result None), docket its execution record (not a result); taskiq "
    "stores nothing there (no result backend). Plain: the "
    "plain scenario's runs of this run; kept / plain: the rates' ratio (medians); "
    "cmds/task: `INFO commandstats` over the c=100 worker's run ÷ tasks run, as above."
)

PERIODIC_NOTE = (
    "Each system's own schedule API, run by its worker (no separate scheduler process): adelayed "
    "`Worker(schedules=[Every(1, task)])`, arq `cron(task, second=set(range(60)))` (due at "
    ".123456 s past each second, arq's default `microsecond`), saq `CronJob(task, cron=\"* * * * *"
    ' *")` (croniter\'s seconds field), streaq `@worker.cron("* * * * * * *")`, docket '
    '`Perpetual(every=timedelta(seconds=1), automatic=True)`, bullmq `upsertJobScheduler("tick", '
    "{\"every\": 1000})`. Interval: between consecutive runs' starts (their mean's distance from 1 "
    "s: the drift per run); jitter: each one's distance from 1 s. Lag: from the tick's due time "
    'to the run\'s start, for schedules on a fixed grid ("n/a": docket counts each interval from '
    "the end of the previous run; bullmq's grid is offset by the scheduler's creation time). "
    "Skipped or doubled: intervals outside 0.5 to 1.5 s (saq's cron job has a unique key by "
    "default, and its runs came 2 s apart: a run is not enqueued while the last one's job still "
    "exists). taskiq needs its scheduler process and delayed 1.2 has no schedules: not measured."
)

TIME_METHODS = """## Methods: delayed tasks, promotion, retries, kept results

- **Due-to-start lag.** As the idle latency above, but each probe is enqueued with a delay of
  50 ms (adelayed `enqueue(task, delay=)`, arq `_defer_by`, saq `scheduled=` epoch seconds,
  streaq `.start(delay=)`, docket `add(when=)`, bullmq `delay` in ms) and carries its due time
  (`time.time()` before the enqueue, plus the delay); the task's first act is
  `time.time() - due`. The first 2 probes are dropped. For the systems whose promoter polls
  (arq 0.5 s, saq 1 s, streaq 0.5 s, docket 0.25 s), a random extra pause of up to that
  period between probes spreads the due times over its cycle. Each system's own clock decides
  when a task is due: Redis's `TIME` for adelayed, the client's for the others; one machine.
- **Promotion.** A worker (concurrency 100) starts and idles for 2 s; then one producer
  enqueues N no-op tasks, all due at one instant (a lead of 1 s plus twice the system's fill
  time at its measured enqueue rate; a fill that ends after the due time voids the run, which
  is retried once with thrice the lead): adelayed `enqueue_many` in chunks of 10,000, each with
  the delay left until the due time; docket `add_many` with `when=`; bullmq `addBulk` (1,000
  a call) with each job's `timestamp` and `delay`; streaq `enqueue_many` with `schedule=`;
  arq and saq concurrent single enqueues (`_defer_until`, `scheduled=`). The worker reports
  the wall-clock time of its first and N-th task start. One run per system (not repeated).
- **Redis stalls during promotion** (`harness/redis_watch.py`): from the fill's end to the
  worker's exit, a thread of the orchestrator PINGs on its own connection, 1 ms apart;
  `SLOWLOG` (threshold 5 ms) records every command that ran 5 ms or longer inside Redis.
- **Retries**: as processing throughput at c=100, with tasks that fail once (see above).
- **Kept results**: as processing throughput at c=10 and c=100, with tasks that return 1 and
  the system's result storage on (see above).
- **Periodic**: a worker (concurrency 10) with the schedule starts in its own process; its
  task RPUSHes `time.time()` at its start; the producer BLPOPs the runs, drops the first and
  times the next 5 (`--quick`) or 20."""
