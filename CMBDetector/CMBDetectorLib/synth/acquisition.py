"""Acquisition protocols (field, TE, 3D SWI or 2D GRE), scan geometry, bias field and noise."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import CMBDetectorError
from ..geometry import Geometry
from ..trained_range import TRAINED_FIELDS_T, TRAINED_SLICES_MM, TRAINED_TE_MS
from .physics import Contrast

KINDS = ("swi3d", "gre2d")
FIELDS = TRAINED_FIELDS_T


@dataclass(frozen=True)
class AcquisitionProtocol:
    """How a synthetic scan is acquired; ``spacing_mm`` and ``shape`` are (i, j, k)."""

    field_strength_t: float = 3.0
    te_ms: float = 20.0
    kind: str = "swi3d"
    spacing_mm: tuple = (0.9, 0.9, 1.5)
    shape: tuple | None = None
    snr: float = 30.0
    tr_ms: float | None = None  # None: 28 ms (3 T) / 48 ms (1.5 T) for swi3d, 650 ms for gre2d
    flip_deg: float | None = None  # None: 10 deg for swi3d, 20 deg for gre2d

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CMBDetectorError(f"Unknown acquisition kind '{self.kind}'; use one of {KINDS}.")
        if not (0.2 <= self.field_strength_t <= 12 and 1 <= self.te_ms <= 100 and self.snr > 0):
            raise CMBDetectorError("Acquisition protocol out of range (B0 0.2-12 T, TE 1-100 ms, SNR > 0).")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise CMBDetectorError("spacing_mm must be three positive voxel sizes (i, j, k).")

    @property
    def te_s(self) -> float:
        return self.te_ms * 1e-3

    @property
    def contrast(self) -> Contrast:
        """Field, TE, TR and flip angle (defaults per kind) for the signal equation."""
        swi = self.kind == "swi3d"
        tr = self.tr_ms if self.tr_ms is not None else (28.0 if self.field_strength_t >= 2 else 48.0) if swi else 650.0
        flip = self.flip_deg if self.flip_deg is not None else 10.0 if swi else 20.0
        return Contrast(self.field_strength_t, self.te_s, tr * 1e-3, flip)

    @property
    def slice_subsamples(self) -> int:
        """Sub-slices averaged per slice to model thick-slice partial volume and dephasing."""
        return max(1, int(np.ceil(self.spacing_mm[2] / 1.6 - 1e-6)))

    def grid_shape(self) -> tuple:
        """(i, j, k) matrix: ``shape`` or a default covering the head."""
        if self.shape is not None:
            return tuple(int(n) for n in self.shape)
        sp = self.spacing_mm
        n_in_plane = [min(256, 2 * int(round(230 / s / 2))) for s in sp[:2]]
        coverage, lo, hi = (140, 60, 140) if self.kind == "swi3d" else (155, 30, 40)
        return (*n_in_plane, int(np.clip(round(coverage / sp[2]), lo, hi)))


def sample_protocol(rng: np.random.Generator, kind: str | None = None,
                    field_strength_t: float | None = None) -> AcquisitionProtocol:
    """Draw a clinical-looking protocol: 1.5/3 T, TE 15-40 ms, 3D SWI or thick-slice 2D GRE."""
    b0 = float(field_strength_t if field_strength_t is not None else rng.choice(FIELDS, p=[0.4, 0.6]))
    kind = kind or ("swi3d" if rng.random() < 0.6 else "gre2d")
    high = b0 >= 2.0
    if kind == "swi3d":
        te = rng.uniform(15, 30) if high else rng.uniform(25, 40)
        s_ip = rng.uniform(0.8, 1.0)
        s_k = float(rng.choice([1.0, 1.2, 1.5, 1.6, 2.0]))
        n_ip = min(256, 2 * int(round(rng.uniform(220, 240) / s_ip / 2)))
        n_k = int(np.clip(round(rng.uniform(110, 150) / s_k), 60, 140))
        snr = rng.uniform(25, 45) if high else rng.uniform(15, 30)
        tr = rng.uniform(25, 35) if high else rng.uniform(40, 50)
        flip = rng.uniform(8, 13)
    else:
        te = rng.uniform(15, 30)
        s_ip = rng.uniform(0.86, 0.94)
        s_k = float(rng.choice([4.0, 5.0]))
        n_ip = 256
        n_k = int(np.clip(round(rng.uniform(140, 175) / s_k), 30, 40))
        snr = rng.uniform(30, 55) if high else rng.uniform(20, 40)
        tr = rng.uniform(500, 800)
        flip = rng.uniform(15, 25)
    return AcquisitionProtocol(b0, round(float(te), 2), kind, (round(s_ip, 3), round(s_ip, 3), s_k),
                               (n_ip, n_ip, n_k), round(float(snr), 1), round(float(tr), 1), round(float(flip), 1))


# what sample_protocol draws: the ranges the shipped models were trained on (..trained_range)
TRAINING_SLICES_MM = {"swi3d": TRAINED_SLICES_MM["3D SWI"], "gre2d": TRAINED_SLICES_MM["2D GRE"]}
TRAINING_TE_MS = TRAINED_TE_MS
STRESS_FAMILY = (  # B0 (T), TE range (ms), slice range (mm): outside every training range
    (7.0, (8.0, 12.0), (2.5, 3.0)),
    (3.0, (45.0, 55.0), (2.5, 3.0)),
)


MID_SLICES_MM = (2.2, 3.8)  # between the two trained regimes (validation draws only)


def with_slices(protocol: AcquisitionProtocol, slice_mm: float) -> AcquisitionProtocol:
    """The same protocol with another slice thickness, covering the same extent along k."""
    old = protocol.spacing_mm[2]
    shape = protocol.grid_shape()
    n_k = max(1, int(round(shape[2] * old / slice_mm)))
    return replace(protocol, spacing_mm=(*protocol.spacing_mm[:2], float(slice_mm)), shape=(*shape[:2], n_k))


def sample_mid_slice_protocol(rng: np.random.Generator) -> AcquisitionProtocol:
    """A 3D SWI protocol at the training fields and TEs with slices between the trained regimes
    (``MID_SLICES_MM``): a validation draw for slice thicknesses no model was trained on."""
    slice_mm = round(float(rng.uniform(*MID_SLICES_MM)), 1)
    return with_slices(sample_protocol(rng, kind="swi3d"), slice_mm)


def in_training_ranges(protocol: AcquisitionProtocol) -> bool:
    """Whether ``sample_protocol`` can draw this protocol's field, TE and slice thickness."""
    lo, hi = TRAINING_SLICES_MM[protocol.kind]
    return (protocol.field_strength_t in FIELDS and TRAINING_TE_MS[0] <= protocol.te_ms <= TRAINING_TE_MS[1]
            and lo <= protocol.spacing_mm[2] <= hi)


