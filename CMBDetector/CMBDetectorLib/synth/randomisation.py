"""Domain-randomisation knobs of the synthetic engine and the presets that use them.

``OFF`` (the default) reproduces the engine the shipped models were trained and tested on,
array for array. ``WIDE`` is the training recipe for the next models (``--wide`` in
:mod:`..training.dataset`); ``STRESS`` is the anatomy/artefact part of the stress test family
(:func:`.acquisition.sample_stress_protocol` is its protocol part). Every knob draws from its own
random stream, so switching knobs never changes the other draws of a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Randomisation:
    """Ranges (low, high) drawn once per scan; each default leaves the engine unchanged.

    through_slice_veins: extra tortuous, branching veins running within ~25 deg of B0 (dots on
    axial slices, tubes on the others); medullary_density: multiplier of the medullary vein
    count; cmb_like_calcifications: diamagnetic spheres with the microbleeds' size, |dchi|,
    core signal and locations (tellable from microbleeds by phase only); small_cmb_fraction:
    share of microbleeds (and of those calcifications) redrawn at 1.0-1.6 mm true diameter;
    head_scale: extra isotropic head scaling; warp_scale: multiplier of the non-linear warp;
    atrophy: tissue fraction below which partial-volume tissue turns to CSF (wider sulci and
    ventricles); bias_scale: multiplier of the bias field amplitude; snr_scale: multiplier of
    the protocol's SNR; kspace_kept: in-plane k-space fraction kept (< 1: Gibbs ringing);
    motion_rad: RMS phase error of the corrupted phase-encode lines (ghosting);
    partial_fov: probability that the slab covers only 50-80 % of the head; vein_contact: share
    of microbleeds moved onto a nearby vein in tissue (drawn only when above 0, so the other
    presets' scans are unchanged).
    """

    through_slice_veins: tuple = (0, 0)
    medullary_density: tuple = (1.0, 1.0)
    cmb_like_calcifications: tuple = (0, 0)
    small_cmb_fraction: float = 0.0
    head_scale: tuple = (1.0, 1.0)
    warp_scale: tuple = (1.0, 1.0)
    atrophy: tuple = (0.0, 0.0)
    bias_scale: tuple = (1.0, 1.0)
    snr_scale: tuple = (1.0, 1.0)
    kspace_kept: tuple = (1.0, 1.0)
    motion_rad: tuple = (0.0, 0.0)
    partial_fov: float = 0.0
    vein_contact: float = 0.0

    def draw(self, rng: np.random.Generator) -> ScanVariation:
        """This scan's values (always the same number of draws, in a fixed order)."""
        u = rng.random(13)

        def pick(r, n):
            return r[0] + (r[1] - r[0]) * u[n]

        partial = u[12] < self.partial_fov
        return ScanVariation(
            int(round(pick(self.through_slice_veins, 0))), pick(self.medullary_density, 1),
            int(round(pick(self.cmb_like_calcifications, 2))), self.small_cmb_fraction, pick(self.head_scale, 3),
            pick(self.warp_scale, 4), pick(self.atrophy, 5), pick(self.bias_scale, 6), pick(self.snr_scale, 7),
            pick(self.kspace_kept, 8), pick(self.motion_rad, 9),
            0.5 + 0.3 * u[10] if partial else 1.0, (1.0 if u[11] < 0.5 else -1.0) if partial else 0.0,
            self.vein_contact, rng)


@dataclass
class ScanVariation:
    """One scan's knob values; ``fov_fraction`` 1 covers the head, ``fov_shift`` (+-1) moves a
    partial slab up or down; ``rng`` is the stream for the knobs' own random choices."""

    through_slice_veins: int
    medullary_density: float
    cmb_like_calcifications: int
    small_cmb_fraction: float
    head_scale: float
    warp_scale: float
    atrophy: float
    bias_scale: float
    snr_scale: float
    kspace_kept: float
    motion_rad: float
    fov_fraction: float
    fov_shift: float
    vein_contact: float
    rng: np.random.Generator


OFF = Randomisation()
WIDE = Randomisation(through_slice_veins=(20, 80), medullary_density=(1.0, 2.0), cmb_like_calcifications=(0, 3),
                     small_cmb_fraction=0.25, head_scale=(0.85, 1.15), warp_scale=(1.0, 2.0), atrophy=(0.0, 0.4),
                     bias_scale=(1.0, 2.5), snr_scale=(0.6, 1.2), kspace_kept=(0.6, 1.0), motion_rad=(0.0, 0.3),
                     partial_fov=0.2)
STRESS = Randomisation(through_slice_veins=(60, 100), medullary_density=(2.0, 2.5), cmb_like_calcifications=(1, 3),
                       small_cmb_fraction=0.3, head_scale=(0.88, 1.12), warp_scale=(1.0, 1.8), atrophy=(0.1, 0.4),
                       bias_scale=(1.5, 2.5), snr_scale=(0.6, 1.0), kspace_kept=(0.6, 0.9), motion_rad=(0.05, 0.3),
                       partial_fov=0.3)


def gibbs_ringing(cplx: np.ndarray, kept: float) -> np.ndarray:
    """Keep the central ``kept`` fraction of in-plane k-space (axes j, i of ``[k, j, i]``)."""
    if kept >= 1:
        return cplx
    k = np.fft.fft2(cplx, axes=(1, 2))
    for axis in (1, 2):
        freq = np.abs(np.fft.fftfreq(cplx.shape[axis]))
        shape = [1, 1, 1]
        shape[axis] = -1
        k *= (freq <= kept / 2).reshape(shape)
    return np.fft.ifft2(k, axes=(1, 2)).astype(np.complex64)


def motion_ghosts(rng: np.random.Generator, cplx: np.ndarray, rms_rad: float, fraction: float = 0.25) -> np.ndarray:
    """Random phase errors on ``fraction`` of the phase-encode lines (axis j): ghosts along j."""
    if rms_rad <= 0:
        return cplx
    n = cplx.shape[1]
    errors = np.where(rng.random(n) < fraction, rng.normal(0, rms_rad, n), 0.0)
    k = np.fft.fft(cplx, axis=1) * np.exp(1j * errors)[None, :, None]
    return np.fft.ifft(k, axis=1).astype(np.complex64)


def atrophy_fractions(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, level: float):
    """Tissue fractions after atrophy: partial-volume tissue below ``level`` turns to CSF, the
    rest is rescaled, so sulci and ventricles widen where the template's tissue is partial."""
    if level <= 0:
        return gm, wm, csf
    tissue = gm + wm
    kept = np.clip((tissue - level) / (1 - level), 0, 1)
    ratio = np.where(tissue > 1e-6, kept / np.maximum(tissue, 1e-6), 0).astype(np.float32)
    return gm * ratio, wm * ratio, csf + (tissue - kept).astype(np.float32)
