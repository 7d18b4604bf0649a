"""The worker-environment check, against real worker processes whose environment lacks the
package (an import blocked at start-up) or has another version of it."""

from __future__ import annotations

import re
import textwrap

import pytest

import itslive_dask
from itslive_dask.cluster import check_workers, dask_client, start_worker_check
from itslive_dask.errors import ClusterError

#: Run by the worker at start-up (``dask worker --preload``): the worker's Python cannot import
#: these modules, as in an environment where they are not installed.
MISSING = textwrap.dedent(
    """
    import sys
    for name in ("itslive_dask", "h5netcdf"):
        sys.modules[name] = None  # 'import itslive_dask' now raises ImportError
    """
)
#: Another release of the package on the worker, and without pyproj (which the package's
#: top level does not import, but its block tasks do).
OLD = textwrap.dedent(
    """
    import sys
    import itslive_dask
    itslive_dask.__version__ = "0.0.1"
    sys.modules["pyproj"] = None
    """
)


@pytest.fixture
def mixed_cluster(tmp_path, dask_processes):
    (tmp_path / "missing_preload.py").write_text(MISSING)
    (tmp_path / "old_preload.py").write_text(OLD)
    address = dask_processes.start_scheduler()
    dask_processes.start_worker("good")
    dask_processes.start_worker("lacking", preload=tmp_path / "missing_preload.py")
    dask_processes.start_worker("old", preload=tmp_path / "old_preload.py")
    dask_processes.wait_for_workers(3)
    return address


def _refused_build(tmp_path, small, archive, **where) -> str:
    """The ClusterError's message of a build on a cluster with bad workers (``scheduler=``
    or ``client=``); nothing may have been written to the store."""
    store = tmp_path / "never.zarr"
    with pytest.raises(ClusterError) as info:
        itslive_dask.write_cube(
            small, str(store), archive.region, storage_options=archive.storage_options, **where
        )
    assert not store.exists(), "nothing is written before the check"
    return str(info.value)


def test_workers_lacking_the_package_give_one_clear_error(
    tmp_path, mixed_cluster, small, synthetic_archive
):
    msg = _refused_build(tmp_path, small, synthetic_archive, scheduler=mixed_cluster)
    print("\n" + msg)
    assert msg.startswith("2 of 3 Dask workers cannot run the build")
    lines = {
        m.group(1): line for line in msg.splitlines() if (m := re.search(r"\(name (\w+)\)", line))
    }
    assert set(lines) == {"lacking", "old"}
    assert "itslive_dask missing (ModuleNotFoundError" in lines["lacking"]
    assert "h5netcdf missing (ModuleNotFoundError" in lines["lacking"]
    assert "h5py" not in lines["lacking"] and "s3fs" not in lines["lacking"]
    assert f"itslive_dask 0.0.1 (this client has {itslive_dask.__version__})" in lines["old"]
    assert (
        "itslive_dask.cube.kernel cannot be imported (ModuleNotFoundError: import of pyproj halted"
        in lines["old"]
    )
    assert "cannot be imported" not in lines["lacking"]  # the package itself is missing there
    assert f"itslive_dask=={itslive_dask.__version__}" in msg
    assert "Traceback" not in msg


def test_the_check_applies_to_a_given_client(tmp_path, mixed_cluster, small, synthetic_archive):
    from distributed import Client

    with Client(mixed_cluster, timeout=30) as client:
        with pytest.raises(ClusterError, match=r"2 of 3 Dask workers"):
            with dask_client(client):
                pass
        # write_cube checks a given client while it plans (start_worker_check): the same
        # error, and still nothing written
        msg = _refused_build(tmp_path, small, synthetic_archive, client=client)
        assert msg.startswith("2 of 3 Dask workers") and "(name old)" in msg
        assert "(name lacking)" in msg
        assert start_worker_check(None) is None and start_worker_check("tcp://x:1") is None
        # the given client is left open
        assert client.status == "running"
        # without the two bad workers the same cluster passes
        bad = [a for a, w in client.scheduler_info()["workers"].items() if w["name"] != "good"]
        client.retire_workers(bad, close_workers=True)
        envs = check_workers(client)
        assert [e["name"] for e in envs.values()] == ["good"]
        assert start_worker_check(client).result(timeout=30) == envs
        (env,) = envs.values()
        assert env["modules"]["itslive_dask"] == {"version": itslive_dask.__version__}
        assert set(env["modules"]) == {
            "itslive_dask",
            "h5py",
            "h5netcdf",
            "fsspec",
            "s3fs",
            "zarr",
            "itslive_dask.cube.kernel",
            "itslive_dask.store.blocks",
        }
        assert all("version" in info for info in env["modules"].values())


def test_the_probe_finds_s3fs_without_importing_it():
    """Importing s3fs (botocore) is ~0.25 s of a worker's CPU that a build from local files
    never needs: the check finds it and reads its version instead; a worker whose Python
    cannot import it still says so."""
    import subprocess
    import sys

    code = textwrap.dedent(
        """
        import json, sys
        from itslive_dask.cluster import LOCATED_MODULES, _probe_function
        probe = _probe_function()
        found = probe(("s3fs", "fsspec"), LOCATED_MODULES)
        imported = "s3fs" in sys.modules
        sys.modules["s3fs"] = None  # as the MISSING preload does
        lacking = probe(("s3fs",), LOCATED_MODULES)
        print(json.dumps([found["modules"], imported, lacking["modules"]]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    import s3fs

    found, imported, lacking = json.loads(out.stdout)
    assert found["s3fs"] == {"version": s3fs.__version__} and "version" in found["fsspec"]
    assert imported is False
    assert lacking["s3fs"]["error"].startswith("ModuleNotFoundError")
