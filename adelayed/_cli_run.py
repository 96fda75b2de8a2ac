"""``adelayed worker`` and ``adelayed sweep``: the long-running commands.

A worker's modules give it its tasks (every function of ``MODULE``, or just ``MODULE:FUNC``)
and its schedules (every ``Cron`` or ``Every`` object at a module's top level); its hooks are
named by options (``--on-startup app.db:open_pool``). ``--reload`` restarts the worker when a
file under the current directory changes (the ``cli`` extra's watchfiles), for development.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import click

from ._cli_options import QueueOptions, with_queue_options
from ._functions import _import
from .errors import ConfigurationError
from .schedules import Schedule
from .sweeper import Sweeper
from .task import FUNC_SEPARATOR
from .worker import Worker

F = TypeVar("F", bound=Callable[..., Any])
_HOOKS = ("on_startup", "on_shutdown", "before_task", "after_task", "on_failure")


def _hook_option(name: str) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    return click.option(
        flag, name, multiple=True, metavar="MODULE:FUNC",
        help=f"a worker {name} hook (repeat it for several, run in order)",
    )  # fmt: skip


@click.command()
@click.argument("tasks", nargs=-1, metavar="MODULE[:FUNC]...")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--keep-alive-interval", type=float, default=15.0, show_default=True)
@click.option("--grace-period", type=float, default=30.0, show_default=True)
@click.option(
    "--sweep-interval", type=float, default=60.0, show_default=True,
    help="seconds between the embedded sweeper's sweeps (0: no embedded sweeper)",
)  # fmt: skip
@click.option(
    "--allow-any-function", is_flag=True,
    help="run any importable function (only if every writer to Redis is trusted)",
)  # fmt: skip
@click.option("--reload", is_flag=True, help="restart on code change (development only)")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None,
    help="serve Prometheus metrics on 127.0.0.1:PORT (the prometheus extra)",
)  # fmt: skip
@_hook_option("on_startup")
@_hook_option("on_shutdown")
@_hook_option("before_task")
@_hook_option("after_task")
@_hook_option("on_failure")
@with_queue_options
def worker(options: QueueOptions, tasks: tuple[str, ...], reload: bool, **settings: Any) -> object:
    """Run a worker for the tasks of MODULE (all its functions, and its schedules) or
    MODULE:FUNC (that one function)."""
    if reload:
        return _reload()
    return run_async(_work, options, tasks, settings)


@click.command()
@click.option("--interval", type=float, default=60.0, show_default=True)
@with_queue_options
def sweep(options: QueueOptions, interval: float) -> object:
    """Run a sweeper: requeue the tasks of dead workers, every INTERVAL seconds."""
    return run_async(_sweep, options, interval)


def run_async(func: Any, *args: Any) -> Any:
    """The command's coroutine, run (tests replace it to read the options parsed)."""
    return anyio.run(func, *args)


async def _sweep(options: QueueOptions, interval: float) -> None:
    client = options.client()
    try:
        queues = options.queues_on(client)
        await Sweeper(queues, interval, allow_eviction=options.allow_eviction).run()
    finally:
        await client.aclose()


async def _work(options: QueueOptions, tasks: Sequence[str], settings: dict[str, Any]) -> Worker:
    hooks: dict[str, Any] = {
        name: [_function(path, "--" + name.replace("_", "-")) for path in settings.pop(name)]
        for name in _HOOKS
    }
    schedules = _schedules_of(tasks)
    client = options.client()
    try:
        worker = Worker(
            options.queues_on(client),
            settings["concurrency"],
            settings["keep_alive_interval"],
            tasks=tasks,
            allow_any_function=settings["allow_any_function"],
            grace_period=settings["grace_period"],
            sweep_interval=settings["sweep_interval"] or None,
            allow_eviction=options.allow_eviction,
            schedules=schedules,
            **hooks,
        )
        if settings["metrics_port"] is not None:
            _serve_metrics(worker, settings["metrics_port"])
        await worker.run()
        return worker
    finally:
        await client.aclose()


def _serve_metrics(worker: Worker, port: int) -> None:
    try:
        from .metrics import WorkerMetrics
    except ImportError:
        raise ConfigurationError(
            "--metrics-port needs prometheus-client: pip install 'adelayed[prometheus]'"
        ) from None
    try:
        WorkerMetrics(worker).serve(port)
    except OSError as exc:
        raise ConfigurationError(f"--metrics-port {port}: cannot listen ({exc})") from exc


def _schedules_of(tasks: Sequence[str]) -> list[Schedule]:
    """The Cron and Every objects at the top level of the modules named without a function."""
    found: list[Schedule] = []
    for path in tasks:
        if FUNC_SEPARATOR in path:
            continue
        module = _import(path, "adelayed worker")
        found.extend(value for value in vars(module).values() if isinstance(value, Schedule))
    return found


def _hooks(name: str, paths: Sequence[str]) -> list[Any]:
    return [_function(path, "--" + name.replace("_", "-")) for path in paths]


def _function(path: str, option: str) -> Any:
    module_name, separator, name = path.partition(FUNC_SEPARATOR)
    if not separator or not module_name or not name:
        raise ConfigurationError(f"{option} {path!r}: name a function as module:func")
    func = getattr(_import(module_name, f"{option} {path!r}"), name, None)
    if not callable(func):
        raise ConfigurationError(
            f"{option} {path!r}: module {module_name!r} has no function {name!r}"
        )
    return func


def _reload() -> int:
    """Runs this same command line without --reload in a child, restarted at each change of a
    file under the current directory; a signal to this process stops the child as it would a
    worker (SIGINT: finish the running tasks, then a kill after the grace)."""
    try:
        import watchfiles
    except ImportError:
        raise ConfigurationError(
            "--reload needs watchfiles, of the cli extra: pip install 'adelayed[cli]'"
        ) from None
    argv = [arg for arg in sys.argv[1:] if arg != "--reload"]
    command = shlex.join([sys.executable, "-m", "adelayed", *argv])
    watchfiles.run_process(os.getcwd(), target=command, target_type="command")
    return 0
