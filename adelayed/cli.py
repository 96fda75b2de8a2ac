"""``adelayed`` on the command line: a thin shell over Worker and Sweeper.

The queue options go before or after the command; an error adelayed raises on purpose is one
line on stderr, not a traceback; the exit code tells a supervisor how the process ended.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import redis.asyncio as redis

from .errors import AdelayedError, ConfigurationError
from .queue import Queue
from .sweeper import Sweeper
from .worker import Worker

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

_EPILOG = """\
the queue options go before or after the command.

exit codes:
  0        a clean stop (after a first SIGTERM, SIGINT or SIGHUP the running tasks finished)
  1        an error ended the worker or sweeper (bad configuration, Redis refusing the settings)
  2        a usage error
  130/143  a hard stop (a second SIGINT / SIGTERM: running tasks were requeued; 128 + the
           signal's number), Ctrl-C before the worker started, or a sweeper stopped by Ctrl-C
"""
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that SIGINT ended


def _shared_options(*, after_command: bool) -> argparse.ArgumentParser:
    """The options of the queues and of the connection. Their copy after the command has no
    defaults (SUPPRESS): it sets only what is given there, which wins over a value before."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if after_command else value

    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("queue options (before or after the command)")
    group.add_argument(
        "--url",
        default=default(os.environ.get("ADELAYED_REDIS_URL", "redis://localhost:6379/0")),
        help="Redis URL (redis://, rediss://, unix://); default $ADELAYED_REDIS_URL",
    )
    group.add_argument(
        "--queue", "-q", action="append", default=default(None), metavar="QUEUE",
        dest="later_queues" if after_command else "queue",
        help="queue name (default: default); a worker takes several, highest priority first",
    )  # fmt: skip
    group.add_argument("--keep-alive-timeout", type=float, default=default(60))
    group.add_argument(
        "--max-deliveries", type=int, default=default(5),
        help="dead-letter a task whose worker died this many times (0: requeue it forever)",
    )  # fmt: skip
    group.add_argument(
        "--max-payload-size", type=int, default=default(1 << 20),
        help="largest task payload, in bytes",
    )  # fmt: skip
    group.add_argument(
        "--allow-eviction", action="store_true", default=default(False),
        help="start although Redis's maxmemory-policy may evict keys (an evicted liveness key "
        "gets a running task run twice)",
    )  # fmt: skip
    group.add_argument("--log-level", type=str.upper, choices=_LOG_LEVELS, default=default("INFO"))
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adelayed",
        description="adelayed task queue",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_shared_options(after_command=False)],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    later = [_shared_options(after_command=True)]
    worker = commands.add_parser("worker", help="run a worker", parents=later)
    worker.add_argument("tasks", nargs="*", help="modules or module:func paths the worker may run")
    worker.add_argument("--concurrency", "-c", type=int, default=10)
    worker.add_argument("--keep-alive-interval", type=float, default=15)
    worker.add_argument("--grace-period", type=float, default=30)
    worker.add_argument("--sweep-interval", type=float, default=60, help="0: no embedded sweeper")
    worker.add_argument(
        "--allow-any-function",
        action="store_true",
        help="run any importable function (only if every writer to Redis is trusted)",
    )
    sweeper = commands.add_parser("sweep", help="run a sweeper", parents=later)
    sweeper.add_argument("--interval", type=float, default=60)
    return parser


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    options = parser.parse_args(argv)
    later = vars(options).pop("later_queues", ())
    options.queue = [*(options.queue or ()), *later] or ["default"]
    if len(set(options.queue)) < len(options.queue):
        parser.error(f"--queue names a queue twice: {options.queue}")
    return options


def _client(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"--url: {exc}") from exc


def _queues(options: argparse.Namespace, client: redis.Redis) -> list[Queue]:
    return [
        Queue(
            name,
            client,
            keep_alive_timeout=options.keep_alive_timeout,
            max_deliveries=options.max_deliveries or None,
            max_payload_size=options.max_payload_size,
        )
        for name in options.queue
    ]


async def _main(options: argparse.Namespace) -> Worker | None:
    client = _client(options.url)
    try:
        queues = _queues(options, client)
        if options.command == "sweep":
            await Sweeper(queues, options.interval, allow_eviction=options.allow_eviction).run()
            return None
        worker = Worker(
            queues,
            options.concurrency,
            options.keep_alive_interval,
            tasks=options.tasks,
            allow_any_function=options.allow_any_function,
            grace_period=options.grace_period,
            sweep_interval=options.sweep_interval or None,
            allow_eviction=options.allow_eviction,
        )
        await worker.run()
        return worker
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    """The ``adelayed`` command; exits with the code its epilog lists."""
    options = _options(argv)
    if options.command == "worker":
        _import_from_current_directory()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("adelayed").setLevel(options.log_level)
    code = _run(options)
    if code:
        sys.exit(code)


def _import_from_current_directory() -> None:
    """Task modules are found in the directory the command runs in, as ``python -m`` would
    (the console script's own sys.path starts with its bin directory instead)."""
    here = os.getcwd()
    if not sys.path or sys.path[0] not in ("", here):
        sys.path.insert(0, here)


def _run(options: argparse.Namespace) -> int:
    try:
        code = _exit_code(anyio.run(_main, options))
    except KeyboardInterrupt:  # Ctrl-C before the worker watched signals: nothing to say
        code = _INTERRUPTED
    except BaseException as exc:
        code = _reported(exc)
    _exit_past_busy_threads(code)
    return code


def _exit_code(worker: Worker | None) -> int:
    """128 + the signal's number after a hard stop (as if the signal had ended the process),
    else 0."""
    hard_stop = None if worker is None else worker.hard_stop_signal
    return 0 if hard_stop is None else 128 + hard_stop.value


def _reported(exc: BaseException) -> int:
    """Prints adelayed's own errors one line each and returns the exit code; re-raises
    anything else, so an unexpected error keeps its traceback."""
    leaves = list(_leaves(exc))
    if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return _INTERRUPTED
    if not all(isinstance(leaf, AdelayedError) for leaf in leaves):
        raise exc
    for message in dict.fromkeys(str(leaf) for leaf in leaves):  # a worker and its sweeper
        print(f"adelayed: error: {message}", file=sys.stderr)
    return 1


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _exit_past_busy_threads(code: int) -> None:
    """After a stop that cancelled running sync tasks (already requeued), their threads may
    still be running: exit now, with ``code``, instead of waiting for them to finish work
    nobody awaits."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    deadline = time.monotonic() + 0.5  # idle worker threads are on their way out
    for thread in others:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    busy = [t for t in others if t.is_alive() and not t.daemon]
    if busy:
        logging.getLogger("adelayed").warning(
            "exiting with %d task thread(s) still running; their tasks were requeued", len(busy)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
