"""The package's rooms keep their doors: who may touch granule bytes, who may reach into the
store, and what the core needs installed.

These read the source (AST), so they fail as soon as a module crosses a boundary, whether or
not a test exercises that code path.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "itslive_dask"

#: Libraries that read HDF5 / NetCDF bytes.
HDF5_LIBS = {"h5py", "h5netcdf", "netCDF4", "h5coro"}
#: Calls that open or fetch bytes through fsspec.
FSSPEC_OPENERS = {"open", "open_files", "url_to_fs", "filesystem", "cat", "cat_file"}


def _modules(*, outside: tuple[str, ...]) -> list[Path]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith(outside):
            out.append(path)
    return out


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_io_reads_hdf5():
    # io/ holds the reader; the synthetic archive writes granules (it is their producer)
    offenders = {}
    for path in _modules(outside=("io/", "testing/synthetic/")):
        found = {m for m in _imports(ast.parse(path.read_text())) if m.split(".")[0] in HDF5_LIBS}
        if found:
            offenders[path.relative_to(PACKAGE).as_posix()] = sorted(found)
    assert offenders == {}


def test_only_io_opens_bytes_with_fsspec():
    # testing/ starts servers and writes the synthetic archive; everything else asks io/
    offenders = {}
    for path in _modules(outside=("io/", "testing/")):
        tree = ast.parse(path.read_text())
        if any(m.split(".")[0] in ("fsspec", "s3fs") for m in _imports(tree)):
            offenders[path.relative_to(PACKAGE).as_posix()] = "imports fsspec/s3fs"
    assert offenders == {}


def test_the_kernel_never_opens_files():
    tree = ast.parse((PACKAGE / "cube" / "kernel.py").read_text())
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    assert not (calls & ({"File", "fetch_granule", "open"} | FSSPEC_OPENERS))
    assert not {m for m in _imports(tree) if m.startswith("itslive_dask.io.hdf5")}


def test_cli_and_demo_do_not_reach_into_store_internals():
    public_store = {
        "itslive_dask.store.write": {
            "write_cube",
            "check_output",
            "WriteResult",
            "MODES",
            "LAYOUTS",
        },
        "itslive_dask.store.state": {
            "describe_build",
            "open_store",
            "is_itslive_store",
            "read_ledger",
        },
        "itslive_dask.store.stac_item": {"cube_stac_item", "write_stac_item"},
    }
    offenders = []
    for rel in ("cli/app.py", "demo.py", "pipeline.py"):
        source = (PACKAGE / rel).read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("itslive_dask.store")
            ):
                allowed = public_store.get(node.module, set())
                bad = [
                    a.name for a in node.names if a.name not in allowed or a.name.startswith("_")
                ]
                if bad:
                    offenders.append((rel, node.module, bad))
        for name in ("_itslive", ".map.zarr", "zarr.json", ".zattrs"):
            if f'"{name}' in source or f"'{name}" in source or f"/{name}" in source:
                offenders.append((rel, "hard-codes", name))
    assert offenders == []


BLOCKER = textwrap.dedent(
    """
    import sys

    class _Blocked:
        BLOCKED = {"moto", "fastapi", "uvicorn", "matplotlib", "typer", "rich", "starlette"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, _Blocked())
    """
)


def test_core_works_without_the_optional_dependencies(tmp_path):
    """open_cube and write_cube on a LocalCluster of processes, with moto, FastAPI, uvicorn,
    matplotlib, typer and rich unimportable in the client and in every worker process."""
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive

    table = generate_archive(
        str(tmp_path / "archive"), SyntheticConfig(region="svalbard", n_granules=6, seed=3)
    )
    table.to_parquet(tmp_path / "granules.parquet")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    script = textwrap.dedent(
        f"""
        import sys
        import geopandas as gpd
        import numpy as np
        import xarray as xr
        import itslive_dask as itd

        for name in ("moto", "fastapi", "uvicorn", "matplotlib", "typer", "rich"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                sys.exit(f"{{name}} is importable: the blocker does not work")
        table = gpd.read_parquet({str(tmp_path / "granules.parquet")!r})
        lazy = itd.open_cube(table, chunks=(4, 128, 128)).compute()
        res = itd.write_cube(table, {str(tmp_path / "cube.zarr")!r}, chunks=(4, 128, 128),
                             n_workers=1, memory_limit="1GiB")
        stored = xr.open_zarr({str(tmp_path / "cube.zarr")!r}).load()
        assert res.failed == [], res.failed
        assert int(np.isfinite(stored.v).sum()) > 1000
        np.testing.assert_array_equal(stored.v.values, lazy.v.values)  # NaN == NaN here
        for name in ("moto", "fastapi", "uvicorn", "matplotlib", "typer", "rich"):
            assert name not in sys.modules, name
        try:
            itd.plot_yearly_mean
        except ImportError as exc:
            assert "itslive_dask[plot]" in str(exc), exc
        else:
            sys.exit("plots imported without matplotlib")
        print("OK", len(table), res.shape)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(PACKAGE.parent)]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK 6")


@pytest.mark.parametrize("args", [["--help"]])
def test_cli_without_its_extra_says_which_to_install(tmp_path, args):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(PACKAGE.parent)]))
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from itslive_dask.cli import main; sys.exit(main(sys.argv[1:]))", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "itslive_dask[cli]" in done.stderr and "Traceback" not in done.stderr
