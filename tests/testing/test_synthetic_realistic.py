"""The realistic-size mode of the synthetic archive: production size, layout and compression,
values still the analytic truth (within the int16 rounding and the added noise)."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from itslive_dask.errors import InvalidInputError
from itslive_dask.testing.synthetic import (
    SyntheticConfig,
    generate_granule,
    granule_truth,
    make_granule_specs,
)
from itslive_dask.testing.synthetic.specs import REALISTIC_NOISE_STD

VELOCITY = ("vx", "vy", "v", "v_error")
ALL = (*VELOCITY, "chip_size_width", "chip_size_height", "interp_mask")
CONFIG = SyntheticConfig(n_granules=2, seed=11, size="realistic", v1_fraction=0.0)


@pytest.fixture(scope="module")
def realistic():
    spec = make_granule_specs(CONFIG)[0]
    data = generate_granule(spec)
    return spec, data


def test_same_draws_as_small_mode_only_the_size_changes():
    small = make_granule_specs(SyntheticConfig(n_granules=6, seed=4))
    real = make_granule_specs(SyntheticConfig(n_granules=6, seed=4, size="realistic"))
    for s, r in zip(small, real, strict=True):
        assert (s.acquisition_img1, s.acquisition_img2, s.epsg, s.version, s.scene_id_img1) == (
            r.acquisition_img1,
            r.acquisition_img2,
            r.epsg,
            r.version,
            r.scene_id_img1,
        )
        assert s.size == "small" and s.noise_std == 0.0
        assert r.size == "realistic" and r.noise_std == REALISTIC_NOISE_STD
        assert (r.ny, r.nx) == ((1879, 2016) if r.version == 2 else (939, 1008))
    with pytest.raises(InvalidInputError, match="size"):
        SyntheticConfig(size="huge")
    explicit = make_granule_specs(SyntheticConfig(n_granules=1, size="realistic", noise_std=3.0))
    assert explicit[0].noise_std == 3.0


def test_layout_sizes_chunks_and_filters(realistic):
    spec, data = realistic
    assert spec.version == 2
    # a production V2 granule is ~20 MB
    assert 14e6 < len(data) < 26e6
    with h5py.File(io.BytesIO(data), "r") as f:
        x, y = f["x"][()], f["y"][()]
        assert x.shape == (2016,) and y.shape == (1879,)
        assert np.all(np.diff(x) == 120.0) and np.all(np.diff(y) == -120.0)
        npx = 1879 * 2016
        for name in ALL:
            ds = f[name]
            assert ds.shape == (1879, 2016)
            assert ds.chunks == (640, 2016), name
            assert ds.compression == "gzip" and ds.compression_opts == 2, name
            assert ds.shuffle, name
            assert ds.id.get_num_chunks() == 3
        assert {f[n].dtype for n in VELOCITY} == {np.dtype("int16")}
        assert f["chip_size_width"].dtype == np.uint16 and f["interp_mask"].dtype == np.uint8
        for name in VELOCITY:  # about 1 byte per pixel, as in real granules
            per_px = f[name].id.get_storage_size() / npx
            assert 0.6 < per_px < 1.4, (name, per_px)


def test_values_are_the_truth_plus_the_stated_noise(realistic):
    spec, data = realistic
    tvx, tvy = granule_truth(spec)
    valid = spec.valid_mask()
    assert 0.5 < valid.mean() <= 1.0
    sigma = spec.noise_std
    with h5py.File(io.BytesIO(data), "r") as f:
        for name, truth in (("vx", tvx), ("vy", tvy)):
            stored = f[name][()]
            assert np.array_equal(stored == -32767, ~valid), name
            res = stored[valid].astype("float64") - truth[valid]
            # Gaussian noise of std sigma, then rounding (uniform, std 0.29)
            expected_std = np.hypot(sigma, 1 / np.sqrt(12))
            assert abs(res.mean()) < 0.2, name
            assert abs(res.std() - expected_std) < 0.02 * expected_std, name
            assert np.abs(res).max() < 6.5 * sigma + 0.5, name
        v = f["v"][()]
        vx, vy = f["vx"][()], f["vy"][()]
        # v is the speed of the noisy components, within the rounding of the three values
        sp = np.hypot(vx[valid].astype("float64"), vy[valid].astype("float64"))
        assert np.abs(v[valid] - sp).max() <= 1.5
        chip = f["chip_size_width"][()]
        assert set(np.unique(chip[valid])) <= {240, 480, 960}
        assert np.all(chip[~valid] == 0)
