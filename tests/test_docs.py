"""The docs site's code: the migration pages' snippets (docs/snippets, included in the pages
as they are) run against a real Redis and do what the pages say."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

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


def test_the_site_builds_strict_with_the_snippets_in_its_pages(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    built = subprocess.run(
        [str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "--quiet", "-d",
         str(tmp_path)], cwd=SNIPPETS.parent.parent, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    for page, code in (("migrate-arq", "hello"), ("migrate-delayed", "PyTask(add, (1, 2))")):
        assert code in (tmp_path / page / "index.html").read_text()
    assert "--max-deliveries" in (tmp_path / "cli" / "index.html").read_text()
    assert "enqueue_many" in (tmp_path / "api" / "index.html").read_text()
