"""Jupyter: HTML summaries of a plan and of a build's result, and a progress bar fed by the build.

Nothing here needs Jupyter to import; the progress bar uses IPython's display machinery when it
runs in a kernel (an HTML ``<progress>`` element updated in place, no widget library needed,
so it renders in JupyterLab, classic notebooks, VS Code and in saved notebooks) and prints
plain lines elsewhere.

Examples
--------
>>> import itslive_dask as itd
>>> from itslive_dask.notebook import NotebookProgress
>>> plan = itd.make_plan(granules, region)                  # doctest: +SKIP
>>> plan                                                    # doctest: +SKIP  (an HTML table)
>>> result = itd.write_cube(granules, "s3://bucket/cube.zarr", region,
...                         progress=NotebookProgress())    # doctest: +SKIP
>>> result                                                  # doctest: +SKIP  (an HTML table)
"""

from __future__ import annotations

import html
import sys
import time
from collections import Counter
from typing import Any

__all__ = ["NotebookProgress", "plan_html", "result_html"]

#: Rows of failed granules shown in a result's table (the ledger has them all).
MAX_FAILED_ROWS = 10

_STYLE = (
    "<style>.itslive-table td, .itslive-table th {text-align: left; padding: 1px 8px;}"
    ".itslive-table td {max-width: 36em; overflow-wrap: anywhere;}"
    ".itslive-table caption {text-align: left; font-weight: bold;}</style>"
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(
    caption: str, rows: list[tuple[str, Any]], *, raw: frozenset[str] | set[str] = frozenset()
) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v if k in raw else _e(v)}</td></tr>" for k, v in rows)
    return f'{_STYLE}<table class="itslive-table"><caption>{_e(caption)}</caption>{body}</table>'


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _counts(values: Any) -> str:
    return ", ".join(f"{k}: {n}" for k, n in sorted(Counter(map(str, values)).items()))


def plan_html(plan: Any) -> str:
    """An HTML table summarising a :class:`~itslive_dask.cube.plan.CubePlan`: size, grid,
    blocks, dates, sensors and the granules left out."""
    s = plan.summary()
    g = plan.grid
    t, ny, nx = plan.shape
    nbytes = 4 * len(plan.variables) * t * ny * nx
    rows: list[tuple[str, Any]] = [
        ("layers (mid_date)", t),
        ("grid (y × x)", f"{ny} × {nx} pixels of {g.resolution:g} m, EPSG:{g.epsg}"),
        ("bounds", ", ".join(f"{b:.0f}" for b in g.bounds)),
        ("variables", ", ".join(plan.variables)),
        ("size when built", f"{_bytes(nbytes)} as float32, before compression"),
        ("chunks (t, y, x)", " × ".join(map(str, plan.chunks))),
        (
            "blocks",
            f"{s['blocks']} ({s['blocks_with_data']} with data, {s['granule_tile_reads']} granule-tile reads)",
        ),
        ("resampling", plan.resampling),
    ]
    layers = plan.layers
    if len(layers) and "mid_date" in layers:
        dates = layers["mid_date"]
        rows.append(("mid_date", f"{dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d}"))
    if len(layers) and "sensor" in layers:
        rows.append(("sensors", _counts(layers["sensor"])))
    if plan.t_offset:
        rows.append(("first layer", f"{plan.t_offset} (continues an existing cube)"))
    dropped = plan.dropped
    rows.append(
        (
            "granules left out",
            f"{len(dropped)}" + (f" ({_counts(dropped['reason'])})" if len(dropped) else ""),
        )
    )
    return _table("itslive_dask cube plan", rows)


