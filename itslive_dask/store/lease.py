"""One build at a time per store: a lease in the store's build-state folder.

A build (``write_cube`` in every mode, ``rechunk_cube``) takes the lease
``<store>/_itslive/lease.json`` before it writes anything, renews it from a heartbeat thread
of the client while it runs, and releases it at the end (also on an error or Ctrl-C). A
second build on the same store finds a live lease and refuses with a :class:`StoreError`
that says who holds it (host, process id, operation, when it started, its last heartbeat)
and what to do. A lease whose heartbeat is older than its expiry belongs to a build that was
killed: it is taken over, with a warning, so ``mode="resume"`` after a kill works.

The lease holds no credentials: only host name, process id, the operation, times and a
random token that tells the holder its own lease from another's.

How safe the take-over is depends on the storage:

* **local files**: the lease is written whole to a private file and published with a hard
  link, which fails when a lease exists (exactly one of two builds gets it, and no build
  ever reads a lease that is created but not yet written). A stale lease is replaced by a
  build that first creates ``lease.json.takeover`` with ``O_EXCL`` (one take-over at a
  time), re-reads the lease, checks it is still the stale one and renames its own over it.
  Remaining window: a build killed while it held ``lease.json.takeover`` leaves it behind;
  it is ignored after :data:`TAKEOVER_GRACE` seconds, and two builds that both judge that
  left-over stale at the same moment can both go on (this needs a kill during a take-over
  plus two new builds within the same milliseconds). Heartbeats and the release re-read
  the lease and check the token first (a read-then-rename: microseconds wide).
* **S3** (s3fs): conditional writes. The lease is created with ``If-None-Match: *`` (the
  server refuses the second), taken over and renewed with ``If-Match: <ETag>`` of the lease
  that was judged (a compare-and-swap: the server refuses it if anything changed). The
  lease is read back after each write, so a server that ignores these headers is noticed as
  well as it can be (see the next point). AWS S3 and moto implement both headers.
* **other file systems** (and S3 servers without conditional writes): write, wait
  :data:`SETTLE` seconds, read back and compare the token. Two builds that start within
  that window can both believe they hold it: a window of about a second, stated here
  rather than hidden.

A heartbeat that finds someone else's token (its lease was taken over because the client
was frozen past the expiry) marks the lease lost; the build then stops with a StoreError at
its next bookkeeping step instead of writing the build state over the other build's.

Clocks: staleness compares the reader's clock with the holder's heartbeat time, so the
hosts' clocks must agree to well within the expiry (5 minutes by default).

The pure rules (:func:`lease_status`, :func:`decide`, :func:`describe_lease`) take the lease
and the time as arguments and are unit-tested without any IO.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from itslive_dask.errors import StoreError
from itslive_dask.io.files import put_atomic
from itslive_dask.io.urls import is_remote, redact_text
from itslive_dask.store.target import StoreTarget, display

__all__ = [
    "DEFAULT_EXPIRY",
    "LEASE",
    "LeaseHandle",
    "decide",
    "describe_lease",
    "hold_lease",
    "lease_expiry",
    "lease_status",
    "read_lease",
]

log = logging.getLogger(__name__)

#: Name of the lease inside the store's build-state folder (``_itslive``).
LEASE = "lease.json"
#: Build-state folder of a store (as :data:`itslive_dask.store.state.STATE`).
STATE_DIR = "_itslive"
#: Seconds without a heartbeat after which a lease is stale (taken over by the next build).
DEFAULT_EXPIRY = 300.0
#: Environment variable overriding :data:`DEFAULT_EXPIRY` (seconds).
EXPIRY_ENV = "ITSLIVE_DASK_LEASE_EXPIRY"
#: Heartbeats per expiry period (a lease survives a few missed heartbeats).
BEATS_PER_EXPIRY = 10
#: Seconds a ``lease.json.takeover`` guard of a local store may be held before it counts as
#: left over by a killed process.
TAKEOVER_GRACE = 30.0
#: Seconds between writing and reading back a lease where no conditional write exists.
SETTLE = 1.0
LEASE_VERSION = 1

Status = Literal["free", "live", "stale"]
Decision = Literal["take", "takeover", "mine", "refuse"]


# ---------------------------------------------------------------------------- pure rules
def lease_expiry() -> float:
    """The lease expiry in seconds: :data:`EXPIRY_ENV` if set (a positive number), else
    :data:`DEFAULT_EXPIRY`."""
    raw = os.environ.get(EXPIRY_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_EXPIRY
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StoreError(f"{EXPIRY_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def new_lease(
    operation: str, *, now: float, expiry: float, token: str | None = None
) -> dict[str, Any]:
    """The content of a fresh lease for this process (no credentials in it)."""
    return {
        "lease_version": LEASE_VERSION,
        "token": token or secrets.token_hex(16),
        **process_identity(),
        "operation": operation,
        "started": now,
        "heartbeat": now,
        "expiry": float(expiry),
    }


def lease_status(lease: Mapping[str, Any] | None, now: float, alive: bool | None = None) -> Status:
    """``"free"`` (no lease), ``"live"`` or ``"stale"`` (no heartbeat for longer than its expiry).

    ``alive`` is what :func:`holder_alive` found out about the holding process: False
    (it runs on this machine and is gone: killed) makes the lease stale at once, True or None
    (another machine: unknown) leave the heartbeat to decide. A lease without a readable
    heartbeat or expiry (a damaged file) is stale; a heartbeat in the future (clocks that
    disagree) is live.
    """
    if lease is None:
        return "free"
    if alive is False:
        return "stale"
    try:
        heartbeat = float(lease["heartbeat"])
        expiry = float(lease["expiry"])
    except (KeyError, TypeError, ValueError):
        return "stale"
    return "stale" if now - heartbeat > expiry else "live"


def decide(
    lease: Mapping[str, Any] | None, now: float, token: str, alive: bool | None = None
) -> Decision:
    """What a build holding ``token`` may do with the store's current ``lease``.

    ``"take"`` (none there), ``"mine"`` (it is this build's own, e.g. a retried write that
    did succeed), ``"takeover"`` (stale, or its process is known to be gone) or ``"refuse"``
    (live, someone else's).
    """
    if lease is not None and lease.get("token") == token:
        return "mine"
    status = lease_status(lease, now, alive)
    if status == "free":
        return "take"
    return "takeover" if status == "stale" else "refuse"


def same_machine(lease: Mapping[str, Any], me: Mapping[str, Any]) -> bool:
    """True when ``lease`` was written by a process of this machine and process namespace
    (same host name, boot and pid namespace), whose pid can therefore be checked here."""
    keys = ("host", "boot_id", "pid_ns")
    return all(lease.get(k) is not None and lease.get(k) == me.get(k) for k in keys)


def holder_gone(
    lease: Mapping[str, Any], me: Mapping[str, Any], proc_start: int | None
) -> bool | None:
    """Whether the holder of ``lease`` is known to be dead: None when it cannot be known
    (another machine or namespace); False when its pid runs with the recorded start time;
    True when that pid does not run (``proc_start`` None) or runs a later process (reused).

    ``proc_start`` is the start time (clock ticks after boot) of the process that has the
    lease's pid on this machine, or None when there is none.
    """
    if not same_machine(lease, me):
        return None
    if proc_start is None:
        return True
    recorded = lease.get("proc_start")
    return recorded is not None and int(recorded) != int(proc_start)


def _when(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "unknown"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future (clocks disagree)"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def describe_lease(lease: Mapping[str, Any], now: float) -> str:
    """Who holds ``lease``, in one line: host, pid, operation, start, last heartbeat."""
    try:
        age = now - float(lease.get("heartbeat", "nan"))
        beat = f"{_when(lease.get('heartbeat'))} ({_ago(age)})" if age == age else "unknown"
    except (TypeError, ValueError):
        beat = "unknown"
    return (
        f"host {lease.get('host', '?')}, pid {lease.get('pid', '?')} "
        f"({lease.get('operation', 'a build')}), started {_when(lease.get('started'))}, "
        f"last heartbeat {beat}, expires after {float(lease.get('expiry', 0) or 0):g} s without one"
    )


def refusal(where: str, lease: Mapping[str, Any], now: float) -> str:
    """The message of the StoreError a second build gets."""
    return (
        f"another build is writing {where}: its lease is held by {describe_lease(lease, now)}. "
        "Wait for it to finish (or stop it), then run again; a build that was killed "
        "releases nothing, and its lease is taken over automatically once its heartbeat is "
        f"older than {float(lease.get('expiry', 0) or 0):g} s (then use mode='resume')"
    )


# ---------------------------------------------------------------------------- processes
def _proc_start(pid: int) -> int | None:
    """Start time of process ``pid`` (clock ticks after boot, Linux), or None if it does not run."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    try:  # the command name (field 2) may hold spaces: split after its closing parenthesis
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def process_identity() -> dict[str, Any]:
    """Who this process is, for a lease: host name, pid, and (on Linux) the boot id, the pid
    namespace and the process start time that let a build on the same machine see that the
    holder is gone. No user names, no credentials."""
    try:
        pid_ns: str | None = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = None
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": _read_text("/proc/sys/kernel/random/boot_id"),
        "pid_ns": pid_ns,
        "proc_start": _proc_start(os.getpid()),
    }


