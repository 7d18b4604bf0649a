"""Synthetic ITS_LIVE archive generated from a known analytic ground-velocity field.

The embedded default data of itslive_dask: realistic V1/V2 NetCDF granules (file names,
encodings, CRSs, gaps) whose velocities are an analytic field, so every cube built from them
can be checked against :func:`truth_velocity`.

Modules: :mod:`.field` (truth and region presets), :mod:`.specs` (configuration and pure
planning), :mod:`.render` (arrays), :mod:`.netcdf` (V1/V2 encodings), :mod:`.archive`
(archive layout, granule table, STAC catalog).

Examples
--------
>>> from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive, truth_velocity
>>> table = generate_archive("/tmp/its-live", SyntheticConfig(n_granules=20))   # doctest: +SKIP
>>> row = table.iloc[0]                                                          # doctest: +SKIP
>>> vx, vy = truth_velocity(x, y, f"EPSG:{row.epsg}", row.mid_date)              # doctest: +SKIP
"""

from itslive_dask.testing.synthetic.archive import (
    CATALOG_PARQUET,
    STAC_COLLECTION,
    STAC_ITEMS,
    generate_archive,
    generate_granule,
    granule_arrays,
    granule_record,
    read_catalog,
    stac_item,
)
from itslive_dask.testing.synthetic.field import (
    REGIONS,
    Region,
    get_region,
    ground_velocity_en,
    meridian_convergence,
    rotate_en_to_grid,
    time_factor,
    truth_speed,
    truth_velocity,
)
from itslive_dask.testing.synthetic.render import GranuleArrays, render_granule
from itslive_dask.testing.synthetic.specs import (
    GapSpec,
    GranuleSpec,
    SyntheticConfig,
    make_granule_specs,
    tile_folder,
)

__all__ = [
    "CATALOG_PARQUET",
    "REGIONS",
    "STAC_COLLECTION",
    "STAC_ITEMS",
    "GapSpec",
    "GranuleArrays",
    "GranuleSpec",
    "Region",
    "SyntheticConfig",
    "generate_archive",
    "generate_granule",
    "get_region",
    "granule_arrays",
    "granule_record",
    "granule_truth",
    "ground_velocity_en",
    "make_granule_specs",
    "meridian_convergence",
    "read_catalog",
    "render_granule",
    "rotate_en_to_grid",
    "stac_item",
    "tile_folder",
    "time_factor",
    "truth_speed",
    "truth_velocity",
]


def granule_truth(spec: GranuleSpec):
    """Truth ``(vx, vy)`` (float64, m/yr, along the granule's own axes) on ``spec``'s grid at its
    mid_date, computed independently of the rendering canvas (directly by :func:`truth_velocity`)."""
    import numpy as np

    return truth_velocity(
        spec.x[None, :],
        spec.y[:, None],
        spec.epsg,
        np.datetime64(spec.mid_date, "ns"),
        region=spec.region,
    )
