"""How a cube's values are stored: the int16 encoding of ``velocity_encoding="int16"``.

Pure numpy, imported by the template (driver) and by the block tasks (workers).
"""

from __future__ import annotations

import numpy as np

__all__ = ["INT16_FILL", "INT16_VARIABLES", "encode_int16"]

#: The variables stored as int16 with ``velocity_encoding="int16"`` (the others stay float32).
INT16_VARIABLES = ("vx", "vy", "v", "v_error")

#: No-data value of the int16 encoding (the production cubes' ``_FillValue``).
INT16_FILL = -32767


def encode_int16(values: np.ndarray) -> np.ndarray:
    """Float m/yr -> int16 as stored with ``velocity_encoding="int16"``.

    Rounded to the nearest whole m/yr with halves to even (:func:`numpy.rint`: 2.5 -> 2,
    3.5 -> 4, -0.5 -> -0), clipped to [-32766, 32767] (the fill value -32767 is never a
    value; +-inf clip too); NaN -> -32767. Each variable is rounded on its own: the stored ``v`` is the
    rounded float speed, not ``hypot`` of the rounded components.
    """
    a = np.asarray(values, dtype=np.float64)
    out = np.clip(
        np.rint(np.nan_to_num(a, nan=0.0)), INT16_FILL + 1, np.iinfo(np.int16).max
    ).astype(np.int16)
    out[np.isnan(a)] = INT16_FILL
    return out
