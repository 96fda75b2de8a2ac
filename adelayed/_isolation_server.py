"""adelayed's process server, for ``isolation="process"`` (see adelayed._isolation): a clean
single-threaded interpreter that forks one child per call, reports each child's pid and exit
code, and kills the children still running when the worker's socket closes. Then, in the
child: take the call, run it, send its outcome back, leave at once.

The worker's requests: FORK, one byte carrying two file descriptors (a socket for the call and
its outcome, pickled; a pipe for the child's pid and exit code, a NUMBER each), and KILL, one
byte and a pid: the server kills that child's process group, if the child is not reaped yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import traceback
from typing import Any

NUMBER = struct.Struct("q")  # a child's pid, then its exit code, on its status pipe
FORK, KILL = b"F", b"K"  # the requests: FORK with two fds, KILL followed by a NUMBER (a pid)
OK, RAISED = "ok", "raised"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def serve(control_fd: int) -> None:
    """Runs the process server until the worker's socket closes, then kills what still runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when children end
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (systemd's stop signals the whole cgroup)
    _Server(socket.socket(fileno=control_fd)).run()


class _Server:
    """Forks a child per request, reports its pid and exit code on the request's status pipe,
    kills a child on request. Children are reaped only here, in the loop: a pid it was asked
    to kill is never one that was reaped already and reused."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._children: dict[int, int] = {}  # pid -> its status pipe
        self._wake, wake_for_signals = os.pipe()
        for fd in (self._wake, wake_for_signals):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_for_signals)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes select()
        self._selector = selectors.DefaultSelector()
        self._selector.register(control, selectors.EVENT_READ)
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._own_fds = [control.fileno(), self._wake, wake_for_signals, self._selector.fileno()]

    def run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fd == self._wake:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake, 4096)
                    self._reap()
                elif not self._serve_one():
                    for pid in self._children:
                        with contextlib.suppress(OSError):
                            os.killpg(pid, signal.SIGKILL)
                    return

    def _serve_one(self) -> bool:
        """Serves one request (FORK with its two fds, or KILL and a pid); False once the
        worker's socket closed."""
        try:
            message, fds, _, _ = socket.recv_fds(self._control, 1, 2)
            if message == KILL:
                pid = NUMBER.unpack(_receive(self._control, NUMBER.size))[0]
                if pid in self._children:
                    os.killpg(pid, signal.SIGKILL)
        except (OSError, EOFError):
            return False
        if message == FORK and len(fds) == 2:
            self._fork(*fds)
        else:
            for fd in fds:  # not a request of ours
                os.close(fd)
        return bool(message)

    def _fork(self, data: int, status: int) -> None:
        pid = os.fork()
        if pid == 0:
            _child(data, [*self._own_fds, status, *self._children.values()])
        with contextlib.suppress(OSError):  # the child does it too: one of them is first
            os.setpgid(pid, pid)  # so the group is there before the pid is sent
        os.close(data)
        os.write(status, NUMBER.pack(pid))
        self._children[pid] = status

    def _reap(self) -> None:
        while self._children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status = self._children.pop(pid, None)
            if status is not None:
                with contextlib.suppress(OSError):  # the caller gave up on it
                    os.write(status, NUMBER.pack(os.waitstatus_to_exitcode(wait_status)))
                os.close(status)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


# In the child


def _child(data_fd: int, server_fds: list[int]) -> None:
    """A child's whole life: take the call, run it, send its outcome back, leave at once."""
    code = 70  # EX_SOFTWARE: adelayed's own code failed here (its traceback is on stderr)
    try:
        _detach(server_fds)
        with socket.socket(fileno=data_fd) as data:
            request = bytearray()
            while chunk := data.recv(1 << 16):
                request += chunk
            outcome = _run(request)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.flush()  # os._exit below would drop what the task printed
            data.sendall(outcome)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _run(request: bytes | bytearray) -> bytes:
    """The pickled outcome of the call in ``request``, run with the caller's sys.path, sys.argv
    and working directory."""
    try:
        func_path, args, kwargs, path, argv, cwd = pickle.loads(request)
        sys.path[:], sys.argv[:] = path, argv
        os.chdir(cwd)
    except Exception as exc:
        type_name, message, text = describe(exc)
        message = f"the task's child process cannot take the call: {message}"
        return pickle.dumps((RAISED, type_name, message, text), pickle.HIGHEST_PROTOCOL)
    return _outcome(func_path, args, kwargs)


def _detach(server_fds: list[int]) -> None:
    """Drops what the child got from the server, and takes a process group of its own (Ctrl-C
    in a terminal does not reach it, a kill reaches what it starts); on Linux, it dies with the
    server."""
    signal.set_wakeup_fd(-1)
    for fd in server_fds:
        os.close(fd)
    for signum, handler in (
        (signal.SIGCHLD, signal.SIG_DFL),
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler),
    ):
        signal.signal(signum, handler)
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _outcome(func_path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The pickled return value, or the pickled description of what the call raised."""
    try:
        result = _import(func_path)(*args, **kwargs)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the task's failures too
        return pickle.dumps((RAISED, *describe(exc)), pickle.HIGHEST_PROTOCOL)
    try:
        return pickle.dumps((OK, result), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        type_name, message, text = describe(exc)
        message = f"the return value of {func_path!r} cannot be sent back to the worker: {message}"
        return pickle.dumps((RAISED, type_name, message, text), pickle.HIGHEST_PROTOCOL)


def _import(func_path: str) -> Any:
    module_name, _, name = func_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"the child process of task {func_path!r} cannot import module {module_name!r}: "
            f"{exc} (it has the worker's sys.path and working directory, {os.getcwd()})"
        ) from exc
    func = getattr(module, name, None)
    if not callable(func):
        raise ImportError(f"module {module_name!r} has no function {name!r} (task {func_path!r})")
    return func


def describe(exc: BaseException) -> tuple[str, str, str]:
    """The qualified type name, message and formatted traceback of ``exc``."""
    cls = type(exc)
    try:
        message = str(exc)
        text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    except Exception as failure:  # a __str__ that raises must not lose the task's failure
        message = text = f"<the exception's text could not be made: {failure!r}>"
    return f"{cls.__module__}.{cls.__qualname__}", message, text
