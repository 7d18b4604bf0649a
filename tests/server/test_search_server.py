"""The local search server over real HTTP (uvicorn on 127.0.0.1) against a brute force.

The same synthetic catalog and independent brute force as tests/discovery/test_search_local.py
(polar footprints, footprints across 180 degrees). The server's own answers are checked raw
(pystac-client items, legacy JSON pages) so that the client's re-filtering cannot hide a server
bug; then the package's clients (``search(catalog=url)``) are checked too.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import shapely
import shapely.geometry
from fastapi import Request  # module level: FastAPI resolves the route annotations here

from itslive_dask.discovery.api import LegacyAPI, search
from itslive_dask.geo.footprints import to_rfc7946
from itslive_dask.server import LocalSearchServer

_spec = importlib.util.spec_from_file_location(
    "search_cases", Path(__file__).resolve().parents[1] / "discovery" / "test_search_local.py"
)
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

REGION_LABELS = (
    "south pole cap", "near south pole", "antarctic across 180", "north pole cap",
    "arctic across 180", "alaska straddling 60N", "zone 60 across 180", "greenland",
    "south pole raw ring", "random 6", "point south pole", "point across 180",
)  # fmt: skip


@pytest.fixture(scope="module")
def case():
    return cases.make_case(n=2000, seed=3)


@pytest.fixture(scope="module")
def server(case, tmp_path_factory):
    path = tmp_path_factory.mktemp("srv") / "granules.parquet"
    from itslive_dask.discovery.catalog import save_catalog

    save_catalog(case.table, path)
    with LocalSearchServer(str(path)) as srv:
        yield srv


def picked():
    return [r for r in cases.regions() if r[0] in REGION_LABELS]


def _geojson(kwargs: dict) -> dict:
    """What a user would send as intersects: the region cut at 180 (RFC 7946)."""
    if "bbox" in kwargs:
        geom = shapely.segmentize(shapely.box(*kwargs["bbox"]), 1.0)
    else:
        geom = kwargs["geometry"]
    if geom.geom_type != "Point":
        geom = to_rfc7946(geom)
    return shapely.geometry.mapping(geom)


def test_landing_page_and_conformance_for_pystac_client(server):
    import pystac_client
    from pystac_client.conformance import ConformanceClasses

    client = pystac_client.Client.open(server.url)
    for cls in ("CORE", "ITEM_SEARCH", "FILTER", "QUERY", "COLLECTIONS", "FEATURES"):
        assert client.conforms_to(ConformanceClasses[cls]), cls
    coll = client.get_collection("itslive-granules")
    assert coll.id == "itslive-granules"
    assert "dt_days" in client.get_merged_queryables(["itslive-granules"])["properties"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_raw_stac_answers_match_brute_force(case, server, method):
    import pystac_client

    client = pystac_client.Client.open(server.url)
    start, end = "2015-03-01", "2019-06-30"
    flt = {"op": "and", "args": [
        {"op": ">=", "args": [{"property": "dt_days"}, 6]},
        {"op": "<=", "args": [{"property": "date_dt"}, 120]},
        {"op": ">=", "args": [{"property": "percent_valid_pixels"}, 20]},
    ]}  # fmt: skip
    m = cases.attribute_mask(case, start, pd.Timestamp("2019-06-30T23:59:59"), 6, 120, 20)
    multi_page = 0
    for label, kw, region_ll in picked():
        inner, outer = cases.truth(case, region_ll, m)
        s = client.search(
            collections=["itslive-granules"], intersects=_geojson(kw), datetime=f"{start}/{end}",
            filter=flt, filter_lang="cql2-json", limit=10, method=method,
        )  # fmt: skip
        found = []
        pages = 0
        for page in s.pages_as_dicts():
            pages += 1
            found.extend(f["id"] for f in page["features"])
        multi_page += pages > 1
        assert len(found) == len(set(found)), f"{label}: paging repeated items"
        cases.check(set(found), inner, outer, f"{label} ({method})")
    assert multi_page >= 4  # several regions needed more than one page


def test_query_extension_and_bbox_across_180(case, server):
    import pystac_client

    client = pystac_client.Client.open(server.url)
    m = cases.attribute_mask(case, min_sep=12, max_sep=64)
    # STAC bbox with west > east crosses the antimeridian
    inner, outer = cases.truth(case, shapely.segmentize(shapely.box(178, -80, 183, -77), 1.0), m)
    s = client.search(
        bbox=[178, -80, -177, -77], query={"date_dt": {"gte": 12, "lte": 64}}, limit=1000
    )
    found = {i.id for i in s.items()}
    assert inner
    cases.check(found, inner, outer, "bbox across 180 + query extension")


def test_raw_legacy_answers_match_brute_force_with_paging(case, server):
    m = cases.attribute_mask(
        case, "2014-01-01", pd.Timestamp("2020-12-31T23:59:59.999999999"), 10, 200, 30
    )
    for label, kw, region_ll in picked():
        if "geometry" in kw and kw["geometry"].geom_type == "Point":
            continue
        inner, outer = cases.truth(case, region_ll, m)
        geom = shapely.geometry.shape(_geojson(kw))
        found: list[str] = []
        for part in getattr(geom, "geoms", [geom]):
            polygon = ",".join(f"{x},{y}" for x, y in part.exterior.coords)
            url = f"{server.url}/velocities/urls/"
            params = {"polygon": polygon, "start": "2014-01-01", "end": "2020-12-31", "min_interval": 10,
                      "max_interval": 200, "percent_valid_pixels": 30, "limit": 25}  # fmt: skip
            while url:
                r = requests.get(url, params=params, timeout=60)
                assert r.status_code == 200, r.text
                found.extend(Path(o["url"]).name[:-3] for o in r.json())
                url, params = r.links.get("next", {}).get("url"), None
        cases.check(set(found), inner, outer, f"legacy {label}")


def test_package_clients_match_brute_force(case, server):
    kw_attr = {"start": "2014-06-01", "end": "2020-05-31", "min_separation": 6, "max_separation": 365,
               "percent_valid_pixels": 15, "sensors": ["landsat", "sentinel2"]}  # fmt: skip
    m = cases.attribute_mask(
        case,
        "2014-06-01",
        pd.Timestamp("2020-05-31T23:59:59.999999999"),
        6,
        365,
        15,
        ["landsat", "sentinel2"],
    )
    legacy = LegacyAPI(server.url)
    for label, kw, region_ll in picked():
        inner, outer = cases.truth(case, region_ll, m)
        stac = set(search(**kw, **kw_attr, catalog=server.url)["granule_id"])
        cases.check(stac, inner, outer, f"stac client {label}")
        leg = search(**kw, **kw_attr, catalog=legacy)
        cases.check(set(leg["granule_id"]), inner, outer, f"legacy client {label}")
        # the legacy server sends the metadata: rows equal the catalog's rows
        if len(leg):
            ref = case.table.set_index("granule_id").loc[list(leg["granule_id"])]
            assert (leg["epsg"].to_numpy() == ref["epsg"].to_numpy()).all()
            assert leg.geometry.notna().all()


def test_coverage_counts_per_year(case, server):
    _, kw, region_ll = next(r for r in cases.regions() if r[0] == "south pole cap")
    m = cases.attribute_mask(case, pct=50)
    inner, outer = cases.truth(case, region_ll, m)
    years = case.table.set_index("granule_id")["mid_date"].dt.year

    def per_year(ids):
        return years.loc[sorted(ids)].value_counts().to_dict()

    lo, hi = per_year(inner), per_year(outer)
    got = LegacyAPI(server.url).coverage(bbox=kw["bbox"], percent_valid_pixels=50)
    assert set(got) == set(hi) and len(got) >= 5
    for year, count in got.items():
        assert lo.get(year, 0) <= count <= hi[year], year
    params = {"bbox": "-180,-90,180,-88.5", "percent_valid_pixels": 50}
    raw = requests.get(f"{server.url}/velocities/coverage/", params=params, timeout=30).json()
    assert raw == [{"count": got[y], "year": y} for y in sorted(got)]
    urls = requests.get(f"{server.url}/velocities/urls/", params=params, timeout=30).json()
    assert sum(got.values()) == len(urls)


def test_serializations_and_single_items(case, server):
    params = {"bbox": "-50,68,-47,70"}
    js = requests.get(f"{server.url}/velocities/urls/", params=params, timeout=30).json()
    text = requests.get(
        f"{server.url}/velocities/urls/", params={**params, "serialization": "text"}, timeout=30
    )
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.split() == [o["url"] for o in js] and js
    html = requests.get(
        f"{server.url}/velocities/urls/", params={**params, "serialization": "html"}, timeout=30
    )
    assert html.headers["content-type"].startswith("text/html") and js[0]["url"] in html.text
    gid = js[0]["granule_id"]
    item = requests.get(f"{server.url}/collections/itslive-granules/items/{gid}", timeout=30).json()
    assert item["id"] == gid and item["assets"]["data"]["alternate"]["s3"]["href"] == js[0]["url"]
    assert item["properties"]["proj:code"] == f"EPSG:{js[0]['epsg']}"
    assert (
        requests.get(
            f"{server.url}/collections/itslive-granules/items/nope", timeout=30
        ).status_code
        == 404
    )
    items = requests.get(
        f"{server.url}/collections/itslive-granules/items", params={"limit": 3}, timeout=30
    ).json()
    assert len(items["features"]) == 3 and any(link["rel"] == "next" for link in items["links"])


BAD = [
    ("GET", "/velocities/urls/", {"start": "2020-01-01", "end": "2019-01-01"}),
    ("GET", "/velocities/urls/", {"polygon": "0,0,1,1,0,1,1,0"}),  # self-intersecting
    ("GET", "/velocities/urls/", {"polygon": "0,0,1"}),
    ("GET", "/velocities/urls/", {"bbox": "0,0,10,95"}),
    ("GET", "/velocities/urls/", {"polygon": "0,80,1,80,1,91,0,91,0,80"}),
    ("GET", "/velocities/urls/", {"serialization": "xml"}),
    ("GET", "/velocities/urls/", {"start": "yesterday"}),
    ("GET", "/velocities/urls/", {"min_interval": "abc"}),
    ("GET", "/velocities/urls/", {"min_interval": "30", "max_interval": "10"}),
    ("GET", "/velocities/urls/", {"percent_valid_pixels": "150"}),
    ("GET", "/velocities/urls/", {"limit": "100000"}),
    ("GET", "/velocities/urls/", {"offset": "-1"}),
    ("GET", "/velocities/urls/", {"bbox": "0,0,1,1", "polygon": "0,0,1,0,1,1,0,0"}),
    ("GET", "/velocities/coverage/", {"end": "2000-01-01", "start": "2001-01-01"}),
    ("GET", "/search", {"limit": "-5"}),
    ("GET", "/search", {"limit": "0"}),
    ("GET", "/search", {"limit": "ten"}),
    ("GET", "/search", {"bbox": "0,0,1"}),
    ("GET", "/search", {"bbox": "0,0,1,95"}),
    ("GET", "/search", {"bbox": "0,5,1,1"}),
    ("GET", "/search", {"datetime": "2020-13-45T00:00:00Z"}),
    ("GET", "/search", {"datetime": "2021-01-01T00:00:00Z/2020-01-01T00:00:00Z"}),
    ("GET", "/search", {"datetime": "a/b/c"}),
    ("GET", "/search", {"intersects": "{not json"}),
    (
        "GET",
        "/search",
        {"intersects": json.dumps({"type": "LineString", "coordinates": [[0, 0]]})},
    ),
    (
        "GET",
        "/search",
        {"intersects": json.dumps(shapely.geometry.mapping(shapely.box(0, 80, 1, 95)))},
    ),
    ("GET", "/search", {"token": "garbage"}),
    ("GET", "/search", {"filter": '{"op": "~~", "args": []}'}),
    ("GET", "/search", {"filter": "date_dt >> 5", "filter-lang": "cql2-text"}),
    ("GET", "/search", {"filter": "date_dt > 5", "filter-lang": "cql3"}),
    ("GET", "/search", {"datetime": "2020-01-01"}),  # not an RFC 3339 date-time
    ("GET", "/search", {"filter": json.dumps({"op": ">", "args": [{"property": "nope"}, 1]})}),
    ("POST", "/search", {"limit": 0}),
    ("POST", "/search", {"bbox": "0,0,1,1"}),
    (
        "POST",
        "/search",
        {"bbox": [0, 0, 1, 1], "intersects": shapely.geometry.mapping(shapely.box(0, 0, 1, 1))},
    ),
    ("POST", "/search", {"filter": {"op": ">=", "args": [{"property": "date_dt"}, "many"]}}),
    ("POST", "/search", {"query": {"date_dt": {"approx": 5}}}),
    ("POST", "/search", {"query": "date_dt>5"}),
    ("POST", "/search", {"datetime": 2020}),
    ("POST", "/search", ["not", "an", "object"]),
    ("POST", "/search", "{broken json"),
    ("GET", "/collections/other", {}),
]


@pytest.mark.parametrize(
    "method, path, payload", BAD, ids=[f"{m} {p} {str(q)[:40]}" for m, p, q in BAD]
)
def test_bad_requests_get_4xx_with_a_message(server, method, path, payload):
    url = f"{server.url}{path}"
    if method == "GET":
        r = requests.get(url, params=payload, timeout=30)
    elif isinstance(payload, str):
        r = requests.post(
            url, data=payload, headers={"content-type": "application/json"}, timeout=30
        )
    else:
        r = requests.post(url, json=payload, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert body["description"] and body["detail"]


def test_server_binds_loopback_and_stops(case):
    small = case.table.iloc[:5]
    srv = LocalSearchServer(small).start()
    assert srv.url.startswith("http://127.0.0.1:")
    assert requests.get(srv.url + "/conformance", timeout=10).status_code == 200
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/conformance", timeout=5)


def test_empty_answers_are_well_formed(server):
    r = requests.get(f"{server.url}/search", params={"bbox": "10,10,11,11"}, timeout=30).json()
    assert r["features"] == [] and r["numberMatched"] == 0
    r = requests.get(f"{server.url}/velocities/urls/", params={"bbox": "10,10,11,11"}, timeout=30)
    assert r.json() == [] and r.headers["X-Total-Count"] == "0"
    assert np.asarray(search(bbox=(10, 10, 11, 11), catalog=server.url)).size == 0
    assert len(search(bbox=(10, 10, 11, 11), catalog=server.legacy_url)) == 0


def test_stac_client_refilters_when_the_server_ignores_criteria(case):
    """A STAC API that only pages through every item (no filter, no query, no intersects)."""
    import socket
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI

    from itslive_dask.discovery.stac import row_to_item

    items = [row_to_item(r) for r in case.table.iloc[::4].to_dict("records")]
    app = FastAPI()

    @app.get("/")
    def root(request: Request):
        base = str(request.base_url).rstrip("/")
        return {
            "type": "Catalog", "id": "dumb", "description": "d", "stac_version": "1.0.0",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": f"{base}/"}, {"rel": "root", "href": f"{base}/"},
                      {"rel": "search", "href": f"{base}/search", "method": "POST"}],
        }  # fmt: skip

    @app.post("/search")
    async def everything(request: Request):
        body = await request.json()
        start = int(body.get("token") or 0)
        base = str(request.base_url).rstrip("/")
        links = []
        if start + 100 < len(items):
            links.append({"rel": "next", "href": f"{base}/search", "method": "POST",
                          "body": {**body, "token": str(start + 100)}})  # fmt: skip
        return {"type": "FeatureCollection", "features": items[start : start + 100], "links": links}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        sub = cases.Case(case.table.iloc[::4].reset_index(drop=True), case.epsg[::4], case.boxes[::4],
                         case.centre_lonlat[::4], case.radius_m[::4])  # fmt: skip
        m = cases.attribute_mask(
            sub, "2015-01-01", pd.Timestamp("2018-12-31T23:59:59.999999999"), 10, 100, 40
        )
        for label, kw, region_ll in picked()[:4]:
            inner, outer = cases.truth(sub, region_ll, m)
            got = search(**kw, start="2015-01-01", end="2018-12-31", min_separation=10, max_separation=100,
                         percent_valid_pixels=40, catalog=url)  # fmt: skip
            cases.check(set(got["granule_id"]), inner, outer, f"dumb server {label}")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
