"""The cube engine against the synthetic archive's analytic truth (local S3, LocalCluster).

The expected value of every output pixel is computed here independently of the engine: the
target pixel centre is moved into the granule's CRS with pyproj, the granule pixel containing
it is found, and the analytic field is evaluated at that source pixel centre, expressed along
the TARGET axes by the synthetic module's own rotation (meridian convergence). What remains
between cube and expectation is the int16 quantisation of the granule (|dvx|, |dvy| <= 0.5).
"""

from __future__ import annotations

import time

import dask
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from itslive_dask.cube.lazy import open_cube
from itslive_dask.geo.region import to_crs
from itslive_dask.io.dataset import open_granule
from itslive_dask.testing.synthetic import truth_velocity

QUANT = 0.5  # int16 rounding of each component in the granule


def _expected_layer(cube, row, storage_options, region_t):
    """Expected (vx, vy, valid) on the cube grid for one granule, computed independently."""
    g = open_granule(row.url, storage_options=storage_options)
    tgt = cube.rio.crs.to_epsg()
    X, Y = np.meshgrid(cube.x.values, cube.y.values)
    inside = shapely.intersects_xy(region_t, X, Y)
    to_src = Transformer.from_crs(tgt, int(row.epsg), always_xy=True)
    xs, ys = to_src.transform(X, Y)
    gx, gy = g.x.values, g.y.values
    j = np.floor((xs - gx[0]) / (gx[1] - gx[0]) + 0.5)
    i = np.floor((ys - gy[0]) / (gy[1] - gy[0]) + 0.5)
    ok = inside & (i >= 0) & (i < gy.size) & (j >= 0) & (j < gx.size)
    ii, jj = i[ok].astype(int), j[ok].astype(int)
    v_src = g.v.values
    valid = np.zeros(X.shape, bool)
    valid[ok] = np.isfinite(v_src[ii, jj])
    # truth at the source pixel centre, expressed along the target axes
    sx, sy = gx[jj], gy[ii]
    back = Transformer.from_crs(int(row.epsg), tgt, always_xy=True)
    tx, ty = back.transform(sx, sy)
    evx, evy = np.full(X.shape, np.nan), np.full(X.shape, np.nan)
    evx[ok], evy[ok] = truth_velocity(tx, ty, tgt, row.mid_date)
    return evx, evy, valid


def _compare(cube_c, table, storage_options, region_t):
    """Errors of every valid pixel of every layer, and layer validity mismatches."""
    rows = table.set_index("granule_id")
    errs, angs, speeds, mismatch, checked = [], [], [], 0, 0
    for k, gid in enumerate(cube_c.granule_id.values):
        row = rows.loc[str(gid)]
        evx, evy, valid = _expected_layer(cube_c, row, storage_options, region_t)
        vx = cube_c.vx.values[k]
        vy = cube_c.vy.values[k]
        got_valid = np.isfinite(vx)
        mismatch += int((got_valid != valid).sum())
        both = got_valid & valid
        checked += int(both.sum())
        errs.append(np.hypot(vx[both] - evx[both], vy[both] - evy[both]))
        sp = np.hypot(evx[both], evy[both])
        ang = np.degrees(np.arctan2(vy[both], vx[both]) - np.arctan2(evy[both], evx[both]))
        angs.append(np.abs((ang + 180) % 360 - 180))
        speeds.append(sp)
    return np.concatenate(errs), np.concatenate(angs), np.concatenate(speeds), mismatch, checked


@pytest.fixture(scope="module")
def cube_and_truth(synthetic_archive, dask_client):
    arch = synthetic_archive
    cube = open_cube(
        arch.table, arch.region, storage_options=arch.storage_options, chunks=(8, 128, 128)
    )
    computed = cube.compute()  # on the LocalCluster of processes (default client)
    region_t = to_crs(arch.region, cube.rio.crs.to_epsg())
    return cube, computed, region_t


def test_cube_mixes_crs_and_versions(cube_and_truth):
    _, c, _ = cube_and_truth
    epsgs = set(int(e) for e in c.source_epsg.values)
    assert 3413 in epsgs and len({e for e in epsgs if 32600 < e < 32700}) >= 2, epsgs
    assert {1, 2} <= set(int(v) for v in c.version.values)
    assert c.rio.crs.to_epsg() == 3413
    md = c.mid_date.values
    assert np.all(md[1:] > md[:-1])  # unique and sorted


