"""Notebooks: docs/pine-island.ipynb executed in a real Jupyter kernel (nbclient + ipykernel)
against a local STAC server and a local S3 server; the HTML reprs and the progress bar."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import itslive_dask
from itslive_dask.notebook import NotebookProgress, plan_html, result_html
from itslive_dask.store.write import WriteResult

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "pine-island.ipynb"


def _configured(nb, config: dict[str, str]):
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    src = cell.source
    for name, value in config.items():
        src, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", src, count=1, flags=re.M)
        assert n == 1, f"the notebook's parameters cell has no {name} = ... line"
    cell.source = src
    return nb


def _outputs(cell, mime: str) -> list[str]:
    return [o["data"][mime] for o in cell.outputs if "data" in o and mime in o["data"]]


def _cell(nb, text: str):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and text in c.source]
    return cell


def test_pine_island_notebook_runs_in_a_kernel(local_s3, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from itslive_dask.server import LocalSearchServer
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive

    bucket = local_s3.create_bucket("its-live-pine-nb", public=True)
    table = generate_archive(
        bucket,
        SyntheticConfig(region="pine_island", n_granules=40, seed=2),
        storage_options=local_s3.storage_options,
    )
    storage = {"anon": True, "endpoint_url": local_s3.endpoint_url}
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with LocalSearchServer(table) as srv:
        _configured(
            nb,
            {
                "CATALOG": repr(srv.url),
                "STORAGE": repr(storage),
                "OUTPUT": repr(str(tmp_path / "pig.zarr")),
                "WORKERS": "1",
            },
        )
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors, errors

    cube = xr.open_zarr(tmp_path / "pig.zarr")
    assert int(cube["mapping"].attrs["spatial_epsg"]) == 3031
    assert np.isfinite(cube["v"].values).any()
    n_layers = cube.sizes["mid_date"]

    # the plan cell shows the plan as HTML, with the layers the store has
    (plan_out,) = _outputs(_cell(nb, "make_plan"), "text/html")
    assert (
        "itslive_dask cube plan" in plan_out
        and f"<th>layers (mid_date)</th><td>{n_layers}</td>" in plan_out
    )
    assert "EPSG:3031" in plan_out

    # the build cell: a progress bar updated in place to the last block, then the result table
    build = _cell(nb, "write_cube(")
    html = _outputs(build, "text/html")
    bars = [h for h in html if "<progress" in h]
    assert len(bars) == 1, "one bar, updated in place (display_id)"
    value, maximum = map(int, re.search(r'value="(\d+)" max="(\d+)"', bars[0]).groups())
    assert value == maximum > 0
    (res_out,) = [h for h in html if "itslive_dask build" in h]
    assert f"<th>store</th><td>{tmp_path / 'pig.zarr'}</td>" in res_out
    assert f"{n_layers} × {cube.sizes['y']} × {cube.sizes['x']}" in res_out
    assert f"{maximum} written, 0 already done, {maximum} total" in res_out
    assert "<th>failed granules</th><td>0</td>" in res_out

    # the figures are shown inline and were written
    for name in ("pig_yearly_mean", "pig_speed_histogram", "pig_point_timeseries"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        (png,) = _outputs(_cell(nb, f'Image("{name}.png")'), "image/png")
        assert len(png) > 1000


def test_plan_html_counts(synthetic_archive):
    table = synthetic_archive.table
    plan = itslive_dask.make_plan(table, synthetic_archive.region)
    html = plan._repr_html_()
    assert html == plan_html(plan)
    # the granules whose footprint misses the region are left out, the others are layers
    outside = set(table.loc[~table.geometry.intersects(synthetic_archive.region), "granule_id"])
    assert 0 < len(outside) < len(table)
    assert set(plan.dropped["granule_id"]) == outside
    assert f"<th>layers (mid_date)</th><td>{len(table) - len(outside)}</td>" in html
    assert f"<th>granules left out</th><td>{len(outside)} (" in html
    assert f"EPSG:{plan.grid.epsg}" in html
    first, last = table.loc[~table.granule_id.isin(plan.dropped["granule_id"]), "mid_date"].agg(
        ["min", "max"]
    )
    assert f"{pd.Timestamp(first):%Y-%m-%d} to {pd.Timestamp(last):%Y-%m-%d}" in html


def test_result_html_escapes_and_lists_failures():
    failed = [
        {
            "granule_id": f"G{k}<script>",
            "error": "403 <b>denied</b>",
            "attempts": 4,
            "block": "0-8_0_0",
        }
        for k in range(12)
    ]
    res = WriteResult(
        store="s3://bucket/c&d.zarr",
        mode="create",
        shape=(24, 310, 288),
        layers_added=24,
        blocks_total=30,
        blocks_written=30,
        granules_read=12,
        failed=failed,
        skipped=[{"granule_id": "x", "reason": "outside the region"}] * 3,
        elapsed=9.25,
        peak_worker_rss=512 * 2**20,
    )
    html = res._repr_html_()
    assert html == result_html(res)
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>denied" not in html
    assert "s3://bucket/c&amp;d.zarr" in html
    assert "<th>failed granules</th><td>12</td>" in html
    assert html.count(">0-8_0_0</td>") == 10 and "2 more in the ledger" in html
    assert "3 (outside the region: 3)" in html and "512.0 MiB" in html and "9.2 s" in html


def test_progress_outside_a_kernel(capsys, monkeypatch):
    p = NotebookProgress("blocks", interval=3600)
    p(0, 4)
    p(1, 4)  # throttled
    p(4, 4)  # the end is always shown
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == ["blocks: 0/4 (0%)", "blocks: 4/4 (100%)"]
    assert p.updates == 2 and (p.done, p.total) == (4, 4)
    assert 'value="4" max="4"' in p._repr_html_()


def test_write_cube_progress_true_shows_a_bar(tmp_path, capsys):
    """Defect: ``write_cube(progress=True)`` called ``True(...)`` and raised TypeError."""
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive

    table = generate_archive(
        str(tmp_path / "archive"), SyntheticConfig(region="svalbard", n_granules=4, seed=5)
    )
    res = itslive_dask.write_cube(
        table, str(tmp_path / "cube.zarr"), chunks=(4, 256, 256), n_workers=1,
        memory_limit="1GiB", progress=True,
    )  # fmt: skip
    err = capsys.readouterr().err  # outside a kernel: lines on stderr
    assert res.blocks_written > 0
    assert f"cube blocks: {res.blocks_total}/{res.blocks_total} (100%)" in err
