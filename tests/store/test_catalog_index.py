"""Issue 11: a first build from a catalog reads no granule header from the archive.

``build_catalog`` keeps each remote granule's grid and chunk index (read with its header)
in the catalog's ``chunk_index`` column; ``write_cube`` keeps those records in the store
before its blocks run, so every GET a block task sends is a run of whole chunks of the
cube's variables. The truth for "whole chunks" is each granule's chunk index read
independently with h5py from its bytes; the truth for the values is a build that reads the
headers itself (the path the other tests check against the synthetic field).
"""

from __future__ import annotations

import json

import pytest
import xarray as xr
from bucket_copies import copy_to_bucket, h5_chunk_indexes, ranged_gets

from itslive_dask import write_cube
from itslive_dask.discovery.catalog import build_catalog, load_catalog, save_catalog
from itslive_dask.discovery.stac import CHUNK_INDEX_PROPERTY
from itslive_dask.io.listing import scan_headers
from itslive_dask.io.ranged import ChunkIndex
from itslive_dask.store.headers import header_key, seed_headers
from itslive_dask.store.target import resolve_target
from itslive_dask.table import chunk_index_record, chunk_index_text, validate_granule_table
from itslive_dask.testing.s3proxy import S3Proxy

VARS = ("vx", "vy", "v", "v_error")
CHUNKS = (8, 96, 96)
BUCKET = "catalog-index"


@pytest.fixture(scope="module")
def inputs(synthetic_archive, local_s3):
    return copy_to_bucket(local_s3, synthetic_archive.table.iloc[40:52], BUCKET)


@pytest.fixture(scope="module")
def truth_index(inputs, local_s3):
    """``"bucket/key" -> ChunkIndex`` of the cube's variables, from h5py."""
    return h5_chunk_indexes(local_s3, inputs.url, VARS)


@pytest.fixture(scope="module")
def catalog(inputs, local_s3):
    table = build_catalog(f"s3://{BUCKET}/", storage_options=local_s3.storage_options)
    assert table.attrs["failures"] == []
    return table


@pytest.fixture(scope="module")
def plain_cube(inputs, synthetic_archive, local_s3, dask_client, tmp_path_factory):
    """The cube of a build that reads every header itself (no chunk_index column)."""
    store = tmp_path_factory.mktemp("plain") / "cube.zarr"
    assert "chunk_index" not in inputs.columns
    write_cube(inputs, str(store), synthetic_archive.region, chunks=CHUNKS,
               storage_options=local_s3.storage_options, client=dask_client)  # fmt: skip
    return xr.open_zarr(store).load()


def _same_cube(a, b):
    a, b = a.sortby("granule_id"), b.sortby("granule_id")
    assert list(a.granule_id.values) == list(b.granule_id.values)
    for v in VARS:
        assert a[v].values.tobytes() == b[v].values.tobytes(), v


def test_the_catalog_keeps_each_remote_granules_chunk_index(catalog, inputs, truth_index):
    assert len(catalog) == len(inputs)
    for url, text in zip(catalog.url, catalog.chunk_index, strict=True):
        record = chunk_index_record(text)
        assert record is not None, url
        index = ChunkIndex.from_dict(record["index"])
        truth = truth_index[url.split("://", 1)[1]]
        for var in truth.variables:  # the byte ranges h5py finds, chunk for chunk
            got = index[var.name]
            assert [(r.index, r.offset, r.size) for r in got.refs] == [
                (r.index, r.offset, r.size) for r in var.refs
            ], (url, var.name)
        # every variable granules are known to carry was looked for, present or not
        assert set(VARS) <= set(record["asked"])


def test_the_column_survives_geoparquet_geojson_and_stac_items(catalog, tmp_path):
    for name in ("c.parquet", "c.geojson", "items.json"):
        back = load_catalog(save_catalog(catalog, tmp_path / name))
        assert list(back.granule_id) == list(catalog.granule_id), name
        assert list(back.chunk_index) == list(catalog.chunk_index), name
    # in STAC items, the record is a JSON object under one property
    items = json.loads((tmp_path / "items.json").read_text())
    features = items["features"] if "features" in items else items
    first = features[0]["properties"][CHUNK_INDEX_PROPERTY]
    assert first == chunk_index_record(catalog.chunk_index.iloc[0])


def test_a_first_build_from_a_stac_search_reads_only_whole_chunks(
    catalog, synthetic_archive, local_s3, dask_client, truth_index, plain_cube, tmp_path
):
    """``itslive-dask serve`` over a catalog with chunk indexes: its STAC items carry them,
    ``search`` keeps them, and the build from that search result reads no header."""
    from itslive_dask.discovery.api import search
    from itslive_dask.server import LocalSearchServer

    with LocalSearchServer(catalog) as srv:
        found = search(bbox=tuple(catalog.total_bounds), catalog=srv.url)
    assert sorted(found.granule_id) == sorted(catalog.granule_id)
    want = dict(zip(catalog.granule_id, catalog.chunk_index, strict=True))
    assert all(want[g] == c and c for g, c in zip(found.granule_id, found.chunk_index, strict=True))
    store = tmp_path / "cube.zarr"
    _build_reading_only_chunks(found, store, synthetic_archive, local_s3, dask_client, truth_index)
    _same_cube(xr.open_zarr(store).load(), plain_cube)