def result_html(result: Any) -> str:
    """An HTML table summarising a :class:`~itslive_dask.store.write.WriteResult`: store,
    layers, blocks, granules read, failed granules (first rows) and skipped ones."""
    t, ny, nx = result.shape
    rows: list[tuple[str, Any]] = [
        ("store", result.store),
        ("mode", result.mode),
        ("cube (mid_date × y × x)", f"{t} × {ny} × {nx}"),
        ("layers added", result.layers_added),
        (
            "blocks",
            f"{result.blocks_written} written, {result.blocks_skipped} already done, {result.blocks_total} total",
        ),
        ("granules read", result.granules_read),
        ("failed granules", len(result.failed)),
        (
            "skipped granules",
            f"{len(result.skipped)}"
            + (
                f" ({_counts(s.get('reason', '?') for s in result.skipped)})"
                if result.skipped
                else ""
            ),
        ),
        ("wall time", f"{result.elapsed:.1f} s"),
    ]
    if result.peak_worker_rss:
        rows.append(("peak worker memory", _bytes(result.peak_worker_rss)))
    out = _table("itslive_dask build", rows)
    if result.failed:
        head = "<tr><th>granule</th><th>block</th><th>attempts</th><th>error</th></tr>"
        body = "".join(
            f'<tr><td>{_e(f.get("granule_id", ""))}</td><td style="white-space: nowrap">{_e(f.get("block", ""))}</td>'
            f"<td>{_e(f.get('attempts', ''))}</td><td>{_e(f.get('error', ''))}</td></tr>"
            for f in result.failed[:MAX_FAILED_ROWS]
        )
        more = len(result.failed) - MAX_FAILED_ROWS
        note = (
            (
                f"<p>{more} more in the ledger (<code>itslive_dask.read_ledger(store)</code>).</p>"
                if more > 0
                else ""
            )
            + "<p>Their layers are flagged in <code>granule_status</code>; <code>mode='resume'</code> retries them.</p>"
        )
        out += f'<table class="itslive-table"><caption>failed granules</caption>{head}{body}</table>{note}'
    return out


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookProgress:
    """A progress bar for ``write_cube(progress=...)`` (and any ``progress(done, total)``).

    In a Jupyter kernel it shows an HTML bar, updated in place (at most every ``interval``
    seconds, and always at the end); elsewhere it prints a line per update at the same pace.

    Parameters
    ----------
    description
        Text before the counts.
    interval
        Seconds between two display updates.

    Attributes
    ----------
    done, total
        The last counts reported.
    updates
        How many times the display was updated.
    """

    def __init__(self, description: str = "cube blocks", *, interval: float = 0.25):
        self.description = description
        self.interval = interval
        self.done = 0
        self.total = 0
        self.updates = 0
        self._start: float | None = None
        self._last = 0.0
        self._handle: Any = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self.done, self.total = int(done), int(total)
        if now - self._last < self.interval and self.done < self.total and self.updates:
            return
        self._last = now
        self.updates += 1
        if _in_kernel():
            from IPython.display import HTML, display

            if self._handle is None:
                self._handle = display(HTML(self._repr_html_()), display_id=True)
            else:
                self._handle.update(HTML(self._repr_html_()))
        else:
            print(self.text(), file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return 0.0 if self._start is None else time.monotonic() - self._start

    def text(self) -> str:
        """``"cube blocks: 12/30 (40%), 5 s, about 8 s left"``."""
        pct = 100.0 * self.done / self.total if self.total else 0.0
        out = f"{self.description}: {self.done}/{self.total} ({pct:.0f}%), {self.elapsed:.0f} s"
        if 0 < self.done < self.total and self.elapsed > 0:
            out += f", about {self.elapsed * (self.total - self.done) / self.done:.0f} s left"
        return out

    def _repr_html_(self) -> str:
        total = max(self.total, 1)
        return (
            f'<div class="itslive-progress"><progress value="{self.done}" max="{total}" '
            f'style="width: 24em; vertical-align: middle"></progress> '
            f"<span>{_e(self.text())}</span></div>"
        )

    def __repr__(self) -> str:
        return f"NotebookProgress({self.text()})"
