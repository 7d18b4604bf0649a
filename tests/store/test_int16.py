"""``write_cube(..., velocity_encoding="int16")``: the production cubes' encoding.

vx, vy, v, v_error are stored as whole m/yr in int16 with ``_FillValue = -32767``; xarray
opens them as float32 with NaN. Checked against hand-computed roundings, against a float32
build of the same granules (within 0.5 m/yr) and against the synthetic archive's analytic
truth; resume and append keep the encoding.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr
import zarr

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.region import to_crs
from itslive_dask.store.template import INT16_FILL, encode_int16
from itslive_dask.store.write import write_cube

VELOCITIES = ("vx", "vy", "v", "v_error")


def test_encode_int16_rounds_half_to_even_and_fills_nan():
    got = encode_int16(
        np.array(
            [2.5, 3.5, -0.5, -1.5, 0.49, 0.51, -7.2, np.nan, 1e6, -1e6, np.inf], dtype="float32"
        )
    )
    assert got.dtype == np.int16
    assert got.tolist() == [2, 4, 0, -2, 0, 1, -7, -32767, 32767, -32766, 32767]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, synthetic_archive, dask_client):
    """The same 8 granules built as float32 and as int16 (zarr v3), and the next 4 granules."""
    arch = synthetic_archive
    t = arch.table
    inside = t[t.intersects(arch.region)].reset_index(drop=True)
    base = tmp_path_factory.mktemp("int16")
    kw = dict(storage_options=arch.storage_options, chunks=(4, 96, 96), client=dask_client)
    f32, i16 = str(base / "f32.zarr"), str(base / "i16.zarr")
    write_cube(inside.iloc[:8], f32, arch.region, **kw)
    write_cube(inside.iloc[:8], i16, arch.region, velocity_encoding="int16", **kw)
    return f32, i16, inside, kw


def _by_id(ds: xr.Dataset) -> dict[str, int]:
    return {str(g): k for k, g in enumerate(ds.granule_id.values)}


def _assert_close_to_float(i16: xr.Dataset, f32: xr.Dataset) -> int:
    """Every int16 layer equals the float32 layer of the same granule rounded; same mask."""
    ref = _by_id(f32)
    n = 0
    for k, gid in enumerate(i16.granule_id.values):
        j = ref[str(gid)]
        for v in VELOCITIES:
            a, b = i16[v].values[k], f32[v].values[j]
            assert a.dtype == np.float32
            assert np.array_equal(np.isnan(a), np.isnan(b)), (gid, v)
            ok = ~np.isnan(b)
            assert np.abs(a[ok] - b[ok]).max(initial=0) <= 0.5, (gid, v)
            assert np.array_equal(a[ok], np.rint(b[ok])), (gid, v)
            n += int(ok.sum())
    return n


def test_int16_store_matches_float32_store_and_truth(pair, synthetic_archive):
    from cube.test_engine_synthetic import QUANT, _expected_layer  # the engine tests' truth

    f32_path, i16_path, _, _ = pair
    raw = zarr.open_group(i16_path, mode="r", use_consolidated=False)
    for v in VELOCITIES:
        assert raw[v].dtype == np.int16
        assert raw[v].attrs.get("_FillValue") == INT16_FILL or raw[v].fill_value == INT16_FILL
    assert json.loads(raw.attrs["itslive_dask"])["velocity_encoding"] == "int16"
    f32, i16 = xr.open_zarr(f32_path).compute(), xr.open_zarr(i16_path).compute()
    assert (
        xr.open_zarr(f32_path).vx.dtype == np.float32
        and zarr.open_group(f32_path, mode="r")["vx"].dtype == np.float32
    )
    n = _assert_close_to_float(i16, f32)
    assert n > 10_000
    # against the analytic truth: the granule's own int16 rounding plus the store's
    arch = synthetic_archive
    region_t = to_crs(arch.region, 3413)
    rows = arch.table.set_index("granule_id")
    worst, checked = 0.0, 0
    for k, gid in enumerate(i16.granule_id.values):
        evx, evy, valid = _expected_layer(i16, rows.loc[str(gid)], arch.storage_options, region_t)
        both = valid & np.isfinite(i16.vx.values[k])
        err = np.hypot(i16.vx.values[k][both] - evx[both], i16.vy.values[k][both] - evy[both])
        worst, checked = max(worst, float(err.max(initial=0))), checked + int(both.sum())
    print(f"\nint16 store vs truth over {checked} pixels: max |dv| {worst:.3f} m/yr")
    assert checked > 10_000
    assert worst <= np.hypot(QUANT + 0.5, QUANT + 0.5) + 1e-3


def test_append_and_resume_keep_int16(pair, tmp_path, synthetic_archive):
    import shutil

    _, i16_path, inside, kw = pair
    store = str(tmp_path / "i16.zarr")
    shutil.copytree(i16_path, store)
    more = inside.iloc[:12]
    res = write_cube(more, store, mode="append", **kw)  # no velocity_encoding: the store's
    assert res.layers_added == 4
    # an interrupted build: forget every block marker, then resume rewrites every block
    blocks = os.path.join(store, "_itslive", "blocks")
    for name in os.listdir(blocks):
        os.remove(os.path.join(blocks, name))
    res = write_cube(more, store, mode="resume", **kw)
    assert res.blocks_written == res.blocks_total > 0
    raw = zarr.open_group(store, mode="r", use_consolidated=False)
    assert all(raw[v].dtype == np.int16 for v in VELOCITIES)
    assert json.loads(raw.attrs["itslive_dask"])["velocity_encoding"] == "int16"
    got = xr.open_zarr(store).compute()
    assert got.sizes["mid_date"] == 12
    # every layer, the first build's and the appended ones, is the float32 build rounded
    f32_more = str(tmp_path / "f32-more.zarr")
    write_cube(more, f32_more, synthetic_archive.region, **kw)
    assert _assert_close_to_float(got, xr.open_zarr(f32_more).compute()) > 10_000


def test_unknown_encoding_is_refused_before_writing(tmp_path, synthetic_archive):
    with pytest.raises(InvalidInputError, match="velocity_encoding"):
        write_cube(
            synthetic_archive.table.iloc[:2],
            str(tmp_path / "x.zarr"),
            synthetic_archive.region,
            velocity_encoding="int8",
        )
    assert not (tmp_path / "x.zarr").exists()
