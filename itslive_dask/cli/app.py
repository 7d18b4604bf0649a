"""The ``itslive-dask`` command line: search, download, cube, catalog, serve, info, plot, demo.

Every command validates what was typed before touching the network or the disk. A mistake
gives one line on stderr and a non-zero exit status (2 for usage errors, 1 for anything
else), never a Python traceback; ``--debug`` (anywhere on the line) shows the traceback and
debug logs. Results go to stdout, progress bars to stderr. Storage options are never printed.

Options keep the tutorial's names where it had one (``--polygon``, ``--bbox``, ``--start``,
``--end``, ``--min-separation``, ``--max-separation``, ``--percent-valid-pixels``,
``--max-files-per-year``, ``--months``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from itslive_dask.cli.console import UI, scrub, secret_values
from itslive_dask.errors import InvalidInputError, ItsliveDaskError
from itslive_dask.io.urls import is_remote
from itslive_dask.io.urls import redact_url as _public

__all__ = ["app", "main"]

log = logging.getLogger(__name__)

app = typer.Typer(
    name="itslive-dask",
    help=(
        "ITS_LIVE glacier-velocity cubes with Dask: search the archive, build reprojected, "
        "clipped, time-stacked Zarr cubes, describe and plot them. Start with "
        "'itslive-dask demo' (no network needed)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE: dict[str, Any] = {"ui": None, "secrets": set()}
_SEARCH_SUFFIXES = (
    ".parquet",
    ".geoparquet",
    ".pq",
    ".geojson",
    ".json",
    ".ndjson",
    ".jsonl",
    ".csv",
)
_QUERY_SUFFIX = ".query.json"


def _ui() -> UI:
    ui = _STATE.get("ui")
    if ui is None:
        ui = _STATE["ui"] = UI()
    return ui


# --------------------------------------------------------------------------- option types

PolygonOpt = Annotated[
    str | None,
    typer.Option(
        "--polygon",
        help="Region: 'lon,lat,lon,lat,...' (the tutorial's form), GeoJSON or WKT text, or a "
        ".geojson/.json/.wkt file.",
        rich_help_panel="Search",
    ),
]
BboxOpt = Annotated[
    str | None,
    typer.Option(
        "--bbox", help="Region as 'min_lon,min_lat,max_lon,max_lat'.", rich_help_panel="Search"
    ),
]
StartOpt = Annotated[
    str | None,
    typer.Option(
        "--start", help="First mid date, YYYY-mm-dd (or YYYY, YYYY-mm).", rich_help_panel="Search"
    ),
]
EndOpt = Annotated[
    str | None,
    typer.Option(
        "--end",
        help="Last mid date, YYYY-mm-dd (YYYY means the whole year).",
        rich_help_panel="Search",
    ),
]
MinSepOpt = Annotated[
    float | None,
    typer.Option(
        "--min-separation", help="Minimum days between the two images.", rich_help_panel="Search"
    ),
]
MaxSepOpt = Annotated[
    float | None,
    typer.Option(
        "--max-separation", help="Maximum days between the two images.", rich_help_panel="Search"
    ),
]
PercentOpt = Annotated[
    float | None,
    typer.Option(
        "--percent-valid-pixels",
        help="Minimum valid-pixel percentage (0-100).",
        rich_help_panel="Search",
    ),
]
SensorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sensor",
        help="Sensor family: landsat, sentinel1, sentinel2 (repeat or comma-separate).",
        rich_help_panel="Search",
    ),
]
VersionOpt = Annotated[
    list[int] | None,
    typer.Option(
        "--product-version", help="Product version(s) to keep: 1, 2.", rich_help_panel="Search"
    ),
]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        envvar="ITSLIVE_DASK_CATALOG",
        help="Where to search: a STAC API URL (default: the public ITS_LIVE API), "
        "'legacy+http://host:port' for the legacy API, or a catalog file.",
        rich_help_panel="Search",
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", help="Return at most this many granules.", rich_help_panel="Search"),
]
MaxPerYearOpt = Annotated[
    int | None,
    typer.Option(
        "--max-files-per-year", help="Keep at most N granules per year.", rich_help_panel="Filter"
    ),
]
MonthsOpt = Annotated[
    str | None,
    typer.Option(
        "--months",
        help="Keep these mid-date months, e.g. 'November,December,January' or '11,12,1'.",
        rich_help_panel="Filter",
    ),
]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        "-s",
        help="fsspec option for reading granules/catalogs, KEY=VALUE (repeat; dotted keys nest, "
        "e.g. client_kwargs.region_name=us-west-2). Credentials are best left to the "
        "environment (AWS_PROFILE, AWS_ACCESS_KEY_ID...).",
        rich_help_panel="Storage",
    ),
]
AnonOpt = Annotated[
    bool,
    typer.Option(
        "--anon",
        help="Read S3 anonymously (the public its-live-data bucket).",
        rich_help_panel="Storage",
    ),
]
GranulesOpt = Annotated[
    str | None,
    typer.Option(
        "--granules",
        "-g",
        help="A saved search (.parquet/.geojson/.json/.csv from 'itslive-dask search -o') instead "
        "of searching; for 'cube' also a folder, glob or URL prefix of .nc granules.",
        rich_help_panel="Search",
    ),
]


# --------------------------------------------------------------------------- parsing helpers


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text.strip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise InvalidInputError(f"option value {text[:40]!r}... is not valid JSON") from None
    return text


def parse_options(
    items: list[str] | None, *, anon: bool = False, what: str = "--storage-option"
) -> dict[str, Any]:
    """``["key=value", "a.b=c"]`` -> ``{"key": value, "a": {"b": "c"}}`` (values typed)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InvalidInputError(f"{what} must be KEY=VALUE, got {item.split('=')[0][:40]!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise InvalidInputError(f"{what} has an empty key in {key!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidInputError(f"{what}: {key!r} conflicts with an earlier option")
        node[parts[-1]] = _value(raw)
    if anon:
        out["anon"] = True
    _STATE["secrets"] |= secret_values(out)
    return out


def _split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return out or None


def _region_text(polygon: str | None) -> str | None:
    """The --polygon value, read from a file when it names one."""
    if polygon is None:
        return None
    text = polygon.strip()
    if text and os.path.isfile(text):
        try:
            return Path(text).read_text()
        except OSError as exc:
            raise InvalidInputError(f"cannot read --polygon file {text}: {exc.strerror}") from None
    return text


def _region(polygon: str | None, bbox: str | None) -> tuple[Any, Any]:
    """Validated (geometry, bbox) for the package functions (lon/lat)."""
    from itslive_dask.geo.region import parse_bbox, parse_region

    if polygon is not None and bbox is not None:
        raise InvalidInputError("give either --polygon or --bbox, not both")
    if polygon is not None:
        return parse_region(_region_text(polygon)), None
    if bbox is not None:
        return None, parse_bbox(bbox)
    return None, None


def _parse_chunks(text: str | None) -> tuple[int, int, int] | None:
    from itslive_dask.cube.plan import normalize_chunks

    if text is None:
        return None
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise InvalidInputError(
            f"--chunks must be three integers mid_date,y,x like 16,512,512; got {text!r}"
        ) from None
    if len(vals) != 3:
        raise InvalidInputError(
            f"--chunks must be three integers mid_date,y,x like 16,512,512; got {text!r}"
        )
    return normalize_chunks(vals)


def _parse_point(text: str) -> tuple[float, float]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        lon, lat = (float(p) for p in parts)
    except ValueError:
        raise InvalidInputError(f"--point must be LON,LAT in degrees, got {text!r}") from None
    return lon, lat


# --------------------------------------------------------------------------- saved searches


def _query_file(path: str) -> Path:
    return Path(path + _QUERY_SUFFIX)


def save_search(table: Any, path: str, params: dict[str, Any]) -> str:
    """Write a search result (.parquet, .geojson, .json, .ndjson or .csv) and its query file.

    The query (region, dates, criteria, filters) goes to ``<path>.query.json`` so that
    ``cube --granules <path>`` can reuse the region.
    """
    from itslive_dask.discovery.catalog import save_catalog

    low = path.lower()
    if not low.endswith(_SEARCH_SUFFIXES):
        raise InvalidInputError(
            f"--output {path!r}: use a .parquet, .geojson, .json, .ndjson or .csv file name"
        )
    if not is_remote(path):
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise InvalidInputError(f"--output {path}: folder {parent} does not exist")
    if low.endswith(".csv"):
        flat = table.copy()
        flat["geometry"] = flat.geometry.to_wkt()
        flat.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    else:
        save_catalog(table, path)
    if not is_remote(path):
        _query_file(path).write_text(json.dumps(params, indent=1, default=str))
    return path


def load_search(path: str, storage_options: dict | None = None) -> tuple[Any, dict[str, Any]]:
    """Read a saved search and its query file (``{}`` when there is none)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from itslive_dask.discovery.catalog import load_catalog
    from itslive_dask.table import validate_granule_table

    if not is_remote(path) and not os.path.exists(path):
        raise InvalidInputError(f"--granules {path}: no such file")
    if path.lower().endswith(".csv"):
        try:
            df = pd.read_csv(path)
            geom = shapely.from_wkt(df.pop("geometry").fillna("").replace("", None).to_numpy())
            table = validate_granule_table(gpd.GeoDataFrame(df, geometry=geom, crs="EPSG:4326"))
        except (KeyError, ValueError, shapely.errors.ShapelyError) as exc:
            raise InvalidInputError(f"--granules {path} is not a saved search: {exc}") from None
    else:
        table = load_catalog(path, storage_options=storage_options)
    params: dict[str, Any] = {}
    qf = _query_file(path)
    if not is_remote(path) and qf.is_file():
        try:
            params = json.loads(qf.read_text())
        except ValueError:
            _ui().warn(f"ignoring unreadable {qf}")
    return table, params


def _is_search_file(text: str) -> bool:
    return text.lower().split("?", 1)[0].endswith(_SEARCH_SUFFIXES)


# --------------------------------------------------------------------------- shared steps


def _search_and_filter(
    *,
    polygon: str | None,
    bbox: str | None,
    start: str | None,
    end: str | None,
    min_separation: float | None,
    max_separation: float | None,
    percent_valid_pixels: float | None,
    sensor: list[str] | None,
    product_version: list[int] | None,
    catalog: str | None,
    limit: int | None,
    max_files_per_year: int | None,
    months: str | None,
    storage_options: dict,
    granules_file: str | None = None,
) -> tuple[Any, Any, dict[str, Any], dict[str, int]]:
    """(table after filters, region geometry/bbox, query params, counts) from options or a file."""
    from itslive_dask.discovery.api import DEFAULT_STAC_URL, make_query
    from itslive_dask.discovery.filters import parse_months
    from itslive_dask.pipeline import select_granules

    ui = _ui()
    month_list = _split_list([months]) if months else None
    if month_list is not None:
        parse_months(month_list)  # validate before any search
    if max_files_per_year is not None and max_files_per_year < 0:
        raise InvalidInputError(f"--max-files-per-year must be >= 0, got {max_files_per_year}")
    search_given = any(
        v is not None
        for v in (
            start,
            end,
            min_separation,
            max_separation,
            percent_valid_pixels,
            sensor,
            product_version,
            limit,
        )
    )
    if granules_file is not None:
        if search_given or catalog is not None:
            raise InvalidInputError(
                "--granules replaces the search: drop the search options (--start, --catalog...)"
            )
        geometry, bbox_t = _region(polygon, bbox)
        table, params = load_search(granules_file, storage_options)
        if geometry is None and bbox_t is None:
            geometry = params.get("region")
        ui.step(f"read {len(table)} granules from {granules_file}")
        counts = {"found": len(table)}
    else:
        geometry, bbox_t = _region(polygon, bbox)
        if geometry is None and bbox_t is None:
            raise InvalidInputError(
                "give a region with --polygon or --bbox (or a saved search with --granules)"
            )
        query = make_query(
            geometry,
            bbox=bbox_t,
            start=start,
            end=end,
            min_separation=min_separation,
            max_separation=max_separation,
            percent_valid_pixels=percent_valid_pixels,
            sensors=_split_list(sensor),
            version=product_version or None,
            limit=limit,
        )
        target = catalog or DEFAULT_STAC_URL
        ui.step(f"searching {_public(target)}")
        t0 = time.perf_counter()
        with ui.progress("granules found") as update:
            table = select_granules(
                query, catalog=target, storage_options=storage_options, progress=update
            ).found
        ui.note(f"{len(table)} granules in {time.perf_counter() - t0:.1f} s")
        params = query.params()
        params["catalog"] = _public(target)
        counts = {"found": len(table)}
    filters: dict[str, Any] = {"max_files_per_year": max_files_per_year, "months": month_list}
    picked = select_granules(table, filters=filters)
    if picked.filters:
        ui.step(f"filter {picked.filters}: {len(table)} -> {len(picked.selected)} granules")
        params["filters"] = picked.filters
    table = picked.selected
    counts["selected"] = len(table)
    return table, (geometry, bbox_t), params, counts


# --------------------------------------------------------------------------- commands


def _print_version(value: bool) -> None:
    if value:
        from itslive_dask import __version__

        typer.echo(f"itslive-dask {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs (anywhere on the line).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or step lines.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """ITS_LIVE velocity cubes with Dask."""
    if quiet:
        _STATE["ui"] = UI(quiet=True)


@app.command()
def search(
    polygon: PolygonOpt = None,
    bbox: BboxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    min_separation: MinSepOpt = None,
    max_separation: MaxSepOpt = None,
    percent_valid_pixels: PercentOpt = None,
    sensor: SensorOpt = None,
    product_version: VersionOpt = None,
    catalog: CatalogOpt = None,
    limit: LimitOpt = None,
    max_files_per_year: MaxPerYearOpt = None,
    months: MonthsOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Save the result: .parquet, .geojson, .json (STAC items) or .csv.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    show: Annotated[int, typer.Option("--show", help="Rows of the table to print (0: none).")] = 20,
    storage_option: StorageOpt = None,
    anon: AnonOpt = False,
) -> None:
    """Search granules (STAC API, legacy API or catalog file), optionally filter, print or save.

    Example: itslive-dask search --polygon "-101.16,-74.74,-99.12,-75.09,-99.88,-75.46,-102.43,-74.93"
    --start 2013-01-01 --end 2020-01-01 --percent-valid-pixels 30 --max-separation 120 -o pig.parquet
    """
    so = parse_options(storage_option, anon=anon)
    if output is not None and not output.lower().endswith(_SEARCH_SUFFIXES):
        raise InvalidInputError(
            f"--output {output!r}: use a .parquet, .geojson, .json, .ndjson or .csv file name"
        )
    table, _, params, counts = _search_and_filter(
        polygon=polygon, bbox=bbox, start=start, end=end, min_separation=min_separation,
        max_separation=max_separation, percent_valid_pixels=percent_valid_pixels, sensor=sensor,
        product_version=product_version, catalog=catalog, limit=limit,
        max_files_per_year=max_files_per_year, months=months, storage_options=so,
    )  # fmt: skip
    params["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    params["count"] = len(table)
    if output is not None:
        save_search(table, output, params)
        _ui().step(f"saved {len(table)} granules to {output} (query in {output}{_QUERY_SUFFIX})")
    if as_json:
        records = _json_records(table)
        typer.echo(
            json.dumps(
                {"count": len(table), "found": counts["found"], "granules": records}, indent=1
            )
        )
        return
    _print_table(table, show)
    _ui().out.print(
        f"[bold]{counts['found']}[/] granules found, [bold]{counts['selected']}[/] after filters"
        + (f"; saved to {output}" if output else "")
    )


def _json_records(table: Any) -> list[dict[str, Any]]:
    cols = [c for c in table.columns if c != "geometry"]
    out = []
    for row in table[cols].to_dict("records"):
        out.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})
    return out


def _print_table(table: Any, show: int) -> None:
    from rich.table import Table

    if show <= 0 or len(table) == 0:
        return
    t = Table(show_lines=False, header_style="bold")
    for col, width in (
        ("mid_date", 10),
        ("days", 4),
        ("sensor", 9),
        ("EPSG", 5),
        ("valid%", 6),
        ("V", 1),
    ):
        t.add_column(
            col,
            no_wrap=True,
            min_width=width,
            justify="right" if col in ("days", "valid%") else "left",
        )
    t.add_column("granule_id", overflow="fold", ratio=1)
    for row in table.head(show).itertuples():
        t.add_row(
            str(row.mid_date)[:10], f"{row.date_dt:.0f}", row.sensor, str(row.epsg),
            f"{row.percent_valid:g}", str(row.version), row.granule_id,
        )  # fmt: skip
    _ui().out.print(t)
    if len(table) > show:
        _ui().out.print(f"... and {len(table) - show} more (use --show or --output)")


@app.command()
def download(
    folder: Annotated[str, typer.Option("--folder", "-o", help="Download folder (created).")],
    granules: GranulesOpt = None,
    polygon: PolygonOpt = None,
    bbox: BboxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    min_separation: MinSepOpt = None,
    max_separation: MaxSepOpt = None,
    percent_valid_pixels: PercentOpt = None,
    sensor: SensorOpt = None,
    product_version: VersionOpt = None,
    catalog: CatalogOpt = None,
    limit: LimitOpt = None,
    max_files_per_year: MaxPerYearOpt = None,
    months: MonthsOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="Parallel downloads.")] = 8,
    storage_option: StorageOpt = None,
    anon: AnonOpt = False,
) -> None:
    """Download granules to a folder (resumable; a manifest records what was fetched)."""
    from itslive_dask.io.download import download_granules

    so = parse_options(storage_option, anon=anon)
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if granules is not None and not _is_search_file(granules):
        raise InvalidInputError(
            f"--granules {granules}: expected a saved search (.parquet, .geojson, .json, .csv)"
        )
    table, _, params, _ = _search_and_filter(
        polygon=polygon, bbox=bbox, start=start, end=end, min_separation=min_separation,
        max_separation=max_separation, percent_valid_pixels=percent_valid_pixels, sensor=sensor,
        product_version=product_version, catalog=catalog, limit=limit,
        max_files_per_year=max_files_per_year, months=months, storage_options=so, granules_file=granules,
    )  # fmt: skip
    if len(table) == 0:
        raise InvalidInputError("nothing to download: the search found no granules")
    t0 = time.perf_counter()
    ui = _ui()
    ui.step(f"downloading {len(table)} granules to {folder}")
    with ui.progress("files", total=len(table)) as update:
        result = download_granules(
            table, folder, storage_options=so, max_workers=workers, params=params, progress=update
        )
    ui.out.print(
        f"[bold]{len(result.downloaded)}[/] downloaded, {len(result.skipped)} already there, "
        f"[bold]{len(result.failed)}[/] failed in {time.perf_counter() - t0:.1f} s -> {result.folder}"
    )
    if result.failed:
        first = result.failed[0]
        raise ItsliveDaskError(
            f"{len(result.failed)} files failed (e.g. {first.name}: {first.error}); rerun to retry, "
            f"see {result.manifest}"
        )


@app.command()
def cube(
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Zarr store to write: a path or s3://bucket/cube.zarr."
        ),
    ],
    granules: GranulesOpt = None,
    polygon: PolygonOpt = None,
    bbox: BboxOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    min_separation: MinSepOpt = None,
    max_separation: MaxSepOpt = None,
    percent_valid_pixels: PercentOpt = None,
    sensor: SensorOpt = None,
    product_version: VersionOpt = None,
    catalog: CatalogOpt = None,
    limit: LimitOpt = None,
    max_files_per_year: MaxPerYearOpt = None,
    months: MonthsOpt = None,
    crs: Annotated[
        str | None,
        typer.Option(
            "--crs",
            help="Cube CRS, e.g. EPSG:3413 (default: 3031 south, 3413 north).",
            rich_help_panel="Cube",
        ),
    ] = None,
    resolution: Annotated[
        float, typer.Option("--resolution", help="Pixel size in metres.", rich_help_panel="Cube")
    ] = 120.0,
    chunks: Annotated[
        str | None,
        typer.Option(
            "--chunks", help="Chunks mid_date,y,x (default 16,512,512).", rich_help_panel="Cube"
        ),
    ] = None,
    variables: Annotated[
        str, typer.Option("--variables", help="Comma-separated variables.", rich_help_panel="Cube")
    ] = "vx,vy,v,v_error",
    resampling: Annotated[
        str, typer.Option("--resampling", help="nearest or bilinear.", rich_help_panel="Cube")
    ] = "nearest",
    zarr_format: Annotated[
        int, typer.Option("--zarr-format", help="3 (default) or 2.", rich_help_panel="Cube")
    ] = 3,
    velocity_encoding: Annotated[
        str,
        typer.Option(
            "--velocity-encoding",
            help="float32 (default, NaN = no data) or int16 (whole m/yr, -32767 = no data, as the "
            "production cubes) for vx, vy, v, v_error; resume/append keep the store's.",
            rich_help_panel="Cube",
        ),
    ] = "float32",
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="map (chunks as --chunks) or timeseries (built into <output>.map.zarr, then "
            "rechunked long in time into --output).",
            rich_help_panel="Cube",
        ),
    ] = "map",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish an interrupted build; retry failed granules.",
            rich_help_panel="Store",
        ),
    ] = False,
    append: Annotated[
        bool,
        typer.Option(
            "--append", help="Add the granules not yet in the cube.", rich_help_panel="Store"
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an existing store.", rich_help_panel="Store"),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler: tcp://host:8786, gateway://proxy/<name>, gateway:<name> or "
            "gateway:new?workers=N (dask-gateway); default: a LocalCluster.",
            rich_help_panel="Dask",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="LocalCluster worker processes (default: one per core).",
            rich_help_panel="Dask",
        ),
    ] = None,
    threads_per_worker: Annotated[
        int, typer.Option("--threads-per-worker", rich_help_panel="Dask")
    ] = 1,
    memory_limit: Annotated[
        str,
        typer.Option(
            "--memory-limit", help="Per worker, e.g. 2GiB (default: auto).", rich_help_panel="Dask"
        ),
    ] = "auto",
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            help="Extra attempts of a granule read after a transient error.",
            rich_help_panel="Dask",
        ),
    ] = 3,
    retry_budget: Annotated[
        float,
        typer.Option(
            "--retry-budget",
            help="Seconds one granule may spend on failed attempts and back-off (> 0); "
            "a granule that keeps failing is then in the ledger.",
            rich_help_panel="Dask",
        ),
    ] = 8.0,
    storage_option: StorageOpt = None,
    anon: AnonOpt = False,
    store_option: Annotated[
        list[str] | None,
        typer.Option(
            "--store-option",
            help="fsspec option for the output store, KEY=VALUE (repeat).",
            rich_help_panel="Storage",
        ),
    ] = None,
) -> None:
    """Build a velocity cube into a Zarr store (search or saved search -> Dask -> Zarr)."""
    from itslive_dask.cube.plan import DEFAULT_CHUNKS
    from itslive_dask.pipeline import write_with_progress
    from itslive_dask.spec import CubeSpec
    from itslive_dask.store.write import check_output

    t_start = time.perf_counter()
    ui = _ui()
    so = parse_options(storage_option, anon=anon)
    sto = parse_options(store_option, what="--store-option")
    if sum((resume, append, overwrite)) > 1:
        raise InvalidInputError("choose one of --resume, --append, --overwrite")
    mode = "resume" if resume else "append" if append else "overwrite" if overwrite else "create"
    chunk_tuple = _parse_chunks(chunks)
    var_list = tuple(v.strip() for v in variables.split(",") if v.strip())
    if not var_list:
        raise InvalidInputError("--variables is empty")
    if zarr_format not in (2, 3):
        raise InvalidInputError(f"--zarr-format must be 2 or 3, got {zarr_format}")
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if retries < 0:
        raise InvalidInputError(f"--retries must be 0 or more, got {retries}")
    if not (0 < retry_budget < float("inf")):
        raise InvalidInputError(
            f"--retry-budget must be a number of seconds > 0, got {retry_budget}"
        )
    if scheduler is not None and workers is not None:
        raise InvalidInputError(
            "--workers sizes a LocalCluster; with --scheduler the cluster is already sized"
        )
    if crs is not None:
        from itslive_dask.geo.grid import TargetGrid

        TargetGrid.from_bounds((0, 0, 1, 1), crs, resolution)  # validates CRS and resolution
    if layout not in ("map", "timeseries"):
        raise InvalidInputError(f"--layout must be map or timeseries, got {layout!r}")
    spec = CubeSpec(
        crs=crs,
        resolution=resolution,
        variables=var_list,
        chunks=chunk_tuple or DEFAULT_CHUNKS,
        resampling=resampling,  # type: ignore[arg-type]  # validated by CubeSpec
    )  # validated before any search; the region is added once known
    check_output(output, sto, mode=mode, layout=layout)  # before any search

    if granules is not None and not _is_search_file(granules):
        if any(v is not None for v in (start, end, catalog, max_files_per_year, months)):
            raise InvalidInputError(
                "--granules with .nc files replaces the search: drop the search options"
            )
        source: Any = granules
        geometry, bbox_t = _region(polygon, bbox)
        counts = {"found": -1, "selected": -1}
    else:
        source, (geometry, bbox_t), _, counts = _search_and_filter(
            polygon=polygon, bbox=bbox, start=start, end=end, min_separation=min_separation,
            max_separation=max_separation, percent_valid_pixels=percent_valid_pixels, sensor=sensor,
            product_version=product_version, catalog=catalog, limit=limit,
            max_files_per_year=max_files_per_year, months=months, storage_options=so, granules_file=granules,
        )  # fmt: skip
        if len(source) == 0:
            raise InvalidInputError(
                "the search found no granules; widen the region, dates or filters"
            )
    spec = CubeSpec.build(spec, geometry=geometry, bbox=bbox_t)
    if geometry is None and bbox_t is None and mode in ("create", "overwrite"):
        ui.warn("no region given: the cube covers the union of the granule footprints")
    ui.step(f"building the cube ({mode}) -> {_public(output)}")
    result = write_with_progress(
        ui, source, output, spec=spec, storage_options=so, store_options=sto, mode=mode,
        zarr_format=zarr_format, scheduler=scheduler, n_workers=workers,
        threads_per_worker=threads_per_worker, memory_limit=memory_limit, retries=retries,
        retry_budget=retry_budget, layout=layout, velocity_encoding=velocity_encoding,
    )  # fmt: skip
    _cube_summary(result, counts, time.perf_counter() - t_start)


def _cube_summary(result: Any, counts: dict[str, int], wall: float) -> None:
    from rich.table import Table

    ui = _ui()
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    if counts.get("found", -1) >= 0:
        t.add_row("granules found", str(counts["found"]))
        t.add_row("after filters", str(counts["selected"]))
    t.add_row("granules read", str(result.granules_read))
    t.add_row("layers added", str(result.layers_added))
    t.add_row("failed", str(len(result.failed)))
    t.add_row("skipped", f"{len(result.skipped)} (outside the region or already in the cube)")
    t.add_row("cube shape", f"{result.shape[0]} layers x {result.shape[1]} y x {result.shape[2]} x")
    t.add_row(
        "blocks",
        f"{result.blocks_written} written, {result.blocks_skipped} already done, {result.blocks_total} total",
    )
    t.add_row("wall time", f"{wall:.1f} s")
    t.add_row("store", _public(result.store))
    ui.out.print(t)
    if result.failed:
        first = result.failed[0]
        ui.warn(
            f"{len(result.failed)} granule reads failed (e.g. {first.get('granule_id')}: {first.get('error')}); "
            "their layers are flagged in granule_status; rerun with --resume to retry"
        )


@app.command("catalog")
def catalog_cmd(
    source: Annotated[
        str,
        typer.Argument(help="Folder, glob or URL prefix (s3://bucket/prefix/) of .nc granules."),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Catalog file: .parquet (GeoParquet), .geojson, .json."
        ),
    ],
    stac_items: Annotated[
        str | None, typer.Option("--stac-items", help="Also write STAC items (.json or .ndjson).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Threads reading headers.")] = 16,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            help="Processes reading remote headers (default: 8 from 64 remote granules; "
            "0: threads only).",
        ),
    ] = None,
    chunk_index: Annotated[
        bool,
        typer.Option(
            "--chunk-index/--no-chunk-index",
            help="Keep remote granules' chunk indexes (cubes built from the catalog then "
            "read no header: 4 requests per granule instead of 11).",
        ),
    ] = True,
    storage_option: StorageOpt = None,
    anon: AnonOpt = False,
) -> None:
    """Build a catalog file from a folder or bucket of granules (for search, serve and cube)."""
    from itslive_dask.discovery.catalog import build_catalog

    so = parse_options(storage_option, anon=anon)
    if workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {workers}")
    if processes is not None and processes < 0:
        raise InvalidInputError(f"--processes must be 0 or more, got {processes}")
    t0 = time.perf_counter()
    ui = _ui()
    ui.step(f"reading granule headers under {_public(source)}")
    with ui.progress("headers") as update:
        table = build_catalog(
            source,
            output,
            storage_options=so,
            max_workers=workers,
            progress=update,
            stac_items=stac_items,
            chunk_index=chunk_index,
            processes=processes,
        )
    failures = table.attrs.get("failures", [])
    ui.out.print(
        f"[bold]{len(table)}[/] granules catalogued, {len(failures)} files left out, "
        f"in {time.perf_counter() - t0:.1f} s -> {output}"
        + (f" and {stac_items}" if stac_items else "")
    )
    for f in failures[:5]:
        ui.warn(f"left out {f['url']}: {f['error']}")


@app.command()
def serve(
    catalog_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="CATALOG", help="Catalog file (.parquet, .geojson, STAC items .json) or URL."
        ),
    ] = None,
    catalog: Annotated[
        str | None, typer.Option("--catalog", help="The catalog, as an option.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    enable_builds: Annotated[
        bool,
        typer.Option(
            "--enable-builds", help="Let the map page start cube builds (needs --output-root)."
        ),
    ] = False,
    output_root: Annotated[
        str | None,
        typer.Option("--output-root", help="Folder under which builds from the map page write."),
    ] = None,
    builds_scheduler: Annotated[
        str | None,
        typer.Option(
            "--builds-scheduler", help="Dask scheduler for builds (default: a LocalCluster)."
        ),
    ] = None,
    root_path: Annotated[
        str | None,
        typer.Option(
            "--root-path", help="URL prefix the server is mounted under (behind a proxy)."
        ),
    ] = None,
    storage_option: StorageOpt = None,
    anon: AnonOpt = False,
) -> None:
    """Serve a catalog over HTTP: a STAC API, the legacy NSIDC-style endpoint and a map page."""
    import ipaddress

    from itslive_dask.server import serve as run_server
    from itslive_dask.server.app import create_app

    so = parse_options(storage_option, anon=anon)
    if (catalog_arg is None) == (catalog is None):
        raise InvalidInputError(
            "give the catalog once: 'serve granules.parquet' or 'serve --catalog granules.parquet'"
        )
    catalog = catalog or catalog_arg
    if enable_builds and not output_root:
        raise InvalidInputError(
            "--enable-builds needs --output-root (the folder builds may write under)"
        )
    if output_root and not enable_builds:
        raise InvalidInputError("--output-root is used only with --enable-builds")
    app_options: dict[str, Any] = {}
    if enable_builds:
        from itslive_dask.server import BuildConfig

        app_options["builds"] = BuildConfig(
            output_root=str(output_root), scheduler=builds_scheduler, storage_options=so
        )
    if root_path:
        app_options["root_path"] = root_path
    if not 0 < port < 65536:
        raise InvalidInputError(f"--port must be 1-65535, got {port}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    create_app(catalog, storage_options=so, **app_options)  # validates now (one-line errors)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ItsliveDaskError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if not loopback:
        _ui().warn(f"listening on {host}: the catalog is reachable from other machines")
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    ui = _ui()
    ui.step(f"serving {_public(str(catalog))}")
    ui.note(f"STAC API      {base}   (itslive-dask search --catalog {base} ...)")
    ui.note(f"legacy API    {base}/velocities/urls/   (--catalog legacy+{base})")
    ui.note(f"map page      {base}/map" + ("   (builds enabled)" if enable_builds else ""))
    ui.note("press Ctrl-C to stop")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_server(
            catalog, host=host, port=port, storage_options=so, log_level="warning", **app_options
        )


@app.command()
def info(
    store: Annotated[str, typer.Argument(help="Zarr cube (path or URL).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
    store_option: Annotated[
        list[str] | None,
        typer.Option("--store-option", help="fsspec option for the store, KEY=VALUE."),
    ] = None,
    anon: AnonOpt = False,
    stac_item: Annotated[
        str | None,
        typer.Option(
            "--stac-item",
            help="Also write the cube's STAC item (datacube + projection extensions) to this JSON file.",
        ),
    ] = None,
) -> None:
    """Describe a cube: extent, CRS, layers per year and sensor, build state and ledger."""
    from rich.table import Table

    from itslive_dask.analysis import describe_cube, layer_counts
    from itslive_dask.store.state import describe_build, open_store

    sto = parse_options(store_option, anon=anon, what="--store-option")
    ds = open_store(store, sto)
    if stac_item is not None:
        from itslive_dask.store.stac_item import write_stac_item

        write_stac_item(store, stac_item, sto)
        _ui().step(f"STAC item written to {stac_item}")
    desc = describe_cube(ds)
    counts = layer_counts(ds)
    state = describe_build(store, sto)
    ledger = state.pop("ledger")
    if as_json:
        doc = dict(desc, store=_public(store), layers_per_year=json.loads(counts.to_json(orient="index")),
                   ledger={"failed": ledger.get("failed", []), "skipped": len(ledger.get("skipped", []))},
                   build=state)  # fmt: skip
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    ui = _ui()
    t = Table(
        show_header=False,
        box=None,
        pad_edge=False,
        title=f"cube {_public(store)}",
        title_justify="left",
    )
    t.add_column(style="bold")
    t.add_column()
    nt, ny, nx = desc["shape"]
    t.add_row(
        "shape",
        f"{nt} layers x {ny} y x {nx} x"
        + (f"  (chunks {desc['chunks']})" if desc.get("chunks") else ""),
    )
    t.add_row("CRS", f"{desc['crs']}, {desc['resolution']:g} m pixels")
    if "extent" in desc:
        x0, y0, x1, y1 = desc["extent"]
        t.add_row("extent", f"x {x0:.1f} .. {x1:.1f}, y {y0:.1f} .. {y1:.1f} m ({desc['crs']})")
    if "extent_lonlat" in desc:
        a, b, c, d = desc["extent_lonlat"]
        t.add_row("lon/lat", f"lon {a:.4f} .. {c:.4f}, lat {b:.4f} .. {d:.4f}")
    t.add_row("dates", f"{desc['start']} .. {desc['end']}")
    t.add_row("variables", ", ".join(desc["variables"]))
    if state.get("velocity_encoding") == "int16":
        t.add_row(
            "encoding", "int16 velocities (whole m/yr, -32767 = no data), as the production cubes"
        )
    t.add_row(
        "build",
        state.get("text", "no build state here (a time-series copy keeps it in <store>.map.zarr)"),
    )
    t.add_row(
        "ledger",
        f"{len(ledger.get('failed', []))} failed, {len(ledger.get('skipped', []))} skipped granules",
    )
    if state.get("lease"):  # a build is writing the store now (or was killed: stale)
        t.add_row("lease", str(state["lease"]["text"]))
    ui.out.print(t)
    ct = Table(title="layers per year and sensor", title_justify="left", header_style="bold")
    ct.add_column("year")
    for c in counts.columns:
        ct.add_column(str(c), justify="right")
    for year, row in counts.iterrows():
        ct.add_row(str(year), *(str(int(v)) for v in row.to_numpy()))
    ui.out.print(ct)
    for f in ledger.get("failed", [])[:10]:
        ui.out.print(f"  failed: {f.get('granule_id')}: {f.get('error')}")


@app.command()
def plot(
    store: Annotated[str, typer.Argument(help="Zarr cube (path or URL).")],
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir", "-o", help="Folder for the PNGs (default: <store name>-plots)."
        ),
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="Comma list of: yearly, counts, histogram, timeseries.")
    ] = "yearly,counts,histogram",
    point: Annotated[
        str | None, typer.Option("--point", help="LON,LAT of the time series (adds 'timeseries').")
    ] = None,
    var: Annotated[str, typer.Option("--var", help="Variable for the maps and histogram.")] = "v",
    speed_of_mean: Annotated[
        bool,
        typer.Option("--speed-of-mean", help="Maps of hypot(mean vx, mean vy) instead of mean(v)."),
    ] = False,
    weighted: Annotated[
        bool, typer.Option("--weighted", help="Weight layers by 1/v_error^2.")
    ] = False,
    polygon: PolygonOpt = None,
    bbox: BboxOpt = None,
    store_option: Annotated[
        list[str] | None,
        typer.Option("--store-option", help="fsspec option for the store, KEY=VALUE."),
    ] = None,
    anon: AnonOpt = False,
) -> None:
    """Plot a cube: yearly mean speed maps, layer counts, speed histogram, point time series."""
    from itslive_dask.analysis import point_timeseries, yearly_mean
    from itslive_dask.plots import (
        plot_granule_counts,
        plot_point_timeseries,
        plot_speed_histogram,
        plot_yearly_mean,
    )
    from itslive_dask.store.state import open_store

    sto = parse_options(store_option, anon=anon, what="--store-option")
    kinds = _split_list([kind]) or []
    valid = {"yearly", "counts", "histogram", "timeseries"}
    bad = [k for k in kinds if k not in valid]
    if bad:
        raise InvalidInputError(f"unknown --kind {bad[0]!r}; use {', '.join(sorted(valid))}")
    lonlat = _parse_point(point) if point is not None else None
    if lonlat is not None and "timeseries" not in kinds:
        kinds.append("timeseries")
    if "timeseries" in kinds and lonlat is None:
        raise InvalidInputError("--kind timeseries needs --point LON,LAT")
    geometry, bbox_t = _region(polygon, bbox)
    outline = geometry if geometry is not None else (bbox_t and __import__("shapely").box(*bbox_t))
    ds = open_store(store, sto)
    if var not in ds.data_vars:
        raise InvalidInputError(
            f"--var {var!r} is not in the cube; it has {', '.join(map(str, ds.data_vars))}"
        )
    name = Path(store.rstrip("/")).name.removesuffix(".zarr") or "cube"
    out = Path(output_dir or f"{name}-plots")
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--output-dir {out} exists and is not a folder")
    ts = (
        point_timeseries(ds, *lonlat, var=var) if lonlat is not None else None
    )  # checks the point first
    ui = _ui()
    written = []
    if "counts" in kinds:
        written.append(plot_granule_counts(ds, out / "layer_counts.png"))
    if "yearly" in kinds:
        ui.step("computing yearly means")
        means = yearly_mean(ds, var, weighted=weighted, speed_of_mean=speed_of_mean)
        written.append(plot_yearly_mean(means, out / "yearly_mean.png", region=outline))
    if "histogram" in kinds:
        written.append(plot_speed_histogram(ds, out / "histogram.png", var=var))
    if ts is not None:
        written.append(plot_point_timeseries(ts, out / "point_timeseries.png", var=var))
        ui.note(f"time series pixel is {ts.attrs['distance_m']:.0f} m from the point")
    for p in written:
        ui.out.print(str(p))


@app.command()
def demo(
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output folder.")
    ] = "itslive-demo-output",
    granules: Annotated[
        int, typer.Option("--granules", help="Synthetic granules to generate.")
    ] = 120,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic archive.")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Dask worker processes.")] = 2,
    region: Annotated[
        str, typer.Option("--region", help="Synthetic region: svalbard or pine_island.")
    ] = "svalbard",
    max_files_per_year: Annotated[
        int, typer.Option("--max-files-per-year", help="Filter cap per year (0: no filter).")
    ] = 12,
    keep_servers: Annotated[
        bool,
        typer.Option(
            "--keep-servers/--no-keep-servers",
            help="Keep the S3 and search servers up until Ctrl-C.",
        ),
    ] = False,
) -> None:
    """Run everything offline on a synthetic archive and check the cube against the truth.

    Starts a local S3 server and a local search server, generates the archive, searches it
    (STAC and legacy APIs), filters, builds the cube on a LocalCluster, plots, and prints the
    cube's accuracy against the analytic velocity field.
    """
    from itslive_dask.demo import run_demo

    if granules < 1:
        raise InvalidInputError(f"--granules must be at least 1, got {granules}")
    if max_files_per_year < 0:
        raise InvalidInputError(f"--max-files-per-year must be >= 0, got {max_files_per_year}")
    res = run_demo(
        output,
        granules=granules,
        seed=seed,
        workers=workers,
        region=region,
        max_files_per_year=max_files_per_year or None,
        keep_servers=keep_servers,
        ui=_ui(),
    )
    _demo_summary(res)


def _demo_summary(res: Any) -> None:
    from rich.table import Table

    s = res.summary
    acc = s["accuracy"]
    ui = _ui()
    t = Table(
        show_header=False, box=None, pad_edge=False, title="demo summary", title_justify="left"
    )
    t.add_column(style="bold")
    t.add_column()
    t.add_row(
        "archive",
        f"{s['granules_generated']} synthetic granules, EPSG {', '.join(map(str, s['granule_epsgs']))}",
    )
    t.add_row(
        "search",
        f"{s['granules_found']} found (STAC), {s['granules_found_legacy']} (legacy API), "
        f"{'same set' if s['search_backends_agree'] else 'DIFFERENT sets'}",
    )
    t.add_row(
        "used",
        f"{s['granules_selected']} after filter, {s['granules_read']} read, {s['granules_failed']} failed",
    )
    nt, ny, nx = s["cube_shape"]
    t.add_row("cube", f"{nt} layers x {ny} y x {nx} x, {s['cube_crs']}, {s['resolution_m']:g} m")
    a = acc["at_sampled_pixel"]
    b = acc["at_cube_pixel"]
    t.add_row(
        "accuracy",
        f"|v_cube - v_truth| median {a['speed_error']['median']:.3f} m/yr, p95 {a['speed_error']['p95']:.3f} m/yr; "
        f"direction error median {a['direction_error_deg']['median']:.3f} deg, p95 "
        f"{a['direction_error_deg']['p95']:.3f} deg ({acc['pixels']:,} pixels, truth at the sampled granule pixel)",
    )
    t.add_row(
        "",
        f"vs truth at the cube pixel centres (adds nearest-neighbour resampling): median "
        f"{b['speed_error']['median']:.2f} m/yr, p95 {b['speed_error']['p95']:.2f} m/yr, direction median "
        f"{b['direction_error_deg']['median']:.3f} deg",
    )
    t.add_row("wall time", f"{s['wall_time_s']:.1f} s")
    t.add_row("cube", str(res.store))
    t.add_row("plots", "\n".join(str(p) for p in res.plots.values()))
    t.add_row("summary", str(res.summary_file))
    ui.out.print(t)


# --------------------------------------------------------------------------- entry point


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    secrets = set(_STATE.get("secrets", set()))
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        if os.environ.get(var):
            secrets.add(os.environ[var])
    return scrub(line, secrets)


class _UserFacing(logging.Filter):
    """Without --debug: this package's warnings, and only errors from libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "itslive_dask" or record.name.startswith("itslive_dask."):
            return record.levelno >= logging.WARNING
        return record.levelno >= logging.ERROR


def _setup_logging(debug: bool) -> None:
    import warnings

    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler.addFilter(_UserFacing())
        # library warnings (deprecations, chatter) stay out of the user's terminal
        warnings.simplefilter("ignore")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if debug else logging.WARNING)
    logging.getLogger("itslive_dask").setLevel(logging.DEBUG if debug else logging.WARNING)


def _error(message: str) -> None:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (also used as the console-script entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ITSLIVE_DASK_DEBUG", "") not in ("", "0")
    quiet = "--quiet" in args or "-q" in args
    args = [a for a in args if a not in ("--debug", "--quiet", "-q")]  # global flags, anywhere
    _setup_logging(debug)
    _STATE["secrets"] = set()
    _STATE["ui"] = UI(quiet=True) if quiet else None
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="itslive-dask", standalone_mode=False)
    except typer.Exit as exc:
        rv = exc.exit_code
    except typer.Abort:
        _error("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors (exit code 2) and other CLI errors
        ctx = getattr(exc, "ctx", None)
        hint = (
            f" (see '{ctx.command_path} --help')" if ctx is not None and exc.exit_code == 2 else ""
        )
        _error(f"{exc.format_message()}{hint}")
        if debug:
            traceback.print_exc()
        return int(exc.exit_code or 1)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except ItsliveDaskError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        return 1
    except (OSError, ValueError) as exc:  # files, permissions, endpoints, bad values from libraries
        if debug:
            traceback.print_exc()
        _error(f"{type(exc).__name__}: {exc}")
        return 1
    except Exception as exc:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    if rv == 130:  # typer turns Ctrl-C into exit status 130
        _error("interrupted")
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
