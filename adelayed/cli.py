"""``adelayed`` on the command line: a thin shell over Worker and Sweeper."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Sequence

import anyio
import redis.asyncio as redis

from .queue import Queue
from .sweeper import Sweeper
from .worker import Worker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adelayed", description="adelayed task queue")
    parser.add_argument(
        "--url",
        default=os.environ.get("ADELAYED_REDIS_URL", "redis://localhost:6379/0"),
        help="Redis URL (redis://, rediss://, unix://); default $ADELAYED_REDIS_URL",
    )
    parser.add_argument(
        "--queue", "-q", action="append", default=None, help="queue name (default: default)"
    )
    parser.add_argument("--keep-alive-timeout", type=float, default=60)
    parser.add_argument(
        "--max-deliveries",
        type=int,
        default=5,
        help="dead-letter a task whose worker died this many times (0: requeue it forever)",
    )
    parser.add_argument(
        "--max-payload-size", type=int, default=1 << 20, help="largest task payload, in bytes"
    )
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker")
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
    sweeper = commands.add_parser("sweep", help="run a sweeper")
    sweeper.add_argument("--interval", type=float, default=60)
    return parser


def _queues(options: argparse.Namespace, client: redis.Redis) -> list[Queue]:
    return [
        Queue(
            name,
            client,
            keep_alive_timeout=options.keep_alive_timeout,
            max_deliveries=options.max_deliveries or None,
            max_payload_size=options.max_payload_size,
        )
        for name in options.queue or ["default"]
    ]


async def _main(options: argparse.Namespace) -> None:
    client = redis.Redis.from_url(options.url)
    try:
        queues = _queues(options, client)
        if options.command == "sweep":
            await Sweeper(queues, options.interval).run()
            return
        if len(queues) != 1:
            raise SystemExit("adelayed worker: give exactly one --queue")
        await Worker(
            queues[0],
            options.concurrency,
            options.keep_alive_interval,
            tasks=options.tasks,
            allow_any_function=options.allow_any_function,
            grace_period=options.grace_period,
            sweep_interval=options.sweep_interval or None,
        ).run()
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    options = _parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("adelayed").setLevel(options.log_level.upper())
    anyio.run(_main, options)
    _exit_past_busy_threads()


def _exit_past_busy_threads() -> None:
    """After a stop that cancelled running sync tasks (already requeued), their threads may
    still be running: exit now instead of waiting for them to finish work nobody awaits."""
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
        os._exit(0)
