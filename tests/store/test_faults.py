"""Builds through the fault-injecting S3 proxy: nothing is lost (issues 10 and 15).

Every test compares with a fault-free build of the same granules and checks the promise:
each requested granule is a layer identical to the fault-free one, or it is named in the
ledger (header failures with ``block: None``, read failures with their block); no layer is
silently empty: every all-NaN layer is either all-NaN in the fault-free build too (outside
the footprint) or flagged in ``granule_status`` and the ledger.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from bucket_copies import copy_to_bucket

from itslive_dask import read_ledger, write_cube
from itslive_dask.io.fetch import RetryPolicy
from itslive_dask.testing.s3proxy import FaultRule, S3Proxy

VARS = ("vx", "vy", "v", "v_error")
CHUNKS = (8, 96, 96)
BUCKET = "faults-in"
KINDS = ("500", "503", "reset", "truncate")


@pytest.fixture(scope="module")
def inputs(synthetic_archive, local_s3):
    """16 granules copied to their own bucket (the shared archive stays fault-free)."""
    return copy_to_bucket(local_s3, synthetic_archive.table.iloc[:16], BUCKET)


@pytest.fixture(scope="module")
def clean(inputs, synthetic_archive, local_s3, dask_client, tmp_path_factory):
    """The fault-free build (through the proxy without faults)."""
    store = tmp_path_factory.mktemp("clean") / "clean.zarr"
    with S3Proxy(local_s3) as proxy:
        res = write_cube(
            inputs,
            str(store),
            synthetic_archive.region,
            storage_options=proxy.storage_options,
            chunks=CHUNKS,
            client=dask_client,
        )
    assert res.failed == []
    return xr.open_zarr(store).load()


def check_nothing_lost(store, clean, requested, store_options=None):
    """The promise, checked against the fault-free build; returns the ledger's failed ids."""
    z = (
        xr.open_zarr(store, storage_options=store_options).load()
        if store_options
        else xr.open_zarr(store).load()
    )
    ledger = read_ledger(str(store), store_options)
    failed = {f["granule_id"] for f in ledger["failed"]}
    for f in ledger["failed"]:
        assert f["error"] and f["attempts"] >= 1, f
    in_cube = set(z.granule_id.values)
    # every requested granule is in the cube or in the ledger
    assert set(requested) <= in_cube | failed
    ref = clean
    ref_pos = {g: k for k, g in enumerate(ref.granule_id.values)}
    status = dict(zip(z.granule_id.values, z.granule_status.values, strict=True))
    for k, gid in enumerate(z.granule_id.values):
        r = ref_pos[gid]
        if gid in failed:
            assert status[gid] == 1, gid
            continue
        assert status[gid] == 0, gid
        for v in VARS:  # a layer not in the ledger is exactly the fault-free layer
            assert z[v].values[k].tobytes() == ref[v].values[r].tobytes(), (gid, v)
    # no silently empty layer
    for k, gid in enumerate(z.granule_id.values):
        if not np.isfinite(z.v.values[k]).any():
            assert gid in failed or not np.isfinite(ref.v.values[ref_pos[gid]]).any(), gid
    return failed


@pytest.mark.parametrize("rate", [0.05, pytest.param(0.2, marks=pytest.mark.reliability)])
def test_input_faults_lose_nothing(
    tmp_path, inputs, clean, synthetic_archive, local_s3, dask_client, rate
):
    """Issue 10: 5% and 20% of input requests fail (500, 503, reset, truncated body)."""
    store = tmp_path / "c.zarr"
    with S3Proxy(local_s3, faults=FaultRule(rate, kinds=KINDS, direction="read"), seed=11) as proxy:
        res = write_cube(
            inputs,
            str(store),
            synthetic_archive.region,
            storage_options=proxy.storage_options,
            chunks=CHUNKS,
            client=dask_client,
        )
        n_faults = sum(proxy.stats.faults().values())
    assert n_faults > 0
    failed = check_nothing_lost(store, clean, inputs.granule_id)
    assert {f["granule_id"] for f in res.failed} == failed
    print(f"\nrate {rate}: {n_faults} faults injected, {len(failed)} granules in the ledger")


