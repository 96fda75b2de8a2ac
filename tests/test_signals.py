"""Stop signals reach every worker on the event loop, and the handlers found before are put
back when the last worker stops. Real signals, sent to this test process: a handler of the
test's own is installed first, so a signal no worker catches cannot end the test run."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator

import anyio
import pytest
import redis.asyncio as redis

from adelayed import PyTask, Queue, Worker
from tests import tasks
from tests.helpers import make_worker, wait_for


@pytest.fixture
def caught() -> Iterator[list[int]]:
    """Signals that reached the handlers in place before any worker started."""
    seen: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in before:
        signal.signal(sig, lambda signum, frame: seen.append(signum))
    yield seen
    for sig, handler in before.items():
        signal.signal(sig, handler)


def listening(workers: list[Worker]) -> bool:
    """Whether every worker listens for stop signals: its hand is set once it claimed its id,
    right before it joins the signal hub (no await between)."""
    return all(worker._hand for worker in workers)


def two_workers(client: redis.Redis) -> list[Worker]:
    return [
        make_worker(Queue(name, client, dequeue_timeout=0.2), handle_signals=True)
        for name in ("jobs", "other")
    ]


async def test_one_signal_reaches_every_worker_and_the_old_handler_comes_back(
    client: redis.Redis, caught: list[int]
) -> None:
    ours = signal.getsignal(signal.SIGTERM)
    workers = two_workers(client)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for worker in workers:
                group.start_soon(worker.run)
            await wait_for(lambda: listening(workers), what="both workers listening")
            os.kill(os.getpid(), signal.SIGTERM)  # both stop, so the group ends
    assert caught == []
    assert [worker.hard_stop_signal for worker in workers] == [None, None]
    assert signal.getsignal(signal.SIGTERM) is ours
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_for(lambda: caught == [signal.SIGTERM], what="the old handler")


async def test_a_second_signal_hard_stops_every_worker_and_names_the_signal(
    client: redis.Redis, caught: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adelayed")
    workers = two_workers(client)
    for name in ("jobs", "other"):
        await Queue(name, client).enqueue(PyTask(tasks.async_sleep, args=(30, name)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for worker in workers:
                group.start_soon(worker.run)
            await wait_for(lambda: tasks.active() == 2, what="a task in each worker")
            os.kill(os.getpid(), signal.SIGTERM)
            await wait_for(lambda: caplog.text.count("finishing running tasks") == 2)
            assert tasks.active() == 2  # both go on running their task
            os.kill(os.getpid(), signal.SIGTERM)
    assert caught == []
    assert [worker.hard_stop_signal for worker in workers] == [signal.SIGTERM] * 2
    assert tasks.ran == []
    for name in ("jobs", "other"):
        assert await client.llen(name) == 1


async def test_a_handler_of_the_event_loop_s_own_comes_back_too(
    client: redis.Redis, caught: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    hups: list[str] = []
    loop.add_signal_handler(signal.SIGHUP, hups.append, "app")
    try:
        worker = make_worker(Queue("jobs", client, dequeue_timeout=0.2), handle_signals=True)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(worker.run)
                await wait_for(lambda: _handler_of(loop, signal.SIGHUP) != hups.append)
                os.kill(os.getpid(), signal.SIGHUP)
        assert hups == []
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: hups == ["app"], what="the loop's own handler")
        assert caught == []
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _handler_of(loop: asyncio.AbstractEventLoop, sig: int) -> object:
    """The callback of the loop's handler for ``sig`` (asyncio's Unix loops keep them here)."""
    handle = loop._signal_handlers.get(sig)  # type: ignore[attr-defined]
    return None if handle is None else handle._callback


async def test_a_worker_that_says_it_started_already_catches_stop_signals(
    client: redis.Redis, caught: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """A supervisor that sends SIGTERM as soon as the worker logs that it started must get a
    clean stop, not the default action (the signal killed the process: exit -15)."""
    ours = signal.getsignal(signal.SIGTERM)
    at_start: list[bool] = []

    class AtStart(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "started on queue" in record.getMessage():
                at_start.append(signal.getsignal(signal.SIGTERM) is not ours)
                os.kill(os.getpid(), signal.SIGTERM)

    caplog.set_level(logging.INFO, logger="adelayed")
    watcher = AtStart()
    logging.getLogger("adelayed").addHandler(watcher)
    try:
        worker = make_worker(Queue("jobs", client, dequeue_timeout=0.2), handle_signals=True)
        with anyio.fail_after(10):
            await worker.run()  # the signal stops it
    finally:
        logging.getLogger("adelayed").removeHandler(watcher)
    assert at_start == [True]
    assert caught == []
