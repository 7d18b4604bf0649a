"""Issue 10: kill the client, and separately a worker, at seeded random points; a rerun gives
the cube of an uninterrupted build, on a local store and on ``s3://``.

How a client is killed. The build runs in a subprocess (``write_cube`` on the session's
synthetic archive, connected to this module's LocalCluster by its address, as a notebook
connects to a hub's cluster) and gets SIGKILL

* at a *write point*: just before its k-th write to the store. The subprocess counts the
  writes of its own process (Zarr's local and fsspec stores, the package's JSON files) and
  kills itself there: ``os.kill(os.getpid(), SIGKILL)``, no clean-up runs. Which write is
  which (template, append template, generation state, ``granule_status``, ledger, time-series
  copy) is read from the trace of an uninterrupted build of the same granules in this
  process (:class:`WriteTrace`); the package has no hook for it.
* at a *block point*: the test watches the store from outside and kills the subprocess once
  k block markers exist. Its tasks already on the cluster keep running (orphans, as after a
  lost notebook kernel) while the rerun starts.

Then the build is run again as a user would (``mode="resume"``; ``mode="append"`` again for
an append; ``mode="create"`` when nothing was written yet) and the store is compared with an
uninterrupted build of the same granules: every data variable value for value (NaN = NaN),
the coordinates, ``granule_status``, the ledger, the block markers and the build state.
One granule of each build is missing from the bucket, so the ledger is never empty.

A worker is killed with SIGKILL (its pid from ``client.run(os.getpid)``) while block tasks
run; the build must finish identical to the uninterrupted one, or stop with a StoreError
that a resume completes: never a silently missing block.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from itslive_dask import read_ledger, write_cube
from itslive_dask.errors import StoreError

VARS = ("vx", "vy", "v", "v_error")
CHUNKS = (4, 160, 160)
TS_CHUNKS = (64, 80, 80)
N_GRANULES = 12
N_FIRST = 6  # granules of the first generation in the append scenarios
HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- write hooks
def install_write_hooks(hit: Callable[[str], None]) -> list[tuple[Any, str, Any]]:
    """Call ``hit(path)`` before every write or delete this process makes to a store.

    Covers Zarr's ``LocalStore`` and ``FsspecStore`` (``s3://``) and the package's small JSON
    files (markers, ledger). Returns what was replaced, for :func:`remove_write_hooks`.
    """
    import zarr.storage

    import itslive_dask.store.target as target_mod

    saved: list[tuple[Any, str, Any]] = []

    def wrap_async(cls: Any, name: str) -> None:
        orig = cls.__dict__[name]

        async def hooked(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            root = getattr(self, "root", None) or getattr(self, "path", "")
            hit(f"{root}/{key}")
            return await orig(self, key, *args, **kwargs)

        saved.append((cls, name, orig))
        setattr(cls, name, hooked)

    for cls in (zarr.storage.LocalStore, zarr.storage.FsspecStore):
        for name in ("set", "delete"):
            wrap_async(cls, name)
    orig_put = target_mod.put_atomic

    def put(url: str, data: bytes, storage_options: Any = None) -> None:
        hit(url)
        orig_put(url, data, storage_options)

    saved.append((target_mod, "put_atomic", orig_put))
    target_mod.put_atomic = put  # type: ignore[assignment]
    return saved


def remove_write_hooks(saved: list[tuple[Any, str, Any]]) -> None:
    for owner, name, orig in reversed(saved):
        setattr(owner, name, orig)


#: Functions of the build whose writes form one phase of the trace (module, name, phase).
PHASES = (
    ("itslive_dask.store.write", "write_template", "template"),
    ("itslive_dask.store.write", "append_template", "append-template"),
    ("itslive_dask.store.write", "mark_generation_complete", "generation-state"),
    ("itslive_dask.store.write", "finalize", "granule-status"),
    ("itslive_dask.store.write", "write_ledger", "ledger"),
    ("itslive_dask.store.rechunk", "rechunk_cube", "timeseries-copy"),
)


class WriteTrace:
    """The writes of an uninterrupted build in this process, each with its phase."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []
        self.phase = "other"

    def hit(self, where: str) -> None:
        self.writes.append((self.phase, where))

    def points(self, phase: str) -> list[int]:
        """1-based numbers of the writes of ``phase`` (kill just before one of them)."""
        return [k for k, (p, _) in enumerate(self.writes, start=1) if p == phase]


