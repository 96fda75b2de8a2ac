"""Queue and protocol scripts against a real redis-server: enqueue, fetch, settle, sweep."""

from __future__ import annotations

import time

import anyio
import pytest
import redis.asyncio as redis
from redis.crc import key_slot

from adelayed import PyTask, Queue
from adelayed import _protocol as protocol
from adelayed._protocol import MAX_ITEMS_PER_CALL
from adelayed._wire import Wire

FIELD_A = "adelayed:worker:test:0"
FIELD_B = "adelayed:worker:test:1"
HAND = "adelayed:worker:test:hand"


async def lengths(client: redis.Redis, queue: Queue) -> tuple[int, int, int]:
    return (
        await client.llen(queue.name),
        await client.llen(queue.name + "_noti"),
        await client.hlen(queue.name + "_processing"),
    )


async def test_enqueue_pushes_the_payload_and_one_token(client: redis.Redis, queue: Queue) -> None:
    task = PyTask("mod:f", args=(1,))
    await queue.enqueue(task)
    assert await client.lrange("jobs", 0, -1) == [task.serialize()]
    assert await client.lrange("jobs_noti", 0, -1) == [b"1"]
    assert await queue.len() == 1


async def test_enqueue_many_keeps_order_and_uses_one_script_call_per_group(
    client: redis.Redis, queue: Queue
) -> None:
    count = 2 * MAX_ITEMS_PER_CALL + 5
    await client.config_resetstat()
    assert await queue.enqueue_many(PyTask("mod:f", args=(i,)) for i in range(count)) == count
    payloads = await client.lrange("jobs", 0, -1)
    assert payloads == [PyTask("mod:f", args=(i,)).serialize() for i in range(count)]
    assert await lengths(client, queue) == (count, count, 0)
    stats = await client.info("commandstats")
    script_calls = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    assert script_calls == 3


