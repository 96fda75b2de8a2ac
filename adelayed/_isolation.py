"""``isolation="process"``: a task's function runs in a child process that is killed at its
deadline. A plain function in a thread cannot be stopped; a process can.

How a call goes:

- Children are forked by a *process server* of adelayed's own, never by the worker: forking a
  process that runs threads and an event loop is unsafe (a lock another thread held stays held
  in the child). The server is a clean single-threaded interpreter started once per worker
  process, with adelayed imported, so a trivial call costs about 5 ms instead of the 150 ms of
  an interpreter start and adelayed's imports (``spawn``); the task's own module is imported
  in each child. Unlike multiprocessing's ``forkserver`` and ``spawn``, nothing imports the
  worker's main script again: a script that starts a worker needs no ``__main__`` guard.
- Each child runs with the caller's ``sys.path``, ``sys.argv`` and working directory, sent with
  each call (its environment is the worker's when the server started). It imports
  ``module:func``, calls it (``asyncio.run`` for a coroutine), pickles the outcome back and
  leaves with ``os._exit``: threads the task left behind cannot hold it up.
- The caller waits on its event loop (the sockets and pipes are watched with the loop's
  readers), never blocking it. At the deadline, or when the call is cancelled, the child's
  process group (the child and what it started) gets SIGKILL, and the call returns only once
  the server reaped the child and reported its exit status: no zombie, no orphan.
- The child is in a process group of its own, so a terminal's Ctrl-C (sent to the worker's
  group) does not reach it: the worker decides when it ends. The server ends when the worker
  does (even by SIGKILL: its socket closes) and kills the children still running; on Linux a
  child also gets SIGKILL should the server itself die.

Only for POSIX systems (``os.fork``, ``os.killpg``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from ._isolation_server import FORK, KILL, NUMBER, RAISED, describe
from .errors import ConfigurationError, RemoteTaskError, TaskCrashedError, TaskTimeoutError

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0  # the server's first start imports adelayed: seconds on a busy machine
_REAP_TIMEOUT = 30.0  # a SIGKILLed process is gone in ms; this only bounds a stuck kernel
_SERVER_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
    "from adelayed._isolation_server import serve; serve(int(sys.argv[1]))"
)


async def call_in_process(
    func_path: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: float | None,  # noqa: ASYNC109 - its deadline kills the child: no cancel scope can
) -> Any:
    """Calls the function ``func_path`` (``"module:func"``) with ``args`` and ``kwargs`` in a
    child process and returns what it returned. Arguments and the return value cross by pickle.

    Raises TaskTimeoutError when it runs past ``timeout`` seconds (the child is killed),
    TaskCrashedError when the child dies without returning (a signal, a segfault, the OOM
    killer, ``os._exit``), RemoteTaskError for an exception the function raised (an
    ``builtins.ImportError`` one when the child cannot import ``func_path``). Cancelling the
    call kills the child; the CancelledError propagates once the child is reaped. The timeout
    counts from the child's start (the process server's first start, once per process, is not
    counted against a task).
    """
    if ":" not in func_path:
        raise ConfigurationError(f"call_in_process: {func_path!r} is no 'module:func' path")
    request = pickle.dumps(
        (func_path, tuple(args), dict(kwargs), sys.path, sys.argv, os.getcwd()),
        pickle.HIGHEST_PROTOCOL,
    )
    child = _server.fork()
    try:
        await child.start(request, func_path)
        if not await child.wait(timeout):
            logger.info(
                "task %s: killing its child process %s at its timeout", func_path, child.pid
            )
            raise TaskTimeoutError(
                f"task {func_path!r} ran past its timeout of {timeout:g} s: its child process "
                "was killed and the attempt failed; give it a longer timeout= if it needs one"
            )
        return child.outcome(func_path)
    except BaseException:  # timed out, cancelled (a hard stop), or no child: none may run on
        await child.kill()
        raise
    finally:
        child.close()


class _Server:
    """The process server of this process, started on first use and again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a worker may run event loops in several threads
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def fork(self) -> _Child:
        """Asks the server for a child; returns at once (the child's pid comes later)."""
        data, data_for_child = socket.socketpair()
        status, status_for_server = os.pipe()
        try:
            self._send([data_for_child.fileno(), status_for_server])
        except BaseException:
            data.close()
            os.close(status)
            raise
        finally:
            data_for_child.close()
            os.close(status_for_server)
        return _Child(data, status)

    def _send(self, fds: list[int]) -> None:
        with self._lock:
            try:
                socket.send_fds(self._running(), [FORK], fds)
            except OSError:  # it died, or hangs with its socket full: start another, once
                logger.warning("adelayed's process server has gone; starting another")
                self.stop(wait=0)
                socket.send_fds(self._running(), [FORK], fds)

    def kill(self, pid: int) -> None:
        """Has the server kill its child ``pid`` with its process group, unless reaped."""
        with self._lock, contextlib.suppress(OSError):  # a dead server took its children along
            if self._control is not None:
                self._control.sendall(KILL + NUMBER.pack(pid))

    def _running(self) -> socket.socket:
        if self._process is not None and self._process.poll() is not None:
            self.stop(wait=0)
        if self._control is None:
            self._control, theirs = socket.socketpair()
            self._control.setblocking(False)  # a send never blocks the event loop
            with theirs:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _SERVER_BOOT,
                        str(theirs.fileno()),
                        json.dumps(sys.path),
                    ],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                )
            logger.debug("started adelayed's process server, pid %s", self._process.pid)
        return self._control

    def forget(self) -> None:
        """In a process forked from this one: its server is the parent's, not this one's (a
        copy of its socket left open here would keep it from seeing its worker end)."""
        self._lock = threading.Lock()
        if self._control is not None:
            self._control.close()
        self._control, self._process = None, None

    def stop(self, wait: float = 5) -> None:
        """Closes the server's socket, so it kills its children and exits; reaps it, killing
        it after ``wait`` seconds."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(wait)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


_server = _Server()
atexit.register(_server.stop)
os.register_at_fork(after_in_child=_server.forget)


class _Child:
    """One call's child, watched from the event loop: its pid and exit code come on the status
    pipe; its result is drained from the data socket as it comes (so a large result cannot
    fill the socket and stall the child)."""

    def __init__(self, data: socket.socket, status: int) -> None:
        self.pid: int | None = None
        self.exit_code: int | None = None  # None once exited: the server died, no one knows
        self._data, self._status = data, status
        self._result, self._numbers = bytearray(), bytearray()
        self._loop = asyncio.get_running_loop()
        self._born = self._loop.time()
        self._started: asyncio.Future[None] = self._loop.create_future()
        self._exited: asyncio.Future[None] = self._loop.create_future()
        data.setblocking(False)
        os.set_blocking(status, False)
        self._loop.add_reader(status, self._read_status)

    async def start(self, request: bytes, func_path: str) -> None:
        """Sends the call and waits for the child's pid, both within _START_TIMEOUT."""
        self._loop.add_reader(self._data.fileno(), self._drain)
        deadline = self._born + _START_TIMEOUT
        with contextlib.suppress(OSError, asyncio.TimeoutError):  # its exit code says why
            await asyncio.wait_for(self._send(request), deadline - self._loop.time())
        await asyncio.wait({self._started}, timeout=max(0, deadline - self._loop.time()))
        if self.pid is None:
            raise TaskCrashedError(
                f"task {func_path!r}: adelayed's process server did not start a child process "
                "(its output above says why, e.g. adelayed cannot be imported there); the "
                "attempt failed, and the worker goes on"
            )

    async def _send(self, request: bytes) -> None:
        await self._loop.sock_sendall(self._data, request)
        self._data.shutdown(socket.SHUT_WR)

    def _read_status(self) -> None:
        try:
            chunk = os.read(self._status, 64)
        except BlockingIOError:
            return
        self._numbers += chunk
        if len(self._numbers) >= NUMBER.size and self.pid is None:
            self.pid = NUMBER.unpack_from(self._numbers)[0]
        if len(self._numbers) >= 2 * NUMBER.size:
            self.exit_code = NUMBER.unpack_from(self._numbers, NUMBER.size)[0]
        if not chunk or self.exit_code is not None:  # exited, or the server died (EOF)
            self._loop.remove_reader(self._status)
            for future in (self._started, self._exited):
                if not future.done():
                    future.set_result(None)
        elif self.pid is not None and not self._started.done():
            self._started.set_result(None)

    def _drain(self) -> bool:
        """Reads what the socket holds; False once it is empty for now, or closed."""
        try:
            chunk = self._data.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset: the child died; its exit code says how
            chunk = b""
        if not chunk:
            self._loop.remove_reader(self._data.fileno())
            return False
        self._result += chunk
        return True

    async def wait(self, seconds: float | None) -> bool:
        """Whether the child exited within ``seconds`` (None: however long it takes)."""
        done, _ = await asyncio.wait({self._exited}, timeout=seconds)
        return bool(done)

    async def kill(self) -> None:
        """Kills the child's process group and waits until the child is reaped, cancellation
        or not: no call returns with its child still there."""
        with anyio.CancelScope(shield=True):  # anyio's cancellation waits here
            cancelled = await self._wait_on(self._started, self._born + _START_TIMEOUT)
            if self.pid is not None and not self._exited.done():
                _server.kill(self.pid)
                cancelled |= await self._wait_on(self._exited, self._loop.time() + _REAP_TIMEOUT)
        if not self._exited.done():
            logger.error(
                "the child process %s of adelayed's process server is still there "
                "after SIGKILL (or never started)",
                self.pid,
            )
        if cancelled:
            raise asyncio.CancelledError

    async def _wait_on(self, future: asyncio.Future[None], deadline: float) -> bool:
        """Waits until ``future`` is done or ``deadline``; whether a native cancel came."""
        cancelled = False
        while not future.done() and self._loop.time() < deadline:
            try:
                await asyncio.wait({future}, timeout=deadline - self._loop.time())
            except asyncio.CancelledError:  # wait on, the caller raises it after
                cancelled = True
        return cancelled

    def outcome(self, func_path: str) -> Any:
        """The return value of an exited child, or the error that says why there is none."""
        while self._drain():
            pass
        if self.exit_code != 0 or not self._result:
            raise TaskCrashedError(_how_it_died(func_path, self.exit_code))
        try:
            status, *details = pickle.loads(self._result)
        except Exception as exc:
            type_name, message, text = describe(exc)
            message = f"the return value of {func_path!r} cannot be read here: {message}"
            raise RemoteTaskError(type_name, message, text) from exc
        if status == RAISED:
            raise RemoteTaskError(*details)
        return details[0]

    def close(self) -> None:
        for fd in (self._data.fileno(), self._status):
            self._loop.remove_reader(fd)
        self._data.close()
        os.close(self._status)


def _how_it_died(func_path: str, code: int | None) -> str:
    if code is None:
        how = "was lost: adelayed's process server died (it is restarted for the next task)"
    elif code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        if code == -signal.SIGSEGV:
            how += " (a segfault)"
        elif code == -signal.SIGKILL:
            how += " (the OOM killer, or someone else, killed it)"
    elif code == 0:
        how = "exited (code 0) before returning: the function called os._exit(0)"
    else:
        how = f"exited with code {code} before returning"
    return (
        f"task {func_path!r}: its child process {how}; the attempt failed, and the worker goes on"
    )