def tag_phases(monkeypatch: pytest.MonkeyPatch, trace: WriteTrace) -> None:
    """Set ``trace.phase`` while each function of :data:`PHASES` runs."""
    import importlib

    for mod_name, fn_name, phase in PHASES:
        mod = importlib.import_module(mod_name)
        orig_fn = getattr(mod, fn_name)

        def tagged(*a: Any, __orig: Any = orig_fn, __phase: str = phase, **k: Any) -> Any:
            before, trace.phase = trace.phase, __phase
            try:
                return __orig(*a, **k)
            finally:
                trace.phase = before

        monkeypatch.setattr(mod, fn_name, tagged)


# ----------------------------------------------------------------------------- the subprocess
def _child(argfile: str) -> None:
    """The build in the subprocess: SIGKILL itself just before write number ``kill_at``."""
    args = pickle.loads(Path(argfile).read_bytes())
    count = [0]

    def hit(where: str) -> None:
        count[0] += 1
        if count[0] == args["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    install_write_hooks(hit)
    for call in args["calls"]:
        write_cube(call.pop("source"), call.pop("store"), scheduler=args["scheduler"], **call)


def _marker_names(store: str, store_options: dict | None, fs: Any = None) -> set[str]:
    """Names of the block markers in ``store``, listed afresh (never a cached listing)."""
    if store.startswith("s3://"):
        import fsspec

        fs = fs or fsspec.filesystem("s3", skip_instance_cache=True, **(store_options or {}))
        base = f"{store[5:]}/_itslive/blocks"
        fs.invalidate_cache(base)
        try:
            return {p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False) if p.endswith(".json")}
        except FileNotFoundError:
            return set()
    return {p.name for p in Path(store, "_itslive", "blocks").glob("*.json")}


def _has_chunks(store: str, store_options: dict | None) -> bool:
    """True once a data chunk of ``v`` exists in ``store``."""
    if store.startswith("s3://"):
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True, **(store_options or {}))
        try:
            return bool(fs.find(f"{store[5:]}/v/c"))
        except FileNotFoundError:
            return False
    return any(p.is_file() for p in Path(store, "v", "c").rglob("*"))


@dataclass
class Kill:
    """Where a client build is killed: just before client write ``write`` (1-based), or once
    ``markers`` block markers exist in ``watch`` (the store holding the build state)."""

    write: int | None = None
    markers: int | None = None
    watch: str | None = None
    #: kill once a data chunk of ``v`` exists in this store (the time-series copy under way)
    copy_chunks_in: str | None = None


def run_and_kill(
    tmp_path: Path, scheduler: str, calls: list[dict], kill: Kill, store_options: dict | None
) -> str:
    """Run ``write_cube(**call)`` for each call in a subprocess, killed at ``kill``; returns how it ended."""
    argfile = tmp_path / f"args-{time.monotonic_ns()}.pkl"
    argfile.write_bytes(
        pickle.dumps({"calls": calls, "kill_at": kill.write or 0, "scheduler": scheduler})
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    code = f"import test_kills; test_kills._child({str(argfile)!r})"
    errfile = argfile.with_suffix(".stderr")
    with errfile.open("wb") as err_out:  # a file, not a pipe: a full pipe would stall the build
        proc = subprocess.Popen(
            [sys.executable, "-c", code], env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=err_out,
        )  # fmt: skip
    try:
        if kill.markers is not None:
            assert kill.watch is not None
            fs = None
            if kill.watch.startswith("s3://"):
                import fsspec

                fs = fsspec.filesystem("s3", skip_instance_cache=True, **(store_options or {}))
            deadline = time.monotonic() + 180
            while proc.poll() is None and time.monotonic() < deadline:
                if len(_marker_names(kill.watch, store_options, fs)) >= kill.markers:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05 if fs else 0.01)
        if kill.copy_chunks_in is not None:
            deadline = time.monotonic() + 180
            while proc.poll() is None and time.monotonic() < deadline:
                if _has_chunks(kill.copy_chunks_in, store_options):
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05 if kill.copy_chunks_in.startswith("s3://") else 0.005)
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    assert proc.returncode == 0, errfile.read_text(errors="replace")[-3000:]
    return "finished"


