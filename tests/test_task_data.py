"""Task data a worker could not decode is refused in the producer, naming the argument; whatever
a producer accepts decodes on the worker (adelayed's and delayed 1.2's: the same unpackb)."""

from __future__ import annotations

import collections
import math
from typing import Any

import msgpack
import pytest
import redis.asyncio as redis
from delayed.task import PyTask as DelayedPyTask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adelayed import ConfigurationError, PayloadError, PyTask, Queue, TaskDataError, decode_task

BIG = "x" * 3000  # a large payload is checked like a small one


def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


def cyclic() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


# (args, kwargs, what the message must say)
REFUSED: list[tuple[Any, Any, str]] = [
    ("abc", None, r"args must be a list or tuple .* not 'abc' \(str\); .*args=\(value,\)"),
    (5, None, r"args must be a list or tuple .* not 5 \(int\)"),
    (b"ab", None, r"args must be a list or tuple .* \(bytes\)"),
    ({"a": 1}, None, r"args must be a list or tuple .* \(dict\)"),
    (None, [1, 2], r"kwargs must be a dict .* not \[1, 2\] \(list\)"),
    (None, {5: 1}, r"kwargs has a key 5 \(int\); keyword argument names must be str"),
    (None, {b"k": 1}, r"kwargs has a key b'k' \(bytes\)"),
    (({1: "a"},), None, r"args\[0\] has a key 1 \(int\); .*only str \(or bytes\) map keys"),
    (None, {"user": {"ids": {5: "x"}}}, r"kwargs\['user'\]\['ids'\] has a key 5 \(int\)"),
    ((None, [{None: 1}]), None, r"args\[1\]\[0\] has a key None \(NoneType\)"),
    (({True: 1},), None, r"args\[0\] has a key True \(bool\)"),
    (({1.5: 1},), None, r"args\[0\] has a key 1.5 \(float\)"),
    (({(1, 2): 1},), None, r"args\[0\] has a key \(1, 2\) \(tuple\)"),
    ((BIG, {"a": {7: 1}}), None, r"args\[1\]\['a'\] has a key 7 \(int\)"),
    ((1, 2, 2**70), None, r"args\[2\] is 2\*\*70, outside msgpack's 64-bit integer range "),
    (
        (2**64,),
        None,
        r"args\[0\] is 2\*\*64, outside .* \(-2\*\*63 to 2\*\*64-1\); pass it as a str",
    ),
    ((-(2**63) - 1,), None, r"args\[0\] is -9223372036854775809, outside"),
    (None, {"n": 3**500}, r"kwargs\['n'\] is an int of 793 bits, outside"),
    (({1, 2},), None, r"args\[0\] is \{1, 2\} \(set\), which msgpack cannot carry; pass a list"),
    ((object(),), None, r"args\[0\] is <object object at .*> \(object\), which msgpack cannot"),
    (("\ud800",), None, r"args\[0\] is a str msgpack cannot encode as UTF-8"),
    (({"\udfff": 1},), None, r"a key of args\[0\] is a str msgpack cannot encode"),
    ((deep(1100),), None, r"args\[0\]\[0\]\[0\].*nested over 1024 levels deep"),
    ((cyclic(),), None, r"args\[0\]\[0\].*nested over 1024 levels deep, or contains itself"),
]


@pytest.mark.parametrize(("args", "kwargs", "message"), REFUSED)
async def test_undecodable_data_is_refused_before_redis(
    queue: Queue, client: redis.Redis, args: Any, kwargs: Any, message: str
) -> None:
    with pytest.raises(TaskDataError, match=message) as caught:
        await queue.enqueue(PyTask("app.mail:send", args, kwargs))
    assert "'app.mail:send'" in str(caught.value)
    with pytest.raises(TaskDataError, match=message):
        await queue.enqueue_many([PyTask("app.mail:ok"), PyTask("app.mail:send", args, kwargs)])
    assert await client.llen("jobs") == 0
    assert await client.llen("jobs_noti") == 0


ACCEPTED: list[tuple[Any, Any]] = [
    (((1, (2, 3)), [4]), None),
    ((math.nan, math.inf, -0.0), {"x": [math.nan]}),
    ((b"\x00\xff", bytearray(b"ba"), memoryview(b"mv")), None),
    (({b"raw key": 1, "k": {b"k2": [b"v"]}},), None),
    ((-(2**63), 2**64 - 1, True, None), None),
    (None, collections.OrderedDict(a=1, b={"c": ()})),
    ((BIG, 1.5, b"y" * 3000), {"text": BIG}),
    ((deep(400),), None),
]


