"""The engine's analysis renders (no noise, no microbleed signal) and the ideal observer's d'."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from scipy.stats import norm

from CMBDetectorLib.evaluation.detectability import ideal_found, microbleed_detectability
from CMBDetectorLib.synth import AcquisitionProtocol, generate_scan

SMALL = AcquisitionProtocol(3.0, 20.0, "swi3d", (2.0, 2.0, 2.0), (80, 96, 70), snr=30.0)


@pytest.fixture(scope="module")
def renders():
    make = partial(generate_scan, 11, SMALL, n_cmb=4, skull_stripped=False, keep_complex=True)
    return make(), make(noise=False), make(noise=False, microbleed_signal=False)


def test_noise_free_render_is_the_scan_less_its_recorded_noise(renders):
    noisy, clean, _ = renders
    assert noisy.noise_sigma == clean.noise_sigma > 0
    noise = noisy.complex_image - clean.complex_image
    for part in (noise.real, noise.imag):
        assert abs(part.std() / noisy.noise_sigma - 1) < 0.02
        assert abs(part.mean()) < 0.02 * noisy.noise_sigma
    assert noisy.complex_image.shape == noisy.magnitude.shape
    assert generate_scan(11, SMALL, n_cmb=4, skull_stripped=False).complex_image is None


def test_microbleed_free_render_differs_only_at_the_microbleeds(renders):
    _, clean, without = renders
    assert [vars(o) for o in clean.objects] == [vars(o) for o in without.objects]
    assert np.array_equal(clean.labels, without.labels)
    changed = np.abs(clean.complex_image - without.complex_image) > 1e-3 * np.abs(clean.complex_image).max()
    kji = np.argwhere(changed)
    assert len(kji) > 0
    ras = clean.geometry.ijk_to_ras_points(kji[:, ::-1].astype(float))
    centres, _ = clean.cmb_truth()
    nearest = np.linalg.norm(ras[:, None] - centres[None], axis=2).min(axis=1)
    assert nearest.max() < 20.0  # the dipole's reach, not the rest of the head
    for c in centres:  # every microbleed darkens its own centre
        k, j, i = np.round(clean.geometry.ras_to_ijk_points(c)[0][::-1]).astype(int)
        assert abs(clean.complex_image[k, j, i]) < abs(without.complex_image[k, j, i])


def test_dprime_scales_with_snr_and_magnitude_holds_less():
    low = microbleed_detectability(partial(generate_scan, 11, SMALL, n_cmb=4, skull_stripped=False))
    high = microbleed_detectability(partial(generate_scan, 11, replace(SMALL, snr=60.0), n_cmb=4,
                                            skull_stripped=False))
    assert len(low.complex) == 4 and (low.complex > 0).all()
    np.testing.assert_allclose(high.complex / low.complex, 2.0, rtol=1e-3)
    assert (low.magnitude <= low.complex + 1e-9).all() and (low.magnitude > 0).all()
    assert low.locations == high.locations > 1000


def test_no_microbleeds_gives_empty_dprimes():
    none = microbleed_detectability(partial(generate_scan, 12, SMALL, n_cmb=0, skull_stripped=False))
    assert none.complex.size == none.magnitude.size == 0 and none.locations > 0


def test_ideal_found_is_half_at_the_search_threshold():
    z = norm.isf(0.5 / 40_000)
    assert ideal_found(np.array([z]), 0.5, 40_000)[0] == pytest.approx(0.5)
    p = ideal_found(np.array([1.5, z, 8.0]), 0.5, 40_000)
    assert p[0] < 0.01 and p[2] > 0.99 and np.all(np.diff(p) > 0)
    assert ideal_found(np.array([z]), 0.2, 40_000)[0] < 0.5  # fewer false positives allowed: fewer found