# ----------------------------------------------------------------------------- comparison
def _open(store: str, store_options: dict | None) -> xr.Dataset:
    return (
        xr.open_zarr(store, storage_options=store_options).load()
        if store.startswith("s3://")
        else xr.open_zarr(store).load()
    )


def _state_of(store: str, store_options: dict | None) -> dict | None:
    """The build state recorded in ``store``'s root attributes."""
    from itslive_dask.store.state import read_state
    from itslive_dask.store.target import resolve_target

    return read_state(resolve_target(store, store_options))


def assert_same_cube(
    store: str,
    ref: str,
    store_options: dict | None,
    *,
    state_store: str | None = None,
    ref_state_store: str | None = None,
) -> None:
    """``store`` holds what the uninterrupted build ``ref`` holds (values, NaN = NaN)."""
    a, b = _open(store, store_options), _open(ref, store_options)
    assert dict(a.sizes) == dict(b.sizes)
    assert set(a.data_vars) == set(b.data_vars) and set(a.coords) == set(b.coords)
    for v in a.data_vars:
        assert a[v].dtype == b[v].dtype, v
        assert np.array_equal(a[v].values, b[v].values, equal_nan=a[v].dtype.kind in "fc"), v
    for c in a.coords:
        eq_nan = a[c].dtype.kind in "fc"
        assert np.array_equal(a[c].values, b[c].values, equal_nan=eq_nan), c
    for key in set(a.attrs) | set(b.attrs):
        if key in ("history", "itslive_dask"):
            continue
        # the time-series copy names its source store: the same up to the store's name
        assert str(a.attrs.get(key)).replace(store, ref) == str(b.attrs.get(key)), key
    sa = state_store or store
    sb = ref_state_store or ref
    la, lb = read_ledger(sa, store_options), read_ledger(sb, store_options)
    assert sorted((f["granule_id"], f["block"]) for f in la["failed"]) == sorted(
        (f["granule_id"], f["block"]) for f in lb["failed"]
    )
    # "already in the cube" says what the last run skipped: after a rerun of an append that
    # was killed once its layers existed, they are among them (and they are layers)
    in_cube = "already in the cube"
    assert {s["granule_id"] for s in la["skipped"] if s["reason"] != in_cube} == {
        s["granule_id"] for s in lb["skipped"] if s["reason"] != in_cube
    }
    assert (
        {s["granule_id"] for s in lb["skipped"] if s["reason"] == in_cube}
        <= {s["granule_id"] for s in la["skipped"] if s["reason"] == in_cube}
        <= set(a.granule_id.values)
    )
    assert _marker_names(sa, store_options) == _marker_names(sb, store_options)
    state_a, state_b = _state_of(sa, store_options), _state_of(sb, store_options)
    assert state_a == state_b and state_a is not None
    assert all(g["complete"] for g in state_a["generations"])


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def kill_cluster():
    """Two single-threaded worker processes (with nannies) for this module alone: workers
    get killed here, and killed clients leave orphan tasks behind."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0", memory_limit="2GiB",
    )  # fmt: skip
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def granules(synthetic_archive):
    """12 granules of the session archive; the 4th is missing from the bucket (a ledger entry)."""
    table = synthetic_archive.table.iloc[:N_GRANULES].copy().reset_index(drop=True)
    table.loc[3, "url"] = table.url.iloc[3].replace(".nc", "_gone.nc")
    return table


@dataclass
class Scenario:
    """One kind of build: its calls (``create``, ``append``, ``timeseries``) and its rerun."""

    kind: str
    store_kind: str
    granules: Any
    region: Any
    storage_options: dict
    store_options: dict | None
    base: str  # folder or s3:// prefix of the stores
    references: dict = field(default_factory=dict)

    def store(self, name: str) -> str:
        return f"{self.base}/{name}.zarr"

    def state_store(self, store: str) -> str:
        return store + ".map.zarr" if self.kind == "timeseries" else store

    def common(self) -> dict:
        return {"storage_options": self.storage_options, "store_options": self.store_options}

    def prepare(self, store: str, client: Any) -> None:
        """The first generation of an append scenario (not killed)."""
        if self.kind == "append":
            write_cube(
                self.granules.iloc[:N_FIRST],
                store,
                self.region,
                chunks=CHUNKS,
                client=client,
                **self.common(),
            )

    def call(self, store: str, *, mode: str | None = None) -> dict:
        kw: dict[str, Any] = dict(
            source=self.granules, store=store, geometry=self.region, **self.common()
        )
        if self.kind == "append":
            kw["mode"] = mode or "append"
        else:
            kw.update(mode=mode or "create", chunks=CHUNKS)
        if self.kind == "timeseries":
            kw.update(layout="timeseries", timeseries_chunks=TS_CHUNKS)
        return kw

    def rerun(self, store: str, client: Any) -> Any:
        """Finish the build as a user would after a kill."""
        if self.kind == "append":
            return _write(self.call(store), client)
        try:
            return _write(self.call(store, mode="resume"), client)
        except StoreError as exc:
            if "does not exist" not in str(exc):
                raise
            return _write(self.call(store, mode="create"), client)  # nothing was written yet


def _write(call: dict, client: Any) -> Any:
    call = dict(call)
    return write_cube(call.pop("source"), call.pop("store"), client=client, **call)


_BUCKET = "kills-out"


@pytest.fixture(scope="module")
def scenarios(granules, synthetic_archive, local_s3, tmp_path_factory):
    """Scenario factory: ``scenarios(kind, store_kind)``; a kind's reference is built once."""
    local_s3.create_bucket(_BUCKET)
    made: dict[tuple[str, str], Scenario] = {}

    def get(kind: str, store_kind: str) -> Scenario:
        if (kind, store_kind) not in made:
            base = (
                str(tmp_path_factory.mktemp(f"kills-{kind}")) if store_kind == "local"
                else f"s3://{_BUCKET}/{kind}-{len(made)}"
            )  # fmt: skip
            made[kind, store_kind] = Scenario(
                kind,
                store_kind,
                granules,
                synthetic_archive.region,
                synthetic_archive.storage_options,
                dict(local_s3.storage_options) if store_kind == "s3" else None,
                base,
            )
        return made[kind, store_kind]

    return get


