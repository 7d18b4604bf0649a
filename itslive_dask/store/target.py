"""Where a cube is written: a Zarr store as a path or URL, and what is in it.

:class:`StoreTarget` is handed to worker tasks (picklable, credentials kept out of its repr);
the helpers here answer "does it exist", "is it a Zarr group" and write small files
atomically.
"""

from __future__ import annotations

import errno
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
from itslive_dask.io.urls import is_remote, local_path, redact_text, storage_kwargs, url_to_fs

__all__ = [
    "MAP_SUFFIX",
    "STATE",
    "StoreTarget",
    "check_bucket",
    "clear_store",
    "display",
    "exists",
    "map_store_url",
    "put_json",
    "remove_leftovers",
    "resolve_target",
    "storage_error_message",
]

log = logging.getLogger(__name__)

#: A time-series build works in ``<store>.map.zarr`` (which keeps the build state).
MAP_SUFFIX = ".map.zarr"


def map_store_url(url: str) -> str:
    """The map-layout work store of a time-series cube at ``url``."""
    return url.rstrip("/") + MAP_SUFFIX


#: The folder of a store that holds its build state (block markers, ledger, kept headers).
STATE = "_itslive"


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
            return zarr.open_group(
                self.url, mode=mode, use_consolidated=False, **self.zarr_kwargs()
            )


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


#: Files of the build-state folder that do not make a store: the build lease (and its
#: take-over guard) is written before the template, in a store that does not exist yet.
_LEASE_FILES = ("lease.json", "lease.json.takeover")


def exists(target: StoreTarget) -> bool:
    """True when the store path exists and holds more than a build lease."""
    try:
        fs = target.fs()
        p = target.path()
        if not fs.exists(p):
            return False
        entries = [posixpath.basename(e.rstrip("/")) for e in fs.ls(p, detail=False)]
        if entries != ["_itslive"]:
            return bool(entries)
        inside = fs.ls(target.path("_itslive"), detail=False)
        # the lease, its take-over guard, a heartbeat's temporary file
        return any(not posixpath.basename(e.rstrip("/")).startswith("lease.json") for e in inside)
    except FileNotFoundError:
        return False


#: Protocols whose first path component is a bucket that must exist before a store goes in it.
_BUCKET_PROTOCOLS = ("s3", "s3a", "gs", "gcs")


def check_bucket(target: StoreTarget) -> None:
    """Raise :class:`StoreError` when the bucket of a remote store does not exist.

    Only a definite "not found" counts: a bucket these credentials may not inspect (403) is
    left for the build to try.
    """
    from itslive_dask.errors import StoreError

    protocol = target.url.split("://", 1)[0] if is_remote(target.url) else "file"
    if protocol not in _BUCKET_PROTOCOLS:
        return
    bucket = target.url.split("://", 1)[1].split("/", 1)[0]
    try:
        target.fs().info(bucket, refresh=True)
    except FileNotFoundError as exc:
        raise StoreError(
            storage_error_message(
                target,
                "checking the output store",
                FileNotFoundError(f"The specified bucket does not exist ({exc})"),
                nothing_written=True,
            )
        ) from None
    except Exception:  # no permission to look, or a flaky endpoint: the build will tell
        return


def clear_store(target: StoreTarget) -> None:
    """Delete everything in the store but the build lease (``overwrite`` runs under it)."""
    fs = target.fs()
    root = target.path()
    fs.invalidate_cache(root)
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        return
    for entry in entries:
        if posixpath.basename(entry.rstrip("/")) == "_itslive":
            for inner in fs.ls(entry, detail=False):
                if posixpath.basename(inner.rstrip("/")) not in _LEASE_FILES:
                    fs.rm(inner, recursive=True)
        else:
            fs.rm(entry, recursive=True)
    fs.invalidate_cache(root)


#: errno values of a full disk or quota, and what they are called in messages.
_FULL = {errno.ENOSPC: "ENOSPC", errno.EFBIG: "EFBIG", errno.EDQUOT: "EDQUOT"}


def _errnos(exc: BaseException) -> set[int]:
    """errno values of ``exc`` and the exceptions it wraps (zarr and dask re-raise)."""
    out: set[int] = set()
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        code = getattr(e, "errno", None)
        if isinstance(code, int):
            out.add(code)
        e = e.__cause__ or e.__context__
    return out


def storage_error_message(
    target: StoreTarget, what: str, exc: BaseException, *, nothing_written: bool = False
) -> str:
    """A user's message for an error of the output storage: what failed, why in plain words
    (disk full, permission denied, read-only, missing bucket) and what to do next.

    Parameters
    ----------
    target
        The store.
    what
        The step that failed ("writing the template", "a block", ...).
    exc
        The error (credentials are redacted from its text).
    nothing_written
        True when the build had not written anything yet (else the blocks written so far
        are kept and ``mode="resume"`` goes on from them).
    """
    where = display(target)
    detail = redact_text(f"{type(exc).__name__}: {exc}")
    codes = _errnos(exc)
    text = f"{detail}".lower()
    then = (
        "nothing was written"
        if nothing_written
        else "the blocks written so far are kept: run again with mode='resume' and the same granules"
    )
    full = sorted(_FULL[c] for c in codes if c in _FULL)
    if full or "no space left" in text or "file too large" in text or "quota" in text:
        name = full[0] if full else "ENOSPC"
        return (
            f"{what} in {where} failed: the disk is full ({name}: {detail}). Free space (or "
            "raise the quota), then "
            + (
                "run again (nothing was written)"
                if nothing_written
                else "run again with mode='resume' and the same granules (the blocks written so far "
                "are kept)"
            )
        )
    if (
        codes & {errno.EACCES, errno.EPERM}
        or isinstance(exc, PermissionError)
        or "access denied" in text
    ):
        return (
            f"{what} in {where} failed: permission denied ({detail}). Choose a store you may "
            f"write to, or fix its permissions or credentials; {then}"
        )
    if errno.EROFS in codes or "read-only file system" in text:
        return (
            f"{what} in {where} failed: the file system is read-only ({detail}). Choose "
            f"another store; {then}"
        )
    if is_remote(target.url) and (
        "bucket" in text and ("not exist" in text or "nosuchbucket" in text)
    ):
        bucket = target.url.split("://", 1)[1].split("/", 1)[0]
        return (
            f"the bucket {bucket!r} of {where} does not exist (or these credentials cannot see "
            f"it): create it first, or choose another store ({what} failed: {detail}); {then}"
        )
    return f"{what} in {where} failed ({detail}); {then}"


def remove_leftovers(target: StoreTarget) -> None:
    """Delete temporary files a killed build can leave in a local store.

    Zarr's local store writes ``<chunk>.<uuid>.partial`` and renames it; our markers are
    written as ``<marker>.tmp-<pid>``. Object stores have no such files (a PUT is atomic).
    """
    if is_remote(target.url):
        return
    for root, _, files in os.walk(target.url):
        for name in files:
            if name.startswith("lease.json"):
                continue  # the lease's heartbeat (this build's, taken before this runs)
            if name.endswith(".partial") or f".json{TMP_MARK}" in name:
                os.remove(os.path.join(root, name))
                log.info("removed leftover %s", os.path.join(root, name))


def put_json(target: StoreTarget, parts: tuple[str, ...], content: Any) -> None:
    """Write ``content`` as JSON at ``parts`` inside the store, atomically."""
    put_atomic(
        target.join(*parts),
        json.dumps(content, indent=1, default=str).encode(),
        target.storage_options,
    )
