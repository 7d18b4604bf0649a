"""A counting, fault-injecting HTTP proxy in front of the local S3 server.

:class:`S3Proxy` listens on 127.0.0.1 (a free port), forwards every request to an S3 endpoint
(usually :class:`itslive_dask.testing.local_s3.LocalS3`) and answers with the upstream
response, so clients (s3fs, botocore, plain HTTP) see a normal, path-style S3 endpoint. On the
way it

* counts requests and bytes per method, per object key, ranged (``Range`` header) or whole:
  :attr:`S3Proxy.stats` is a :class:`ProxyStats` snapshot of every request seen;
* injects seeded faults (:class:`FaultRule`): ``500`` (InternalError), ``503`` (SlowDown, the
  S3 XML body), ``reset`` (TCP reset before any response), ``truncate`` (a ``Content-Length``
  larger than the bytes sent, then the connection closes) and ``stall`` (no answer for longer
  than a client timeout; bounded). A rule can be restricted to a key pattern, to methods, or
  to a direction (``"read"``: GET/HEAD, the inputs; ``"write"``: PUT/POST/DELETE, the outputs).

Fault decisions are deterministic: request number ``n`` of a given (method, path, query,
range) draws from a hash of ``(seed, method, path, query, range, n)``, so a seeded run gives
the same faults whatever the thread interleaving, and a retry (the next ``n``) draws afresh,
like a transient server error. ``rate=1.0`` makes a request fail every time.

Examples
--------
>>> from itslive_dask.testing.local_s3 import LocalS3                      # doctest: +SKIP
>>> with LocalS3() as s3, S3Proxy(s3, faults=FaultRule(0.2, kinds=("503",))) as proxy:
...     fs = proxy.filesystem()
...     fs.cat_file("its-live-data/some/key.nc")
...     proxy.stats.requests(method="GET"), proxy.stats.bytes_out()
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import http.client
import logging
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from itslive_dask.errors import InvalidInputError, ItsliveDaskError

__all__ = ["FAULT_KINDS", "FaultRule", "ProxyStats", "RequestRecord", "S3Proxy"]

logger = logging.getLogger(__name__)

_HOST = "127.0.0.1"

#: The faults a :class:`FaultRule` can inject.
FAULT_KINDS: tuple[str, ...] = ("500", "503", "reset", "truncate", "stall")

_READ_METHODS = frozenset({"GET", "HEAD"})
_WRITE_METHODS = frozenset({"PUT", "POST", "DELETE"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>itslive-dask-s3proxy</RequestId></Error>"
)
_ERRORS = {
    "500": (
        500,
        "Internal Server Error",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class FaultRule:
    """Which requests fail, how often and how.

    Attributes
    ----------
    rate
        Probability in ``[0, 1]`` that a matching request fails (``0`` never, ``1`` always).
    kinds
        Faults to draw from (uniformly), a subset of :data:`FAULT_KINDS`.
    key_pattern
        ``fnmatch`` pattern on ``"<bucket>/<key>"`` (e.g. ``"its-live-data/*.nc"``); ``None``
        matches every request, including bucket-level ones (listings, bucket HEAD).
    methods
        HTTP methods the rule applies to (e.g. ``("GET",)``); ``None`` = all.
    direction
        ``"read"`` (GET, HEAD: inputs), ``"write"`` (PUT, POST, DELETE: outputs) or ``None``.
    stall_seconds
        How long a ``stall`` holds the request before answering (set it above the client's
        read timeout). The proxy's ``max_stall`` bounds it, and stopping the proxy ends it.
    """

    rate: float
    kinds: tuple[str, ...] = FAULT_KINDS
    key_pattern: str | None = None
    methods: tuple[str, ...] | None = None
    direction: str | None = None
    stall_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.rate, (int, float)) or not (0.0 <= float(self.rate) <= 1.0):
            raise InvalidInputError(f"FaultRule rate must be in [0, 1], got {self.rate!r}")
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if not kinds or bad:
            raise InvalidInputError(
                f"FaultRule kinds must be a non-empty subset of {FAULT_KINDS}, got {self.kinds!r}"
            )
        object.__setattr__(self, "kinds", kinds)
        if self.methods is not None:
            methods = (self.methods,) if isinstance(self.methods, str) else self.methods
            object.__setattr__(self, "methods", tuple(m.upper() for m in methods))
        if self.direction not in (None, "read", "write"):
            raise InvalidInputError(
                f"FaultRule direction must be 'read', 'write' or None, got {self.direction!r}"
            )
        if not (self.stall_seconds >= 0):
            raise InvalidInputError(f"stall_seconds must be >= 0, got {self.stall_seconds!r}")

    def matches(self, method: str, key: str) -> bool:
        """True if a request ``method`` on ``key`` (``"bucket/key"``) is subject to this rule."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.direction == "read" and method not in _READ_METHODS:
            return False
        if self.direction == "write" and method not in _WRITE_METHODS:
            return False
        return self.key_pattern is None or fnmatch.fnmatchcase(key, self.key_pattern)


