"""isolation="process": a function run in a child process that is killed at its deadline
(adelayed._isolation.call_in_process). Real processes, no Redis."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import itertools
import os
import signal
import sys
import textwrap
import time
import uuid
from pathlib import Path

import anyio
import pytest

from adelayed import _isolation as isolation
from adelayed._isolation import _server, call_in_process
from adelayed.errors import RemoteTaskError, TaskCrashedError, TaskTimeoutError
from tests.helpers import wait_for
from tests.processes import ROOT

TASKS = "tests.isolated_tasks"


def reaped(pid: int) -> bool:
    """Whether no process ``pid`` is left, not even a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie of a reaper that is not ours counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


async def pid_in(path: Path) -> int:
    await wait_for(path.exists, 10, f"{path} to be written")
    return int(path.read_text())


async def test_a_runaway_loop_is_killed_at_its_timeout_while_the_loop_keeps_ticking(
    tmp_path: Path,
) -> None:
    await call_in_process(f"{TASKS}:echo", [], {}, None)  # the process server is up
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    pid_file = tmp_path / "pid"
    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as caught:
        await call_in_process(f"{TASKS}:spin", [str(pid_file)], {}, 1)
    elapsed = time.monotonic() - started
    ticking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticking
    assert 1 <= elapsed < 2
    assert "tests.isolated_tasks:spin" in str(caught.value)
    assert "timeout of 1 s" in str(caught.value)
    assert reaped(int(pid_file.read_text()))
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(ticks) > 50
    assert max(gaps) < 0.2  # a blocking wait on the child would stall the loop for 1 s


@pytest.mark.parametrize(
    ("func", "how"),
    [
        ("segfault", "killed by SIGSEGV (a segfault)"),
        ("killed_by_the_oom_killer", "killed by SIGKILL"),
        ("exit_at_once", "exited with code 3"),
    ],
)
async def test_a_child_that_dies_without_returning_is_a_crash_of_that_task(
    func: str, how: str
) -> None:
    with pytest.raises(TaskCrashedError) as caught:
        await call_in_process(f"{TASKS}:{func}", [], {}, 10)
    assert how in str(caught.value)
    assert f"{TASKS}:{func}" in str(caught.value)
    assert "the worker goes on" in str(caught.value)
    assert await call_in_process(f"{TASKS}:echo", [1], {}, 10) == ((1,), {})


async def test_an_exception_comes_back_with_its_type_message_and_traceback() -> None:
    with pytest.raises(RemoteTaskError) as caught:
        await call_in_process(f"{TASKS}:fail", ["boom"], {}, 10)
    error = caught.value
    assert (error.type_name, error.message) == ("builtins.ValueError", "boom")
    assert "isolated_tasks.py" in error.traceback_text
    assert "raise ValueError(message)" in error.traceback_text
    assert error.traceback_text.rstrip().endswith("ValueError: boom")


async def test_an_exception_type_is_named_with_its_module() -> None:
    with pytest.raises(RemoteTaskError) as caught:
        await call_in_process(f"{TASKS}:fail_with_own_error", [], {}, 10)
    assert caught.value.type_name == "tests.isolated_tasks.OwnError"
    assert str(caught.value) == "tests.isolated_tasks.OwnError: own"


async def test_return_values_come_back() -> None:
    assert await call_in_process(f"{TASKS}:nested", [b"\x00\xff"], {}, 10) == {
        "list": [1, [2.5, None, True]],
        "bytes": b"\x00\xff",
        "map": {"a": {"b": ["c"]}},
    }


async def test_a_result_larger_than_a_socket_buffer_comes_back() -> None:
    assert await call_in_process(f"{TASKS}:large", [20_000_000], {}, 10) == b"x" * 20_000_000


async def test_arguments_larger_than_a_socket_buffer_reach_the_function() -> None:
    assert await call_in_process("builtins:len", [b"x" * 20_000_000], {}, 10) == 20_000_000


async def test_args_and_kwargs_reach_the_function() -> None:
    result = await call_in_process(f"{TASKS}:echo", [1, "two"], {"three": [3], "four": b"4"}, 10)
    assert result == ((1, "two"), {"three": [3], "four": b"4"})


async def test_an_async_function_runs_on_an_event_loop_of_the_child() -> None:
    assert await call_in_process(f"{TASKS}:add_later", [1, 2], {}, 10) == (3, True)


async def test_a_result_that_cannot_be_pickled_is_an_error_of_the_task() -> None:
    with pytest.raises(RemoteTaskError, match="cannot be sent back to the worker"):
        await call_in_process(f"{TASKS}:unpicklable_result", [], {}, 10)


async def test_a_missing_module_or_function_is_an_import_error() -> None:
    with pytest.raises(RemoteTaskError) as caught:
        await call_in_process("tests.no_such_module:f", [], {}, 10)
    assert caught.value.type_name == "builtins.ImportError"
    assert "cannot import module 'tests.no_such_module'" in caught.value.message
    with pytest.raises(RemoteTaskError, match="has no function 'no_such_function'"):
        await call_in_process(f"{TASKS}:no_such_function", [], {}, 10)


async def test_the_child_finds_modules_on_the_callers_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await call_in_process(f"{TASKS}:echo", [], {}, None)  # a server started before the change
    name = f"isolated_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("def where():\n    return __file__\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert await call_in_process(f"{name}:where", [], {}, 10) == str(tmp_path / f"{name}.py")


async def test_the_child_has_the_callers_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["adelayed", "worker", "app.tasks"])
    assert await call_in_process(f"{TASKS}:argv", [], {}, 10) == ["adelayed", "worker", "app.tasks"]


