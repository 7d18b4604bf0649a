"""Cube builds started from the map page: validated requests, one background thread, a ledger.

Off unless the app is created with a :class:`BuildConfig` (``create_app(..., builds=...)``,
``itslive-dask serve --enable-builds --output-root DIR``). A build request names the region,
dates, separation range, minimum valid percentage, sensors, resolution and a *name*; the
server alone decides where the store goes: ``<output_root>/<name>.zarr``, with the preview
``<output_root>/<name>.preview.png``. No path is read from a request.

Builds run one at a time with :func:`itslive_dask.write_cube` on the configured Dask cluster
(a scheduler address) or on a LocalCluster the server starts on first use; progress comes
from the build's block counter, cancel stops it between blocks (the store stays resumable),
and when done the ledger (:func:`itslive_dask.read_ledger`) and a preview of the yearly mean
speed (:func:`itslive_dask.plots.plot_yearly_mean`) are attached.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.geometry

from itslive_dask.discovery.filters import check_percent, check_sensors, check_separation
from itslive_dask.errors import InvalidInputError
from itslive_dask.server.geometry import geojson_parts
from itslive_dask.server.state import CatalogState
from itslive_dask.server.times import parse_bound, parse_bounds

__all__ = ["Build", "BuildConfig", "BuildManager", "FieldError"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_FIELDS = ("name", "region", "start", "end", "min_separation", "max_separation",
           "percent_valid_pixels", "sensors", "resolution")  # fmt: skip


class FieldError(InvalidInputError):
    """A bad value in a build request, naming the form field (HTTP 400 with ``field``)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class BuildConfig:
    """Settings of builds from the map page.

    Parameters
    ----------
    output_root
        Folder under which every store and preview is written (created if missing).
    scheduler
        Address of a running Dask scheduler; None starts a LocalCluster on first use.
    n_workers
        Workers of that LocalCluster (single-threaded processes).
    memory_limit
        Per-worker memory limit of the LocalCluster.
    storage_options
        fsspec options to read the granules (e.g. the local S3 server's).
    max_area_km2
        Largest region accepted.
    max_granules
        Largest number of granules one build may read.
    resolutions
        Grid spacings (metres) offered.
    """

    output_root: str | Path
    scheduler: str | None = None
    n_workers: int = 2
    memory_limit: str = "2GiB"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    max_area_km2: float = 250_000.0
    max_granules: int = 5_000
    resolutions: tuple[int, ...] = (120, 240, 480, 960)

    def limits(self) -> dict[str, Any]:
        """The limits shown on the page."""
        return {
            "max_area_km2": self.max_area_km2,
            "max_granules": self.max_granules,
            "resolutions": list(self.resolutions),
        }


class _Cancelled(Exception):
    pass


