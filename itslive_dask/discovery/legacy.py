"""Client of the legacy NSIDC-style ITS_LIVE search API (``/velocities/urls/``, ``/coverage/``).

The retired NSIDC service (used by the tutorial) answered
``GET <base>/velocities/urls/?polygon=lon,lat,...&start=YYYY-MM-DD&end=...&min_interval=...
&max_interval=...&percent_valid_pixels=...&serialization=json`` with a JSON list of
``{"url": ...}`` objects; ``/velocities/coverage/`` answered ``[{"count": n, "year": y}, ...]``.
The local search server (:mod:`itslive_dask.server`) speaks the same protocol and adds
metadata fields to each object, plus paging through an RFC 8288 ``Link: <...>; rel="next"``
header. This client uses the extra fields when present, parses the file names otherwise, and
follows ``next`` links.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import requests
import shapely
import shapely.geometry

from itslive_dask.discovery.query import SearchQuery, select
from itslive_dask.errors import InvalidInputError, SearchError
from itslive_dask.geo.footprints import to_rfc7946
from itslive_dask.granule.names import parse_granule_name
from itslive_dask.table import empty_granule_table, granule_table

__all__ = ["LegacyAPI", "legacy_params", "legacy_record"]

logger = logging.getLogger(__name__)

_EPSG_DIR = re.compile(r"/(3031|3413|32[67]\d\d)/[^/]+$")


class LegacyAPI:
    """The legacy ITS_LIVE search API at ``url`` (the part before ``/velocities/``).

    Parameters
    ----------
    url
        Base URL, e.g. ``"http://127.0.0.1:8000"`` for the local server or
        ``"https://nsidc.org/apps/itslive-search"`` for the retired NSIDC service. A
        ``legacy+`` prefix (as accepted by ``search(catalog=...)``) is removed.
    timeout
        Seconds to wait for each HTTP response.
    session
        A :class:`requests.Session` to reuse (optional).

    Examples
    --------
    >>> api = LegacyAPI("http://127.0.0.1:8000")              # doctest: +SKIP
    >>> table = search(bbox=(-50, 69, -48, 70), catalog=api)  # doctest: +SKIP
    >>> api.coverage(bbox=(-50, 69, -48, 70))                  # doctest: +SKIP
    {2014: 12, 2015: 30}
    """

    def __init__(
        self, url: str, *, timeout: float = 120.0, session: requests.Session | None = None
    ):
        if not isinstance(url, str) or not url.strip():
            raise InvalidInputError(f"legacy API url must be a non-empty string, got {url!r}")
        url = url.strip()
        if url.startswith("legacy+"):
            url = url[len("legacy+") :]
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"legacy API url must start with http:// or https://, got {url!r}"
            )
        url = url.rstrip("/")
        if url.endswith("/velocities/urls") or url.endswith("/velocities/coverage"):
            url = url.rsplit("/velocities/", 1)[0]
        self.url = url
        self.timeout = timeout
        self._session = session

    def __repr__(self) -> str:
        return f"LegacyAPI({self.url!r})"

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    # ------------------------------------------------------------------ requests
    def _get(self, url: str, params: Mapping[str, Any] | None) -> requests.Response:
        try:
            resp = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SearchError(f"legacy search API {self.url} unreachable: {exc}") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text[:500]
            raise SearchError(f"legacy search API {self.url} answered {resp.status_code}: {detail}")
        return resp

    def iter_objects(self, query: SearchQuery) -> Iterator[dict[str, Any]]:
        """Raw JSON objects of ``/velocities/urls/`` for a query (all pages, all polygons)."""
        for params in legacy_params(query):
            url: str | None = f"{self.url}/velocities/urls/"
            p: Mapping[str, Any] | None = {**params, "serialization": "json"}
            while url:
                resp = self._get(url, p)
                try:
                    objs = resp.json()
                except ValueError:
                    raise SearchError(f"legacy search API {self.url} did not answer JSON") from None
                if not isinstance(objs, list):
                    raise SearchError(
                        f"legacy search API {self.url} answered {type(objs).__name__}, not a list"
                    )
                for obj in objs:
                    if isinstance(obj, str):
                        obj = {"url": obj}
                    if not isinstance(obj, dict) or "url" not in obj:
                        raise SearchError(
                            f"legacy search API {self.url}: unexpected object {obj!r:.200}"
                        )
                    yield obj
                url = resp.links.get("next", {}).get("url")
                p = None  # the next link carries every parameter

    def search(
        self,
        query: SearchQuery,
        progress: Callable[[int, int | None], None] | None = None,
    ):
        """Granule table of the granules matching ``query`` (criteria re-applied locally)."""
        records: dict[str, dict[str, Any]] = {}
        for obj in self.iter_objects(query):
            try:
                rec = legacy_record(obj)
            except InvalidInputError as exc:
                logger.warning("legacy search: skipping %s (%s)", obj.get("url"), exc)
                continue
            records.setdefault(rec["granule_id"], rec)
            if progress is not None and len(records) % 1000 == 0:
                progress(len(records), None)
        table = granule_table(records.values()) if records else empty_granule_table()
        out = select(table, query)
        if progress is not None:
            progress(len(out), len(out))
        logger.info(
            "legacy search %s: %d objects, %d granules match", self.url, len(records), len(out)
        )
        return out

    def coverage(self, geometry: Any = None, **kwargs: Any) -> dict[int, int]:
        """Granule counts per year (``/velocities/coverage/``), same arguments as ``search``.

        For a multi-part region, counts of the parts are added (a granule touching two parts
        is counted twice).
        """
        from itslive_dask.discovery.query import make_query

        query = make_query(geometry, **kwargs)
        counts: dict[int, int] = {}
        for params in legacy_params(query):
            resp = self._get(f"{self.url}/velocities/coverage/", params)
            try:
                rows = resp.json()
                for row in rows:
                    y = int(row["year"])
                    counts[y] = counts.get(y, 0) + int(row["count"])
            except (ValueError, KeyError, TypeError):
                raise SearchError(
                    f"legacy search API {self.url}: unexpected coverage answer"
                ) from None
        return dict(sorted(counts.items()))


def _fmt_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _fmt_time(ts: pd.Timestamp, *, end: bool) -> str:
    day = ts.normalize()
    if not end and ts == day:
        return day.strftime("%Y-%m-%d")
    if end and ts == day + pd.Timedelta(days=1) - pd.Timedelta(1, "ns"):
        return day.strftime("%Y-%m-%d")
    return ts.isoformat()


def legacy_params(query: SearchQuery) -> list[dict[str, str]]:
    """Query-string parameters for the legacy API: one dict per polygon part of the region.

    The legacy API takes one ring (``polygon=lon,lat,...``); a multi-part region (or one
    crossing the antimeridian, cut at +-180) is sent as one request per part, holes dropped
    (the client re-applies the exact region afterwards).
    """
    base: dict[str, str] = {}
    if query.start is not None:
        base["start"] = _fmt_time(query.start, end=False)
    if query.end is not None:
        base["end"] = _fmt_time(query.end, end=True)
    if query.min_separation is not None:
        base["min_interval"] = _fmt_number(query.min_separation)
    if query.max_separation is not None:
        base["max_interval"] = _fmt_number(query.max_separation)
    if query.min_percent_valid is not None:
        base["percent_valid_pixels"] = _fmt_number(query.min_percent_valid)
    if query.region is None:
        return [base]
    if query.region.geom_type == "Point":
        lon, lat = query.region.coords[0][:2]
        d = 1e-5  # a tiny box around the point (the API takes polygons only)
        s, n = max(lat - d, -90.0), min(lat + d, 90.0)
        ring = [(lon - d, s), (lon + d, s), (lon + d, n), (lon - d, n), (lon - d, s)]
        return [{**base, "polygon": _ring_text(np.asarray(ring))}]
    geom = to_rfc7946(query.region)
    parts = list(getattr(geom, "geoms", [geom]))
    return [{**base, "polygon": _ring_text(np.asarray(p.exterior.coords))} for p in parts]


def _ring_text(coords: np.ndarray) -> str:
    return ",".join(f"{v:.6f}".rstrip("0").rstrip(".") for xy in coords[:, :2] for v in xy)


def legacy_record(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A granule-table record from one ``/velocities/urls/`` object.

    The granule name gives the dates, satellites, sensor, resolution, version and coverage;
    metadata fields of the object (as the local server sends them) take precedence. Without a
    footprint the row has ``geometry=None``; without an EPSG code (also looked for in a
    ``/<epsg>/`` folder of the URL, as in V1 URLs) ``epsg=0``: the cube engine then reads the
    granule header.

    Raises
    ------
    InvalidInputError
        When the URL's file name is not an ITS_LIVE granule name.
    """
    url = str(obj["url"])
    name = parse_granule_name(url)
    rec: dict[str, Any] = {
        "granule_id": name.granule_id,
        "url": url,
        "https_url": url if url.startswith("https://") else "",
        "mid_date": pd.Timestamp(name.mid_date),
        "acquisition_date_img1": pd.Timestamp(name.acquisition_date_img1),
        "acquisition_date_img2": pd.Timestamp(name.acquisition_date_img2),
        "date_dt": name.date_dt,
        "satellite_img1": name.satellite_img1,
        "satellite_img2": name.satellite_img2,
        "sensor": name.sensor,
        "epsg": 0,
        "percent_valid": name.percent_valid,
        "version": name.version,
        "resolution": name.resolution,
        "geometry": None,
    }
    m = _EPSG_DIR.search(url.split("?", 1)[0])
    if m:
        rec["epsg"] = int(m[1])
    for key in ("mid_date", "acquisition_date_img1", "acquisition_date_img2"):
        if obj.get(key):
            ts = pd.Timestamp(obj[key])
            rec[key] = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    for key in ("date_dt", "percent_valid", "resolution"):
        if obj.get(key) is not None:
            rec[key] = float(obj[key])
    for key in ("epsg", "version"):
        if obj.get(key):
            rec[key] = int(obj[key])
    for key in ("https_url", "satellite_img1", "satellite_img2", "sensor"):
        if obj.get(key):
            rec[key] = str(obj[key])
    geom = obj.get("geometry")
    if isinstance(geom, Mapping) and geom.get("type"):
        rec["geometry"] = shapely.geometry.shape(geom)
    elif isinstance(geom, str) and geom:
        rec["geometry"] = shapely.from_wkt(geom)
    return rec
