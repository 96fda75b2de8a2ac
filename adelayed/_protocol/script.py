"""A Lua script run by EVALSHA on a wire (every script of the protocol is one)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError

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

    async def pipelined(
        self,
        wire: Wire,
        keys: Sequence[str],
        calls: Sequence[Sequence[Any]],
        deadline: float | None,
    ) -> list[Any]:
        """Runs the script once per ``calls`` entry (its args), all sent before the first reply
        is read; raises the first error once every reply is in."""
        if len(calls) == 1:
            return [await self(wire, keys, calls[0], deadline)]
        command = ("EVALSHA", self.sha, len(keys), *keys)
        sent = [await wire.send(*command, *args, deadline=deadline) for args in calls]
        replies: list[Any] = []
        for waiter in sent:
            try:
                replies.append(await wire.reply_to(waiter))
            except RedisError as exc:
                replies.append(exc)
        unloaded = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unloaded:  # those calls did not run: load the script and send them again
            await wire.call("SCRIPT", "LOAD", self.text, deadline=deadline)
            again = await self.pipelined(wire, keys, [calls[i] for i in unloaded], deadline)
            for i, reply in zip(unloaded, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
