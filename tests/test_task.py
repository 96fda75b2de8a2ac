"""Payload codec: byte-identical to delayed 1.2, and every v1 shape decodes."""

from __future__ import annotations

import msgpack
import pytest

from adelayed import (
    ConfigurationError,
    GoTask,
    PayloadError,
    PyTask,
    TaskDataError,
    decode_task,
)
from tests import tasks

GOLDEN: list[tuple[PyTask | GoTask, str]] = [
    (PyTask("mod.sub:func"), "91ac6d6f642e7375623a66756e63"),
    (PyTask("mod:add", args=(1, 2)), "92a76d6f643a616464920102"),
    (PyTask("mod:add", args=(1,), kwargs={"b": 2}), "93a76d6f643a616464910181a16202"),
    (PyTask("mod:add", kwargs={"b": 2}), "93a76d6f643a6164649081a16202"),
    (PyTask("mod:div", args=(1,), retry=3), "94a76d6f643a64697691018003"),
    (PyTask("mod:f", retry=-1), "94a56d6f643a669080ff"),
    (
        PyTask("mod:f", args=("x", b"\x00", 1.5, None, True, [1, [2]])),
        "92a56d6f643a6696a178c40100cb3ff8000000000000c0c392019102",
    ),
    (GoTask("syscall.Kill", (0, 1)), "92ac73797363616c6c2e4b696c6cc403920001"),
    (GoTask("fmt.Println", (1, "test")), "92ab666d742e5072696e746c6ec4079201a474657374"),
    # Not delayed 1.2's bytes: it writes a no-argument Go task as the bare string
    # "a66d61696e2e66", which the real go-delayed worker cannot decode (the task is lost).
    # adelayed writes what go-delayed itself writes, [path, bin(nil)]; the bare string still
    # decodes (DELAYED_ONLY below).
    (GoTask("main.f"), "92a66d61696e2e66c401c0"),
]
# Bytes delayed 1.2 writes that adelayed reads but no longer writes.
DELAYED_ONLY: list[tuple[PyTask | GoTask, str]] = [(GoTask("main.f"), "a66d61696e2e66")]


@pytest.mark.parametrize(("task", "golden"), GOLDEN, ids=[hex_ for _, hex_ in GOLDEN])
def test_serialize_matches_delayed_golden_bytes(task: PyTask | GoTask, golden: str) -> None:
    assert task.serialize().hex() == golden


@pytest.mark.parametrize(
    ("task", "golden"), GOLDEN + DELAYED_ONLY, ids=[hex_ for _, hex_ in GOLDEN + DELAYED_ONLY]
)
def test_golden_bytes_decode_to_the_same_task(task: PyTask | GoTask, golden: str) -> None:
    decoded = decode_task(bytes.fromhex(golden))
    assert type(decoded) is type(task)
    assert decoded.func_path == task.func_path
    if isinstance(task, PyTask):
        assert isinstance(decoded, PyTask)
        assert list(decoded.args) == [list(a) if isinstance(a, tuple) else a for a in task.args]
        assert dict(decoded.kwargs) == dict(task.kwargs)
        assert decoded.retry == task.retry
        assert PyTask(
            decoded.func_path, decoded.args, decoded.kwargs, decoded.retry
        ).serialize() == (bytes.fromhex(golden))
    else:
        assert decoded.args == (list(task.args) if task.args is not None else None)


def test_delayed_package_writes_the_same_bytes() -> None:
    from delayed.task import PyTask as DelayedPyTask

    ours = PyTask("app.mail:send", args=("a@b.c", 2), kwargs={"urgent": True}, retry=-1)
    theirs = DelayedPyTask("app.mail:send", args=("a@b.c", 2), kwargs={"urgent": True}, retry=-1)
    assert ours.serialize() == theirs.serialize()
    assert DelayedPyTask.deserialize(ours.serialize())._retry == -1


@pytest.mark.parametrize(
    ("fields", "args", "kwargs"),
    [
        (["mod:f", None, None], [], {}),
        (["mod:f", [1, "a"], None], [1, "a"], {}),
        (["mod:f", None, {"k": 1}], [], {"k": 1}),
        (["mod:f", [1], {"k": 1}], [1], {"k": 1}),
    ],
)
def test_go_delayed_three_item_python_task_decodes(
    fields: list[object], args: list[object], kwargs: dict[str, object]
) -> None:
    task = decode_task(msgpack.packb(fields))
    assert isinstance(task, PyTask)
    assert (task.func_path, list(task.args), dict(task.kwargs), task.retry) == (
        "mod:f",
        args,
        kwargs,
        0,
    )


def test_go_delayed_go_task_with_nil_payload_decodes_as_go_task() -> None:
    task = decode_task(msgpack.packb(["main.Hello", None]))
    assert isinstance(task, GoTask)
    assert task.func_path == "main.Hello"
    assert task.args is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1garbage",
        msgpack.packb([1, 2]),
        msgpack.packb([]),
        msgpack.packb(["mod:f", 1, 2, 3, 4]),
        msgpack.packb(["mod:f", "not-args"]),
        msgpack.packb(["mod:f", [], []]),
        msgpack.packb(["mod:f", [], {}, "x"]),
        msgpack.packb(["nocolon", [1]]),
        msgpack.packb({"a": 1}),
        msgpack.packb(["mod:f"])[:-2],
        msgpack.packb(["", None]),
        msgpack.packb(""),
    ],
)
def test_malformed_payloads_raise_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_task(payload)


def test_task_from_a_function_uses_its_module_path() -> None:
    assert PyTask(tasks.sync_record, args=(1,)).func_path == "tests.tasks:sync_record"


def test_task_refuses_functions_a_worker_could_not_import() -> None:
    def local() -> None: ...

    with pytest.raises(ConfigurationError, match="top level"):
        PyTask(local)
    with pytest.raises(ConfigurationError, match="top level"):
        PyTask(lambda: None)
    with pytest.raises(ConfigurationError, match=r"module\.path:func"):
        PyTask("no_colon")


def test_unserializable_arguments_name_the_task() -> None:
    with pytest.raises(TaskDataError, match=r"mod:f.*msgpack"):
        PyTask("mod:f", args=(object(),)).serialize()


def test_retry_used_up_one_at_a_time_and_forever_when_negative() -> None:
    assert PyTask("m:f", retry=2).retried().retry == 1
    assert PyTask("m:f", retry=-1).retried().retry == -1
