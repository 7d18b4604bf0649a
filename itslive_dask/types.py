"""Small frozen objects passed through the pipeline: cheap to pickle and to tokenize."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GranuleRef"]


@dataclass(frozen=True, slots=True)
class GranuleRef:
    """What a task needs to read one granule.

    Attributes
    ----------
    granule_id
        File name without ``.nc``.
    url
        Local path or fsspec URL.
    epsg
        EPSG code of the granule's grid (from the search table; checked against the file).
    """

    granule_id: str
    url: str
    epsg: int
