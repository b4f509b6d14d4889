"""Head anatomy in MNI152 2009a space (1 mm, axes along R, A, S).

Brain tissue comes from the GM/WM probability maps and brain mask (T1 > 0) that ship inside
nilearn's wheel; deep grey nuclei are added as soft ellipsoids with their iron load, and the
subarachnoid CSF, skull (tables and diploe) and scalp are built as distance shells outside the
brain mask. Everything here is cached and read-only; per-scan maps are built by :func:`scan_maps`.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import CMBDetectorError
from .physics import AIR_CHI_PPM, IRON_CHI_PER_R2S_SLOPE, TISSUES, Contrast
from .randomisation import atrophy_fractions

MARGIN_MM = 26  # room around the brain for CSF, skull and scalp
BOTTOM_PAD_MM = 20  # the template stops at the medulla: extend it downwards
DIST_STEP_MM = 0.25  # quantisation of the outside distance map
ENVELOPE_CLOSING_MM = 10.0  # the skull follows the brain closed by this radius


@dataclass(frozen=True)
class Nucleus:
    """Bilateral (x mirrored) or midline ellipsoid with extra R2* slope (s^-1 T^-1)."""

    name: str
    center: tuple
    radii: tuple
    r2s_slope: float
    yaw_deg: float = 0.0
    bilateral: bool = True


NUCLEI = (
    Nucleus("putamen", (25, 2, 1), (5.5, 14, 9), 5.0, -10),
    Nucleus("globus_pallidus", (19, -3, -1), (4, 8.5, 5), 10.0, -15),
    Nucleus("caudate_head", (13, 13, 9), (5, 8, 8), 3.5),
    Nucleus("caudate_body", (16, -7, 20), (4, 12, 4), 3.0, 15),
    Nucleus("thalamus", (11, -18, 7), (7, 13, 8), 1.5),
    Nucleus("red_nucleus", (5, -20, -9), (3, 3.5, 3.5), 8.0),
    Nucleus("substantia_nigra", (10, -17, -12), (3, 7, 2.5), 9.0, -30),
    Nucleus("dentate", (15, -57, -34), (6, 8, 6), 8.0, 20),
)
DEEP_REGION = ((20, -6, 6), (14, 26, 15))  # basal ganglia, internal capsule, thalamus (bilateral)
INFRATENTORIAL_REGIONS = (((22, -62, -35), (27, 25, 18)), ((0, -60, -30), (9, 24, 16)),
                          ((0, -27, -30), (14, 17, 30)))


@dataclass(frozen=True)
class Atlas:
    """Cached template maps, all ``[k, j, i]`` float32 on a 1 mm RAS grid starting at ``origin``."""

    origin: np.ndarray  # RAS of voxel (0, 0, 0)
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray  # CSF fraction inside the brain mask (ventricles, sulci)
    brain: np.ndarray  # ground-truth brain mask, float32 0/1
    dist_q: np.ndarray  # uint8 distance outside the brain mask, DIST_STEP_MM units
    env_q: np.ndarray  # uint8 distance outside the closed (skull-base smoothed) brain envelope
    sdist: np.ndarray  # signed distance to the brain surface (mm, negative inside)
    dvent: np.ndarray  # distance to the ventricles (mm)
    iron: np.ndarray  # extra R2* slope of the iron-rich nuclei (s^-1 T^-1)
    regions: dict  # location name -> (N, 3) candidate CMB voxel indices (i, j, k)

    @property
    def shape(self):
        return self.gm.shape

    def ras_to_index(self, ras) -> np.ndarray:
        """RAS mm -> continuous (i, j, k) atlas index."""
        return np.asarray(ras, float) - self.origin

    def index_to_ras(self, ijk) -> np.ndarray:
        return np.asarray(ijk, float) + self.origin

    def sample(self, name: str, ras, order: int = 1) -> np.ndarray:
        """Interpolate map ``name`` at (N, 3) RAS points."""
        ijk = self.ras_to_index(np.atleast_2d(ras))
        return ndimage.map_coordinates(getattr(self, name), ijk[:, ::-1].T, order=order, mode="nearest")


def _template_path(kind: str) -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise CMBDetectorError("The synthetic data engine needs the MNI152 maps of the 'nilearn' package "
                               "(pip install nilearn); it is a development dependency only.")
    path = Path(spec.origin).parent / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        raise CMBDetectorError(f"MNI152 template file not found: {path}")
    return path


def _read(kind: str) -> tuple[np.ndarray, np.ndarray]:
    image = sitk.ReadImage(str(_template_path(kind)))
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(np.diag(direction)), 1):
        raise CMBDetectorError("Unexpected MNI152 template orientation.")
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    for axis, sign in enumerate(np.diag(direction) * np.array([-1, -1, 1])):  # LPS -> RAS
        if sign < 0:
            array = np.flip(array, axis=2 - axis)
    origin_lps = np.asarray(image.TransformIndexToPhysicalPoint((0, 0, 0)), float)
    corner = origin_lps + direction @ (np.asarray(image.GetSize()) - 1)
    origin_ras = np.minimum(np.array([-1, -1, 1]) * origin_lps, np.array([-1, -1, 1]) * corner)
    return np.ascontiguousarray(array), origin_ras


def ellipsoid_box(shape, origin, center, radii, yaw_deg=0.0, edge_mm=1.0):
    """Soft (linear ramp) ellipsoid fraction on its bounding box: ``(slices, fraction)``."""
    c = np.asarray(center, float) - origin
    r = np.asarray(radii, float)
    ext = r.max() + 2 * edge_mm
    lo = np.clip(np.floor(c - ext).astype(int), 0, np.asarray(shape)[::-1])
    hi = np.clip(np.ceil(c + ext).astype(int) + 1, 0, np.asarray(shape)[::-1])
    kk, jj, ii = np.meshgrid(*[np.arange(lo[a], hi[a]) - c[a] for a in (2, 1, 0)], indexing="ij")
    t = np.deg2rad(yaw_deg)
    x, y = np.cos(t) * ii + np.sin(t) * jj, -np.sin(t) * ii + np.cos(t) * jj
    rho = np.sqrt((x / r[0]) ** 2 + (y / r[1]) ** 2 + (kk / r[2]) ** 2)
    frac = np.clip(0.5 + (1 - rho) * r.min() / edge_mm, 0, 1).astype(np.float32)
    return tuple(slice(lo[a], hi[a]) for a in (2, 1, 0)), frac


def mirrored(center, bilateral=True):
    """Both hemispheres' copies of an MNI point given with x >= 0."""
    x, y, z = center
    return [(x, y, z), (-x, y, z)] if bilateral and x != 0 else [(x, y, z)]


