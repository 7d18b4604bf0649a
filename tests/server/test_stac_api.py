"""The STAC API against `stac-api-validator` and the points it found on main.

Server on 127.0.0.1 over the synthetic catalog (tests/server/conftest.py). Expected answers
are computed here, independently of the server: footprints and query geometries projected to
EPSG:3413 with pyproj, attribute filters with pandas.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyproj
import pytest
import requests
import shapely
import shapely.geometry

GEOJSON = "application/geo+json"

#: Errors of stac-api-validator that are not the server's doing (see docs/serve.md):
#: JSON-schema downloads (no internet here), filters on properties ITS_LIVE items do not have
#: (the validator hard-codes eo:cloud_cover and mission), and its 'in' check, which treats
#: the property as an array.
NOT_OURS = [
    re.compile(r"schemas\.stacspec\.org|stac-extensions\.github\.io"),
    re.compile(
        r"eo:cloud_cover|'property': 'mission'|\"property\": \"mission\"|mission (NOT )?LIKE"
    ),
    re.compile(r"Query Ext\] : (GET|POST) search with Query '\{\"platform\": \{\"in\""),
]


def test_stac_api_validator_finds_no_error_of_ours(stac_server, catalog_table, monkeypatch):
    import socket

    from stac_api_validator.validations import QueryConfig, validate_api

    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):  # schema downloads fail at once, offline or not
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no network in this test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)

    values = catalog_table["percent_valid"]
    inside = values[(values > values.min()) & (values < values.max())]
    pv = str(int(inside.mode()[0]))  # has items equal, below and above
    geometry = shapely.geometry.mapping(shapely.box(16.5, 78.6, 19.0, 79.0))
    _warnings, errors = validate_api(
        root_url=stac_server.url,
        ccs_to_validate=["core", "collections", "features", "item-search", "filter",
                         "item-search#query", "features#query"],
        collection="itslive-granules",
        geometry=json.dumps(geometry),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=True,
        query_config=QueryConfig(
            "percent_valid_pixels", pv, pv, pv, pv, pv, pv,
            "platform", "LC", "08", "C0", "platform", "LC08,S2A",
        ),
        transaction_collection=None,
        headers=None,
    )  # fmt: skip
    messages = [msg for _, msg in errors.errors]
    ours = [m for m in messages if not any(p.search(m) for p in NOT_OURS)]
    assert not ours, "\n".join(ours)
    # the validator did run the classes (it reports the schema downloads it could not make)
    assert len(messages) < 80


def _get(url, **params):
    r = requests.get(url, params=params, timeout=30)
    assert r.status_code == 200, r.text[:500]
    return r


def test_items_pages_have_self_links(stac_server):
    url = f"{stac_server.url}/collections/itslive-granules/items"
    page = _get(url, limit=5).json()
    links = {link["rel"]: link for link in page["links"]}
    assert links["self"]["href"] == f"{url}?limit=5"
    assert links["self"]["type"] == GEOJSON
    assert "next" in links and "collection" in links
    search = _get(f"{stac_server.url}/search", limit=5).json()
    assert any(link["rel"] == "self" for link in search["links"])


def test_service_desc_matches_the_served_document(stac_server):
    landing = _get(stac_server.url).json()
    desc = next(link for link in landing["links"] if link["rel"] == "service-desc")
    r = requests.get(desc["href"], headers={"Accept": desc["type"]}, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == desc["type"]
    doc = r.json()
    declared = desc["type"].split("version=")[1]
    assert doc["openapi"].startswith(declared + "."), (doc["openapi"], declared)
    human = next(link for link in landing["links"] if link["rel"] == "service-doc")
    page = requests.get(human["href"], timeout=30)
    assert page.headers["content-type"].startswith("text/html") and "/search" in page.text


def test_openapi_declares_parameters_and_bodies(stac_server):
    doc = requests.get(f"{stac_server.url}/api", timeout=30).json()
    get = doc["paths"]["/search"]["get"]
    names = {p["name"] for p in get["parameters"]}
    assert {"bbox", "intersects", "datetime", "limit", "filter", "filter-lang", "query",
            "ids", "collections", "token"} <= names  # fmt: skip
    body = doc["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]
    assert {"intersects", "filter", "query", "limit"} <= set(body["schema"]["properties"])
    items = doc["paths"]["/collections/{collection_id}/items"]["get"]
    assert {"bbox", "datetime", "limit"} <= {p["name"] for p in items["parameters"]}
    legacy = doc["paths"]["/velocities/urls/"]["get"]
    assert {"polygon", "start", "end", "serialization"} <= {p["name"] for p in legacy["parameters"]}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_limit_above_the_maximum_is_clamped(stac_server, catalog_table, method):
    from itslive_dask.server.stac_api import MAX_LIMIT

    if method == "GET":
        r = requests.get(f"{stac_server.url}/search", params={"limit": 10**6}, timeout=30)
    else:
        r = requests.post(f"{stac_server.url}/search", json={"limit": 10**30}, timeout=30)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["context"]["limit"] == MAX_LIMIT
    assert page["numberReturned"] == min(len(catalog_table), MAX_LIMIT)
    for bad in (0, -3):
        assert (
            requests.get(f"{stac_server.url}/search", params={"limit": bad}, timeout=30).status_code
            == 400
        )


# --------------------------------------------------------------------------- intersects

_TO_3413 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)


def _polar(geom):
    """lon/lat geometry -> EPSG:3413, edges densified every 0.01 degree first."""
    dense = shapely.segmentize(geom, 0.01)
    return shapely.transform(
        dense, lambda xy: np.column_stack(_TO_3413.transform(xy[:, 0], xy[:, 1]))
    )


def _truth(table, parts, tol=300.0):
    """(ids surely hit, ids possibly hit): footprints shrunk / grown by ``tol`` metres."""
    feet = [_polar(g) for g in table.geometry]
    region = shapely.union_all([_polar(p) for p in parts])
    inner = {gid for gid, f in zip(table["granule_id"], feet, strict=True)
             if f.buffer(-tol).intersects(region)}  # fmt: skip
    outer = {gid for gid, f in zip(table["granule_id"], feet, strict=True)
             if f.buffer(tol).intersects(region)}  # fmt: skip
    return inner, outer


def _geometries(table):
    west = shapely.Point(15.95, 78.9)
    east = shapely.Point(19.8, 78.8)
    mid = shapely.Point(17.9, 78.85)
    south = shapely.Point(17.5, 78.46)
    line = shapely.LineString([(15.9, 79.2), (16.3, 78.5)])
    far = shapely.LineString([(19.6, 79.25), (19.85, 78.6)])
    return {
        "Point": west,
        "MultiPoint": shapely.MultiPoint([west, east]),
        "LineString": line,
        "MultiLineString": shapely.MultiLineString([line, far]),
        "Polygon": shapely.box(17.3, 78.42, 17.6, 78.5),
        "MultiPolygon": shapely.MultiPolygon(
            [shapely.box(17.3, 78.42, 17.6, 78.5), shapely.box(15.86, 79.0, 16.0, 79.1)]
        ),
        "GeometryCollection": shapely.GeometryCollection([south, far]),
        "Point far away": shapely.Point(-40.0, 70.0),
        "Point in the middle": mid,
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_intersects_takes_every_geojson_type(stac_server, catalog_table, method):
    discriminating = 0
    for label, geom in _geometries(catalog_table).items():
        parts = list(geom.geoms) if geom.geom_type == "GeometryCollection" else [geom]
        inner, outer = _truth(catalog_table, parts)
        gj = shapely.geometry.mapping(geom)
        if method == "GET":
            r = requests.get(f"{stac_server.url}/search",
                             params={"intersects": json.dumps(gj), "limit": 1000}, timeout=30)  # fmt: skip
        else:
            r = requests.post(
                f"{stac_server.url}/search", json={"intersects": gj, "limit": 1000}, timeout=30
            )
        assert r.status_code == 200, (label, r.text[:300])
        found = {f["id"] for f in r.json()["features"]}
        assert inner <= found <= outer, (label, sorted(inner - found), sorted(found - outer))
        discriminating += 0 < len(found) < len(catalog_table)
    assert discriminating >= 5


@pytest.mark.parametrize("geom", [
    {"type": "LineString", "coordinates": [[0, 0]]},
    {"type": "Point", "coordinates": [0, 95]},
    {"type": "MultiPoint", "coordinates": [[0, "a"]]},
    {"type": "Polygon", "coordinates": [[[0, 80], [1, 80], [1, 91], [0, 80]]]},
    {"type": "GeometryCollection", "geometries": []},
    {"type": "GeometryCollection"},
    {"type": "Feature", "geometry": None},
    '{"type": "Point", "coordinates": [1e400, 0]}',
    '{"type": "Point", "coordinates": [NaN, 0]}',
    '{"type": "MultiPoint", "coordinates": [[0, 1' + "0" * 400 + ']]}',
])  # fmt: skip
def test_bad_geometries_get_400(stac_server, geom):
    if isinstance(geom, str):  # raw JSON text: numbers Python's json cannot write
        r = requests.post(f"{stac_server.url}/search", data=f'{{"intersects": {geom}}}',
                          headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    else:
        r = requests.post(f"{stac_server.url}/search", json={"intersects": geom}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["description"]


# --------------------------------------------------------------------------- attribute filters


@pytest.mark.parametrize(
    "op, value, expect",
    [
        ("startsWith", "LC", lambda s: s.str.startswith("LC")),
        ("endsWith", "2A", lambda s: s.str.endswith("2A")),
        ("contains", "1", lambda s: s.str.contains("1", regex=False)),
        ("in", ["S1A", "LC09"], lambda s: s.isin(["S1A", "LC09"])),
        ("eq", "S2B", lambda s: s == "S2B"),
    ],
)
def test_query_extension_operators(stac_server, catalog_table, op, value, expect):
    truth = set(catalog_table["granule_id"][expect(catalog_table["satellite_img1"])])
    assert 0 < len(truth) < len(catalog_table)
    query = {"platform": {op: value}}
    got_get = _get(f"{stac_server.url}/search", query=json.dumps(query), limit=1000).json()
    got_post = requests.post(f"{stac_server.url}/search", json={"query": query, "limit": 1000},
                             timeout=30).json()  # fmt: skip
    assert {f["id"] for f in got_get["features"]} == truth
    assert {f["id"] for f in got_post["features"]} == truth


def _cases(t):
    mid = t["mid_date"]
    return [
        ("date_dt > 30 AND percent_valid_pixels >= 80",
         (t["date_dt"] > 30) & (t["percent_valid"] >= 80)),
        ("platform LIKE 'S2%' OR platform = 'LC09'",
         t["satellite_img1"].str.startswith("S2") | (t["satellite_img1"] == "LC09")),
        ("NOT (date_dt BETWEEN 10 AND 50)", ~t["date_dt"].between(10, 50)),
        ("datetime >= TIMESTAMP('2018-01-01T00:00:00Z') AND datetime < TIMESTAMP('2020-01-01T00:00:00Z')",
         (mid >= "2018-01-01") & (mid < "2020-01-01")),
        ("platform IN ('S1A', 'S1B') AND collection = 'itslive-granules'",
         t["satellite_img1"].isin(["S1A", "S1B"])),
        ("datetime < TIMESTAMP('9999-12-31T00:00:00Z')", mid.notna()),
        ("datetime > TIMESTAMP('1000-01-01T00:00:00Z')", mid.notna()),
        ("datetime IN (TIMESTAMP('9999-01-01T00:00:00Z'))", mid.isna()),
    ]  # fmt: skip


def test_get_filter_in_cql2_text(stac_server, catalog_table):
    for text, mask in _cases(catalog_table):
        truth = set(catalog_table["granule_id"][mask])
        for lang in ({"filter-lang": "cql2-text"}, {}):
            page = _get(f"{stac_server.url}/search", filter=text, limit=1000, **lang).json()
            assert {f["id"] for f in page["features"]} == truth, text
        # the same filter as CQL2-JSON, POSTed
        import cql2

        body = {"filter": cql2.Expr(text).to_json(), "filter-lang": "cql2-json", "limit": 1000}
        page = requests.post(f"{stac_server.url}/search", json=body, timeout=30).json()
        assert {f["id"] for f in page["features"]} == truth, text


@pytest.mark.parametrize("text", [
    "date_dt >>> 5", "nope = 1", "platform LIKE 5", "S_INTERSECTS(geometry, POINT(0 0))",
    "(" * 5000 + "date_dt = 1" + ")" * 5000, "NOT " * 3000 + "date_dt = 1",
    "date_dt = " + "-" * 20000 + "1", "date_dt = " + "+".join(["1"] * 20000),
])  # fmt: skip
def test_bad_cql2_text_gets_400_and_the_server_lives(stac_server, text):
    r = requests.get(f"{stac_server.url}/search", params={"filter": text[:15000]}, timeout=30)
    assert r.status_code in (400, 414), r.text[:300]
    r = requests.post(f"{stac_server.url}/search",
                      json={"filter": text, "filter-lang": "cql2-text"}, timeout=30)  # fmt: skip
    assert r.status_code == 400, r.text[:300]
    assert requests.get(f"{stac_server.url}/conformance", timeout=10).status_code == 200
