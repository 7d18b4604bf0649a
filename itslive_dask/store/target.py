"""Where a cube is written: a Zarr store as a path or URL, and what is in it.

:class:`StoreTarget` is handed to worker tasks (picklable, credentials kept out of its repr);
the helpers here answer "does it exist", "is it a Zarr group" and write small files
atomically.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from itslive_dask.errors import InvalidInputError
from itslive_dask.io.files import TMP_MARK, put_atomic
from itslive_dask.io.urls import is_remote, local_path, storage_kwargs, url_to_fs

__all__ = [
    "MAP_SUFFIX",
    "StoreTarget",
    "display",
    "exists",
    "map_store_url",
    "put_json",
    "remove_leftovers",
    "resolve_target",
]

log = logging.getLogger(__name__)

#: A time-series build works in ``<store>.map.zarr`` (which keeps the build state).
MAP_SUFFIX = ".map.zarr"


def map_store_url(url: str) -> str:
    """The map-layout work store of a time-series cube at ``url``."""
    return url.rstrip("/") + MAP_SUFFIX


@dataclass(frozen=True)
class StoreTarget:
    """Where tasks write: a Zarr store URL or path and its fsspec options (kept out of repr)."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def join(self, *parts: str) -> str:
        """The URL of ``parts`` inside the store."""
        return posixpath.join(self.url.rstrip("/"), *parts)

    def fs(self) -> Any:
        """The fsspec file system of the store."""
        fs, _ = url_to_fs(self.url, self.storage_options)
        return fs

    def path(self, *parts: str) -> str:
        """The file-system path of ``parts`` inside the store."""
        _, p = url_to_fs(self.join(*parts), self.storage_options)
        return p

    def zarr_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for xarray/zarr openers (storage options for remote stores)."""
        return storage_kwargs(self.url, self.storage_options)

    def open_root(self, mode: Literal["r", "r+", "a", "w", "w-"] = "r"):
        """The root Zarr group, read from the stores themselves (not consolidated metadata).

        Zarr's warnings about the ``_itslive`` state folder and consolidated metadata in
        format 3 are silenced: they are expected here.
        """
        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return zarr.open_group(self.url, mode=mode, use_consolidated=False, **self.zarr_kwargs())


def resolve_target(
    store: str | os.PathLike[str], store_options: Mapping[str, Any] | None = None
) -> StoreTarget:
    """The :class:`StoreTarget` of a path or URL (local paths made absolute)."""
    if not isinstance(store, str | os.PathLike) or not str(store).strip():
        raise InvalidInputError(f"store must be a path or URL, got {store!r}")
    s = str(store)
    local = local_path(s)
    if local is not None:
        s = os.path.abspath(os.path.expanduser(local))
    return StoreTarget(s, dict(store_options or {}))


def display(target: StoreTarget) -> str:
    """How the store is named to users."""
    return target.url


def exists(target: StoreTarget) -> bool:
    """True when the store path exists and is not empty."""
    try:
        fs = target.fs()
        p = target.path()
        return fs.exists(p) and bool(fs.ls(p, detail=False))
    except FileNotFoundError:
        return False


def remove_leftovers(target: StoreTarget) -> None:
    """Delete temporary files a killed build can leave in a local store.

    Zarr's local store writes ``<chunk>.<uuid>.partial`` and renames it; our markers are
    written as ``<marker>.tmp-<pid>``. Object stores have no such files (a PUT is atomic).
    """
    if is_remote(target.url):
        return
    for root, _, files in os.walk(target.url):
        for name in files:
            if name.endswith(".partial") or f".json{TMP_MARK}" in name:
                os.remove(os.path.join(root, name))
                log.info("removed leftover %s", os.path.join(root, name))


def put_json(target: StoreTarget, parts: tuple[str, ...], content: Any) -> None:
    """Write ``content`` as JSON at ``parts`` inside the store, atomically."""
    put_atomic(target.join(*parts), json.dumps(content, indent=1, default=str).encode(), target.storage_options)