def test_cube_matches_analytic_truth(cube_and_truth, synthetic_archive):
    _, c, region_t = cube_and_truth
    err, ang, sp, mismatch, checked = _compare(
        c, synthetic_archive.table, synthetic_archive.storage_options, region_t
    )
    fast = sp > 200
    print(
        f"\naccuracy over {checked} pixels of {c.sizes['mid_date']} layers: "
        f"median |dv| {np.median(err):.3f} m/yr, p99 {np.percentile(err, 99):.3f}, max {err.max():.3f}; "
        f"direction (speed>200 m/yr) median {np.median(ang[fast]):.4f} deg, max {ang[fast].max():.4f} deg; "
        f"validity mismatches {mismatch}"
    )
    assert checked > 10_000
    assert err.max() <= np.hypot(QUANT, QUANT) + 1e-3  # quantisation bound, nothing else
    assert np.median(err) < 0.5
    assert ang[fast].max() < 0.25  # 0.5 m/yr / 200 m/yr = 0.14 deg worst case from rounding
    assert mismatch <= 0.001 * checked  # only pixels on a pyproj round-off knife edge


def test_scalar_only_reprojection_fails_the_truth_test(synthetic_archive, monkeypatch):
    """The same check on a cube warped without rotating vx/vy must fail: the test can fail."""
    import itslive_dask.cube.kernel as blocks

    arch = synthetic_archive
    monkeypatch.setattr(blocks, "rotate", lambda vx, vy, cos, sin: (vx, vy))
    utm = arch.table[arch.table.epsg != 3413].head(6)
    cube = open_cube(utm, arch.region, storage_options=arch.storage_options)
    with dask.config.set(scheduler="synchronous"):  # in-process so the patch applies
        c = cube.compute()
    region_t = to_crs(arch.region, 3413)
    err, _, _, _, checked = _compare(c, arch.table, arch.storage_options, region_t)
    assert checked > 1000
    assert np.median(err) > 50 * QUANT  # tens to thousands of m/yr off


def test_chunk_invariance_bit_for_bit(synthetic_archive, dask_client, cube_and_truth):
    arch = synthetic_archive
    _, ref, _ = cube_and_truth
    sub = arch.table.iloc[: min(len(arch.table), 12)]
    outs = []
    for chunks in [(2, 64, 64), (5, 100, 37), (12, 512, 512)]:
        c = open_cube(
            sub, arch.region, storage_options=arch.storage_options, chunks=chunks
        ).compute()
        outs.append(c)
    for other in outs[1:]:
        for v in ("vx", "vy", "v", "v_error"):
            assert outs[0][v].values.tobytes() == other[v].values.tobytes(), v
    # a granule's layer does not depend on the other granules of the cube either
    pos = {str(g): k for k, g in enumerate(ref.granule_id.values)}
    for k, gid in enumerate(outs[0].granule_id.values):
        assert ref.v.values[pos[str(gid)]].tobytes() == outs[0].v.values[k].tobytes()


def test_no_valid_pixel_outside_region(cube_and_truth):
    _, c, region_t = cube_and_truth
    X, Y = np.meshgrid(c.x.values, c.y.values)
    outside = ~shapely.intersects_xy(region_t, X, Y)
    assert outside.any()
    assert not np.isfinite(c.v.values[:, outside]).any()


def test_bilinear_is_closer_to_truth_at_pixel_centres(synthetic_archive, dask_client):
    arch = synthetic_archive
    sub = arch.table[arch.table.version == 2].iloc[:8]
    res = {}
    for method in ("nearest", "bilinear"):
        c = open_cube(
            sub, arch.region, storage_options=arch.storage_options, resampling=method
        ).compute()
        X, Y = np.meshgrid(c.x.values, c.y.values)
        errs = []
        for k in range(c.sizes["mid_date"]):
            tvx, tvy = truth_velocity(X, Y, 3413, pd.Timestamp(c.mid_date.values[k]))
            ok = np.isfinite(c.vx.values[k])
            errs.append(np.hypot(c.vx.values[k][ok] - tvx[ok], c.vy.values[k][ok] - tvy[ok]))
        res[method] = np.concatenate(errs)
    print(
        f"\nvs truth at target centres: nearest median {np.median(res['nearest']):.2f} m/yr, "
        f"bilinear median {np.median(res['bilinear']):.2f} m/yr"
    )
    assert np.median(res["bilinear"]) < np.median(res["nearest"])


