"""MR physics of the synthetic scans: tissue relaxation, susceptibility fields and dephasing.

Conventions: susceptibility ``chi`` in ppm relative to CSF/water, B0 along scanner +S,
phase ``phi = -gamma * dB * TE`` (right-handed: paramagnetic sources along B0 give negative
phase, as in Haacke's SWI), fields ``dB`` in ppm of B0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

GAMMA = 2.675222e8  # proton gyromagnetic ratio, rad s^-1 T^-1
B0_DIR_RAS = np.array([0.0, 0.0, 1.0])  # main field along scanner S


@dataclass(frozen=True)
class Contrast:
    """Sequence parameters that set tissue contrast of a spoiled gradient echo."""

    b0_t: float
    te_s: float
    tr_s: float
    flip_deg: float

    def saturation(self, t1_3t_s: float, field_dependent: bool = True) -> float:
        """Steady-state spoiled-GRE T1 factor sin(a)(1 - E1) / (1 - cos(a) E1)."""
        t1 = t1_3t_s * (self.b0_t / 3.0) ** 0.33 if field_dependent else t1_3t_s
        e1, a = np.exp(-self.tr_s / t1), np.deg2rad(self.flip_deg)
        return float(np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1))


@dataclass(frozen=True)
class Tissue:
    """Proton density, R2* = r2s0 + r2s_slope * B0 (s^-1), T1 at 3 T (s) and susceptibility (ppm)."""

    m0: float
    r2s0: float
    r2s_slope: float
    t1_3t_s: float
    chi_ppm: float = 0.0

    def signal(self, c: Contrast) -> float:
        """Spoiled gradient-echo magnitude M0 * T1-saturation * exp(-TE R2*)."""
        r2s = self.r2s0 + self.r2s_slope * c.b0_t
        return self.m0 * c.saturation(self.t1_3t_s, self.t1_3t_s < 2.5) * float(np.exp(-c.te_s * r2s))


TISSUES = {
    "gm": Tissue(0.82, 8.0, 3.2, 1.6, 0.01),
    "wm": Tissue(0.70, 8.0, 4.7, 1.0, -0.03),
    "csf": Tissue(1.00, 0.5, 0.3, 3.0),
    "bone": Tissue(0.04, 300.0, 100.0, 0.5),
    "marrow": Tissue(0.70, 20.0, 10.0, 0.4),
    "scalp": Tissue(0.75, 15.0, 8.0, 0.6),
    "blood": Tissue(0.85, 6.0, 0.0, 1.9),
}
IRON_CHI_PER_R2S_SLOPE = 0.0165  # ppm of iron susceptibility per s^-1 T^-1 of extra R2*
AIR_CHI_PPM = 9.4


def venous_signal(c: Contrast) -> float:
    """Deoxygenated venous blood (Y ~ 0.6): R2* grows roughly with B0 squared."""
    return TISSUES["blood"].signal(c) * float(np.exp(-c.te_s * 6.0 * c.b0_t ** 2))


def phase_per_ppm(b0_t: float, te_s: float) -> float:
    """Phase (rad) accumulated per ppm of field offset, with the right-handed sign."""
    return -GAMMA * b0_t * te_s * 1e-6


def dipole_fields(chi_ppm: np.ndarray, spacing_kji, b0_dir_kji, lowpass_sigma_mm: float):
    """Field offset (ppm) of a susceptibility map by k-space dipole convolution.

    Returns the full field and its Gaussian low-pass part (what SWI high-pass filtering removes).
    """
    shape = chi_ppm.shape
    freqs = [scipy.fft.fftfreq(n, d) for n, d in zip(shape[:2], spacing_kji[:2])]
    freqs.append(scipy.fft.rfftfreq(shape[2], spacing_kji[2]))
    kk, kj, ki = np.meshgrid(*[f.astype(np.float32) for f in freqs], indexing="ij", sparse=True)
    k2 = kk * kk + kj * kj + ki * ki
    kb = kk * b0_dir_kji[0] + kj * b0_dir_kji[1] + ki * b0_dir_kji[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.float32(1 / 3) - kb * kb / k2
    kernel[0, 0, 0] = 0.0
    spectrum = scipy.fft.rfftn(chi_ppm.astype(np.float32, copy=False))
    spectrum *= kernel
    full = scipy.fft.irfftn(spectrum, s=shape).astype(np.float32)
    spectrum *= np.exp(np.float32(-2 * np.pi ** 2 * lowpass_sigma_mm ** 2) * k2)
    low = scipy.fft.irfftn(spectrum, s=shape).astype(np.float32)
    return full, low


def gradient_dephasing(field_ppm: np.ndarray, spacing_kji, b0_t: float, te_s: float) -> np.ndarray:
    """Intra-voxel dephasing of a linear field gradient: product of |sinc| over the voxel axes."""
    scale = abs(phase_per_ppm(b0_t, te_s)) / (2 * np.pi)
    out = np.ones(field_ppm.shape, np.float32)
    for axis in range(3):
        grad = np.gradient(field_ppm, axis=axis)  # ppm per voxel = phase span across a voxel
        out *= np.abs(np.sinc(grad * np.float32(scale)))
    return out


def sphere_field_ppm(offset_ras: np.ndarray, radius_mm: float, dchi_ppm: float, gradient: bool = False):
    """Field (ppm) of a magnetised sphere at RAS offsets from its centre; zero inside.

    With ``gradient`` also returns its spatial gradient (ppm/mm, last axis R, A, S).
    """
    r2 = np.maximum(np.einsum("...c,...c->...", offset_ras, offset_ras), 1e-12)
    inside = r2 < radius_mm ** 2
    k = dchi_ppm * radius_mm ** 3 / 3.0
    z2 = offset_ras[..., 2] ** 2
    inv3 = r2 ** -1.5
    field = np.where(inside, 0.0, k * (3 * z2 / r2 - 1) * inv3)
    if not gradient:
        return field
    inv5, inv7 = inv3 / r2, inv3 / r2 ** 2
    common = k * (3 * inv5 - 15 * z2 * inv7)
    grad = offset_ras * common[..., None]
    grad[..., 2] += k * 6 * offset_ras[..., 2] * inv5
    return field, np.where(inside[..., None], 0.0, grad)


def sphere_block(ijk_to_ras: np.ndarray, shape_kji, center_ras, radius_mm: float, dchi_ppm: float,
                 inside_signal: float, b0_t: float, te_s: float):
    """Complex signal multiplier of a susceptibility sphere around its centre.

    The sphere's own signal and the dephasing of the surrounding tissue are averaged over a
    fine sub-voxel grid (ceil(spacing / 0.2 mm), 4..24 points per axis) close to the sphere;
    further out only the phase at voxel centres is applied.
    Returns ``(slices, block)`` (``block`` multiplies ``image[slices]``) or ``None`` if outside.
    """
    mat = ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(mat, axis=0)
    center = np.asarray(center_ras, float)
    phi0 = abs(phase_per_ppm(b0_t, te_s) * dchi_ppm) * 2 / 3  # pole phase at the surface
    r_out = min(25.0, radius_mm * max(1.5, (phi0 / 0.05) ** (1 / 3)))
    h = spacing.max()
    r_in = max(radius_mm + h, (3 * phi0 * radius_mm ** 3 * h / 0.3) ** 0.25) + 0.87 * h
    c_ijk = np.linalg.solve(mat, center - ijk_to_ras[:3, 3])
    lo = np.maximum(np.floor(c_ijk - r_out / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(c_ijk + r_out / spacing).astype(int) + 1, np.asarray(shape_kji)[::-1])
    if np.any(hi <= lo):
        return None
    kk, jj, ii = np.meshgrid(*[np.arange(lo[a], hi[a]) for a in (2, 1, 0)], indexing="ij")
    box_shape = kk.shape
    idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], -1).astype(float)
    offset = idx @ mat.T + (ijk_to_ras[:3, 3] - center)  # (M, 3), [k, j, i] raveled
    scale = phase_per_ppm(b0_t, te_s)
    block = np.exp(1j * scale * sphere_field_ppm(offset, radius_mm, dchi_ppm))
    near = np.flatnonzero(np.einsum("mc,mc->m", offset, offset) < r_in ** 2)
    n_sub = np.clip(np.ceil(spacing / 0.2), 4, 24).astype(int)
    sub = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in n_sub], indexing="ij"), -1)
    sub = sub.reshape(-1, 3) @ mat.T
    axes = mat / spacing  # unit vectors of the voxel axes (RAS)
    sub_step = spacing / n_sub
    for chunk in np.array_split(near, max(1, len(near) * len(sub) // 400_000)):
        pts = offset[chunk][:, None, :] + sub[None]
        field, grad = sphere_field_ppm(pts, radius_mm, dchi_ppm, gradient=True)
        # residual dephasing within each sub-sample (avoids aliasing of steep phase near the surface)
        blur = np.prod(np.sinc((grad @ axes) * (scale * sub_step / (2 * np.pi))), axis=-1)
        inside = np.einsum("...c,...c->...", pts, pts) < radius_mm ** 2
        block[chunk] = np.where(inside, inside_signal, blur * np.exp(1j * scale * field)).mean(axis=1)
    slices = tuple(slice(a, b) for a, b in zip(lo[::-1], hi[::-1]))
    return slices, block.reshape(box_shape).astype(np.complex64)


def swi_phase_mask(phase: np.ndarray, power: int = 4) -> np.ndarray:
    """Haacke's negative-phase mask raised to ``power`` (1 for phase >= 0)."""
    mask = np.clip(1.0 + phase / np.pi, 0.0, 1.0)
    mask[phase >= 0] = 1.0
    return (mask ** power).astype(np.float32)
