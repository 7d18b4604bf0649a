"""LocalS3: a real moto S3 endpoint on 127.0.0.1 used through s3fs, from threads and processes."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
import socket
import urllib.error
import urllib.parse
import urllib.request

import fsspec
import pytest

from itslive_dask.errors import InvalidInputError, ItsliveDaskError
from itslive_dask.testing.local_s3 import LocalS3


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _read_in_subprocess(url: str, storage_options: dict) -> bytes:
    """Runs in a spawned process: only the pickled storage options travel."""
    with fsspec.open(url, "rb", **storage_options) as fh:
        return fh.read()


def test_lifecycle_binds_loopback_serves_s3fs_and_closes_the_port():
    s3 = LocalS3()
    assert not s3.running and "stopped" in repr(s3)
    with pytest.raises(ItsliveDaskError, match="not running"):
        _ = s3.endpoint_url
    with s3:
        parsed = urllib.parse.urlparse(s3.endpoint_url)
        assert parsed.scheme == "http" and parsed.hostname == "127.0.0.1" and parsed.port == s3.port
        assert _port_open(s3.port)
        assert s3.create_bucket("bucket-a") == "s3://bucket-a"
        assert s3.create_bucket("bucket-a") == "s3://bucket-a"  # idempotent
        fs = s3.filesystem()
        fs.pipe_file("bucket-a/dir/obj.bin", b"\x00\x01payload")
        assert fs.cat_file("bucket-a/dir/obj.bin") == b"\x00\x01payload"
        assert fs.ls("bucket-a/dir") == ["bucket-a/dir/obj.bin"]
        # ranged reads, as the granule reader does
        with fsspec.open("s3://bucket-a/dir/obj.bin", "rb", **s3.storage_options) as fh:
            fh.seek(2)
            assert fh.read(3) == b"pay"
        assert s3.filesystem() is not fs  # never a cached instance
        # a private bucket refuses unsigned requests; a public one serves them (like its-live-data)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError, match="403"):
            opener.open(f"{s3.http_base('bucket-a')}/dir/obj.bin", timeout=10)
        s3.create_bucket("bucket-a", public=True)
        with opener.open(f"{s3.http_base('bucket-a')}/dir/obj.bin", timeout=10) as resp:
            assert resp.read() == b"\x00\x01payload"
        anon = fsspec.filesystem(
            "s3", anon=True, endpoint_url=s3.endpoint_url, skip_instance_cache=True
        )
        assert anon.cat_file("bucket-a/dir/obj.bin") == b"\x00\x01payload"
        port = s3.port
    assert not s3.running and not _port_open(port)
    s3.stop()  # idempotent


def test_storage_options_are_picklable_and_work_in_another_process(local_s3):
    local_s3.create_bucket("proc-test")
    local_s3.filesystem().pipe_file("proc-test/hello.txt", b"from the parent")
    opts = pickle.loads(pickle.dumps(local_s3.storage_options))
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        got = pool.submit(_read_in_subprocess, "s3://proc-test/hello.txt", opts).result(timeout=120)
    assert got == b"from the parent"


def test_credentials_never_in_repr(local_s3):
    opts = local_s3.storage_options
    text = repr(local_s3) + str(local_s3)
    assert local_s3.endpoint_url in text
    assert opts["key"] not in text and opts["secret"] not in text


def test_two_servers_get_different_ports_and_stop_independently():
    with LocalS3() as a, LocalS3() as b:
        assert a.port != b.port
        b_port = b.port
        b.stop()
        assert _port_open(a.port) and not _port_open(b_port)
        a.create_bucket("still-served")
        assert a.filesystem().exists("still-served")


def _reset_roundtrip() -> tuple[bool, bool]:
    with LocalS3() as s3:
        s3.create_bucket("to-be-reset")
        before = s3.filesystem().exists("to-be-reset")
        s3.reset()
        return before, s3.filesystem().exists("to-be-reset")


def test_reset_empties_the_server():
    # moto's state is shared by every server of a process: reset in a child process only,
    # never next to the session's synthetic archive
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(_reset_roundtrip).result(timeout=120) == (True, False)


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match="port"):
        LocalS3(port=70000)
    with LocalS3() as s3:
        with pytest.raises(InvalidInputError, match="bucket"):
            s3.create_bucket("a/b")
        with pytest.raises(InvalidInputError, match="cannot create bucket 'x'"):
            s3.create_bucket("x")  # S3 bucket names have at least 3 characters


def test_a_script_that_fails_with_the_server_running_still_exits(tmp_path):
    """A started server never stopped (the script raised): the interpreter exits at once
    (it used to hang forever in ``__del__`` waiting for the server's stopped thread)."""
    import subprocess
    import sys

    script = tmp_path / "fails.py"
    script.write_text(
        "from itslive_dask.testing.local_s3 import LocalS3\n"
        "server = LocalS3().start()\n"
        "raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, str(script)], timeout=60, capture_output=True)
    assert done.returncode == 3, done.stderr[-2000:]
