"""download_granules: file-name safety, nothing written outside the folder, local resume."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from itslive_dask.errors import InvalidInputError
from itslive_dask.io.download import MANIFEST_NAME, download_granules, safe_file_name
from itslive_dask.io.urls import options_for as _options_for

NAME = "LC08_L1GT_232113_20201213_20201219_02_T2_X_LC08_L1GT_232113_20201229_20210308_02_T2_G0120V02_P073.nc"
NAME2 = (
    "S2A_MSIL1C_20200101T142729_N0208_R053_T19FDV_20200101T175120_X_"
    "S2B_MSIL1C_20200111T142729_N0208_R053_T19FDV_20200111T175120_G0120V02_P050.nc"
)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "url",
    [
        "../x.nc",
        "/etc/passwd",
        "/tmp/x.nc",
        "a/b.nc",
        "x.nc",
        f"../{NAME}",
        f"s3://bucket/../{NAME}",
        f"s3://bucket/dir/..%2F{NAME}",
        f"https://host/a/{NAME}/..",
        f"https://host/a/{NAME[:-3]}.txt",
        "s3://bucket/dir/",
        "",
        f"C:\\temp\\..\\{NAME}",
        f"s3://bucket/.{NAME}",
        f"s3://bucket/{NAME}\x00.nc",
    ],
)
def test_hostile_names_are_refused(url):
    with pytest.raises(InvalidInputError, match=r"refusing|non-empty"):
        safe_file_name(url)


@pytest.mark.parametrize(
    "url",
    [
        NAME,
        f"/data/archive/{NAME}",
        f"s3://its-live-data/velocity_image_pair/landsatOLI/v02/N60W040/{NAME}",
        f"https://its-live-data.s3.amazonaws.com/velocity_image_pair/x/{NAME}?versionId=3#frag",
        f"file:///data/{NAME2}",
    ],
)
def test_granule_names_are_accepted(url):
    assert safe_file_name(url) in (NAME, NAME2)


def test_refused_batch_writes_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / NAME).write_bytes(b"granule bytes")
    target = tmp_path / "sub" / "out"
    before = _tree(tmp_path)
    for bad in ("../x.nc", str(tmp_path / "x.nc"), "a/b.nc", f"{src}/../{NAME}"):
        with pytest.raises(InvalidInputError):
            download_granules([str(src / NAME), bad], target, progress=False)
    assert _tree(tmp_path) == before  # not even the target folder was created


def test_two_urls_with_the_same_name_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="same file name"):
        download_granules([f"/a/{NAME}", f"/b/{NAME}"], tmp_path / "out", progress=False)


def test_local_copy_resume_and_skip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(9_000_001)
    (src / NAME).write_bytes(data)
    (src / NAME2).write_bytes(data[:1000])
    out = tmp_path / "out"
    out.mkdir()
    (out / f".{NAME}.part").write_bytes(data[:4_000_000])  # left by an interrupted run
    calls = []
    res = download_granules(
        [str(src / NAME), str(src / NAME2)], out, params={"bbox": [1, 2, 3, 4]},
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert res.ok and [f.status for f in res.files] == ["downloaded", "downloaded"]
    assert res.files[0].resumed_from == 4_000_000
    assert hashlib.sha256((out / NAME).read_bytes()).digest() == hashlib.sha256(data).digest()
    assert (out / NAME2).read_bytes() == data[:1000]
    assert sorted(calls) == [(1, 2), (2, 2)]
    assert sorted(os.listdir(out)) == sorted([NAME, NAME2, MANIFEST_NAME])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["params"] == {"bbox": [1, 2, 3, 4]}
    assert (
        manifest["files"][NAME]["size"] == len(data)
        and manifest["files"][NAME]["status"] == "downloaded"
    )

    again = download_granules([str(src / NAME), str(src / NAME2)], out, progress=False)
    assert [f.status for f in again.files] == ["skipped", "skipped"]


def test_part_file_symlink_is_not_followed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / NAME).write_bytes(b"A" * 5000)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / f".{NAME}.part")
    res = download_granules([str(src / NAME)], out, progress=False)
    assert res.ok
    assert outside.read_bytes() == b"keep me"
    assert (out / NAME).read_bytes() == b"A" * 5000


def test_missing_source_is_reported_not_raised(tmp_path):
    res = download_granules(
        [str(tmp_path / NAME)], tmp_path / "out", retries=2, backoff=0, progress=False
    )
    assert not res.ok
    (f,) = res.failed
    assert f.error == "object not found" and f.attempts == 1  # no retry for a missing object
    assert not (tmp_path / "out" / NAME).exists()


def test_storage_options_per_protocol():
    so = {"key": "k", "secret": "s"}
    assert _options_for("s3://b/x.nc", so) == so
    assert _options_for("https://h/x.nc", so) == {}
    per = {"s3": {"anon": True}, "https": {"headers": {"a": "b"}}}
    assert _options_for("s3://b/x.nc", per) == {"anon": True}
    assert _options_for("https://h/x.nc", per) == {"headers": {"a": "b"}}
    assert _options_for("/local/x.nc", per) == {}