def reference(sc: Scenario, client: Any) -> tuple[str, WriteTrace]:
    """The uninterrupted build of ``sc`` and the trace of its client writes (built once)."""
    if "ref" not in sc.references:
        ref = sc.store("reference")
        sc.prepare(ref, client)
        sc.references["markers_before"] = len(_marker_names(sc.state_store(ref), sc.store_options))
        trace = WriteTrace()
        with pytest.MonkeyPatch.context() as m:
            tag_phases(m, trace)
            saved = install_write_hooks(trace.hit)
            try:
                res = _write(sc.call(ref), client)
            finally:
                remove_write_hooks(saved)
        assert {f["granule_id"] for f in res.failed} == {sc.granules.granule_id.iloc[3]}
        sc.references["ref"] = (ref, trace)
    return sc.references["ref"]


def _address(client: Any) -> str:
    return client.scheduler.address


def kill_and_rerun(
    tmp_path: Path, sc: Scenario, client: Any, kill: Kill, name: str
) -> dict[str, Any]:
    """Build ``sc`` into a new store, kill the client at ``kill``, rerun, compare; what happened."""
    ref, _ = reference(sc, client)
    store = sc.store(name)
    sc.prepare(store, client)
    if kill.markers is not None:  # counted from the markers the store already has
        kill.watch = sc.state_store(store)
        kill.markers += len(_marker_names(kill.watch, sc.store_options))
    if kill.copy_chunks_in is not None:
        kill.copy_chunks_in = store
    how = run_and_kill(tmp_path, _address(client), [sc.call(store)], kill, sc.store_options)
    seen: dict[str, Any] = {"ended": how}
    if sc.kind == "timeseries":
        seen["copy"] = _copy_state(store, sc.store_options)
    res = sc.rerun(store, client)
    seen["rerun_written"] = res.blocks_written
    assert_same_cube(
        store,
        ref,
        sc.store_options,
        state_store=sc.state_store(store),
        ref_state_store=sc.state_store(ref),
    )
    if sc.kind == "timeseries":
        assert _copy_state(store, sc.store_options) == "complete"
    return seen


