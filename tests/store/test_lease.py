"""Issue 10: two builds on one store. One build at a time holds the store's lease.

The pure rules (is this lease live? may I take it?) are checked without IO against
hand-computed cases; the storage side on a local folder and on the local S3 server (moto,
conditional writes); the whole thing with two ``write_cube`` calls started at the same
moment, compared with a single clean build.

On main before this branch (fe1cc68) there was no lease: two concurrent builds of one store
both ran (the second one's ``create`` either passed ``check_output`` and then failed inside
Zarr with a raw ``FileExistsError`` wrapped as "writing the template failed", or rewrote
the store under the first one), and ``describe_build`` had no ``lease``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
import xarray as xr

from itslive_dask import write_cube
from itslive_dask.errors import StoreError
from itslive_dask.store import lease as L
from itslive_dask.store.state import describe_build
from itslive_dask.store.target import exists, resolve_target

VARS = ("vx", "vy", "v", "v_error")
CHUNKS = (8, 96, 96)
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def _lease(**kw):
    base = {
        "token": "a" * 32,
        "host": "hostA",
        "pid": 4242,
        "operation": "write_cube mode=create",
        "started": NOW - 100,
        "heartbeat": NOW - 10,
        "expiry": 300.0,
    }
    base.update(kw)
    return base


# ---------------------------------------------------------------------------- pure rules
@pytest.mark.parametrize(
    ("lease", "alive", "status"),
    [
        (None, None, "free"),
        (_lease(heartbeat=NOW - 10), None, "live"),
        (_lease(heartbeat=NOW - 300), None, "live"),  # exactly at the expiry: still live
        (_lease(heartbeat=NOW - 300.5), None, "stale"),
        (_lease(heartbeat=NOW + 60), None, "live"),  # a clock ahead of ours: not stale
        (_lease(heartbeat=NOW - 10, expiry=5), None, "stale"),  # its own expiry counts
        (_lease(heartbeat=None), None, "stale"),  # damaged
        ({"damaged": True}, None, "stale"),
        (_lease(heartbeat=NOW - 1), False, "stale"),  # its process is gone (same machine)
        (_lease(heartbeat=NOW - 1000), True, "stale"),  # alive but silent: the heartbeat rules
        (_lease(heartbeat=NOW - 1), True, "live"),
    ],
)
def test_lease_status(lease, alive, status):
    assert L.lease_status(lease, NOW, alive) == status


@pytest.mark.parametrize(
    ("lease", "alive", "verdict"),
    [
        (None, None, "take"),
        (_lease(), None, "refuse"),
        (_lease(heartbeat=NOW - 301), None, "takeover"),
        (_lease(), False, "takeover"),
        (_lease(token="b" * 32), None, "mine"),  # our own write came through (a retried PUT)
        (_lease(token="b" * 32, heartbeat=NOW - 1000), None, "mine"),
    ],
)
def test_decide(lease, alive, verdict):
    assert L.decide(lease, NOW, "b" * 32, alive) == verdict


def test_holder_gone_only_knows_about_this_machine():
    me = {"host": "h", "boot_id": "boot-1", "pid_ns": "4026531836"}
    lease = dict(me, pid=10, proc_start=500)
    assert L.holder_gone(lease, me, proc_start=500) is False  # it runs
    assert L.holder_gone(lease, me, proc_start=None) is True  # no such process
    assert L.holder_gone(lease, me, proc_start=900) is True  # pid reused by a later process
    for key, other in (("host", "h2"), ("boot_id", "boot-2"), ("pid_ns", "1")):
        assert L.holder_gone(dict(lease, **{key: other}), me, proc_start=None) is None
    assert L.holder_gone({"host": "h", "pid": 10}, me, proc_start=None) is None  # old lease format


def test_describe_lease_says_who_and_when_without_the_token():
    lease = _lease(started=NOW - 3600, heartbeat=NOW - 42)
    text = L.describe_lease(lease, NOW)
    assert text == (
        "host hostA, pid 4242 (write_cube mode=create), started 2027-01-15 07:00:00 UTC, "
        "last heartbeat 2027-01-15 07:59:18 UTC (42 s ago), expires after 300 s without one"
    )
    message = L.refusal("s3://b/c.zarr", lease, NOW)
    assert "another build is writing s3://b/c.zarr" in message and text in message
    assert "mode='resume'" in message and lease["token"] not in message


def test_lease_expiry_from_the_environment(monkeypatch):
    monkeypatch.delenv(L.EXPIRY_ENV, raising=False)
    assert L.lease_expiry() == 300.0
    monkeypatch.setenv(L.EXPIRY_ENV, "2.5")
    assert L.lease_expiry() == 2.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(L.EXPIRY_ENV, bad)
        with pytest.raises(StoreError, match=L.EXPIRY_ENV):
            L.lease_expiry()


# ---------------------------------------------------------------------------- storage
@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """A store location that does not exist yet: a local path or an s3:// URL."""
    if request.param == "local":
        return resolve_target(str(tmp_path / "c.zarr"))
    s3 = request.getfixturevalue("local_s3")
    bucket = "lease-tests"
    if not s3.filesystem().exists(bucket):
        s3.create_bucket(bucket)
    return resolve_target(
        f"s3://{bucket}/{request.node.name.replace('[', '-').rstrip(']')}-{time.time_ns()}.zarr",
        s3.storage_options,
    )


