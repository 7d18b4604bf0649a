"""Local ITS_LIVE search server: a STAC API, the legacy NSIDC-style API and a map page.

>>> from itslive_dask.server import LocalSearchServer
>>> with LocalSearchServer("granules.parquet") as srv:   # doctest: +SKIP
...     print(srv.url)
"""

from itslive_dask.server.app import create_app
from itslive_dask.server.builds import BuildConfig
from itslive_dask.server.notebook import map_url, show_map
from itslive_dask.server.runner import LocalSearchServer, serve

__all__ = ["BuildConfig", "LocalSearchServer", "create_app", "map_url", "serve", "show_map"]