SHIFTED_FAMILY = (  # validation draws only: outside every training range and every stress family
    (5.0, (18.0, 24.0), (2.1, 2.4)),
    (1.5, (45.0, 60.0), (3.2, 3.8)),
)


def _family_protocol(rng: np.random.Generator, families) -> AcquisitionProtocol:
    """A 3D SWI protocol of one of ``families`` (B0, TE range, slice range each), drawn at random."""
    b0, (te0, te1), (s0, s1) = families[int(rng.integers(len(families)))]
    te = rng.uniform(te0, te1)
    s_ip = rng.uniform(0.8, 1.0)
    s_k = float(np.round(rng.uniform(s0, s1), 1))
    n_ip = min(256, 2 * int(round(rng.uniform(220, 240) / s_ip / 2)))
    n_k = int(np.clip(round(rng.uniform(110, 150) / s_k), 36, 60))
    snr = rng.uniform(20, 45)
    tr = rng.uniform(25, 35)
    flip = rng.uniform(8, 13)
    return AcquisitionProtocol(b0, round(float(te), 2), "swi3d", (round(s_ip, 3), round(s_ip, 3), s_k),
                               (n_ip, n_ip, n_k), round(float(snr), 1), round(float(tr), 1), round(float(flip), 1))


def sample_stress_protocol(rng: np.random.Generator) -> AcquisitionProtocol:
    """A protocol of the stress test family: 7 T short TE or 3 T long TE, 3D SWI with 2.5-3 mm
    slices; field or TE and the slice thickness all lie outside the training ranges."""
    return _family_protocol(rng, STRESS_FAMILY)


def sample_shifted_protocol(rng: np.random.Generator) -> AcquisitionProtocol:
    """A protocol of the shifted validation family (``SHIFTED_FAMILY``): 5 T or 1.5 T long-TE 3D
    SWI, outside the training ranges as the stress family is, and outside the stress family too, so
    that choices made for scans unlike the training ones never see the stress protocols."""
    return _family_protocol(rng, SHIFTED_FAMILY)


def scan_geometry(protocol: AcquisitionProtocol, shape_ijk, direction, center_ras) -> Geometry:
    """Geometry of a grid centred on ``center_ras`` with the given RAS direction."""
    spacing = np.asarray(protocol.spacing_mm, float)
    half = (np.asarray(shape_ijk, float) - 1) / 2
    origin = np.asarray(center_ras, float) - direction @ (spacing * half)
    return Geometry.from_parts(spacing, origin, direction)


def fine_geometry(geometry: Geometry, n_sub: int) -> Geometry:
    """The same grid with each slice split into ``n_sub`` sub-slices."""
    m = geometry.ijk_to_ras.copy()
    m[:3, 2] /= n_sub
    m[:3, 3] += geometry.ijk_to_ras[:3, 2] * (0.5 / n_sub - 0.5)
    return Geometry(m)


def _smooth_profile(rng, n: int, amplitude: float) -> np.ndarray:
    """Random low-order cosine series on [0, 1], length n."""
    x = np.linspace(0, 1, n)
    coefs = rng.normal(0, amplitude, 3) / np.arange(1, 4)
    return sum(c * np.cos(np.pi * (o + 1) * x + rng.uniform(0, np.pi)) for o, c in enumerate(coefs))


def bias_field(rng: np.random.Generator, shape_kji, b0_t: float, scale: float = 1.0) -> np.ndarray:
    """Smooth receive-coil bias: separable low-order profiles times a central (dielectric) bump;
    ``scale`` multiplies both amplitudes."""
    amp = (0.12 if b0_t < 2 else 0.2) * scale
    prof = [np.exp(_smooth_profile(rng, n, amp)).astype(np.float32) for n in shape_kji]
    centre = np.float32(rng.uniform(0.0, 0.25 if b0_t >= 2 else 0.05) * scale)
    width = rng.uniform(0.35, 0.5)
    bump = [np.exp(-((np.linspace(-0.5, 0.5, n) / width) ** 2)).astype(np.float32) for n in shape_kji]
    field = 1 + centre * bump[0][:, None, None] * bump[1][None, :, None] * bump[2][None, None, :]
    field *= prof[0][:, None, None] * prof[1][None, :, None]
    field *= prof[2][None, None, :]
    return field


def add_rician_noise(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Complex Gaussian noise on a complex signal (magnitude becomes Rician)."""
    noise = rng.standard_normal((2, *signal.shape), dtype=np.float32) * np.float32(sigma)
    out = signal.astype(np.complex64, copy=True)
    out.real += noise[0]
    out.imag += noise[1]
    return out
