"""The end-to-end demo: no network, no set-up, checked against the known truth.

:func:`run_demo` (``itslive-dask demo`` on the command line) does what a user of the public
archive does, on a synthetic archive whose velocities are an analytic field:

1. start a local S3 server (moto, 127.0.0.1) and create the bucket ``its-live-data``;
2. generate a synthetic ITS_LIVE archive into it (default region ``"svalbard"``: granules in
   three UTM zones and EPSG:3413, V1 and V2 files, gaps) with its catalog;
3. start the local search server on that catalog and search it as one searches the public
   API: the STAC API with pystac-client, cross-checked with the legacy NSIDC-style endpoint;
4. filter the result (at most ``max_files_per_year`` granules per year);
5. build the cube into a local Zarr store on a Dask LocalCluster (``workers`` processes),
   reading the granules from S3;
6. compute yearly mean speeds and write the figures;
7. compare the cube with the analytic truth (:func:`truth_accuracy`) and write
   ``summary.json``.

Servers are stopped on the way out, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itslive_dask.errors import InvalidInputError
from itslive_dask.geo.transform import transformer
from itslive_dask.store.state import is_itslive_store

__all__ = ["DEMO_BUCKET", "DemoResult", "run_demo", "truth_accuracy"]

log = logging.getLogger(__name__)

#: Bucket of the local S3 server that holds the synthetic archive (as the public one).
DEMO_BUCKET = "its-live-data"
#: Default output folder.
DEFAULT_OUTPUT = "itslive-demo-output"


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    output
        The output folder.
    store
        The Zarr cube.
    plots
        Figure name -> PNG path.
    summary
        The numbers also written to ``summary.json`` (counts, timings, accuracy).
    summary_file
        Path of ``summary.json``.
    """

    output: Path
    store: Path
    plots: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    summary_file: Path | None = None


class _Quiet:
    """The no-op user interface of :func:`run_demo` when called from Python."""

    def step(self, message: str) -> None:
        log.info(message)

    def note(self, message: str) -> None:
        log.debug(message)

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None = None):
        yield lambda *a, **k: None


# --------------------------------------------------------------------------- accuracy


