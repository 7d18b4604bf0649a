"""Issue 11: a resumed build reads no granule header again (the records kept in the store).

The first build keeps each remote granule's light header and chunk index in
``_itslive/headers/``; a resume whose blocks must run again (markers lost, as after a kill)
then fetches from each granule only byte ranges that are whole chunks of the cube's
variables: no HEAD, no metadata read. The truth for "whole chunks" is each granule's chunk
index read independently with h5py from its bytes.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
from bucket_copies import copy_to_bucket, h5_chunk_indexes, ranged_gets

from itslive_dask import write_cube
from itslive_dask.store.headers import header_key
from itslive_dask.testing.s3proxy import S3Proxy

VARS = ("vx", "vy", "v", "v_error")
CHUNKS = (8, 96, 96)
BUCKET = "headers-in"


@pytest.fixture(scope="module")
def inputs(synthetic_archive, local_s3):
    return copy_to_bucket(local_s3, synthetic_archive.table.iloc[20:32], BUCKET)


@pytest.fixture(scope="module")
def chunk_edges(inputs, local_s3):
    """``"bucket/key" -> (chunk offsets, chunk ends)`` of the cube's variables, from h5py."""
    out = {}
    for key, index in h5_chunk_indexes(local_s3, inputs.url, VARS).items():
        refs = [r for v in index.variables for r in v.refs]
        out[key] = ({r.offset for r in refs}, {r.end for r in refs})
    return out


@pytest.fixture
def built(inputs, synthetic_archive, local_s3, dask_client, tmp_path):
    store = tmp_path / "cube.zarr"
    with S3Proxy(local_s3) as proxy:
        res = write_cube(
            inputs,
            str(store),
            synthetic_archive.region,
            storage_options=proxy.storage_options,
            chunks=CHUNKS,
            client=dask_client,
        )
        first = proxy.reset_stats()
    assert res.failed == [] and res.granules_read > 0
    return store, res, first, xr.open_zarr(store).load()


def _lose_markers(store):
    """What a kill before the blocks' markers were written leaves: data without markers."""
    shutil.rmtree(store / "_itslive" / "blocks")


def test_the_first_build_keeps_one_record_per_granule_read(built, inputs, chunk_edges):
    store, res, first, _ = built
    metadata = [(k, a) for k, a, _ in ranged_gets(first) if a not in chunk_edges[k][0]]
    assert len({k for k, _ in metadata}) == res.granules_read  # it read every header it used
    assert first.requests(method="HEAD") == 0  # sizes from the first block, not a HEAD
    kept = {p.stem for p in (store / "_itslive" / "headers").glob("*.json")}
    read = {header_key(u) for u in inputs.url}
    assert len(kept) == res.granules_read and kept <= read
    record = json.loads(next((store / "_itslive" / "headers").glob("*.json")).read_text())
    assert record["grid"]["x"].keys() == {"start", "step", "size"}  # axes kept compactly
    assert set(record["asked"]) == set(VARS)


def test_resume_after_lost_markers_reads_only_whole_chunks(
    built, inputs, synthetic_archive, local_s3, dask_client, chunk_edges
):
    store, res, _, cube = built
    _lose_markers(store)
    with S3Proxy(local_s3) as proxy:
        again = write_cube(
            inputs,
            str(store),
            mode="resume",
            storage_options=proxy.storage_options,
            client=dask_client,
        )
        st = proxy.reset_stats()
    assert again.blocks_written == res.blocks_written  # every block ran again
    assert st.requests(method="HEAD") == 0
    got = ranged_gets(st)
    assert got, "the resume read nothing"
    for key, start, end in got:  # each GET is a run of whole chunks of the cube's variables
        offsets, ends = chunk_edges[key]
        assert start in offsets and end in ends, (key, start, end)
    resumed = xr.open_zarr(store).load()
    for v in VARS:
        assert resumed[v].values.tobytes() == cube[v].values.tobytes(), v


