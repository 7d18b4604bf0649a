"""From a folder, glob or list of files to granule headers.

:func:`list_granules` lists the ``*.nc`` files under a local folder, an object-store prefix
or a glob; :func:`scan_headers` reads the header of each (a few small ranged reads for
remote files, which also give the granule's chunk index) in a thread pool and records,
never raises, what cannot be read; :func:`read_headers` is the same without the chunk
indexes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.granule.info import GranuleInfo
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.urls import is_remote, redact_url, url_to_fs
from itslive_dask.progress import ProgressArg, Reporter

__all__ = ["HeaderScan", "list_granules", "read_headers", "scan_headers"]

_GLOB_CHARS = "*?["


def list_granules(
    source: str | os.PathLike, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, list[str]]:
    """The ``*.nc`` files under ``source``, sorted.

    Parameters
    ----------
    source
        A local folder, an fsspec URL prefix (``s3://bucket/prefix/``, searched
        recursively), a glob (``s3://bucket/**/*.nc``) or one file (kept whatever its name).
    storage_options
        fsspec options for remote sources.

    Returns
    -------
    (root, urls)
        ``root`` is the listed folder (the part of a glob before its first wildcard) as an
        absolute path or URL; ``urls`` are absolute paths (local) or full URLs (remote).

    Raises
    ------
    InvalidInputError
        When ``source`` does not exist or cannot be listed.
    """
    text = os.fspath(source)
    fs, root = url_to_fs(text, storage_options)
    local = not is_remote(text)
    try:
        if any(ch in root for ch in _GLOB_CHARS):
            paths = [p for p in fs.glob(root) if p.lower().endswith(".nc")]
        elif fs.isfile(root):
            paths = [root]
        elif fs.isdir(root):
            paths = [p for p in fs.find(root) if p.lower().endswith(".nc")]
        else:
            raise InvalidInputError(f"no such file or folder: {redact_url(text)}")
    except InvalidInputError:
        raise
    except FileNotFoundError:
        raise InvalidInputError(f"no such file or folder: {redact_url(text)}") from None
    except Exception as exc:  # fsspec backends raise many types (permissions, endpoints)
        raise InvalidInputError(
            f"cannot list {redact_url(text)}: {type(exc).__name__}: {exc}"
        ) from None
    urls = sorted(os.path.abspath(p) if local else fs.unstrip_protocol(p) for p in paths)
    base = root
    for ch in _GLOB_CHARS:
        base = base.split(ch, 1)[0]
    root_url = os.path.abspath(base) if local else fs.unstrip_protocol(base)
    return root_url, urls


@dataclass
class HeaderScan:
    """What :func:`scan_headers` read.

    Attributes
    ----------
    infos
        URL -> :class:`~itslive_dask.granule.info.GranuleInfo` of every readable granule.
    records
        URL -> header record (grid and chunk index, see
        :func:`~itslive_dask.io.remote.read_header_record`) of the remote granules that
        have one.
    failures
        ``{"url", "error", "attempts", "seconds"}`` for every other granule, in the order of
        the URLs (URLs redacted).
    """

    infos: dict[str, GranuleInfo] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)


def scan_headers(
    urls: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_workers: int = 16,
    policy: RetryPolicy | None = None,
    progress: ProgressArg = None,
) -> HeaderScan:
    """Read the header and, for remote granules, the chunk index of every granule in ``urls``.

    The headers are read in parallel threads; one read of a remote granule's HDF5 metadata
    gives both its header and its chunk index
    (:func:`~itslive_dask.io.remote.read_header_record`). A file that cannot be read is a
    failure entry, never an exception.

    Parameters
    ----------
    urls
        Local paths or fsspec URLs.
    storage_options
        fsspec options for remote URLs.
    max_workers
        Threads reading headers at once.
    policy
        Retries of transient errors per header (default :class:`RetryPolicy`).
    progress
        ``True`` for a progress bar, or a callable ``f(done, total)``.

    Returns
    -------
    HeaderScan
    """
    from itslive_dask.io.remote import read_header_record

    if not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidInputError(f"max_workers must be a positive integer, got {max_workers!r}")
    policy = policy or RetryPolicy()
    scan = HeaderScan()
    failed: dict[str, dict[str, Any]] = {}
    if not urls:
        return scan
    with Reporter(progress, len(urls), "reading headers") as rep:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(urls))) as pool:
            futures = {pool.submit(read_header_record, u, storage_options, policy): u for u in urls}
            for fut in as_completed(futures):
                url = futures[fut]
                try:
                    info, record = fut.result()
                except GranuleError as exc:
                    failed[url] = {
                        "url": redact_url(url),
                        "error": exc.problem,
                        "attempts": getattr(exc, "attempts", 1),
                        "seconds": round(float(getattr(exc, "seconds", 0.0)), 3),
                    }
                except Exception as exc:  # one bad file must not stop the others
                    failed[url] = {
                        "url": redact_url(url),
                        "error": f"{type(exc).__name__}: {exc}",
                        "attempts": 1,
                        "seconds": 0.0,
                    }
                else:
                    scan.infos[url] = info
                    if record is not None:
                        scan.records[url] = record
                rep.advance()
    scan.failures = [failed[u] for u in urls if u in failed]
    return scan


def read_headers(
    urls: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_workers: int = 16,
    policy: RetryPolicy | None = None,
    progress: ProgressArg = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the header of every granule in ``urls``, in parallel threads: :func:`scan_headers`
    (same parameters) without the chunk indexes.

    Returns
    -------
    (infos, failures)
        ``infos`` maps each readable URL to its
        :class:`~itslive_dask.granule.info.GranuleInfo`; ``failures`` lists
        ``{"url", "error", "attempts", "seconds"}`` for every other one, in the order of ``urls``.
    """
    scan = scan_headers(
        urls, storage_options, max_workers=max_workers, policy=policy, progress=progress
    )
    return scan.infos, scan.failures