@dataclass
class Build:
    """One build and what the page shows of it."""

    id: str
    name: str
    request: dict[str, Any]
    store: Path
    preview: Path
    n_granules: int
    state: str = "queued"  # queued, running, done, failed, cancelled
    blocks_done: int = 0
    blocks_total: int = 0
    message: str = ""
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    ledger: dict[str, list] = field(default_factory=lambda: {"failed": [], "skipped": []})
    shape: list[int] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    granules: Any = field(default=None, repr=False)
    region: Any = field(default=None, repr=False)

    def to_json(self, dashboard: str | None) -> dict[str, Any]:
        """The JSON answer of ``GET builds/{id}`` (relative links only)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "progress": {"done": self.blocks_done, "total": self.blocks_total},
            "message": self.message,
            "error": self.error,
            "n_granules": self.n_granules,
            "store": self.store.as_uri(),
            "shape": self.shape,
            "ledger": self.ledger,
            "preview": f"builds/{self.id}/preview.png" if self.preview.exists() else None,
            "dashboard": dashboard,
            "request": self.request,
            "created": self.created,
            "finished": self.finished,
        }


def _area_km2(geom: shapely.Geometry) -> float:
    """Area of a lon/lat polygon on the ellipsoid (km²)."""
    area, _ = pyproj.Geod(ellps="WGS84").geometry_area_perimeter(shapely.force_2d(geom))
    return abs(area) / 1e6


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FieldError(name, f"{name} must be a number")
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise FieldError(name, f"{name} must be a number, got {value!r:.50}") from None
    if not math.isfinite(f):
        raise FieldError(name, f"{name} must be a finite number")
    return f


class BuildManager:
    """Validates build requests, runs them one at a time in a background thread.

    Parameters
    ----------
    config
        The build settings.
    state
        The served catalog (the granules a build reads come from it).
    """

    def __init__(self, config: BuildConfig, state: CatalogState):
        self.config = config
        self.state = state
        self.root = Path(config.output_root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.builds: dict[str, Build] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Build | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._cluster: Any = None

    # ------------------------------------------------------------------ validation

    def validate(self, body: Any) -> tuple[dict[str, Any], Any, shapely.Geometry]:
        """A build request -> (normalised request, granule table, region).

        Raises
        ------
        FieldError
            Naming the first bad field.
        """
        if not isinstance(body, Mapping):
            raise FieldError("request", "the build request must be a JSON object")
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            raise FieldError(unknown[0], f"unknown field {unknown[0]!r:.50}")
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise FieldError(
                "name",
                "name: 1-64 letters, digits, '-' or '_' (it names <output root>/<name>.zarr)",
            )
        store = self.root / f"{name}.zarr"
        if store.exists() or any(b.name == name and b.state in ("queued", "running")
                                 for b in self.builds.values()):  # fmt: skip
            raise FieldError("name", f"a build named {name!r} exists already; choose another name")
        region_json = body.get("region")
        if region_json is None:
            raise FieldError("region", "draw a polygon or a box, or paste GeoJSON/WKT")
        try:
            parts = geojson_parts(region_json, "region")
        except InvalidInputError as exc:
            raise FieldError("region", str(exc)) from None
        polys = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon")]
        if len(polys) != len(parts):
            raise FieldError("region", "the region of a build must be a polygon")
        region = shapely.union_all(polys) if len(polys) > 1 else polys[0]
        area = _area_km2(region)
        if area > self.config.max_area_km2:
            raise FieldError(
                "region",
                f"the region covers {area:,.0f} km², more than this server's limit of "
                f"{self.config.max_area_km2:,.0f} km²",
            )
        for key in ("start", "end"):
            if body.get(key) not in (None, "") and not isinstance(body.get(key), str):
                raise FieldError(key, f"{key} must be a date such as 2020-01-31")
            try:
                parse_bound(body.get(key) or None, key, end=key == "end")
            except InvalidInputError as exc:
                raise FieldError(key, str(exc)) from None
        try:
            times = parse_bounds(body.get("start") or None, body.get("end") or None)
        except InvalidInputError as exc:  # the order of the two
            raise FieldError("end", str(exc)) from None
        lo = _number(body.get("min_separation"), "min_separation")
        hi = _number(body.get("max_separation"), "max_separation")
        try:
            lo, hi = check_separation(lo, hi)
        except InvalidInputError as exc:
            raise FieldError("max_separation", str(exc)) from None
        pct = _number(body.get("percent_valid_pixels"), "percent_valid_pixels")
        try:
            pct = check_percent(pct, "percent_valid_pixels")
        except InvalidInputError as exc:
            raise FieldError("percent_valid_pixels", str(exc)) from None
        sensors = body.get("sensors")
        if sensors is not None and (
            not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors)
        ):
            raise FieldError("sensors", "sensors must be a list of names")
        try:
            sensors = check_sensors(sensors) if sensors else None
        except InvalidInputError as exc:
            raise FieldError("sensors", str(exc)) from None
        res = _number(body.get("resolution", self.config.resolutions[0]), "resolution")
        if res not in self.config.resolutions:
            raise FieldError(
                "resolution", f"resolution must be one of {list(self.config.resolutions)} m"
            )
        from itslive_dask.discovery.query import make_query

        query = make_query(
            None, start=times.start, end=times.end, min_separation=lo, max_separation=hi,
            percent_valid_pixels=pct, sensors=sensors,
        )  # fmt: skip
        pos = (
            np.zeros(0, dtype=np.int64)
            if times.empty
            else self.state.positions(query, regions=[region])
        )
        if len(pos) == 0:
            raise FieldError("region", "no granule matches this region and these criteria")
        if len(pos) > self.config.max_granules:
            raise FieldError(
                "region",
                f"{len(pos)} granules match, more than this server's limit of "
                f"{self.config.max_granules} per build: narrow the region or the dates",
            )
        request = {
            "name": name,
            "region": shapely.geometry.mapping(region),
            "start": times.start.isoformat() if times.start is not None else None,
            "end": times.end.isoformat() if times.end is not None else None,
            "min_separation": lo,
            "max_separation": hi,
            "percent_valid_pixels": pct,
            "sensors": sensors,
            "resolution": int(res),
        }
        return request, self.state.table.iloc[pos].reset_index(drop=True), region

    # ------------------------------------------------------------------ lifecycle

    def submit(self, body: Any) -> Build:
        """Validate and queue a build."""
        with self._lock:
            request, granules, region = self.validate(body)
            name = request["name"]
            build = Build(
                id=uuid.uuid4().hex[:12],
                name=name,
                request=request,
                store=self.root / f"{name}.zarr",
                preview=self.root / f"{name}.preview.png",
                n_granules=len(granules),
                message=f"queued: {len(granules)} granules",
                granules=granules,
                region=region,
            )
            self.builds[build.id] = build
        self._queue.put(build)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="itslive-builds", daemon=True)
            self._thread.start()
        return build

    def cancel(self, build_id: str) -> Build | None:
        """Ask a queued or running build to stop (between blocks)."""
        build = self.builds.get(build_id)
        if build is not None and build.state in ("queued", "running"):
            build.cancel_event.set()
            build.message = "cancelling..."
        return build

    def dashboard(self) -> str | None:
        """The Dask dashboard link of the cluster builds run on (once started)."""
        client = self._client
        try:
            return client.dashboard_link if client is not None else None
        except Exception:  # a closed client
            return None

    def close(self) -> None:
        """Stop the build thread and the LocalCluster it started."""
        for b in self.builds.values():
            b.cancel_event.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)
        for obj in (self._client, self._cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing is best effort
                    logger.debug("closing %r failed", obj, exc_info=True)
        self._client = self._cluster = None

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        from distributed import Client, LocalCluster

        if self.config.scheduler:
            self._client = Client(self.config.scheduler, timeout=30)
        else:
            self._cluster = LocalCluster(
                n_workers=self.config.n_workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0",
                memory_limit=self.config.memory_limit,
            )  # fmt: skip
            self._client = Client(self._cluster)
        return self._client

    def _loop(self) -> None:
        while True:
            build = self._queue.get()
            if build is None:
                return
            if build.cancel_event.is_set():
                build.state, build.message = "cancelled", "cancelled before it started"
                build.finished = time.time()
                continue
            try:
                self._run(build)
            except Exception as exc:  # the build's error is shown on the page, not raised
                logger.exception("build %s failed", build.id)
                build.state, build.error = "failed", f"{type(exc).__name__}: {exc}"
                build.message = "failed"
                build.finished = time.time()

    def _run(self, build: Build) -> None:
        from itslive_dask import read_ledger, write_cube

        build.state, build.message = "running", "starting the Dask cluster..."
        client = self._get_client()
        build.message = f"building from {build.n_granules} granules"

        def progress(done: int, total: int) -> None:
            build.blocks_done, build.blocks_total = done, total
            if build.cancel_event.is_set():
                raise _Cancelled

        req = build.request
        try:
            result = write_cube(
                build.granules,
                str(build.store),
                build.region,
                resolution=req["resolution"],
                storage_options=dict(self.config.storage_options) or None,
                client=client,
                progress=progress,
            )
        except _Cancelled:
            build.state, build.message = "cancelled", "cancelled (the store can be resumed)"
            build.finished = time.time()
            return
        build.shape = list(result.shape)
        build.ledger = read_ledger(str(build.store))
        build.message = "making the preview..."
        try:
            self._preview(build)
        except Exception as exc:  # a cube without a single valid pixel has no preview
            logger.warning("preview of %s failed: %s", build.id, exc)
        build.state = "done"
        n_failed = len(build.ledger.get("failed", []))
        build.message = f"done: {result.shape[0]} layers" + (
            f", {n_failed} granules failed (see the ledger)" if n_failed else ""
        )
        build.finished = time.time()

    def _preview(self, build: Build) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import xarray as xr

        from itslive_dask.plots import plot_yearly_mean

        with xr.open_zarr(str(build.store)) as cube:
            plot_yearly_mean(
                cube, build.preview, region=build.region,
                title=f"{build.name}: yearly mean speed", dpi=80, panel_size=2.5,
            )  # fmt: skip
