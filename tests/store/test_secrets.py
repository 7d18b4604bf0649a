"""Issue 10, security: credentials never appear in what the package writes or prints.

Fake secrets go into the storage options of the granules and of the output store (the local
S3 server accepts any key); one granule URL is a presigned-style URL with a signature in its
query. A build with a failing granule, progress output and logging at DEBUG for the package,
then a download with a manifest and an error for a missing bucket: the secrets must be in
none of the log records, printed output, error messages, store files (attributes, ledger,
markers), the WriteResult and the download manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from itslive_dask import download_granules, write_cube
from itslive_dask.errors import ItsliveDaskError

KEY = "AKIAFAKEKEY1234567890"
SECRET = "fAkE/SeCrEt+Value/0123456789abcdefXYZ"
TOKEN = "FAKE-SESSION-TOKEN-abcdefghijklmnop"
SIGNATURE = "X-Amz-Signature=deadbeefcafef00d1234"
SECRETS = (KEY, SECRET, TOKEN, "deadbeefcafe", "AKIAFAKE", "SeCrEt", "FAKE-SESSION")


def _grep(text: str, where: str) -> None:
    for s in SECRETS:
        assert s not in text, f"a secret leaked into {where}"


def _grep_tree(root: Path) -> int:
    n = 0
    for p in root.rglob("*"):
        if p.is_file():
            _grep(p.read_bytes().decode("latin-1"), str(p))
            n += 1
    return n


def test_fake_secrets_never_leak(
    tmp_path, synthetic_archive, local_s3, dask_client, caplog, capsys
):
    opts = {**synthetic_archive.storage_options, "key": KEY, "secret": SECRET, "token": TOKEN}
    table = synthetic_archive.table.iloc[:6].copy().reset_index(drop=True)
    # a granule that fails, by a URL carrying a signature in its query
    table.loc[2, "url"] = table.url.iloc[2].replace(".nc", f"_gone.nc?{SIGNATURE}")
    store = tmp_path / "cube.zarr"
    caplog.set_level(logging.DEBUG, logger="itslive_dask")
    seen: list[str] = []
    res = write_cube(
        table,
        str(store),
        synthetic_archive.region,
        storage_options=opts,
        chunks=(8, 96, 96),
        client=dask_client,
        progress=lambda d, t: print(f"{d}/{t}"),
        announce=seen.append,
    )
    assert res.failed  # the failing granule is reported...
    _grep(repr(res) + str(res.failed), "the WriteResult")  # ...without its signature
    assert _grep_tree(store) > 10  # attributes, arrays' metadata, ledger, markers

    # output to a missing bucket: a clear error, without the store's credentials
    with pytest.raises(ItsliveDaskError) as err:
        write_cube(
            table,
            "s3://no-such-bucket-here/c.zarr",
            synthetic_archive.region,
            storage_options=opts,
            store_options={
                **local_s3.storage_options,
                "key": KEY,
                "secret": SECRET,
                "token": TOKEN,
            },
            chunks=(8, 96, 96),
            client=dask_client,
        )
    _grep(str(err.value), "the missing-bucket error")

    # a download with a manifest (one URL fails, with a signature)
    dl = tmp_path / "dl"
    urls = [*table.url.iloc[:2], f"{table.url.iloc[3]}?{SIGNATURE}"]
    download_granules(urls, str(dl), storage_options=opts)
    assert _grep_tree(dl) >= 1

    out = capsys.readouterr()
    _grep(out.out + out.err, "printed output")
    _grep("\n".join(seen), "announcements")
    _grep("\n".join(r.getMessage() for r in caplog.records), "log records")
