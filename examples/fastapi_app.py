"""A FastAPI app whose handler enqueues a task: POST /signup queues a welcome email.

    pip install fastapi uvicorn
    uvicorn examples.fastapi_app:app          # from the repository root
    curl -i -X POST localhost:8000/signup -H 'content-type: application/json' \\
        -d '{"email": "ada@example.com", "user_id": 1}'

Uses $ADELAYED_REDIS_URL when set; otherwise starts a private redis-server with the app (see
examples/signups.py for the worker that runs the tasks). The Redis client and the Queue are
made in the lifespan, on the app's event loop, and closed at shutdown.

Answers: 202 the task is queued; 503 with Retry-After when Redis is down or does not answer
(the body's "outcome" says "not_accepted", or "unknown" when the task was sent but not
confirmed: it may have been queued); 429 with Retry-After when the queue is full; 422 for data
that cannot be sent as a task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adelayed import Queue
from examples.signups import Settings, enqueue_signup, open_queue


class Signup(BaseModel):
    email: str
    user_id: int


class State(TypedDict):
    queue: Queue


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with open_queue(settings or Settings()) as queue:
            yield {"queue": queue}  # each request sees it as request.state.queue

    app = FastAPI(lifespan=lifespan)

    @app.post("/signup", status_code=202)
    async def signup(signup: Signup, request: Request) -> JSONResponse:
        answer = await enqueue_signup(request.state.queue, signup.email, signup.user_id)
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    return app


app = create_app()
