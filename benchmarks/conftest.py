"""Fixtures of the benchmark suite (run explicitly: ``pytest benchmarks -m slow -s``).

The benchmark modules import each other by name (``bench_common``...), as they do when
``benchmarks/run.py`` runs them, so this folder goes on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def bench_out() -> Path:
    """Where results go: ``$ITSLIVE_BENCH_OUT`` or a fresh temp folder (printed)."""
    from bench_common import out_dir

    out = out_dir()
    print(f"\nbenchmark results -> {out}")
    return out


@pytest.fixture(scope="session")
def bench_work(tmp_path_factory) -> Path:
    """Where synthetic archives go: ``$ITSLIVE_BENCH_WORK`` (reused) or a session temp dir."""
    chosen = os.environ.get("ITSLIVE_BENCH_WORK")
    if chosen:
        p = Path(chosen)
        p.mkdir(parents=True, exist_ok=True)
        return p
    return tmp_path_factory.mktemp("bench-work")
