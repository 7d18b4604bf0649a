"""Fetching granule bytes: one retry policy, one wording of what went wrong.

Every read of a granule object (block tasks, header reads, downloads) runs through
:func:`with_retries`, which separates permanent problems (missing object, permission denied,
empty or corrupt file: reported at once) from transient ones (network and server errors:
retried with exponential back-off within a budget of attempts and seconds), and raises one
:class:`~itslive_dask.errors.GranuleError` whose ``problem`` says what happened and whose
``attempts`` says how often it was tried.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from itslive_dask.cache import LRU
from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.io.urls import local_path, redact_text, redact_url, url_to_fs

__all__ = [
    "BYTES_CACHE",
    "DEFAULT_RETRY_BUDGET",
    "RetryPolicy",
    "check_local_file",
    "describe_error",
    "fetch_granule",
    "fetch_granule_cached",
    "release_frames",
    "retry_policy",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a granule is declared unreadable: one budget per granule.

    The package is the only layer that retries granule reads: the file systems it opens for
    granules make one attempt per request (s3fs and botocore retries off, see
    :func:`itslive_dask.io.urls.granule_options`) with the timeouts below, so a granule that
    keeps failing costs at most about ``budget`` seconds (plus one attempt's timeouts when
    the last attempt stalls), whatever the layers below would have done.

    Attributes
    ----------
    retries
        Extra attempts after the first one for transient errors.
    backoff
        First back-off delay in seconds, doubled at each attempt.
    budget
        Total seconds one granule may spend in failed attempts and back-off: no new attempt
        starts when the time spent, the next delay and the longest attempt so far would pass
        it.
    connect_timeout, read_timeout
        Seconds to open a connection, and to wait for the next bytes of an answer (a stalled
        connection fails after this long).
    """

    retries: int = 3
    backoff: float = 0.2
    budget: float = 8.0
    connect_timeout: float = 3.0
    read_timeout: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidInputError(f"retries must be an integer >= 0, got {self.retries!r}")
        for name in ("backoff", "budget"):
            if not (getattr(self, name) >= 0):
                raise InvalidInputError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        for name in ("connect_timeout", "read_timeout"):
            if not (getattr(self, name) > 0):
                raise InvalidInputError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}")


#: Seconds one granule may spend on failed attempts and back-off, by default.
DEFAULT_RETRY_BUDGET = RetryPolicy.budget