async def test_enqueue_many_survives_a_flushed_script_cache(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(PyTask("mod:f"))
    await client.script_flush()
    assert await queue.enqueue_many([PyTask("mod:f"), PyTask("mod:g")]) == 2
    assert await lengths(client, queue) == (3, 3, 0)


async def test_enqueue_many_of_nothing_does_nothing(client: redis.Redis, queue: Queue) -> None:
    assert await queue.enqueue_many([]) == 0
    assert await client.exists("jobs") == 0


async def test_fetch_moves_token_and_task_into_the_slot_in_one_step(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b"), PyTask("mod:c")])
    taken = await queue._fetch(wire, HAND, [FIELD_A, FIELD_B])
    assert taken == [(0, PyTask("mod:a").serialize()), (1, PyTask("mod:b").serialize())]
    assert await lengths(client, queue) == (1, 1, 2)
    assert await client.hget("jobs_processing", FIELD_B) == PyTask("mod:b").serialize()


async def test_a_waiting_fetch_takes_the_task_whose_token_it_waited_for(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    taken: list[tuple[int, bytes]] = []

    async def fetch() -> None:
        taken.extend(await queue._fetch(wire, HAND, [FIELD_A, FIELD_B], wait=True))

    async with anyio.create_task_group() as group:
        group.start_soon(fetch)
        await anyio.sleep(0.05)  # the BLMOVE is waiting
        await queue.enqueue(PyTask("mod:a"))  # on a pooled connection, not the wire
    assert taken == [(0, PyTask("mod:a").serialize())]
    assert await lengths(client, queue) == (0, 0, 1)
    assert await client.exists(HAND) == 0


async def test_a_waiting_fetch_on_an_empty_queue_returns_nothing_after_the_timeout(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    # PROTOCOL.md hole 1: delayed's script fails on an empty queue ("command arguments must be
    # strings"); here the BLMOVE times out and the fetch behind it finds nothing.
    started = time.monotonic()
    assert await queue._fetch(wire, HAND, [FIELD_A], wait=True) == []
    assert time.monotonic() - started >= queue.dequeue_timeout * 0.9
    assert await lengths(client, queue) == (0, 0, 0)


async def test_a_token_left_in_the_hand_is_used_by_the_next_fetch(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue(PyTask("mod:a"))
    await client.lmove("jobs_noti", HAND)  # its BLMOVE ran; the fetch behind it failed
    taken = await queue._fetch(wire, HAND, [FIELD_A])
    assert taken == [(0, PyTask("mod:a").serialize())]
    assert await lengths(client, queue) == (0, 0, 1)
    assert await client.exists(HAND) == 0


async def test_a_worker_puts_back_the_tokens_left_in_its_hand(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue(PyTask("mod:a"))
    await client.lmove("jobs_noti", HAND)
    await queue._return_tokens(HAND)
    assert await lengths(client, queue) == (1, 1, 0)
    assert await client.exists(HAND) == 0


async def test_phantom_tokens_are_consumed_and_trimmed(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    # PROTOCOL.md hole 3: a sweep ran while a worker held a token, so tokens outnumber tasks.
    await queue.enqueue(PyTask("mod:a"))
    await client.rpush("jobs_noti", "1", "1")
    taken = await queue._fetch(wire, HAND, [FIELD_A])
    assert [payload for _, payload in taken] == [PyTask("mod:a").serialize()]
    assert await queue._fetch(wire, HAND, [FIELD_B]) == []  # pops a phantom, trims
    assert await lengths(client, queue) == (0, 0, 1)


async def test_fetch_with_more_tokens_asked_than_tasks_loses_no_token(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b")])
    await client.lpop("jobs_noti")  # another worker holds one token, between BLPOP and its script
    taken = await queue._fetch(wire, HAND, [FIELD_A, FIELD_B])
    assert len(taken) == 1
    assert await lengths(client, queue) == (1, 0, 1)  # the remaining task is the other worker's


async def test_a_resent_fetch_returns_what_the_first_took_and_takes_nothing(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    # PROTOCOL.md hole 9: the reply of the first call was lost, the client sends it again.
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b"), PyTask("mod:c")])
    first = await queue._fetch(wire, HAND, [FIELD_A, FIELD_B])
    again = await queue._fetch(wire, HAND, [FIELD_A, FIELD_B])
    assert again == first
    assert await lengths(client, queue) == (1, 1, 2)


async def test_requeue_releases_and_pushes_in_one_step_and_only_once(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue(PyTask("mod:a", retry=2))
    await queue._fetch(wire, HAND, [FIELD_A])
    retried = PyTask("mod:a", retry=1).serialize()
    await queue._requeue(FIELD_A, retried, at_head=False)
    await queue._requeue(FIELD_A, retried, at_head=False)  # re-sent: changes nothing
    assert await client.lrange("jobs", 0, -1) == [retried]
    assert await lengths(client, queue) == (1, 1, 0)


async def test_requeue_at_head_goes_before_waiting_tasks(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b")])
    [(_, payload)] = await queue._fetch(wire, HAND, [FIELD_A])
    await queue._requeue(FIELD_A, payload, at_head=True)
    assert await client.lrange("jobs", 0, -1) == [payload, PyTask("mod:b").serialize()]
    assert await lengths(client, queue) == (2, 2, 0)


async def test_bury_moves_the_task_to_the_dead_letter_list_with_its_reason(
    client: redis.Redis, client_queue_limit: Queue, wire: Wire
) -> None:
    queue = client_queue_limit
    for name in ("mod:a", "mod:b", "mod:c"):
        await queue.enqueue(PyTask(name))
        [(_, payload)] = await queue._fetch(wire, HAND, [FIELD_A])
        await queue._bury(FIELD_A, payload, f"refused {name}", "worker-x")
    await queue._bury(FIELD_A, b"again", "re-sent", "worker-x")  # slot empty: nothing happens
    dead = await queue.dead_tasks()
    assert [d.reason for d in dead] == ["refused mod:c", "refused mod:b"]  # capped at 2
    assert dead[0].payload == PyTask("mod:c").serialize()
    assert dead[0].worker == "worker-x"
    assert await lengths(client, queue) == (0, 0, 0)


async def test_requeue_lost_recovers_only_tasks_whose_liveness_key_is_gone(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b")])
    await queue._fetch(wire, HAND, [FIELD_A, FIELD_B])
    await client.set(FIELD_B, 1)  # FIELD_B's worker is alive, FIELD_A's is not
    assert await queue.requeue_lost() == 1
    assert await client.lrange("jobs", 0, -1) == [PyTask("mod:a").serialize()]
    assert await client.hkeys("jobs_processing") == [FIELD_B.encode()]
    assert await lengths(client, queue) == (1, 1, 1)


async def test_requeue_lost_restores_tokens_of_a_worker_that_died_holding_one(
    client: redis.Redis, queue: Queue
) -> None:
    await queue.enqueue_many([PyTask("mod:a")] * 3)
    await client.lpop("jobs_noti", 2)
    assert await queue.requeue_lost() == 0
    assert await lengths(client, queue) == (3, 3, 0)


async def test_requeue_lost_trims_surplus_tokens(client: redis.Redis, queue: Queue) -> None:
    await queue.enqueue(PyTask("mod:a"))
    await client.rpush("jobs_noti", "1", "1", "1")
    await queue.requeue_lost()
    assert await lengths(client, queue) == (1, 1, 0)


async def test_requeue_lost_ignores_a_field_that_names_an_application_hash(
    client: redis.Redis, queue: Queue
) -> None:
    # delayed's script GETs the field and fails with WRONGTYPE when it names a non-string key.
    await client.hset("12345", "app", "data")
    await client.hset("jobs_processing", "12345", PyTask("mod:a").serialize())
    assert await queue.requeue_lost() == 0
    assert await lengths(client, queue) == (0, 0, 1)


async def test_a_resent_fetch_after_a_wait_takes_nothing_and_adds_no_token(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b")])
    await client.lmove("jobs_noti", HAND)  # this worker's BLMOVE
    first = await queue._fetch(wire, HAND, [FIELD_A])
    assert await queue._fetch(wire, HAND, [FIELD_A]) == first  # re-sent: its reply was lost
    assert await lengths(client, queue) == (1, 1, 1)


async def test_a_resent_fetch_holding_a_token_gives_the_token_back(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b")])
    first = await queue._fetch(wire, HAND, [FIELD_A])
    await client.lmove("jobs_noti", HAND)
    assert await queue._fetch(wire, HAND, [FIELD_A]) == first  # finds its slot already filled
    assert await lengths(client, queue) == (1, 1, 1)
    assert await client.exists(HAND) == 0


async def test_fetch_releases_finished_slots_in_the_same_call(
    client: redis.Redis, queue: Queue, wire: Wire
) -> None:
    await queue.enqueue_many([PyTask("mod:a"), PyTask("mod:b")])
    await queue._fetch(wire, HAND, [FIELD_A])
    taken = await queue._fetch(wire, HAND, [FIELD_B], [FIELD_A])
    assert taken == [(0, PyTask("mod:b").serialize())]
    assert await client.hkeys("jobs_processing") == [FIELD_B.encode()]
    again = await queue._fetch(wire, HAND, [FIELD_B], [FIELD_A])  # re-sent
    assert again == taken
    assert await lengths(client, queue) == (0, 0, 1)


@pytest.mark.parametrize(
    "name", ["{emails}", "x{emails}y", "{{b}}", "a{}{b}", "{a}{b}", "}{a}", "{}", "{", "plain"]
)
def test_liveness_keys_share_the_queue_s_cluster_slot_by_redis_s_own_rule(name: str) -> None:
    """Redis hashes the part between the first '{' and the first '}' after it, when not
    empty; otherwise the whole key. A tagged queue's worker keys must land in its slot."""
    worker = protocol.slot_key(protocol.worker_key("0f" * 8, name), 3)
    tagged = protocol.hash_tag(name) != ""
    assert tagged == (key_slot(name.encode()) == key_slot(b"x" + name.encode()))
    if tagged:
        assert key_slot(worker.encode()) == key_slot(name.encode())
