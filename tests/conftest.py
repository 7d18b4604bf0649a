"""Shared pytest fixtures: the local S3 server, the synthetic archive, a LocalCluster, hypothesis profiles.

* ``local_s3`` (session): a started :class:`itslive_dask.testing.local_s3.LocalS3` on 127.0.0.1.
* ``synthetic_archive`` (session): :data:`SYNTHETIC_TEST_CONFIG` generated once into bucket
  ``its-live-data`` on ``local_s3``; a :class:`SyntheticArchive` with ``table``, ``url``,
  ``storage_options``, ``config``, ``region`` (lon/lat polygon) and ``specs``.

Hypothesis profiles: ``default`` and ``ci`` (fewer examples, no deadline), ``ci`` is loaded
when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=50, deadline=2000)
settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

#: Bucket of the session's synthetic archive (public-read, like the real one).
SYNTHETIC_TEST_BUCKET = "its-live-data"


def _test_config() -> Any:
    """The archive behind ``synthetic_archive``: 80 Svalbard granules, no noise, in EPSG:32633,
    32634, 32635 and 3413, about 10% of them V1, 4 outside the region (mix checked when built)."""
    from itslive_dask.testing.synthetic import SyntheticConfig

    return SyntheticConfig(
        region="svalbard", n_granules=80, seed=1, noise_std=0.0, v1_fraction=0.15
    )


@dataclass(frozen=True)
class SyntheticArchive:
    """A synthetic archive on the local S3 server."""

    table: Any  # geopandas.GeoDataFrame, the granule table returned by generate_archive
    url: str  # s3://its-live-data
    storage_options: dict
    config: Any  # itslive_dask.testing.synthetic.SyntheticConfig
    region: Any  # shapely lon/lat polygon of the region preset
    specs: tuple  # the GranuleSpec of every granule, in generation order


@pytest.fixture(scope="session")
def local_s3():
    """A moto S3 server on 127.0.0.1 (random free port) for the whole session."""
    from itslive_dask.testing.local_s3 import LocalS3

    server = LocalS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def synthetic_archive(local_s3) -> SyntheticArchive:
    """The default small synthetic archive, generated once into ``s3://its-live-data``."""
    from itslive_dask.testing.synthetic import generate_archive, make_granule_specs

    config = _test_config()
    url = local_s3.create_bucket(SYNTHETIC_TEST_BUCKET, public=True)
    table = generate_archive(url, config, storage_options=local_s3.storage_options)
    epsgs = set(table["epsg"])
    assert 3413 in epsgs and len({e for e in epsgs if 32600 < e < 32700}) >= 2, epsgs
    assert set(table["version"]) == {1, 2}
    return SyntheticArchive(
        table=table,
        url=url,
        storage_options=dict(local_s3.storage_options),
        config=config,
        region=config.region_obj.polygon,
        specs=tuple(make_granule_specs(config)),
    )


@pytest.fixture(scope="session")
def dask_client():
    """A LocalCluster with 2 single-threaded worker processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        memory_limit="3GiB",
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
