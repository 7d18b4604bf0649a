"""The ``itslive-dask`` command line (needs the ``[cli]`` extra: typer and rich)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``itslive-dask``: the CLI, or one line naming the missing extra."""
    from itslive_dask._optional import MissingDependencyError, require

    try:
        require("typer", "the itslive-dask command line")
        require("rich", "the itslive-dask command line")
    except MissingDependencyError as exc:
        print(f"itslive-dask: error: {exc}", file=sys.stderr)
        return 1
    from itslive_dask.cli.app import main as run

    return run(argv)
