"""``f.delay(...)`` binds its arguments to ``f``'s signature before anything is sent."""

from __future__ import annotations

import inspect
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from adelayed import Backoff, ConfigurationError, PyTask, Queue, TaskDataError, delayed
from adelayed import _envelope as envelope
from adelayed.delay import call_checker
from tests import decorated_tasks
from tests.helpers import make_worker, raw, running, texts, wait_for


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "message"),
    [
        ("double", (), {}, r"missing a required argument: 'value'"),
        ("double", (1, 2), {}, r"too many positional arguments"),
        ("double", (), {"valu": 1}, r"missing a required argument: 'value'"),
        ("double", (1,), {"valu": 1}, r"unexpected keyword argument 'valu'"),
        ("double", (1,), {"value": 2}, r"multiple values for argument 'value'"),
        ("greet", (), {"name": "ann"}, r"'name' parameter is positional only"),
        ("greet", ("ann", "hi", True), {}, r"too many positional arguments"),
        ("record", (), {"tag": "x"}, r"missing a required argument: 'first'"),
    ],
)
async def test_a_call_the_function_refuses_is_refused_before_redis(
    queue: Queue, client: redis.Redis, name: str, args: Any, kwargs: Any, message: str
) -> None:
    decorated_tasks.bind(queue)
    func = getattr(decorated_tasks, name)
    for _ in range(2):  # the second time, past whatever the first call remembered
        with pytest.raises(TaskDataError, match=message) as caught:
            await func.delay(*args, **kwargs)
    text = str(caught.value)
    assert text.startswith(
        f"cannot enqueue tests.decorated_tasks:{name} on queue 'jobs': the call does not fit "
        f"{name}("
    )
    assert text.endswith(f"; pass the arguments {name}() takes")
    assert await client.llen("jobs") == 0
    assert await client.llen("jobs_noti") == 0


async def test_calls_that_fit_are_enqueued_and_run(queue: Queue, client: redis.Redis) -> None:
    decorated_tasks.bind(queue)
    await decorated_tasks.double.delay(value=3)
    await decorated_tasks.greet.delay("ann", loud=True)
    await decorated_tasks.record.delay(1, 2, 3, tag="x")
    await decorated_tasks.record.delay(4, other="y")
    assert await client.llen("jobs") == 4
    async with running(make_worker(queue)):
        await wait_for(lambda: sorted(decorated_tasks.results) == [1, 2, 3, 4, 6])
        await wait_for(lambda: _empty(client))


async def test_undecodable_arguments_are_refused_too(queue: Queue, client: redis.Redis) -> None:
    decorated_tasks.bind(queue)
    with pytest.raises(TaskDataError, match=r"args\[0\] has a key 1 \(int\)"):
        await decorated_tasks.double.delay({1: 2})
    assert await client.llen("jobs") == 0


async def _empty(client: redis.Redis) -> bool:
    return not await client.llen("jobs") and not await client.hlen("jobs_processing")


def _f1(a: int, b: int = 1, /, c: int = 2, *, d: int, e: int = 3) -> None: ...
def _f2(*args: int, **kwargs: int) -> None: ...
def _f3(a: int, *rest: int, b: int = 0, **named: int) -> None: ...
def _f4() -> None: ...
def _f5(a: int, b: int, c: int = 0) -> None: ...


@pytest.mark.parametrize("func", [_f1, _f2, _f3, _f4, _f5])
def test_the_remembered_shapes_agree_with_signature_bind(func: Callable[..., Any]) -> None:
    signature = inspect.signature(func)
    check = call_checker(func, "m:f", "q")
    names = ("a", "b", "c", "d", "e", "x")
    for count in range(5):
        args = tuple(range(count))
        for size in range(4):
            for chosen in itertools.permutations(names, size):
                kwargs = dict.fromkeys(chosen, 0)
                try:
                    signature.bind(*args, **kwargs)
                    fits = True
                except TypeError:
                    fits = False
                for _ in range(2):  # once binding, once from what was remembered
                    try:
                        check(args, kwargs)
                        checked = True
                    except TaskDataError:
                        checked = False
                    assert checked == fits, (func, args, kwargs)


async def test_options_delay_a_call_and_the_decorator_sets_defaults(
    queue: Queue, client: redis.Redis
) -> None:
    decorated_tasks.bind(queue)
    await decorated_tasks.double.options(delay=30, retry=4).delay(21)
    [id_] = texts(await client.zrange("jobs_scheduled", 0, -1))
    waiting = envelope.unpack(raw(await client.hget("jobs_jobs", id_)))
    assert waiting.payload == PyTask("tests.decorated_tasks:double", (21,), retry=4).serialize()
    timed = decorated_tasks.timed  # @task(retry=2, timeout=5, backoff=Backoff.fixed(1))
    await timed.delay(1)
    await timed.options(dead_letter_on_failure=True).delay(2)
    ready = [
        envelope.unpack(raw(await client.hget("jobs_jobs", i)))
        for i in await client.lrange("jobs_ready", 0, -1)
    ]
    assert [entry.options.timeout for entry in ready] == [5, 5]
    assert [entry.options.dead_letter_on_failure for entry in ready] == [False, True]
    assert all(entry.options.backoff == Backoff.fixed(1) for entry in ready)
    with pytest.raises(TaskDataError, match="missing a required argument"):
        await timed.options(delay=1).delay()


def test_options_and_delay_are_type_checked_against_the_function(tmp_path: Path) -> None:
    """mypy refuses a call that does not fit the function, through .options() too."""
    pytest.importorskip("mypy", reason="mypy comes with the dev extra (CI's main runs)")
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from adelayed import Queue, delayed\n"
        "import redis.asyncio as redis\n"
        "task = delayed(Queue('jobs', redis.Redis()))\n"
        "@task(timeout=5)\n"
        "async def send(to: str, times: int = 1) -> None: ...\n"
        "async def main() -> None:\n"
        "    await send.delay('ann')\n"
        "    await send.options(delay=60).delay('ann', times=2)\n"
        "    await send.options(delay=60).delay(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(sample)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "sample.py:9:" in errors[0], result.stdout


def test_the_bare_decorator_says_how_to_use_it() -> None:
    """``@delayed`` on the function itself (it takes a Queue) says so, not "cannot make a task
    of <delayed object>" at the first enqueue."""

    async def send(to: str) -> None: ...

    with pytest.raises(ConfigurationError, match=r"task = delayed\(queue\)"):
        delayed(send)  # type: ignore[arg-type]