def _put(target, lease):
    target.fs().makedirs(target.path("_itslive"), exist_ok=True)
    target.fs().pipe_file(target.path("_itslive", "lease.json"), json.dumps(lease).encode())


def test_take_refuse_release(where):
    handle = L.acquire(where, "write_cube mode=create")
    held = L.read_lease(where)
    assert held["token"] == handle.token and held["pid"] == os.getpid()
    assert not exists(where)  # a lease alone is not a store: create still works
    with pytest.raises(StoreError) as err:
        L.acquire(where, "write_cube mode=resume")
    assert f"pid {os.getpid()} (write_cube mode=create)" in str(err.value)
    handle.release()
    assert L.read_lease(where) is None
    if not where.url.startswith("s3://"):
        assert not os.path.exists(where.url)  # nothing left behind
    L.acquire(where, "again").release()


def test_exactly_one_of_many_simultaneous_takers_wins(where):
    """12 threads try to take the lease at the same instant: O_EXCL / If-None-Match let
    exactly one through."""
    barrier = threading.Barrier(12)
    won, refused, other = [], [], []

    def take():
        barrier.wait()
        try:
            won.append(L.acquire(where, "race"))
        except StoreError as exc:
            refused.append(str(exc))
        except Exception as exc:  # counted, must stay empty
            other.append(repr(exc))

    threads = [threading.Thread(target=take) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(won) == 1 and len(refused) == 11
    assert L.read_lease(where)["token"] == won[0].token
    won[0].release()


def test_a_lease_being_created_is_never_seen_half_written(tmp_path, monkeypatch):
    """Another build that reads the lease while it is being created sees no lease or the
    whole lease, never an empty file (which reads as a damaged lease, and made a refusal
    that could not name the holder: the CI failure of the concurrent-builds test)."""
    target = resolve_target(str(tmp_path / "store.zarr"))
    seen = []
    real_dumps = L.json.dumps

    def dumps_and_look(obj, *a, **kw):
        out = real_dumps(obj, *a, **kw)
        seen.append(L.read_lease(target))  # another build reading at this instant
        return out

    monkeypatch.setattr(L.json, "dumps", dumps_and_look)
    handle = L.acquire(target, "write_cube mode=create")
    monkeypatch.undo()
    for lease in seen:
        assert lease is None or lease.get("token") == handle.token, lease
    with pytest.raises(StoreError, match=f"pid {os.getpid()} \\(write_cube mode=create\\)"):
        L.acquire(target, "write_cube mode=resume")
    handle.release()
    assert sorted(os.listdir(tmp_path)) == []  # no private file left behind


def test_a_stale_lease_is_taken_over_with_a_warning(where):
    old = _lease(host="another-host", heartbeat=time.time() - 400, started=time.time() - 900)
    _put(where, old)
    with pytest.warns(
        UserWarning, match="taking over the stale lease.*heartbeat is older.*another-host, pid 4242"
    ):
        handle = L.acquire(where, "write_cube mode=resume")
    assert L.read_lease(where)["token"] == handle.token
    handle.release()


def test_the_heartbeat_keeps_a_lease_live(where):
    """Expiry 1.5 s, heartbeat every 0.15 s: after 3.5 s the lease is still live (another
    build is refused); without the heartbeat it would have been taken over. (With a 0.6 s
    expiry, a heartbeat PUT to the in-process S3 server delayed past it on a loaded 2-core
    machine once let the lease be taken over: the margin is the expiry.)"""
    with L.hold_lease(where, "long build", expiry=1.5) as handle:
        first = L.read_lease(where)["heartbeat"]
        time.sleep(3.5)
        now = L.read_lease(where)
        assert now["heartbeat"] > first + 2.0 and now["token"] == handle.token
        with pytest.raises(StoreError, match="another build is writing"):
            L.acquire(where, "second")
    assert L.read_lease(where) is None


def test_a_lease_taken_over_under_a_frozen_build_is_noticed(where):
    """A build frozen past its expiry loses its lease to another; its next heartbeat sees
    that and the build stops instead of writing over the other build's state."""
    handle = L.acquire(where, "frozen build", expiry=300)
    _put(where, _lease(token="c" * 32, heartbeat=time.time()))  # the other build's lease
    with pytest.raises(StoreError, match="lost its lease"):
        handle.renew()
    with pytest.raises(StoreError, match="lost its lease"):
        handle.check()
    handle.release()  # never removes the other build's lease
    assert L.read_lease(where)["token"] == "c" * 32


def test_s3_takeover_is_a_compare_and_swap(local_s3):
    """Two builds judge the same stale lease: the first conditional write (If-Match on the
    ETag both read) wins, the second is refused by the server."""
    local_s3.create_bucket("lease-cas")
    target = resolve_target("s3://lease-cas/c.zarr", local_s3.storage_options)
    _put(target, _lease(heartbeat=time.time() - 1000))
    _, etag = L._read(target)
    first = L.new_lease("first", now=time.time(), expiry=300)
    second = L.new_lease("second", now=time.time(), expiry=300)
    L._remote_put(target, first, create=False, etag=etag)
    with pytest.raises(L._Lost):
        L._remote_put(target, second, create=False, etag=etag)
    with pytest.raises(FileExistsError):  # If-None-Match: * on an existing lease
        L._remote_put(target, second, create=True, etag=None)
    assert L.read_lease(target)["token"] == first["token"]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from itslive_dask.store.lease import hold_lease
    from itslive_dask.store.target import resolve_target
    with hold_lease(resolve_target(sys.argv[1]), "write_cube mode=append"):
        print("held", flush=True)
        time.sleep(120)
    """
)


def _holder(store):
    """A separate process that holds the lease of ``store`` (until killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_on_this_machine_is_taken_over_at_once(tmp_path):
    """SIGKILL leaves the lease behind with a fresh heartbeat; its process is gone, which a
    build on the same machine can see: taken over at once (resume after a kill need not
    wait for the expiry)."""
    target = resolve_target(str(tmp_path / "k.zarr"))
    proc = _holder(target.url)
    try:
        with pytest.raises(StoreError, match=f"pid {proc.pid} \\(write_cube mode=append\\)"):
            L.acquire(target, "second")
    finally:
        proc.kill()
        proc.wait()
    assert L.read_lease(target)["pid"] == proc.pid  # left behind by the kill
    with pytest.warns(UserWarning, match="its process is gone"):
        L.acquire(target, "after the kill").release()


# ---------------------------------------------------------------------------- whole builds
@pytest.fixture(scope="module")
def small(synthetic_archive):
    return synthetic_archive.table.iloc[:12].reset_index(drop=True)


@pytest.fixture(scope="module")
def clean_store(small, synthetic_archive, dask_client, tmp_path_factory):
    """A single clean build of the same granules."""
    store = tmp_path_factory.mktemp("lease-clean") / "clean.zarr"
    write_cube(
        small,
        str(store),
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        chunks=CHUNKS,
        client=dask_client,
    )
    return store


@pytest.fixture(scope="module")
def clean(clean_store):
    return xr.open_zarr(clean_store).load()


def assert_same_cube(url, clean, store_options=None):
    z = (
        xr.open_zarr(url, storage_options=store_options).load()
        if store_options
        else xr.open_zarr(url).load()
    )
    assert list(z.granule_id.values) == list(clean.granule_id.values)
    assert (z.granule_status.values == 0).all()
    for v in VARS:
        assert z[v].values.tobytes() == clean[v].values.tobytes(), v


# the S3 build runs in the reliability suite (~11 s); the fast suite has the S3 race of 12
# takers on the lease itself (test_exactly_one_of_many_simultaneous_takers_wins[s3])
@pytest.mark.parametrize("on", ["local", pytest.param("s3", marks=pytest.mark.reliability)])
def test_two_concurrent_builds_one_refuses_the_store_is_a_clean_build(
    on, tmp_path, small, clean, synthetic_archive, local_s3, dask_client
):
    """Two ``write_cube(mode="create")`` on one store started at the same instant (threads,
    one shared cluster): exactly one builds, the other gets the StoreError naming the lease
    holder; the store equals a single clean build and its lease is gone afterwards."""
    if on == "local":
        url, sto = str(tmp_path / "both.zarr"), None
    else:
        local_s3.create_bucket("lease-builds")
        url, sto = "s3://lease-builds/both.zarr", local_s3.storage_options
    results, errors = _at_once(
        lambda: write_cube(
            small, url, synthetic_archive.region, storage_options=synthetic_archive.storage_options,
            store_options=sto, chunks=CHUNKS, client=dask_client,
        )
    )  # fmt: skip
    assert len(results) == 1 and len(errors) == 1, (results, errors)
    err = errors[0]
    assert isinstance(err, StoreError), repr(err)
    assert "another build is writing" in str(
        err
    ) and f"pid {os.getpid()} (write_cube mode=create)" in str(err)
    assert results[0].failed == []
    assert_same_cube(url, clean, sto)
    assert L.read_lease(resolve_target(url, sto)) is None
    assert describe_build(url, sto)["lease"] is None


def test_two_concurrent_appends_add_each_granule_once(
    tmp_path, small, clean, synthetic_archive, dask_client
):
    """Two ``mode="append"`` of the same new granules at the same instant. On main (fe1cc68)
    both ran: the cube held 16 layers for 12 granules (4 twice, with their own dates). Now one
    appends, the other is refused, and the cube equals the clean build (sorted by date)."""
    store = str(tmp_path / "app.zarr")
    so = synthetic_archive.storage_options
    write_cube(
        small.iloc[:8],
        store,
        synthetic_archive.region,
        storage_options=so,
        chunks=CHUNKS,
        client=dask_client,
    )
    results, errors = _at_once(
        lambda: write_cube(small, store, synthetic_archive.region, storage_options=so,
                           mode="append", client=dask_client)
    )  # fmt: skip
    assert len(results) == 1 and len(errors) == 1, (results, errors)
    assert isinstance(errors[0], StoreError) and "another build is writing" in str(errors[0])
    assert results[0].layers_added == 4
    z = xr.open_zarr(store).load()
    assert sorted(z.granule_id.values) == sorted(small.granule_id)  # each granule once
    z, ref = z.sortby("mid_date"), clean.sortby("mid_date")
    assert list(z.granule_id.values) == list(ref.granule_id.values)
    for v in VARS:
        np.testing.assert_array_equal(z[v].values, ref[v].values)


def test_a_build_refuses_a_store_held_by_another_process_and_info_shows_it(
    tmp_path, small, clean, synthetic_archive, dask_client
):
    """A store whose lease another process holds: ``check_output`` and ``write_cube`` refuse
    (naming that process), ``describe_build`` and ``itslive-dask info`` show the lease; once
    that process is killed, ``resume`` takes the lease over and the cube is the clean one."""
    from itslive_dask.store.write import check_output

    store = tmp_path / "held.zarr"
    so = synthetic_archive.storage_options
    write_cube(
        small,
        str(store),
        synthetic_archive.region,
        storage_options=so,
        chunks=CHUNKS,
        client=dask_client,
    )
    proc = _holder(store)
    try:
        for call in (
            lambda: check_output(str(store), mode="append"),
            lambda: write_cube(
                small,
                str(store),
                synthetic_archive.region,
                storage_options=so,
                mode="append",
                client=dask_client,
            ),
        ):
            with pytest.raises(StoreError, match=f"lease is held by host .*, pid {proc.pid} "):
                call()
        info = describe_build(str(store))
        assert info["lease"]["status"] == "live" and info["lease"]["pid"] == proc.pid
        assert f"pid {proc.pid}" in info["text"]
        cli = subprocess.run(
            [sys.executable, "-m", "itslive_dask.cli.app", "info", str(store)],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, COLUMNS="300"),
        )
        assert cli.returncode == 0, cli.stderr
        line = next(ln for ln in cli.stdout.splitlines() if ln.startswith("lease"))
        assert (
            f"held by host {L.process_identity()['host']}, pid {proc.pid} (write_cube mode=append)"
            in line
        )
    finally:
        proc.kill()
        proc.wait()
    assert describe_build(str(store))["lease"]["status"] == "stale"
    with pytest.warns(UserWarning, match="its process is gone"):
        res = write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=so,
            mode="resume",
            client=dask_client,
        )
    assert res.failed == [] and res.blocks_written == 0
    assert_same_cube(str(store), clean)
    assert L.read_lease(resolve_target(str(store))) is None


