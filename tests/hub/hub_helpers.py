"""Helpers of the hub tests (importable: tests/ is on the pytest path)."""

from __future__ import annotations

from pathlib import Path


def store_files(store: Path) -> dict[str, bytes]:
    """Every file of a local store (data, coordinates, metadata, build state and ledger),
    without the temporary files a killed writer can leave (``.partial``, ``.tmp-``)."""
    out = {}
    for p in sorted(store.rglob("*")):
        if p.is_file() and not p.name.endswith(".partial") and ".tmp-" not in p.name:
            out[str(p.relative_to(store))] = p.read_bytes()
    return out


def assert_same_store(a: Path, b: Path) -> None:
    fa, fb = store_files(a), store_files(b)
    assert sorted(fa) == sorted(fb), set(fa) ^ set(fb)
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:5]}"
    data = [k for k in fa if k.startswith("v/") and "zarr.json" not in k]
    assert data, "the stores have no data chunks of v"
