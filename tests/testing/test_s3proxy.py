"""S3Proxy: exact request/byte counts and each injected fault, seen through real s3fs and moto."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import botocore.exceptions
import pytest

from itslive_dask.errors import InvalidInputError
from itslive_dask.testing.s3proxy import FaultRule, S3Proxy

BUCKET = "proxy-test"
PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every range distinct


@pytest.fixture(scope="module")
def s3(local_s3):
    local_s3.create_bucket(BUCKET, public=True)
    fs = local_s3.filesystem()
    fs.pipe_file(f"{BUCKET}/data/a.bin", PAYLOAD)
    fs.pipe_file(f"{BUCKET}/data/b.bin", PAYLOAD[:1000])
    fs.pipe_file(f"{BUCKET}/other/c.bin", PAYLOAD[:500])
    return local_s3


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _fast_fs(proxy: S3Proxy):
    """s3fs through the proxy with one attempt at every layer and 1 s timeouts."""
    fs = proxy.filesystem(
        config_kwargs={
            "retries": {"max_attempts": 1, "mode": "standard"},
            "read_timeout": 1,
            "connect_timeout": 1,
        }
    )
    fs.retries = 1
    return fs


def test_counts_are_exact_for_a_known_sequence(s3):
    with S3Proxy(s3) as proxy:
        assert proxy.storage_options["endpoint_url"] == proxy.endpoint_url
        fs = proxy.filesystem()
        # 1 PUT of 123 bytes
        fs.pipe_file(f"{BUCKET}/tmp/new.bin", b"z" * 123)
        # 2 ranged GETs on a.bin: 100 + 1 bytes
        assert fs.cat_file(f"{BUCKET}/data/a.bin", start=0, end=100) == PAYLOAD[:100]
        assert fs.cat_file(f"{BUCKET}/data/a.bin", start=5000, end=5001) == PAYLOAD[5000:5001]
        # 3 ranged GETs on b.bin through cat_ranges: 10 + 20 + 30 bytes
        got = fs.cat_ranges([f"{BUCKET}/data/b.bin"] * 3, [0, 100, 900], [10, 120, 930])
        assert got == [PAYLOAD[0:10], PAYLOAD[100:120], PAYLOAD[900:930]]
        # 2 whole-object GETs by plain HTTP (path-style URL, public bucket)
        for _ in range(2):
            with _opener().open(f"{proxy.endpoint_url}/{BUCKET}/other/c.bin", timeout=10) as r:
                assert r.read() == PAYLOAD[:500]
        st = proxy.stats
    assert st.requests() == 8
    assert st.by_method() == {"PUT": (1, 0), "GET": (7, 100 + 1 + 60 + 1000)}
    assert st.bytes_in(method="PUT") == 123
    assert st.by_key() == {
        f"{BUCKET}/tmp/new.bin": (1, 0),
        f"{BUCKET}/data/a.bin": (2, 101),
        f"{BUCKET}/data/b.bin": (3, 60),
        f"{BUCKET}/other/c.bin": (2, 1000),
    }
    assert st.requests(method="GET", ranged=True) == 5
    assert st.bytes_out(method="GET", ranged=True) == 161
    assert st.requests(method="GET", ranged=False) == 2
    assert st.bytes_out(key=f"{BUCKET}/data/*") == 161
    assert st.faults() == {}
    assert st.summary()["get_whole"] == {"requests": 2, "bytes_out": 1000}


def test_reset_stats_starts_from_zero(s3):
    # storage options with an endpoint work as upstream too (e.g. a server in another process)
    with S3Proxy(dict(s3.storage_options)) as proxy:
        assert proxy.storage_options["key"] == s3.storage_options["key"]
        fs = proxy.filesystem()
        fs.cat_file(f"{BUCKET}/data/a.bin", start=0, end=10)
        first = proxy.reset_stats()
        assert first.requests() == 1 and first.bytes_out() == 10
        fs.cat_file(f"{BUCKET}/data/a.bin", start=0, end=7)
        assert proxy.stats.requests() == 1 and proxy.stats.bytes_out() == 7


def test_rate_zero_changes_nothing(s3):
    with S3Proxy(s3, faults=FaultRule(0.0), seed=3) as proxy:
        fs = _fast_fs(proxy)
        for start in range(0, 10240, 512):
            assert (
                fs.cat_file(f"{BUCKET}/data/a.bin", start=start, end=start + 512)
                == (PAYLOAD[start : start + 512])
            )
        fs.pipe_file(f"{BUCKET}/tmp/zero.bin", b"ok")
        assert fs.cat_file(f"{BUCKET}/tmp/zero.bin") == b"ok"
        st = proxy.stats
    assert st.faults() == {}
    assert all(r.status in (200, 206) for r in st.records)


# fault kind -> (exception classes s3fs raises for a ranged GET, for a PUT)
EXPECTED = {
    "500": (OSError, OSError),
    "503": (OSError, OSError),
    "reset": (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.EndpointConnectionError,
    ),
    "truncate": (aiohttp.ClientPayloadError, botocore.exceptions.ConnectionClosedError),
    "stall": (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ReadTimeoutError),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_fault_kind_reaches_s3fs_as_its_error_class(s3, kind):
    get_exc, put_exc = EXPECTED[kind]
    rule = FaultRule(1.0, kinds=(kind,), key_pattern=f"{BUCKET}/data/*", stall_seconds=2.5)
    with S3Proxy(s3, faults=rule) as proxy:
        fs = _fast_fs(proxy)
        with pytest.raises(get_exc) as info:
            fs.cat_file(f"{BUCKET}/data/a.bin", start=0, end=100)
        if kind == "503":
            assert "reduce your request rate" in str(info.value)
        if kind == "500":
            assert "internal error" in str(info.value)
        with pytest.raises(put_exc):
            fs.pipe_file(f"{BUCKET}/data/new.bin", b"never")
        # the key pattern restricts the faults: other keys are served
        assert fs.cat_file(f"{BUCKET}/other/c.bin", start=0, end=50) == PAYLOAD[:50]
        st = proxy.stats
    assert st.requests(key=f"{BUCKET}/data/*", fault=False) == 0
    assert st.requests(key=f"{BUCKET}/data/*", fault=kind) >= 2
    assert st.requests(key=f"{BUCKET}/other/*", fault=True) == 0
    if kind == "truncate":  # less than advertised was sent
        assert 0 < st.bytes_out(key=f"{BUCKET}/data/a.bin") < 100
    # the PUT never reached the server (except after a truncated answer: it was applied)
    exists = s3.filesystem().exists(f"{BUCKET}/data/new.bin")
    assert exists == (kind in ("truncate", "stall"))
    if exists:
        s3.filesystem().rm_file(f"{BUCKET}/data/new.bin")


def test_direction_and_method_restrict_faults(s3):
    with S3Proxy(s3, faults=FaultRule(1.0, kinds=("503",), direction="write")) as proxy:
        fs = _fast_fs(proxy)
        assert fs.cat_file(f"{BUCKET}/data/b.bin", start=0, end=10) == PAYLOAD[:10]  # reads pass
        with pytest.raises(OSError, match="reduce your request rate"):
            fs.pipe_file(f"{BUCKET}/tmp/w.bin", b"x")
        proxy.set_faults(FaultRule(1.0, kinds=("500",), methods=("HEAD",)))
        assert fs.cat_file(f"{BUCKET}/data/b.bin", start=0, end=10) == PAYLOAD[:10]  # GET passes
        with pytest.raises(OSError):
            fs.info(f"{BUCKET}/data/b.bin", refresh=True)
        proxy.set_faults(None)
        assert fs.cat_file(f"{BUCKET}/data/b.bin", start=0, end=3) == PAYLOAD[:3]


def _fault_pattern(s3, seed: int, n: int = 120) -> list[bool]:
    with S3Proxy(s3, faults=FaultRule(0.3, kinds=("500",)), seed=seed) as proxy:
        out = []
        for i in range(n):
            req = urllib.request.Request(
                f"{proxy.endpoint_url}/{BUCKET}/data/a.bin", headers={"Range": f"bytes={i}-{i}"}
            )
            try:
                with _opener().open(req, timeout=10) as r:
                    assert r.read() == PAYLOAD[i : i + 1]
                out.append(False)
            except urllib.error.HTTPError as exc:
                assert exc.code == 500
                out.append(True)
        assert proxy.stats.requests(fault="500") == sum(out)
    return out


def test_faults_are_seeded_and_near_the_rate(s3):
    a, b, c = _fault_pattern(s3, 7), _fault_pattern(s3, 7), _fault_pattern(s3, 8)
    assert a == b
    assert a != c
    assert 0.15 * len(a) < sum(a) < 0.45 * len(a)


def test_a_repeated_request_draws_afresh_so_retries_recover(s3):
    """At rate 0.5 the same request fails on some attempts and succeeds on others."""
    with S3Proxy(s3, faults=FaultRule(0.5, kinds=("503",)), seed=1) as proxy:
        outcomes = set()
        for _ in range(20):
            req = urllib.request.Request(
                f"{proxy.endpoint_url}/{BUCKET}/data/a.bin", headers={"Range": "bytes=0-9"}
            )
            try:
                with _opener().open(req, timeout=10) as r:
                    outcomes.add(r.read() == PAYLOAD[:10])
            except urllib.error.HTTPError as exc:
                assert exc.code == 503 and b"<Code>SlowDown</Code>" in exc.read()
                outcomes.add("503")
        assert outcomes == {True, "503"}
        # s3fs with its default retries reads through the transient faults
        fs = proxy.filesystem()
        for i in range(10):
            assert fs.cat_file(f"{BUCKET}/data/a.bin", start=i, end=i + 90) == PAYLOAD[i : i + 90]


def test_stop_ends_a_stall_and_closes_the_port(s3):
    proxy = S3Proxy(s3, faults=FaultRule(1.0, kinds=("stall",), stall_seconds=60)).start()
    port = proxy.port
    done = threading.Event()

    def stalled() -> None:
        try:
            _opener().open(f"{proxy.endpoint_url}/{BUCKET}/data/a.bin", timeout=30).read()
        except Exception:
            pass
        done.set()

    threading.Thread(target=stalled, daemon=True).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    proxy.stop()
    assert done.wait(10) and time.monotonic() - t0 < 10
    assert not proxy.running and "stopped" in repr(proxy)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_invalid_rules_and_upstreams():
    with pytest.raises(InvalidInputError):
        FaultRule(1.5)
    with pytest.raises(InvalidInputError):
        FaultRule(0.1, kinds=("404",))
    with pytest.raises(InvalidInputError):
        FaultRule(0.1, direction="sideways")
    with pytest.raises(InvalidInputError):
        S3Proxy("ftp://127.0.0.1:1")
    assert FaultRule(0.1, kinds="500").kinds == ("500",)
    assert FaultRule(1.0, methods=("get",)).matches("GET", "b/k")
    assert not FaultRule(1.0, key_pattern="b/x/*").matches("GET", "b/k")


def test_latency_holds_every_request_and_concurrent_ones_wait_together(s3):
    """A time to first byte per request; two clients in flight at once wait together, one
    after the other pay it twice (``max_keys_in_flight`` tells the two apart)."""
    with S3Proxy(s3, latency=0.2) as proxy:
        fs = proxy.filesystem()
        keys = [f"{BUCKET}/data/a.bin", f"{BUCKET}/data/b.bin"]
        t0 = time.perf_counter()
        for k in keys:
            fs.cat_file(k, start=0, end=10)
        serial = time.perf_counter() - t0
        st = proxy.reset_stats()
        assert all(r.seconds >= 0.2 for r in st.records)
        assert st.max_keys_in_flight(method="GET") == 1
        assert serial >= 0.4
        threads = [
            threading.Thread(target=fs.cat_file, args=(k,), kwargs={"start": 0, "end": 10})
            for k in keys
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        st = proxy.reset_stats()
        assert st.requests(method="GET") == 2
        assert st.max_keys_in_flight(method="GET") == 2


@pytest.mark.parametrize("bad", [-0.1, 11, "1", None])
def test_latency_is_validated(s3, bad):
    with pytest.raises(InvalidInputError, match="latency"):
        S3Proxy(s3, latency=bad)
