"""Hostile input to the search server (issue 10, defect 8): no 500, the right answers.

* Dates outside pandas' range (before 1677-09-21, after 2262-04-11) in STAC ``datetime``, the
  legacy ``start``/``end`` and CQL2 literals: the right set, never a 500 or a silent 0.
* Deeply nested JSON bodies, filters and geometries: 400, never a RecursionError.
* After a 500 (a route that fails on purpose), the keep-alive connection still serves.
* Caps: bodies and query strings above the limits get 413 / 414; the server binds 127.0.0.1.
"""

from __future__ import annotations

import http.client
import inspect
import json
from urllib.parse import urlencode, urlparse

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

ALL = object()  # marker: every granule of the catalog
NONE: set = set()


def _ids(page):
    return {f["id"] for f in page["features"]}


@pytest.mark.parametrize(
    "datetime, expect",
    [
        ("2262-06-01T00:00:00Z", NONE),
        ("9999-12-31T00:00:00Z", NONE),
        ("1000-01-01T00:00:00Z/..", ALL),
        ("../9999-12-31T23:59:59Z", ALL),
        ("0001-01-01T00:00:00Z/9999-12-31T23:59:59Z", ALL),
        ("1600-01-01T00:00:00Z/2262-12-31T00:00:00Z", ALL),
        ("2263-01-01T00:00:00Z/..", NONE),
        ("../1600-01-01T00:00:00Z", NONE),
        ("2262-04-11T23:47:16Z/9999-01-01T00:00:00Z", NONE),
    ],
)
def test_stac_datetime_outside_pandas_range(stac_server, catalog_table, datetime, expect):
    every = set(catalog_table["granule_id"])
    want = every if expect is ALL else expect
    r = requests.get(f"{stac_server.url}/search", params={"datetime": datetime, "limit": 1000},
                     timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text[:300]
    assert _ids(r.json()) == want
    r = requests.post(f"{stac_server.url}/search", json={"datetime": datetime, "limit": 1000},
                      timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text[:300]
    assert _ids(r.json()) == want


def test_datetime_year_2262_is_a_400_not_a_500(stac_server):
    # a bare year is not an RFC 3339 date-time: a clear 400 (it was a 500 on main)
    r = requests.get(f"{stac_server.url}/search", params={"datetime": "2262"}, timeout=30)
    assert r.status_code == 400 and "RFC 3339" in r.json()["description"]


@pytest.mark.parametrize(
    "params, expect",
    [
        ({"end": "9999-12-31"}, ALL),
        ({"end": "2262"}, ALL),
        ({"start": "1000-01-01"}, ALL),
        ({"start": "1000-01-01", "end": "9999-12-31"}, ALL),
        ({"start": "9999-01-01"}, NONE),
        ({"start": "2262-05"}, NONE),
        ({"end": "1200"}, NONE),
        ({"end": "9999-12-31T23:00:00-05:00"}, ALL),
    ],
)
def test_legacy_dates_outside_pandas_range(stac_server, catalog_table, params, expect):
    want = set(catalog_table["url"]) if expect is ALL else expect
    r = requests.get(f"{stac_server.url}/velocities/urls/", params=params, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert {o["url"] for o in r.json()} == want
    r = requests.get(f"{stac_server.url}/velocities/coverage/", params=params, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert sum(c["count"] for c in r.json()) == len(want)


def test_cql2_json_timestamps_outside_pandas_range(stac_server, catalog_table):
    every = set(catalog_table["granule_id"])
    far = {"timestamp": "9999-01-01T00:00:00Z"}
    old = {"timestamp": "1000-01-01T00:00:00Z"}
    cases = [
        ({"op": "in", "args": [{"property": "datetime"}, [far]]}, NONE),
        ({"op": "<", "args": [{"property": "datetime"}, far]}, every),
        ({"op": ">=", "args": [{"property": "end_datetime"}, old]}, every),
        ({"op": "between", "args": [{"property": "datetime"}, old, far]}, every),
        ({"op": "=", "args": [{"property": "datetime"}, {"date": "0001-01-01"}]}, NONE),
    ]
    for flt, want in cases:
        r = requests.post(f"{stac_server.url}/search", json={"filter": flt, "limit": 1000},
                          timeout=30)  # fmt: skip
        assert r.status_code == 200, (flt, r.text[:300])
        assert _ids(r.json()) == want, flt


def _nested(depth: int, leaf: str = "0") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [200, 5_000, 100_000])
def test_deeply_nested_json_gets_400(stac_server, depth):
    url = f"{stac_server.url}/search"
    headers = {"content-type": "application/json"}
    bodies = [
        _nested(depth),
        '{"filter": ' + '{"op": "not", "args": [' * depth + "true" + "]}" * depth + "}",
        '{"intersects": {"type": "Polygon", "coordinates": ' + _nested(depth) + "}}",
        '{"query": ' + '{"a": ' * depth + "1" + "}" * depth + "}",
    ]
    for body in bodies:
        r = requests.post(url, data=body, headers=headers, timeout=60)
        assert r.status_code in (400, 413), (r.status_code, r.text[:200])
        assert r.json()["description"]
    if depth <= 5_000:
        for name, value in [("intersects", _nested(depth)), ("query", _nested(depth)),
                            ("filter", '{"op": "not", "args": [' * depth + "true" + "]}" * depth)]:  # fmt: skip
            r = requests.get(url, params={name: value}, timeout=60)
            assert r.status_code in (400, 414), (name, r.status_code, r.text[:200])


def test_huge_numbers_get_400_not_500(stac_server):
    url = f"{stac_server.url}/search"
    big = "1" + "0" * 400
    for body in [
        '{"query": {"date_dt": {"gt": BIG}}}'.replace("BIG", big),
        '{"filter": {"op": ">", "args": [{"property": "date_dt"}, BIG]}}'.replace("BIG", big),
        '{"bbox": [0, 0, BIG, 1]}'.replace("BIG", big),
    ]:
        r = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 400, (body[:60], r.status_code, r.text[:200])
    r = requests.get(f"{stac_server.url}/velocities/urls/", params={"limit": big}, timeout=30)
    assert r.status_code == 400


def test_keep_alive_connection_survives_a_500(catalog_table):
    """A route that fails answers a JSON 500 and the same connection serves the next request."""
    from itslive_dask.server import LocalSearchServer

    srv = LocalSearchServer(catalog_table)

    def boom():
        raise RuntimeError("a bug")

    srv.app.add_api_route("/boom", boom, methods=["GET"])
    with srv:
        u = urlparse(srv.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            for _ in range(3):
                conn.request("GET", "/boom")
                r = conn.getresponse()
                body = r.read()
                assert r.status == 500
                assert json.loads(body)["code"] == "InternalServerError"
                assert r.getheader("connection", "").lower() != "close"
                sock = conn.sock
                conn.request("GET", "/search?" + urlencode({"limit": 2}))
                r = conn.getresponse()
                assert r.status == 200 and len(json.loads(r.read())["features"]) == 2
                assert conn.sock is sock  # the same socket: the connection was kept
        finally:
            conn.close()


def test_request_size_caps(stac_server):
    from itslive_dask.server.guard import MAX_BODY_BYTES, MAX_QUERY_BYTES

    url = f"{stac_server.url}/search"
    big = json.dumps({"ids": ["x" * 1000] * (MAX_BODY_BYTES // 1000 + 10)})
    r = requests.post(url, data=big, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["description"]

    def chunks():  # no Content-Length: the cap is counted while reading
        for _ in range(MAX_BODY_BYTES // 65536 + 4):
            yield b" " * 65536

    r = requests.post(url, data=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413
    r = requests.get(url, params={"ids": "x" * (MAX_QUERY_BYTES + 10)}, timeout=30)
    assert r.status_code in (413, 414, 431)
    assert requests.get(url, params={"limit": 1}, timeout=30).status_code == 200


def test_binds_loopback_by_default(catalog_table):
    from itslive_dask.server import LocalSearchServer, serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    srv = LocalSearchServer(catalog_table.iloc[:3])
    assert srv.host == "127.0.0.1"
    with srv:
        assert srv.url.startswith("http://127.0.0.1:")
    with pytest.warns(UserWarning, match="reachable from other machines"):
        LocalSearchServer(catalog_table.iloc[:3], host="0.0.0.0")


# --------------------------------------------------------------------------- property tests


_lon = st.floats(-180, 180, allow_nan=False)
_lat = st.floats(-90, 90, allow_nan=False)


@st.composite
def _polygons(draw):
    kind = draw(st.sampled_from(["random", "box", "tiny", "huge", "polar", "antimeridian"]))
    if kind == "random":  # often self-intersecting: must be a 400, never a 500
        ring = draw(st.lists(st.tuples(_lon, _lat), min_size=3, max_size=30))
    elif kind == "box":
        w, s = draw(_lon), draw(st.floats(-89, 88))
        ring = [(w, s), (min(w + 5, 180), s), (min(w + 5, 180), s + 1), (w, s + 1)]
    elif kind == "tiny":
        w, s = draw(st.floats(-179, 179)), draw(st.floats(-89, 89))
        d = draw(st.floats(1e-12, 1e-6))
        ring = [(w, s), (w + d, s), (w + d, s + d), (w, s + d)]
    elif kind == "huge":
        ring = [(-180, -90), (180, -90), (180, 90), (-180, 90)]
    elif kind == "polar":
        lat = draw(st.sampled_from([-1, 1])) * draw(st.floats(60, 89.9))
        n = draw(st.integers(4, 40))
        ring = [(-180 + 360 * k / n, lat) for k in range(n)]
    else:
        lat = draw(st.floats(-85, 84))
        ring = [(179, lat), (-179, lat), (-179, lat + 1), (179, lat + 1)]
    ring = [list(p) for p in ring] + [list(ring[0])]
    return {"type": "Polygon", "coordinates": [ring]}


@settings(max_examples=40, deadline=None)
@given(geom=_polygons(), method=st.sampled_from(["GET", "POST"]))
def test_random_polygons_never_500(stac_server, geom, method):
    url = f"{stac_server.url}/search"
    if method == "GET":
        r = requests.get(url, params={"intersects": json.dumps(geom), "limit": 5}, timeout=60)
    else:
        r = requests.post(url, json={"intersects": geom, "limit": 5}, timeout=60)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    assert r.elapsed.total_seconds() < 20
    if r.status_code == 400:
        assert r.json()["description"]
    legacy = ",".join(f"{x},{y}" for x, y in geom["coordinates"][0])
    r = requests.get(f"{stac_server.url}/velocities/urls/", params={"polygon": legacy}, timeout=60)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
