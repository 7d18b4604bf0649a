"""Fixtures of the server tests: the synthetic catalog as a table (no bytes written) and a
search server over it on 127.0.0.1."""

from __future__ import annotations

import pytest


def synthetic_catalog():
    """The granule table of the session's synthetic archive (tests/conftest.py's config),
    built from the granule specs alone: same ids, dates, footprints and metadata."""
    import geopandas as gpd

    from itslive_dask.table import validate_granule_table
    from itslive_dask.testing.synthetic import (
        SyntheticConfig,
        granule_record,
        make_granule_specs,
    )

    config = SyntheticConfig(
        region="svalbard", n_granules=80, seed=1, noise_std=0.0, v1_fraction=0.15
    )
    rows = [
        granule_record(s, f"s3://its-live-data/synthetic/{s.granule_id}.nc")
        for s in make_granule_specs(config)
    ]
    return validate_granule_table(gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"))


@pytest.fixture(scope="session")
def catalog_table():
    return synthetic_catalog()


@pytest.fixture(scope="module")
def stac_server(catalog_table):
    from itslive_dask.server import LocalSearchServer

    with LocalSearchServer(catalog_table) as srv:
        yield srv
