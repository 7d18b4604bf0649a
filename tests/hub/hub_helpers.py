"""Helpers of the hub tests (importable: tests/ is on the pytest path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_METADATA = ("zarr.json", ".zattrs", ".zmetadata")


def _without_history(doc: Any) -> Any:
    """A metadata document without its ``history`` attributes (they carry build times)."""
    if isinstance(doc, dict):
        return {k: _without_history(v) for k, v in doc.items() if k != "history"}
    if isinstance(doc, list):
        return [_without_history(v) for v in doc]
    return doc


def store_files(store: Path) -> dict[str, bytes]:
    """Every file of a local store (data, coordinates, metadata, build state and ledger),
    without the temporary files a killed writer can leave (``.partial``, ``.tmp-``); metadata
    documents are compared without their ``history`` (one timestamped line per build)."""
    out = {}
    for p in sorted(store.rglob("*")):
        if p.is_file() and not p.name.endswith(".partial") and ".tmp-" not in p.name:
            data = p.read_bytes()
            if p.name in _METADATA:
                data = json.dumps(_without_history(json.loads(data)), sort_keys=True).encode()
            out[str(p.relative_to(store))] = data
    return out


def assert_same_store(a: Path, b: Path) -> None:
    fa, fb = store_files(a), store_files(b)
    assert sorted(fa) == sorted(fb), set(fa) ^ set(fb)
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:5]}"
    data = [k for k in fa if k.startswith("v/") and "zarr.json" not in k]
    assert data, "the stores have no data chunks of v"