def _sampled_centres(
    xs_t: np.ndarray,
    ys_t: np.ndarray,
    target_epsg: int,
    source_epsg: int,
    gx0: float,
    gy0: float,
    dx: float,
    dy: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Centre (in the target CRS) of the source-grid pixel nearest to each target point.

    The source grid is the lattice of centres ``gx0 + j * dx``, ``gy0 + i * dy``.
    """
    to_src = transformer(target_epsg, source_epsg)
    sx, sy = to_src.transform(xs_t, ys_t)
    cx = gx0 + np.floor((sx - gx0) / dx + 0.5) * dx
    cy = gy0 + np.floor((sy - gy0) / dy + 0.5) * dy
    back = transformer(source_epsg, target_epsg)
    tx, ty = back.transform(cx, cy)
    return np.asarray(tx), np.asarray(ty)


def _resolution_of(url: str) -> str:
    """The ``G0120``-style pixel-size tag of a granule name ('' when absent)."""
    import re

    m = re.search(r"_G(\d{4})V\d{2}_", url)
    return m.group(1) if m else ""


def _stats(values: list[np.ndarray]) -> dict[str, float]:
    arr = np.concatenate(values) if values else np.empty(0)
    if arr.size == 0:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(np.max(arr)),
    }


def truth_accuracy(
    cube: Any,
    *,
    region: Any = "svalbard",
    storage_options: dict | None = None,
    min_speed_for_direction: float = 50.0,
    max_workers: int = 8,
) -> dict[str, Any]:
    """Compare a cube built from the synthetic archive with the analytic truth.

    Two references are used, both from :func:`itslive_dask.testing.synthetic.truth_velocity` at each
    layer's ``mid_date`` (the field changes linearly in time, so the value of an image pair
    is the truth at its mid date), expressed along the cube's axes:

    ``at_sampled_pixel``
        The truth at the centre of the granule pixel that nearest-neighbour resampling
        copied into each cube pixel (the granule lattice is read from the header of one
        granule per CRS and pixel size: ITS_LIVE granules of one CRS and size share it). This
        isolates what the engine does (rotation of the vectors, decoding); with noise-free
        granules only the granules' int16 rounding remains (at most ``hypot(0.5, 0.5)``).
    ``at_cube_pixel``
        The truth at the cube pixel centre itself: adds the resampling offset (up to half a
        pixel diagonal between the two grids) times the local speed gradient.

    Parameters
    ----------
    cube
        The cube (``xarray.Dataset`` with ``vx``, ``vy``, ``v``) or the path of its Zarr store.
    region
        Synthetic region preset the archive was generated for.
    storage_options
        fsspec options to read the granule headers (``granule_url`` of each layer).
    min_speed_for_direction
        Direction errors are reported over pixels at least this fast (m/yr): the direction
        of a slow vector is dominated by the int16 rounding of its components.
    max_workers
        Threads reading granule headers.

    Notes
    -----
    The synthetic field is its 2015 value times a scalar factor of time, so the truth is
    evaluated once per set of points and scaled per layer (exactly what
    :func:`~itslive_dask.testing.synthetic.truth_velocity` computes at each date).

    Returns
    -------
    dict
        ``pixels`` (valid cube pixels compared), ``layers``, and for each reference
        ``speed_error`` and ``direction_error_deg`` dicts with ``median``, ``p95`` and
        ``max`` (m/yr and degrees), plus ``vector_error`` (|(vx, vy) - truth|, m/yr).
    """
    import xarray as xr

    from itslive_dask.io.hdf5 import read_granule_info
    from itslive_dask.testing.synthetic import time_factor, truth_velocity

    ds = cube if isinstance(cube, xr.Dataset) else xr.open_zarr(str(cube))
    for name in ("vx", "vy", "v"):
        if name not in ds.data_vars:
            raise InvalidInputError(f"truth_accuracy needs {name!r} in the cube")
    from itslive_dask.analysis import cube_crs

    epsg = cube_crs(ds).to_epsg()
    if epsg is None:
        raise InvalidInputError("the cube's CRS has no EPSG code")
    x = np.asarray(ds["x"].values, "float64")
    y = np.asarray(ds["y"].values, "float64")
    X, Y = np.meshgrid(x, y)
    urls = [str(u) for u in np.asarray(ds["granule_url"].values)]
    dates = pd.DatetimeIndex(ds["mid_date"].values)
    src_epsg = [int(e) for e in np.asarray(ds["source_epsg"].values)]
    groups = [(e, _resolution_of(u)) for e, u in zip(src_epsg, urls, strict=True)]
    # one header per (CRS, pixel size): ITS_LIVE granules of one CRS and size share one lattice
    first = {g: u for g, u in reversed(list(zip(groups, urls, strict=True)))}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(first) or 1))) as pool:
        headers = list(
            pool.map(
                lambda u: read_granule_info(u, storage_options=storage_options), first.values()
            )
        )
    lattice = dict(zip(first, headers, strict=True))
    # The field is the 2015 field times a scalar factor of time (synthetic.field): evaluate the
    # 2015 field once per set of points, scale it per layer.
    truth_cube = truth_velocity(X, Y, epsg, None, region=region)
    truth_sampled: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    refs: dict[str, dict[str, list[np.ndarray]]] = {
        name: {"speed": [], "direction": [], "vector": []}
        for name in ("at_sampled_pixel", "at_cube_pixel")
    }
    n_pixels = 0
    n_layers = 0
    step = int(ds["v"].chunks[0][0]) if ds["v"].chunks else 16
    block: Any = None
    for k in range(ds.sizes["mid_date"]):
        if k % step == 0:  # read whole time chunks, not one layer per chunk read
            block = ds[["vx", "vy", "v"]].isel(mid_date=slice(k, k + step)).load()
        layer = block.isel(mid_date=k % step)
        vx, vy, v = (np.asarray(layer[n].values, "float64") for n in ("vx", "vy", "v"))
        valid = np.isfinite(vx) & np.isfinite(vy) & np.isfinite(v)
        if not valid.any():
            continue
        n_layers += 1
        n_pixels += int(valid.sum())
        factor = float(time_factor(dates[k].to_datetime64()))
        info = lattice[groups[k]]
        gx, gy = np.asarray(info.x, "float64"), np.asarray(info.y, "float64")
        dx, dy = float(gx[1] - gx[0]), float(gy[1] - gy[0])
        key = (
            int(info.epsg),
            dx,
            dy,
            round(float(gx[0]) % abs(dx), 6),
            round(float(gy[0]) % abs(dy), 6),
        )
        if key not in truth_sampled:
            tx, ty = _sampled_centres(
                X, Y, epsg, int(info.epsg), float(gx[0]), float(gy[0]), dx, dy
            )
            truth_sampled[key] = truth_velocity(tx, ty, epsg, None, region=region)
        for name, (tvx, tvy) in (
            ("at_cube_pixel", truth_cube),
            ("at_sampled_pixel", truth_sampled[key]),
        ):
            evx, evy = tvx[valid] * factor, tvy[valid] * factor
            cvx, cvy, cv = vx[valid], vy[valid], v[valid]
            espeed = np.hypot(evx, evy)
            refs[name]["speed"].append(np.abs(cv - espeed))
            refs[name]["vector"].append(np.hypot(cvx - evx, cvy - evy))
            fast = espeed >= min_speed_for_direction
            ang = np.degrees(np.arctan2(cvy[fast], cvx[fast]) - np.arctan2(evy[fast], evx[fast]))
            refs[name]["direction"].append(np.abs((ang + 180.0) % 360.0 - 180.0))
    out: dict[str, Any] = {
        "pixels": n_pixels,
        "layers": n_layers,
        "min_speed_for_direction": min_speed_for_direction,
    }
    for name, parts in refs.items():
        out[name] = {
            "speed_error": _stats(parts["speed"]),
            "vector_error": _stats(parts["vector"]),
            "direction_error_deg": _stats(parts["direction"]),
        }
    return out


# --------------------------------------------------------------------------- the demo


def _prepare_output(output: str | os.PathLike) -> tuple[Path, Path, Path]:
    out = Path(output).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--output {out} exists and is not a folder")
    store = out / "cube.zarr"
    if store.exists() and not is_itslive_store(str(store)):
        raise InvalidInputError(
            f"{store} exists and is not an itslive_dask cube; choose another --output"
        )
    plots = out / "plots"
    return out, store, plots


def run_demo(
    output: str | os.PathLike = DEFAULT_OUTPUT,
    *,
    granules: int = 120,
    seed: int = 0,
    workers: int = 2,
    region: str = "svalbard",
    max_files_per_year: int | None = 12,
    chunks: Any = (16, 256, 256),
    keep_servers: bool = False,
    ui: Any = None,
    wait_for_interrupt: Callable[[], None] | None = None,
) -> DemoResult:
    """Run the whole workflow on a synthetic archive served locally, and check it.

    Parameters
    ----------
    output
        Folder for the results: ``cube.zarr``, ``plots/*.png``, ``search.parquet``,
        ``summary.json``. A previous demo cube there is replaced; anything else named
        ``cube.zarr`` is refused.
    granules
        Number of synthetic granules to generate.
    seed
        Random seed of the synthetic archive (same seed, same archive, same cube).
    workers
        Dask worker processes of the LocalCluster.
    region
        Synthetic region preset (``"svalbard"``: UTM 33N/34N/35N + EPSG:3413;
        ``"pine_island"``: EPSG:3031).
    max_files_per_year
        Cap of the filter step (None: keep all).
    chunks
        Cube chunks (mid_date, y, x).
    keep_servers
        After the run, keep the S3 and search servers up until Ctrl-C (to explore them with
        other tools); their addresses are shown.
    ui
        Progress display (the CLI passes its rich one); default: log lines only.
    wait_for_interrupt
        What to do while servers are kept (default: sleep until KeyboardInterrupt).

    Returns
    -------
    DemoResult

    Examples
    --------
    >>> res = run_demo("demo-out", granules=40)        # doctest: +SKIP
    >>> res.summary["accuracy"]["at_sampled_pixel"]["speed_error"]["median"]  # doctest: +SKIP
    """
    import xarray as xr

    from itslive_dask.analysis import (
        _crs_label,
        cube_crs,
        layer_counts,
        point_timeseries,
        yearly_mean,
    )
    from itslive_dask.discovery.api import search
    from itslive_dask.pipeline import select_granules, write_with_progress
    from itslive_dask.plots import (
        plot_granule_counts,
        plot_point_timeseries,
        plot_speed_histogram,
        plot_yearly_mean,
    )
    from itslive_dask.server import LocalSearchServer
    from itslive_dask.spec import CubeSpec
    from itslive_dask.testing.local_s3 import LocalS3
    from itslive_dask.testing.synthetic import SyntheticConfig, generate_archive, get_region

    ui = ui or _Quiet()
    if not isinstance(granules, int) or granules < 1:
        raise InvalidInputError(f"--granules must be a positive integer, got {granules!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"--workers must be a positive integer, got {workers!r}")
    config = SyntheticConfig(region=region, n_granules=granules, seed=seed)  # validates
    reg = get_region(region)
    out, store, plot_dir = _prepare_output(output)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    summary: dict[str, Any] = {
        "output": str(out),
        "store": str(store),
        "region": reg.name,
        "seed": seed,
    }

    with contextlib.ExitStack() as stack:
        t = time.perf_counter()
        ui.step("starting a local S3 server (moto) on 127.0.0.1")
        s3 = stack.enter_context(LocalS3())
        s3.create_bucket(DEMO_BUCKET)
        so = s3.storage_options
        ui.note(f"S3 endpoint {s3.endpoint_url}, bucket s3://{DEMO_BUCKET}")

        ui.step(f"generating {granules} synthetic granules around {reg.name} (seed {seed})")
        with ui.progress("writing granules", total=granules) as update:
            archive = generate_archive(
                f"s3://{DEMO_BUCKET}", config, storage_options=so, progress=update
            )
        epsgs = sorted(int(e) for e in archive["epsg"].unique())
        ui.note(
            f"{len(archive)} granules in EPSG {', '.join(map(str, epsgs))}; catalog s3://{DEMO_BUCKET}/catalog/granules.parquet"
        )
        timings["archive"] = time.perf_counter() - t

        t = time.perf_counter()
        ui.step("starting the local search server on the archive's catalog")
        server = stack.enter_context(
            LocalSearchServer(f"s3://{DEMO_BUCKET}/catalog/granules.parquet", storage_options=so)
        )
        ui.note(f"STAC API {server.url}  |  legacy API {server.url}/velocities/urls/")
        polygon = reg.polygon
        ui.step("searching the STAC API with pystac-client (region polygon, all dates)")
        with ui.progress("search (STAC)") as update:
            found = search(polygon, catalog=server.url, progress=update)
        legacy = search(polygon, catalog=server.legacy_url)
        same = set(found["granule_id"]) == set(legacy["granule_id"])
        ui.note(
            f"STAC: {len(found)} granules; legacy endpoint: {len(legacy)} ({'same set' if same else 'DIFFERENT set'})"
        )
        found.to_parquet(out / "search.parquet", index=False)
        timings["search"] = time.perf_counter() - t
        if len(found) == 0:
            raise InvalidInputError("the search found no granules (try more --granules)")

        selected = select_granules(
            found, filters={"max_files_per_year": max_files_per_year or None}
        ).selected
        ui.step(
            f"filter: at most {max_files_per_year} granules per year -> {len(selected)} granules"
            if max_files_per_year
            else f"no filter: {len(selected)} granules"
        )

        t = time.perf_counter()
        mode = "overwrite" if store.exists() else "create"
        ui.step(f"building the cube on a LocalCluster of {workers} workers -> {store}")
        result = write_with_progress(
            ui, selected, str(store), spec=CubeSpec(geometry=polygon, chunks=chunks),
            storage_options=so, mode=mode, n_workers=workers, threads_per_worker=1,
            memory_limit="2GiB",
        )  # fmt: skip
        timings["cube"] = time.perf_counter() - t
        ui.note(
            f"cube {result.shape[0]} layers x {result.shape[1]} x {result.shape[2]} px, "
            f"{result.blocks_written} blocks written, {len(result.failed)} failed granules"
        )

        t = time.perf_counter()
        ui.step("yearly mean speed and figures")
        cube = xr.open_zarr(str(store))
        plot_dir.mkdir(parents=True, exist_ok=True)
        means = yearly_mean(cube).load()
        plots = {
            "granule_counts": plot_granule_counts(
                found,
                plot_dir / "granule_counts.png",
                title=f"Granules found per year ({reg.name}, synthetic)",
            ),
            "yearly_mean_speed": plot_yearly_mean(
                means,
                plot_dir / "yearly_mean_speed.png",
                region=polygon,
                title=f"Yearly mean speed, {reg.name} (synthetic archive)",
            ),
            "speed_histogram": plot_speed_histogram(cube, plot_dir / "speed_histogram.png"),
        }
        ts = point_timeseries(cube, reg.lon0, reg.lat0).load()
        plots["point_timeseries"] = plot_point_timeseries(ts, plot_dir / "point_timeseries.png")
        timings["analysis"] = time.perf_counter() - t

        t = time.perf_counter()
        ui.step("comparing the cube with the analytic truth")
        accuracy = truth_accuracy(cube, region=reg, storage_options=so)
        timings["accuracy"] = time.perf_counter() - t

        counts = layer_counts(cube)
        finite_years = [int(y) for y in means["year"].values]
        summary.update(
            {
                "granules_generated": len(archive),
                "granule_epsgs": epsgs,
                "granules_found": len(found),
                "granules_found_legacy": len(legacy),
                "search_backends_agree": bool(same),
                "granules_selected": len(selected),
                "granules_read": int(result.granules_read),
                "granules_failed": len(result.failed),
                "granules_skipped": len(result.skipped),
                "cube_shape": list(result.shape),
                "cube_crs": _crs_label(cube_crs(cube)),
                "resolution_m": float(abs(float(cube.x[1] - cube.x[0])))
                if cube.sizes["x"] > 1
                else None,
                "years": finite_years,
                "layers_per_year": {str(k): int(v) for k, v in counts["total"].items()},
                "point": {
                    "lon": reg.lon0,
                    "lat": reg.lat0,
                    "distance_m": ts.attrs["distance_m"],
                    "layers_with_data": int(np.isfinite(ts["v"].values).sum()),
                },
                "accuracy": accuracy,
                "plots": {k: str(v) for k, v in plots.items()},
                "timings_s": {k: round(v, 2) for k, v in timings.items()},
            }
        )
        summary["wall_time_s"] = round(time.perf_counter() - t_start, 2)
        summary_file = out / "summary.json"
        summary_file.write_text(json.dumps(_clean(summary), indent=1))
        res = DemoResult(
            output=out, store=store, plots=plots, summary=summary, summary_file=summary_file
        )
        if keep_servers:
            ui.step(
                f"servers kept running: S3 {s3.endpoint_url} (bucket {DEMO_BUCKET}), STAC {server.url}, "
                f"legacy {server.url}/velocities/urls/; press Ctrl-C to stop them"
            )
            try:
                (wait_for_interrupt or _sleep_forever)()
            except KeyboardInterrupt:
                ui.step("stopping the servers")
    return res


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN -> None, numpy scalars -> Python, paths -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.integer | bool | np.bool_):
        return bool(obj) if isinstance(obj, bool | np.bool_) else int(obj)
    if isinstance(obj, float | np.floating):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, int | str) or obj is None:
        return obj
    return str(obj)
