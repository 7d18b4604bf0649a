"""Fixtures of the hub tests: separately started ``dask scheduler`` / ``dask worker`` processes,
LocalCluster reference builds, and store comparison.

Every process is started in its own session (process group) and stopped by its id.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: The small build of these tests: 24 granules of the session archive.
N_GRANULES = 24


def dask_cli() -> str:
    path = shutil.which("dask", path=os.path.dirname(sys.executable))
    assert path, "the dask command comes with distributed"
    return path


@dataclass
class DaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes started by a test."""

    workdir: Path
    address: str = ""
    scheduler: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_scheduler(self, timeout: float = 60) -> str:
        sched_file = self.workdir / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [
                dask_cli(),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "scheduler.log", "wb"),
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while not sched_file.exists() and time.time() < deadline:
            assert self.scheduler.poll() is None, (self.workdir / "scheduler.log").read_text()[
                -2000:
            ]
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written at once, read it whole
        self.address = json.loads(sched_file.read_text())["address"]
        return self.address

    def start_worker(
        self, name: str, *, preload: Path | None = None, env: dict | None = None
    ) -> subprocess.Popen:
        """One single-threaded worker process without a nanny (killing it kills the worker)."""
        cmd = [
            dask_cli(),
            "worker",
            self.address,
            "--name",
            name,
            "--nthreads",
            "1",
            "--no-nanny",
            "--host",
            "127.0.0.1",
            "--memory-limit",
            "2GiB",
            "--dashboard-address",
            "127.0.0.1:0",
        ]
        if preload is not None:
            cmd += ["--preload", str(preload)]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"worker-{name}.log", "wb"),
            start_new_session=True,
            env=dict(os.environ, **(env or {})),
        )
        self.workers[name] = proc
        return proc

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=timeout)

    def kill_worker(self, name: str) -> None:
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """Workers first (they leave while their scheduler still answers), then the scheduler."""
        for group in (list(self.workers.values()), [self.scheduler]):
            live = [p for p in group if p is not None and p.poll() is None]
            for proc in live:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in live:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@pytest.fixture
def dask_processes(tmp_path) -> Iterator[DaskProcesses]:
    procs = DaskProcesses(workdir=tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture(scope="package")
def small(synthetic_archive):
    """The first granules of the session archive: a build of a few seconds."""
    t = synthetic_archive.table
    return t.iloc[: min(len(t), N_GRANULES)].reset_index(drop=True)


@pytest.fixture(scope="package")
def local_reference(small, synthetic_archive, dask_client, tmp_path_factory):
    """``chunks -> store path`` of builds of ``small`` on the session LocalCluster."""
    import itslive_dask

    built: dict[tuple[int, int, int], Path] = {}

    def get(chunks: tuple[int, int, int]) -> Path:
        if chunks not in built:
            path = tmp_path_factory.mktemp("reference") / "local.zarr"
            res = itslive_dask.write_cube(
                small,
                str(path),
                synthetic_archive.region,
                storage_options=synthetic_archive.storage_options,
                chunks=chunks,
                client=dask_client,
            )
            assert res.failed == [] and res.blocks_written == res.blocks_total > 0
            built[chunks] = path
        return built[chunks]

    return get
