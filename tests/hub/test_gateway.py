"""Builds on dask-gateway clusters: a real ``dask-gateway-server`` on 127.0.0.1 with its
local-process backend, clusters made through ``dask_gateway.Gateway``.

The gateway starts in about two seconds and a cluster of two workers in a few more (the
server polls fast here: ``cluster_heartbeat_period = 1``), so these tests run in the default
suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import dask
import pytest
from hub_helpers import assert_same_store, store_files

import itslive_dask
from itslive_dask.cluster import close_gateway, close_gateway_cluster, dask_client
from itslive_dask.errors import ClusterError

pytest.importorskip("dask_gateway")
pytest.importorskip("dask_gateway_server")

CHUNKS = (8, 96, 96)
USER, PASSWORD = "hubuser", "not-a-secret"

GATEWAY_CONFIG = textwrap.dedent(
    """
    import sys
    from dask_gateway_server.options import Float, Integer, Options

    c.DaskGateway.address = "127.0.0.1:{api_port}"
    c.Proxy.address = "127.0.0.1:{http_port}"
    c.Proxy.tcp_address = "127.0.0.1:{tcp_port}"
    c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
    c.SimpleAuthenticator.password = "{password}"
    c.UnsafeLocalBackend.clusters_directory = "{workdir}/clusters"
    c.UnsafeLocalBackend.cluster_heartbeat_period = 1
    # the default timeout is two periods: on a loaded 2-core CI machine a late heartbeat
    # would have the gateway kill a busy cluster
    c.UnsafeLocalBackend.cluster_heartbeat_timeout = 120
    c.UnsafeLocalBackend.worker_start_timeout = 120
    c.UnsafeLocalBackend.cluster_start_timeout = 120
    c.UnsafeLocalBackend.cluster_status_period = 1
    c.UnsafeLocalBackend.worker_status_period = 1
    c.UnsafeLocalBackend.sigint_timeout = 2
    # `dask-scheduler` / `dask-worker` are gone from distributed: the modules instead
    c.LocalClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    c.LocalClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
    c.LocalClusterConfig.worker_cores = 1
    # user-facing cluster options, as a hub offers them
    c.Backend.cluster_options = Options(
        Float("worker_memory", 2, min=1, max=4, label="Worker memory (GiB)"),
        Integer("worker_cores", 1, min=1, max=2, label="Worker cores"),
        handler=lambda o: {{"worker_memory": int(o.worker_memory * 2**30), "worker_cores": o.worker_cores}},
    )
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayServer:
    def __init__(self, workdir):
        self.workdir = workdir
        self.api_port, self.http_port, self.tcp_port = (_free_port() for _ in range(3))
        self.address = f"http://127.0.0.1:{self.http_port}"
        self.proxy_address = f"gateway://127.0.0.1:{self.tcp_port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> GatewayServer:
        cfg = self.workdir / "dask_gateway_config.py"
        cfg.write_text(
            GATEWAY_CONFIG.format(
                api_port=self.api_port,
                http_port=self.http_port,
                tcp_port=self.tcp_port,
                password=PASSWORD,
                workdir=self.workdir,
            )
        )
        server = os.path.join(os.path.dirname(sys.executable), "dask-gateway-server")
        self.log = self.workdir / "gateway.log"
        self.proc = subprocess.Popen(
            [server, "-f", str(cfg)],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.address}/api/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("dask-gateway-server did not start:\n" + self.log.read_text()[-3000:])

    def config(self) -> dict:
        """The Dask configuration a hub sets for its users (DASK_GATEWAY__... variables)."""
        return {
            "gateway.address": self.address,
            "gateway.proxy-address": self.proxy_address,
            "gateway.auth.type": "basic",
            "gateway.auth.kwargs": {"username": USER, "password": PASSWORD},
        }

    def env(self) -> dict[str, str]:
        return {
            "DASK_GATEWAY__ADDRESS": self.address,
            "DASK_GATEWAY__PROXY_ADDRESS": self.proxy_address,
            "DASK_GATEWAY__AUTH__TYPE": "basic",
            "DASK_GATEWAY__AUTH__KWARGS__USERNAME": USER,
            "DASK_GATEWAY__AUTH__KWARGS__PASSWORD": PASSWORD,
        }

    @contextlib.contextmanager
    def gateway(self):
        from dask_gateway import BasicAuth, Gateway

        gateway = Gateway(
            self.address, proxy_address=self.proxy_address, auth=BasicAuth(USER, PASSWORD)
        )
        try:
            yield gateway
        finally:
            close_gateway(gateway)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server stops its clusters first
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory):
    t0 = time.perf_counter()
    server = GatewayServer(tmp_path_factory.mktemp("gateway")).start()
    print(f"\ndask-gateway-server up in {time.perf_counter() - t0:.1f} s")
    try:
        yield server
    finally:
        server.stop()


