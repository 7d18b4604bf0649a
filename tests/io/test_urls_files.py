"""URL kinds, redaction, error wording and atomic small-file writes of io/."""

from __future__ import annotations

import os

import pytest

from itslive_dask.errors import GranuleError, InvalidInputError
from itslive_dask.io.fetch import RetryPolicy, describe_error, with_retries
from itslive_dask.io.files import put_atomic
from itslive_dask.io.urls import is_remote, local_path, redact_text, redact_url, storage_kwargs


def test_location_kinds():
    assert is_remote("s3://b/k.nc") and is_remote("https://h/x.nc") and is_remote("memory://x")
    assert not is_remote("/data/x.nc") and not is_remote("file:///data/x.nc")
    assert local_path("file:///data/x.nc") == "/data/x.nc"
    assert local_path("relative/x.nc") == "relative/x.nc"
    assert local_path("s3://b/x.nc") is None
    assert storage_kwargs("/tmp/c.zarr", {"anon": True}) == {}
    assert storage_kwargs("s3://b/c.zarr", {"anon": True}) == {"storage_options": {"anon": True}}


def test_redaction_removes_credentials():
    url = "https://user:pa55@host.example/x.nc?X-Amz-Signature=abc&X-Amz-Credential=k#frag"
    assert redact_url(url) == "https://host.example/x.nc"
    text = f"failed to read {url} after 3 tries"
    assert "pa55" not in redact_text(text) and "Signature" not in redact_text(text)
    assert redact_url("/local/path.nc") == "/local/path.nc"


def test_one_wording_of_read_errors():
    assert describe_error(FileNotFoundError("k")) == ("object not found", True)
    assert describe_error(PermissionError("no"))[1] is True
    problem, permanent = describe_error(ConnectionResetError("reset by peer"))
    assert not permanent and "ConnectionResetError" in problem
    cause = OSError("Cannot connect to host")
    try:
        raise FileNotFoundError("x") from cause
    except FileNotFoundError as exc:  # fsspec's HTTP way of saying "unreachable"
        assert describe_error(exc)[1] is False


def test_with_retries_counts_attempts_and_redacts():
    calls = []

    def flaky():
        calls.append(1)
        raise TimeoutError("slow")

    with pytest.raises(GranuleError) as info:
        with_retries("https://h/x.nc?token=SECRET", flaky, RetryPolicy(retries=2, backoff=0))
    assert info.value.attempts == 3 and len(calls) == 3
    assert "SECRET" not in str(info.value)
    with pytest.raises(InvalidInputError):
        RetryPolicy(retries=-1)


def test_put_atomic_replaces_whole_files(tmp_path):
    target = tmp_path / "deep" / "ledger.json"
    put_atomic(str(target), b"first")
    put_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["ledger.json"]  # no temporary file left behind
