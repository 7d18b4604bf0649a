"""Small whole files (catalogs, manifests, build markers): read them, write them atomically.

A local write goes to a temporary file beside the target and is renamed over it, so a reader
never sees half a file; on object stores a PUT is atomic already.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from itslive_dask.io.urls import is_remote, url_to_fs

__all__ = ["TMP_MARK", "open_binary", "put_atomic"]

#: Part of the name of the temporary files :func:`put_atomic` writes locally.
TMP_MARK = ".tmp-"


@contextmanager
def open_binary(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """Open a local or remote file for binary reading (fsspec options by protocol)."""
    fs, path = url_to_fs(url, storage_options)
    with fs.open(path, "rb") as f:
        yield f


def put_atomic(
    url: str,
    data: bytes,
    storage_options: Mapping[str, Any] | None = None,
    *,
    durable: bool = False,
) -> None:
    """Write ``data`` to ``url`` so that readers see the old or the new file, never a part.

    Local parent folders are created. The temporary name carries the process and thread, so
    concurrent writers (threads of one Dask worker) never share one. ``durable=True`` also
    flushes a local file to disk before it replaces the old one.
    """
    fs, path = url_to_fs(url, storage_options)
    if is_remote(url):
        fs.pipe_file(path, data)
        return
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}{TMP_MARK}{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