@dataclass(frozen=True)
class RequestRecord:
    """One request seen by the proxy.

    ``key`` is ``"<bucket>/<key>"`` (``"<bucket>"`` for bucket-level requests, ``""`` for the
    service); ``bytes_out`` counts response-body bytes actually sent to the client,
    ``bytes_in`` request-body bytes received; ``fault`` is the injected fault or ``None``.
    """

    method: str
    key: str
    query: str
    ranged: bool
    status: int
    bytes_in: int
    bytes_out: int
    fault: str | None
    seconds: float
    #: The request's ``Range`` header (``"bytes=0-65535"``), ``""`` for a whole object.
    range: str = ""
    #: When the request arrived (``time.perf_counter()`` of the proxy's process).
    started: float = 0.0


@dataclass(frozen=True)
class ProxyStats:
    """An immutable snapshot of the requests a proxy has seen, with counting helpers.

    Every helper takes the same filters: ``method`` (e.g. ``"GET"``), ``key`` (exact
    ``"bucket/key"`` or an ``fnmatch`` pattern), ``ranged`` (``True``/``False``), ``fault``
    (a kind, ``True`` = any fault, ``False`` = none).
    """

    records: tuple[RequestRecord, ...] = field(default_factory=tuple)

    def select(
        self,
        *,
        method: str | None = None,
        key: str | None = None,
        ranged: bool | None = None,
        fault: str | bool | None = None,
    ) -> list[RequestRecord]:
        """The records that pass the filters."""
        out = []
        for r in self.records:
            if method is not None and r.method != method.upper():
                continue
            if key is not None and r.key != key and not fnmatch.fnmatchcase(r.key, key):
                continue
            if ranged is not None and r.ranged != ranged:
                continue
            if fault is True and r.fault is None:
                continue
            if fault is False and r.fault is not None:
                continue
            if isinstance(fault, str) and r.fault != fault:
                continue
            out.append(r)
        return out

    def max_keys_in_flight(self, **filters: Any) -> int:
        """The most objects with a request in flight at one time: 1 for a client that
        reads objects one after the other (whatever it does within one object)."""
        events = []
        for r in self.select(**filters):
            events += [(r.started, 1, r.key), (r.started + r.seconds, 0, r.key)]
        open_: Counter = Counter()
        most = 0
        for _, is_start, key in sorted(events):  # ends before starts at the same instant
            if is_start:
                open_[key] += 1
            else:
                open_[key] -= 1
                if not open_[key]:
                    del open_[key]
            most = max(most, len(open_))
        return most

    def requests(self, **filters: Any) -> int:
        """Number of requests passing ``filters``."""
        return len(self.select(**filters))

    def bytes_out(self, **filters: Any) -> int:
        """Response-body bytes sent for the requests passing ``filters``."""
        return sum(r.bytes_out for r in self.select(**filters))

    def bytes_in(self, **filters: Any) -> int:
        """Request-body bytes received for the requests passing ``filters``."""
        return sum(r.bytes_in for r in self.select(**filters))

    def by_method(self) -> dict[str, tuple[int, int]]:
        """``method -> (requests, bytes_out)``."""
        return _group(self.records, lambda r: r.method)

    def by_key(self) -> dict[str, tuple[int, int]]:
        """``"bucket/key" -> (requests, bytes_out)``."""
        return _group(self.records, lambda r: r.key)

    def faults(self) -> dict[str, int]:
        """``fault kind -> number injected``."""
        return dict(Counter(r.fault for r in self.records if r.fault is not None))

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (totals, per method, ranged vs whole GETs, faults)."""
        return {
            "requests": len(self.records),
            "bytes_out": self.bytes_out(),
            "bytes_in": self.bytes_in(),
            "by_method": {
                m: {"requests": n, "bytes_out": b} for m, (n, b) in self.by_method().items()
            },
            "get_ranged": {
                "requests": self.requests(method="GET", ranged=True),
                "bytes_out": self.bytes_out(method="GET", ranged=True),
            },
            "get_whole": {
                "requests": self.requests(method="GET", ranged=False),
                "bytes_out": self.bytes_out(method="GET", ranged=False),
            },
            "faults": self.faults(),
        }


def _group(records: Iterable[RequestRecord], keyfn: Any) -> dict[str, tuple[int, int]]:
    n: Counter = Counter()
    b: Counter = Counter()
    for r in records:
        k = keyfn(r)
        n[k] += 1
        b[k] += r.bytes_out
    return {k: (n[k], b[k]) for k in n}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: S3Proxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections as with S3
    server: _Server
    timeout = 120  # an idle keep-alive connection is closed after this many seconds

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("s3proxy %s - %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every small response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.proxy._track(self.connection, add=False)

    def _handle(self) -> None:
        self.server.proxy._serve(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = _handle


class S3Proxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of an S3 endpoint; counts and injects faults.

    Parameters
    ----------
    upstream
        A started :class:`~itslive_dask.testing.local_s3.LocalS3` or a dict of s3fs storage
        options with an ``endpoint_url`` (either is reused with this proxy's endpoint by
        :attr:`storage_options`), or an ``http://host:port`` endpoint URL.
    faults
        A :class:`FaultRule`, a sequence of them (the first matching rule decides), or
        ``None`` (no faults). Change later with :meth:`set_faults`.
    seed
        Seed of the fault decisions.
    max_stall
        Upper bound (s) of any ``stall``.
    latency
        Seconds each request waits before it is forwarded: an object store's time to first
        byte (S3 in the same region: ~0.01-0.05 s). Requests in flight together wait
        together, as on S3, so a client that sends its requests one after the other pays
        it for each. ``stop`` ends the waits.
    start
        Start immediately (default ``False``: use :meth:`start` or ``with``).

    Examples
    --------
    >>> with LocalS3() as s3, S3Proxy(s3) as proxy:                 # doctest: +SKIP
    ...     fs = proxy.filesystem()
    ...     fs.cat_file("bucket/key")
    ...     proxy.stats.summary()
    """

    def __init__(
        self,
        upstream: Any,
        *,
        faults: FaultRule | Sequence[FaultRule] | None = None,
        seed: int = 0,
        max_stall: float = 30.0,
        latency: float = 0.0,
        start: bool = False,
    ):
        if not isinstance(latency, (int, float)) or not 0.0 <= float(latency) <= 10.0:
            raise InvalidInputError(f"latency must be in [0, 10] seconds, got {latency!r}")
        self.latency = float(latency)
        if isinstance(upstream, str):
            endpoint, self._base_options = upstream, {}
        elif isinstance(upstream, Mapping) and isinstance(upstream.get("endpoint_url"), str):
            endpoint, self._base_options = upstream["endpoint_url"], dict(upstream)
        elif hasattr(upstream, "endpoint_url") and hasattr(upstream, "storage_options"):
            endpoint, self._base_options = upstream.endpoint_url, dict(upstream.storage_options)
        else:
            raise InvalidInputError(
                "upstream must be a started LocalS3, s3fs storage options with an endpoint_url, "
                f"or an http://host:port URL, got {type(upstream).__name__}"
            )
        parsed = urllib.parse.urlparse(endpoint)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise InvalidInputError(f"upstream endpoint must be http://host:port, got {endpoint!r}")
        self._upstream = (parsed.hostname, int(parsed.port))
        self._seed = int(seed)
        self._max_stall = float(max_stall)
        self._rules: tuple[FaultRule, ...] = ()
        self.set_faults(faults)
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._seen: Counter = Counter()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> S3Proxy:
        """Bind a free port on 127.0.0.1 and serve in a background thread (idempotent)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((_HOST, 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="s3proxy", daemon=True
        )
        self._thread.start()
        logger.info("S3 proxy %s -> http://%s:%d", self.endpoint_url, *self._upstream)
        return self

    def stop(self) -> None:
        """Stop serving, end stalls, close the port and every client connection (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    # ------------------------------------------------------------------ properties
    @property
    def running(self) -> bool:
        """True while serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise ItsliveDaskError("the S3 proxy is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``: give it to clients instead of the upstream endpoint."""
        return f"http://{_HOST}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """The upstream's fsspec/s3fs options with this proxy as endpoint (picklable)."""
        opts = dict(self._base_options)
        opts["endpoint_url"] = self.endpoint_url
        ck = dict(opts.get("client_kwargs") or {})
        if "endpoint_url" in ck:
            ck["endpoint_url"] = self.endpoint_url
        if ck:
            opts["client_kwargs"] = ck
        return opts

    def filesystem(self, **kwargs: Any) -> Any:
        """A fresh :class:`s3fs.S3FileSystem` talking through this proxy (extra kwargs to s3fs)."""
        import s3fs

        return s3fs.S3FileSystem(**{**self.storage_options, "skip_instance_cache": True, **kwargs})

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of every request seen since start (or the last :meth:`reset_stats`)."""
        with self._lock:
            return ProxyStats(tuple(self._records))

    def reset_stats(self) -> ProxyStats:
        """Return the current snapshot and start counting from zero (fault draws continue)."""
        with self._lock:
            snap = ProxyStats(tuple(self._records))
            self._records.clear()
        return snap

    def set_faults(self, faults: FaultRule | Sequence[FaultRule] | None) -> None:
        """Replace the fault rules (``None``: no faults)."""
        if faults is None:
            rules: tuple[FaultRule, ...] = ()
        elif isinstance(faults, FaultRule):
            rules = (faults,)
        else:
            rules = tuple(faults)
            if not all(isinstance(r, FaultRule) for r in rules):
                raise InvalidInputError("faults must be a FaultRule, a sequence of them, or None")
        self._rules = rules

    def __repr__(self) -> str:
        state = f"endpoint_url={self.endpoint_url!r}" if self.running else "stopped"
        return f"S3Proxy({state}, upstream=http://{self._upstream[0]}:{self._upstream[1]})"

    # ------------------------------------------------------------------ internals
    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _decide(
        self, method: str, key: str, path: str, rng_header: str
    ) -> tuple[str | None, FaultRule | None]:
        rule = next((r for r in self._rules if r.matches(method, key)), None)
        if rule is None or rule.rate <= 0:
            return None, None
        sig = f"{method} {path} {rng_header}"
        with self._lock:
            n = self._seen[sig]
            self._seen[sig] = n + 1
        digest = hashlib.blake2b(f"{self._seed}|{sig}|{n}".encode(), digest_size=16).digest()
        u, v = struct.unpack("<QQ", digest)
        if u / 2.0**64 >= rule.rate:
            return None, None
        return rule.kinds[v % len(rule.kinds)], rule

    def _record(self, rec: RequestRecord) -> None:
        # called before the answer goes out, so a client that has its answer sees its record
        with self._lock:
            self._records.append(rec)

    def _unsent(self, rec: RequestRecord) -> None:
        """The client had gone: the body counted by ``rec`` was not delivered."""
        with self._lock:
            for i in range(len(self._records) - 1, -1, -1):
                if self._records[i] is rec:
                    self._records[i] = replace(rec, bytes_out=0)
                    break

    def _serve(self, h: _Handler) -> None:
        t0 = time.perf_counter()
        method = h.command.upper()
        split = urllib.parse.urlsplit(h.path)
        key = urllib.parse.unquote(split.path).lstrip("/")
        rng_header = h.headers.get("Range", "")
        body = _read_body(h)
        internal = key.startswith("moto-api")
        fault, rule = (None, None) if internal else self._decide(method, key, h.path, rng_header)
        if self.latency and not internal:
            self._stopping.wait(self.latency)

        def record(status: int, sent: int) -> RequestRecord | None:
            if internal:
                return None
            rec = RequestRecord(
                method,
                key,
                split.query,
                bool(rng_header),
                status,
                len(body),
                sent,
                fault,
                time.perf_counter() - t0,
                rng_header,
                t0,
            )
            self._record(rec)
            return rec

        if fault == "reset":
            record(0, 0)
            _reset(h)
            return
        if fault in _ERRORS:
            status, reason, code, message = _ERRORS[fault]
            payload = _ERROR_XML.format(code=code, message=message).encode()
            if method == "HEAD":
                payload = b""
            h.send_response(status, reason)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(payload)))
            record(status, len(payload))
            h.end_headers()
            _write(h, payload)
            return
        if fault == "stall":
            assert rule is not None
            self._stopping.wait(min(rule.stall_seconds, self._max_stall))
        try:
            status, reason, headers, payload, upstream_len = self._forward(h, method, body)
        except OSError as exc:
            logger.warning("s3proxy: upstream error for %s %s: %s", method, h.path, exc)
            record(502, 0)
            _reset(h)
            return
        h.send_response(status, reason)
        for name, value in headers:
            h.send_header(name, value)
        if fault == "truncate":
            advertised = len(payload) if payload else 1
            h.send_header("Content-Length", str(advertised))
            sent = min(len(payload) // 2, max(0, len(payload) - 1)) if method != "HEAD" else 0
            record(status, sent)
            h.end_headers()
            _write(h, payload[:sent])
            _reset(h)
            return
        if method == "HEAD":
            h.send_header("Content-Length", upstream_len)
            record(status, 0)
            h.end_headers()
            return
        h.send_header("Content-Length", str(len(payload)))
        rec = record(status, len(payload))
        try:
            h.end_headers()
        except OSError:
            h.close_connection = True
            ok = False
        else:
            ok = _write(h, payload)
        if not ok and rec is not None:
            self._unsent(rec)

    def _forward(self, h: _Handler, method: str, body: bytes) -> tuple[int, str, list, bytes, str]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers.pop("Content-Length", None)
            if body or method in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(method, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read() if method != "HEAD" else b""
            out = [
                (n, v)
                for n, v in resp.getheaders()
                if n.lower() not in _HOP_BY_HOP
                and n.lower() not in ("content-length", "server", "date")
            ]
            upstream_len = resp.getheader("Content-Length", "0")
            return resp.status, resp.reason, out, payload, upstream_len
        finally:
            conn.close()


def _read_body(h: _Handler) -> bytes:
    """The request body (Content-Length or chunked transfer encoding)."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            line = h.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(h.rfile.read(size))
            h.rfile.readline(65537)
        return b"".join(parts)
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n > 0 else b""


def _write(h: _Handler, payload: bytes) -> bool:
    try:
        if payload:
            h.wfile.write(payload)
        h.wfile.flush()
        return True
    except OSError:  # the client gave up (timeout after a stall)
        h.close_connection = True
        return False


def _reset(h: _Handler) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a dropped connection looks."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.wfile.flush()
    with contextlib.suppress(OSError):
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
