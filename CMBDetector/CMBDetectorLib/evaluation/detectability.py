"""Ideal-observer detectability of each synthetic microbleed: the most any detector could find.

Two noise-free renders of one scan, with and without the microbleeds' signal, give each
microbleed's own signal on the final complex image. Against the scan's complex Gaussian noise
(sigma per component) the observer that knows signal and background exactly detects it with
d' = ||c_with - c_without|| / sigma; the complex image holds all that magnitude and phase hold,
so no detector does better (the magnitude's d' is given beside it). Searching a scan's N
independent locations at a false-positive rate per scan, that observer finds a microbleed with
probability Phi(d' - z), z = Phi^-1(1 - rate / N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import norm

LOCATION_MM3 = 27.0  # one independent search location per 3 mm cube of brain (a microbleed's size)
SIGNAL_FLOOR = 1e-3  # voxels whose signal difference is below this share of the scan's largest are left out


@dataclass
class Detectability:
    """Each microbleed's d' (``scan.cmbs`` order) on the complex and on the magnitude image, and
    the scan's independent search locations."""

    complex: np.ndarray
    magnitude: np.ndarray
    locations: int


def microbleed_detectability(make_scan: Callable) -> Detectability:
    """d' of the microbleeds of the scan ``make_scan(**render)`` returns (a seeded scan maker such
    as :func:`.benchmark.test_scan` with its arguments bound; called twice, noise-free)."""
    with_cmb = make_scan(noise=False, keep_complex=True)
    without = make_scan(noise=False, microbleed_signal=False, keep_complex=True)
    voxel_mm3 = float(np.prod(with_cmb.geometry.spacing))
    locations = max(1, int(without.brain_mask.sum() * voxel_mm3 / LOCATION_MM3))
    centres, _ = with_cmb.cmb_truth()
    if not len(centres):
        return Detectability(np.zeros(0), np.zeros(0), locations)
    signal = np.abs(with_cmb.complex_image - without.complex_image)
    kji = np.argwhere(signal > SIGNAL_FLOOR * max(float(signal.max()), 1e-30))
    ras = with_cmb.geometry.ijk_to_ras_points(kji[:, ::-1].astype(float))
    owner = cKDTree(centres).query(ras)[1]  # each voxel's nearest microbleed
    at = tuple(kji.T)
    magnitude = np.abs(with_cmb.complex_image[at]) - np.abs(without.complex_image[at])

    def dprime(values: np.ndarray) -> np.ndarray:  # each microbleed's signal norm over the noise
        return np.sqrt(np.bincount(owner, weights=values.astype(float) ** 2, minlength=len(centres)))

    sigma = with_cmb.noise_sigma
    return Detectability(dprime(signal[at]) / sigma, dprime(magnitude) / sigma, locations)


def ideal_found(dprime: np.ndarray, fp_per_scan: float, locations: int) -> np.ndarray:
    """Probability that the ideal observer finds each microbleed while reporting ``fp_per_scan``
    false positives per scan over ``locations`` independent locations."""
    z = norm.isf(fp_per_scan / locations)
    return norm.cdf(np.asarray(dprime, float) - z)
