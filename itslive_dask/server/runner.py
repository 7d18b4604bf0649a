"""Run the search server: blocking (:func:`serve`) or in a background thread."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
import warnings
from typing import Any

import geopandas as gpd

from itslive_dask.errors import InvalidInputError, ItsliveDaskError
from itslive_dask.server.app import create_app
from itslive_dask.server.guard import MAX_QUERY_BYTES

__all__ = ["UVICORN_OPTIONS", "LocalSearchServer", "serve"]

logger = logging.getLogger(__name__)

#: uvicorn settings of both runners: request lines up to the guard's cap reach the app (which
#: answers 414 with a message) instead of being cut by h11's 16 KiB default (a reset).
UVICORN_OPTIONS: dict[str, Any] = {
    "h11_max_incomplete_event_size": MAX_QUERY_BYTES + (64 << 10),
    "timeout_keep_alive": 30,
}


def _check_host(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(
            f"the search server will listen on {host}, reachable from other machines",
            stacklevel=3,
        )


def serve(
    catalog: str | os.PathLike | gpd.GeoDataFrame,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    storage_options: dict | None = None,
    log_level: str = "info",
    **app_options: Any,
) -> None:
    """Serve a catalog over HTTP until interrupted (Ctrl-C).

    Parameters
    ----------
    catalog
        Granule table or catalog file path/URL.
    host, port
        Address to bind; the loopback interface by default.
    storage_options
        fsspec options to read a remote catalog file.
    log_level
        uvicorn log level.
    **app_options
        Passed to :func:`~itslive_dask.server.app.create_app`: ``builds=BuildConfig(...)``
        (builds from the map page), ``root_path``, ``tiles_url``...

    Examples
    --------
    >>> serve("granules.parquet", port=8000)  # doctest: +SKIP
    """
    import uvicorn

    _check_host(host)
    app = create_app(catalog, storage_options=storage_options, **app_options)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, **UVICORN_OPTIONS)
    finally:
        if getattr(app.state, "builds", None) is not None:
            app.state.builds.close()


class LocalSearchServer:
    """The search server in a background thread, on a free port of 127.0.0.1.

    Parameters
    ----------
    catalog
        Granule table or catalog file path/URL.
    host
        Interface to bind (loopback by default).
    port
        Port; 0 picks a free one.
    storage_options
        fsspec options to read a remote catalog file.
    log_level
        uvicorn log level.
    **app_options
        Passed to :func:`~itslive_dask.server.app.create_app` (``builds=``, ``root_path=``...).

    Examples
    --------
    >>> with LocalSearchServer("granules.parquet") as srv:            # doctest: +SKIP
    ...     table = search(bbox=(-50, 69, -48, 70), catalog=srv.url)   # STAC API
    ...     table = search(bbox=(-50, 69, -48, 70), catalog=srv.legacy_url)
    """

    def __init__(
        self,
        catalog: str | os.PathLike | gpd.GeoDataFrame,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        storage_options: dict | None = None,
        log_level: str = "warning",
        **app_options: Any,
    ):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidInputError(f"port must be an integer 0..65535, got {port!r}")
        _check_host(host)
        self._app = create_app(catalog, storage_options=storage_options, **app_options)
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port: int | None = None

    @property
    def app(self) -> Any:
        """The served ASGI (FastAPI) application."""
        return self._app

    @property
    def url(self) -> str:
        """Base URL (the STAC API root), e.g. ``http://127.0.0.1:41235``."""
        if self.port is None:
            raise ItsliveDaskError("the search server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def legacy_url(self) -> str:
        """``legacy+<url>``: the ``catalog=`` value that selects the legacy API client."""
        return f"legacy+{self.url}"

    def start(self, timeout: float = 30.0) -> LocalSearchServer:
        """Start serving and wait until the server accepts connections."""
        import uvicorn

        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise ItsliveDaskError(
                f"cannot bind {self.host}:{self._requested_port}: {exc}"
            ) from None
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, log_level=self._log_level, lifespan="off", access_log=False,
            **UVICORN_OPTIONS,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="itslive-search-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ItsliveDaskError("the local search server failed to start")
            time.sleep(0.02)
        logger.info("local search server at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop the server and release its port (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
        builds = getattr(self._app.state, "builds", None)
        if builds is not None:
            builds.close()

    def __enter__(self) -> LocalSearchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.port is not None and self._thread is not None else "stopped"
        return f"LocalSearchServer({state})"
