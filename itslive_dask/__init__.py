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
    "parse_region": "geo.region",
    "box_to_geojson": "geo.region",
    "polygon_to_geojson": "geo.region",
    "granule_table": "table",
    # format layer
    "parse_granule_name": "granule.names",
    "open_granule": "io.dataset",
    "read_granule_info": "io.hdf5",
    "GranuleInfo": "granule.info",
    # search, filter, download, catalogs, local servers
    "search": "discovery.api",
    "LegacyAPI": "discovery.api",
    "filter_granules": "discovery.filters",
    "download_granules": "io.download",
    "build_catalog": "discovery.catalog",
    "load_catalog": "discovery.catalog",
    "save_catalog": "discovery.catalog",
    "LocalSearchServer": "server",
    "LocalS3": "testing.local_s3",
    # engine
    "CubeSpec": "spec",
    "TargetGrid": "geo.grid",
    "CubePlan": "cube.plan",
    "plan_cube": "cube.plan",
    "make_plan": "cube.lazy",
    "open_cube": "cube.lazy",
    # zarr
    "write_cube": "store.write",
    "build_cube": "pipeline",
    "read_ledger": "store.state",
    "rechunk_cube": "store.rechunk",
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


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'itslive_dask' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
