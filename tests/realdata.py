"""Where the real ITS_LIVE granules of ``shared/data/real`` are, for every test that reads them.

``shared/`` lies beside the checkout (CI copies it there); the workplace path is the fallback.
Tests import the names below (``tests/`` is on pytest's ``pythonpath``) and skip with
:data:`needs_real` when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = next(
    (
        p / "shared" / "data" / "real"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "data" / "real").is_dir()
    ),
    Path("/work/shared/data/real"),
)
#: The V1 granule (240 m, Antarctic, EPSG:3031).
V1 = REAL / (
    "LE07_L1GT_001113_20121118_20161127_01_T2_X_"
    "LE07_L1GT_232113_20121104_20161127_01_T2_G0240V01_P059.nc"
)
#: The V2 granule (120 m, all fill, far from Pine Island).
V2 = REAL / (
    "LT05_L1GS_219121_19841206_20200918_02_T2_X_"
    "LT05_L1GS_226120_19850124_20200918_02_T2_G0120V02_P000.nc"
)
#: Skip marker for tests that need the real granules.
needs_real = pytest.mark.skipif(not V1.exists(), reason="shared/data/real not present")
