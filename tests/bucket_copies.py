"""Copies of synthetic granules in a bucket of their own (tests that inject faults or count
requests keep the session's shared archive untouched)."""

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
