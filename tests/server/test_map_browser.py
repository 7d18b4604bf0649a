"""The map page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Against the real server on 127.0.0.1 over the session's synthetic archive (local S3), served
at the root and mounted under a path prefix (as behind a hub's proxy): draw a polygon with
the mouse, search, count the footprints (truth computed here from the catalog with pyproj),
build a small cube, see it finish and see its preview. Screenshots of each step go to
tests/server/screenshots/<variant>/ (git-ignored). Install the browser with
ci/install-browser.sh; never `playwright install`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
import shapely.geometry

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
SHOTS = Path(__file__).parent / "screenshots"
PREFIX = "/user/alice/proxy/8000"

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="no /usr/bin/chromium (ci/install-browser.sh)"
    ),
]
sync_api = pytest.importorskip("playwright.sync_api")


class _Served:
    """uvicorn in a thread serving an ASGI app on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        from itslive_dask.server.runner import UVICORN_OPTIONS

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                    **UVICORN_OPTIONS))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)  # fmt: skip
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@pytest.fixture(scope="module", params=["root", "prefix"])
def page_url(request, synthetic_archive, tmp_path_factory):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from itslive_dask.server import BuildConfig, create_app

    root = tmp_path_factory.mktemp(f"browser-builds-{request.param}")
    cfg = BuildConfig(
        output_root=root, n_workers=1, storage_options=synthetic_archive.storage_options
    )
    app = create_app(synthetic_archive.table, builds=cfg)
    if request.param == "prefix":  # mounted under a path prefix, as behind a proxy
        served = _Served(Starlette(routes=[Mount(PREFIX, app=app)]))
        url = f"http://127.0.0.1:{served.port}{PREFIX}/map"
    else:
        served = _Served(app)
        url = f"http://127.0.0.1:{served.port}/map"
    yield request.param, url, root
    served.stop()
    app.state.builds.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _truth(table, region, start):
    """(surely, possibly) matching granule ids: footprints vs region in EPSG:3413, +-300 m."""
    tr = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)

    def polar(g):
        return shapely.transform(shapely.segmentize(g, 0.01),
                                 lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))  # fmt: skip

    reg = polar(region)
    ok = table["mid_date"].to_numpy() >= np.datetime64(start)
    feet = [polar(f) for f in table.geometry]
    inner = {
        g
        for g, f, t in zip(table["granule_id"], feet, ok, strict=True)
        if t and f.buffer(-300).intersects(reg)
    }
    outer = {
        g
        for g, f, t in zip(table["granule_id"], feet, ok, strict=True)
        if t and f.buffer(300).intersects(reg)
    }
    return inner, outer


def test_draw_search_build_preview(browser, page_url, synthetic_archive):
    variant, url, root = page_url
    shots = SHOTS / variant
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    external: list[str] = []
    page.on(
        "request",
        lambda r: (
            external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None
        ),
    )
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    page.screenshot(path=shots / "1-loaded.png")

    # draw a small polygon with the mouse: the polygon tool, four clicks, click the first again
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5
    page.click(".leaflet-draw-draw-polygon")
    pts = [(cx - 40, cy - 30), (cx + 45, cy - 35), (cx + 40, cy + 35), (cx - 35, cy + 30)]
    for x, y in pts:
        page.mouse.click(x, y)
        page.wait_for_timeout(150)
    page.mouse.click(*pts[0])
    page.wait_for_function(
        "document.getElementById('region-text').value.length > 10", timeout=10_000
    )
    region_json = json.loads(page.input_value("#region-text"))
    region = shapely.geometry.shape(region_json)
    assert region.geom_type == "Polygon" and len(region.exterior.coords) == 5 and region.is_valid
    page.fill("#start", "2019-01-01")
    page.screenshot(path=shots / "2-drawn.png")

    page.click("#search")
    page.wait_for_selector("body[data-searched='1']", timeout=30_000)
    count = int(page.inner_text("#result-count"))
    inner, outer = _truth(synthetic_archive.table, region, "2019-01-01")
    assert len(inner) <= count <= len(outer), (count, len(inner), len(outer))
    assert 0 < count < len(synthetic_archive.table)
    assert page.locator("path.footprint").count() == count
    bars = page.eval_on_selector_all("#chart-svg rect.bar", "els => els.map(e => +e.dataset.count)")
    assert sum(bars) == count
    assert "itd.search(" in page.inner_text("#python-call")
    page.click("summary:has-text('Command line')")
    assert "--catalog" in page.inner_text("#cli-command")
    page.screenshot(path=shots / "3-searched.png")

    # bad input gets a message next to the field, and nothing starts
    page.fill("#start", "2022-01-01")
    page.fill("#end", "2019-01-01")
    page.click("#build")
    assert "before" in page.inner_text("#msg-dates")
    page.fill("#end", "2022-12-31")
    page.fill("#start", "2021-01-01")

    page.fill("#build-name", f"cube-{variant}")
    page.select_option("#resolution", "960")
    page.click("#build")
    page.wait_for_selector(
        "body[data-build-state='running'], body[data-build-state='done']", timeout=60_000
    )
    page.locator("#build-status").scroll_into_view_if_needed()
    page.screenshot(path=shots / "4-building.png")
    page.wait_for_selector(
        "body[data-build-state='done'], body[data-build-state='failed']", timeout=240_000
    )
    assert page.get_attribute("body", "data-build-state") == "done", page.inner_text(
        "#build-message"
    )
    page.wait_for_selector("body[data-preview-loaded='1']", timeout=30_000)
    width = page.eval_on_selector("#build-preview", "img => img.naturalWidth")
    assert width > 100
    assert (root / f"cube-{variant}.zarr").is_dir()
    assert "none" in page.inner_text("#builds-table tbody")  # ledger: no failed granule
    page.locator("#build-preview").scroll_into_view_if_needed()
    page.screenshot(path=shots / "5-built.png")
    page.locator("#side").screenshot(path=shots / "5-side-panel.png")
    assert not errors, errors
    assert not external, external
    page.close()


def test_polar_south_and_mercator_views(browser, page_url):
    variant, url, _ = page_url
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    for value, text in [("EPSG:3031", "POLYGON((-100 -75.5, -99 -75.5, -99 -74.7, -100 -74.7, -100 -75.5))"),
                        ("EPSG:3857", '{"type":"Polygon","coordinates":[[[5,45],[6,45],[6,46],[5,46],[5,45]]]}')]:  # fmt: skip
        page.select_option("#projection", "auto")
        page.fill("#region-text", text)
        page.click("#region-paste")
        page.wait_for_timeout(300)
        assert page.inner_text("#msg-region") == ""
        (SHOTS / variant).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SHOTS / variant / f"view-{value.replace(':', '')}.png")
    page.fill("#region-text", "not a region")
    page.click("#region-paste")
    assert page.inner_text("#msg-region")
    page.close()