def test_a_record_that_does_not_fit_its_object_is_replaced(built, inputs, local_s3, dask_client):
    """A kept chunk index pointing at wrong bytes (the object was replaced): the block reads
    the granule's header again, the cube is still right and the record is rewritten."""
    store, _, _, cube = built
    folder = store / "_itslive" / "headers"
    victim = sorted(folder.glob("*.json"))[0]
    record = json.loads(victim.read_text())
    for var in record["index"]["variables"]:
        for row in var["refs"]:
            row[-3] += 17  # every chunk offset now points into the wrong bytes
    victim.write_text(json.dumps(record))
    _lose_markers(store)
    with S3Proxy(local_s3) as proxy:
        again = write_cube(
            inputs,
            str(store),
            mode="resume",
            storage_options=proxy.storage_options,
            client=dask_client,
        )
    assert again.failed == []
    resumed = xr.open_zarr(store).load()
    for v in VARS:
        assert resumed[v].values.tobytes() == cube[v].values.tobytes(), v
    fixed = json.loads(victim.read_text())
    assert fixed["index"] != record["index"]
    np.testing.assert_array_equal(
        [r[-3] for var in fixed["index"]["variables"] for r in var["refs"]],
        [r[-3] - 17 for var in record["index"]["variables"] for r in var["refs"]],
    )


def test_resume_and_append_from_urls_read_no_known_header(
    inputs, synthetic_archive, local_s3, dask_client, tmp_path
):
    """Given bare URLs (the tutorial's way: a list of files), ``resume`` reads no header
    and ``append`` reads only the new granules' headers: the store kept the rows."""
    urls = list(inputs.url)
    first, later = urls[:8], urls[8:]
    store = tmp_path / "urls.zarr"
    with S3Proxy(local_s3) as proxy:
        opts = proxy.storage_options
        write_cube(first, str(store), synthetic_archive.region, chunks=CHUNKS,
                   storage_options=opts, client=dask_client)  # fmt: skip
        proxy.reset_stats()
        write_cube(first, str(store), mode="resume", storage_options=opts, client=dask_client)
        resumed = proxy.reset_stats()
        res = write_cube(urls, str(store), mode="append", storage_options=opts, client=dask_client)
        appended = proxy.reset_stats()
    assert resumed.requests() == 0  # a finished build, resumed from URLs: not one request
    old_keys = {u.split("://", 1)[1] for u in first}
    assert not any(r.key in old_keys for r in appended.records)  # known granules: untouched
    new_keys = {u.split("://", 1)[1] for u in later}
    assert {r.key for r in appended.select(method="HEAD")} <= new_keys
    assert res.layers_added > 0
    # the appended cube equals a cube built at once from the table of all granules
    whole = tmp_path / "whole.zarr"
    write_cube(inputs, str(whole), synthetic_archive.region, chunks=CHUNKS,
               storage_options=local_s3.storage_options, client=dask_client)  # fmt: skip
    a = xr.open_zarr(store).load().sortby("granule_id")
    b = xr.open_zarr(whole).load().sortby("granule_id")
    assert list(a.granule_id.values) == list(b.granule_id.values)
    for v in VARS:
        assert a[v].values.tobytes() == b[v].values.tobytes(), v


def test_kept_rows_come_back_exactly_with_urls_redacted(synthetic_archive, tmp_path):
    """The rows kept for a generation are the table's rows, value for value (dates to the
    nanosecond, footprints as the same WKB); a signed URL's query is not kept."""
    from itslive_dask.store.headers import keep_rows, kept_rows
    from itslive_dask.store.target import resolve_target

    table = synthetic_archive.table.iloc[:10].copy()
    table.loc[0, "url"] = table.loc[0, "url"] + "?X-Amz-Signature=abc123secret"
    target = resolve_target(tmp_path / "rows.zarr")
    keep_rows(target, table, "tok")
    back = kept_rows(target).set_index("granule_id").loc[list(table.granule_id)].reset_index()
    raw = (tmp_path / "rows.zarr" / "_itslive" / "granules" / "tok.parquet").read_bytes()
    assert b"abc123secret" not in raw
    assert back.loc[0, "url"] == table.loc[0, "url"].split("?", 1)[0]
    assert list(back.url[1:]) == list(table.url[1:])
    for col in ("mid_date", "acquisition_date_img1", "acquisition_date_img2", "epsg", "date_dt"):
        assert list(back[col]) == list(table[col]), col
    assert [g.wkb for g in back.geometry] == [g.wkb for g in table.geometry]