def region_mask(shape, origin, regions) -> np.ndarray:
    """Union of hard ellipsoids (each mirrored to both hemispheres)."""
    out = np.zeros(shape, bool)
    for center, radii in regions:
        for c in mirrored(center):
            box, frac = ellipsoid_box(shape, origin, c, radii, edge_mm=1e-3)
            out[box] |= frac > 0.5
    return out


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Load, crop, pad and derive all template maps (a few seconds, once per process)."""
    t1, origin = _read("t1")
    gm, wm = (_read(k)[0] / 255.0 for k in ("gm", "wm"))
    brain = t1 > 0
    nz = np.argwhere(brain)
    lo = np.maximum(nz.min(0) - MARGIN_MM, 0)
    hi = nz.max(0) + MARGIN_MM + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    pad = ((BOTTOM_PAD_MM, 0), (0, 0), (0, 0))
    brain, gm, wm = (np.pad(a[crop], pad) for a in (brain, gm, wm))
    origin = origin + lo[::-1] - np.array([0, 0, BOTTOM_PAD_MM])
    stem = _medulla(brain.shape, origin) & ~brain
    brain |= stem
    gm[stem], wm[stem] = 0.25, 0.75
    brain = ndimage.binary_fill_holes(brain)
    gm, wm = gm * brain, wm * brain
    total = np.maximum(gm + wm, 1.0)
    gm, wm = (gm / total).astype(np.float32), (wm / total).astype(np.float32)
    csf = np.where(brain, 1.0 - gm - wm, 0.0).astype(np.float32)
    out_dist = ndimage.distance_transform_edt(~brain)
    in_dist = ndimage.distance_transform_edt(brain)
    sdist = (out_dist - in_dist).astype(np.float32)
    dist_q = np.clip(np.round(out_dist / DIST_STEP_MM), 0, 255).astype(np.uint8)
    closed = ndimage.distance_transform_edt(out_dist <= ENVELOPE_CLOSING_MM) > ENVELOPE_CLOSING_MM
    env_q = np.clip(np.round(ndimage.distance_transform_edt(~closed) / DIST_STEP_MM), 0, 255).astype(np.uint8)
    vent = brain & (csf > 0.6) & (in_dist > 8)
    vent = ndimage.binary_opening(vent, iterations=1)
    dvent = ndimage.distance_transform_edt(~vent).astype(np.float32)
    shape = gm.shape
    iron = np.zeros(shape, np.float32)
    for nuc in NUCLEI:
        for c in mirrored(nuc.center, nuc.bilateral):
            yaw = nuc.yaw_deg if c[0] >= 0 else -nuc.yaw_deg
            box, frac = ellipsoid_box(shape, origin, c, nuc.radii, yaw)
            iron[box] = np.maximum(iron[box], nuc.r2s_slope * frac)
    iron *= brain
    regions = _regions(gm, wm, brain, in_dist, sdist, dvent, origin)
    return Atlas(origin, gm, wm, csf, brain.astype(np.float32), dist_q, env_q, sdist, dvent, iron, regions)


def _medulla(shape, origin, top=(0.0, -43.0, -50.0), bottom=(0.0, -50.0, -95.0), radius=8.0) -> np.ndarray:
    """Cylinder continuing the brainstem below the template's lower edge."""
    z = np.arange(shape[0]) + origin[2]
    t = np.clip((z - top[2]) / (bottom[2] - top[2]), 0, 1)
    inside_z = z <= top[2]
    cy = top[1] + t * (bottom[1] - top[1])
    y = np.arange(shape[1]) + origin[1]
    x = np.arange(shape[2]) + origin[0]
    r2 = (y[None, :, None] - cy[:, None, None]) ** 2 + x[None, None, :] ** 2
    return (r2 < radius ** 2) & inside_z[:, None, None]


