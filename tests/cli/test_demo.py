"""``itslive-dask demo`` end to end, in a subprocess, as the README runs it (smaller archive).

The demo's own accuracy report is checked against bounds derived from the synthetic field,
and the cube it wrote is checked again here, independently, against
:func:`itslive_dask.testing.synthetic.truth_speed`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from itslive_dask.testing.synthetic import get_region, truth_speed

QUANT = 0.5  # int16 rounding of each velocity component in the granules (noise-free archive)
# Bound on |speed(p) - speed(q)| for |p - q| <= half a 120 m pixel diagonal (85 m): the field's
# speed is 10 + 4290 f with |grad f| <= 0.243 (trunk) + 0.031 (downstream ramp) + 0.10 + 0.086
# (tributaries) per km, i.e. <= 2.0 m/yr per metre, times the time factor (<= 1.16 up to 2022).
NN_OFFSET_BOUND = 2.0 * 85 * 1.16


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    env = dict(os.environ, COLUMNS="160")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "itslive_dask.cli.app",
            "demo",
            "--output",
            str(out),
            "--granules",
            "30",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_demo_reports_and_files(demo_run):
    out, res = demo_run
    assert "Traceback" not in res.stderr
    assert "demo summary" in res.stdout and str(out) in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["granules_generated"] == 30
    assert summary["search_backends_agree"] is True
    assert summary["granules_failed"] == 0
    assert summary["granules_read"] + summary["granules_skipped"] == summary["granules_selected"]
    assert (
        3413 in summary["granule_epsgs"]
        and len([e for e in summary["granule_epsgs"] if e > 32600]) >= 2
    )
    ds = xr.open_zarr(out / "cube.zarr")
    assert [ds.sizes["mid_date"], ds.sizes["y"], ds.sizes["x"]] == summary["cube_shape"]
    assert int(ds["mapping"].attrs["spatial_epsg"]) == 3413
    # the printed accuracy is the summary's
    med = summary["accuracy"]["at_sampled_pixel"]["speed_error"]["median"]
    assert f"median {med:.3f} m/yr" in res.stdout


def test_demo_plots(demo_run):
    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    ny, nx = summary["cube_shape"][1:]
    n_years = len(summary["years"])
    ncols = min(4, n_years)
    nrows = math.ceil(n_years / ncols)
    panel_h = min(max(3.0 * ny / nx, 1.2), 9.0)
    expected = {
        "granule_counts": (900, 450),
        "point_timeseries": (1000, 450),
        "speed_histogram": (700, 450),
        "yearly_mean_speed": (
            round((3.0 * ncols + 1.0) * 100),
            round((panel_h * nrows + 2.0) * 100),
        ),
    }
    assert set(summary["plots"]) == set(expected)
    for name, path in summary["plots"].items():
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.size == expected[name], name
            arr = np.asarray(im.convert("RGB"), dtype=float)
        assert arr.var() > 0, name
        assert (arr.sum(axis=2) < 600).mean() > 0.01, f"{name} is nearly blank"


def test_demo_accuracy_within_the_engine_bound(demo_run):
    out, _ = demo_run
    acc = json.loads((out / "summary.json").read_text())["accuracy"]
    assert acc["pixels"] > 100_000
    engine = acc["at_sampled_pixel"]
    # noise-free granules: only the int16 rounding of the granules remains
    assert engine["speed_error"]["median"] < 1.0
    assert engine["speed_error"]["max"] <= math.hypot(QUANT, QUANT) + 1e-3
    assert engine["vector_error"]["max"] <= math.hypot(QUANT, QUANT) + 1e-3
    # direction over pixels >= 50 m/yr: rounding of 0.71 m/yr turns a vector by <= asin(0.71/50)
    assert (
        engine["direction_error_deg"]["max"]
        <= math.degrees(math.asin(math.hypot(QUANT, QUANT) / 50)) + 1e-3
    )
    assert acc["at_cube_pixel"]["speed_error"]["max"] <= NN_OFFSET_BOUND + QUANT


def test_demo_cube_against_truth_independently(demo_run):
    """Recheck the cube the demo wrote with the truth at each cube pixel centre."""
    out, _ = demo_run
    ds = xr.open_zarr(out / "cube.zarr")
    x, y = np.meshgrid(ds.x.values, ds.y.values)
    region = get_region("svalbard")
    worst = 0.0
    errors = []
    for k in range(0, ds.sizes["mid_date"], max(1, ds.sizes["mid_date"] // 6)):
        v = ds["v"].isel(mid_date=k).values
        ok = np.isfinite(v)
        if not ok.any():
            continue
        t = pd.Timestamp(ds["mid_date"].values[k])
        truth = truth_speed(x[ok], y[ok], "EPSG:3413", t, region=region)
        err = np.abs(v[ok] - truth)
        worst = max(worst, float(err.max()))
        errors.append(err)
    assert errors, "no layer has data"
    assert worst <= NN_OFFSET_BOUND + QUANT
    assert np.median(np.concatenate(errors)) < 0.05 * NN_OFFSET_BOUND


# --------------------------------------------------------------------------- the tutorial page


def tutorial_code(config: dict[str, str]) -> str:
    """The Python blocks of docs/tutorial-pine-island.md, with the configuration replaced."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "tutorial-pine-island.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", page, flags=re.S))
    for name, value in config.items():
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", code, count=1, flags=re.M)
        assert n == 1, f"the tutorial has no {name} = ... line"
    return code


def test_pine_island_tutorial_runs_offline(local_s3, tmp_path, monkeypatch):
    """Every Python block of the tutorial page, on a synthetic Pine Island archive served locally."""
    import geopandas as gpd  # noqa: F401  (the tutorial's objects are GeoDataFrames)

    from itslive_dask.server import LocalSearchServer
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive

    bucket = local_s3.create_bucket("its-live-pine", public=True)
    table = generate_archive(
        bucket,
        SyntheticConfig(region="pine_island", n_granules=40, seed=2),
        storage_options=local_s3.storage_options,
    )
    storage = {"anon": True, "endpoint_url": local_s3.endpoint_url}
    monkeypatch.chdir(tmp_path)
    with LocalSearchServer(table) as srv:
        code = tutorial_code(
            {
                "CATALOG": repr(srv.url),
                "STORAGE": repr(storage),
                "OUTPUT": repr(str(tmp_path / "pig.zarr")),
                "WORKERS": "1",
            }
        )
        namespace: dict = {}
        exec(compile(code, "tutorial-pine-island.md", "exec"), namespace)
    selected = namespace["selected"]
    assert 0 < len(selected) <= len(table)
    assert selected["mid_date"].dt.year.value_counts().max() <= 10
    assert selected["mid_date"].min() >= pd.Timestamp("2013-01-01")
    cube = xr.open_zarr(tmp_path / "pig.zarr")
    assert {str(g) for g in cube["granule_id"].values} <= set(selected["granule_id"])
    assert int(cube["mapping"].attrs["spatial_epsg"]) == 3031
    assert np.isfinite(cube["v"].values).any()
    for png in (
        "pig_granules_per_year",
        "pig_yearly_mean",
        "pig_speed_histogram",
        "pig_point_timeseries",
    ):
        with Image.open(tmp_path / f"{png}.png") as im:
            assert im.format == "PNG" and np.asarray(im.convert("L"), dtype=float).var() > 0
    first_year = min(namespace["per_year"])
    downloaded = sorted((tmp_path / "data" / f"pine-island-{first_year}").glob("*.nc"))
    assert len(downloaded) == len(namespace["per_year"][first_year])
