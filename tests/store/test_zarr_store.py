"""write_cube on the synthetic archive through the local S3 server and a LocalCluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from itslive_dask.cube.lazy import open_cube
from itslive_dask.errors import StoreError
from itslive_dask.store.state import read_ledger
from itslive_dask.store.write import write_cube

VARS = ("vx", "vy", "v", "v_error")


def _data_files(store: Path) -> dict[str, bytes]:
    """Bytes of every data chunk of the velocity arrays (the 'data' of the store)."""
    out = {}
    for v in VARS:
        for p in sorted((store / v).rglob("*")):
            if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs"):
                out[str(p.relative_to(store))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def small(synthetic_archive):
    """A subset of the archive small enough to build several times."""
    t = synthetic_archive.table
    return t.iloc[: min(len(t), 24)].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(small, synthetic_archive, dask_client):
    cube = open_cube(
        small,
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        chunks=(8, 96, 96),
    )
    return cube.compute()


def test_written_store_equals_computed_cube(
    tmp_path, small, synthetic_archive, dask_client, reference
):
    store = tmp_path / "cube.zarr"
    seen = []
    res = write_cube(
        small,
        str(store),
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        chunks=(8, 96, 96),
        client=dask_client,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert res.failed == [] and res.blocks_written == res.blocks_total > 0
    assert seen[-1] == (res.blocks_total, res.blocks_total)
    print(
        f"\nwrote {res.shape} in {res.elapsed:.1f} s, {res.blocks_written} blocks, peak worker RSS {res.peak_worker_rss / 2**20:.0f} MiB"
    )
    z = xr.open_zarr(store)
    assert z.rio.crs.to_epsg() == reference.rio.crs.to_epsg()
    for v in VARS:
        assert z[v].values.tobytes() == reference[v].values.tobytes(), v
        assert z[v].encoding["chunks"] == (8, 96, 96)
    for c in (
        "mid_date",
        "x",
        "y",
        "granule_id",
        "acquisition_date_img1",
        "date_dt",
        "source_epsg",
    ):
        assert np.array_equal(z[c].values, reference[c].values), c
    assert (z.granule_status.values == 0).all()
    # refuses to overwrite; the store is left as it was
    before = _data_files(store)
    with pytest.raises(StoreError, match="already exists"):
        write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=synthetic_archive.storage_options,
            client=dask_client,
        )
    assert _data_files(store) == before


def test_s3_output_and_zarr_v2(small, synthetic_archive, local_s3, dask_client, reference):
    local_s3.create_bucket("cubes")
    url = "s3://cubes/pig-v2.zarr"
    write_cube(
        small,
        url,
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        store_options=local_s3.storage_options,
        chunks=(8, 96, 96),
        zarr_format=2,
        client=dask_client,
    )
    z = xr.open_zarr(url, storage_options=local_s3.storage_options)
    assert z.rio.crs.to_epsg() == 3413
    for v in VARS:
        assert z[v].values.tobytes() == reference[v].values.tobytes(), v
    text = local_s3.filesystem().cat_file("cubes/pig-v2.zarr/.zattrs").decode()
    secret = local_s3.storage_options.get("secret") or local_s3.storage_options.get(
        "aws_secret_access_key"
    )
    assert secret is None or secret not in text


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, pickle
    from itslive_dask.store.write import write_cube
    if __name__ == "__main__":
        args = pickle.load(open(sys.argv[1], "rb"))
        write_cube(args["table"], args["store"], args["region"], storage_options=args["so"],
                   chunks=(2, 128, 128), n_workers=2, mode=args["mode"])
    """
)


