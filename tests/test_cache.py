"""The per-process LRU caches: bounded by entries and bytes, consistent under threads."""

from __future__ import annotations

import threading

import numpy as np

from itslive_dask.cache import LRU


def test_bounds_by_entries_and_bytes():
    c = LRU(maxsize=3, maxbytes=250)
    for k in range(3):
        c.get(k, lambda: np.zeros(100, "uint8"))
    assert list(c.data) == [1, 2] and c.nbytes == 200  # the third pushed out the oldest
    c.get(1, lambda: None)  # a hit: 1 becomes the newest
    c.get(9, lambda: b"x" * 10)  # 210 bytes in 3 entries: within both bounds
    assert list(c.data) == [2, 1, 9] and c.nbytes == 210
    c.get(10, lambda: b"z" * 10)  # a 4th entry: the least recently used (2) goes
    assert list(c.data) == [1, 9, 10] and c.nbytes == 120
    c.discard(1)
    assert c.nbytes == 20 and c.hits == 1 and c.misses == 5


def test_byte_accounting_stays_exact_under_threads():
    """Defect: with threaded workers the byte count drifted and move_to_end could race."""
    c = LRU(maxsize=16, maxbytes=16 * 64)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(2000):
                k = int(rng.integers(0, 40))
                if rng.random() < 0.1:
                    c.discard(k)
                else:
                    c.get(k, lambda: b"y" * 64)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert c.nbytes == 64 * len(c.data) <= 16 * 64
