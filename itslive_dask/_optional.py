"""Optional dependencies: import them with a message that names the extra to install.

The core library (search, open_cube, write_cube, analysis) needs none of them; the CLI,
the search server, the figures and the demo each come with an extra of the package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from itslive_dask.errors import ItsliveDaskError

__all__ = ["EXTRAS", "MissingDependencyError", "require"]

#: Import name -> (PyPI name, extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "typer": ("typer", "cli"),
    "rich": ("rich", "cli"),
    "fastapi": ("fastapi", "server"),
    "uvicorn": ("uvicorn", "server"),
    "matplotlib": ("matplotlib", "plot"),
    "moto": ("moto[server]", "demo"),
}


class MissingDependencyError(ItsliveDaskError, ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or explain how to install it.

    Parameters
    ----------
    module
        Import name (a key of :data:`EXTRAS`).
    feature
        What needs it, for the message (e.g. ``"the command line"``).

    Raises
    ------
    MissingDependencyError
        When ``module`` cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = EXTRAS.get(module, (module, "all"))
        raise MissingDependencyError(
            f"{feature} needs {package}, which is not installed: "
            f"pip install 'itslive_dask[{extra}]' (or itslive_dask[all])"
        ) from exc