def _running(gateway) -> set[str]:
    return {c.name for c in gateway.list_clusters()}


def test_gateway_cluster_given_builds_the_same_cube(
    tmp_path, gateway_server, small, synthetic_archive, local_reference
):
    reference = local_reference(CHUNKS)
    kwargs = dict(storage_options=synthetic_archive.storage_options, chunks=CHUNKS)
    with gateway_server.gateway() as gateway:
        t0 = time.perf_counter()
        cluster = gateway.new_cluster()
        try:
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=120)
            print(f"\ngateway cluster with 2 workers in {time.perf_counter() - t0:.1f} s")
            # the call: the user's client of their gateway cluster
            res = itslive_dask.write_cube(
                small, str(tmp_path / "a.zarr"), synthetic_archive.region, client=client, **kwargs
            )
            assert res.failed == [] and res.blocks_written == res.blocks_total > 0
            assert_same_store(tmp_path / "a.zarr", reference)
            assert client.status == "running"
            # the cluster object itself, and its gateway:// address (through the Dask config)
            itslive_dask.write_cube(
                small, str(tmp_path / "b.zarr"), synthetic_archive.region, client=cluster, **kwargs
            )
            assert_same_store(tmp_path / "b.zarr", reference)
            with dask.config.set(gateway_server.config()):
                assert cluster.scheduler_address.startswith("gateway://")
                itslive_dask.write_cube(
                    small,
                    str(tmp_path / "c.zarr"),
                    synthetic_archive.region,
                    scheduler=cluster.scheduler_address,
                    **kwargs,
                )
                assert_same_store(tmp_path / "c.zarr", reference)
                with dask_client(scheduler=f"gateway:{cluster.name}") as c:
                    assert len(c.scheduler_info()["workers"]) == 2
            # given, never shut down: still running with its workers
            assert cluster.name in _running(gateway)
            assert len(client.scheduler_info()["workers"]) == 2
            client.close()
        finally:
            close_gateway_cluster(cluster, shutdown=True)
        assert cluster.name not in _running(gateway)


def test_gateway_cluster_started_for_a_build_is_shut_down(
    tmp_path, gateway_server, small, synthetic_archive, local_reference
):
    with gateway_server.gateway() as gateway, dask.config.set(gateway_server.config()):
        before = _running(gateway)
        res = itslive_dask.write_cube(
            small,
            str(tmp_path / "new.zarr"),
            synthetic_archive.region,
            storage_options=synthetic_archive.storage_options,
            chunks=CHUNKS,
            scheduler="gateway:new?workers=2",
        )
        assert res.failed == []
        assert_same_store(tmp_path / "new.zarr", local_reference(CHUNKS))
        assert _running(gateway) == before

        # a build that fails half-way (here: the progress display raises) still shuts it down
        def broken_progress(done, total):
            if done:
                raise RuntimeError("display died")

        with pytest.raises(RuntimeError, match="display died"):
            itslive_dask.write_cube(
                small,
                str(tmp_path / "broken.zarr"),
                synthetic_archive.region,
                storage_options=synthetic_archive.storage_options,
                chunks=CHUNKS,
                scheduler="gateway:new?workers=1",
                progress=broken_progress,
            )
        assert _running(gateway) == before


def test_gateway_cluster_options(gateway_server):
    with gateway_server.gateway() as gateway, dask.config.set(gateway_server.config()):
        before = _running(gateway)
        with dask_client(scheduler="gateway:new?workers=1&worker_memory=1.5") as c:
            (worker,) = c.scheduler_info()["workers"].values()
            assert worker["memory_limit"] == int(1.5 * 2**30)
            assert len(_running(gateway)) == len(before) + 1
        assert _running(gateway) == before
        with pytest.raises(ClusterError, match="worker_gpus"):
            with dask_client(scheduler="gateway:new?worker_gpus=1"):
                pass
        with pytest.raises(ClusterError, match="worker_memory"):
            with dask_client(scheduler="gateway:new?worker_memory=64"):  # above the gateway's max
                pass
        with pytest.raises(ClusterError, match="nosuchcluster"):
            with dask_client(scheduler="gateway:nosuchcluster"):
                pass
        assert _running(gateway) == before


