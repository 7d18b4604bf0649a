"""The HDF5 reader: the only code of the package that opens granule files with h5py.

* :func:`open_h5` opens a granule (local path directly, remote object fetched in one
  request through :func:`itslive_dask.io.fetch.fetch_granule`).
* :func:`read_info` reads the header of an open file as a picklable
  :class:`~itslive_dask.granule.info.GranuleInfo`; :func:`read_granule_info` reads only the
  header of a local or remote granule (a few small ranged reads for remote files).
* :func:`read_window` decodes a window of some variables, touching only the HDF5 chunks
  that intersect it.
* :class:`H5Reader` bundles them behind the :class:`~itslive_dask.io.reader.GranuleReader`
  protocol the block kernel uses.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from itslive_dask.errors import GranuleError
from itslive_dask.granule.decode import decode, window_bounds
from itslive_dask.granule.header import attr_str, parse_grid, parse_header, variable_spec
from itslive_dask.granule.info import GranuleGrid, GranuleInfo, VariableSpec
from itslive_dask.io.fetch import (
    BYTES_CACHE,
    RetryPolicy,
    check_local_file,
    fetch_granule,
    fetch_granule_cached,
    with_retries,
)
from itslive_dask.io.urls import local_path, source_str, url_to_fs

__all__ = [
    "H5Reader",
    "h5_problem",
    "open_h5",
    "read_granule_info",
    "read_grid",
    "read_info",
    "read_raw",
    "read_window",
    "variable_attrs",
]

_HEADER_BLOCK_SIZE = 64 * 1024  # block size of the cache used for remote header reads


@contextlib.contextmanager
def open_h5(
    source: str | os.PathLike, storage_options: Mapping[str, Any] | None = None
) -> Iterator[h5py.File]:
    """Open a granule as an :class:`h5py.File` (read-only), closing it on exit.

    Local paths (and ``file://`` URLs) are opened directly. Any other fsspec URL
    (``s3://``, ``https://``, ``memory://``...) is fetched as one whole-object request
    (``fs.cat_file``) and opened from memory, so later reads make no further requests.

    Parameters
    ----------
    source
        Local path or fsspec URL.
    storage_options
        Passed to fsspec for remote URLs (e.g. ``{"anon": True}`` or an endpoint).

    Raises
    ------
    GranuleError
        Missing file or object, permission denied, not an HDF5/NetCDF4 file, truncated or
        corrupt file.

    Examples
    --------
    >>> with open_h5("granule.nc") as h5:  # doctest: +SKIP
    ...     info = read_info(h5, "granule.nc")
    ...     win = read_window(h5, info, ["vx", "vy"], slice(0, 256), slice(0, 256))
    """
    src = source_str(source)
    local = local_path(src)
    if local is not None:
        check_local_file(local, src)
        h5 = _h5_file(local, src)
    else:
        data, _ = fetch_granule(src, storage_options, RetryPolicy(retries=0))
        h5 = _h5_file(io.BytesIO(data) if isinstance(data, bytes) else data, src)
    try:
        yield h5
    finally:
        h5.close()


def read_granule_info(
    source: str | os.PathLike,
    storage_options: Mapping[str, Any] | None = None,
    policy: RetryPolicy | None = None,
) -> GranuleInfo:
    """Read only the header of a granule.

    Local files are opened directly. Remote files are read through an fsspec file with a
    small block cache, so only the blocks holding HDF5 metadata and the ``x``/``y`` axes
    are requested, not the whole object.

    Parameters
    ----------
    source
        Local path or fsspec URL.
    storage_options
        Passed to fsspec for remote URLs.
    policy
        Retries of transient errors for remote files (default: none).

    Raises
    ------
    GranuleError
        When the file cannot be read or is not an ITS_LIVE granule.

    Examples
    --------
    >>> info = read_granule_info("LC08_..._G0120V02_P073.nc")  # doctest: +SKIP
    >>> info.epsg, info.shape, info.mid_date  # doctest: +SKIP
    """
    src = source_str(source)
    local = local_path(src)
    if local is not None:
        with open_h5(local) as h5:
            return read_info(h5, src)

    policy = policy or RetryPolicy(retries=0)

    def read() -> GranuleInfo:
        fs, path = url_to_fs(src, storage_options, policy=policy)
        with fs.open(path, "rb", cache_type="blockcache", block_size=_HEADER_BLOCK_SIZE) as raw:
            fobj = _TracedFile(raw)
            try:
                with _h5_file(fobj, src) as h5:
                    return read_info(h5, src)
            except GranuleError:
                if fobj.error is not None:  # the network failed, not the file: retry
                    raise fobj.error from None
                raise

    info, _ = with_retries(src, read, policy)
    return info


# --------------------------------------------------------------------------------------
# header


def read_info(h5: h5py.File, source: str) -> GranuleInfo:
    """Read the header metadata of an open granule.

    Parameters
    ----------
    h5
        An open file (from :func:`open_h5`).
    source
        Its path or URL (recorded in the result and in error messages).

    Returns
    -------
    GranuleInfo

    Raises
    ------
    GranuleError
        Not an ITS_LIVE granule (no ``img_pair_info``/``vx``/``vy``), missing or invalid
        ``x``/``y``, unknown grid mapping, unreadable acquisition dates or satellites.
    """
    src = str(source)
    return _parsed(src, lambda: parse_header(_datasets(h5), set(h5), src))


def read_grid(h5: h5py.File, source: str, variables: Sequence[str]) -> GranuleGrid:
    """Read the light header of an open granule: its grid and the specs of ``variables``.

    Only the datasets needed are opened (``x``, ``y``, ``vx``, ``vy``, ``img_pair_info``, the
    grid mapping and ``variables``), and no date or satellite attribute is parsed: this is
    what block tasks read (see :class:`~itslive_dask.granule.info.GranuleGrid`).

    Raises
    ------
    GranuleError
        As :func:`read_info` for a file that is not an ITS_LIVE granule.
    """
    src = str(source)
    return _parsed(src, lambda: parse_grid(_LazyDatasets(h5), h5, src, variables))


def _parsed(src: str, parse: Any) -> Any:
    """``parse()``, with HDF5's errors on a broken header as one :class:`GranuleError`."""
    try:
        return parse()
    except GranuleError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise GranuleError(
            src, f"cannot read the granule header ({type(exc).__name__}: {exc})"
        ) from None


class _LazyDatasets(Mapping[str, h5py.Dataset]):
    """The root-level datasets of a file, opened only when asked for (groups and dangling
    links are absent)."""

    def __init__(self, h5: h5py.File) -> None:
        self._h5 = h5
        self._open: dict[str, h5py.Dataset | None] = {}

    def __getitem__(self, key: str) -> h5py.Dataset:
        if key not in self._open:
            self._open[key] = _open_dataset(self._h5, key)
        ds = self._open[key]
        if ds is None:
            raise KeyError(key)
        return ds

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._h5 if self.get(k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _open_dataset(h5: h5py.File, key: str) -> h5py.Dataset | None:
    try:
        return h5py.Dataset(h5py.h5d.open(h5.id, key.encode()))
    except (KeyError, ValueError, TypeError, OSError):
        return None  # absent, a group or a dangling link: not one of ours


def _datasets(h5: h5py.File) -> dict[str, h5py.Dataset]:
    """The root-level datasets of the file, by name (groups and links elsewhere skipped)."""
    out: dict[str, h5py.Dataset] = {}
    for key in h5:
        ds = _open_dataset(h5, key)
        if ds is not None:
            out[key] = ds
    return out


def read_window(
    h5: h5py.File,
    info: GranuleInfo | GranuleGrid,
    variables: Sequence[str],
    rows: slice,
    cols: slice,
) -> dict[str, np.ndarray]:
    """Decode a window of some variables as float32, NaN where the file has no data.

    Only the HDF5 chunks that intersect the window are read and decompressed.

    Parameters
    ----------
    h5
        The open file the ``info`` header was read from.
    info
        Its header (:func:`read_info`).
    variables
        Variable names; one the file lacks (e.g. ``v_error`` in V1) gives an all-NaN array.
    rows, cols
        Window in the file's ``(y, x)`` index space (steps other than 1 are refused).

    Returns
    -------
    dict of str to numpy.ndarray
        ``name -> float32 array of shape (rows, cols)``; fill values and ``missing_value``
        become NaN, ``scale_factor``/``add_offset`` are applied, a length-1 ``time``
        dimension is squeezed.

    Raises
    ------
    InvalidInputError
        For a stepped window.
    GranuleError
        When the file's bytes cannot be decoded (truncated or corrupt).
    """
    ny, nx = len(info.y), len(info.x)
    r0, r1 = window_bounds(rows, ny, "rows")
    c0, c1 = window_bounds(cols, nx, "cols")
    shape = (r1 - r0, c1 - c0)
    out: dict[str, np.ndarray] = {}
    for name in variables:
        spec = info.spec(name) if info.specs else _spec_from_file(h5, name, shape=info.shape)
        if spec is None:
            out[name] = np.full(shape, np.nan, dtype=np.float32)
            continue
        raw = read_raw(h5, info.source, spec, r0, r1, c0, c1)
        if raw is None:
            out[name] = np.full(shape, np.nan, dtype=np.float32)
            continue
        out[name] = decode(raw, spec)
    return out


def _spec_from_file(h5: h5py.File, name: str, shape: tuple[int, int]) -> VariableSpec | None:
    obj = h5.get(name)
    if not isinstance(obj, h5py.Dataset) or obj.shape not in (shape, (1, *shape)):
        return None
    return variable_spec(name, obj)


def read_raw(
    h5: h5py.File, src: str, spec: VariableSpec, r0: int, r1: int, c0: int, c1: int
) -> np.ndarray | None:
    """Raw on-disk values of a window, or None when the variable holds no written data."""
    try:
        ds = h5[spec.name]
        if ds.id.get_storage_size() == 0:
            return None  # never written (V1 chip_size_height): the HDF5 fill is not data
        if r1 <= r0 or c1 <= c0:
            return np.empty((r1 - r0, c1 - c0), dtype=ds.dtype)
        if spec.time_axis:
            return ds[0, r0:r1, c0:c1]
        return ds[r0:r1, c0:c1]
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise GranuleError(
            src, f"cannot read {spec.name} (truncated or corrupt file?): {exc}"
        ) from None


_KEEP_ATTRS = ("standard_name", "long_name", "description", "units", "flag_values", "flag_meanings")


def variable_attrs(h5: h5py.File, name: str) -> dict[str, Any]:
    obj = h5.get(name)
    if not isinstance(obj, h5py.Dataset):
        return {}
    out: dict[str, Any] = {}
    for key in _KEEP_ATTRS:
        if key in obj.attrs:
            val = obj.attrs[key]
            out[key] = attr_str(obj.attrs, key) if isinstance(val, bytes | str) else val
    return out


class _TracedFile:
    """A read-only file object that remembers the first error of its reads (h5py turns any
    error of a file object into an OSError that looks like a corrupt file) and fails every
    read after it (h5py tries other offsets: one failure ends the attempt)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            raise self.error
        try:
            return self._raw.read(n)
        except Exception as exc:
            self.error = exc
            raise

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._raw.seek(pos, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _h5_file(target: Any, src: str) -> h5py.File:
    problem = ""
    try:
        if isinstance(target, str):
            return h5py.File(target, "r", locking=False)
        return h5py.File(target, "r")
    except (OSError, ValueError, RuntimeError) as exc:
        problem = h5_problem(exc)
    # raised outside the except block: an exception chained to h5py's error would keep its
    # file-access objects alive until HDF5 shuts down, which crashes the interpreter at exit
    raise GranuleError(src, problem)


def h5_problem(exc: BaseException) -> str:
    """What an error of h5py opening a file means, in a few words."""
    text = str(exc)
    low = text.lower()
    if "truncated" in low or "eof" in low:
        return f"truncated NetCDF4/HDF5 file ({text})"
    if "signature" in low:
        return "not a NetCDF4/HDF5 file"
    if isinstance(exc, PermissionError) or "permission" in low:
        return "permission denied"
    return f"corrupt or unreadable NetCDF4/HDF5 file ({text})"


class H5Reader:
    """A :class:`~itslive_dask.io.reader.GranuleReader` over h5py: the whole object is fetched
    once (remote) or the file opened in place (local), then header and windows are read from it.

    Parameters
    ----------
    url
        Local path or fsspec URL of the granule.
    storage_options
        fsspec options.
    policy
        Retries for transient errors while fetching.
    session
        When given, the bytes go through the per-process byte cache of that build
        (:data:`itslive_dask.io.fetch.BYTES_CACHE`) and are dropped from it if they turn out
        unreadable.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        policy: RetryPolicy | None = None,
        session: str | None = None,
    ) -> None:
        self.url = url
        self._key = None if session is None else (session, url)
        policy = policy or RetryPolicy()
        if session is None:
            data, self.attempts = fetch_granule(url, storage_options, policy)
        else:
            data, self.attempts = fetch_granule_cached(url, storage_options, policy, session)
        self.nbytes = len(data) if isinstance(data, bytes) else 0
        target: Any = io.BytesIO(data) if isinstance(data, bytes) else data
        self._h5 = self._guard(_h5_file, target, url)

    def _guard(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except GranuleError as exc:
            if self._key is not None:
                BYTES_CACHE.discard(self._key)
            exc.attempts = self.attempts
            raise

    def header(self, names: Sequence[str] | None = None) -> GranuleInfo | GranuleGrid:
        """The granule's header: the whole of it (:func:`read_info`), or with ``names`` only
        its grid and those variables' specs (:func:`read_grid`, what block tasks need)."""
        if names is None:
            return self._guard(read_info, self._h5, self.url)
        return self._guard(read_grid, self._h5, self.url, names)

    def record(self) -> None:
        """Nothing worth keeping in a build's state: a local header is read in place."""
        return None

    def window(
        self, info: GranuleInfo | GranuleGrid, names: Sequence[str], rows: slice, cols: slice
    ) -> dict[str, np.ndarray]:
        """Decoded float32 windows of ``names`` (see :func:`read_window`)."""
        return self._guard(read_window, self._h5, info, names, rows, cols)

    def close(self) -> None:
        """Release the file."""
        self._h5.close()

    def __enter__(self) -> H5Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
