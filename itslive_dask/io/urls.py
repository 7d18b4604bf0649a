"""What kind of location a string names, and how to show it safely.

Every local-versus-remote decision of the package goes through :func:`is_remote` /
:func:`local_path`, and every URL shown to a user (logs, errors, manifests, ledgers) through
:func:`redact_url`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec

from itslive_dask.errors import InvalidInputError

__all__ = [
    "PROTOCOLS",
    "granule_options",
    "is_remote",
    "local_path",
    "options_for",
    "redact_text",
    "redact_url",
    "source_str",
    "storage_kwargs",
    "url_to_fs",
]

#: Protocol names that may key a per-protocol ``storage_options`` dict.
PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "http", "https", "file", "memory")

_URL_WITH_QUERY = re.compile(r"([a-z][a-z0-9+.-]*://[^\s'\"?#]+)[?#][^\s'\"]*", re.IGNORECASE)
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s'\"@]+@", re.IGNORECASE)


def source_str(source: str | os.PathLike) -> str:
    """``source`` as a string; refuses anything that is not a path or a URL."""
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if isinstance(source, str):
        return source
    raise InvalidInputError(f"expected a path or URL, got {type(source).__name__}")


def is_remote(location: str | os.PathLike) -> bool:
    """True for an fsspec URL other than ``file://`` (``s3://``, ``https://``, ``memory://``...)."""
    text = os.fspath(location) if isinstance(location, os.PathLike) else str(location)
    return "://" in text and not text.startswith("file://")


def local_path(location: str | os.PathLike) -> str | None:
    """The local file-system path of ``location``, or None when it is remote."""
    text = source_str(location)
    if text.startswith("file://"):
        return text[len("file://") :]
    return None if "://" in text else text


def storage_kwargs(location: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"storage_options": ...}`` for a remote location, ``{}`` for a local one (xarray and
    zarr refuse storage options with a plain path)."""
    return {"storage_options": dict(storage_options or {})} if is_remote(location) else {}


def options_for(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fsspec options that apply to ``url``.

    A flat dict applies to every remote protocol except plain HTTP(S) and local files; a dict
    keyed by protocol names (``{"s3": {...}, "https": {...}}``) is split by protocol.
    """
    if not storage_options:
        return {}
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if all(k in PROTOCOLS and isinstance(v, Mapping) for k, v in storage_options.items()):
        return dict(storage_options.get(protocol, {}))
    if protocol in ("file", "http", "https"):
        return {}
    return dict(storage_options)


def granule_options(
    url: str, storage_options: Mapping[str, Any] | None, policy: Any
) -> dict[str, Any]:
    """The fsspec options to read granule ``url`` under ``policy``, keyed by its protocol.

    The package's :class:`~itslive_dask.io.fetch.RetryPolicy` is the only retry layer of
    granule reads: for ``s3://`` botocore makes one attempt per request
    (``config_kwargs={"retries": {"total_max_attempts": 1}}``) with the policy's connect and read
    timeouts, and for ``http(s)://`` aiohttp gets the same timeouts; a value the user set in
    ``storage_options`` wins. (s3fs's own retry loop is switched off by :func:`url_to_fs`.)
    """
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    opts = options_for(url, storage_options)
    if protocol in ("s3", "s3a"):
        ck = dict(opts.get("config_kwargs") or {})
        ck.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        ck.setdefault("connect_timeout", policy.connect_timeout)
        ck.setdefault("read_timeout", policy.read_timeout)
        opts["config_kwargs"] = ck
    elif protocol in ("http", "https"):
        import aiohttp

        ck = dict(opts.get("client_kwargs") or {})
        ck.setdefault(
            "timeout",
            aiohttp.ClientTimeout(
                total=None, sock_connect=policy.connect_timeout, sock_read=policy.read_timeout
            ),
        )
        opts["client_kwargs"] = ck
    return {protocol: opts}


def url_to_fs(
    url: str, storage_options: Mapping[str, Any] | None = None, *, policy: Any = None
) -> tuple[Any, str]:
    """fsspec file system and path of ``url`` (options chosen by :func:`options_for`).

    Parameters
    ----------
    url
        Path or fsspec URL.
    storage_options
        fsspec options (flat, or keyed by protocol).
    policy
        For granule reads: a :class:`~itslive_dask.io.fetch.RetryPolicy`; the file system
        then makes one attempt per request with the policy's timeouts (see
        :func:`granule_options`), so the package's retry budget is not multiplied.

    Raises
    ------
    InvalidInputError
        For a URL fsspec cannot handle (unknown protocol, bad options).
    """
    options = storage_options if policy is None else granule_options(url, storage_options, policy)
    try:
        fs, path = fsspec.core.url_to_fs(url, **options_for(url, options))
    except (ValueError, ImportError, TypeError) as exc:
        raise InvalidInputError(f"cannot open this URL: {redact_url(url)!r} ({exc})") from None
    if policy is not None and type(fs).__name__ == "S3FileSystem":
        fs.retries = 1  # s3fs's own retry loop (a class attribute, not an option)
    return fs, path


def redact_url(url: str) -> str:
    """``url`` without credentials: no query string or fragment (presigned URLs carry keys)
    and no ``user:password@`` part."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted as by :func:`redact_url`."""
    return _USERINFO.sub(r"\1", _URL_WITH_QUERY.sub(r"\1", text))