def _build_reading_only_chunks(table, store, archive, local_s3, client, truth_index):
    """Build ``table`` through the counting proxy and check that it read no header: no HEAD,
    and every GET a run of whole chunks of the cube's variables (h5py's index). Returns the
    build's result and its GETs."""
    with S3Proxy(local_s3) as proxy:
        res = write_cube(table, str(store), archive.region, chunks=CHUNKS,
                         storage_options=proxy.storage_options, client=client)  # fmt: skip
        st = proxy.reset_stats()
    assert res.failed == [] and res.granules_read > 0
    assert st.requests(method="HEAD") == 0
    got = ranged_gets(st)
    for key, start, end in got:
        refs = [r for v in truth_index[key].variables for r in v.refs]
        assert start in {r.offset for r in refs} and end in {r.end for r in refs}, (key, start)
    return res, got


def test_a_first_build_from_the_catalog_reads_only_whole_chunks(
    catalog, synthetic_archive, local_s3, dask_client, truth_index, plain_cube, tmp_path
):
    store = tmp_path / "cube.zarr"
    res, got = _build_reading_only_chunks(
        catalog, store, synthetic_archive, local_s3, dask_client, truth_index
    )
    assert len({k for k, *_ in got}) == res.granules_read  # each granule read was fetched
    kept = {p.stem for p in (store / "_itslive" / "headers").glob("*.json")}
    dropped = {s["granule_id"] for s in res.skipped}  # outside the region, repeated dates
    planned = [u for g, u in zip(catalog.granule_id, catalog.url, strict=True) if g not in dropped]
    assert dropped and len(planned) == len(catalog) - len(dropped)
    assert kept == {header_key(u) for u in planned}  # a record per planned granule, no more
    _same_cube(xr.open_zarr(store).load(), plain_cube)


def test_a_build_from_urls_reads_each_header_once(
    inputs, synthetic_archive, local_s3, dask_client, truth_index, plain_cube, tmp_path
):
    """Given bare URLs, planning reads each header (and its chunk index); the blocks then
    read no header again: the metadata GETs of the build equal those of one header scan."""
    urls = list(inputs.url)
    with S3Proxy(local_s3) as proxy:
        scan_headers(urls, proxy.storage_options)
        one_scan = _metadata_gets(proxy.reset_stats(), truth_index)
        write_cube(urls, str(tmp_path / "urls.zarr"), synthetic_archive.region, chunks=CHUNKS,
                   storage_options=proxy.storage_options, client=dask_client)  # fmt: skip
        build = _metadata_gets(proxy.reset_stats(), truth_index)
    assert one_scan and build == one_scan
    _same_cube(xr.open_zarr(tmp_path / "urls.zarr").load(), plain_cube)


def _metadata_gets(stats, truth_index):
    """GETs per key that are not whole runs of chunks of the cube's variables."""
    out: dict[str, int] = {}
    for key, start, _ in ranged_gets(stats):
        offsets = {r.offset for v in truth_index[key].variables for r in v.refs}
        if start not in offsets:
            out[key] = out.get(key, 0) + 1
    return out


def test_stale_or_broken_cells_fall_back_to_reading_the_header(
    catalog, synthetic_archive, local_s3, dask_client, plain_cube, tmp_path
):
    """A cell whose offsets point at wrong bytes (the object was replaced after the catalog
    was made), a cell that is not JSON and an empty one: those granules' headers are read,
    and the cube is the same."""
    table = catalog.copy()
    record = chunk_index_record(table.chunk_index.iloc[0])
    for var in record["index"]["variables"]:
        for row in var["refs"]:
            row[-3] += 17
    table.loc[0, "chunk_index"] = chunk_index_text(record)
    table.loc[1, "chunk_index"] = "{not json"
    table.loc[2, "chunk_index"] = ""
    store = tmp_path / "stale.zarr"
    res = write_cube(table, str(store), synthetic_archive.region, chunks=CHUNKS,
                     storage_options=local_s3.storage_options, client=dask_client)  # fmt: skip
    assert res.failed == []
    _same_cube(xr.open_zarr(store).load(), plain_cube)
    fixed = json.loads(
        (store / "_itslive" / "headers" / f"{header_key(table.url[0])}.json").read_text()
    )
    assert fixed["index"] != record["index"]  # the stale record was replaced


