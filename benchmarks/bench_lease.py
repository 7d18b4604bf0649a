"""Cost of the build lease: take, one heartbeat, release, on a local disk and on S3.

Each is timed 30 times on a fresh store path; the medians (and maxima) are printed. A build
pays one take and one release, plus one heartbeat every expiry/10 seconds (30 s by default)
from a client thread. Reproduce: ``python benchmarks/bench_lease.py``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time


def _bench(target, n: int = 30) -> str:
    from itslive_dask.store import lease

    take, beat, release = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        handle = lease.acquire(target, "bench")
        t1 = time.perf_counter()
        handle.renew()
        t2 = time.perf_counter()
        handle.release()
        t3 = time.perf_counter()
        take.append(t1 - t0)
        beat.append(t2 - t1)
        release.append(t3 - t2)

    def ms(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1e3:.1f} ms (max {max(xs) * 1e3:.1f})"

    return f"take {ms(take)}, heartbeat {ms(beat)}, release {ms(release)}"


def main() -> None:
    from itslive_dask.store.target import resolve_target
    from itslive_dask.testing.local_s3 import LocalS3

    with tempfile.TemporaryDirectory() as d:
        print("local disk:", _bench(resolve_target(os.path.join(d, "c.zarr"))))
    with LocalS3() as s3:
        s3.create_bucket("lease-bench")
        print(
            "local S3 (moto):",
            _bench(resolve_target("s3://lease-bench/c.zarr", s3.storage_options)),
        )


if __name__ == "__main__":
    main()