@pytest.mark.reliability
def test_planning_from_urls_at_a_high_fault_rate_completes(
    tmp_path, inputs, clean, synthetic_archive, local_s3, dask_client
):
    """Issue 15, defect 2: headers read on the client (a list of URLs) at 50% faults.
    Header reads are retried within the budget; one that still fails is a ledger entry
    (``block: None``), not an abort; the build goes on with the others."""
    store = tmp_path / "urls.zarr"
    urls = list(inputs.url)
    # no truncated HEADs: a HEAD cut after its headers reports a wrong object size, and two
    # in a row still get a (permanent) "not a NetCDF4/HDF5 file" verdict (docs/reliability.md,
    # known gaps): this test is about transient faults
    rule = [
        FaultRule(
            0.5, kinds=("500", "503", "reset"), methods=("HEAD",), key_pattern=f"{BUCKET}/*.nc"
        ),
        FaultRule(0.5, kinds=KINDS, methods=("GET",), key_pattern=f"{BUCKET}/*.nc"),
    ]
    with S3Proxy(local_s3, faults=rule, seed=5) as proxy:
        res = write_cube(
            urls,
            str(store),
            synthetic_archive.region,
            storage_options=proxy.storage_options,
            chunks=CHUNKS,
            client=dask_client,
        )
    header_failures = [f for f in res.failed if f["block"] is None]
    assert header_failures, "the fault rate was meant to exhaust some header reads"
    policy = RetryPolicy()
    for f in header_failures:  # transient faults: retried, never taken for a corrupt file
        assert f["error"].startswith("read failed after"), f
        # a second attempt is skipped only when it would pass the budget: when the first one
        # took more than half of it (16 threads share h5py's lock on a loaded machine)
        assert f["attempts"] >= 2 or 2 * f["seconds"] + policy.backoff > policy.budget, f
    ledger = read_ledger(str(store))
    assert {f["url"] for f in header_failures} <= {f["url"] for f in ledger["failed"]}
    # granules whose header was read are layers or ledger entries, like any build
    z = xr.open_zarr(store)
    named = {f["url"].rsplit("/", 1)[-1] for f in ledger["failed"]}
    for u in urls:
        name = u.rsplit("/", 1)[-1]
        gid = name[:-3]
        assert (
            gid in set(z.granule_id.values)
            or name in named
            or gid in {f["granule_id"] for f in ledger["failed"]}
        ), u
    if len(z.mid_date):
        check_nothing_lost(store, clean, [])


def test_template_interrupted_by_output_faults_resumes_to_a_clean_build(
    tmp_path, inputs, clean, synthetic_archive, local_s3, dask_client
):
    """Issue 15, defect 3, on ``s3://`` and on a local copy of the interrupted store. Every
    PUT of the ``v`` array's metadata fails, so ``to_zarr`` stops half-way through the
    template. The store must not claim a build state, every error is a StoreError that says
    to resume, and ``resume`` redoes the template and gives the cube of a clean build."""
    from itslive_dask.errors import StoreError

    local_s3.create_bucket("faults-out")
    sto_direct = local_s3.storage_options
    url = "s3://faults-out/tmpl.zarr"
    region, so = synthetic_archive.region, synthetic_archive.storage_options
    rule = FaultRule(
        1.0, kinds=("503",), direction="write", key_pattern="faults-out/tmpl.zarr/v/zarr.json"
    )
    with S3Proxy(local_s3, faults=rule) as proxy:
        sto = proxy.storage_options
        with pytest.raises(StoreError, match="mode='resume'"):
            write_cube(
                inputs,
                url,
                region,
                storage_options=so,
                store_options=sto,
                chunks=CHUNKS,
                client=dask_client,
            )
        assert proxy.stats.faults()
        fs = local_s3.filesystem()
        fs.invalidate_cache()
        root_attrs = __import__("json").loads(fs.cat_file("faults-out/tmpl.zarr/zarr.json"))[
            "attributes"
        ]
        assert "itslive_dask" not in root_attrs and "itslive_dask_pending" in root_attrs
        assert not fs.exists("faults-out/tmpl.zarr/v/zarr.json")
        # append cannot start from an interrupted template
        with pytest.raises(StoreError, match="resume"):
            write_cube(
                inputs,
                url,
                mode="append",
                storage_options=so,
                store_options=sto,
                client=dask_client,
            )
        # a local copy of the interrupted store, resumed below too
        local = tmp_path / "tmpl.zarr"
        fs.get("faults-out/tmpl.zarr", str(local), recursive=True)
        proxy.set_faults(None)
        res = write_cube(
            inputs, url, mode="resume", storage_options=so, store_options=sto, client=dask_client
        )
    assert res.failed == [] and res.layers_added == len(clean.mid_date)
    z = xr.open_zarr(url, storage_options=sto_direct).load()
    res2 = write_cube(inputs, str(local), mode="resume", storage_options=so, client=dask_client)
    assert res2.failed == []
    for cube in (z, xr.open_zarr(local).load()):
        assert np.array_equal(cube.granule_id.values, clean.granule_id.values)
        for v in VARS:
            assert cube[v].values.tobytes() == clean[v].values.tobytes(), v


def test_output_write_faults_lose_nothing(
    tmp_path, inputs, clean, synthetic_archive, local_s3, dask_client
):
    """Issue 10: 5% of the output requests to an ``s3://`` store fail. s3fs/botocore retry
    store writes (the package's budget covers granule reads only); the build finishes
    identical to the fault-free one, or stops with a StoreError and resume finishes it."""
    from itslive_dask.errors import StoreError

    local_s3.create_bucket("faults-out5")
    url = "s3://faults-out5/c.zarr"
    region, so = synthetic_archive.region, synthetic_archive.storage_options
    rule = FaultRule(0.05, kinds=KINDS, direction="write")
    resumed = 0
    with S3Proxy(local_s3, faults=rule, seed=3) as proxy:
        sto = proxy.storage_options
        try:
            write_cube(
                inputs,
                url,
                region,
                storage_options=so,
                store_options=sto,
                chunks=CHUNKS,
                client=dask_client,
            )
        except StoreError:
            resumed = 1
            write_cube(
                inputs,
                url,
                mode="resume",
                storage_options=so,
                store_options=sto,
                client=dask_client,
            )
        n_faults = sum(proxy.stats.faults().values())
    assert n_faults > 0
    failed = check_nothing_lost(url, clean, inputs.granule_id, local_s3.storage_options)
    assert failed == set()
    print(f"\noutput faults 5%: {n_faults} injected, resumed {resumed} time(s)")
