"""The docs site's code: the migration pages' snippets (docs/snippets, included in the pages
as they are) run against a real Redis and do what the pages say."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from adelayed.embedded import EmbeddedRedis

SNIPPETS = Path(__file__).resolve().parent.parent / "docs" / "snippets"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_snippet_{name}", SNIPPETS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_delayed_migration_snippet_runs_its_task(redis_server: EmbeddedRedis) -> None:
    assert await _load("from_delayed").main(redis_server.url) == 1


async def test_the_arq_migration_snippet_returns_the_result(redis_server: EmbeddedRedis) -> None:
    assert await _load("from_arq").main(redis_server.url) == "hello ada"
