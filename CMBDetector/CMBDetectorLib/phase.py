"""Phase evidence: is a dark blob paramagnetic (microbleed) or diamagnetic (calcification)?

On magnitude images haemosiderin and calcium look alike. Around a magnetised sphere the field
follows the dipole pattern (3cos²θ - 1) / r³ about B0 (the patient's S axis for a head-first
scan), with opposite signs for paramagnetic and diamagnetic material. The score of a candidate
is the correlation of the high-pass filtered phase in a shell around it with that pattern, signed
so that paramagnetic (microbleeds, veins, iron) is positive.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import CMBDetectorError
from .geometry import Geometry

HIGHPASS_SIGMA_MM = 4.0  # background field scale removed before scoring (as SWI filtering does)
SHELL_MM = 4.0  # width of the shell around the blob in which the dipole pattern is compared
CONVENTIONS = ("right-handed", "left-handed")
_SCANNER_UNITS = 4096.0  # raw phase stored as 12-bit integers (-4096..4095 or 0..4095)


def to_radians(phase: np.ndarray) -> np.ndarray:
    """Phase in radians in (-π, π]; 12-bit scanner units (range > 2π) are rescaled."""
    phase = np.nan_to_num(np.asarray(phase, dtype=np.float32))
    low, high = float(phase.min()), float(phase.max())
    if high - low > 2 * np.pi * 1.05:
        if high - low > 2 * _SCANNER_UNITS * 1.05:
            raise CMBDetectorError(
                f"The phase image ranges from {low:g} to {high:g}: expected radians (±π) or scanner "
                "units (±4096); is it a phase image?")
        span = 2 * _SCANNER_UNITS if low < 0 else _SCANNER_UNITS
        phase = phase * np.float32(2 * np.pi / span)
    return np.angle(np.exp(1j * phase)).astype(np.float32)


def highpass_phase(magnitude: np.ndarray, phase: np.ndarray, geometry: Geometry,
                   sigma_mm: float = HIGHPASS_SIGMA_MM) -> np.ndarray:
    """Homodyne high-pass: the phase of ``z / G(z)``, ``z`` the complex image, ``G`` a Gaussian."""
    z = np.asarray(magnitude, dtype=np.float32) * np.exp(1j * np.asarray(phase, dtype=np.float32))
    sigma = sigma_mm / geometry.spacing[::-1]
    low = ndimage.gaussian_filter(z.real, sigma) + 1j * ndimage.gaussian_filter(z.imag, sigma)
    return np.angle(z * np.conj(low)).astype(np.float32)


def dipole_correlation(hp_phase: np.ndarray, geometry: Geometry, centers_ras: np.ndarray,
                       radii_mm: np.ndarray, b0_ras=(0.0, 0.0, 1.0), chunk: int = 256) -> np.ndarray:
    """Correlation in [-1, 1] of the phase in the shell ``radius .. radius + SHELL_MM`` around
    each centre with the dipole pattern; 0 where the shell holds no voxel."""
    centers_ras = np.asarray(centers_ras, dtype=float).reshape(-1, 3)
    radii = np.asarray(radii_mm, dtype=float).reshape(-1)
    out = np.zeros(len(centers_ras), dtype=np.float32)
    if not len(centers_ras):
        return out
    b0 = np.asarray(b0_ras, dtype=float) / np.linalg.norm(b0_ras)
    matrix = geometry.ijk_to_ras[:3, :3]
    reach = radii.max() + SHELL_MM
    half = np.ceil(reach / geometry.spacing).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), -1).reshape(-1, 3)
    shape_ijk = np.asarray(hp_phase.shape)[::-1]
    ijk = geometry.ras_to_ijk_points(centers_ras)
    for start in range(0, len(ijk), chunk):
        c = ijk[start:start + chunk]
        base = np.round(c).astype(int)
        idx = base[:, None, :] + grid[None]  # (n, M, 3) voxel indices (i, j, k)
        offset = (idx - c[:, None, :]) @ matrix.T  # mm
        r = np.linalg.norm(offset, axis=-1)
        inner = radii[start:start + chunk, None]
        inside = np.all((idx >= 0) & (idx < shape_ijk), axis=-1) & (r >= inner) & (r <= inner + SHELL_MM)
        cos = (offset @ b0) / np.maximum(r, 1e-6)
        template = np.where(inside, (3 * cos * cos - 1) / np.maximum(r, 1e-6) ** 3, 0.0)
        safe = np.clip(idx, 0, shape_ijk - 1)
        values = np.where(inside, hp_phase[safe[..., 2], safe[..., 1], safe[..., 0]], 0.0)
        template -= template.sum(axis=1, keepdims=True) / np.maximum(inside.sum(axis=1, keepdims=True), 1) * inside
        values -= values.sum(axis=1, keepdims=True) / np.maximum(inside.sum(axis=1, keepdims=True), 1) * inside
        denom = np.sqrt((template ** 2).sum(axis=1) * (values ** 2).sum(axis=1))
        out[start:start + chunk] = np.where(denom > 0, (template * values).sum(axis=1) / np.maximum(denom, 1e-12), 0.0)
    return out



def paramagnetic_sign(convention: str) -> float:
    """The factor that turns dipole correlations into paramagnetic scores: -1 for
    "right-handed" phase (Haacke's SWI convention: veins and haemosiderin have negative phase),
    +1 for "left-handed"."""
    if convention not in CONVENTIONS:
        raise CMBDetectorError(f"Unknown phase convention '{convention}': choose {' or '.join(CONVENTIONS)}.")
    return -1.0 if convention == "right-handed" else 1.0
