"""An aiohttp app whose handler enqueues a task: POST /signup queues a welcome email.

    pip install aiohttp
    python -m examples.aiohttp_app            # from the repository root; serves $PORT (8080)
    curl -i -X POST localhost:8080/signup -H 'content-type: application/json' \\
        -d '{"email": "ada@example.com", "user_id": 1}'

Uses $ADELAYED_REDIS_URL when set; otherwise starts a private redis-server with the app (see
examples/signups.py for the worker that runs the tasks). adelayed.app.AppQueues opens the
Redis client and the Queue in a cleanup context, on the app's event loop, runs a sweeper
beside them, and closes it all at shutdown.

Answers: 202 the task is queued; 503 with Retry-After when Redis is down or does not answer
(the body's "outcome" says "not_accepted", or "unknown" when the task was sent but not
confirmed: it may have been queued); 429 with Retry-After when the queue is full; 422 for data
that cannot be sent as a task; 400 for a body that is not {"email": str, "user_id": int}.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from aiohttp import web

from adelayed.app import AppQueues
from examples.signups import Settings, app_queues, enqueue_signup

TASKS = web.AppKey("tasks", AppQueues)

BAD_REQUEST = {
    "outcome": "not_accepted",
    "error": "bad_request",
    "detail": 'The body must be JSON: {"email": str, "user_id": int}.',
}


def _signup_fields(data: Any) -> tuple[str, int] | None:
    if not isinstance(data, dict):
        return None
    email, user_id = data.get("email"), data.get("user_id")
    if not isinstance(email, str) or not isinstance(user_id, int) or isinstance(user_id, bool):
        return None
    return email, user_id


async def signup(request: web.Request) -> web.Response:
    try:
        fields = _signup_fields(await request.json())
    except ValueError:  # not JSON
        fields = None
    if fields is None:
        return web.json_response(BAD_REQUEST, status=400)
    tasks = request.app[TASKS]
    answer = await enqueue_signup(tasks[tasks.names[0]], *fields)
    return web.json_response(answer.body, status=answer.status, headers=answer.headers)


def create_app(settings: Settings | None = None) -> web.Application:
    app = web.Application()
    app[TASKS] = tasks = app_queues(settings or Settings())
    app.cleanup_ctx.append(tasks.cleanup_ctx)
    app.router.add_post("/signup", signup)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
