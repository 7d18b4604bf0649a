/* The map page of itslive_dask's server: draw a region, search, see footprints, build a cube.
 * Every request goes to a RELATIVE url ("search", "builds", "map/config") so the page works at
 * the server's root and under a proxy's path prefix. No external resource is loaded. */
(function () {
  "use strict";

  var SENSOR_COLORS = { landsat: "#1f77b4", sentinel1: "#ff7f0e", sentinel2: "#2ca02c" };
  var MAX_FEATURES = 10000;
  var config = null;
  var map = null, currentCrs = null;
  var regionGeo = null;        // GeoJSON geometry of the region (lon/lat)
  var regionLayer = null, footLayer = null, gratLayer = null, drawnItems = null;
  var lastFeatures = [];
  var pollTimer = null, currentBuild = null;

  function $(id) { return document.getElementById(id); }
  function setMsg(id, text, ok) {
    var el = $(id);
    if (!el) return;
    el.textContent = text || "";
    el.className = "msg" + (ok ? " ok" : "");
  }
  function clearMsgs() {
    ["msg-region", "msg-dates", "msg-separation", "msg-pct", "msg-sensors", "msg-search",
     "msg-name", "msg-resolution", "msg-build"].forEach(function (id) { setMsg(id, ""); });
  }
  var FIELD_MSG = { region: "msg-region", start: "msg-dates", end: "msg-dates",
    min_separation: "msg-separation", max_separation: "msg-separation",
    percent_valid_pixels: "msg-pct", sensors: "msg-sensors", name: "msg-name",
    resolution: "msg-resolution" };

  function api(path, opts) {
    return fetch(path, opts).then(function (r) {
      return r.text().then(function (t) {
        var body = null;
        try { body = t ? JSON.parse(t) : null; } catch (e) { body = { detail: t }; }
        if (!r.ok) {
          var err = new Error((body && (body.description || body.detail)) || ("HTTP " + r.status));
          err.field = body && body.field; err.status = r.status;
          throw err;
        }
        return body;
      });
    });
  }

  // ------------------------------------------------------------------ projections
  var POLAR = {
    "EPSG:3413": { def: "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs", north: true },
    "EPSG:3031": { def: "+proj=stere +lat_0=-90 +lat_ts=-71 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs", north: false }
  };
  function makeCrs(code) {
    if (code === "EPSG:3857") return L.CRS.EPSG3857;
    var res = [];
    for (var z = 0; z < 18; z++) res.push(16384 / Math.pow(2, z));
    var half = 6000000;
    return new L.Proj.CRS(code, POLAR[code].def, {
      resolutions: res, origin: [-half, half], bounds: L.bounds([-half, -half], [half, half])
    });
  }
  function crsForLat(lat) {
    if (lat >= 55) return "EPSG:3413";
    if (lat <= -55) return "EPSG:3031";
    return "EPSG:3857";
  }

  // ------------------------------------------------------------------ graticule (offline)
  function graticule(code) {
    var lines = [], labels = [], lat, lon, pts;
    var style = { color: "#7f8c99", weight: 0.7, opacity: 0.8, interactive: false };
    if (code === "EPSG:3857") {
      for (lat = -80; lat <= 80; lat += 10) {
        pts = []; for (lon = -180; lon <= 180; lon += 2) pts.push([lat, lon]);
        lines.push(L.polyline(pts, style));
      }
      for (lon = -180; lon <= 180; lon += 10) {
        pts = []; for (lat = -85; lat <= 85; lat += 1) pts.push([lat, lon]);
        lines.push(L.polyline(pts, style));
      }
    } else {
      var north = POLAR[code].north, s = north ? 1 : -1;
      for (var a = 50; a <= 89; a += 1) {   // parallels every degree, labelled every 5
        lat = s * a; pts = [];
        for (lon = -180; lon <= 180; lon += 1) pts.push([lat, lon]);
        lines.push(L.polyline(pts, a % 5 === 0 ? style : Object.assign({}, style, { opacity: 0.35 })));
        for (var k = -180; k < 180; k += 30) {
          if (a % 5 === 0) labels.push(L.marker([lat, k + 0.01], { interactive: false, icon: L.divIcon({
            className: "graticule-label", html: Math.abs(lat) + "°" + (north ? "N" : "S"), iconSize: [34, 12] }) }));
        }
      }
      for (lon = -180; lon < 180; lon += 5) {   // meridians every 5 degrees, labelled every 10
        pts = []; for (var b = 50; b <= 89.5; b += 0.5) pts.push([s * b, lon]);
        lines.push(L.polyline(pts, lon % 15 === 0 ? style : Object.assign({}, style, { opacity: 0.35 })));
        if (lon % 10 === 0) {
          for (var c = 60; c <= 80; c += 10) labels.push(L.marker([s * (c + 0.5), lon], { interactive: false, icon: L.divIcon({
            className: "graticule-label", html: (lon < 0 ? -lon + "°W" : lon + "°E"), iconSize: [34, 12] }) }));
        }
      }
    }
    return L.layerGroup(lines.concat(labels));
  }

  function createMap(code) {
    var center = map ? map.getCenter() : null, zoom = map ? map.getZoom() : null;
    if (map) { map.remove(); map = null; }
    currentCrs = code;
    map = L.map("map", { crs: makeCrs(code), worldCopyJump: false, zoomSnap: 0.5 });
    if (config.tiles_url && code === "EPSG:3857") {
      L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution || "" }).addTo(map);
    }
    gratLayer = graticule(code).addTo(map);
    footLayer = L.layerGroup().addTo(map);
    drawnItems = new L.FeatureGroup().addTo(map);
    map.addControl(new L.Control.Draw({
      position: "topleft",
      draw: { polygon: { allowIntersection: false, showArea: false }, rectangle: {},
              polyline: false, circle: false, marker: false, circlemarker: false },
      edit: { featureGroup: drawnItems, remove: true }
    }));
    map.on(L.Draw.Event.CREATED, function (e) { setRegion(e.layer.toGeoJSON().geometry, false); });
    map.on(L.Draw.Event.EDITED, function () {
      var layers = drawnItems.getLayers();
      if (layers.length) setRegion(layers[0].toGeoJSON().geometry, false);
    });
    map.on(L.Draw.Event.DELETED, function () { regionGeo = null; regionLayer = null; $("region-text").value = ""; });
    L.control.scale({ imperial: false }).addTo(map);
    if (regionGeo) drawRegion();
    if (lastFeatures.length) drawFootprints(lastFeatures);
    var b = config.bbox;
    if (regionLayer) map.fitBounds(regionLayer.getBounds().pad(0.5));
    else if (center && zoom !== null && code === "EPSG:3857") map.setView(center, zoom);
    else map.fitBounds(L.latLngBounds([b[1], b[0]], [b[3], b[2]]).pad(1.0));
    // the catalog's extent, so an empty map still shows where the data are
    L.rectangle(L.latLngBounds([b[1], b[0]], [b[3], b[2]]), { color: "#555", weight: 1, dashArray: "2 4",
      fill: false, interactive: false }).addTo(map);
  }

  function ensureProjection() {
    var sel = $("projection").value, code = sel;
    if (sel === "auto") {
      var lat;
      if (regionGeo) { var bb = geoBounds(regionGeo); lat = (bb[1] + bb[3]) / 2; }
      code = lat === undefined ? config.suggested_crs : crsForLat(lat);
    }
    if (code !== currentCrs) createMap(code);
  }

  // ------------------------------------------------------------------ region
  function ringsOf(geom) {
    if (geom.type === "Polygon") return [geom.coordinates];
    if (geom.type === "MultiPolygon") return geom.coordinates;
    return [];
  }
  function geoBounds(geom) {
    var b = [180, 90, -180, -90];
    ringsOf(geom).forEach(function (poly) { poly.forEach(function (ring) { ring.forEach(function (p) {
      b[0] = Math.min(b[0], p[0]); b[1] = Math.min(b[1], p[1]); b[2] = Math.max(b[2], p[0]); b[3] = Math.max(b[3], p[1]);
    }); }); });
    return b;
  }
  function ringAreaKm2(ring) {   // spherical excess (good enough for a limit check)
    var R = 6371.0088, area = 0, rad = Math.PI / 180;
    for (var i = 0; i < ring.length - 1; i++) {
      var p1 = ring[i], p2 = ring[i + 1];
      area += (p2[0] - p1[0]) * rad * (2 + Math.sin(p1[1] * rad) + Math.sin(p2[1] * rad));
    }
    return Math.abs(area * R * R / 2);
  }
  function areaKm2(geom) {
    var total = 0;
    ringsOf(geom).forEach(function (poly) {
      poly.forEach(function (ring, k) { total += (k === 0 ? 1 : -1) * ringAreaKm2(ring); });
    });
    return total;
  }
  function parseWkt(text) {
    var t = text.trim(), m = /^(MULTI)?POLYGON\s*\(([\s\S]*)\)$/i.exec(t);
    if (!m) return null;
    function ring(s) {
      return s.split(",").map(function (pair) {
        var xy = pair.trim().split(/\s+/).map(Number);
        if (xy.length < 2 || !isFinite(xy[0]) || !isFinite(xy[1])) throw new Error("bad WKT position '" + pair.trim() + "'");
        return [xy[0], xy[1]];
      });
    }
    function polygon(s) {  // "(x y, ...), (x y, ...)"
      var rings = [], re = /\(([^()]*)\)/g, r;
      while ((r = re.exec(s)) !== null) rings.push(ring(r[1]));
      return rings;
    }
    if (!m[1]) return { type: "Polygon", coordinates: polygon(m[2]) };
    var polys = [], depth = 0, start = -1, body = m[2];
    for (var i = 0; i < body.length; i++) {
      if (body[i] === "(") { if (depth === 0) start = i; depth++; }
      else if (body[i] === ")") { depth--; if (depth === 0) polys.push(polygon(body.slice(start + 1, i))); }
    }
    return { type: "MultiPolygon", coordinates: polys };
  }
  function parseRegionText(text) {
    var t = text.trim();
    if (!t) throw new Error("paste a region first");
    if (t[0] === "{") {
      var g = JSON.parse(t);
      if (g.type === "FeatureCollection") g = g.features && g.features[0] && g.features[0].geometry;
      else if (g.type === "Feature") g = g.geometry;
      if (!g || (g.type !== "Polygon" && g.type !== "MultiPolygon")) throw new Error("the GeoJSON must be a Polygon or MultiPolygon");
      return g;
    }
    var w = parseWkt(t);
    if (w) return w;
    var nums = t.split(/[\s,]+/).filter(Boolean).map(Number);
    if (nums.length >= 6 && nums.length % 2 === 0 && nums.every(isFinite)) {
      var ringPts = [];
      for (var i = 0; i < nums.length; i += 2) ringPts.push([nums[i], nums[i + 1]]);
      return { type: "Polygon", coordinates: [ringPts] };
    }
    throw new Error("not GeoJSON, WKT (POLYGON/MULTIPOLYGON) or lon,lat,lon,lat,...");
  }
  function checkRegion(geom) {
    var rings = ringsOf(geom);
    if (!rings.length) throw new Error("the region must be a polygon");
    rings.forEach(function (poly) { poly.forEach(function (ring) {
      if (ring.length < 4) throw new Error("a polygon ring needs at least 3 corners");
      ring.forEach(function (p) {
        if (Math.abs(p[1]) > 90 || Math.abs(p[0]) > 180) throw new Error("coordinates must be lon -180..180, lat -90..90");
      });
      var a = ring[0], z = ring[ring.length - 1];
      if (a[0] !== z[0] || a[1] !== z[1]) ring.push([a[0], a[1]]);
    }); });
    if (config.limits && areaKm2(geom) > config.limits.max_area_km2) {
      throw new Error("the region covers " + Math.round(areaKm2(geom)).toLocaleString() +
        " km², more than this server's limit of " + config.limits.max_area_km2.toLocaleString() + " km²");
    }
  }
  function drawRegion() {
    drawnItems.clearLayers();
    regionLayer = L.geoJSON(regionGeo, { style: { color: "#d81b60", weight: 3, fillOpacity: 0.08, dashArray: "6 4" } });
    regionLayer.eachLayer(function (l) { drawnItems.addLayer(l); });
  }
  function setRegion(geom, fromText) {
    setMsg("msg-region", "");
    try { checkRegion(geom); } catch (e) { setMsg("msg-region", e.message); }
    regionGeo = geom;
    if (!fromText) $("region-text").value = JSON.stringify(geom);
    ensureProjection();
    drawRegion();
    if (fromText) map.fitBounds(regionLayer.getBounds().pad(0.5));
  }

  // ------------------------------------------------------------------ criteria
  function criteria() {
    clearMsgs();
    var ok = true, c = {};
    if (!regionGeo) { setMsg("msg-region", "draw a polygon or a box, or paste a region"); ok = false; }
    else { try { checkRegion(regionGeo); } catch (e) { setMsg("msg-region", e.message); ok = false; } }
    c.start = $("start").value || null; c.end = $("end").value || null;
    if (c.start && c.end && c.start > c.end) { setMsg("msg-dates", "the end date is before the start date"); ok = false; }
    var lo = $("min-sep").value, hi = $("max-sep").value;
    c.min_separation = lo === "" ? null : Number(lo); c.max_separation = hi === "" ? null : Number(hi);
    if ((c.min_separation !== null && (!(c.min_separation >= 0))) || (c.max_separation !== null && !(c.max_separation >= 0))) {
      setMsg("msg-separation", "separations are numbers of days, 0 or more"); ok = false;
    } else if (c.min_separation !== null && c.max_separation !== null && c.min_separation > c.max_separation) {
      setMsg("msg-separation", "the minimum separation is larger than the maximum"); ok = false;
    }
    var pct = $("pct").value;
    c.percent_valid_pixels = pct === "" ? null : Number(pct);
    if (c.percent_valid_pixels !== null && !(c.percent_valid_pixels >= 0 && c.percent_valid_pixels <= 100)) {
      setMsg("msg-pct", "a percentage between 0 and 100"); ok = false;
    }
    c.sensors = Array.prototype.filter.call(document.querySelectorAll("#sensors input"), function (i) { return i.checked; })
      .map(function (i) { return i.value; });
    if (!c.sensors.length) { setMsg("msg-sensors", "pick at least one sensor"); ok = false; }
    c.region = regionGeo;
    return ok ? c : null;
  }

  function searchBody(c) {
    var body = { intersects: c.region, limit: 1000, collections: [config.collection] };
    if (c.start || c.end) {
      body.datetime = (c.start ? c.start + "T00:00:00Z" : "..") + "/" + (c.end ? c.end + "T23:59:59.999Z" : "..");
    }
    var args = [];
    if (c.min_separation !== null) args.push({ op: ">=", args: [{ property: "date_dt" }, c.min_separation] });
    if (c.max_separation !== null) args.push({ op: "<=", args: [{ property: "date_dt" }, c.max_separation] });
    if (c.percent_valid_pixels) args.push({ op: ">=", args: [{ property: "percent_valid_pixels" }, c.percent_valid_pixels] });
    if (c.sensors.length < config.sensors.length) args.push({ op: "in", args: [{ property: "itslive:sensor" }, c.sensors] });
    if (args.length) { body.filter = args.length === 1 ? args[0] : { op: "and", args: args }; body["filter-lang"] = "cql2-json"; }
    return body;
  }

  function runSearch() {
    var c = criteria();
    if (!c) return;
    var body = searchBody(c), features = [];
    setMsg("msg-search", "searching...", true);
    $("search").disabled = true;
    function page(token) {
      var b = Object.assign({}, body);
      if (token) b.token = token;
      return api("search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(b) })
        .then(function (res) {
          features = features.concat(res.features);
          var next = (res.links || []).filter(function (l) { return l.rel === "next"; })[0];
          if (next && next.body && next.body.token && features.length < MAX_FEATURES) return page(next.body.token);
          return res.numberMatched;
        });
    }
    page(null).then(function (matched) {
      setMsg("msg-search", features.length < matched ? ("showing the first " + features.length + " of " + matched) : "", true);
      showResults(c, features, matched);
    }).catch(function (e) {
      if (e.field && FIELD_MSG[e.field]) setMsg(FIELD_MSG[e.field], e.message);
      else setMsg("msg-search", e.message);
    }).then(function () { $("search").disabled = false; });
  }

  // ------------------------------------------------------------------ results
  function drawFootprints(features) {
    footLayer.clearLayers();
    L.geoJSON({ type: "FeatureCollection", features: features }, {
      style: function (f) {
        return { color: SENSOR_COLORS[f.properties["itslive:sensor"]] || "#555", weight: 1, fillOpacity: 0.02 };
      },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(f.id + "<br>" + f.properties.datetime + ", " + Math.round(f.properties.date_dt) + " d, " +
          f.properties.percent_valid_pixels + "% valid", { sticky: true });
      }
    }).eachLayer(function (l) { l.options.className = "footprint"; footLayer.addLayer(l); });
    if (regionLayer) regionLayer.eachLayer(function (l) { if (l.bringToFront) l.bringToFront(); });
  }

  function chart(features) {
    var counts = {}, years = {}, sensors = {};
    features.forEach(function (f) {
      var y = f.properties.datetime.slice(0, 4), s = f.properties["itslive:sensor"] || "other";
      years[y] = 1; sensors[s] = 1;
      counts[y] = counts[y] || {}; counts[y][s] = (counts[y][s] || 0) + 1;
    });
    var ys = Object.keys(years).sort(), ss = Object.keys(sensors).sort();
    if (!ys.length) return "<p class='muted'>nothing to chart</p>";
    var max = Math.max.apply(null, ys.map(function (y) { return ss.reduce(function (a, s) { return a + (counts[y][s] || 0); }, 0); }));
    var W = 350, H = 150, pad = 24, bw = Math.max(6, Math.min(40, (W - pad) / ys.length - 4));
    var svg = "<svg id='chart-svg' width='" + W + "' height='" + (H + 34) + "' role='img' aria-label='granules per year and sensor'>";
    ys.forEach(function (y, i) {
      var x = pad + i * (bw + 4), top = H, total = 0;
      ss.forEach(function (s) {
        var n = counts[y][s] || 0; if (!n) return;
        var h = (H - 12) * n / max; top -= h; total += n;
        svg += "<rect class='bar' data-year='" + y + "' data-sensor='" + s + "' data-count='" + n + "' x='" + x +
          "' y='" + top + "' width='" + bw + "' height='" + h + "' fill='" + (SENSOR_COLORS[s] || "#888") + "'><title>" +
          y + " " + s + ": " + n + "</title></rect>";
      });
      svg += "<text x='" + (x + bw / 2) + "' y='" + (top - 2) + "' text-anchor='middle'>" + total + "</text>";
      svg += "<text x='" + (x + bw / 2) + "' y='" + (H + 12) + "' text-anchor='middle'>" + (ys.length > 8 ? y.slice(2) : y) + "</text>";
    });
    var lx = pad;
    ss.forEach(function (s) {
      svg += "<rect x='" + lx + "' y='" + (H + 20) + "' width='10' height='10' fill='" + (SENSOR_COLORS[s] || "#888") + "'></rect>" +
        "<text x='" + (lx + 13) + "' y='" + (H + 29) + "'>" + s + "</text>";
      lx += 90;
    });
    return svg + "</svg>";
  }

  function fmt(v) { return JSON.stringify(v); }
  function serverUrl() { return new URL(".", window.location.href).href.replace(/\/$/, ""); }

  function snippets(c) {
    var args = [fmt(c.region)];
    if (c.start) args.push("start=" + fmt(c.start));
    if (c.end) args.push("end=" + fmt(c.end));
    if (c.min_separation !== null) args.push("min_separation=" + c.min_separation);
    if (c.max_separation !== null) args.push("max_separation=" + c.max_separation);
    if (c.percent_valid_pixels) args.push("percent_valid_pixels=" + c.percent_valid_pixels);
    if (c.sensors.length < config.sensors.length) args.push("sensors=" + fmt(c.sensors));
    args.push("catalog=" + fmt(serverUrl()));
    $("python-call").textContent = "import itslive_dask as itd\n\ngranules = itd.search(\n    " + args.join(",\n    ") + ",\n)\n" +
      "cube = itd.open_cube(granules, " + fmt(c.region) + ")\n";
    var ring = ringsOf(c.region)[0][0];
    var cli = ["itslive-dask search", "--polygon " + fmt(ring.map(function (p) { return p[0] + "," + p[1]; }).join(","))];
    if (c.start) cli.push("--start " + c.start);
    if (c.end) cli.push("--end " + c.end);
    if (c.min_separation !== null) cli.push("--min-separation " + c.min_separation);
    if (c.max_separation !== null) cli.push("--max-separation " + c.max_separation);
    if (c.percent_valid_pixels) cli.push("--percent-valid-pixels " + c.percent_valid_pixels);
    if (c.sensors.length < config.sensors.length) c.sensors.forEach(function (s) { cli.push("--sensor " + s); });
    cli.push("--catalog " + serverUrl(), "-o granules.parquet");
    $("cli-command").textContent = cli.join(" \\\n    ") + (ringsOf(c.region).length > 1 ? "\n# (the first polygon of the MultiPolygon)" : "");
  }

  function showResults(c, features, matched) {
    lastFeatures = features;
    drawFootprints(features);
    $("results").hidden = false;
    $("result-count").textContent = String(matched);
    $("result-count").dataset.count = String(features.length);
    $("chart").innerHTML = chart(features);
    snippets(c);
    document.body.dataset.searched = "1";
  }

  // ------------------------------------------------------------------ builds
  function buildRequest() {
    var c = criteria();
    if (!c) return null;
    var name = $("build-name").value.trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(name)) { setMsg("msg-name", "letters, digits, '-' or '_' (up to 64)"); return null; }
    return { name: name, region: c.region, start: c.start, end: c.end, min_separation: c.min_separation,
      max_separation: c.max_separation, percent_valid_pixels: c.percent_valid_pixels,
      sensors: c.sensors, resolution: Number($("resolution").value) };
  }

  function startBuild() {
    var req = buildRequest();
    if (!req) return;
    $("build").disabled = true;
    api("builds", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(req) })
      .then(function (b) { setMsg("msg-build", "build " + b.name + " queued", true); watch(b.id); refreshBuilds(); })
      .catch(function (e) {
        if (e.field && FIELD_MSG[e.field]) setMsg(FIELD_MSG[e.field], e.message); else setMsg("msg-build", e.message);
      })
      .then(function () { $("build").disabled = false; });
  }

  function showBuild(b) {
    $("build-status").hidden = false;
    $("build-title").textContent = b.name;
    var st = $("build-state"); st.textContent = b.state; st.className = "state " + b.state;
    document.body.dataset.buildState = b.state;
    var p = $("build-progress");
    p.max = Math.max(1, b.progress.total); p.value = b.progress.done;
    $("build-message").textContent = b.message + (b.error ? " — " + b.error : "") +
      (b.progress.total ? " (" + b.progress.done + "/" + b.progress.total + " blocks)" : "");
    $("build-cancel").hidden = !(b.state === "queued" || b.state === "running");
    var d = $("dashboard-link");
    if (b.dashboard) { d.href = b.dashboard; d.hidden = false; } else d.hidden = true;
    $("build-store").textContent = b.state === "done" ? "store: " + b.store : "";
    var img = $("build-preview");
    if (b.preview && img.dataset.src !== b.preview) {
      img.onload = function () { document.body.dataset.previewLoaded = "1"; };
      img.src = b.preview + "?t=" + Date.now(); img.dataset.src = b.preview; img.hidden = false;
    } else if (!b.preview) { img.hidden = true; }
  }

  function watch(id) {
    currentBuild = id;
    if (pollTimer) clearInterval(pollTimer);
    function tick() {
      api("builds/" + encodeURIComponent(id)).then(function (b) {
        showBuild(b);
        if (b.state === "done" || b.state === "failed" || b.state === "cancelled") {
          clearInterval(pollTimer); pollTimer = null; refreshBuilds();
        }
      }).catch(function (e) { setMsg("msg-build", e.message); });
    }
    tick();
    pollTimer = setInterval(tick, 1000);
  }

  function refreshBuilds() {
    api("builds").then(function (res) {
      var tb = document.querySelector("#builds-table tbody");
      tb.innerHTML = "";
      res.builds.forEach(function (b) {
        var tr = document.createElement("tr");
        var failed = (b.ledger && b.ledger.failed) || [];
        tr.innerHTML = "<td></td><td><span class='state " + b.state + "'></span></td><td></td><td></td>";
        var a = document.createElement("a"); a.href = "#"; a.textContent = b.name;
        a.onclick = function (ev) { ev.preventDefault(); watch(b.id); };
        tr.children[0].appendChild(a);
        tr.children[1].firstChild.textContent = b.state;
        tr.children[2].textContent = b.progress.done + "/" + b.progress.total;
        tr.children[3].textContent = failed.length ? failed.map(function (f) { return f.granule_id + ": " + f.error; }).join("; ") : "none";
        tb.appendChild(tr);
      });
    }).catch(function () {});
  }

  // ------------------------------------------------------------------ start
  function init(cfg) {
    config = cfg;
    $("catalog-info").textContent = "(" + cfg.n_granules + " in " + cfg.collection + ")";
    var box = $("sensors");
    cfg.sensors.forEach(function (s) {
      var l = document.createElement("label"), i = document.createElement("input");
      i.type = "checkbox"; i.value = s; i.checked = true; i.id = "sensor-" + s;
      l.appendChild(i); l.appendChild(document.createTextNode(" " + s + " ")); box.appendChild(l);
    });
    if (cfg.interval && cfg.interval[0]) { $("start").value = cfg.interval[0].slice(0, 10); $("end").value = cfg.interval[1].slice(0, 10); }
    if (cfg.builds_enabled) {
      $("build-section").hidden = false;
      cfg.limits.resolutions.forEach(function (r) {
        var o = document.createElement("option"); o.value = r; o.textContent = r + " m"; $("resolution").appendChild(o);
      });
      $("build-limits").textContent = "Limits: " + cfg.limits.max_area_km2.toLocaleString() + " km², " +
        cfg.limits.max_granules.toLocaleString() + " granules per build. Stores are written under the server's output root.";
      refreshBuilds();
    }
    createMap(cfg.suggested_crs);
    $("projection").onchange = function () { ensureProjection(); };
    $("region-paste").onclick = function () {
      try { setRegion(parseRegionText($("region-text").value), true); } catch (e) { setMsg("msg-region", e.message); }
    };
    $("region-clear").onclick = function () {
      regionGeo = null; $("region-text").value = ""; drawnItems.clearLayers(); regionLayer = null;
    };
    $("search").onclick = runSearch;
    $("build").onclick = startBuild;
    $("build-cancel").onclick = function () {
      if (currentBuild) api("builds/" + encodeURIComponent(currentBuild) + "/cancel", { method: "POST" }).then(showBuild);
    };
    document.body.dataset.ready = "1";
  }

  api("map/config").then(init).catch(function (e) { setMsg("msg-search", "cannot load the configuration: " + e.message); });
})();