def test_a_stale_lease_of_another_machine_is_taken_over_by_resume(
    tmp_path, small, clean, synthetic_archive, dask_client
):
    """A build killed on another machine: its lease stays until its heartbeat is older than
    the expiry; then ``resume`` takes it over (with a warning) and finishes the cube."""
    store = tmp_path / "stale.zarr"
    so = synthetic_archive.storage_options
    first = small.iloc[:8]
    write_cube(
        first,
        str(store),
        synthetic_archive.region,
        storage_options=so,
        chunks=CHUNKS,
        client=dask_client,
    )
    target = resolve_target(str(store))
    _put(target, _lease(host="node-17", heartbeat=time.time() - 30))
    with pytest.raises(StoreError, match="node-17"):  # fresh: refused
        write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=so,
            mode="append",
            client=dask_client,
        )
    _put(target, _lease(host="node-17", heartbeat=time.time() - 301))
    with pytest.warns(UserWarning, match="heartbeat is older than its expiry.*node-17"):
        res = write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=so,
            mode="append",
            client=dask_client,
        )
    assert res.layers_added == len(small) - len(first)
    assert L.read_lease(target) is None
    z = xr.open_zarr(store).load().sortby("mid_date")
    ref = clean.sortby("mid_date")
    assert list(z.granule_id.values) == list(ref.granule_id.values)
    for v in VARS:
        np.testing.assert_array_equal(z[v].values, ref[v].values)


