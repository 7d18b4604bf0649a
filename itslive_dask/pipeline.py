"""The whole workflow in one place: search -> filter -> build, shared by the CLI and the demo.

* :func:`select_granules` runs a search query against a catalog and applies the filters.
* :func:`write_with_progress` runs :func:`~itslive_dask.write_cube` behind a progress display
  with Ctrl-C kept away from the worker processes.
* :func:`build_cube` does all of it in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itslive_dask.cluster import sigint_shield
from itslive_dask.errors import InvalidInputError
from itslive_dask.store.write import WriteResult, write_cube
from itslive_dask.types import BBox, Region, StorageOptions

__all__ = ["Selection", "build_cube", "select_granules", "write_with_progress"]


@dataclass
class Selection:
    """What a search and its filters selected.

    Attributes
    ----------
    found
        Every granule the search returned (a granule table).
    selected
        The granules kept by the filters.
    filters
        The filters applied (keyword arguments of :func:`itslive_dask.filter_granules`).
    """

    found: Any
    selected: Any
    filters: dict[str, Any] = field(default_factory=dict)


def select_granules(
    query: Any,
    *,
    catalog: Any = None,
    storage_options: StorageOptions | None = None,
    filters: Mapping[str, Any] | None = None,
    progress: Callable[[int, int | None], Any] | None = None,
) -> Selection:
    """Search with ``query`` and apply ``filters``.

    Parameters
    ----------
    query
        A :class:`~itslive_dask.discovery.query.SearchQuery` (from
        :func:`itslive_dask.discovery.api.make_query`), or a granule table already found
        (then only the filters run).
    catalog
        Where to search (see :func:`itslive_dask.search`; default: the public STAC API).
    storage_options
        fsspec options for catalog files.
    filters
        Keyword arguments of :func:`itslive_dask.filter_granules` (``max_files_per_year``,
        ``months``...); none or empty: keep everything.
    progress
        Progress of the search (see :func:`itslive_dask.search`).
    """
    from itslive_dask.discovery.api import DEFAULT_STAC_URL, run_query
    from itslive_dask.discovery.filters import filter_granules
    from itslive_dask.discovery.query import SearchQuery

    if isinstance(query, SearchQuery):
        found = run_query(
            query, catalog=catalog or DEFAULT_STAC_URL,
            storage_options=dict(storage_options) if storage_options else None,
            progress=progress,
        )  # fmt: skip
    else:
        found = query
    filters = {k: v for k, v in (filters or {}).items() if v is not None}
    selected = filter_granules(found, **filters) if filters else found
    return Selection(found=found, selected=selected, filters=dict(filters))


def write_with_progress(ui: Any, source: Any, store: Any, **write_kwargs: Any) -> WriteResult:
    """:func:`~itslive_dask.write_cube` with a progress display and a clean Ctrl-C.

    ``ui`` provides ``progress(description)`` (a context manager yielding
    ``update(done, total)``) and ``note(text)``, like :class:`itslive_dask.cli.console.UI`.
    Worker processes ignore Ctrl-C while they start; afterwards only this process is
    interrupted and it closes the cluster on its way out.
    """
    with ui.progress("cube blocks") as update, sigint_shield() as release:

        def announce(message: str) -> None:
            release()  # the workers are up: Ctrl-C reaches this process again
            ui.note(message)

        return write_cube(source, store, progress=update, announce=announce, **write_kwargs)


def build_cube(
    store: str,
    geometry: Region | None = None,
    *,
    bbox: BBox | None = None,
    start: Any = None,
    end: Any = None,
    min_separation: float | None = None,
    max_separation: float | None = None,
    percent_valid_pixels: float | None = None,
    sensors: Sequence[str] | None = None,
    catalog: str | None = None,
    filters: dict[str, Any] | None = None,
    **write_kwargs: Any,
) -> WriteResult:
    """Search, filter and write a cube in one call.

    Parameters
    ----------
    store
        Output Zarr store (path or URL).
    geometry, bbox, start, end, min_separation, max_separation, percent_valid_pixels, sensors, catalog
        The search, as in :func:`itslive_dask.search` (``catalog`` defaults to the public
        STAC API).
    filters
        Keyword arguments of :func:`itslive_dask.filter_granules` (e.g.
        ``{"max_files_per_year": 24, "months": ["nov", "dec"]}``).
    **write_kwargs
        Passed to :func:`itslive_dask.write_cube` (``mode``, ``client``, ``spec``,
        ``chunks``, ``crs``...).

    Raises
    ------
    InvalidInputError
        When the search and filters leave no granule.
    """
    from itslive_dask.discovery.api import make_query

    query = make_query(
        geometry, bbox=bbox, start=start, end=end, min_separation=min_separation,
        max_separation=max_separation, percent_valid_pixels=percent_valid_pixels, sensors=sensors,
    )  # fmt: skip
    picked = select_granules(
        query, catalog=catalog, storage_options=write_kwargs.get("storage_options"), filters=filters
    )
    if len(picked.selected) == 0:
        raise InvalidInputError("the search found no granules; widen the region, dates or filters")
    return write_cube(picked.selected, store, geometry, bbox=bbox, **write_kwargs)