def test_cli_builds_on_a_gateway_cluster(
    tmp_path, gateway_server, small, synthetic_archive, local_reference, local_s3
):
    """``itslive-dask cube --scheduler gateway://<proxy>/<cluster name>``, configured the way a hub
    configures its users' sessions (DASK_GATEWAY__* variables); the cluster is left running."""
    granules = tmp_path / "granules.parquet"
    small.to_parquet(granules)
    polygon = ",".join(f"{x!r},{y!r}" for x, y in synthetic_archive.region.exterior.coords[:-1])
    env = dict(os.environ, **gateway_server.env(), COLUMNS="160")
    base = [
        sys.executable,
        "-m",
        "itslive_dask.cli.app",
        "cube",
        "--granules",
        str(granules),
        "--polygon",
        polygon,
        "--chunks",
        ",".join(map(str, CHUNKS)),
        "--anon",
        "-s",
        f"endpoint_url={local_s3.endpoint_url}",
    ]
    with gateway_server.gateway() as gateway:
        before = _running(gateway)
        cluster = gateway.new_cluster()
        try:
            cluster.scale(2)
            with cluster.get_client() as c:
                c.wait_for_workers(2, timeout=120)
            out = tmp_path / "cli.zarr"
            res = subprocess.run(
                [*base, "-o", str(out), "--scheduler", cluster.scheduler_address],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert res.returncode == 0, res.stderr[-3000:]
            assert "Dask dashboard" in res.stdout + res.stderr
            files, ref = store_files(out), store_files(local_reference(CHUNKS))
            for v in ("vx", "vy", "v", "v_error"):
                a = {k: b for k, b in files.items() if k.startswith(f"{v}/")}
                assert (
                    a == {k: b for k, b in ref.items() if k.startswith(f"{v}/")} and len(a) > 1
                ), v
            assert cluster.name in _running(gateway)
        finally:
            close_gateway_cluster(cluster, shutdown=True)
        assert _running(gateway) == before


def test_gateway_strings_are_checked_before_anything_starts():
    from itslive_dask.cluster import parse_gateway_scheduler
    from itslive_dask.errors import InvalidInputError

    assert parse_gateway_scheduler("gateway:new?workers=4&image=pangeo") == (
        "new",
        None,
        {"workers": "4", "image": "pangeo"},
    )
    assert parse_gateway_scheduler("gateway:new") == ("new", None, {})
    assert parse_gateway_scheduler("gateway:abc123") == ("name", "abc123", {})
    assert parse_gateway_scheduler("gateway://10.0.0.5:8786/abc123") == (
        "address",
        "abc123",
        {"proxy_address": "gateway://10.0.0.5:8786"},
    )
    for bad in (
        "gateway:",
        "gateway://10.0.0.5:8786",
        "gateway://10.0.0.5:8786/a/b",
        "gateway:name?x=1",
        "gateway:new?novalue",
    ):
        with pytest.raises(InvalidInputError):
            parse_gateway_scheduler(bad)
    with dask.config.set({"gateway.address": None, "gateway.proxy-address": None}):
        with pytest.raises(ClusterError, match="DASK_GATEWAY__ADDRESS"):
            with dask_client(scheduler="gateway:new"):
                pass


def test_kernel_dies_and_a_new_one_resumes_on_the_same_gateway_cluster(
    tmp_path, gateway_server, small, synthetic_archive, local_reference
):
    """docs/cloud.md, step 3: the kernel building on a gateway cluster is killed; the cluster
    lives on; a new session resumes by the cluster's name and gets the uninterrupted cube."""
    import pickle

    chunks = (2, 128, 128)  # many small blocks: the kill lands mid-build
    reference = local_reference(chunks)
    total = len(list((reference / "_itslive" / "blocks").glob("*.json")))
    store = tmp_path / "hub.zarr"
    with gateway_server.gateway() as gateway:
        cluster = gateway.new_cluster()
        try:
            cluster.scale(2)
            with cluster.get_client() as c:
                c.wait_for_workers(2, timeout=120)
            args = tmp_path / "args.pkl"
            args.write_bytes(
                pickle.dumps(
                    {
                        "table": small,
                        "store": str(store),
                        "region": synthetic_archive.region,
                        "so": synthetic_archive.storage_options,
                        "chunks": chunks,
                        "scheduler": f"gateway:{cluster.name}",
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
                                        chunks=a["chunks"], scheduler=a["scheduler"])
            """)
            )
            kernel = subprocess.Popen(
                [sys.executable, str(script), str(args)],
                start_new_session=True,
                env=dict(os.environ, **gateway_server.env()),
            )
            markers = store / "_itslive" / "blocks"
            deadline = time.time() + 180
            while time.time() < deadline and kernel.poll() is None:
                if markers.exists() and len(list(markers.glob("*.json"))) >= 2:
                    break
                time.sleep(0.02)
            os.killpg(kernel.pid, signal.SIGKILL)
            kernel.wait()
            done_before = len(list(markers.glob("*.json")))
            assert 0 < done_before < total, "the kernel must die part-way through the build"
            assert cluster.name in _running(gateway), "the cluster outlives the kernel"
            with dask.config.set(gateway_server.config()):
                res = itslive_dask.write_cube(
                    small,
                    str(store),
                    mode="resume",
                    storage_options=synthetic_archive.storage_options,
                    scheduler=f"gateway:{cluster.name}",
                )
            assert res.failed == [] and res.blocks_skipped >= done_before
            assert_same_store(store, reference)
            assert cluster.name in _running(gateway)
        finally:
            close_gateway_cluster(cluster, shutdown=True)