def _regions(gm, wm, brain, in_dist, sdist, dvent, origin) -> dict:
    """Voxel lists (i, j, k): CMB candidates per location (solid tissue, >= 1.5 mm from CSF)
    and seeds for veins and calcifications."""
    tissue = ndimage.binary_erosion((gm + wm > 0.9) & brain, iterations=2)
    shape = gm.shape
    zz = np.arange(shape[0])[:, None, None] + origin[2]
    xx = np.arange(shape[2])[None, None, :] + origin[0]
    deep = region_mask(shape, origin, [DEEP_REGION])
    infra = region_mask(shape, origin, INFRATENTORIAL_REGIONS)
    lobar = (gm > 0.3) & (wm > 0.15) & ~deep & ~infra & (in_dist > 3) & (zz > -35)
    masks = {
        "lobar": tissue & lobar,
        "deep": tissue & deep & ~infra,
        "infratentorial": tissue & infra,
        "surface": brain & (sdist > -2) & (zz > -25) & (np.abs(xx) > 6) & ~infra,
        "periventricular": (wm > 0.6) & (dvent > 1.5) & (dvent < 3.5),
        "ventricle": dvent == 0,
    }
    return {name: np.argwhere(mask)[:, ::-1].astype(np.int16) for name, mask in masks.items()}


@dataclass(frozen=True)
class Cavity:
    """Air-filled ellipsoid (sinus, mastoid) in MNI space."""

    name: str
    center: tuple
    radii: tuple
    air_fraction: float = 1.0


CAVITY_SITES = (  # name, MNI centre, radii (mm), probability, air fraction (mastoid cells are spongy)
    ("frontal_sinus", (0, 74, 2), (13, 7, 9), 0.85, 1.0),
    ("sphenoid_sinus", (0, 16, -38), (9, 10, 8), 0.6, 1.0),
    ("mastoid_left", (-50, -38, -48), (6, 9, 7), 0.7, 0.5),
    ("mastoid_right", (50, -38, -48), (6, 9, 7), 0.7, 0.5),
)


def sample_cavities(rng: np.random.Generator) -> list[Cavity]:
    """Random air cavities near the skull base: size and position vary per scan."""
    out = []
    for name, center, radii, prob, air in CAVITY_SITES:
        jitter, scale, present = rng.normal(0, 3, 3), rng.uniform(0.7, 1.3, 3), rng.random() < prob
        if present:
            out.append(Cavity(name, tuple(np.add(center, jitter)), tuple(np.multiply(radii, scale)), air))
    return out


@dataclass(frozen=True)
class HeadShell:
    """Thicknesses (mm) of the layers outside the brain mask."""

    csf: float
    inner_table: float
    diploe: float
    outer_table: float
    scalp: float


def sample_shell(rng: np.random.Generator) -> HeadShell:
    return HeadShell(rng.uniform(1.5, 4.0), rng.uniform(1.2, 2.0), rng.uniform(1.5, 4.0),
                     rng.uniform(1.2, 2.0), rng.uniform(4.0, 7.0))


