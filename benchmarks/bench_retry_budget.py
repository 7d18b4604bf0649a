"""Cost of granules whose every request fails (503 SlowDown, or a stall), through S3Proxy.

Builds 8 granules of the synthetic archive (one block) with ``write_cube`` on a LocalCluster
of 2 single-threaded worker processes, first without faults, then with 1 and 3 granules whose
every request fails, and prints the extra wall time and the per-granule attempts and seconds
recorded in the ledger. Reproduce: ``python benchmarks/bench_retry_budget.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import xarray as xr


def main() -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from conftest import _test_config
    from distributed import Client, LocalCluster

    from itslive_dask import write_cube
    from itslive_dask.testing.local_s3 import LocalS3
    from itslive_dask.testing.s3proxy import FaultRule, S3Proxy
    from itslive_dask.testing.synthetic import generate_archive

    s3 = LocalS3().start()
    cfg = _test_config()
    url = s3.create_bucket("its-live-data", public=True)
    table = (
        generate_archive(url, cfg, storage_options=s3.storage_options)
        .iloc[:8]
        .reset_index(drop=True)
    )
    region = cfg.region_obj.polygon
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    )
    client = Client(cluster)
    out = tempfile.mkdtemp()
    chunks = (16, 4096, 4096)
    try:
        with S3Proxy(s3, max_stall=120) as proxy:
            t0 = time.perf_counter()
            write_cube(
                table,
                f"{out}/clean.zarr",
                region,
                storage_options=proxy.storage_options,
                chunks=chunks,
                client=client,
            )
            t_clean = time.perf_counter() - t0
            ref = xr.open_zarr(f"{out}/clean.zarr").load()
            has = np.isfinite(ref.v.values).any(axis=(1, 2))
            bad = [g for g, h in zip(ref.granule_id.values, has, strict=True) if h][:3]
            urls = table.set_index("granule_id").loc[bad, "url"].tolist()
            print(f"clean build: {t_clean:.1f} s", flush=True)
            for kind in ("503", "stall"):
                for n in (1, 3):
                    proxy.set_faults(
                        [
                            FaultRule(
                                1.0,
                                kinds=(kind,),
                                key_pattern=u.split("://", 1)[1],
                                stall_seconds=100,
                            )
                            for u in urls[:n]
                        ]
                    )
                    t0 = time.perf_counter()
                    res = write_cube(
                        table,
                        f"{out}/{kind}{n}.zarr",
                        region,
                        storage_options=proxy.storage_options,
                        chunks=chunks,
                        client=client,
                    )
                    wall = time.perf_counter() - t0
                    rows = [
                        (f["attempts"], round(f.get("seconds", float("nan")), 2))
                        for f in res.failed
                    ]
                    print(
                        f"{kind:>5} x{n}: wall {wall:.1f} s (+{wall - t_clean:.1f} s); (attempts, seconds) per granule: {rows}",
                        flush=True,
                    )
    finally:
        client.close()
        cluster.close()
        s3.stop()


if __name__ == "__main__":
    main()
