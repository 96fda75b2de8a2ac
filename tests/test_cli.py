"""The ``adelayed`` command, run as a real process against the test Redis from a project
directory of its own (``app/tasks.py``, nothing on PYTHONPATH): where it finds task modules,
where its options go, what it prints when it cannot start, and the codes it exits with.

Also what a worker says about a task module it cannot import, at start and per task."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue, Worker, _cli_run
from adelayed._cli_options import QueueOptions
from adelayed.cli import cli
from adelayed.embedded import EmbeddedRedis
from adelayed.errors import ConfigurationError
from tests.helpers import make_worker, running, texts, wait_for

pytestmark = pytest.mark.timeout(120)

PYTHON_M = (sys.executable, "-m", "adelayed")
CONSOLE_SCRIPT = (str(Path(sys.executable).with_name("adelayed")),)  # .venv/bin/adelayed

TASKS = """
import os
import time

import anyio
import redis


def _record(key, tag):
    with redis.Redis.from_url(os.environ["ADELAYED_TEST_REDIS_URL"]) as client:
        client.rpush(key, tag)


def record(tag):
    _record("ran", tag)


def sleep_long(tag):
    _record("started", tag)
    time.sleep(60)
    _record("ran", tag)


async def async_sleep_long(tag):
    _record("started", tag)
    await anyio.sleep(60)
    _record("ran", tag)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root as a user has one: ``app/tasks.py``, run from its own directory."""
    root = tmp_path / "project"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "tasks.py").write_text(TASKS)
    (root / "app" / "explodes.py").write_text("raise RuntimeError('a bug in the task module')\n")
    return root


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:  # the test failed before stopping it
            process.kill()
        process.wait()


class Command:
    """One run of the command: its process, with stderr (the log) in a file."""

    def __init__(
        self, project: Path, url: str, args: Sequence[str], program: Sequence[str] = PYTHON_M
    ) -> None:
        self.stderr = project.parent / f"stderr-{len(list(project.parent.glob('stderr-*')))}"
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(ADELAYED_TEST_REDIS_URL=url, PYTHONUNBUFFERED="1")
        env.pop("ADELAYED_REDIS_URL", None)
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*program, *args],
                cwd=project,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # As in a terminal, whatever the test runner's own SIGINT disposition is.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        _STARTED.append(self.process)

    def log(self) -> str:
        return self.stderr.read_text()

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            log = self.log()
            raise AssertionError(f"adelayed still running after {timeout}s:\n{log}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait(timeout)

    def assert_short_errors(self, *expected: str) -> None:
        """stderr is a few lines, no traceback, and holds each expected piece."""
        text = self.log()
        assert "Traceback" not in text, text
        assert len(text.splitlines()) <= 8, text
        for piece in expected:
            assert piece in text, text


def adelayed(project: Path, url: str, *args: str) -> Command:
    return Command(project, url, args)


def run(project: Path, url: str, *args: str) -> Command:
    """Runs a command that ends by itself (an error at start)."""
    command = adelayed(project, url, *args)
    command.wait()
    return command


async def ran(client: redis.Redis, *tags: str) -> bool:
    return texts(await client.lrange("ran", 0, -1)) == list(tags)


async def count(client: redis.Redis, key: str, wanted: int) -> bool:
    return int(await client.llen(key)) == wanted


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Where task modules come from ---------------------------------------------------------------


async def test_the_console_script_imports_task_modules_from_the_current_directory(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, project: Path
) -> None:
    await queue.enqueue(PyTask("app.tasks:record", args=("from the project",)))
    worker = Command(
        project,
        redis_server.url,
        ["--url", redis_server.url, "-q", "jobs", "worker", "app.tasks", "--sweep-interval", "0"],
        program=CONSOLE_SCRIPT,
    )
    await wait_for(lambda: ran(client, "from the project"), what="the task", timeout=20)
    assert worker.stop(signal.SIGTERM) == 0  # a clean stop
    assert "Traceback" not in worker.log()
    assert "no task can run" not in worker.log()


async def test_a_worker_with_no_tasks_at_all_warns_that_every_task_will_be_dead_lettered(
    client: redis.Redis, redis_server: EmbeddedRedis, project: Path
) -> None:
    worker = adelayed(project, redis_server.url, "--url", redis_server.url, "worker")
    await wait_for(lambda: "every task will be dead-lettered" in worker.log(), what="warning")
    assert "adelayed worker app.tasks" in worker.log()  # how to fix it
    assert worker.stop(signal.SIGTERM) == 0


# Options before or after the command --------------------------------------------------------

QUEUE_OPTIONS = (
    "-q", "emails", "--keep-alive-timeout", "3", "--max-payload-size", "300",
    "--log-level", "warning",
)  # fmt: skip


@pytest.mark.parametrize("placement", ["before", "after"])
async def test_the_worker_takes_queue_options_before_or_after_the_command(
    client: redis.Redis, redis_server: EmbeddedRedis, project: Path, placement: str
) -> None:
    emails = Queue("emails", client)
    await emails.enqueue(PyTask("app.tasks:record", args=("small",)))
    await emails.enqueue(PyTask("app.tasks:record", args=("x" * 400,)))  # over 300 bytes
    command = ["worker", "app.tasks", "--keep-alive-interval", "1", "--sweep-interval", "0"]
    options = ["--url", redis_server.url, *QUEUE_OPTIONS]
    args = [*options, *command] if placement == "before" else [*command, *options]
    worker = adelayed(project, redis_server.url, *args)
    await wait_for(lambda: ran(client, "small"), what="the task of queue emails")
    await wait_for(lambda: count(client, "emails_dead", 1), what="the oversized task")
    [dead] = await emails.dead_tasks()
    assert "max_payload_size (300)" in dead.reason
    ttls = [await client.pttl(key) for key in await client.keys("adelayed:worker:*")]
    assert ttls and all(0 < ttl <= 3000 for ttl in ttls)  # --keep-alive-timeout 3
    assert worker.stop(signal.SIGTERM) == 0
    assert "started" not in worker.log()  # --log-level warning: no INFO line


@pytest.mark.parametrize("placement", ["before", "after"])
async def test_the_sweeper_takes_queue_options_before_or_after_the_command(
    client: redis.Redis, redis_server: EmbeddedRedis, project: Path, placement: str
) -> None:
    # A task whose worker died (its liveness key is gone): with --max-deliveries 1 the
    # first death dead-letters it.
    payload = PyTask("app.tasks:record", args=("x",)).serialize()
    await client.hset("jobs_processing", "adelayed:worker:0123456789abcdef:0", payload)
    options = ["--url", redis_server.url, "-q", "jobs", "--max-deliveries", "1"]
    command = ["sweep", "--interval", "0.1"]
    args = [*options, *command] if placement == "before" else [*command, *options]
    sweeper = adelayed(project, redis_server.url, *args)
    await wait_for(lambda: count(client, "jobs_dead", 1), what="the dead-lettered task")
    sweeper.stop(signal.SIGTERM)
    assert await client.llen("jobs") == 0


def _options(argv: list[str]) -> QueueOptions:
    """The merged queue options of a command line, as worker or sweep would use them."""
    seen: list[QueueOptions] = []

    def capture(_func: object, options: QueueOptions, *_: object) -> int:
        seen.append(options)
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_cli_run, "run_async", capture)
        patch.delenv("ADELAYED_REDIS_URL", raising=False)
        cli.main(argv, "adelayed", standalone_mode=False)
    [options] = seen
    return options


def test_every_queue_option_parses_the_same_before_and_after_the_command() -> None:
    shared = [
        "--url", "redis://elsewhere:6380/2", "-q", "emails", "--keep-alive-timeout", "7",
        "--max-deliveries", "2", "--max-payload-size", "4096", "--allow-eviction",
        "--log-level", "debug",
    ]  # fmt: skip
    for command in (["worker", "app.tasks"], ["sweep"]):
        before, after = _options([*shared, *command]), _options([*command, *shared])
        assert before == after
        assert (before.redis_url, before.queues, before.max_deliveries) == (
            shared[1],
            ("emails",),
            2,
        )
        assert before.allow_eviction and before.log_level == "DEBUG"
    defaults = _options(["sweep"])
    assert (defaults.queues, defaults.max_deliveries, defaults.allow_eviction) == (
        ("default",),
        5,
        False,
    )
    # A value after the command wins; queues given on both sides add up.
    assert _options(["--max-deliveries", "2", "sweep", "--max-deliveries", "3"]).max_deliveries == 3
    assert _options(["-q", "a", "sweep", "-q", "b"]).queues == ("a", "b")
    # --redis-url is --url's long name, and $ADELAYED_REDIS_URL its default.
    assert _options(["sweep", "--redis-url", "redis://x:1/0"]).redis_url == "redis://x:1/0"


def test_the_redis_url_comes_from_the_environment_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[QueueOptions] = []
    monkeypatch.setattr(_cli_run, "run_async", lambda _f, options, *_: seen.append(options))
    monkeypatch.setenv("ADELAYED_REDIS_URL", "redis://from-env:6390/3")
    cli.main(["sweep"], "adelayed", standalone_mode=False)
    cli.main(["--url", "redis://given:1/0", "sweep"], "adelayed", standalone_mode=False)
    assert [options.redis_url for options in seen] == [
        "redis://from-env:6390/3",
        "redis://given:1/0",
    ]


# Errors and exit codes ----------------------------------------------------------------------


async def test_a_missing_task_module_is_one_error_line_and_exit_code_1(
    redis_server: EmbeddedRedis, project: Path
) -> None:
    command = run(project, redis_server.url, "--url", redis_server.url, "worker", "app.taskz")
    assert command.process.returncode == 1
    command.assert_short_errors(
        "adelayed: error: adelayed worker: cannot import module 'app.taskz'",
        "No module named 'app.taskz'",
        str(project),  # the directory it looked in
    )


async def test_an_error_raised_inside_the_running_worker_is_one_line_too(
    redis_server: EmbeddedRedis, project: Path
) -> None:
    # The embedded sweeper refuses its interval inside the worker's task group.
    command = run(
        project, redis_server.url, "--url", redis_server.url, "worker", "app.tasks",
        "--sweep-interval", "-1",
    )  # fmt: skip
    assert command.process.returncode == 1
    command.assert_short_errors("adelayed: error: sweeper interval must be positive")


@pytest.mark.parametrize("command", ["worker", "sweep"])
@pytest.mark.parametrize(
    ("url_of", "expected"),
    [
        (lambda port: f"redis://nobody:wrong@127.0.0.1:{port}/0", "password"),
        (lambda port: f"redis://127.0.0.1:{port}/99", "database"),
    ],
    ids=["wrong-password", "bad-database"],
)
async def test_redis_refusing_the_settings_ends_the_command_with_one_line_and_exit_code_1(
    redis_server: EmbeddedRedis, project: Path, command: str, url_of: object, expected: str
) -> None:
    assert callable(url_of)
    url = url_of(redis_server.port)
    args = ["--url", url, command, *(["app.tasks"] if command == "worker" else [])]
    ended = run(project, redis_server.url, *args)
    assert ended.process.returncode == 1
    ended.assert_short_errors("adelayed: error:", expected)


@pytest.fixture
async def evicting_redis(client: redis.Redis) -> AsyncIterator[None]:
    """The test Redis (private to this test session) with a policy that can evict keys."""
    await client.config_set("maxmemory-policy", "volatile-lru")
    yield
    await client.config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize("placement", ["before", "after"])
@pytest.mark.parametrize("command", ["worker", "sweep"])
async def test_allow_eviction_lets_the_command_start_on_an_evicting_redis(
    redis_server: EmbeddedRedis, project: Path, evicting_redis: None, command: str, placement: str
) -> None:
    args = [command, *(["app.tasks"] if command == "worker" else [])]
    refused = run(project, redis_server.url, "--url", redis_server.url, *args)
    assert refused.process.returncode == 1
    refused.assert_short_errors("adelayed: error:", "maxmemory-policy", "noeviction")
    flag = ["--allow-eviction"]
    args = [*flag, *args] if placement == "before" else [*args, *flag]
    allowed = adelayed(project, redis_server.url, "--url", redis_server.url, *args)
    await wait_for(lambda: "accepted by allow_eviction=True" in allowed.log(), what="the start")
    assert allowed.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # a sweeper has no handler


async def test_a_bug_in_a_task_module_still_shows_its_traceback(
    redis_server: EmbeddedRedis, project: Path
) -> None:
    command = run(project, redis_server.url, "--url", redis_server.url, "worker", "app.explodes")
    assert command.process.returncode == 1
    assert "Traceback" in command.log() and "a bug in the task module" in command.log()


@pytest.mark.parametrize(
    "args",
    [["-q", "a", "worker", "app.tasks", "-q", "a"], ["worker", "--no-such-option"]],
    ids=["a-queue-named-twice", "unknown-option"],
)
async def test_a_usage_error_exits_with_code_2(
    redis_server: EmbeddedRedis, project: Path, args: list[str]
) -> None:
    command = run(project, redis_server.url, "--url", redis_server.url, *args)
    assert command.process.returncode == 2
    command.assert_short_errors("adelayed: error:")


async def test_ctrl_c_before_the_worker_starts_exits_quietly_with_code_130(
    redis_server: EmbeddedRedis, project: Path
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # start-up waits for this Redis
    worker = adelayed(project, redis_server.url, "--url", nowhere, "worker", "app.tasks")
    await wait_for(lambda: "retrying in" in worker.log(), what="the start-up waiting")
    assert worker.stop(signal.SIGINT, timeout=10) == 130
    worker.assert_short_errors()


async def test_ctrl_c_stops_a_sweeper_quietly_with_code_130(
    redis_server: EmbeddedRedis, project: Path
) -> None:
    sweeper = adelayed(project, redis_server.url, "--url", redis_server.url, "sweep")
    await wait_for(lambda: "sweeper started" in sweeper.log(), what="the sweeper")
    assert sweeper.stop(signal.SIGINT, timeout=10) == 130
    sweeper.assert_short_errors()


@pytest.mark.parametrize(
    ("sig", "function"),
    [(signal.SIGINT, "app.tasks:sleep_long"), (signal.SIGTERM, "app.tasks:async_sleep_long")],
)
async def test_a_hard_stop_exits_with_128_plus_the_signal(
    client: redis.Redis, queue: Queue, redis_server: EmbeddedRedis, project: Path,
    sig: signal.Signals, function: str,
) -> None:  # fmt: skip
    await queue.enqueue(PyTask(function, args=("long",)))
    worker = adelayed(
        project, redis_server.url, "--url", redis_server.url, "-q", "jobs", "worker",
        "app.tasks", "--sweep-interval", "0",
    )  # fmt: skip
    await wait_for(lambda: count(client, "started", 1), what="the running task")
    worker.process.send_signal(sig)
    await wait_for(lambda: "finishing running tasks" in worker.log(), what="the first signal")
    assert worker.stop(sig, timeout=10) == 128 + sig.value  # 130 for SIGINT, 143 for SIGTERM
    assert await client.llen("jobs") == 1  # requeued
    assert "Traceback" not in worker.log()


def test_help_lists_the_exit_codes() -> None:
    shown = subprocess.run([*PYTHON_M, "--help"], capture_output=True, text=True, check=True)
    assert "exit codes:" in shown.stdout
    for code in ("0 ", "1 ", "2 ", "130/143"):
        assert f"\n  {code}" in shown.stdout, shown.stdout


# What a worker says about a task module it cannot import ------------------------------------


@pytest.fixture
def trap_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Importable modules whose import would show: none may be imported unless allowed."""
    root = tmp_path / "importable"
    (root / "trap_pkg").mkdir(parents=True)
    trap = "import sys\nsys.modules['tests.test_cli'].IMPORTED.append(__name__)\n"
    (root / "trap_module.py").write_text(trap + "def run(): pass\n")
    (root / "trap_pkg" / "__init__.py").write_text(trap)
    (root / "trap_pkg" / "sub.py").write_text(trap + "def run(): pass\n")
    (root / "needs_missing_dependency.py").write_text("import adelayed_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(root))
    _forget_trap_modules()
    yield root
    _forget_trap_modules()


def _forget_trap_modules() -> None:
    IMPORTED.clear()
    for name in [name for name in sys.modules if name.startswith(("trap_", "needs_missing"))]:
        del sys.modules[name]


IMPORTED: list[str] = []


async def test_a_task_of_a_module_that_cannot_be_imported_says_so_not_refused(
    queue: Queue, trap_modules: Path
) -> None:
    await queue.enqueue(PyTask("app_gone.tasks:run"))
    await queue.enqueue(PyTask("trap_pkg.gone:run"))  # the package exists, its module does not
    async with running(make_worker(queue)):
        await wait_for(lambda: _dead(queue, 2), what="two dead letters")
    reasons = sorted(dead.reason for dead in await queue.dead_tasks())
    for reason, missing in zip(reasons, ("app_gone", "trap_pkg.gone"), strict=True):
        assert "not allowed" not in reason
        assert "cannot import module" in reason and f"No module named {missing!r}" in reason
        assert "PYTHONPATH" in reason and os.getcwd() in reason
    assert IMPORTED == []  # finding out imported nothing


async def test_an_importable_module_outside_the_allowlist_is_refused_and_not_imported(
    queue: Queue, trap_modules: Path
) -> None:
    await queue.enqueue(PyTask("trap_module:run"))
    await queue.enqueue(PyTask("trap_pkg.sub:run"))
    async with running(make_worker(queue)):
        await wait_for(lambda: _dead(queue, 2), what="two dead letters")
    for dead in await queue.dead_tasks():
        assert dead.reason.startswith("FunctionNotAllowedError") and "not allowed" in dead.reason
    assert IMPORTED == []


async def test_with_allow_any_function_a_missing_module_is_not_called_a_refusal(
    queue: Queue, trap_modules: Path
) -> None:
    await queue.enqueue(PyTask("app_gone.tasks:run"))
    async with running(make_worker(queue, allow_any_function=True)):
        await wait_for(lambda: _dead(queue, 1), what="the dead letter")
    [dead] = await queue.dead_tasks()
    assert not dead.reason.startswith("FunctionNotAllowedError"), dead.reason
    assert "cannot import module 'app_gone.tasks'" in dead.reason


async def _dead(queue: Queue, wanted: int) -> bool:
    return len(await queue.dead_tasks()) == wanted


def test_worker_tasks_naming_a_missing_module_fail_at_start_naming_it(
    queue: Queue, trap_modules: Path
) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot import module 'app_gone\.tasks'") as info:
        Worker(queue, 10, 1, tasks=["tests.tasks", "app_gone.tasks"])
    assert "PYTHONPATH" in str(info.value) and os.getcwd() in str(info.value)
    with pytest.raises(ConfigurationError, match=r"'trap_pkg\.gone:run'.*No module named"):
        Worker(queue, 10, 1, tasks=["trap_pkg.gone:run"])


def test_a_task_module_whose_own_import_fails_is_told_apart_from_a_missing_one(
    queue: Queue, trap_modules: Path
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Worker(queue, 10, 1, tasks=["needs_missing_dependency"])
    message = str(info.value)
    assert "module 'needs_missing_dependency' was found but its import failed" in message
    assert "adelayed_no_such_dependency" in message


async def test_a_worker_serves_several_queues_in_the_order_given(
    client: redis.Redis, redis_server: EmbeddedRedis, project: Path
) -> None:
    for name in ("low", "high"):
        await Queue(name, client).enqueue_many(
            [PyTask("app.tasks:record", args=(f"{name}{i}",)) for i in range(3)]
        )
    args = ["--url", redis_server.url, "worker", "app.tasks", "-q", "high", "-q", "low", "-c", "1"]
    worker = adelayed(project, redis_server.url, *args, "--sweep-interval", "0")
    await wait_for(lambda: count(client, "ran", 6), what="six tasks")
    assert await ran(client, "high0", "high1", "high2", "low0", "low1", "low2")
    assert worker.stop(signal.SIGTERM) == 0
    assert "started on queues 'high', 'low'" in worker.log()
    twice = run(project, redis_server.url, "-q", "a", "worker", "app.tasks", "-q", "a")
    assert twice.process.returncode == 2 and "names a queue twice" in twice.log()