def _ramp(d: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Partial-volume fraction of the layer [lo, hi) at distance d (1 mm ramps)."""
    return np.clip(np.minimum(d - lo, hi - d) + 0.5, 0, 1)


def _shell_luts(shell: HeadShell, contrast: Contrast) -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables over quantised distance: CSF fraction (from the brain) and skull/scalp
    signal (from the envelope; bone where the envelope fills skull-base concavities)."""
    d = np.arange(256) * DIST_STEP_MM
    csf = np.clip(shell.csf - d + 0.5, 0, 1)
    csf[0] = 0.0  # inside the brain mask the tissue maps take over
    edges = np.cumsum([shell.csf, shell.inner_table, shell.diploe, shell.outer_table, shell.scalp])
    layers = [TISSUES[t].signal(contrast) for t in ("bone", "marrow", "bone", "scalp")]
    outer = sum(v * _ramp(d, lo, hi) for lo, hi, v in zip(edges[:-1], edges[1:], layers))
    outer += layers[0] * np.clip(shell.csf - d + 0.5, 0, 1)
    return csf.astype(np.float32), outer.astype(np.float32)


def _thickness_scale(rng: np.random.Generator, shape) -> np.ndarray:
    """Smooth separable variation (about +-25 %) of skull and scalp thickness."""
    prof = [1 + 0.25 * np.sin(np.linspace(0, rng.uniform(2, 5), n) + rng.uniform(0, 2 * np.pi)) for n in shape]
    return (prof[0][:, None, None] * prof[1][None, :, None] * prof[2][None, None, :]).astype(np.float32)


def _texture(rng: np.random.Generator, shape, amplitude: float = 0.04) -> np.ndarray:
    """Fine multiplicative tissue heterogeneity (2 mm grain) so the template does not look airbrushed."""
    coarse = ndimage.gaussian_filter(rng.standard_normal([(n + 1) // 2 + 1 for n in shape]).astype(np.float32), 0.7)
    coarse *= np.float32(amplitude / max(float(coarse.std()), 1e-6))
    fine = ndimage.zoom(coarse, 2.0, order=1)[:shape[0], :shape[1], :shape[2]]
    return 1 + fine


def scan_maps(atlas: Atlas, contrast: Contrast, shell: HeadShell, cavities, tissue_scale: dict,
              rng: np.random.Generator, atrophy: float = 0.0):
    """Per-scan template-space signal magnitude and susceptibility (ppm) maps; ``atrophy`` > 0
    widens sulci and ventricles (:func:`.randomisation.atrophy_fractions`)."""
    sig = {t: TISSUES[t].signal(contrast) * tissue_scale.get(t, 1.0) for t in ("gm", "wm", "csf")}
    gm, wm, csf_in = atrophy_fractions(atlas.gm, atlas.wm, atlas.csf, atrophy)
    signal = gm * sig["gm"] + wm * sig["wm"] + csf_in * sig["csf"]
    del csf_in
    csf_lut, outer_lut = _shell_luts(shell, contrast)
    csf = csf_lut[atlas.dist_q]
    env = np.clip(atlas.env_q * _thickness_scale(rng, atlas.shape), 0, 255).astype(np.uint8)
    signal += csf * sig["csf"] + (1 - csf) * (atlas.dist_q > 0) * outer_lut[env]
    del csf, env
    signal *= _texture(rng, atlas.shape)
    box = _nonzero_box(atlas.iron)
    signal[box] *= np.exp(-contrast.te_s * contrast.b0_t * atlas.iron[box])
    chi = gm * np.float32(TISSUES["gm"].chi_ppm) + wm * np.float32(TISSUES["wm"].chi_ppm)
    del gm, wm
    chi[box] += IRON_CHI_PER_R2S_SLOPE * atlas.iron[box]
    min_dist = (shell.csf + 1.0) / DIST_STEP_MM
    for cav in cavities:
        box, air = ellipsoid_box(atlas.shape, atlas.origin, cav.center, cav.radii)
        air *= (atlas.dist_q[box] > min_dist) * np.float32(cav.air_fraction)
        signal[box] *= 1 - air
        chi[box] += AIR_CHI_PPM * air
    return signal.astype(np.float32), chi.astype(np.float32)


def _nonzero_box(array: np.ndarray):
    nz = np.argwhere(array > 0)
    return tuple(slice(a, b + 1) for a, b in zip(nz.min(0), nz.max(0)))
