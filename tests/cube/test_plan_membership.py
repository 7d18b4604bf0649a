"""The pure planning functions against memberships computed by hand.

A 2 km x 2 km grid of 100 m pixels (pixel edges at whole kilometres) cut into four 1 km
tiles, row 0 in the north:

    y 2000 +---------+---------+
           | (0, 0)  | (0, 1)  |
    y 1000 +---------+---------+
           | (1, 0)  | (1, 1)  |
    y    0 +---------+---------+
           x 0      1000      2000
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import shapely

from itslive_dask.cube.plan import (
    BlockMembership,
    block_membership,
    footprint_tile_pairs,
    plan_cube,
    tile_parts,
)
from itslive_dask.geo.grid import TargetGrid
from itslive_dask.geo.transform import transformer
from itslive_dask.table import granule_table

GRID = TargetGrid(epsg=3031, resolution=100.0, x0=50.0, y0=1950.0, width=20, height=20)
TILES = {
    (0, 0): (0, 1000, 1000, 2000),
    (0, 1): (1000, 1000, 2000, 2000),
    (1, 0): (0, 0, 1000, 1000),
    (1, 1): (1000, 0, 2000, 1000),
}


def corner_square(corner, distance, angle_deg, size=100.0):
    """A square whose nearest point to ``corner`` is ``distance`` away, towards ``angle_deg``
    (0 = east, 90 = north), lying on the far side of that point (north-east quadrant)."""
    a = np.radians(angle_deg)
    x, y = corner[0] + distance * np.cos(a), corner[1] + distance * np.sin(a)
    return shapely.box(x, y, x + size, y + size)


def test_tile_parts_keep_only_tiles_meeting_the_region_and_clip_them():
    # an L: the southern strip below y = 900 and the western strip left of x = 900;
    # tile (0, 1) (x >= 1000, y >= 1000) does not meet it
    region = shapely.union(shapely.box(0, 0, 2000, 900), shapely.box(0, 0, 900, 2000))
    ids, parts = tile_parts(GRID, region, (10, 10))
    assert ids.tolist() == [[0, 0], [1, 0], [1, 1]]
    # areas by hand: 900 x 1000; 1000 x 900 + 900 x 100; 1000 x 900
    assert shapely.area(parts).tolist() == pytest.approx([900_000.0, 990_000.0, 900_000.0])
    assert parts[0].equals(shapely.box(0, 1000, 900, 2000))
    assert parts[2].equals(shapely.box(1000, 0, 2000, 900))


def test_tile_parts_match_window_boxes_on_a_ragged_grid():
    """Edge tiles are cut at the grid's edge, as ``grid.window_box`` cuts them."""
    grid = TargetGrid(epsg=3031, resolution=120.0, x0=52.5, y0=67.5 + 120 * 30, width=23, height=17)
    region = shapely.box(*grid.bounds)
    ids, parts = tile_parts(grid, region, (8, 10))
    assert len(ids) == 3 * 3
    for (iy, ix), part in zip(ids.tolist(), parts, strict=True):
        rows = slice(iy * 8, min((iy + 1) * 8, grid.height))
        cols = slice(ix * 10, min((ix + 1) * 10, grid.width))
        assert part.equals(grid.window_box(rows, cols))