def _copy_state(store: str, store_options: dict | None) -> str:
    """``absent``, ``incomplete`` (then reading it through the package must refuse) or ``complete``."""
    from itslive_dask.store.state import is_itslive_store, open_store
    from itslive_dask.store.target import exists, resolve_target

    target = resolve_target(store, store_options)
    if not exists(target):
        return "absent"
    try:
        attrs = target.open_root("r").attrs
    except Exception:  # a copy killed before its root metadata was written
        attrs = {}
    raw = attrs.get("itslive_dask_timeseries")
    if raw is not None and (json.loads(raw) if isinstance(raw, str) else raw).get("complete"):
        return "complete"
    # an incomplete copy must never read as a cube whose missing chunks are NaN
    with pytest.raises(StoreError, match=r"incomplete|not a readable"):
        open_store(store, store_options)
    assert not is_itslive_store(store, store_options) or raw is not None
    return "incomplete"


def _pick(trace: WriteTrace, phase: str, seed: int) -> int:
    points = trace.points(phase)
    assert points, f"no write in phase {phase}: {trace.writes}"
    return random.Random(seed).choice(points)


# ----------------------------------------------------------------------------- the points
# In the default suite: the template's second write, inside append, inside the time-series
# copy, all workers killed. The others (and the sweep) are in the reliability suite.
@pytest.mark.parametrize(
    "point", ["second write", pytest.param("seeded", marks=pytest.mark.reliability)]
)
def test_client_killed_inside_the_template_write(tmp_path, scenarios, kill_cluster, point):
    """A kill while the template is written: resume redoes the template, then builds.
    ``second write``: right after the store's first object, its root group. On main that
    was a bare group without attributes: resume said "no build state, use overwrite" and
    overwrite refused a store "not written by itslive_dask"."""
    sc = scenarios("create", "local")
    _, trace = reference(sc, kill_cluster)
    k = 2 if point == "second write" else _pick(trace, "template", seed=1)
    assert trace.writes[k - 1][0] == "template"
    seen = kill_and_rerun(tmp_path, sc, kill_cluster, Kill(write=k), f"template-{k}")
    assert seen["ended"] == "killed"


@pytest.mark.reliability
def test_client_killed_between_blocks_on_s3(tmp_path, scenarios, kill_cluster):
    """A kill after some blocks finished, on ``s3://``: resume builds only the others."""
    sc = scenarios("create", "s3")
    ref, _ = reference(sc, kill_cluster)
    total = len(_marker_names(ref, sc.store_options))
    k = random.Random(2).randrange(1, total)
    seen = kill_and_rerun(tmp_path, sc, kill_cluster, Kill(markers=k), "blocks")
    assert seen["ended"] == "killed"
    assert seen["rerun_written"] < total


def test_client_killed_inside_append(tmp_path, scenarios, kill_cluster):
    """A kill while append extends the template: appending again finishes the same cube."""
    sc = scenarios("append", "local")
    _, trace = reference(sc, kill_cluster)
    k = _pick(trace, "append-template", seed=3)
    seen = kill_and_rerun(tmp_path, sc, kill_cluster, Kill(write=k), "append")
    assert seen["ended"] == "killed"


def test_client_killed_inside_the_timeseries_copy(tmp_path, scenarios, kill_cluster):
    """A kill inside the rechunk of ``layout="timeseries"``: the copy says it is incomplete
    (and the package refuses to read it) until the rerun redoes it."""
    sc = scenarios("timeseries", "local")
    _, trace = reference(sc, kill_cluster)
    k = _pick(trace, "timeseries-copy", seed=4)
    seen = kill_and_rerun(tmp_path, sc, kill_cluster, Kill(write=k), "copy")
    assert seen["ended"] == "killed" and seen["copy"] in ("absent", "incomplete")


