"""The public API's types, as a user's type checker sees them: mypy (strict) on a small user
module passes, and the same module with a wrong ``.delay()`` call (or a wrong enqueue option)
fails with the error a user would need to see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

USER_MODULE = """
import redis.asyncio as redis

from adelayed import PyTask, Queue, delayed

queue = Queue("emails", redis.Redis())
task = delayed(queue)


@task
async def send(address: str, attempts: int = 1) -> None: ...


async def main() -> None:
    handle = await send.delay("ada@example.com", attempts=2)
    state: str = (await handle.status()).state
    await queue.enqueue(PyTask(send, ("ada@example.com",)), delay=30, keep_result=60)
    print(state)
"""

WRONG = {
    "wrong_argument_type": ('await send.delay("ada@example.com", attempts=2)',
                            'await send.delay(42, attempts="two")',
                            'Argument 1 to "delay" of "DelayedFunction" has incompatible type'),
    "unknown_keyword": ('await send.delay("ada@example.com", attempts=2)',
                        'await send.delay("ada@example.com", tries=2)',
                        'Unexpected keyword argument "tries"'),
    "wrong_enqueue_option": ("delay=30, keep_result=60", 'delay="soon", keep_result=60',
                             'Argument "delay" to "enqueue" of "Queue" has incompatible type'),
}  # fmt: skip


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "user_app.py"
    module.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
         str(tmp_path / ".mypy_cache"), str(module)],
        capture_output=True, text=True, cwd=tmp_path, timeout=240,
    )  # fmt: skip


def test_a_correct_user_module_type_checks(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, USER_MODULE)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_call_is_a_type_error(tmp_path: Path, case: str) -> None:
    right, wrong, expected = WRONG[case]
    assert right in USER_MODULE
    checked = _mypy(tmp_path, USER_MODULE.replace(right, wrong))
    assert checked.returncode == 1, checked.stdout
    assert expected in checked.stdout, checked.stdout
