"""What the operator's commands print with: rich's console, tables and progress bars (the
``cli`` extra), imported when a command first needs them."""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError


def _rich() -> Any:
    try:
        import rich.console
        import rich.progress
        import rich.table
    except ImportError:
        raise ConfigurationError(
            "this command prints with rich, of the cli extra: pip install 'adelayed[cli]'"
        ) from None
    return rich


def console() -> Any:
    return _rich().console.Console()


def table(*columns: str) -> Any:
    shown = _rich().table.Table(*columns, header_style="bold")
    for column in shown.columns[1:]:
        column.justify = "right"
    return shown


def progress(description: str, total: int) -> Any:
    """A progress bar (on stderr), as a context manager with ``advance(n)``."""
    rich = _rich()
    bar = rich.progress.Progress(
        rich.progress.TextColumn("{task.description}"), rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(), rich.progress.TimeRemainingColumn(),
        console=rich.console.Console(stderr=True), transient=False,
    )  # fmt: skip
    return _Bar(bar, bar.add_task(description, total=total))


class _Bar:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar, self._task = bar, task

    def __enter__(self) -> _Bar:
        self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.stop()

    def advance(self, count: int) -> None:
        self._bar.advance(self._task, count)

    def update(self, completed: int) -> None:
        self._bar.update(self._task, completed=completed)