def test_footprint_tile_pairs_hand_computed():
    parts = np.array([shapely.box(*TILES[k]) for k in sorted(TILES)], dtype=object)
    index = {k: i for i, k in enumerate(sorted(TILES))}
    feet = np.array(
        [
            # A: inside (0, 0); 600 m from (0, 1) and from (1, 0): one pair
            shapely.box(200, 1600, 400, 1800),
            # B: east of the grid, 300 m from (0, 1) and from (1, 1)
            shapely.box(2300, 1200, 2400, 1300),
            # C: 499 m from the north-east corner of (0, 1), 5.625 degrees north of east:
            # inside the true 500 m buffer, outside every polygonal buffer of 500 m
            # (its chord there is 497.6 m from the corner with 8 segments per quarter,
            # 482.8 m with 2)
            corner_square((2000, 2000), 499.0, 5.625),
            # D: the same direction at 501 m: no pair
            corner_square((2000, 2000), 501.0, 5.625),
            # E: exactly 500 m east of (0, 1), 707 m from (1, 1): a pair (distance <= 500)
            shapely.box(2500, 1500, 2600, 1600),
            # F: far away
            shapely.box(10_000, 10_000, 10_100, 10_100),
        ],
        dtype=object,
    )
    expected = {(0, (0, 0)), (1, (0, 1)), (1, (1, 1)), (2, (0, 1)), (4, (0, 1))}
    gran, tile = footprint_tile_pairs(feet, parts, 500.0)
    assert set(zip(gran.tolist(), tile.tolist(), strict=True)) == {
        (g, index[t]) for g, t in expected
    }
    # sorted by footprint, then tile
    assert list(zip(gran.tolist(), tile.tolist(), strict=True)) == sorted(
        zip(gran.tolist(), tile.tolist(), strict=True)
    )
    # the knife-edge pair is lost by the polygonal buffer on its own (what the planner did)
    grown = shapely.buffer(parts, 500.0, quad_segs=2)
    g_old, _ = shapely.STRtree(grown).query(feet, predicate="intersects")
    assert 2 not in set(g_old.tolist())


@pytest.mark.parametrize("shape", ["aligned", "rotated", "diagonal strips"])
def test_footprint_tile_pairs_equal_brute_force_distance(shape):
    """Random footprints and region-clipped tile parts: the pairs are exactly those that
    ``shapely.dwithin`` finds by testing every pair. Footprints aligned with the grid or
    rotated leave few envelope candidates (tested pair by pair); long diagonal strips
    leave many (a second tree pass): both ways give the same, exact, pairs."""
    rng = np.random.default_rng(11)
    region = shapely.Polygon([(0, 0), (2000, 300), (1700, 2000), (200, 1500)])
    _, parts = tile_parts(GRID, region, (4, 4))
    n = 400
    cx, cy = rng.uniform(-800, 2800, n), rng.uniform(-800, 2800, n)
    w, h, ang = rng.uniform(20, 600, n), rng.uniform(20, 600, n), rng.uniform(0, np.pi, n)
    if shape == "aligned":
        ang = np.zeros(n)
    elif shape == "diagonal strips":
        w, h, ang = rng.uniform(1500, 2500, n), np.full(n, 20.0), np.full(n, np.pi / 4)
    feet = []
    for i in range(n):
        c, s = np.cos(ang[i]), np.sin(ang[i])
        pts = [
            (cx[i] + c * u - s * v, cy[i] + s * u + c * v)
            for u, v in ((-w[i], -h[i]), (w[i], -h[i]), (w[i], h[i]), (-w[i], h[i]))
        ]
        feet.append(shapely.Polygon(pts))
    feet_a = np.array(feet, dtype=object)
    gi, ti = np.meshgrid(np.arange(n), np.arange(len(parts)), indexing="ij")
    truth = shapely.dwithin(feet_a[gi.ravel()], parts[ti.ravel()], 500.0)
    expected = set(zip(gi.ravel()[truth].tolist(), ti.ravel()[truth].tolist(), strict=True))
    gran, tile = footprint_tile_pairs(feet_a, parts, 500.0)
    assert set(zip(gran.tolist(), tile.tolist(), strict=True)) == expected
    assert len(gran) == len(expected)  # no pair twice
    assert 0 < len(expected) < n * len(parts)


def test_footprint_tile_pairs_empty_inputs():
    none = np.array([], dtype=object)
    one = np.array([shapely.box(0, 0, 1, 1)], dtype=object)
    for feet, parts in ((none, one), (one, none)):
        g, t = footprint_tile_pairs(feet, parts, 500.0)
        assert g.tolist() == [] and t.tolist() == []