@pytest.mark.parametrize(("args", "kwargs"), ACCEPTED)
def test_what_a_producer_accepts_decodes_on_both_workers(args: Any, kwargs: Any) -> None:
    payload = PyTask("app.mail:send", args, kwargs).serialize()
    task = decode_task(payload)
    assert isinstance(task, PyTask)
    assert plain(task.args) == plain(args or ())
    assert plain(task.kwargs) == plain(kwargs or {})
    theirs = DelayedPyTask.deserialize(payload)
    assert plain(theirs._args) == plain(args or ())


def test_serialize_errors_are_data_errors_and_retry_stays_a_setting() -> None:
    with pytest.raises(TaskDataError, match=r"'mod:f': args\[0\] is <object"):
        PyTask("mod:f", args=(object(),)).serialize()
    with pytest.raises(ConfigurationError, match="retry of task 'mod:f' must be an int"):
        PyTask("mod:f", retry="3")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"outside msgpack's 64-bit integer range"):
        PyTask("mod:f", retry=2**64)


def test_a_refused_payload_is_not_kept_for_a_later_serialize() -> None:
    args: list[Any] = [{1: "a"}]
    task = PyTask("mod:f", args)
    with pytest.raises(TaskDataError):
        task.serialize()
    with pytest.raises(TaskDataError):
        task.serialize()


def test_kwargs_changed_after_the_task_was_made_are_checked_when_sent() -> None:
    kwargs: dict[Any, Any] = {"a": 1}
    task = PyTask("mod:f", kwargs=kwargs)
    kwargs[5] = 2
    with pytest.raises(TaskDataError, match=r"'mod:f': kwargs has a key 5 \(int\)"):
        task.serialize()


def test_the_decoder_still_reads_what_other_producers_write() -> None:
    """A worker decodes without the producer's checks; a call that cannot bind is the
    worker's TaskCallError (dead-lettered), not a TaskDataError while decoding."""
    task = decode_task(msgpack.packb(["mod:f", [1], {b"raw": 1}]))
    assert isinstance(task, PyTask)
    again = decode_task(task.retried().serialize())
    assert isinstance(again, PyTask)
    raw: dict[Any, Any] = {b"raw": 1}
    assert task.kwargs == again.kwargs == raw


def test_a_foreign_payload_with_int_keys_is_dead_lettered_for_its_real_reason() -> None:
    with pytest.raises(PayloadError, match=r"^payload has a map key that is neither str nor"):
        decode_task(msgpack.packb(["mod:f", [{1: "a"}]]))
    with pytest.raises(PayloadError, match=r"^payload is not msgpack"):
        decode_task(b"\xc1")


def plain(value: Any) -> Any:
    """The value as a worker decodes it: arrays as lists, binaries as bytes; NaN made equal."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def a_worker_would_run(args: Any, kwargs: Any) -> bool:
    """What a worker makes of the task written directly (go-delayed's three-item shape)."""
    fields = ["m:f", [] if args is None else args, {} if kwargs is None else kwargs]
    try:
        task = decode_task(msgpack.packb(fields))
    except (TypeError, ValueError, OverflowError, PayloadError):
        return False
    # The worker calls func(*args, **kwargs): keyword names must be str.
    return isinstance(task, PyTask) and all(isinstance(key, str) for key in task.kwargs)


KEYS = st.one_of(
    st.text(max_size=3),
    st.binary(max_size=3),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.floats(),
    st.just("\ud800"),
    st.tuples(st.integers(0, 2)),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-(2**63), 2**64 - 1, -(2**63) - 1, 2**64, 2**70]),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.just("\udc80"),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(KEYS, inner, max_size=3),
        st.frozensets(st.integers(0, 3), max_size=2),
    ),
    max_leaves=8,
)
ARGS = st.one_of(st.none(), st.lists(VALUES, max_size=3), st.tuples(VALUES), VALUES)
KWARGS = st.one_of(st.none(), st.dictionaries(KEYS, VALUES, max_size=3), VALUES)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=ARGS, kwargs=KWARGS)
def test_producer_accepts_exactly_what_a_worker_decodes(args: Any, kwargs: Any) -> None:
    runs = a_worker_would_run(args, kwargs)
    try:
        payload = PyTask("m:f", args, kwargs).serialize()
    except TaskDataError as exc:
        assert not runs, f"refused a task a worker would run: {exc}"
        return
    assert runs, "accepted a task a worker would refuse"
    task = decode_task(payload)
    assert isinstance(task, PyTask)
    assert plain(task.args) == plain(args or ())
    assert plain(task.kwargs) == plain(kwargs or {})
