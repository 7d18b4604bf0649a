"""Builds through a scheduler address: ``dask scheduler`` and ``dask worker`` processes started
here, as on a machine room or a cloud cluster, equal bit for bit to a LocalCluster build;
a worker killed mid-build."""

from __future__ import annotations

import threading
import time

import pytest
from hub_helpers import assert_same_store

import itslive_dask

CHUNKS = (8, 96, 96)
KILL_CHUNKS = (2, 128, 128)  # many small blocks: the kill lands mid-build


def test_build_through_a_scheduler_address(
    tmp_path, small, synthetic_archive, local_reference, dask_processes
):
    address = dask_processes.start_scheduler()
    for name in ("w1", "w2"):
        dask_processes.start_worker(name)
    dask_processes.wait_for_workers(2)
    store = tmp_path / "remote.zarr"
    seen = []
    res = itslive_dask.write_cube(
        small,
        str(store),
        synthetic_archive.region,
        storage_options=synthetic_archive.storage_options,
        chunks=CHUNKS,
        scheduler=address,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert res.failed == [] and res.blocks_written == res.blocks_total > 0
    assert seen[-1] == (res.blocks_total, res.blocks_total)
    assert_same_store(store, local_reference(CHUNKS))
    # the scheduler and its workers were given, not started: still running
    assert dask_processes.scheduler.poll() is None
    assert all(p.poll() is None for p in dask_processes.workers.values())


def _two_workers_and_reference(dask_processes, local_reference):
    """A scheduler with two workers, and the LocalCluster reference store with its block count."""
    address = dask_processes.start_scheduler()
    for name in ("w1", "w2"):
        dask_processes.start_worker(name)
    dask_processes.wait_for_workers(2)
    reference = local_reference(KILL_CHUNKS)
    return address, reference, len(list((reference / "_itslive" / "blocks").glob("*.json")))


def test_worker_killed_mid_build(
    tmp_path, small, synthetic_archive, local_reference, dask_processes
):
    address, reference, total = _two_workers_and_reference(dask_processes, local_reference)
    store = tmp_path / "killed.zarr"
    kwargs = dict(
        storage_options=synthetic_archive.storage_options, chunks=KILL_CHUNKS, scheduler=address
    )
    outcome: dict = {}

    def build():
        try:
            outcome["result"] = itslive_dask.write_cube(
                small, str(store), synthetic_archive.region, **kwargs
            )
        except Exception as exc:  # any failure is resumed below
            outcome["error"] = exc

    thread = threading.Thread(target=build)
    thread.start()
    markers = store / "_itslive" / "blocks"
    deadline = time.time() + 120
    while time.time() < deadline and thread.is_alive():
        if markers.exists() and len(list(markers.glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    done_at_kill = len(list(markers.glob("*.json")))
    dask_processes.kill_worker("w2")
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert 0 < done_at_kill < total, "the worker must be killed part-way through the build"
    print(
        f"\nkilled w2 after {done_at_kill}/{total} blocks; build {'finished' if 'result' in outcome else 'failed: ' + repr(outcome.get('error'))}"
    )
    if "error" in outcome:  # the build may stop; resume on the surviving worker finishes it
        res = itslive_dask.write_cube(
            small, str(store), synthetic_archive.region, mode="resume", **kwargs
        )
        assert res.blocks_skipped >= done_at_kill
    else:
        res = outcome["result"]
        assert res.blocks_written == total
    assert res.failed == []
    assert_same_store(store, reference)


@pytest.mark.parametrize("mode", ["resume"])
def test_resume_through_a_scheduler_after_the_client_dies(
    tmp_path, small, synthetic_archive, local_reference, dask_processes, mode
):
    """The kernel dies, the cluster lives on: a new client resumes through the same address."""
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import textwrap

    address, reference, total = _two_workers_and_reference(dask_processes, local_reference)
    store = tmp_path / "kernel.zarr"
    args = tmp_path / "args.pkl"
    args.write_bytes(
        pickle.dumps(
            {
                "table": small,
                "store": str(store),
                "region": synthetic_archive.region,
                "so": synthetic_archive.storage_options,
                "address": address,
                "chunks": KILL_CHUNKS,
            }
        )
    )
    script = tmp_path / "kernel.py"
    script.write_text(
        textwrap.dedent("""
        import pickle, sys
        import itslive_dask
        a = pickle.load(open(sys.argv[1], "rb"))
        itslive_dask.write_cube(a["table"], a["store"], a["region"], storage_options=a["so"],
                                chunks=a["chunks"], scheduler=a["address"])
    """)
    )
    kernel = subprocess.Popen([sys.executable, str(script), str(args)], start_new_session=True)
    markers = store / "_itslive" / "blocks"
    deadline = time.time() + 120
    while time.time() < deadline and kernel.poll() is None:
        if markers.exists() and len(list(markers.glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    os.killpg(kernel.pid, signal.SIGKILL)  # the "kernel" only: the cluster stays up
    kernel.wait()
    # tasks already on the workers finish and write their markers; the resume skips them
    time.sleep(1.0)
    done_before = len(list(markers.glob("*.json")))
    assert 0 < done_before < total
    res = itslive_dask.write_cube(
        small,
        str(store),
        synthetic_archive.region,
        mode=mode,
        storage_options=synthetic_archive.storage_options,
        scheduler=address,
    )
    assert res.failed == [] and res.blocks_skipped >= done_before
    assert_same_store(store, reference)


def test_credentials_stay_out_of_keys_logs_and_store(
    tmp_path, small, synthetic_archive, local_s3, dask_processes
):
    """Options with a secret (for reading and for an s3:// store) reach the workers with the
    tasks, but the secret is in no task key, no scheduler or worker log, no file of the store."""
    import uuid

    from distributed import Client

    secret = f"hub-secret-{uuid.uuid4().hex}"
    read_opts = {**synthetic_archive.storage_options, "secret": secret}  # moto accepts any key pair
    store_opts = {**local_s3.storage_options, "secret": secret}
    address = dask_processes.start_scheduler()
    for name in ("w1", "w2"):
        dask_processes.start_worker(name, env={"DASK_LOGGING__DISTRIBUTED": "debug"})
    dask_processes.wait_for_workers(2)
    local_s3.create_bucket("hub-cubes")
    keys: set[str] = set()
    with Client(address, timeout=30, set_as_default=False) as spy:

        def progress(done, total):  # every key the scheduler holds while the build runs
            keys.update(
                map(str, spy.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))
            )

        res = itslive_dask.write_cube(
            small,
            "s3://hub-cubes/cube.zarr",
            synthetic_archive.region,
            storage_options=read_opts,
            store_options=store_opts,
            chunks=CHUNKS,
            scheduler=address,
            progress=progress,
        )
    assert res.failed == [] and res.blocks_written > 0
    assert any(k.startswith("itslive-write-") for k in keys), keys
    assert not [k for k in keys if secret in k]
    dask_processes.stop()  # flush the logs
    logs = [p.read_text(errors="replace") for p in tmp_path.glob("*.log")]
    assert len(logs) == 3 and all(logs)
    assert not [text for text in logs if secret in text]
    fs = local_s3.filesystem()
    files = [p for p in fs.find("hub-cubes/cube.zarr")]
    assert any("/_itslive/blocks/" in p for p in files) and any(
        p.endswith("ledger.json") for p in files
    )
    assert not [p for p in files if secret.encode() in fs.cat_file(p)]
