"""Fetching granule bytes: one retry policy, one wording of what went wrong.

Every read of a granule object (block tasks, header reads, downloads) runs through
:func:`with_retries`, which separates permanent problems (missing object, permission denied,
empty or corrupt file: reported at once) from transient ones (network and server errors:
retried with exponential back-off within a budget of attempts and seconds), and raises one
:class:`~itslive_dask.errors.GranuleError` whose ``problem`` says what happened and whose
``attempts`` says how often it was tried.
"""

from __future__ import annotations

import logging
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
    "RetryPolicy",
    "check_local_file",
    "describe_error",
    "fetch_granule",
    "fetch_granule_cached",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a granule is declared unreadable.

    Attributes
    ----------
    retries
        Extra attempts after the first one for transient errors.
    backoff
        First back-off delay in seconds, doubled at each attempt.
    """

    retries: int = 3
    backoff: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidInputError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not (self.backoff >= 0):
            raise InvalidInputError(f"backoff must be >= 0 seconds, got {self.backoff!r}")


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
            status is None and isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError)
        )
        if transient:
            return redact_text(f"cannot reach the object ({cause})"), False
        return "object not found", True
    if isinstance(exc, PermissionError):
        return "access denied (check credentials / requester-pays settings)", True
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a granule file", True
    return redact_text(f"{type(exc).__name__}: {exc}"), False


def with_retries(url: str, action: Callable[[], T], policy: RetryPolicy) -> tuple[T, int]:
    """Run ``action`` (which reads ``url``), retrying transient errors as ``policy`` says.

    Returns
    -------
    (result, attempts)

    Raises
    ------
    GranuleError
        With ``attempts`` set, for a permanent problem or when the retries are spent.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return action(), attempt
        except Exception as err:
            problem, permanent = describe_error(err)
            if permanent or attempt > policy.retries:
                if not permanent:
                    problem = f"read failed after {attempt} attempts: {problem}"
                exc = GranuleError(redact_url(url), problem)
                exc.attempts = attempt
                raise exc from None
            delay = policy.backoff * 2 ** (attempt - 1)
            log.info("retrying %s in %.1fs after %s", redact_url(url), delay, type(err).__name__)
            time.sleep(delay)


def check_local_file(path: str, src: str) -> None:
    """Raise :class:`GranuleError` unless ``path`` is a readable local file."""
    if not os.path.exists(path):
        raise GranuleError(src, "file not found")
    if os.path.isdir(path):
        raise GranuleError(src, "is a directory, not a granule file")
    if not os.access(path, os.R_OK):
        raise GranuleError(src, "permission denied")


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

    def read() -> bytes:
        fs, key = url_to_fs(url, storage_options)
        data = fs.cat_file(key)
        if not data:
            raise GranuleError(redact_url(url), "object is empty")
        log.debug("fetched %s (%d bytes)", redact_url(url), len(data))
        return bytes(data)

    return with_retries(url, read, policy or RetryPolicy())


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
