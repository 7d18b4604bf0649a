"""The command line run as a user runs it: subprocesses against real local servers.

The synthetic archive sits on the local S3 server (public bucket, read with ``--anon`` and the
endpoint, as the public archive is read), its catalog is served by the local search server,
and every command runs as ``python -m itslive_dask.cli.app``. Expected results come from the
granule table and shapely (independent of the CLI), or from files the CLI wrote read back
with other libraries (xarray, PIL, geopandas).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import requests
import shapely
import xarray as xr
import zarr
from PIL import Image

from itslive_dask.server import LocalSearchServer

# a box inside the Svalbard preset region (lon 17.3..18.7, lat 78.69..78.91)
BBOX = (17.7, 78.72, 18.3, 78.88)
BBOX_ARG = ",".join(map(str, BBOX))


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="160")
    return subprocess.run(
        [sys.executable, "-m", "itslive_dask.cli.app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def expected_ids(table: gpd.GeoDataFrame, bbox=BBOX) -> set[str]:
    """Granules whose footprint intersects the box (plain lon/lat: far from 180 and the pole)."""
    box = shapely.box(*bbox)
    return set(table.loc[table.geometry.intersects(box), "granule_id"])


@pytest.fixture(scope="module")
def stac(synthetic_archive):
    with LocalSearchServer(synthetic_archive.table) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def s3_args(local_s3):
    return ["--anon", "-s", f"endpoint_url={local_s3.endpoint_url}"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, stac, s3_args, synthetic_archive):
    """search -o (a saved search) then cube --granules <file>: the two commands a user types."""
    work = tmp_path_factory.mktemp("cli")
    saved = work / "search.parquet"
    res = run(
        "search",
        "--bbox",
        BBOX_ARG,
        "--catalog",
        stac,
        "--max-files-per-year",
        "2",
        "-o",
        str(saved),
    )
    assert res.returncode == 0, res.stderr
    store = work / "cube.zarr"
    res_cube = run(
        "cube", "--granules", str(saved), "--output", str(store), "--workers", "1",
        "--chunks", "8,128,128", *s3_args,
    )  # fmt: skip
    assert res_cube.returncode == 0, res_cube.stderr
    return {"work": work, "saved": saved, "store": store, "search": res, "cube": res_cube}


def test_search_prints_saves_and_matches_footprints(built, synthetic_archive, stac, tmp_path):
    saved = gpd.read_parquet(built["saved"])
    found = expected_ids(synthetic_archive.table)
    assert set(saved["granule_id"]) <= found
    # the filter kept at most 2 per year, and every year that had granules still has some
    years = saved["mid_date"].dt.year.value_counts()
    assert years.max() <= 2
    all_years = set(
        synthetic_archive.table.set_index("granule_id").loc[sorted(found), "mid_date"].dt.year
    )
    assert set(years.index) == all_years
    query = json.loads(Path(str(built["saved"]) + ".query.json").read_text())
    assert query["filters"] == {"max_files_per_year": 2} and query["count"] == len(saved)
    assert f"{len(found)} granules found" in built["search"].stdout
    # --json: every granule of the box, and nothing else
    res = run("search", "--bbox", BBOX_ARG, "--catalog", stac, "--json", "-q")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (
        {g["granule_id"] for g in doc["granules"]}
        == found
        == set(expected_ids(synthetic_archive.table))
    )
    # a csv file holds the same granules (legacy API this time)
    out = tmp_path / "s.csv"
    res = run(
        "search",
        "--bbox",
        BBOX_ARG,
        "--catalog",
        f"legacy+{stac}",
        "-o",
        str(out),
        "-q",
        "--show",
        "0",
    )
    assert res.returncode == 0, res.stderr
    assert set(pd.read_csv(out)["granule_id"]) == found


def test_cube_from_saved_search(built, synthetic_archive):
    saved = gpd.read_parquet(built["saved"])
    ds = xr.open_zarr(built["store"])
    ids = {str(g) for g in ds["granule_id"].values}
    assert ids <= set(saved["granule_id"]) and len(ids) >= 0.8 * len(saved)
    assert int(ds["mapping"].attrs["spatial_epsg"]) == 3413  # default for a northern region
    assert ds["v"].chunks[1][0] == 128 and ds["v"].chunks[0][0] == 8
    v = ds["v"].values
    assert np.isfinite(v).mean() > 0.3
    # the grid covers the requested box: its corners are inside the grid
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, 3413, always_xy=True)
    cx, cy = tr.transform(
        [BBOX[0], BBOX[2], BBOX[0], BBOX[2]], [BBOX[1], BBOX[1], BBOX[3], BBOX[3]]
    )
    assert ds.x.min() - 60 <= min(cx) and max(cx) <= ds.x.max() + 60
    assert ds.y.min() - 60 <= min(cy) and max(cy) <= ds.y.max() + 60
    out = built["cube"].stdout
    assert f"{ds.sizes['mid_date']} layers x {ds.sizes['y']} y x {ds.sizes['x']} x" in out
    assert str(built["store"]) in out
    assert "Traceback" not in built["cube"].stderr


def test_info(built):
    ds = xr.open_zarr(built["store"])
    res = run("info", str(built["store"]))
    assert res.returncode == 0, res.stderr
    assert "EPSG:3413" in res.stdout and f"{ds.sizes['mid_date']} layers" in res.stdout
    res = run("info", str(built["store"]), "--json")
    doc = json.loads(res.stdout)
    assert doc["shape"] == [ds.sizes["mid_date"], ds.sizes["y"], ds.sizes["x"]]
    per_year = doc["layers_per_year"]
    years = {str(y) for y in np.unique(ds["mid_date"].dt.year.values)}
    assert set(per_year) == years
    assert sum(r["total"] for r in per_year.values()) == ds.sizes["mid_date"]
    assert doc["build"]["complete"] == doc["build"]["generations"] == 1


def test_cube_int16_matches_the_float_cube(built, tmp_path, s3_args):
    """--velocity-encoding int16: the production encoding, within 0.5 m/yr of the float cube."""
    store = tmp_path / "i16.zarr"
    res = run(
        "cube", "--granules", str(built["saved"]), "--output", str(store), "--workers", "1",
        "--chunks", "8,128,128", "--velocity-encoding", "int16", *s3_args,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert zarr.open_group(str(store), mode="r")["vx"].dtype == np.int16
    doc = json.loads(run("info", str(store), "--json").stdout)
    assert doc["build"]["velocity_encoding"] == "int16"
    a, b = xr.open_zarr(store).vx.values, xr.open_zarr(built["store"]).vx.values
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.isfinite(b).any()
    assert np.nanmax(np.abs(a - b)) <= 0.5


def test_plot(built, tmp_path):
    out = tmp_path / "plots"
    res = run("plot", str(built["store"]), "--point", "18.0,78.8", "-o", str(out))
    assert res.returncode == 0, res.stderr
    files = sorted(out.glob("*.png"))
    assert {p.name for p in files} == {
        "layer_counts.png",
        "yearly_mean.png",
        "histogram.png",
        "point_timeseries.png",
    }
    for p in files:
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 200
            assert np.asarray(im.convert("L"), dtype=float).var() > 0
        assert str(p) in res.stdout


def test_catalog_and_serve(tmp_path, synthetic_archive, s3_args):
    cat = tmp_path / "granules.parquet"
    res = run("catalog", f"{synthetic_archive.url}/velocity_image_pair/", "-o", str(cat), *s3_args)
    assert res.returncode == 0, res.stderr
    table = gpd.read_parquet(cat)
    assert set(table["granule_id"]) == set(synthetic_archive.table["granule_id"])
    assert table["chunk_index"].str.startswith('{"grid":').all()  # remote: indexes kept
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "itslive_dask.cli.app", "serve", str(cat), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/velocities/urls/"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = requests.get(url, params={"bbox": BBOX_ARG, "serialization": "json"}, timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.3)
        assert r.status_code == 200
        names = {u["granule_id"] for u in r.json()}
        assert names == expected_ids(synthetic_archive.table)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_catalog_without_chunk_indexes(tmp_path, synthetic_archive, s3_args):
    cat = tmp_path / "bare.geojson"
    res = run("catalog", f"{synthetic_archive.url}/velocity_image_pair/", "-o", str(cat),
              "--no-chunk-index", *s3_args)  # fmt: skip
    assert res.returncode == 0, res.stderr
    table = gpd.read_file(cat)
    assert "chunk_index" not in table.columns and len(table) == len(synthetic_archive.table)


def test_download(tmp_path, stac, s3_args, local_s3, synthetic_archive):
    folder = tmp_path / "dl"
    res = run(
        "download",
        "--bbox",
        BBOX_ARG,
        "--catalog",
        stac,
        "--limit",
        "3",
        "--folder",
        str(folder),
        *s3_args,
    )
    assert res.returncode == 0, res.stderr
    files = sorted(folder.glob("*.nc"))
    assert len(files) == 3
    fs = local_s3.filesystem()
    urls = synthetic_archive.table.set_index("granule_id")["url"]
    for f in files:
        assert f.stat().st_size == fs.size(urls[f.stem])


# --------------------------------------------------------------------------- user mistakes


def check_one_line_error(res: subprocess.CompletedProcess, *, code: int | None = None) -> str:
    assert res.returncode != 0
    if code is not None:
        assert res.returncode == code
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "2020-01-01", "--end", "2019-01-01"], "start"),
        (["--sensor", "landsat9"], "unknown sensor 'landsat9'"),
        (["--months", "Brumaire"], "unknown month"),
    ],
)
def test_bad_search_inputs(stac, args, needle):
    res = run("-q", "search", "--bbox", BBOX_ARG, "--catalog", stac, *args)
    assert needle in check_one_line_error(res, code=1)


@pytest.mark.parametrize(
    ("region", "needle"),
    [
        (["--polygon", "0,0,1,1,0,1,1,0"], "not valid"),  # self-intersecting bow tie
        (["--polygon", "10,95,11,95,11,96"], "latitudes beyond"),  # lat,lon swapped
        (["--bbox", "18.3,78.7,17.7,78.9"], "min_lon < max_lon"),
    ],
)
def test_bad_regions(stac, region, needle):
    res = run("-q", "search", *region, "--catalog", stac)
    assert needle in check_one_line_error(res, code=1)


def test_usage_errors_exit_2(stac):
    check_one_line_error(run("-q", "search", "--bbox"), code=2)
    check_one_line_error(run("-q", "cube", "-o", "x.zarr", "--workers", "two"), code=2)


def test_unreachable_scheduler_leaves_nothing(built, tmp_path, s3_args):
    store = tmp_path / "never.zarr"
    port = free_port()  # closed again: nothing listens there
    res = run(
        "-q",
        "cube",
        "-g",
        str(built["saved"]),
        "-o",
        str(store),
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
        *s3_args,
    )
    assert "Dask scheduler" in check_one_line_error(res, code=1)
    assert not store.exists()


def test_existing_store_is_not_touched(built, s3_args, tmp_path):
    store = built["store"]
    before = tree_digest(store)
    res = run("-q", "cube", "-g", str(built["saved"]), "-o", str(store), *s3_args)
    assert "--resume" in check_one_line_error(res, code=1)
    res = run(
        "-q",
        "cube",
        "-g",
        str(built["saved"]),
        "-o",
        str(store),
        "--resume",
        "--overwrite",
        *s3_args,
    )
    check_one_line_error(res, code=1)
    assert tree_digest(store) == before
    # --overwrite refuses a folder that is not an itslive_dask cube
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    res = run("-q", "cube", "-g", str(built["saved"]), "-o", str(other), "--overwrite", *s3_args)
    assert "refusing to overwrite" in check_one_line_error(res, code=1)
    assert (other / "notes.txt").read_text() == "keep me"


def test_resume_of_a_finished_cube_writes_nothing(built, s3_args):
    store = built["store"]
    before = tree_digest(store)
    res = run(
        "-q",
        "cube",
        "-g",
        str(built["saved"]),
        "-o",
        str(store),
        "--resume",
        "--workers",
        "1",
        *s3_args,
    )
    assert res.returncode == 0, res.stderr
    assert "0 written" in res.stdout
    after = tree_digest(store)
    data = {
        k: v for k, v in before.items() if not k.startswith("_itslive") and "zarr.json" not in k
    }
    assert {k: after[k] for k in data} == data  # chunks identical


def test_debug_shows_the_traceback(tmp_path):
    res = run("info", str(tmp_path / "missing.zarr"), "--debug")
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "no cube at" in res.stderr


def test_sigint_shield_restores_signal_and_config():
    import signal

    import dask

    from itslive_dask.cluster import sigint_shield

    before = signal.getsignal(signal.SIGINT)
    with sigint_shield() as release:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert "itslive_dask.cluster" in dask.config.get("distributed.worker.preload")
        release()
        assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGINT) is before
    assert "itslive_dask.cluster" not in (dask.config.get("distributed.worker.preload") or [])
    assert dask.config.get("distributed.scheduler.allowed-failures") is not None  # config intact


def test_ctrl_c_during_a_build_then_resume(built, tmp_path, s3_args):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) mid-build: one line, exit
    130, no traceback from any process; the same command with --resume finishes the cube."""
    import signal

    store = tmp_path / "interrupted.zarr"
    cmd = [
        sys.executable, "-m", "itslive_dask.cli.app", "cube", "-g", str(built["saved"]), "-o", str(store),
        "--workers", "1", "--chunks", "1,128,128", *s3_args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    err_lines = []
    for line in proc.stderr:  # wait until the cluster is up
        err_lines.append(line)
        if "Dask dashboard" in line:
            break
    # ... and the first block is written: then most blocks are still to run (a fixed 2 s
    # wait became the whole build once the first build got faster)
    markers = store / "_itslive" / "blocks"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(markers.glob("*.json")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(err_lines) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    done_before = len(list(markers.glob("*.json")))
    assert done_before > 0
    assert [ln for ln in stderr.splitlines() if ln.startswith("error:")] == ["error: interrupted"]
    res = run(
        "-q",
        "cube",
        "-g",
        str(built["saved"]),
        "-o",
        str(store),
        "--resume",
        "--workers",
        "1",
        *s3_args,
    )
    assert res.returncode == 0, res.stderr
    assert done_before < len(list(markers.glob("*.json"))), "the build was interrupted mid-way"
    ds = xr.open_zarr(store)
    reference = xr.open_zarr(built["store"])
    assert ds.sizes == reference.sizes
    np.testing.assert_array_equal(
        ds["v"].values, reference["v"].values
    )  # chunk-invariant, complete


def test_storage_options_parsing_and_secret_scrubbing(monkeypatch):
    from itslive_dask.cli import app as cli
    from itslive_dask.errors import InvalidInputError

    monkeypatch.setitem(cli._STATE, "secrets", set())
    opts = cli.parse_options(
        ["key=AKIAEXAMPLE1", "secret=s3cr3t/value+x", "client_kwargs.region_name=us-west-2", "requester_pays=true",
         "default_block_size=5242880"],
        anon=False,
    )  # fmt: skip
    assert opts == {
        "key": "AKIAEXAMPLE1",
        "secret": "s3cr3t/value+x",
        "client_kwargs": {"region_name": "us-west-2"},
        "requester_pays": True,
        "default_block_size": 5242880,
    }
    line = cli._one_line("cannot open s3://b/k with key AKIAEXAMPLE1 and\nsecret s3cr3t/value+x")
    assert line == "cannot open s3://b/k with key *** and secret ***"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment")
    assert "from-the-environment" not in cli._one_line("echo from-the-environment")
    with pytest.raises(InvalidInputError, match="KEY=VALUE"):
        cli.parse_options(["novalue"])
    assert (
        cli._public("https://user:pw@example.org:8443/stac?token=abc")
        == "https://example.org:8443/stac"
    )


def test_serve_builds_need_an_output_root(tmp_path):
    """Builds from the map page are off unless enabled, and only ever under a given folder."""
    cat = tmp_path / "granules.parquet"
    res = run("serve", str(cat), "--enable-builds")
    assert "--output-root" in check_one_line_error(res, code=1)
    res = run("serve", str(cat), "--output-root", str(tmp_path))
    assert "--enable-builds" in check_one_line_error(res, code=1)
