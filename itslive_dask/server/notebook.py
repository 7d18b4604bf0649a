"""Show the map page inside Jupyter: an IFrame, through the hub's proxy when there is one.

On a JupyterHub / Pangeo hub the browser cannot reach ``127.0.0.1:<port>`` of the server
machine; jupyter-server-proxy serves it at ``<JUPYTERHUB_SERVICE_PREFIX>proxy/<port>/``. The
page uses relative URLs only, so it works there unchanged.

>>> srv = LocalSearchServer(table).start()   # doctest: +SKIP
>>> show_map(srv)                            # doctest: +SKIP
"""

from __future__ import annotations

import html
import os
from typing import Any
from urllib.parse import urlparse

__all__ = ["map_url", "show_map"]


def map_url(server: Any = None, *, port: int | None = None, prefix: str | None = None) -> str:
    """The URL a notebook's browser should load for the map page of a running server.

    Parameters
    ----------
    server
        A :class:`~itslive_dask.server.LocalSearchServer`, a base URL
        (``http://127.0.0.1:8000``), or None with ``port``.
    port
        The server's port (when ``server`` is None).
    prefix
        The Jupyter server's base path; default: ``JUPYTERHUB_SERVICE_PREFIX`` (set on a hub),
        else ``JUPYTER_SERVER_PROXY_PREFIX``. With a prefix the URL goes through
        jupyter-server-proxy: ``<prefix>proxy/<port>/map``; without one it is the server's own
        address.

    Raises
    ------
    ValueError
        When neither a server nor a port is given.
    """
    base = None
    if server is not None:
        base = server if isinstance(server, str) else server.url
        parsed = urlparse(base)
        port = parsed.port if port is None else port
    if port is None:
        raise ValueError("give a running server, its URL, or its port")
    if prefix is None:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or os.environ.get(
            "JUPYTER_SERVER_PROXY_PREFIX"
        )
    if prefix:
        if not prefix.endswith("/"):
            prefix += "/"
        return f"{prefix}proxy/{int(port)}/map"
    if base is None:
        base = f"http://127.0.0.1:{int(port)}"
    return f"{base.rstrip('/')}/map"


class _Frame:
    """A minimal IFrame (used when IPython is not installed)."""

    def __init__(self, src: str, width: str | int, height: str | int):
        self.src, self.width, self.height = src, width, height

    def _repr_html_(self) -> str:
        return (
            f'<iframe src="{html.escape(self.src)}" width="{html.escape(str(self.width))}" '
            f'height="{html.escape(str(self.height))}" style="border:1px solid #ccc"></iframe>'
        )

    def __repr__(self) -> str:
        return f"map page: {self.src}"


def show_map(
    server: Any = None,
    *,
    port: int | None = None,
    prefix: str | None = None,
    width: str | int = "100%",
    height: str | int = 650,
) -> Any:
    """An IFrame of the map page, for the last line of a notebook cell.

    Parameters are those of :func:`map_url`, plus the frame's ``width`` and ``height``.
    """
    src = map_url(server, port=port, prefix=prefix)
    try:
        from IPython.display import IFrame
    except ImportError:
        return _Frame(src, width, height)
    return IFrame(src, width=width, height=height)