def test_block_membership_hand_computed():
    # (layer, tile) pairs, one repeated; t_offset 1, 2 layers per block:
    # cube index = layer + 1, block = index // 2 -> layer 0: tb 0, 1-2: tb 1, 3: tb 2
    layer = np.array([0, 3, 1, 2, 0, 3])
    tile = np.array([(0, 0), (1, 1), (0, 0), (0, 0), (1, 1), (1, 1)])
    m = block_membership(layer, tile, 2, t_offset=1)
    assert m.ids.tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 0], [2, 1, 1]]
    assert m.ptr.tolist() == [0, 1, 2, 4, 5]
    assert m.layers.tolist() == [0, 0, 1, 2, 3]
    assert m == {(0, 0, 0): (0,), (0, 1, 1): (0,), (1, 0, 0): (1, 2), (2, 1, 1): (3,)}
    assert len(m) == 4 and m.n_pairs == 5
    assert (1, 1, 1) not in m and m.get((1, 1, 1)) is None
    assert m.layers_of((1, 1, 1)).tolist() == [] and m.layers_of((1, 0, 0)).tolist() == [1, 2]
    with pytest.raises(KeyError):
        m[(5, 5, 5)]
    assert pickle.loads(pickle.dumps(m)) == m
    assert block_membership(np.array([], int), np.empty((0, 2), int), 4) == {}


def test_block_membership_matches_a_dict_built_pair_by_pair():
    rng = np.random.default_rng(5)
    layer = rng.integers(0, 300, 5000)
    tile = rng.integers(0, 7, (5000, 2))
    expected: dict = {}
    for lay, (iy, ix) in zip(layer.tolist(), tile.tolist(), strict=True):
        expected.setdefault(((lay + 13) // 16, iy, ix), set()).add(lay)
    m = block_membership(layer, tile, 16, t_offset=13)
    assert m == {k: tuple(sorted(v)) for k, v in expected.items()}
    assert list(m) == sorted(expected)
    assert list(m.keys()) == sorted(expected)


def test_block_membership_rejects_inconsistent_arrays():
    with pytest.raises(ValueError):
        BlockMembership(np.zeros((2, 3)), np.array([0, 1]), np.array([0]))


def to_lonlat(geom):
    """A polygon in EPSG:3031 -> lon/lat, vertex by vertex (no densifying: the test's squares
    are small, and their corners must stay where they were put)."""
    tr = transformer(3031, 4326)
    return shapely.transform(geom, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def mk_row(gid, footprint_ll, mid="2020-01-01"):
    mid = pd.Timestamp(mid)
    return {
        "granule_id": gid, "url": f"s3://bucket/{gid}.nc", "mid_date": mid,
        "acquisition_date_img1": mid - pd.Timedelta(days=5), "acquisition_date_img2": mid + pd.Timedelta(days=5),
        "date_dt": 10.0, "satellite_img1": "LC08", "satellite_img2": "LC08", "sensor": "landsat",
        "epsg": 3031, "percent_valid": 50.0, "version": 2, "resolution": 120.0, "geometry": footprint_ll,
    }  # fmt: skip


def test_plan_keeps_the_knife_edge_granule():
    """A granule 499 m from the region's corner (inside the 500 m tolerance) is planned into
    the corner's block; one 501 m away is dropped. Failed before: the polygonal buffer of
    the tile parts missed the first, so the granule was dropped as outside the region."""
    # a 120 m grid in Antarctica, 40 x 40 pixels, 20 x 20 pixel tiles
    grid = TargetGrid(
        epsg=3031, resolution=120.0, x0=-1_500_000 + 52.5, y0=-300_000 + 67.5, width=40, height=40
    )
    region = shapely.box(*grid.bounds)
    ne = (grid.bounds[2], grid.bounds[3])
    near = to_lonlat(corner_square(ne, 499.0, 5.625, size=2000.0))
    far = to_lonlat(corner_square(ne, 501.0, 5.625, size=2000.0))
    inside = to_lonlat(shapely.box(*grid.bounds).buffer(-100, join_style="mitre"))
    tab = granule_table(
        [
            mk_row("inside", inside),
            mk_row("near", near, "2020-02-01"),
            mk_row("far", far, "2020-03-01"),
        ]
    )
    plan = plan_cube(tab, grid, region, chunks=(1, 20, 20))
    assert list(plan.layers["granule_id"]) == ["inside", "near"]
    assert list(plan.dropped["granule_id"]) == ["far"]
    assert plan.blocks[(1, 0, 1)] == (1,)  # layer 1 ("near") reads only the north-east tile
    assert [(p, r.granule_id) for p, r in plan.block_refs((1, 0, 1))] == [(0, "near")]