def test_killed_build_resumes_to_identical_bytes(tmp_path, small, synthetic_archive, dask_client):
    import pickle

    table = small
    region, so = synthetic_archive.region, synthetic_archive.storage_options
    ref_store = tmp_path / "ref.zarr"
    write_cube(
        table, str(ref_store), region, storage_options=so, chunks=(2, 128, 128), client=dask_client
    )

    store = tmp_path / "killed.zarr"
    args = tmp_path / "args.pkl"
    args.write_bytes(
        pickle.dumps(
            {"table": table, "store": str(store), "region": region, "so": so, "mode": "create"}
        )
    )
    script = tmp_path / "build.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(args)], start_new_session=True)
    markers = store / "_itslive" / "blocks"
    deadline = time.time() + 120
    while time.time() < deadline:
        if markers.exists() and len(list(markers.glob("*.json"))) >= 4:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its worker processes
    proc.wait()
    done_before = len(list(markers.glob("*.json")))
    total = len(list((ref_store / "_itslive" / "blocks").glob("*.json")))
    assert 0 < done_before < total, "the build must be interrupted part-way"

    res = write_cube(
        table, str(store), region, storage_options=so, mode="resume", client=dask_client
    )
    assert res.blocks_skipped >= done_before and res.blocks_written == total - res.blocks_skipped
    assert _data_files(store) == _data_files(ref_store)
    a, b = xr.open_zarr(store), xr.open_zarr(ref_store)
    for v in VARS:
        assert a[v].values.tobytes() == b[v].values.tobytes()


def test_append_adds_only_new_granules(tmp_path, small, synthetic_archive, dask_client):
    region, so = synthetic_archive.region, synthetic_archive.storage_options
    first = small.iloc[::2]
    store = tmp_path / "app.zarr"
    write_cube(
        first, str(store), region, storage_options=so, chunks=(4, 96, 96), client=dask_client
    )
    before = xr.open_zarr(store).load()
    res = write_cube(
        small, str(store), region, storage_options=so, mode="append", client=dask_client
    )
    n_new = len(small) - len(first)
    assert res.layers_added <= n_new and res.layers_added > 0
    assert (
        sum(s["reason"] == "already in the cube" for s in res.skipped) == before.sizes["mid_date"]
    )
    after = xr.open_zarr(store).load()
    n0 = before.sizes["mid_date"]
    for v in VARS:  # existing layers untouched
        assert after[v].values[:n0].tobytes() == before[v].values.tobytes()
    # equals a build from the union, modulo layer order (appended layers come last)
    union = tmp_path / "union.zarr"
    write_cube(
        small, str(union), region, storage_options=so, chunks=(4, 96, 96), client=dask_client
    )
    u = xr.open_zarr(union).load()
    s = after.sortby("mid_date")
    assert np.array_equal(s.granule_id.values, u.granule_id.values)
    for v in VARS:
        assert s[v].values.tobytes() == u[v].values.tobytes()
    # a second identical append writes nothing
    again = write_cube(
        small, str(store), region, storage_options=so, mode="append", client=dask_client
    )
    assert again.layers_added == 0 and again.blocks_written == 0


