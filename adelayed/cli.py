"""``adelayed`` on the command line, built on click: a group of commands sharing the queue
options (``_cli_options``), each in the module of its concern, and one place that turns how a
command ended into an exit code a supervisor or script can trust.

An error adelayed raises on purpose is one line on stderr, not a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import click
from redis.exceptions import RedisError

from ._cli_dead import dead
from ._cli_doctor import doctor
from ._cli_enqueue import enqueue
from ._cli_inspect import info, task
from ._cli_options import shared_options
from ._cli_run import sweep, worker
from ._cli_verify import verify_command
from ._cli_web import web
from ._fatal import configuration_error
from .errors import AdelayedError
from .worker import Worker

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

_EPILOG = """\
The queue options go before or after the command.

\b
exit codes:
0        success; for a worker, a clean stop (after a first SIGTERM, SIGINT or SIGHUP the
         running tasks finished)
1        an error (bad configuration, an unreachable Redis, Redis refusing the settings)
2        a usage error
3        what was asked for is not there (an unknown task id, no such dead letter)
4        doctor found a problem that remains; verify found a lost or duplicated task
130/143  a hard stop (a second SIGINT / SIGTERM: running tasks were requeued; 128 + the
         signal's number), Ctrl-C before the worker started, or a sweeper stopped by Ctrl-C
"""
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that SIGINT ended


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@shared_options
def cli(**_: Any) -> None:
    """adelayed: an asyncio task queue on Redis."""


for _command in (worker, sweep, info, task, enqueue, dead, doctor, verify_command, web):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """The ``adelayed`` command; exits with the code its epilog lists."""
    _import_from_current_directory()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        args = list(argv) if argv is not None else None
        code = _exit_code(cli.main(args, "adelayed", standalone_mode=False))
    except click.UsageError as exc:
        print(f"adelayed: error: {exc.format_message()} (adelayed --help: usage)", file=sys.stderr)
        code = 2
    except click.ClickException as exc:
        print(f"adelayed: error: {exc.format_message()}", file=sys.stderr)
        code = exc.exit_code
    except (KeyboardInterrupt, click.Abort):  # Ctrl-C before a worker watched signals
        code = INTERRUPTED
    except BaseException as exc:
        code = _reported(exc)
    _exit_past_busy_threads(code)
    if code:
        sys.exit(code)


def _import_from_current_directory() -> None:
    """Task modules are found in the directory the command runs in, as ``python -m`` would
    (the console script's own sys.path starts with its bin directory instead)."""
    here = os.getcwd()
    if not sys.path or sys.path[0] not in ("", here):
        sys.path.insert(0, here)


def _exit_code(result: Any) -> int:
    """A command's own code; after a worker's hard stop, 128 + the signal's number (as if
    the signal had ended the process)."""
    if isinstance(result, Worker):
        hard_stop = result.hard_stop_signal
        return 0 if hard_stop is None else 128 + hard_stop.value
    return result if isinstance(result, int) else 0


def _reported(exc: BaseException) -> int:
    """Prints adelayed's own errors one line each and returns the exit code; re-raises
    anything else, so an unexpected error keeps its traceback."""
    leaves = [_explained(leaf) for leaf in _leaves(exc)]
    if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return INTERRUPTED
    if not all(isinstance(leaf, AdelayedError) for leaf in leaves):
        raise exc
    for message in dict.fromkeys(str(leaf) for leaf in leaves):  # a worker and its sweeper
        print(f"adelayed: error: {message}", file=sys.stderr)
    return 1


def _explained(exc: BaseException) -> BaseException:
    """A Redis error a command met (the operator's commands do not retry) as adelayed's own:
    what Redis refused and how to fix it, or that it could not be reached."""
    if not isinstance(exc, (RedisError, OSError)) or isinstance(exc, AdelayedError):
        return exc
    refusal = configuration_error(exc, "Redis")
    if refusal is not None:
        return refusal
    return AdelayedError(
        f"cannot reach Redis ({exc}); check --redis-url (or $ADELAYED_REDIS_URL) and that the "
        "server runs"
    )


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
