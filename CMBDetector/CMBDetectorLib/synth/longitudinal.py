"""Synthetic longitudinal pairs: the same head scanned at baseline and at a later visit.

The follow-up keeps the anatomy, veins, mimics and every baseline microbleed (their apparent
size follows the follow-up's protocol), moves the head rigidly in the scanner, draws fresh noise
and bias, and adds 0-15 new microbleeds (as under anti-amyloid treatment: ARIA-H).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .acquisition import AcquisitionProtocol
from .engine import Revisit, SyntheticScan, generate_scan

MAX_NEW_CMB = 15
SAME_LESION_MM = 1.0  # a follow-up microbleed this close to a moved baseline one is the same lesion


@dataclass
class LongitudinalPair:
    """Baseline and follow-up scans of one head; ``new`` flags each follow-up microbleed
    (``followup.cmbs`` order) that is not in the baseline."""

    baseline: SyntheticScan
    followup: SyntheticScan
    revisit: Revisit
    new: np.ndarray

    @property
    def n_new(self) -> int:
        return int(self.new.sum())

    def baseline_in_followup(self) -> np.ndarray:
        """Baseline microbleed centres moved to the follow-up's scanner RAS (N, 3)."""
        return self.revisit.apply(self.baseline.cmb_truth()[0]) if self.baseline.cmbs else np.zeros((0, 3))


def sample_revisit(rng: np.random.Generator, n_new_cmb: int) -> Revisit:
    """Head repositioned between visits: a few degrees of rotation, up to ~1-2 cm of shift."""
    rotation = Rotation.from_euler("xyz", rng.normal(0, 1, 3) * np.array([6.0, 3.0, 4.0]), degrees=True).as_matrix()
    return Revisit(rotation, rng.normal(0, 6, 3), int(rng.integers(2**31)), int(n_new_cmb))


def generate_pair(seed: int, baseline_protocol: AcquisitionProtocol | None = None,
                  followup_protocol: AcquisitionProtocol | None = None, n_cmb: int | None = None,
                  n_new_cmb: int | None = None, skull_stripped: bool | None = None) -> LongitudinalPair:
    """A reproducible baseline/follow-up pair. ``followup_protocol`` None reuses the baseline's;
    ``n_new_cmb`` None draws 0-15 (a third of pairs get none)."""
    rng = np.random.default_rng([seed, 7])
    if n_new_cmb is None:
        n_new_cmb = 0 if rng.random() < 1 / 3 else int(rng.integers(1, MAX_NEW_CMB + 1))
    revisit = sample_revisit(rng, n_new_cmb)
    baseline = generate_scan(seed, baseline_protocol, n_cmb=n_cmb, skull_stripped=skull_stripped)
    followup = generate_scan(seed, followup_protocol or baseline.protocol, n_cmb=n_cmb,
                             skull_stripped=baseline.skull_stripped, revisit=revisit)
    pair = LongitudinalPair(baseline, followup, revisit, np.zeros(0, bool))
    pair.new = _new_flags(pair)
    return pair


def _new_flags(pair: LongitudinalPair) -> np.ndarray:
    centres = pair.followup.cmb_truth()[0]
    old = pair.baseline_in_followup()
    if not len(old):
        return np.ones(len(centres), bool)
    dist = np.linalg.norm(centres[:, None, :] - old[None, :, :], axis=2)
    return dist.min(axis=1) > SAME_LESION_MM