async def test_arguments_the_child_cannot_unpickle_are_an_error_of_the_task(
    tmp_path: Path,
) -> None:
    name = f"isolated_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("class Thing:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        thing = importlib.import_module(name).Thing()
    finally:
        sys.path.remove(str(tmp_path))  # the child cannot import it
    with pytest.raises(RemoteTaskError) as caught:
        await call_in_process(f"{TASKS}:echo", [thing], {}, 10)
    assert "cannot take the call" in caught.value.message
    assert name in caught.value.message


async def test_cancelling_the_call_kills_and_reaps_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    call = asyncio.create_task(call_in_process(f"{TASKS}:spin", [str(pid_file)], {}, None))
    pid = await pid_in(pid_file)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert reaped(pid)


async def test_an_anyio_cancel_scope_kills_and_reaps_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with anyio.CancelScope() as scope:  # how the worker's hard stop cancels a task
        async with anyio.create_task_group() as group:
            group.start_soon(call_in_process, f"{TASKS}:spin", [str(pid_file)], {}, None)
            pid = await pid_in(pid_file)
            scope.cancel()
    assert scope.cancelled_caught
    assert reaped(pid)


def test_event_loops_in_several_threads_share_the_process_server() -> None:
    def calls(tag: int) -> list[object]:
        async def run() -> list[object]:
            return list(
                await asyncio.gather(
                    *(call_in_process(f"{TASKS}:echo", [tag, i], {}, 10) for i in range(10))
                )
            )

        return asyncio.run(run())

    _server.stop()  # the threads' first calls race to start it
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(calls, range(3)))
    assert results == [[((tag, i), {}) for i in range(10)] for tag in range(3)]
    assert len(process_servers()) == 1


def process_servers() -> list[int]:
    """The pids of the process servers this process started."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"adelayed._isolation_server" in cmdline:
            found.append(int(stat.parent.name))
    return found


async def test_a_timeout_kills_only_that_child(tmp_path: Path) -> None:
    napping = asyncio.create_task(
        call_in_process(f"{TASKS}:nap_then_return", [str(tmp_path / "pid"), 1], {}, 5)
    )
    with pytest.raises(TaskTimeoutError):
        await call_in_process(f"{TASKS}:spin", [], {}, 0.3)
    assert await napping == "rested"


async def test_what_the_task_started_is_killed_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper"
    with pytest.raises(TaskTimeoutError):
        await call_in_process(f"{TASKS}:spin_under_a_sleeper", [str(pid_file)], {}, 0.5)
    sleeper = int(pid_file.read_text())
    await wait_for(lambda: gone(sleeper), 5, "the task's own subprocess to be killed")


async def test_the_child_is_out_of_the_callers_process_group() -> None:
    pid, group = await call_in_process(f"{TASKS}:process_group", [], {}, 10)
    assert group == pid != os.getpgrp()  # so a terminal's Ctrl-C does not reach it


async def test_a_lost_process_server_fails_its_running_call_and_is_replaced(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    call = asyncio.create_task(call_in_process(f"{TASKS}:spin", [str(pid_file)], {}, 30))
    child = await pid_in(pid_file)
    assert _server._process is not None
    os.kill(_server._process.pid, signal.SIGKILL)
    with pytest.raises(TaskCrashedError, match="process server died"):
        await call
    await wait_for(lambda: gone(child), 5, "the child to die with its server")
    assert await call_in_process(f"{TASKS}:echo", [1], {}, 10) == ((1,), {})


async def test_a_child_does_not_outlive_a_killed_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(
        f"""
        import asyncio
        from adelayed._isolation import call_in_process
        asyncio.run(call_in_process("{TASKS}:spin", [{str(pid_file)!r}], {{}}, None))
        """
    )
    worker = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
    try:
        child = await pid_in(pid_file)
    finally:
        worker.kill()  # SIGKILL: no cleanup of its own runs
        await worker.wait()
    await wait_for(lambda: gone(child), 5, "the child to die with its worker")


async def test_a_process_forked_from_the_worker_does_not_keep_its_server_alive(
    tmp_path: Path,
) -> None:
    pid_file, fork_pid_file = tmp_path / "pid", tmp_path / "fork"
    script = textwrap.dedent(
        f"""
        import asyncio, os, time
        from adelayed._isolation import call_in_process
        asyncio.run(call_in_process("os:getpid", [], {{}}, None))  # the server is up
        if os.fork() == 0:  # a copy of the worker that lives on (a task's own fork, say)
            open({str(fork_pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(30)
            os._exit(0)
        asyncio.run(call_in_process("{TASKS}:spin", [{str(pid_file)!r}], {{}}, None))
        """
    )
    worker = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
    try:
        child = await pid_in(pid_file)
        worker.kill()
        await wait_for(lambda: gone(child), 5, "the child to die with its worker")
    finally:
        if worker.returncode is None:
            worker.kill()
        await worker.wait()
        if fork_pid_file.exists() and fork_pid_file.read_text():
            os.kill(int(fork_pid_file.read_text()), signal.SIGKILL)


async def test_a_process_server_that_cannot_start_fails_the_call_and_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _server.stop()
    monkeypatch.setattr(isolation, "_SERVER_BOOT", "raise SystemExit(5)")  # a broken install
    with pytest.raises(TaskCrashedError, match="process server did not start a child process"):
        await call_in_process(f"{TASKS}:echo", [], {}, 10)
    monkeypatch.undo()
    assert await call_in_process(f"{TASKS}:echo", [2], {}, 10) == ((2,), {})
