"""Header scans in worker processes (h5py reads one header at a time per process).

The same scan in threads and in 2 spawned processes gives the same headers, chunk-index
records and failures; the truth for the headers is ``read_granule_info`` on each file, and
a broken or missing object is a failure entry in both, never an exception.
"""

from __future__ import annotations

import numpy as np
import pytest
from bucket_copies import copy_to_bucket

from itslive_dask.errors import InvalidInputError
from itslive_dask.io.hdf5 import read_granule_info
from itslive_dask.io.listing import scan_headers

BUCKET = "scan-headers"


@pytest.fixture(scope="module")
def urls(synthetic_archive, local_s3):
    table = copy_to_bucket(local_s3, synthetic_archive.table.iloc[60:66], BUCKET)
    fs = local_s3.filesystem()
    fs.pipe_file(f"{BUCKET}/broken.nc", b"<html>403 Forbidden</html>\n" * 50)
    other = synthetic_archive.table.url.iloc[0]  # a granule in the shared archive's bucket
    return [*table.url, f"s3://{BUCKET}/broken.nc", f"s3://{BUCKET}/missing.nc", other]


def test_processes_and_threads_read_the_same(urls, local_s3):
    so = local_s3.storage_options
    seen: list[tuple[int, int]] = []
    threads = scan_headers(urls, so, processes=0)
    procs = scan_headers(urls, so, processes=2, progress=lambda d, t: seen.append((d, t)))
    assert set(procs.infos) == set(threads.infos) == set(urls[:6]) | {urls[-1]}
    for url in urls[:6]:
        truth = read_granule_info(url, so)
        got = procs.infos[url]
        assert (got.granule_id, got.epsg, got.mid_date) == (
            truth.granule_id,
            truth.epsg,
            truth.mid_date,
        )
        np.testing.assert_array_equal(got.x, truth.x)
        np.testing.assert_array_equal(got.y, truth.y)
        assert procs.records[url] == threads.records[url]
    assert [f["url"] for f in procs.failures] == [urls[6], urls[7]]

    def untimed(failures):
        return [{k: v for k, v in f.items() if k != "seconds"} for f in failures]

    assert untimed(procs.failures) == untimed(threads.failures)
    assert "not found" in procs.failures[1]["error"]
    assert seen[-1] == (len(urls), len(urls)) and len(seen) == len(urls)


def test_bad_process_counts_are_refused(urls, local_s3):
    for bad in (-1, 1.5, "2"):
        with pytest.raises(InvalidInputError, match="processes"):
            scan_headers(urls[:1], local_s3.storage_options, processes=bad)


def test_auto_processes_only_for_large_scans_of_slow_stores():
    from itslive_dask.io.listing import PROCESS_SCAN_DEFAULT, PROCESS_SCAN_MIN, auto_processes

    assert auto_processes(PROCESS_SCAN_MIN, 0.25) == PROCESS_SCAN_DEFAULT  # 8 GETs at 30 ms
    assert auto_processes(PROCESS_SCAN_MIN, 0.04) == 0  # a store on this machine
    assert auto_processes(PROCESS_SCAN_MIN - 1, 5.0) == 0  # too few to pay the start


@pytest.mark.parametrize("slow", [True, False])
def test_the_automatic_choice_reads_every_granule_once(urls, local_s3, monkeypatch, slow):
    """The automatic mode reads the first remote header itself, times it, then reads the rest
    in processes (a slow store) or threads: every granule is in the result once, the first
    one's failure included."""
    from itslive_dask.io import listing

    monkeypatch.setattr(listing, "PROCESS_SCAN_MIN", 3)
    monkeypatch.setattr(listing, "PROCESS_SCAN_DEFAULT", 2)
    monkeypatch.setattr(listing, "PROCESS_SCAN_SLOW_HEADER", 0.0 if slow else 1e9)
    order = [urls[6], *urls[:6], urls[7]]  # the broken object first
    seen: list[tuple[int, int]] = []
    scan = scan_headers(order, local_s3.storage_options, progress=lambda d, t: seen.append((d, t)))
    assert set(scan.infos) == set(urls[:6])
    assert [f["url"] for f in scan.failures] == [urls[6], urls[7]]
    assert seen[-1] == (len(order), len(order)) and len(seen) == len(order)


def test_an_interrupted_scan_reads_no_more_headers(urls, local_s3):
    """An exception in the middle (Ctrl-C, a progress callback that raises) stops the scan:
    the granules not started are not read (before, the pool finished them all first)."""
    from itslive_dask.testing.s3proxy import S3Proxy

    def stop(done, total):
        raise KeyboardInterrupt

    with S3Proxy(local_s3, latency=0.05) as proxy:
        with pytest.raises(KeyboardInterrupt):
            scan_headers(urls[:6], proxy.storage_options, max_workers=1, processes=0, progress=stop)
        read = {r.key for r in proxy.stats.records}
    assert 1 <= len(read) <= 2, read  # the first granule, and at most the one in flight
