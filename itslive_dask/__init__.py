"""itslive_dask: ITS_LIVE glacier-velocity cubes at any scale.

Search results become a Dask graph that opens each granule lazily through fsspec, reprojects
granules from mixed UTM zones and polar-stereographic grids onto one grid (rotating the velocity
vectors), clips them to a region and writes the time-stacked cube to chunked Zarr.

Public names are imported lazily, so ``import itslive_dask`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors
    "ItsliveDaskError": "errors",
    "InvalidInputError": "errors",
    "GranuleError": "errors",
    "SearchError": "errors",
    "StoreError": "errors",
    "ClusterError": "errors",
    # regions and the granule table
    "parse_region": "geometry",
    "box_to_geojson": "geometry",
    "polygon_to_geojson": "geometry",
    "granule_table": "table",
    # format layer
    "parse_granule_name": "names",
    "open_granule": "granule",
    "read_granule_info": "granule",
    "GranuleInfo": "granule",
    # search, filter, download, catalogs, local servers
    "search": "search",
    "LegacyAPI": "search",
    "filter_granules": "filters",
    "download_granules": "download",
    "build_catalog": "catalog",
    "load_catalog": "catalog",
    "save_catalog": "catalog",
    "LocalSearchServer": "server",
    "LocalS3": "local_s3",
    # engine
    "TargetGrid": "grid",
    "CubePlan": "plan",
    "plan_cube": "plan",
    "make_plan": "engine",
    "open_cube": "engine",
    # zarr
    "write_cube": "zarr_store",
    "build_cube": "zarr_store",
    "read_ledger": "zarr_store",
    "rechunk_cube": "rechunk",
    "dask_client": "cluster",
    # analysis and plots
    "yearly_mean": "analysis",
    "monthly_mean": "analysis",
    "point_timeseries": "analysis",
    "layer_counts": "analysis",
    "describe_cube": "analysis",
    "plot_granule_counts": "plots",
    "plot_yearly_mean": "plots",
    "plot_point_timeseries": "plots",
    "plot_speed_histogram": "plots",
    "run_demo": "demo",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

# ``search`` is both a submodule and its main function: bind the function now, or the first
# ``import itslive_dask.search`` (by any module) would leave the module object in its place.
from .search import search as search  # noqa: E402


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'itslive_dask' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
