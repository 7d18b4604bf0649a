"""Local ITS_LIVE search server: the legacy NSIDC-style API and a STAC API subset.

>>> from itslive_dask.server import LocalSearchServer
>>> with LocalSearchServer("granules.parquet") as srv:   # doctest: +SKIP
...     print(srv.url)
"""

from itslive_dask.server.app import create_app
from itslive_dask.server.runner import LocalSearchServer, serve

__all__ = ["LocalSearchServer", "create_app", "serve"]
