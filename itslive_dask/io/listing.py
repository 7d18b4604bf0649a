"""From a folder, glob or list of files to granule headers.

:func:`list_granules` lists the ``*.nc`` files under a local folder, an object-store prefix
or a glob; :func:`scan_headers` reads the header of each (a few small ranged reads for
remote files, which also give the granule's chunk index) in a thread pool and records,
never raises, what cannot be read; :func:`read_headers` is the same without the chunk
indexes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.granule.info import GranuleInfo
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.io.urls import is_remote, redact_url, url_to_fs
from itslive_dask.progress import ProgressArg, Reporter

__all__ = [
    "PROCESS_SCAN_DEFAULT",
    "PROCESS_SCAN_MIN",
    "PROCESS_SCAN_SLOW_HEADER",
    "HeaderScan",
    "auto_processes",
    "list_granules",
    "read_headers",
    "scan_headers",
]

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

    def row(self, url: str, *, https_url: str = "", chunk_index: bool = True) -> dict[str, Any]:
        """The granule-table row of ``url`` (one of :attr:`infos`), with its ``chunk_index``
        cell when it has a record and ``chunk_index`` is true."""
        from itslive_dask.table import chunk_index_text

        row = self.infos[url].to_record(url, https_url=https_url)
        if chunk_index and url in self.records:
            row["chunk_index"] = chunk_index_text(self.records[url])
        return row


#: Remote granules from which :func:`scan_headers` may read in processes by default.
PROCESS_SCAN_MIN = 64
#: Processes :func:`scan_headers` starts by default for a large remote scan.
PROCESS_SCAN_DEFAULT = 8
#: A first remote header that takes this long (seconds) means the requests wait on the
#: store's latency: the rest is read in processes. A realistic granule's header is ~8.4
#: ranged GETs and ~40 ms of work; at 10 ms per request it takes ~0.12 s.
PROCESS_SCAN_SLOW_HEADER = 0.12


def auto_processes(n_remote: int, first_header_s: float) -> int:
    """The processes :func:`scan_headers` uses by default for ``n_remote`` more remote
    granules, given the seconds the first one took: :data:`PROCESS_SCAN_DEFAULT` when
    there are at least :data:`PROCESS_SCAN_MIN` and the store is slow to answer (starting
    processes costs ~1 s of CPU each, which a fast store never pays back), else none."""
    if n_remote >= PROCESS_SCAN_MIN and first_header_s >= PROCESS_SCAN_SLOW_HEADER:
        return PROCESS_SCAN_DEFAULT
    return 0


def scan_headers(
    urls: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_workers: int = 16,
    policy: RetryPolicy | None = None,
    progress: ProgressArg = None,
    processes: int | None = None,
) -> HeaderScan:
    """Read the header and, for remote granules, the chunk index of every granule in ``urls``.

    One read of a remote granule's HDF5 metadata gives both its header and its chunk index
    (:func:`~itslive_dask.io.remote.read_header_record`). A file that cannot be read is a
    failure entry, never an exception.

    h5py runs one HDF5 call at a time per process, and a remote header's ranged GETs are
    made inside those calls, one after the other: threads overlap little of the request
    latency (8 realistic granules at 20 ms per request: 2.16 s in one thread, 1.74 s in
    16). Large remote scans therefore read in worker processes, each granule after the
    other, so that ``processes`` headers are read at once.

    Parameters
    ----------
    urls
        Local paths or fsspec URLs.
    storage_options
        fsspec options for remote URLs.
    max_workers
        Threads reading headers at once (local files, and remote ones read without
        processes).
    policy
        Retries of transient errors per header (default :class:`RetryPolicy`).
    progress
        ``True`` for a progress bar, or a callable ``f(done, total)``.
    processes
        Worker processes for the remote granules (started with ``spawn``: a script that
        calls this at its top level needs the usual ``if __name__ == "__main__":`` guard,
        as for a Dask ``LocalCluster``). None (default): the first remote header is read and
        timed, then :func:`auto_processes` decides (8 processes for a large scan of a store
        that answers slowly, else threads); 0: threads only.

    Returns
    -------
    HeaderScan
    """
    if not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidInputError(f"max_workers must be a positive integer, got {max_workers!r}")
    if processes is not None and (not isinstance(processes, int) or processes < 0):
        raise InvalidInputError(f"processes must be an integer >= 0, got {processes!r}")
    policy = policy or RetryPolicy()
    scan = HeaderScan()
    if not urls:
        return scan
    remote = [u for u in urls if is_remote(u)]
    failed: dict[str, dict[str, Any]] = {}
    with Reporter(progress, len(urls), "reading headers") as rep:

        def take(url: str, info: Any, record: Any, failure: Any) -> None:
            if failure is not None:
                failed[url] = failure
            else:
                scan.infos[url] = info
                if record is not None:
                    scan.records[url] = record
            rep.advance()

        done: set[str] = set()
        if processes is None:  # automatic: time one header, then choose
            processes = 0
            if len(remote) > PROCESS_SCAN_MIN:
                t0 = time.perf_counter()
                take(*_read_batch(remote[:1], storage_options, policy)[0])
                processes = auto_processes(len(remote) - 1, time.perf_counter() - t0)
                done, remote = {remote[0]}, remote[1:]
        processes = min(processes, len(remote))
        in_processes = set(remote) if processes else set()
        threaded = [u for u in urls if u not in in_processes and u not in done]
        with contextlib.ExitStack() as stack:
            futures: dict[Any, list[str]] = {}
            # on an interrupt the pools drop what has not started instead of finishing the scan
            if threaded:
                pool = ThreadPoolExecutor(min(max_workers, len(threaded)))
                stack.callback(pool.shutdown, wait=True, cancel_futures=True)
                for u in threaded:
                    futures[pool.submit(_read_batch, [u], storage_options, policy)] = [u]
            if in_processes:
                procs = ProcessPoolExecutor(
                    processes, mp_context=multiprocessing.get_context("spawn")
                )
                stack.callback(procs.shutdown, wait=True, cancel_futures=True)
                batch = max(1, min(32, len(remote) // (processes * 4)))
                for i in range(0, len(remote), batch):
                    part = remote[i : i + batch]
                    futures[
                        procs.submit(_read_batch, part, dict(storage_options or {}), policy)
                    ] = part
            for fut in as_completed(futures):
                try:
                    results = fut.result()
                except Exception as exc:  # a worker process died: its granules are failures
                    problem = f"the header-reading process failed ({type(exc).__name__}: {exc})"
                    results = [(u, None, None, _failure(u, problem)) for u in futures[fut]]
                for result in results:
                    take(*result)
    scan.failures = [failed[u] for u in urls if u in failed]
    return scan


def _failure(url: str, problem: str, attempts: int = 1, seconds: float = 0.0) -> dict[str, Any]:
    return {
        "url": redact_url(url),
        "error": problem,
        "attempts": attempts,
        "seconds": round(float(seconds), 3),
    }


def _read_batch(
    urls: Sequence[str], storage_options: Mapping[str, Any] | None, policy: RetryPolicy
) -> list[tuple[str, GranuleInfo | None, dict[str, Any] | None, dict[str, Any] | None]]:
    """``(url, info, record, failure)`` of each granule of ``urls``, read one after the other
    (a thread or process-pool task; never raises for one granule)."""
    from itslive_dask.io.remote import read_header_record

    out: list[tuple[str, GranuleInfo | None, dict[str, Any] | None, dict[str, Any] | None]] = []
    for url in urls:
        try:
            info, record = read_header_record(url, storage_options, policy)
        except GranuleError as exc:
            failure = _failure(
                url, exc.problem, getattr(exc, "attempts", 1), getattr(exc, "seconds", 0.0)
            )
            out.append((url, None, None, failure))
        except Exception as exc:  # one bad file must not stop the others
            out.append((url, None, None, _failure(url, f"{type(exc).__name__}: {exc}")))
        else:
            out.append((url, info, record, None))
    return out


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
