"""What the FastAPI and aiohttp examples share: the task a signup enqueues, the queue's
start-up and shutdown, and what a handler answers when the enqueue fails.

A worker runs the tasks, from the repository root, against the same Redis (the app logs the
URL of the redis-server it starts when ADELAYED_REDIS_URL is not set)::

    ADELAYED_REDIS_URL=redis://... adelayed worker examples.signups --queue signups
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.exceptions import RedisError

from adelayed import (
    EnqueueError,
    EnqueueOutcomeUnknownError,
    PayloadTooLargeError,
    PyTask,
    Queue,
    QueueFullError,
    RedisConfigurationError,
    TaskDataError,
)
from adelayed.app import AppQueues

logger = logging.getLogger(__name__)

QUEUE_NAME = "signups"

# Stands in for a mail server: how many welcome emails each address got.
sent_emails: Counter[str] = Counter()


async def send_welcome_email(address: str, user_id: int) -> None:
    """The task: run by a worker, never in the web app."""
    await anyio.sleep(0.001)  # pretend to talk to a mail server
    sent_emails[address] += 1
    print(f"sent a welcome email to user {user_id} at {address}")


@dataclass(frozen=True)
class Settings:
    """The app's Redis settings. ``redis_url`` None: $ADELAYED_REDIS_URL, else a private
    redis-server started with the app (for trying the example out, not for production)."""

    redis_url: str | None = None
    queue_name: str = QUEUE_NAME
    max_length: int | None = 100_000  # past this, signups get 429 instead of piling up
    enqueue_timeout: float = 1.0  # a handler answers within about this when Redis is slow
    socket_connect_timeout: float = 1.0
    socket_timeout: float = 5.0


def app_queues(settings: Settings) -> AppQueues:
    """The app's Redis client and queue (adelayed.app): opened at start-up on the app's event
    loop, with an embedded sweeper, and closed at shutdown."""
    return AppQueues(
        settings.queue_name,
        redis_url=settings.redis_url,
        embedded=True,  # no URL anywhere: a private redis-server, for trying the example out
        client_options={
            "socket_connect_timeout": settings.socket_connect_timeout,
            "socket_timeout": settings.socket_timeout,
        },
        max_length=settings.max_length,
        enqueue_timeout=settings.enqueue_timeout,
    )


@dataclass(frozen=True)
class Answer:
    """What a handler sends back: a status, a JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


RETRY_AFTER_UNAVAILABLE = "5"  # seconds: Redis restarts or fails over in about that
RETRY_AFTER_FULL = "30"  # seconds: let the workers drain the queue

ACCEPTED = Answer(202, {"outcome": "accepted"})
NOT_ACCEPTED = Answer(
    503,
    {
        "outcome": "not_accepted",
        "error": "queue_unavailable",
        "detail": "The task was not accepted: the task queue is unavailable. Try again later.",
    },
    {"Retry-After": RETRY_AFTER_UNAVAILABLE},
)
OUTCOME_UNKNOWN = Answer(
    503,
    {
        "outcome": "unknown",
        "error": "outcome_unknown",
        "detail": "The task queue did not confirm the task: it may have been accepted. "
        "Retrying is safe only if the task is idempotent.",
    },
    {"Retry-After": RETRY_AFTER_UNAVAILABLE},
)
QUEUE_FULL = Answer(
    429,
    {
        "outcome": "not_accepted",
        "error": "queue_full",
        "detail": "Too many tasks are waiting; the task was not accepted. Try again later.",
    },
    {"Retry-After": RETRY_AFTER_FULL},
)
BAD_DATA = Answer(
    422,
    {
        "outcome": "not_accepted",
        "error": "invalid_task_data",
        "detail": "The request's data cannot be sent as a task (e.g. an integer over 64 bits).",
    },
)


async def enqueue_signup(queue: Queue, address: str, user_id: int) -> Answer:
    """Enqueues the welcome email of a signup; the answer says whether the task was taken."""
    try:
        await queue.enqueue(PyTask(send_welcome_email, (address, user_id)))
    except QueueFullError:
        logger.warning("queue %r is full: signup of %s refused", queue.name, address)
        return QUEUE_FULL
    except (TaskDataError, PayloadTooLargeError) as exc:
        logger.info("signup of %s refused: %s", address, exc)
        return BAD_DATA
    except EnqueueOutcomeUnknownError as exc:  # EnqueueTimeoutError too: sent, unconfirmed
        logger.error("signup of %s: %s", address, exc)
        return OUTCOME_UNKNOWN
    except (EnqueueError, RedisConfigurationError, RedisError) as exc:  # nothing was written
        # No connection, no memory, or a client Redis refuses (a wrong password): say so loudly.
        logger.error("signup of %s not enqueued: %s", address, exc)
        return NOT_ACCEPTED
    return ACCEPTED
