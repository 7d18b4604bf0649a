"""Progress reporting shared by the catalog builder and the downloader.

``progress=`` arguments accept ``True`` (a rich progress bar on stderr), ``False``/``None``
(silent) or a callable ``f(done, total)`` (counts of items), so a CLI or a notebook can plug in
its own display.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from itslive_dask._optional import require

ProgressArg = bool | Callable[[int, int], Any] | None


class Reporter:
    """Context manager turning a ``progress=`` argument into ``advance()`` calls."""

    def __init__(
        self, progress: ProgressArg, total: int, description: str, *, total_bytes: int | None = None
    ):
        self.total = total
        self.done = 0
        self._callback = progress if callable(progress) else None
        self._bar: Any = None
        self._task: Any = None
        self._use_bar = progress is True
        self._description = description
        self._total_bytes = total_bytes

    def __enter__(self) -> Reporter:
        if self._use_bar:
            require("rich", "progress bars (progress=True)")
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
            if self._total_bytes is not None:
                columns += [DownloadColumn(), TransferSpeedColumn()]
            else:
                columns += [MofNCompleteColumn()]
            columns.append(TimeRemainingColumn())
            bar = Progress(*columns, console=Console(stderr=True), transient=False)
            bar.start()
            total = self._total_bytes if self._total_bytes is not None else self.total
            self._task = bar.add_task(self._description, total=total)
            self._bar = bar
        return self

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        """Report ``items`` finished items (and ``nbytes`` transferred bytes)."""
        self.done += items
        if self._bar is not None and self._task is not None:
            step = nbytes if self._total_bytes is not None else items
            if step:
                self._bar.advance(self._task, step)
        if self._callback is not None and items:
            self._callback(self.done, self.total)

    def bytes(self, nbytes: int) -> None:
        """Report transferred bytes only (bar in byte mode)."""
        if self._bar is not None and self._task is not None and self._total_bytes is not None:
            self._bar.advance(self._task, nbytes)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