def test_failures_go_to_ledger_and_resume_retries_them(
    tmp_path, small, synthetic_archive, local_s3, dask_client, reference
):
    region, so = synthetic_archive.region, synthetic_archive.storage_options
    fs = local_s3.filesystem()
    # copy the subset to a scratch bucket so the shared archive stays intact
    local_s3.create_bucket("scratch")
    table = small.copy()
    new_urls = []
    for u in table.url:
        key = u.split("://", 1)[1]
        dst = "scratch/" + key.split("/", 1)[1]
        fs.copy(key, dst)
        new_urls.append("s3://" + dst)
    table["url"] = new_urls
    # pick two granules with data in the cube: one goes missing, one gets corrupted
    counts = np.isfinite(reference.v.values).sum(axis=(1, 2))
    busy = [str(g) for g in reference.granule_id.values[np.argsort(-counts)][:2]]
    missing_url = table.set_index("granule_id").loc[busy[0], "url"]
    corrupt_url = table.set_index("granule_id").loc[busy[1], "url"]
    saved = fs.cat_file(missing_url)
    fs.rm(missing_url)
    fs.pipe_file(corrupt_url, b"this is not HDF5" * 100)

    store = tmp_path / "fail.zarr"
    res = write_cube(
        table, str(store), region, storage_options=so, chunks=(8, 96, 96), client=dask_client
    )
    failed = {f["granule_id"]: f for f in res.failed}
    assert set(failed) == set(busy)
    assert "not found" in failed[busy[0]]["error"]
    assert "HDF5" in failed[busy[1]]["error"] or "NetCDF" in failed[busy[1]]["error"]
    ledger = read_ledger(str(store))
    assert {f["granule_id"] for f in ledger["failed"]} == set(busy)
    z = xr.open_zarr(store).load()
    flagged = set(z.granule_id.values[z.granule_status.values == 1])
    assert flagged == set(busy)
    ok = ~np.isin(z.granule_id.values, busy)
    for v in VARS:  # the rest of the cube is right
        assert z[v].values[ok].tobytes() == reference[v].values[ok].tobytes()
    assert np.isnan(z.v.values[~ok]).all()

    # repair the objects and resume: only the failed granules are retried
    fs.pipe_file(missing_url, saved)
    fs.pipe_file(
        corrupt_url,
        fs.cat_file(synthetic_archive.table.set_index("granule_id").loc[busy[1], "url"]),
    )
    res2 = write_cube(
        table, str(store), region, storage_options=so, mode="resume", client=dask_client
    )
    assert res2.failed == []
    assert res2.granules_read == 2
    z = xr.open_zarr(store).load()
    assert (z.granule_status.values == 0).all() and read_ledger(str(store))["failed"] == []
    for v in VARS:
        assert z[v].values.tobytes() == reference[v].values.tobytes()


def test_timeseries_layout_is_a_bounded_memory_rechunk(
    tmp_path, small, synthetic_archive, dask_client, reference
):
    store = tmp_path / "ts.zarr"
    write_cube(
        small,
        str(store),
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        chunks=(8, 96, 96),
        client=dask_client,
        layout="timeseries",
        timeseries_chunks=(1000, 20, 20),
    )
    z = xr.open_zarr(store)
    n = reference.sizes["mid_date"]
    assert z.v.encoding["chunks"] == (n, 20, 20)
    assert xr.open_zarr(tmp_path / "ts.zarr.map.zarr").v.encoding["chunks"] == (8, 96, 96)
    for v in VARS:
        assert z[v].values.tobytes() == reference[v].values.tobytes()
    assert z.rio.crs.to_epsg() == 3413
    # the rechunked copy is not a build target: resuming it is refused, nothing is changed
    with pytest.raises(StoreError):
        write_cube(small, str(store), synthetic_archive.region, mode="append", client=dask_client)


def test_separate_scheduler_and_worker_processes(tmp_path, small, synthetic_archive, reference):
    """Beyond one machine it is plain distributed: `dask scheduler` + `dask worker` processes."""
    import json
    import shutil

    dask_cli = shutil.which("dask", path=os.path.dirname(sys.executable))
    assert dask_cli, "the dask command comes with distributed"
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [
                dask_cli,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    ]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [
                    dask_cli,
                    "worker",
                    address,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--memory-limit",
                    "2GiB",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        )
        from distributed import Client

        with Client(address, timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
        store = tmp_path / "remote.zarr"
        res = write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=synthetic_archive.storage_options,
            chunks=(8, 96, 96),
            scheduler=address,
        )
        assert res.failed == []
        z = xr.open_zarr(store)
        for v in VARS:
            assert z[v].values.tobytes() == reference[v].values.tobytes()
    finally:
        for p in procs[::-1]:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def test_unreachable_scheduler_fails_before_writing(tmp_path, small, synthetic_archive):
    import socket

    from itslive_dask.errors import ClusterError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "never.zarr"
    with pytest.raises(ClusterError, match="cannot reach"):
        write_cube(small, str(store), synthetic_archive.region, scheduler=f"tcp://127.0.0.1:{port}")
    assert not store.exists()


def test_overwrite_refuses_a_path_that_is_not_a_zarr_store(tmp_path, small, synthetic_archive):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(StoreError, match="not a Zarr store"):
        write_cube(small, str(precious), synthetic_archive.region, mode="overwrite")
    assert (precious / "chapter1.tex").read_text() == "years of work"
