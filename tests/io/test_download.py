"""download_granules from the local S3 server (moto on 127.0.0.1): resume, retries, safety."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from itslive_dask.errors import InvalidInputError
from itslive_dask.io.download import MANIFEST_NAME, download_granules

BUCKET = "download-test"


def _name(k: int) -> str:
    d1 = f"201{k // 28}01{k % 28 + 1:02d}"
    d2 = f"201{k // 28}02{k % 28 + 1:02d}"
    return (
        f"LC08_L1GT_232113_{d1}_20201219_02_T2_X_"
        f"LC08_L1GT_232113_{d2}_20210308_02_T2_G0120V02_P0{k + 10:02d}.nc"
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def objects(local_s3):
    """Granule-named objects of various sizes in a bucket: {name: bytes}."""
    local_s3.create_bucket(BUCKET)
    fs = local_s3.filesystem()
    sizes = [0, 1, 1_000_003, 5_000_000, 9_437_185]  # empty, tiny, 1 MB, > one 4 MiB block...
    out = {}
    for k, size in enumerate(sizes):
        data = os.urandom(size)
        fs.pipe_file(f"{BUCKET}/granules/{_name(k)}", data)
        out[_name(k)] = data
    return out


def _urls(names) -> list[str]:
    return [f"s3://{BUCKET}/granules/{n}" for n in names]


def test_download_is_byte_identical_and_writes_a_manifest(local_s3, objects, tmp_path):
    params = {"bbox": [-50, 69, -48, 70], "start": "2020-01-01"}
    res = download_granules(
        _urls(objects), tmp_path / "out", storage_options=local_s3.storage_options,
        max_workers=3, params=params, progress=False,
    )  # fmt: skip
    assert res.ok and len(res.downloaded) == len(objects)
    for name, data in objects.items():
        assert _sha((tmp_path / "out" / name).read_bytes()) == _sha(data)
    assert sorted(os.listdir(tmp_path / "out")) == sorted([*objects, MANIFEST_NAME])
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["params"] == params
    assert {n: f["size"] for n, f in manifest["files"].items()} == {
        n: len(d) for n, d in objects.items()
    }
    assert all(f["status"] == "downloaded" for f in manifest["files"].values())
    assert "secret" not in json.dumps(manifest) and "key" not in manifest

    again = download_granules(_urls(objects), tmp_path / "out", storage_options=local_s3.storage_options,
                              progress=False)  # fmt: skip
    assert len(again.skipped) == len(objects) and not again.downloaded


def test_partial_temp_files_resume(local_s3, objects, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    big, mid = _name(4), _name(3)
    (out / f".{big}.part").write_bytes(objects[big][:6_000_000])  # an interrupted transfer
    (out / f".{mid}.part").write_bytes(os.urandom(len(objects[mid]) + 10))  # longer than remote
    (out / _name(2)).write_bytes(b"stale")  # a wrong final file is replaced
    res = download_granules(_urls([big, mid, _name(2)]), out, storage_options=local_s3.storage_options,
                            progress=False)  # fmt: skip
    assert res.ok
    by = {f.name: f for f in res.files}
    assert by[big].resumed_from == 6_000_000 and by[mid].resumed_from == 0
    for name in (big, mid, _name(2)):
        assert _sha((out / name).read_bytes()) == _sha(objects[name])
    assert not list(out.glob(".*.part"))


def test_killed_download_resumes_to_identical_files(local_s3, tmp_path):
    fs = local_s3.filesystem()
    data = os.urandom(48 * 1024 * 1024)
    name = _name(8)
    fs.pipe_file(f"{BUCKET}/big/{name}", data)
    url = f"s3://{BUCKET}/big/{name}"
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import json, sys
        from itslive_dask.io.download import download_granules
        download_granules([{url!r}], {str(out)!r}, storage_options=json.loads(sys.argv[1]),
                          max_workers=1, progress=False)
        """
    )
    part = out / f".{name}.part"
    killed_at = 0
    for _ in range(3):  # the transfer must be caught in flight; retry if it was too fast
        proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(local_s3.storage_options)]
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            size = part.stat().st_size if part.exists() else 0
            if 0 < size < len(data):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = part.stat().st_size
                break
            time.sleep(0.002)
        proc.wait()
        if killed_at:
            break
        (out / name).unlink(missing_ok=True)
    assert killed_at, "could not interrupt the transfer"
    assert not (out / name).exists()  # the final name only ever holds complete files
    res = download_granules([url], out, storage_options=local_s3.storage_options, progress=False)
    assert res.ok
    assert res.files[0].resumed_from >= killed_at > 0
    assert _sha((out / name).read_bytes()) == _sha(data)