def retry_policy(retries: int = 3, retry_budget: float = DEFAULT_RETRY_BUDGET) -> RetryPolicy:
    """The :class:`RetryPolicy` of the user-facing ``retries`` and ``retry_budget``.

    Parameters
    ----------
    retries
        Extra attempts after the first one for transient errors (an integer >= 0).
    retry_budget
        Seconds one granule may spend on failed attempts and back-off, for its header and
        its windows together (a finite number > 0).

    Raises
    ------
    InvalidInputError
        For a negative or non-integer ``retries``, or a ``retry_budget`` that is not a
        finite number of seconds above zero.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInputError(f"retries must be an integer >= 0, got {retries!r}")
    if (
        isinstance(retry_budget, bool)
        or not isinstance(retry_budget, int | float)
        or not math.isfinite(retry_budget)
        or retry_budget <= 0
    ):
        raise InvalidInputError(
            f"retry_budget must be a number of seconds > 0 (per granule), got {retry_budget!r}"
        )
    return RetryPolicy(retries=retries, budget=float(retry_budget))


def describe_error(exc: BaseException) -> tuple[str, bool]:
    """What ``exc`` (raised while reading an object) means, and whether it is permanent.

    Returns
    -------
    (problem, permanent)
        ``problem`` is one short sentence for a ledger or an error message (URLs in it are
        redacted); ``permanent`` is True when retrying cannot help.
    """
    if isinstance(exc, GranuleError):
        return exc.problem, True
    if isinstance(exc, InvalidInputError):
        return str(exc), True
    if isinstance(exc, FileNotFoundError):
        # fsspec's HTTP backend reports an unreachable host or a server error as
        # FileNotFoundError raised from the real cause: only those are worth retrying
        cause = exc.__cause__
        status = getattr(cause, "status", None)
        if status in (401, 403):
            return f"permission denied (HTTP {status})", True
        transient = (isinstance(status, int) and status >= 500) or (
            status is None
            and isinstance(cause, OSError)
            and not isinstance(cause, FileNotFoundError)
        )
        if transient:
            return redact_text(f"cannot reach the object ({cause})"), False
        return "object not found", True
    if isinstance(exc, PermissionError):
        return "access denied (check credentials / requester-pays settings)", True
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a granule file", True
    return redact_text(f"{type(exc).__name__}: {exc}"), False


def with_retries(
    url: str, action: Callable[[], T], policy: RetryPolicy, *, spent: float = 0.0
) -> tuple[T, int]:
    """Run ``action`` (which reads ``url``), retrying transient errors as ``policy`` says.

    Parameters
    ----------
    url
        What is read (for messages; redacted).
    action
        One attempt.
    policy
        Attempts, back-off and the time budget.
    spent
        Seconds of the granule's budget already used by earlier calls (a reader that reads
        a header, then windows, shares one budget).

    Returns
    -------
    (result, attempts)

    Raises
    ------
    GranuleError
        With ``attempts`` and ``seconds`` (time spent in this call) set, for a permanent
        problem or when the attempts or the time budget are spent.
    """
    attempt = 0
    start = time.monotonic()
    longest = 0.0
    while True:
        attempt += 1
        t0 = time.monotonic()
        try:
            return action(), attempt
        except Exception as err:
            now = time.monotonic()
            longest = max(longest, now - t0)
            elapsed = now - start
            problem, permanent = describe_error(err)
            release_frames(err)
            delay = policy.backoff * 2 ** (attempt - 1)
            over = spent + elapsed + delay + longest > policy.budget
            if permanent or attempt > policy.retries or over:
                if not permanent:
                    problem = f"read failed after {attempt} attempts in {spent + elapsed:.1f} s: {problem}"
                # a permanent GranuleError keeps its kind (e.g. ranged.UnsupportedLayout)
                kind = type(err) if permanent and isinstance(err, GranuleError) else GranuleError
                exc = kind(redact_url(url), problem, attempt, elapsed)
                raise exc from None
            log.info("retrying %s in %.1fs after %s", redact_url(url), delay, type(err).__name__)
            time.sleep(delay)


def release_frames(exc: BaseException) -> None:
    """Drop the local variables of the finished frames in ``exc``'s traceback and chain.

    A failed read leaves reference cycles (an exception, the frames it unwound, a file object
    holding that exception) around the h5py objects of the attempt. Left to Python's cyclic
    garbage collector, they are freed in whatever thread the collector next runs in; when that
    is fsspec's IO thread while another thread is inside h5py waiting for that thread's I/O,
    freeing an h5py object waits for h5py's global lock: the process deadlocks (h5py#2019,
    dask#7547: a hung worker or a hung plan-time header read). Collected at interpreter exit,
    after HDF5 has shut down, they crash the process. Clearing the frames breaks the cycles,
    so the attempt's h5py objects are freed at once, in the thread that read them; the
    exceptions lose their tracebacks (they are not shown: the caller raises a
    :class:`~itslive_dask.errors.GranuleError` of its own). Frames still running (the
    caller's) and frames of generators and coroutines are not cleared (clearing a suspended
    one would close it: an event loop's task may be one).
    """
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not frame.f_code.co_flags & _SUSPENDABLE:
                with contextlib.suppress(RuntimeError):  # a frame still running
                    frame.clear()
            tb = tb.tb_next
        # a reader may keep the exception it raised (a traced file's ``error``), and h5py keeps
        # that file: without its traceback the exception reaches no frame of the attempt
        err.__traceback__ = None
        todo.extend(e for e in (err.__cause__, err.__context__) if e is not None)


#: Code flags of generators and coroutines (``inspect.CO_GENERATOR`` and the like).
_SUSPENDABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ITERABLE_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
)


def check_local_file(path: str, src: str) -> None:
    """Raise :class:`GranuleError` unless ``path`` is a readable, non-empty local file."""
    if not os.path.exists(path):
        raise GranuleError(src, "file not found")
    if os.path.isdir(path):
        raise GranuleError(src, "is a directory, not a granule file")
    if not os.access(path, os.R_OK):
        raise GranuleError(src, "permission denied")
    if os.path.getsize(path) == 0:
        raise GranuleError(src, "empty file (0 bytes): not a NetCDF4/HDF5 file")


def fetch_granule(
    url: str, storage_options: Mapping[str, Any] | None = None, policy: RetryPolicy | None = None
) -> tuple[bytes | str, int]:
    """The bytes of a granule in one request, or its path when it is a local file.

    Parameters
    ----------
    url
        Local path, ``file://`` URL or any fsspec URL.
    storage_options
        fsspec options (see :func:`itslive_dask.io.urls.options_for`).
    policy
        Retries for transient errors (default :class:`RetryPolicy`).

    Returns
    -------
    (bytes or path, attempts)

    Raises
    ------
    GranuleError
        Missing, forbidden or empty object, or transient errors beyond the policy.
    """
    path = local_path(url)
    if path is not None:
        check_local_file(path, url)
        return path, 1

    policy = policy or RetryPolicy()

    def read() -> bytes:
        fs, key = url_to_fs(url, storage_options, policy=policy)
        data = fs.cat_file(key)
        if not data:
            raise GranuleError(redact_url(url), "object is empty")
        log.debug("fetched %s (%d bytes)", redact_url(url), len(data))
        return bytes(data)

    return with_retries(url, read, policy)


#: (session, url) -> (bytes or path, attempts): a granule spanning several tiles of one time
#: block is usually fetched once per worker process (ITS_LIVE granules are a few MB). The
#: session scopes entries to one build, so a repaired object is never served stale.
BYTES_CACHE: LRU[tuple[bytes | str, int]] = LRU(maxsize=256, maxbytes=128 * 2**20)


def fetch_granule_cached(
    url: str,
    storage_options: Mapping[str, Any] | None,
    policy: RetryPolicy,
    session: str,
) -> tuple[bytes | str, int]:
    """:func:`fetch_granule` through the per-process :data:`BYTES_CACHE` of build ``session``."""
    return BYTES_CACHE.get((session, url), lambda: fetch_granule(url, storage_options, policy))