def test_seed_headers_writes_only_new_remote_records(tmp_path):
    """Unit: what ``seed_headers`` keeps (no archive involved)."""
    import geopandas as gpd
    from shapely.geometry import box

    rec = {"grid": {}, "index": {}, "asked": ["vx"]}
    table = gpd.GeoDataFrame(
        {
            "url": ["s3://b/a.nc", "s3://b/b.nc", "/data/c.nc", "s3://b/d.nc", "s3://b/e.nc"],
            "chunk_index": [*[chunk_index_text(rec)] * 3, "[1, 2]", ""],
        },
        geometry=[box(0, 0, 1, 1)] * 5,
        crs="EPSG:4326",
    )
    target = resolve_target(tmp_path / "s.zarr")
    folder = tmp_path / "s.zarr" / "_itslive" / "headers"
    folder.mkdir(parents=True)
    (folder / f"{header_key('s3://b/b.nc')}.json").write_text('{"kept": 1}')
    assert seed_headers(target, table) == 1  # a.nc only: b kept, c local, d/e not records
    assert json.loads((folder / f"{header_key('s3://b/a.nc')}.json").read_text()) == rec
    assert json.loads((folder / f"{header_key('s3://b/b.nc')}.json").read_text()) == {"kept": 1}
    assert seed_headers(target, table.drop(columns="chunk_index")) == 0
    assert seed_headers(target, table) == 0  # written once
    # with only=, the granules a build planned and no other
    other = resolve_target(tmp_path / "o.zarr")
    planned = table.assign(url=["s3://b/f.nc", "s3://b/g.nc", "/data/c.nc", "s3://b/d.nc", ""])
    assert seed_headers(other, planned, only={"s3://b/g.nc", "/data/c.nc"}) == 1
    written = {p.name for p in (tmp_path / "o.zarr" / "_itslive" / "headers").glob("*.json")}
    assert written == {f"{header_key('s3://b/g.nc')}.json"}


def test_the_optional_column_is_text_with_blanks(synthetic_archive):
    table = synthetic_archive.table.iloc[:3].copy()
    table["chunk_index"] = [chunk_index_text({"a": 1}), None, float("nan")]
    out = validate_granule_table(table)
    assert list(out.chunk_index) == ['{"a":1}', "", ""]
    assert chunk_index_record('{"a":1}') == {"a": 1}
    for bad in ("", "[1]", "{oops", None, 3.0):
        assert chunk_index_record(bad) is None


def test_a_geojson_catalog_with_whole_and_fractional_seconds_loads(synthetic_archive, tmp_path):
    """A defect found here: dates written as ISO text with and without fractional seconds
    in one file made ``load_catalog`` fail (pandas took the first row's format)."""
    import pandas as pd

    table = synthetic_archive.table.iloc[:3].copy()
    table["mid_date"] = pd.to_datetime(
        ["2020-05-15T00:00:00", "2020-05-16T12:00:00.5", "2020-05-17T01:02:03.123456789"],
        format="ISO8601",
    )
    back = load_catalog(save_catalog(table, tmp_path / "mixed.geojson"))
    got = back.set_index("granule_id").loc[list(table.granule_id), "mid_date"]
    assert list(got) == list(table.mid_date)


def test_a_search_of_the_catalog_file_keeps_the_column(catalog, tmp_path):
    from itslive_dask.discovery.api import search

    path = save_catalog(catalog, tmp_path / "granules.parquet")
    found = search(bbox=tuple(catalog.total_bounds), catalog=path)
    assert len(found) == len(catalog)
    want = dict(zip(catalog.granule_id, catalog.chunk_index, strict=True))
    assert all(want[g] == c and c for g, c in zip(found.granule_id, found.chunk_index, strict=True))


def test_a_lazy_cube_from_the_catalog_reads_only_whole_chunks(
    catalog, synthetic_archive, local_s3, dask_client, truth_index, plain_cube
):
    """``open_cube`` takes the records from the table (no store): the same requests, and a
    record that does not fit its object is read again, in the same computation."""
    from itslive_dask import open_cube

    table = catalog.copy()
    record = chunk_index_record(table.chunk_index.iloc[3])
    for var in record["index"]["variables"]:
        for row in var["refs"]:
            row[-3] += 17
    stale_url = table.url.iloc[3]
    table.loc[3, "chunk_index"] = chunk_index_text(record)
    with S3Proxy(local_s3) as proxy:
        cube = open_cube(table, synthetic_archive.region, chunks=CHUNKS,
                         storage_options=proxy.storage_options)  # fmt: skip
        got = dask_client.compute(cube[list(VARS)]).result()
        st = proxy.reset_stats()
    assert st.requests(method="HEAD") == 0
    stale_key = stale_url.split("://", 1)[1]
    for key, start, end in ranged_gets(st):
        if key == stale_key:
            continue  # its header was read again
        refs = [r for v in truth_index[key].variables for r in v.refs]
        assert start in {r.offset for r in refs} and end in {r.end for r in refs}, (key, start)
    assert any(k == stale_key for k, *_ in ranged_gets(st))
    _same_cube(got, plain_cube[list(VARS)])
