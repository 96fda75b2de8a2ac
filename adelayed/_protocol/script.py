"""A Lua script run by EVALSHA on a wire (every script of the protocol is one)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .._wire import Wire


class Script:
    """A Lua script run by EVALSHA on a wire, loaded on the first NOSCRIPT reply.

    Sent without redis-py's retry and instrumentation layers: adelayed decides itself what may
    be sent again (its scripts are safe to run twice; an enqueue is not), and the hot path
    costs less."""

    __slots__ = ("name", "sha", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(
        self, wire: Wire, keys: Sequence[str], args: Sequence[Any], deadline: float | None = None
    ) -> Any:
        """Runs the script; ``deadline`` (loop time) bounds the whole call, a reload included."""
        try:
            return await wire.call("EVALSHA", self.sha, len(keys), *keys, *args, deadline=deadline)
        except NoScriptError:
            await wire.call("SCRIPT", "LOAD", self.text, deadline=deadline)
            return await wire.call("EVALSHA", self.sha, len(keys), *keys, *args, deadline=deadline)
