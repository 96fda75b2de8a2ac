"""A FastAPI app whose handler enqueues a task: POST /signup queues a welcome email.

    pip install fastapi uvicorn
    uvicorn examples.fastapi_app:app          # from the repository root
    curl -i -X POST localhost:8000/signup -H 'content-type: application/json' \\
        -d '{"email": "ada@example.com", "user_id": 1}'

Uses $ADELAYED_REDIS_URL when set; otherwise starts a private redis-server with the app (see
examples/signups.py for the worker that runs the tasks). adelayed.app.AppQueues opens the
Redis client and the Queue in the lifespan, on the app's event loop, runs a sweeper beside
them, and closes it all at shutdown; its dependency hands the queue to the endpoint.

Answers: 202 the task is queued; 503 with Retry-After when Redis is down or does not answer
(the body's "outcome" says "not_accepted", or "unknown" when the task was sent but not
confirmed: it may have been queued); 429 with Retry-After when the queue is full; 422 for data
that cannot be sent as a task.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adelayed import Queue
from examples.signups import Settings, app_queues, enqueue_signup


class Signup(BaseModel):
    email: str
    user_id: int


def create_app(settings: Settings | None = None) -> FastAPI:
    tasks = app_queues(settings or Settings())
    app = FastAPI(lifespan=tasks.lifespan)
    signups_queue = tasks.queue()  # a dependency: the open Queue

    @app.post("/signup", status_code=202)
    async def signup(signup: Signup, queue: Queue = Depends(signups_queue)) -> JSONResponse:
        answer = await enqueue_signup(queue, signup.email, signup.user_id)
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    return app


app = create_app()