@pytest.mark.parametrize("which", [pytest.param("busy", marks=pytest.mark.reliability), "all"])
def test_worker_killed_while_blocks_run(tmp_path, scenarios, kill_cluster, which):
    """SIGKILL on a worker process while block tasks run: the busy one holding the blocks'
    configuration, or every worker at once (a lost node). A lost worker is transient: the
    nannies restart the workers, the scheduler reruns the lost tasks, and the build finishes
    identical to the uninterrupted one. On main the configuration was scattered data, lost
    with its worker: with ``all`` every remaining block failed (a StoreError)."""
    sc = scenarios("create", "local")
    ref, _ = reference(sc, kill_cluster)
    store = sc.store(f"worker-kill-{which}")
    pids = kill_cluster.run(os.getpid)
    killed: dict[str, Any] = {}

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.get("stop"):
            if _marker_names(store, None):
                busy = [a for a, keys in kill_cluster.processing().items() if keys]
                holders = {
                    a
                    for k, ws in kill_cluster.who_has().items()
                    if "config" in str(k).lower()
                    for a in ws
                }
                busy.sort(key=lambda a: a not in holders)
                if busy:
                    victims = list(pids) if which == "all" else busy[:1]
                    for a in victims:
                        os.kill(pids[a], signal.SIGKILL)
                    killed["workers"] = victims
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        res = _write(sc.call(store), kill_cluster)
    finally:
        killed["stop"] = True
        thread.join()
        kill_cluster.wait_for_workers(2, timeout=60)
    assert killed.get("workers"), "a worker was meant to die while blocks ran"
    assert res.blocks_written == res.blocks_total
    assert_same_cube(store, ref, None)


# ----------------------------------------------------------------------------- the sweep
#: Seeded random kill points per scenario: write points per phase, block points, copy points.
SWEEP_WRITES_PER_PHASE = 1
SWEEP_BLOCK_POINTS = 2


def sweep_points(sc: Scenario, trace: WriteTrace, total_new_markers: int) -> list[tuple[str, Kill]]:
    """The seeded random kill points of ``sc``: (label, Kill)."""
    rng = random.Random(f"kills-{sc.kind}-{sc.store_kind}")
    points: list[tuple[str, Kill]] = []
    for phase in dict.fromkeys(p for p, _ in trace.writes):
        for k in rng.sample(
            trace.points(phase), min(SWEEP_WRITES_PER_PHASE, len(trace.points(phase)))
        ):
            points.append((f"{phase} write {k}/{len(trace.writes)}", Kill(write=k)))
    for m in sorted(
        rng.sample(range(1, total_new_markers), min(SWEEP_BLOCK_POINTS, total_new_markers - 1))
    ):
        points.append((f"after {m}/{total_new_markers} blocks", Kill(markers=m)))
    if sc.kind == "timeseries":
        points.append(("time-series copy, chunks being written", Kill(copy_chunks_in="")))
    return points


@pytest.mark.slow  # ~23 min for its 40 kills: outside CI's time budget (run it with -m slow)
@pytest.mark.reliability
@pytest.mark.parametrize("store_kind", ["local", "s3"])
@pytest.mark.parametrize("kind", ["create", "append", "timeseries"])
def test_kill_sweep(tmp_path, scenarios, kill_cluster, kind, store_kind):
    """The client killed at seeded random points of every phase and between blocks; every
    rerun gives the uninterrupted cube. Prints one line per run (the table of
    docs/reliability.md, section Kills)."""
    sc = scenarios(kind, store_kind)
    ref, trace = reference(sc, kill_cluster)
    total_new = (
        len(_marker_names(sc.state_store(ref), sc.store_options)) - sc.references["markers_before"]
    )
    rows = []
    for n, (label, kill) in enumerate(sweep_points(sc, trace, total_new)):
        t0 = time.monotonic()
        seen = kill_and_rerun(tmp_path, sc, kill_cluster, kill, f"sweep-{n}")
        rows.append((label, seen, time.monotonic() - t0))
    print(f"\n{kind} on {store_kind}:")
    for label, seen, dt in rows:
        print(f"  {label}: {seen} ({dt:.1f} s) -> identical")
    assert any(seen["ended"] == "killed" for _, seen, _ in rows)