def test_graph_build_opens_nothing_and_scales(synthetic_archive):
    """Building the graph reads no file and computes nothing; 100,000 granules take seconds."""
    arch = synthetic_archive
    base = arch.table.iloc[[0]]
    n = 100_000
    rng = np.random.default_rng(1)
    big = base.loc[base.index.repeat(n)].reset_index(drop=True)
    big["granule_id"] = [f"G{i:06d}" for i in range(n)]
    big["url"] = [f"s3://no-such-bucket-anywhere/G{i:06d}.nc" for i in range(n)]
    big["mid_date"] = big["mid_date"] + pd.to_timedelta(rng.integers(0, 2500, n), unit="D")

    def forbid(*args, **kwargs):
        raise AssertionError("building the graph must not compute anything")

    t0 = time.perf_counter()
    with dask.config.set(scheduler=forbid):
        cube = open_cube(big, arch.region, chunks=(16, 512, 512))
    elapsed = time.perf_counter() - t0
    n_tasks = len(cube.__dask_graph__())
    n_blocks = int(np.prod(cube.v.data.numblocks))
    print(f"\ngraph for {n} granules: {n_tasks} tasks, {n_blocks} blocks, built in {elapsed:.1f} s")
    # one task per block, one slice per block and variable, the shared config, the coords
    assert n_tasks <= n_blocks * (1 + 4) + 1 + 50
    assert cube.sizes["mid_date"] == n


def test_nearest_v_agrees_with_gdal(cube_and_truth, synthetic_archive):
    """Our nearest-neighbour v equals GDAL's (rasterio.warp.reproject) on the same grid."""
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    from rasterio.warp import reproject

    _, c, region_t = cube_and_truth
    X, Y = np.meshgrid(c.x.values, c.y.values)
    inside = shapely.intersects_xy(region_t, X, Y)
    res = float(c.x.values[1] - c.x.values[0])
    dst_transform = Affine(res, 0, c.x.values[0] - res / 2, 0, -res, c.y.values[0] + res / 2)
    counts = np.isfinite(c.v.values).sum(axis=(1, 2))
    tested = 0
    for epsg in sorted({int(e) for e in c.source_epsg.values}):
        cand = [k for k in np.flatnonzero(c.source_epsg.values == epsg) if counts[k] > 500]
        if not cand:
            continue
        k = max(cand, key=lambda i: counts[i])
        g = open_granule(
            str(c.granule_url.values[k]), storage_options=synthetic_archive.storage_options
        )
        gx, gy = g.x.values, g.y.values
        dx, dy = gx[1] - gx[0], gy[1] - gy[0]
        src_transform = Affine(dx, 0, gx[0] - dx / 2, 0, dy, gy[0] - dy / 2)
        gdal = np.full(X.shape, np.nan, "float32")
        reproject(
            g.v.values.astype("float32"),
            gdal,
            src_transform=src_transform,
            src_crs=f"EPSG:{epsg}",
            dst_transform=dst_transform,
            dst_crs="EPSG:3413",
            resampling=Resampling.nearest,
            src_nodata=np.nan,
            dst_nodata=np.nan,
        )
        gdal[~inside] = np.nan
        ours = c.v.values[k]
        n_valid = int(np.isfinite(gdal).sum())
        differ = ~((ours == gdal) | (np.isnan(ours) & np.isnan(gdal)))
        # where they differ, the target centre must sit on a knife edge between two source
        # pixels (GDAL interpolates the transform along scanlines, error up to 1/8 px)
        xs, ys = Transformer.from_crs(3413, epsg, always_xy=True).transform(X[differ], Y[differ])
        fj, fi = (xs - gx[0]) / dx, (ys - gy[0]) / dy
        edge = np.minimum(np.abs(fj - np.floor(fj) - 0.5), np.abs(fi - np.floor(fi) - 0.5))
        print(
            f"\nEPSG:{epsg} granule: {n_valid} GDAL-valid pixels, {int(differ.sum())} differ from GDAL, "
            f"all within {edge.max() if edge.size else 0:.4f} px of a source pixel edge"
        )
        assert n_valid > 500
        assert differ.sum() <= 0.05 * n_valid
        assert edge.size == 0 or edge.max() < 0.02
        tested += 1
    assert tested >= 3