def test_failures_are_reported_with_retries(local_s3, objects, tmp_path):
    missing = f"s3://{BUCKET}/granules/{_name(20)}"
    # a closed port on the loopback interface: every attempt fails with a connection error
    unreachable = f"http://127.0.0.1:9/granules/{_name(21)}"
    urls = [*_urls([_name(1)]), missing, unreachable]
    t0 = time.monotonic()
    res = download_granules(urls, tmp_path / "out", storage_options={"s3": local_s3.storage_options},
                            retries=2, backoff=0.05, progress=False)  # fmt: skip
    assert [f.status for f in res.files] == ["downloaded", "failed", "failed"]
    by = {f.url: f for f in res.files}
    assert by[missing].error == "object not found" and by[missing].attempts == 1
    assert by[unreachable].attempts == 3 and by[unreachable].error
    assert time.monotonic() - t0 >= 0.05 + 0.1  # waited backoff * (1 + 2)
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["files"][_name(21)]["status"] == "failed"
    assert sorted(os.listdir(tmp_path / "out")) == sorted([_name(1), MANIFEST_NAME])


def test_presigned_https_urls_of_the_same_objects(local_s3, objects, tmp_path):
    fs = local_s3.filesystem()
    names = [_name(2), _name(3)]
    urls = [fs.sign(f"{BUCKET}/granules/{n}", expiration=600) for n in names]
    assert all(u.startswith("http://127.0.0.1:") and "?" in u for u in urls)
    res = download_granules(urls, tmp_path, progress=False)
    assert res.ok, res.failed
    for n in names:
        assert (tmp_path / n).read_bytes() == objects[n]
    # the same objects without a signature: refused by the server, reported, not retried
    plain = f"{local_s3.endpoint_url}/{BUCKET}/granules/{_name(1)}"
    res = download_granules([plain], tmp_path / "unsigned", retries=3, backoff=0.01, progress=False)
    (f,) = res.failed
    assert f.attempts == 1 and "403" in f.error
    # presigned URLs carry credentials: never written to the manifest
    for folder in (tmp_path, tmp_path / "unsigned"):
        text = (folder / MANIFEST_NAME).read_text()
        assert (
            "Signature" not in text
            and "Credential" not in text
            and local_s3.storage_options["key"] not in text
        )


def test_hostile_table_urls_are_refused_and_nothing_is_written(local_s3, objects, tmp_path):
    import geopandas as gpd
    import shapely

    fs = local_s3.filesystem()
    fs.pipe_file(f"{BUCKET}/x.nc", b"evil")
    before = {str(p) for p in tmp_path.rglob("*")}
    for url in (
        f"s3://{BUCKET}/granules/../x.nc",
        "../x.nc",
        "/tmp/x.nc",
        "a/b.nc",
        f"s3://{BUCKET}/x.nc",
    ):
        table = gpd.GeoDataFrame(
            {"url": [*_urls([_name(1)]), url]}, geometry=[shapely.Point(0, 0)] * 2
        )
        with pytest.raises(InvalidInputError, match="refusing"):
            download_granules(
                table, tmp_path / "out", storage_options=local_s3.storage_options, progress=False
            )
    assert {str(p) for p in tmp_path.rglob("*")} == before
    assert not Path(tmp_path.parent / "x.nc").exists()
