"""``adelayed web``: the dashboard, an aiohttp app (the ``web`` extra) serving one page (plain
HTML and JavaScript, no build step) and the JSON it polls.

Bound to loopback unless told otherwise; anywhere else it needs a token, asked as HTTP Basic
auth (any user name, the token as password) or a ``Bearer`` header. Every action that changes
something is a POST carrying the page's own CSRF token in ``X-Adelayed-CSRF`` (a cross-site
form cannot set a header, and a cross-site script's custom header needs a CORS grant this
server never gives), and is refused when its ``Origin`` is another site.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ..errors import ConfigurationError
from ..queue import Queue
from . import views

QUEUES = web.AppKey("queues", dict)
CSRF = web.AppKey("csrf", str)
TOKEN = web.AppKey("token", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_binding(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise ConfigurationError(
            f"adelayed web --host {host}: anyone who reaches it could requeue and purge dead "
            "letters; give --token (or $ADELAYED_WEB_TOKEN), or bind to 127.0.0.1"
        )


def create_app(queues: list[Queue], token: str | None = None) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[QUEUES] = {queue.name: queue for queue in queues}
    app[CSRF], app[TOKEN] = secrets.token_urlsafe(24), token or ""
    app.router.add_get("/", _page)
    app.router.add_get("/api/overview", _overview)
    app.router.add_get("/api/queues/{name}/scheduled", _scheduled)
    app.router.add_get("/api/queues/{name}/dead", _dead)
    app.router.add_get("/api/queues/{name}/tasks/{id}", _task)
    app.router.add_post("/api/queues/{name}/dead/{action:requeue|purge}", _dead_action)
    return app


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN]
    if token and not _authorized(request, token):
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="adelayed"'})
    if request.method == "POST":
        sent = request.headers.get("X-Adelayed-CSRF", "")
        origin = request.headers.get("Origin")
        if not hmac.compare_digest(sent, request.app[CSRF]) or (
            origin is not None and origin != f"{request.scheme}://{request.host}"
        ):
            return web.json_response({"error": "cross-site request refused"}, status=403)
    return await handler(request)


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer "):
        return hmac.compare_digest(given[7:], token)
    if given.startswith("Basic "):
        try:
            _, _, password = base64.b64decode(given[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(password, token)
    return False


def _queue(request: web.Request) -> Queue:
    queue: Queue | None = request.app[QUEUES].get(request.match_info["name"])
    if queue is None:
        raise web.HTTPNotFound(text=f"no queue {request.match_info['name']!r} here")
    return queue


async def _page(request: web.Request) -> web.Response:
    html = resources.files(__package__).joinpath("page.html").read_text()
    html = html.replace("{{csrf}}", request.app[CSRF])
    return web.Response(text=html, content_type="text/html")


async def _overview(request: web.Request) -> web.Response:
    queues = request.app[QUEUES].values()
    return _json({"queues": [await views.overview(queue) for queue in queues]})


async def _scheduled(request: web.Request) -> web.Response:
    return _json(await views.scheduled(_queue(request)))


async def _dead(request: web.Request) -> web.Response:
    return _json(await views.dead(_queue(request)))


async def _task(request: web.Request) -> web.Response:
    return _json(await views.task(_queue(request), request.match_info["id"]))


async def _dead_action(request: web.Request) -> web.Response:
    queue, requeue = _queue(request), request.match_info["action"] == "requeue"
    body: dict[str, Any] = await request.json() if request.can_read_body else {}
    if body.get("all"):
        moved = await queue.requeue_dead() if requeue else await queue.purge_dead()
    else:
        moved = await views.move_dead(queue, set(body.get("fingerprints", [])), requeue)
    return _json({"moved": moved})


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), content_type="application/json")