def holder_alive(lease: Mapping[str, Any] | None) -> bool | None:
    """False when the lease's holder ran on this machine and is gone (killed), True when it
    still runs here, None when that cannot be known (another machine)."""
    if lease is None:
        return None
    try:
        pid = int(lease["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    gone = holder_gone(lease, process_identity(), _proc_start(pid))
    return None if gone is None else not gone


# ---------------------------------------------------------------------------- storage
class _Lost(Exception):
    """The lease changed under us (a conditional write was refused)."""


def _lease_url(target: StoreTarget, name: str = LEASE) -> str:
    return target.join(STATE_DIR, name)


def _protocol(target: StoreTarget) -> str:
    return "file" if not is_remote(target.url) else target.url.split("://", 1)[0]


def _parse(raw: bytes, fallback_time: float | None) -> dict[str, Any]:
    try:
        lease = json.loads(raw)
        if isinstance(lease, dict):
            return lease
    except ValueError:
        pass
    # a damaged lease (e.g. a write that ran out of space): its file time is its heartbeat
    return {"damaged": True, "heartbeat": fallback_time, "expiry": DEFAULT_EXPIRY}


def read_lease(target: StoreTarget) -> dict[str, Any] | None:
    """The store's lease as written, or None when there is none."""
    lease, _ = _read(target)
    return lease


def _read(target: StoreTarget) -> tuple[dict[str, Any] | None, str | None]:
    """(lease, version tag): the ETag on S3, None elsewhere."""
    if _protocol(target) == "file":
        path = target.path(STATE_DIR, LEASE)
        try:
            with open(path, "rb") as f:
                raw = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        return _parse(raw, mtime), None
    fs = target.fs()
    path = target.path(STATE_DIR, LEASE)
    etag = None
    if _is_s3(fs):
        try:
            etag = fs.info(path, refresh=True).get("ETag")
        except FileNotFoundError:
            return None, None
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None, None
    return _parse(raw, None), etag


def _is_s3(fs: Any) -> bool:
    return type(fs).__name__ == "S3FileSystem"


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return "Precondition" in text or "412" in text or getattr(exc, "errno", None) == errno.EINVAL


def _local_create(target: StoreTarget, lease: dict[str, Any]) -> bool:
    """Create the lease only if there is none; False when one exists.

    The lease is written whole to a private file first and then published with a hard
    link, which fails when the lease exists: no other build can ever read a lease that is
    created but not yet written (an empty file would read as a damaged lease). Filesystems
    without hard links fall back to ``O_CREAT | O_EXCL``.
    """
    path = target.path(STATE_DIR, LEASE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = json.dumps(lease).encode()
    private = f"{path}.{lease.get('token') or secrets.token_hex(8)}.new"
    try:
        with open(private, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(private, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return _exclusive_create(path, data)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.remove(private)


def _exclusive_create(path: str, data: bytes) -> bool:
    """``O_EXCL`` create, for filesystems without hard links."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path)  # never leave a half-written lease (e.g. the disk is full)
        raise
    return True


def _local_replace(target: StoreTarget, lease: dict[str, Any]) -> None:
    put_atomic(target.path(STATE_DIR, LEASE), json.dumps(lease).encode(), durable=True)


def _local_takeover(
    target: StoreTarget, stale: Mapping[str, Any], lease: dict[str, Any], now: float
) -> bool:
    """Replace the stale lease under an O_EXCL guard; False if the lease changed meanwhile."""
    guard = target.path(STATE_DIR, LEASE + ".takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            age = now - os.stat(guard).st_mtime
        except FileNotFoundError:
            return False
        if age <= TAKEOVER_GRACE:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.remove(guard)  # left over by a build killed during its take-over
        return _local_takeover(target, stale, lease, now)
    os.close(fd)
    try:
        current, _ = _read(target)
        if current is None:
            return False  # released meanwhile: the caller creates it with O_EXCL
        if current.get("token") != stale.get("token"):
            return False
        if current.get("heartbeat") != stale.get("heartbeat"):
            return False  # the holder came back to life
        _local_replace(target, lease)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(guard)


def _remote_put(
    target: StoreTarget, lease: dict[str, Any], *, create: bool, etag: str | None
) -> str | None:
    """Write the lease on an object store; the new ETag (S3) or None. Raises _Lost when a
    conditional write is refused (FileExistsError for a refused create)."""
    fs = target.fs()
    path = target.path(STATE_DIR, LEASE)
    data = json.dumps(lease).encode()
    if _is_s3(fs):
        kwargs: dict[str, Any] = {"mode": "create"} if create else {}
        if etag is not None and not create:
            kwargs["IfMatch"] = etag
        try:
            out = fs.pipe_file(path, data, **kwargs)
        except FileExistsError:
            raise
        except OSError as exc:
            if _precondition_failed(exc):
                raise _Lost(str(exc)) from None
            raise
        tag = out.get("ETag") if isinstance(out, dict) else None
        return tag
    if create and fs.exists(path):
        raise FileExistsError(path)
    fs.pipe_file(path, data)
    time.sleep(SETTLE)
    return None


def _write_new(target: StoreTarget, lease: dict[str, Any]) -> tuple[bool, str | None]:
    """Create the lease if there is none: (created, etag)."""
    if _protocol(target) == "file":
        return _local_create(target, lease), None
    try:
        etag = _remote_put(target, lease, create=True, etag=None)
    except FileExistsError:
        return False, None
    return True, etag


def _remove(target: StoreTarget) -> None:
    if _protocol(target) == "file":
        path = target.path(STATE_DIR, LEASE)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        _remove_empty_store(target)
        return
    fs = target.fs()
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(target.path(STATE_DIR, LEASE))
    fs.invalidate_cache(target.path())


def _remove_empty_store(target: StoreTarget) -> None:
    """A local store that holds nothing but the empty state folder the lease made is removed
    (a build that stopped before its template leaves no empty store behind)."""
    root = target.path()
    state = os.path.join(root, STATE_DIR)
    with contextlib.suppress(OSError):
        if not os.listdir(state):  # a cube's state folder is a Zarr group: never empty
            os.rmdir(state)
        if not os.listdir(root):
            os.rmdir(root)


# ---------------------------------------------------------------------------- the handle
@dataclass
class LeaseHandle:
    """The lease this build holds on a store, renewed by a heartbeat thread."""

    target: StoreTarget
    lease: dict[str, Any]
    etag: str | None = None
    interval: float = 30.0
    lost: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token(self) -> str:
        return str(self.lease["token"])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"itslive-lease-{self.token[:8]}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        complained = False
        while not self._stop.wait(self.interval):
            try:
                self.renew()
                complained = False
            except StoreError as exc:
                log.error("%s", exc)
                return
            except Exception as exc:  # a storage hiccup: the lease survives a few of them
                if not complained:
                    log.warning(
                        "renewing the lease of %s failed (%s); retrying",
                        display(self.target),
                        redact_text(f"{type(exc).__name__}: {exc}"),
                    )
                    complained = True

    def renew(self, now: float | None = None) -> None:
        """Write a new heartbeat (if the lease is still this build's)."""
        with self._lock:
            if self.lost:
                raise StoreError(self.lost)
            lease = dict(self.lease, heartbeat=time.time() if now is None else now)
            try:
                if _protocol(self.target) == "file":
                    current, _ = _read(self.target)
                    if current is None or current.get("token") != self.token:
                        raise _Lost("")
                    _local_replace(self.target, lease)
                else:
                    current, etag = _read(self.target)
                    if current is None or current.get("token") != self.token:
                        raise _Lost("")
                    self.etag = _remote_put(
                        self.target, lease, create=False, etag=self.etag or etag
                    )
            except _Lost:
                current = read_lease(self.target)
                holder = (
                    describe_lease(current, time.time()) if current else "nobody (it was removed)"
                )
                self.lost = (
                    f"this build lost its lease on {display(self.target)} (now held by {holder}): "
                    "its heartbeat stopped for longer than the expiry and another build took "
                    "over; this build stops here. Check the store with 'itslive-dask info', "
                    "then run mode='resume' once the other build has finished"
                )
                raise StoreError(self.lost) from None
            self.lease = lease

    def check(self) -> None:
        """Raise :class:`StoreError` if the lease was lost to another build."""
        if self.lost:
            raise StoreError(self.lost)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease (only if it is still this build's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, self.interval))
        with self._lock:
            if self.lost:
                return
            try:
                current = read_lease(self.target)
                if current is not None and current.get("token") == self.token:
                    _remove(self.target)
                elif _protocol(self.target) == "file":
                    _remove_empty_store(self.target)
            except Exception as exc:  # the build's outcome matters more; the lease expires
                log.warning(
                    "could not release the lease of %s (%s); it expires after %g s",
                    display(self.target),
                    redact_text(f"{type(exc).__name__}: {exc}"),
                    float(self.lease.get("expiry", 0)),
                )


def acquire(
    target: StoreTarget, operation: str, *, expiry: float | None = None, now: float | None = None
) -> LeaseHandle:
    """Take the lease of ``target`` (heartbeat not started).

    Raises
    ------
    StoreError
        A live lease is held by another build (the message says who), or the lease cannot
        be written (the message says why: missing bucket, permission, full disk...).
    """
    expiry = lease_expiry() if expiry is None else float(expiry)
    t = time.time() if now is None else now
    mine = new_lease(operation, now=t, expiry=expiry)
    token = mine["token"]
    where = display(target)
    try:
        for _ in range(3):  # a lease released or taken over between our read and write
            created, etag = _write_new(target, mine)
            if created:
                return _confirmed(target, mine, etag)
            current, etag = _read(target)
            alive = holder_alive(current)
            verdict = decide(current, t, token, alive)
            if verdict == "take":
                continue  # released meanwhile: try to create it again
            if verdict == "mine":
                return _confirmed(target, mine, etag)
            if verdict == "refuse":
                assert current is not None
                raise StoreError(refusal(where, current, t))
            assert current is not None
            if _protocol(target) == "file":
                if not _local_takeover(target, current, mine, t):
                    continue
                new_etag = None
            else:
                try:
                    new_etag = _remote_put(target, mine, create=False, etag=etag)
                except _Lost:
                    continue  # someone else took it over (or renewed it) first
            why = (
                "its process is gone"
                if alive is False
                else "its heartbeat is older than its expiry"
            )
            warnings.warn(
                f"taking over the stale lease of {where} ({why}): it was held by "
                f"{describe_lease(current, t)}; that build is assumed killed",
                stacklevel=4,
            )
            log.warning("took over the stale lease of %s (%s)", where, describe_lease(current, t))
            return _confirmed(target, mine, new_etag)
        current = read_lease(target)
        raise StoreError(
            refusal(where, current, time.time())
            if current
            else f"could not take the lease of {where}: other builds keep changing it; try again"
        )
    except StoreError:
        raise
    except KeyboardInterrupt:  # Ctrl-C while taking it: leave no lease of ours behind
        with contextlib.suppress(Exception):
            current = read_lease(target)
            if current is not None and current.get("token") == token:
                _remove(target)
        raise
    except Exception as exc:
        from itslive_dask.store.target import storage_error_message

        raise StoreError(
            storage_error_message(target, "taking the build lease", exc, nothing_written=True)
        ) from None


def _confirmed(target: StoreTarget, mine: dict[str, Any], etag: str | None) -> LeaseHandle:
    """Read the lease back: it must carry our token (servers ignoring conditional writes)."""
    current, tag = _read(target)
    if current is None or current.get("token") != mine["token"]:
        now = time.time()
        raise StoreError(
            refusal(display(target), current, now)
            if current
            else f"the lease of {display(target)} vanished right after it was written; try again"
        )
    expiry = float(mine["expiry"])
    return LeaseHandle(
        target=target,
        lease=mine,
        etag=etag or tag,
        interval=max(0.05, expiry / BEATS_PER_EXPIRY),
    )


_HELD = threading.local()


@contextlib.contextmanager
def hold_lease(
    target: StoreTarget, operation: str, *, expiry: float | None = None
) -> Iterator[LeaseHandle]:
    """Hold the lease of ``target`` for the ``with`` block: take it, renew it, release it.

    Re-entrant within one thread (a time-series build holds its work store's lease while
    ``write_cube`` runs on it). Released on every way out of the block, Ctrl-C included.
    """
    held: dict[str, LeaseHandle] = getattr(_HELD, "leases", None) or {}
    _HELD.leases = held
    key = target.url.rstrip("/")
    if key in held:
        yield held[key]
        return
    handle = acquire(target, operation, expiry=expiry)
    handle.start()
    held[key] = handle
    try:
        yield handle
    finally:
        held.pop(key, None)
        handle.release()


def check_not_leased(target: StoreTarget) -> None:
    """Raise the refusal :class:`StoreError` when another build holds a live lease on
    ``target`` (a lease this thread holds is fine)."""
    held: dict[str, LeaseHandle] = getattr(_HELD, "leases", None) or {}
    mine = held.get(target.url.rstrip("/"))
    lease = read_lease(target)
    now = time.time()
    if lease is None or (mine is not None and lease.get("token") == mine.token):
        return
    if lease_status(lease, now, holder_alive(lease)) == "live":
        raise StoreError(refusal(display(target), lease, now))


def lease_summary(target: StoreTarget, now: float | None = None) -> dict[str, Any] | None:
    """The lease for ``describe_build``: holder fields, ``status`` and a ``text`` line."""
    lease = read_lease(target)
    if lease is None:
        return None
    t = time.time() if now is None else now
    status = lease_status(lease, t, holder_alive(lease))
    out = {k: lease.get(k) for k in ("host", "pid", "operation", "started", "heartbeat", "expiry")}
    out["status"] = status
    what = (
        "held by"
        if status == "live"
        else "STALE (a killed build; the next build takes it over): was held by"
    )
    out["text"] = f"{what} {describe_lease(lease, t)}"
    return out
