"""Local ITS_LIVE search server: a STAC API, the legacy NSIDC-style API and a map page.

>>> from itslive_dask.server import LocalSearchServer
>>> with LocalSearchServer("granules.parquet") as srv:   # doctest: +SKIP
...     print(srv.url)
"""

from itslive_dask._optional import require

require("fastapi", "the search server (itslive_dask.server)")
require("uvicorn", "the search server (itslive_dask.server)")

from itslive_dask.server.app import create_app  # noqa: E402
from itslive_dask.server.builds import BuildConfig  # noqa: E402
from itslive_dask.server.notebook import map_url, show_map  # noqa: E402
from itslive_dask.server.runner import LocalSearchServer, serve  # noqa: E402

__all__ = ["BuildConfig", "LocalSearchServer", "create_app", "map_url", "serve", "show_map"]
