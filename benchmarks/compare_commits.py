"""Plan + graph time of two checkouts of the package, alternated so the load falls on both.

Each run is a fresh interpreter with ``PYTHONPATH=<checkout>`` that calls this folder's
:func:`bench_graph.run_graph` (which also imports the flat package of before the
restructure). Runs go ``A B A B ...``; the best of the rounds is the figure to compare, the
spread of one checkout is the noise. Nothing is asserted.

Run::

    git worktree add /tmp/old-6310d19 6310d19
    .venv/bin/python benchmarks/compare_commits.py /tmp/old-6310d19 $PWD --sizes 100000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import json, sys
import itslive_dask
from bench_graph import run_graph
rows = run_graph(sizes=tuple(int(s) for s in sys.argv[1].split(",")))["rows"]
keep = ("granules", "chunking", "layers", "blocks", "tasks", "plan_s", "graph_s", "materialize_s", "total_s",
        "rss_before_mb", "peak_rss_mb", "plan_cpu_s", "graph_cpu_s")
print(json.dumps([{"package": itslive_dask.__file__, **{k: r[k] for k in keep}} for r in rows]))
"""


def run_once(checkout: str, sizes: str) -> list[dict]:
    """One run of the graph benchmark against ``checkout``'s package.

    The child runs in ``checkout`` with ``-P``: ``python -c`` otherwise puts its working
    directory first on ``sys.path``, and run from a repository root it imported that
    root's package for both checkouts. The package it imported is checked.
    """
    root = Path(checkout).resolve()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(HERE)]))
    out = subprocess.run(
        [sys.executable, "-P", "-W", "ignore", "-c", _CHILD, sizes],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    for r in rows:
        if not Path(r["package"]).resolve().is_relative_to(root):
            raise RuntimeError(
                f"{checkout}: the child imported {r['package']}, not this checkout's package"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="first checkout (folder holding itslive_dask/)")
    ap.add_argument("b", help="second checkout")
    ap.add_argument("--sizes", default="100000", help="granule counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    best: dict[tuple, dict] = {}
    for rnd in range(args.rounds):
        for label, checkout in (("a", args.a), ("b", args.b)):
            load = os.getloadavg()[0]
            for r in run_once(checkout, args.sizes):
                key = (label, r["granules"], r["chunking"])
                print(
                    f"round {rnd + 1} {label} load {load:.1f} {r['granules']} {r['chunking']}: plan {r['plan_s']:.2f} s, "
                    f"graph {r['graph_s']:.2f} s, total {r['total_s']:.2f} s (CPU: plan {r['plan_cpu_s']:.2f} s, "
                    f"graph {r['graph_cpu_s']:.2f} s), tasks {r['tasks']}, "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB (+{r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB)",
                    flush=True,
                )
                if key not in best or r["total_s"] < best[key]["total_s"]:
                    best[key] = r
    print(
        "\nbest of the rounds (total s): "
        + json.dumps({" ".join(map(str, k)): round(v["total_s"], 2) for k, v in best.items()})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
