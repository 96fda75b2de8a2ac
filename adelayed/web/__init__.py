"""The dashboard (``adelayed web``; the ``web`` extra: aiohttp): ``create_app(queues, token)``
is the aiohttp Application, ``adelayed.web.app`` says what it serves and how it is guarded."""

from __future__ import annotations

from .app import check_binding, create_app

__all__ = ["check_binding", "create_app"]
