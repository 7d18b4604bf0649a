"""A real, local S3 endpoint for demos and tests: moto's threaded server on 127.0.0.1.

:class:`LocalS3` starts ``moto.server.ThreadedMotoServer`` (the server the s3fs project tests
against) on a free port of the loopback interface. Clients talk to it over HTTP exactly as
they talk to AWS: through s3fs/fsspec with :attr:`LocalS3.storage_options`, a plain dict that
pickles into dask worker processes. Nothing is mocked in-process.

The credentials are fixed fake values (moto accepts any); they are still kept out of reprs
and logs.

Notes
-----
moto keeps its state (buckets, objects) in module-level backends, so two servers started in
the same Python process serve the same buckets. :meth:`LocalS3.reset` empties them.

Examples
--------
>>> with LocalS3() as s3:                       # doctest: +SKIP
...     s3.create_bucket("its-live-data")
...     fs = s3.filesystem()
...     fs.pipe("its-live-data/hello.txt", b"hi")
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

from itslive_dask._optional import require
from itslive_dask.errors import InvalidInputError, ItsliveDaskError

__all__ = ["LocalS3"]

logger = logging.getLogger(__name__)

#: Fake credentials accepted by moto; never printed.
_FAKE_KEY = "itslive-dask-local-key"
_FAKE_SECRET = "itslive-dask-local-secret"  # not a secret: moto accepts anything
_REGION = "us-east-1"
_HOST = "127.0.0.1"


class LocalS3:
    """A moto S3 server bound to 127.0.0.1 on a free port.

    Parameters
    ----------
    port
        TCP port to bind; ``0`` (default) lets the OS pick a free one.
    start
        Start the server immediately (default ``False``; use :meth:`start` or ``with``).

    Examples
    --------
    >>> s3 = LocalS3().start()                     # doctest: +SKIP
    >>> s3.endpoint_url                            # doctest: +SKIP
    'http://127.0.0.1:41237'
    >>> s3.stop()                                  # doctest: +SKIP
    """

    def __init__(self, port: int = 0, *, start: bool = False):
        if not isinstance(port, int) or not (0 <= port <= 65535):
            raise InvalidInputError(f"LocalS3 port must be an integer in 0..65535, got {port!r}")
        self._requested_port = port
        self._server: Any = None
        self._port: int | None = None
        self._lock = threading.Lock()
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalS3:
        """Start the server (idempotent) and wait until it answers HTTP requests."""
        with self._lock:
            if self._server is not None:
                return self
            require("moto", "the local S3 server (LocalS3)")
            from moto.server import ThreadedMotoServer

            _quiet_request_log()
            server = ThreadedMotoServer(ip_address=_HOST, port=self._requested_port, verbose=False)
            try:
                server.start()
            except OSError as exc:
                raise ItsliveDaskError(
                    f"cannot start the local S3 server on {_HOST}:{self._requested_port}: {exc}"
                ) from exc
            self._server = server
            self._port = int(server.get_host_and_port()[1])
        self._wait_ready()
        logger.info("local S3 server listening at %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        """Stop the server and close its listening socket (idempotent)."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            endpoint = f"http://{_HOST}:{self._port}"
            try:
                server.stop()
            finally:
                # ThreadedMotoServer.stop() ends serve_forever() but leaves the socket bound.
                wsgi = getattr(server, "_server", None)
                if wsgi is not None:
                    wsgi.server_close()
        logger.info("local S3 server at %s stopped", endpoint)

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort: never leave a bound socket behind
        if sys.is_finalizing():
            # the server's daemon thread no longer runs: ``shutdown()`` would wait for it
            # forever (a script that failed after start() hung at exit); the OS closes the socket
            return
        try:
            self.stop()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # ------------------------------------------------------------------ properties
    @property
    def running(self) -> bool:
        """True while the server is started."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        self._require_running()
        assert self._port is not None
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, the S3 endpoint to give clients."""
        return f"http://{_HOST}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for this server (a picklable dict of plain values).

        Pass it as ``storage_options=`` to fsspec, xarray, geopandas, dask or this package;
        it carries the endpoint, the region and fake credentials.
        """
        return {
            "key": _FAKE_KEY,
            "secret": _FAKE_SECRET,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": _REGION},
        }

    def http_base(self, bucket: str) -> str:
        """``http://127.0.0.1:<port>/<bucket>``: plain-HTTP (path-style) URL prefix of a bucket.

        moto serves objects to unsigned GET requests, so this stands in for the public
        ``https://<bucket>.s3.amazonaws.com`` prefix (e.g. as ``https_base`` of
        :func:`itslive_dask.testing.synthetic.generate_archive`).
        """
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise InvalidInputError(
                f"bucket name must be a non-empty string without '/', got {bucket!r}"
            )
        return f"{self.endpoint_url}/{bucket}"

    def __repr__(self) -> str:
        if self.running:
            return f"LocalS3(endpoint_url={self.endpoint_url!r})"
        return "LocalS3(stopped)"

    # ------------------------------------------------------------------ helpers
    def filesystem(self, **kwargs: Any) -> Any:
        """A fresh :class:`s3fs.S3FileSystem` for this server.

        ``skip_instance_cache=True`` so an instance bound to an earlier, stopped server (same
        options, other state) is never reused. Extra keyword arguments go to s3fs.
        """
        import s3fs

        opts = {**self.storage_options, "skip_instance_cache": True, **kwargs}
        return s3fs.S3FileSystem(**opts)

    def create_bucket(self, name: str, *, public: bool = False) -> str:
        """Create bucket ``name`` (no error if it exists); returns ``s3://name``.

        With ``public=True`` a bucket policy lets anyone list the bucket and read its objects
        without signing, like the public ``its-live-data`` bucket (anonymous s3fs access,
        plain HTTP GET of :meth:`http_base` URLs).
        """
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidInputError(
                f"bucket name must be a non-empty string without '/', got {name!r}"
            )
        fs = self.filesystem()
        try:
            if not fs.exists(name):
                # s3fs.mkdir would send LocationConstraint=us-east-1, which S3 rejects.
                fs.call_s3("create_bucket", Bucket=name)
            if public:
                fs.call_s3("put_bucket_policy", Bucket=name, Policy=_public_read_policy(name))
        except OSError as exc:
            raise InvalidInputError(
                f"cannot create bucket {name!r} on {self.endpoint_url}: {exc}"
            ) from None
        fs.invalidate_cache()
        return f"s3://{name}"

    def reset(self) -> None:
        """Delete every bucket and object held by moto (its ``/moto-api/reset`` endpoint)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with _no_proxy_opener().open(req, timeout=10) as resp:
            resp.read()

    def _require_running(self) -> None:
        if self._server is None:
            raise ItsliveDaskError("the local S3 server is not running; call start() first")

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((_HOST, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ItsliveDaskError(
                        f"local S3 server on {_HOST} did not accept connections within {timeout} s"
                    ) from None
                time.sleep(0.05)


def _public_read_policy(bucket: str) -> str:
    """JSON bucket policy: anonymous list and read."""
    import json

    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    # moto authorises HEAD requests as "s3:HeadObject" (AWS: s3:GetObject)
                    "Action": ["s3:GetObject", "s3:HeadObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
    )


def _quiet_request_log() -> None:
    """Keep werkzeug's per-request access log off stderr unless the user configured it."""
    wlog = logging.getLogger("werkzeug")
    if wlog.level == logging.NOTSET:
        wlog.setLevel(logging.WARNING)


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    """An urllib opener that ignores proxy environment variables (loopback only)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))
