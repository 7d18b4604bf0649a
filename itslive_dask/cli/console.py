"""Terminal helpers for the CLI and the demo: progress bars, step lines, secret scrubbing.

Results (tables, summaries) go to stdout; progress bars and step lines go to stderr, so
``itslive-dask search --json > out.json`` stays clean. Nothing here prints storage options.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["SECRET_KEYS", "UI", "scrub", "secret_values"]

#: Storage-option keys whose values are secrets (compared case-insensitively).
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "session_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key",
        "secret_key",
        "account_key",
        "sas_token",
        "client_secret",
        "credentials",
    }
)


def secret_values(options: Any) -> set[str]:
    """Every string value stored under a secret key, at any depth of a mapping."""
    found: set[str] = set()
    if isinstance(options, Mapping):
        for k, v in options.items():
            if str(k).lower() in SECRET_KEYS and isinstance(v, str) and v:
                found.add(v)
            else:
                found |= secret_values(v)
    elif isinstance(options, list | tuple):
        for v in options:
            found |= secret_values(v)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret (of 4+ characters) in ``text`` by ``***``."""
    for s in sorted(secrets, key=len, reverse=True):
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


class UI:
    """What the CLI and the demo show while they work.

    Parameters
    ----------
    quiet
        Print only results and errors (no progress bars, no step lines).
    stdout, stderr
        Consoles for results and for progress (defaults: the terminal's).
    """

    def __init__(
        self, *, quiet: bool = False, stdout: Console | None = None, stderr: Console | None = None
    ):
        self.quiet = quiet
        self.out = stdout or Console(highlight=False, soft_wrap=True)
        self.err = stderr or Console(stderr=True, highlight=False, soft_wrap=True)

    def step(self, message: str) -> None:
        """One progress line on stderr."""
        if not self.quiet:
            self.err.print(f"[bold cyan]•[/] {message}")

    def note(self, message: str) -> None:
        """A dim secondary line on stderr."""
        if not self.quiet:
            self.err.print(f"  [dim]{message}[/]")

    def warn(self, message: str) -> None:
        """A warning line on stderr (shown even when quiet)."""
        self.err.print(f"[bold yellow]warning:[/] {message}", markup=True)

    @contextlib.contextmanager
    def timed(self, message: str) -> Iterator[None]:
        """Print ``message``, run the block, then print how long it took."""
        self.step(message)
        t0 = time.perf_counter()
        yield
        self.note(f"done in {time.perf_counter() - t0:.1f} s")

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """A progress bar on stderr; yields ``update(done, total=None)``.

        ``total`` may be unknown (None) and given later through ``update``. When quiet, the
        callback does nothing.
        """
        if self.quiet:
            yield lambda *a, **k: None
            return
        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=False,
        )
        task = bar.add_task(description, total=total)

        def update(done: int, new_total: int | None = None, *_: Any) -> None:
            kwargs: dict[str, Any] = {"completed": int(done)}
            if new_total is not None:
                kwargs["total"] = int(new_total)
            bar.update(task, **kwargs)

        with bar:
            yield update