def test_a_build_stopped_by_an_error_stops_its_blocks(
    tmp_path, small, synthetic_archive, dask_client
):
    """An error in the progress callback stops ``write_cube``; the blocks that had not
    started are cancelled, so nothing writes into the store once its lease is released (on
    f91ee55 every block went on running and writing after ``write_cube`` had raised)."""
    from itslive_dask import make_plan

    store = tmp_path / "stopped.zarr"
    chunks = (2, 64, 64)
    total = len(
        make_plan(small, synthetic_archive.region, chunks=chunks).blocks
    )  # blocks that read

    def boom(done, total):
        if done:
            raise RuntimeError("the user's callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        write_cube(
            small, str(store), synthetic_archive.region, storage_options=synthetic_archive.storage_options,
            chunks=chunks, client=dask_client, progress=boom,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while any(dask_client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    written = len(list((store / "_itslive" / "blocks").glob("*.json")))
    assert total >= 20 and written <= 1 + 2 * 2, (written, total)  # at most the running ones


def test_the_lease_is_released_after_an_error(tmp_path, small, synthetic_archive, dask_client):
    """An error in the middle of a build (here raised by the progress callback) and one
    before any block (no granule touches the region): the lease is gone afterwards, and no
    empty store is left behind by the second; resume right away needs no take-over."""
    store = tmp_path / "err.zarr"
    so = synthetic_archive.storage_options

    def boom(done, total):
        if done:
            raise RuntimeError("the user's callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=so,
            chunks=(4, 96, 96),
            client=dask_client,
            progress=boom,
        )
    target = resolve_target(str(store))
    assert L.read_lease(target) is None and exists(target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no take-over warning: the lease was released
        res = write_cube(
            small,
            str(store),
            synthetic_archive.region,
            storage_options=so,
            mode="resume",
            client=dask_client,
        )
    assert res.failed == [] and res.blocks_skipped >= 1

    far = tmp_path / "nothing.zarr"
    from itslive_dask.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no granule touches the region"):
        write_cube(
            small, str(far), bbox=(10.0, 45.0, 10.1, 45.1), storage_options=so, client=dask_client
        )
    assert not far.exists()


@pytest.mark.reliability  # ~8 s
def test_rechunk_holds_the_destination_lease(tmp_path, clean_store):
    """``rechunk_cube`` refuses a destination another process holds, and leaves no lease (nor
    state folder) in the copy it makes."""
    from itslive_dask import rechunk_cube

    dest = tmp_path / "copy.zarr"
    proc = _holder(dest)
    try:
        with pytest.raises(StoreError, match=f"pid {proc.pid} "):
            rechunk_cube(str(clean_store), str(dest), (100, 32, 32))
    finally:
        proc.kill()
        proc.wait()
    with pytest.warns(UserWarning, match="its process is gone"):
        copy = rechunk_cube(str(clean_store), str(dest), (100, 32, 32))
    assert copy.v.values.tobytes() == xr.open_zarr(clean_store).v.values.tobytes()
    assert L.read_lease(resolve_target(str(dest))) is None and not (dest / "_itslive").exists()
    with pytest.raises(StoreError, match="already exists"):  # was a raw zarr FileExistsError
        rechunk_cube(str(clean_store), str(dest), (100, 32, 32))


@pytest.mark.slow  # a whole time-series build and copy: ~50 s on the shared 2-core machine
def test_timeseries_builds_hold_the_work_store_lease(
    tmp_path, small, synthetic_archive, dask_client
):
    """A time-series build holds ``<store>.map.zarr``'s lease through build and copy (the
    nested ``write_cube`` re-enters it), the copy holds the final store's; both released."""
    from itslive_dask.store.target import map_store_url

    store = tmp_path / "ts.zarr"
    seen = []

    def progress(done, total):
        seen.append(
            (L.read_lease(resolve_target(map_store_url(str(store)))) or {}).get("operation")
        )

    write_cube(
        small,
        str(store),
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        chunks=CHUNKS,
        client=dask_client,
        layout="timeseries",
        progress=progress,
    )
    assert seen and set(seen) == {"write_cube layout=timeseries mode=create"}
    assert L.read_lease(resolve_target(str(store))) is None
    assert L.read_lease(resolve_target(map_store_url(str(store)))) is None
    assert not (store / "_itslive").exists()  # the copy keeps no state folder


TWO_CLIENTS = textwrap.dedent(
    """
    import json, pickle, sys, time
    a = pickle.load(open(sys.argv[1], "rb"))
    from itslive_dask import write_cube
    from itslive_dask.errors import StoreError
    time.sleep(max(0.0, a["start_at"] - time.time()))  # both start at the same instant
    try:
        write_cube(a["table"], a["url"], a["region"], storage_options=a["so"], store_options=a["sto"],
                   chunks=a["chunks"], scheduler=a["address"])
        print(json.dumps({"pid": __import__("os").getpid(), "outcome": "built"}))
    except StoreError as exc:
        print(json.dumps({"pid": __import__("os").getpid(), "outcome": "StoreError: " + str(exc)}))
    """
)


@pytest.mark.reliability  # two client processes: ~20 s
def test_two_client_processes_on_one_s3_store(
    tmp_path, small, clean, synthetic_archive, local_s3, dask_client
):
    """Two separate client processes (as two notebooks would) build the same ``s3://`` store
    through one scheduler, started at the same instant: exactly one builds, the other is
    refused naming the first one's pid; the store equals a single clean build."""
    import pickle

    local_s3.create_bucket("lease-procs")
    url = "s3://lease-procs/two.zarr"
    args = tmp_path / "args.pkl"
    args.write_bytes(pickle.dumps({
        "table": small, "url": url, "region": synthetic_archive.region, "so": synthetic_archive.storage_options,
        "sto": local_s3.storage_options, "chunks": CHUNKS, "address": dask_client.scheduler.address,
        "start_at": time.time() + 8.0,
    }))  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_CLIENTS, str(args)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    built = [o for o in outs if o["outcome"] == "built"]
    refused = [o for o in outs if o["outcome"].startswith("StoreError: another build is writing")]
    assert len(built) == 1 and len(refused) == 1, outs
    assert f"pid {built[0]['pid']} (write_cube mode=create)" in refused[0]["outcome"]
    assert_same_cube(url, clean, local_s3.storage_options)
    assert L.read_lease(resolve_target(url, local_s3.storage_options)) is None


def _at_once(call, n=2):
    """Run ``call`` in ``n`` threads released at the same instant: (results, errors)."""
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(call())
        except Exception as exc:  # the caller checks which failed and how
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results, errors
