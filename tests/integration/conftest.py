"""Fixtures for integration tests: a real distributed LocalCluster of processes."""

import pytest


@pytest.fixture(scope="session")
def dask_client():
    """A LocalCluster with 2 single-threaded worker processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0", memory_limit="3GiB",
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
