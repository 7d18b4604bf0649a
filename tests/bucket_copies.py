"""Copies of synthetic granules in a bucket of their own (tests that inject faults or count
requests keep the session's shared archive untouched), and the truths such tests check the
counted requests against."""

from __future__ import annotations

from typing import Any


def copy_to_bucket(local_s3: Any, table: Any, bucket: str) -> Any:
    """``table`` with every granule copied to ``bucket`` on ``local_s3`` and its URL pointing
    there (the first folder of each key, the source bucket, is replaced)."""
    fs = local_s3.filesystem()
    local_s3.create_bucket(bucket)
    table = table.copy().reset_index(drop=True)
    urls = []
    for u in table.url:
        key = u.split("://", 1)[1]
        dst = f"{bucket}/{key.split('/', 1)[1]}"
        fs.copy(key, dst)
        urls.append(f"s3://{dst}")
    table["url"] = urls
    return table


def h5_chunk_indexes(local_s3: Any, urls: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``"bucket/key" -> ChunkIndex`` of ``names`` for each granule URL, read independently
    with h5py from the object's bytes (the truth the range reader's requests are checked
    against)."""
    import io

    import h5py

    from itslive_dask.io.ranged import ChunkIndex

    fs = local_s3.filesystem()
    out = {}
    for url in urls:
        key = url.split("://", 1)[1]
        with h5py.File(io.BytesIO(fs.cat_file(key)), "r") as h5:
            out[key] = ChunkIndex.from_h5(h5, [n for n in names if n in h5])
    return out


def ranged_gets(stats: Any) -> list[tuple[str, int, int]]:
    """``(key, start, end)`` of every GET a proxy counted, each asserted to be ranged (never
    a whole object)."""
    import re

    out = []
    for rec in stats.select(method="GET"):
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", rec.range)
        assert m, (rec.key, rec.range)  # never a whole object
        out.append((rec.key, int(m.group(1)), int(m.group(2)) + 1))
    return out
