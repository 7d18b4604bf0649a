"""Download granules to a folder: parallel, resumable, atomic, with a manifest.

Each file is fetched through fsspec (``s3://``, ``https://``, local paths...) into
``<folder>/.<name>.part`` and moved to ``<folder>/<name>`` with :func:`os.replace` once its size
matches the remote size, so a file with the final name is always complete. An interrupted run
leaves the ``.part`` file; the next run continues it from where it stopped (ranged read) and
skips files already complete (same size as the remote object). ``itslive_manifest.json`` in the
folder records the search parameters and every file's URL, size and status.

Only the basename of each URL is used as file name, and it must be an ITS_LIVE granule name
(``<scene1>_X_<scene2>_G<res>V<ver>_P<pct>.nc``): anything else (``../x.nc``, absolute paths,
``a/b.nc``, encoded separators) is refused before anything is written. Nothing is written
outside ``folder``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.granule.names import parse_granule_name
from itslive_dask.io.fetch import RetryPolicy, with_retries
from itslive_dask.io.urls import redact_url, url_to_fs
from itslive_dask.progress import ProgressArg, Reporter

__all__ = ["MANIFEST_NAME", "DownloadResult", "FileResult", "download_granules", "safe_file_name"]

logger = logging.getLogger(__name__)

#: Name of the manifest written in the download folder.
MANIFEST_NAME = "itslive_manifest.json"
_CHUNK = 4 * 1024 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\.nc")


@dataclass
class FileResult:
    """Outcome of one file.

    Attributes
    ----------
    name
        File name in the folder.
    url
        Source URL (query string removed: presigned URLs carry credentials).
    path
        Local path of the file.
    status
        ``"downloaded"``, ``"skipped"`` (already complete) or ``"failed"``.
    size
        Size in bytes of the remote object (None when it could not be read).
    attempts
        Number of attempts made.
    resumed_from
        Bytes already present in a ``.part`` file that the download continued from.
    error
        Why it failed (None otherwise).
    """

    name: str
    url: str
    path: str
    status: str
    size: int | None = None
    attempts: int = 0
    resumed_from: int = 0
    error: str | None = None


@dataclass
class DownloadResult:
    """What :func:`download_granules` did.

    Attributes
    ----------
    folder
        The download folder.
    files
        One :class:`FileResult` per requested file, in request order.
    manifest
        Path of the JSON manifest.
    """

    folder: Path
    files: list[FileResult] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def downloaded(self) -> list[FileResult]:
        """Files fetched in this run."""
        return [f for f in self.files if f.status == "downloaded"]

    @property
    def skipped(self) -> list[FileResult]:
        """Files already complete in the folder."""
        return [f for f in self.files if f.status == "skipped"]

    @property
    def failed(self) -> list[FileResult]:
        """Files that could not be downloaded (after retries)."""
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    @property
    def paths(self) -> list[Path]:
        """Local paths of every complete file (downloaded or skipped)."""
        return [Path(f.path) for f in self.files if f.status != "failed"]

    def __repr__(self) -> str:
        return (
            f"DownloadResult(folder={str(self.folder)!r}, downloaded={len(self.downloaded)}, "
            f"skipped={len(self.skipped)}, failed={len(self.failed)})"
        )


def safe_file_name(url: str) -> str:
    """The local file name for a granule URL, or raise if it is not a safe granule name.

    Only the last path segment of the URL (query and fragment removed) is used; it must be an
    ITS_LIVE granule file name: letters, digits, ``_``, ``.``, ``-``, ending in ``.nc``, parsable
    by :func:`itslive_dask.granule.names.parse_granule_name`. URLs with ``..`` segments are refused.

    Raises
    ------
    InvalidInputError
        For anything else (``../x.nc``, ``/etc/x.nc`` with a non-granule name, ``a/b.nc``,
        percent-encoded separators, empty names).

    Examples
    --------
    >>> safe_file_name("s3://its-live-data/velocity_image_pair/landsatOLI/v02/N60W040/"
    ...                "LC08_L1GT_232113_20201213_20201219_02_T2_X_LC08_L1GT_232113_20201229_"
    ...                "20210308_02_T2_G0120V02_P073.nc")[:9]
    'LC08_L1GT'
    """
    if not isinstance(url, str) or not url or "\x00" in url:
        raise InvalidInputError(f"granule URL must be a non-empty string, got {url!r:.200}")
    path = urlsplit(url).path if "://" in url else url
    segments = re.split(r"[\\/]", path)
    if ".." in segments:
        raise InvalidInputError(f"refusing {redact_url(url)!r:.200}: the path contains '..'")
    name = segments[-1]
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidInputError(
            f"refusing {redact_url(url)!r:.200}: {name[:100]!r} is not an ITS_LIVE granule file name (*.nc)"
        )
    try:
        parse_granule_name(name)
    except InvalidInputError:
        raise InvalidInputError(
            f"refusing {redact_url(url)!r:.200}: {name[:100]!r} is not an ITS_LIVE granule file name"
        ) from None
    return name


def _urls_of(table_or_urls: Any) -> list[str]:
    if isinstance(table_or_urls, str | os.PathLike):
        return [os.fspath(table_or_urls)]
    if isinstance(table_or_urls, pd.DataFrame):
        if "url" not in table_or_urls.columns:
            raise InvalidInputError("the granule table has no 'url' column")
        return [str(u) for u in table_or_urls["url"]]
    if isinstance(table_or_urls, Mapping):  # {year: table} from filter_granules(by_year=True)
        urls: list[str] = []
        for part in table_or_urls.values():
            urls.extend(_urls_of(part))
        return urls
    if isinstance(table_or_urls, Iterable):
        out = []
        for u in table_or_urls:
            if not isinstance(u, str | os.PathLike):
                raise InvalidInputError(
                    f"expected URLs or paths, got {type(u).__name__}: {u!r:.100}"
                )
            out.append(os.fspath(u))
        return out
    raise InvalidInputError(
        f"expected a granule table, a list of URLs or {{year: table}}, got {type(table_or_urls).__name__}"
    )


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


class _Manifest:
    """The folder's JSON manifest, updated under a lock and written atomically."""

    def __init__(self, folder: Path, params: Any):
        self.path = folder / MANIFEST_NAME
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {"files": {}}
        if self.path.is_file() and not self.path.is_symlink():
            try:
                old = json.loads(self.path.read_text())
                if isinstance(old, dict) and isinstance(old.get("files"), dict):
                    self.data = old
            except (OSError, ValueError):
                logger.warning("ignoring an unreadable manifest %s", self.path)
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.data.setdefault("created", now)
        self.data["updated"] = now
        if params is not None:
            self.data["params"] = _jsonable(params)

    def record(self, res: FileResult) -> None:
        with self._lock:
            entry = {k: v for k, v in asdict(res).items() if k not in ("path", "name")}
            entry["updated"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            self.data["files"][res.name] = entry
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(f".{MANIFEST_NAME}.tmp")
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def download_granules(
    table_or_urls: Any,
    folder: str | os.PathLike,
    *,
    storage_options: dict | None = None,
    max_workers: int = 8,
    retries: int = 3,
    backoff: float = 0.5,
    params: Any = None,
    progress: ProgressArg = True,
) -> DownloadResult:
    """Download granules into ``folder`` (the tutorial's ``download_velocity_granules``).

    Parameters
    ----------
    table_or_urls
        A granule table (its ``url`` column), ``{year: table}`` as returned by
        ``filter_granules(..., by_year=True)``, or an iterable of URLs/paths.
    folder
        Target folder (created if needed). Nothing is written outside it.
    storage_options
        fsspec options for the sources: a flat dict applies to non-HTTP remote URLs
        (``s3://``...), or give one dict per protocol: ``{"s3": {...}, "https": {...}}``.
    max_workers
        Parallel downloads (threads).
    retries
        Extra attempts per file after a failure; waits ``backoff * 2**k`` seconds before
        attempt ``k + 1``.
    backoff
        Base wait in seconds.
    params
        Search parameters to record in the manifest (any JSON-able object).
    progress
        ``True`` for a rich progress bar (bytes), ``False`` for none, or ``f(done, total)``.

    Returns
    -------
    DownloadResult
        Per-file outcomes; failed files are listed in ``result.failed`` (never dropped).

    Raises
    ------
    InvalidInputError
        Before anything is written: a URL whose file name is not a safe ITS_LIVE granule name,
        two URLs with the same file name, invalid arguments.

    Examples
    --------
    >>> result = download_granules(table, "data/pine-2006", params={"start": "2006-01-01"})
    ...                                                                    # doctest: +SKIP
    >>> result.ok, len(result.downloaded), len(result.skipped)             # doctest: +SKIP
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidInputError(f"max_workers must be a positive integer, got {max_workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInputError(f"retries must be a non-negative integer, got {retries!r}")
    if not isinstance(backoff, int | float) or backoff < 0:
        raise InvalidInputError(f"backoff must be a non-negative number, got {backoff!r}")
    urls = _urls_of(table_or_urls)
    names = [safe_file_name(u) for u in urls]  # refuse before writing anything
    seen: dict[str, str] = {}
    for name, url in zip(names, urls, strict=True):
        if name in seen and seen[name] != url:
            raise InvalidInputError(
                f"two URLs give the same file name {name!r}: {seen[name]!r} and {url!r}"
            )
        seen[name] = url
    jobs = list(dict.fromkeys(zip(names, urls, strict=True)))  # drop exact duplicates

    target = Path(os.path.abspath(os.fspath(folder)))
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"download folder {target} exists and is not a folder")
    target.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(target, params)
    result = DownloadResult(folder=target, manifest=manifest.path)
    if not jobs:
        with manifest._lock:
            manifest._write()
        return result

    sizes = _remote_sizes(jobs, storage_options, max_workers)
    total_bytes = sum(s for s in sizes.values() if s is not None)
    by_name: dict[str, FileResult] = {}
    with Reporter(progress, len(jobs), "downloading", total_bytes=total_bytes) as rep:

        def work(name: str, url: str) -> FileResult:
            res = _fetch_one(
                name, url, target, sizes.get(name), storage_options, retries, backoff, rep
            )
            manifest.record(res)
            return res

        with ThreadPoolExecutor(max_workers=min(max_workers, len(jobs))) as pool:
            futures = {pool.submit(work, n, u): n for n, u in jobs}
            for fut in as_completed(futures):
                res = fut.result()
                by_name[res.name] = res
                rep.advance(1, 0)
    result.files = [by_name[n] for n, _ in jobs]
    for f in result.failed:
        logger.warning("download failed: %s (%s)", f.url, f.error)
    logger.info(
        "download to %s: %d downloaded, %d skipped, %d failed",
        target, len(result.downloaded), len(result.skipped), len(result.failed),
    )  # fmt: skip
    return result


def _remote_sizes(
    jobs: list[tuple[str, str]], storage_options: dict | None, max_workers: int
) -> dict[str, int | None]:
    def size(url: str) -> int | None:
        try:
            fs, path = url_to_fs(url, storage_options)
            info = fs.info(path)
            s = info.get("size")
            return int(s) if s is not None else None
        except Exception:  # reported later, when the download itself is attempted
            return None

    with ThreadPoolExecutor(max_workers=min(max_workers, len(jobs))) as pool:
        sizes = list(pool.map(lambda job: size(job[1]), jobs))
    return {name: s for (name, _), s in zip(jobs, sizes, strict=True)}


def _open_part(part: Path, offset: int) -> int:
    """Open the ``.part`` file for appending at ``offset`` (no symlinks followed)."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if part.is_symlink():
        part.unlink()
    fd = os.open(part, flags, 0o644)
    os.ftruncate(fd, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return fd


def _fetch_one(
    name: str,
    url: str,
    folder: Path,
    size: int | None,
    storage_options: dict | None,
    retries: int,
    backoff: float,
    rep: Reporter,
) -> FileResult:
    final = folder / name
    part = folder / f".{name}.part"
    res = FileResult(name=name, url=redact_url(url), path=str(final), status="failed", size=size)
    if (
        size is not None
        and final.is_file()
        and not final.is_symlink()
        and final.stat().st_size == size
    ):
        res.status = "skipped"
        rep.bytes(size)
        return res
    tries = 0

    def transfer() -> None:
        nonlocal size, tries
        tries += 1
        fs, path = url_to_fs(url, storage_options)
        if size is None:
            info = fs.info(path)
            size = int(info["size"]) if info.get("size") is not None else None
            res.size = size
        have = part.stat().st_size if part.is_file() and not part.is_symlink() else 0
        if size is None or have > size:
            have = 0
        if tries == 1:
            res.resumed_from = have
            rep.bytes(have)
        fd = _open_part(part, have)
        with os.fdopen(fd, "wb") as out:
            if size is None or have < size:
                with fs.open(path, "rb", block_size=_CHUNK, cache_type="none") as src:
                    if have:
                        src.seek(have)
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        rep.bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        got = part.stat().st_size
        if size is not None and got != size:
            raise OSError(f"incomplete transfer: {got} of {size} bytes")
        os.replace(part, final)
        res.size = got

    try:
        _, res.attempts = with_retries(
            url, transfer, RetryPolicy(retries=retries, backoff=backoff, budget=3600.0)
        )
    except GranuleError as exc:
        res.attempts = exc.attempts
        res.error = exc.problem
        return res
    res.status = "downloaded"
    res.error = None
    return res
