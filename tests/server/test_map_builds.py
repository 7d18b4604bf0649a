"""The map page's server side: static files, config, build validation, a real build, cancel.

Builds run against the session's synthetic archive on the local S3 server (tests/conftest.py)
with a LocalCluster the server starts; the cube is checked against the catalog (one layer per
matching granule, computed here with pyproj/shapely) and the preview is a real PNG.
"""

from __future__ import annotations

import time

import numpy as np
import pyproj
import pytest
import requests
import shapely
import shapely.geometry

from itslive_dask.server import BuildConfig, LocalSearchServer, map_url, show_map

REGION = shapely.box(17.6, 78.70, 17.9, 78.78)  # ~7 x 9 km inside the Svalbard archive


def _wait(url: str, build_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        b = requests.get(f"{url}/builds/{build_id}", timeout=30).json()
        if b["state"] in ("done", "failed", "cancelled"):
            return b
        assert time.monotonic() < deadline, b
        time.sleep(0.5)


def test_page_and_vendored_assets_without_builds(stac_server):
    page = requests.get(f"{stac_server.url}/map", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="static/map.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for path in ["static/map.js", "static/map.css", "static/vendor/leaflet/leaflet.js",
                 "static/vendor/leaflet/LICENSE", "static/vendor/leaflet-draw/leaflet.draw.js",
                 "static/vendor/leaflet-draw/LICENSE", "static/vendor/proj4/proj4.js",
                 "static/vendor/proj4/LICENSE.md", "static/vendor/proj4leaflet/proj4leaflet.js",
                 "static/vendor/proj4leaflet/LICENSE", "static/vendor/README.md"]:  # fmt: skip
        assert requests.get(f"{stac_server.url}/{path}", timeout=30).status_code == 200, path
    cfg = requests.get(f"{stac_server.url}/map/config", timeout=30).json()
    assert cfg["builds_enabled"] is False and cfg["suggested_crs"] == "EPSG:3413"
    r = requests.post(f"{stac_server.url}/builds", json={"name": "x"}, timeout=30)
    assert r.status_code == 403 and "--enable-builds" in r.json()["description"]
    assert requests.get(f"{stac_server.url}/builds", timeout=30).json() == {
        "enabled": False,
        "builds": [],
    }
    # static files are confined to the package's static folder
    for bad in ["static/../app.py", "static/%2e%2e/app.py", "static/..%2fapp.py"]:
        assert requests.get(f"{stac_server.url}/{bad}", timeout=30).status_code == 404


def test_show_map_urls(monkeypatch, stac_server):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.delenv("JUPYTER_SERVER_PROXY_PREFIX", raising=False)
    assert map_url(stac_server) == f"{stac_server.url}/map"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    assert map_url(stac_server) == f"/user/alice/proxy/{stac_server.port}/map"
    assert map_url(port=8000, prefix="/lab") == "/lab/proxy/8000/map"
    frame = show_map(port=8000, prefix="/user/bob")
    assert "/user/bob/proxy/8000/map" in frame._repr_html_()
    with pytest.raises(ValueError):
        map_url()


@pytest.fixture(scope="module")
def build_server(synthetic_archive, tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    cfg = BuildConfig(output_root=root, n_workers=1, memory_limit="2GiB",
                      storage_options=synthetic_archive.storage_options, max_area_km2=5_000)  # fmt: skip
    with LocalSearchServer(synthetic_archive.table, builds=cfg) as srv:
        yield srv, root


def _body(**kw):
    body = {"name": "pig", "region": shapely.geometry.mapping(REGION), "start": "2019-01-01",
            "end": "2020-12-31", "resolution": 960}  # fmt: skip
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


BAD = [
    ({"region": None}, "region"),
    ({"start": "2021-01-01", "end": "2019-01-01"}, "end"),
    ({"start": "yesterday"}, "start"),
    ({"end": 2020}, "end"),
    ({"region": shapely.geometry.mapping(shapely.box(0, 60, 40, 80))}, "region"),  # too large
    ({"region": {"type": "Point", "coordinates": [17.7, 78.7]}}, "region"),
    (
        {"region": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
        "region",
    ),
    ({"region": shapely.geometry.mapping(shapely.box(-50, 69, -49, 70))}, "region"),  # no granule
    ({"name": "../../etc"}, "name"),
    ({"name": "/tmp/x"}, "name"),
    ({"name": ""}, "name"),
    ({"resolution": 7}, "resolution"),
    ({"sensors": ["landsat", "hubble"]}, "sensors"),
    ({"min_separation": 50, "max_separation": 10}, "max_separation"),
    ({"percent_valid_pixels": 150}, "percent_valid_pixels"),
    ({"store": "/tmp/elsewhere.zarr"}, "store"),
]


@pytest.mark.parametrize("change, field", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_build_requests_name_the_field(build_server, change, field):
    srv, root = build_server
    before = sorted(p.name for p in root.iterdir())
    r = requests.post(f"{srv.url}/builds", json=_body(**change), timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and r.json()["description"]
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written


def _truth(table, region, start, end):
    tr = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)

    def polar(g):
        return shapely.transform(shapely.segmentize(g, 0.01),
                                 lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))  # fmt: skip

    reg = polar(region)
    mid = table["mid_date"]
    in_time = (mid >= start) & (mid <= end)
    inner = {g for g, f, t in zip(table["granule_id"], table.geometry, in_time, strict=True)
             if t and polar(f).buffer(-300).intersects(reg)}  # fmt: skip
    outer = {g for g, f, t in zip(table["granule_id"], table.geometry, in_time, strict=True)
             if t and polar(f).buffer(300).intersects(reg)}  # fmt: skip
    return inner, outer


def test_a_build_runs_to_a_cube_with_its_preview(build_server, synthetic_archive):
    import xarray as xr

    srv, root = build_server
    r = requests.post(f"{srv.url}/builds", json=_body(name="first"), timeout=30)
    assert r.status_code == 202, r.text
    first = r.json()
    # a second build queued behind the first, cancelled before it starts
    second = requests.post(f"{srv.url}/builds", json=_body(name="second"), timeout=30).json()
    cancelled = requests.post(f"{srv.url}/builds/{second['id']}/cancel", timeout=30).json()
    assert cancelled["message"].startswith("cancel")
    # the same name while it is queued/running is refused
    again = requests.post(f"{srv.url}/builds", json=_body(name="first"), timeout=30)
    assert again.status_code == 400 and again.json()["field"] == "name"

    done = _wait(srv.url, first["id"])
    assert done["state"] == "done", done
    assert _wait(srv.url, second["id"])["state"] == "cancelled"
    inner, outer = _truth(synthetic_archive.table, REGION, np.datetime64("2019-01-01"),
                          np.datetime64("2020-12-31T23:59:59.999"))  # fmt: skip
    assert len(inner) <= done["n_granules"] <= len(outer) and len(inner) >= 5
    store = root / "first.zarr"
    assert done["store"] == store.as_uri() and store.is_dir()
    with xr.open_zarr(store) as cube:
        assert len(inner) <= cube.sizes["mid_date"] <= len(outer)
        assert float(cube["v"].count()) > 0
    assert done["ledger"]["failed"] == []
    png = requests.get(f"{srv.url}/{done['preview']}", timeout=30)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    listed = requests.get(f"{srv.url}/builds", timeout=30).json()["builds"]
    assert {b["name"]: b["state"] for b in listed} == {"first": "done", "second": "cancelled"}
    # only the store and its preview were written under the root, nothing elsewhere
    assert sorted(p.name for p in root.iterdir()) == ["first.preview.png", "first.zarr"]
    # an existing store's name is refused
    r = requests.post(f"{srv.url}/builds", json=_body(name="first"), timeout=30)
    assert r.status_code == 400 and r.json()["field"] == "name"
