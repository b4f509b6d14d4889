"""Synthetic scan generation: anatomy -> susceptibility -> complex signal -> acquisition."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ..geometry import Geometry
from .acquisition import (AcquisitionProtocol, add_rician_noise, bias_field, fine_geometry, sample_protocol,
                          scan_geometry)
from .anatomy import Atlas, load_atlas, sample_cavities, sample_shell, scan_maps
from .objects import (Sphere, SyntheticObject, iron_nuclei, onto_veins, sample_calcifications,
                      sample_cmb_count, sample_cmbs, shrink_some)
from .physics import (TISSUES, dipole_fields, gradient_dephasing, phase_per_ppm, sphere_block, swi_phase_mask,
                      venous_signal)
from .pose import GridMapping, HeadPose, sample_direction, sample_pose
from .randomisation import OFF, Randomisation, gibbs_ringing, motion_ghosts
from .vessels import VENOUS_CHI_PPM, Vessel, render_tubes, sample_vessels, through_slice_veins, tube_segments

FOV_CENTER_MNI = np.array([0.0, -17.0, 8.0])
LOWPASS_SIGMA_MM = 4.0  # scale of the background field removed by SWI high-pass filtering
SLAB = 16  # fine slices interpolated at a time


@dataclass
class SyntheticScan:
    """A synthetic SWI / T2*-GRE scan with its ground truth; arrays are ``[k, j, i]``."""

    magnitude: np.ndarray
    phase: np.ndarray | None
    labels: np.ndarray
    brain_mask: np.ndarray
    geometry: Geometry
    objects: list
    protocol: AcquisitionProtocol
    skull_stripped: bool = False
    seed: int = 0
    vessels: list[Vessel] = field(default_factory=list)  # the veins' centre lines in RAS mm (evaluation)
    noise_sigma: float = 0.0  # the complex noise's standard deviation per component (image units)
    complex_image: np.ndarray | None = None  # the final complex image (``keep_complex``)

    @property
    def cmbs(self) -> list[SyntheticObject]:
        return [o for o in self.objects if o.is_cmb]

    def cmb_truth(self) -> tuple[np.ndarray, np.ndarray]:
        """Microbleed centres (N, 3) in RAS mm and apparent diameters (N,) in mm."""
        return (np.array([o.center_ras for o in self.cmbs], dtype=float).reshape(-1, 3),
                np.array([o.diameter_mm for o in self.cmbs], dtype=float))


@dataclass(frozen=True)
class _Placement:
    """How template space lands on the scan's fine (sub-slice) grid."""

    mapping: GridMapping
    fine: Geometry
    n_sub: int
    scale: float

    def to_ras(self, atlas: Atlas, mni) -> np.ndarray:
        ijk = self.mapping.template_to_ijk(atlas.ras_to_index(np.atleast_2d(mni)))
        return self.fine.ijk_to_ras_points(ijk)


@dataclass(frozen=True)
class Revisit:
    """A later visit of the same head: the head (and the slice prescription, which follows it)
    moves rigidly in the scanner, ``p_followup = rotation @ p_baseline + translation``; noise,
    bias field and gain are drawn anew from ``seed``, which also places ``n_new_cmb`` extra
    microbleeds that do not overlap the baseline ones."""

    rotation: np.ndarray
    translation: np.ndarray
    seed: int
    n_new_cmb: int = 0

    def apply(self, ras) -> np.ndarray:
        return np.atleast_2d(ras) @ np.asarray(self.rotation).T + np.asarray(self.translation)


def generate_scan(seed: int, protocol: AcquisitionProtocol | None = None, n_cmb: int | None = None,
                  skull_stripped: bool | None = None, shape=None,
                  randomisation: Randomisation = OFF, revisit: Revisit | None = None, noise: bool = True,
                  microbleed_signal: bool = True, keep_complex: bool = False) -> SyntheticScan:
    """Generate one reproducible synthetic scan (same seed -> identical arrays).

    ``protocol`` None draws one; ``n_cmb`` None draws a skewed count (0-30); ``skull_stripped``
    None picks at random; ``shape`` (i, j, k) overrides the protocol's matrix;
    ``randomisation`` sets the domain-randomisation knobs (:mod:`.randomisation`; OFF: none);
    ``revisit`` scans the same head again at a later visit (see :class:`Revisit`). For analysis
    (:mod:`..evaluation.detectability`): ``noise`` False leaves the acquisition noise out,
    ``microbleed_signal`` False leaves the microbleeds' signal out (their truth and every other
    draw stay), ``keep_complex`` keeps the final complex image before the SWI mask.
    """
    streams = np.random.default_rng(seed).spawn(7)  # independent streams: anatomy does not depend on the grid
    r_case, r_pose, r_anatomy, r_veins, r_objects, r_acquisition, r_knobs = streams
    knobs = randomisation.draw(r_knobs)
    drawn = sample_protocol(r_case)
    protocol = protocol or drawn
    if shape is not None:
        protocol = replace(protocol, shape=tuple(int(n) for n in shape))
    strip_draw, count = r_case.random(), sample_cmb_count(r_case)
    skull_stripped = bool(strip_draw < 0.3) if skull_stripped is None else bool(skull_stripped)
    n_cmb = count if n_cmb is None else int(n_cmb)
    atlas = load_atlas()
    contrast = protocol.contrast
    b0, te = contrast.b0_t, contrast.te_s

    shape_ijk = protocol.grid_shape()
    pose = sample_pose(r_pose)
    pose = replace(pose, scale=pose.scale * knobs.head_scale)
    direction = sample_direction(r_pose)
    center = pose.to_scanner(FOV_CENTER_MNI)[0] + r_pose.normal(0, 1, 3) * [4, 4, 5]
    if knobs.fov_fraction < 1:  # partial-brain slab, moved up or down inside the head
        n_k = max(8, int(round(shape_ijk[2] * knobs.fov_fraction)))
        center = center + direction[:, 2] * knobs.fov_shift * (shape_ijk[2] - n_k) / 2 * protocol.spacing_mm[2]
        shape_ijk = (shape_ijk[0], shape_ijk[1], n_k)
        protocol = replace(protocol, shape=shape_ijk)
    if revisit is not None:
        rotation = np.asarray(revisit.rotation, float)
        pose = HeadPose(rotation @ pose.rotation, pose.scale, revisit.apply(pose.center_scan)[0])
        direction, center = rotation @ direction, revisit.apply(center)[0]
        r_acquisition, r_new = np.random.default_rng(revisit.seed).spawn(2)
    geometry = scan_geometry(protocol, shape_ijk, direction, center)
    n_sub = protocol.slice_subsamples
    fine = fine_geometry(geometry, n_sub)
    fine_shape = (shape_ijk[2] * n_sub, shape_ijk[1], shape_ijk[0])
    mapping = GridMapping(fine, fine_shape, pose, atlas.origin, r_pose, r_pose.uniform(1.5, 3.5) * knobs.warp_scale,
                          center)
    place = _Placement(mapping, fine, n_sub, float(np.prod(pose.scale) ** (1 / 3)))

    shell, cavities = sample_shell(r_anatomy), sample_cavities(r_anatomy)
    tissue_scale = {t: r_anatomy.uniform(0.93, 1.07) for t in ("gm", "wm", "csf")}
    signal_map, chi_map = scan_maps(atlas, contrast, shell, cavities, tissue_scale, r_anatomy, knobs.atrophy)
    signal, chi, brain = _resample(mapping, (signal_map, chi_map, atlas.brain))
    del signal_map, chi_map

    vessels = sample_vessels(r_veins, atlas, knobs.medullary_density)
    vessels += through_slice_veins(knobs.rng, atlas, knobs.through_slice_veins)
    dchi_vein = r_veins.uniform(*VENOUS_CHI_PPM)
    vessels_ras = _map_vessels(vessels, atlas, place)
    cplx = _add_veins(signal, chi, vessels_ras, place, contrast, dchi_vein)
    del signal
    cplx, low = _apply_field(cplx, chi, fine, n_sub, b0, te)
    brain_mask = _average_slices(brain, n_sub) > 0.5
    del chi, brain

    spheres = sample_cmbs(r_objects, atlas, n_cmb) + sample_calcifications(r_objects, atlas)
    spheres += sample_cmbs(knobs.rng, atlas, knobs.cmb_like_calcifications, "calcification", tuple(spheres))
    spheres = shrink_some(knobs.rng, spheres, knobs.small_cmb_fraction)
    spheres = onto_veins(knobs.rng, spheres, vessels, atlas, knobs.vein_contact)
    if revisit is not None and revisit.n_new_cmb:
        spheres += sample_cmbs(r_new, atlas, revisit.n_new_cmb, avoid=tuple(spheres))
    labels = np.zeros(cplx.shape, np.uint16)
    objects = _add_spheres(cplx, labels, spheres, atlas, place, geometry, b0, te, microbleed_signal)
    objects += _mimic_objects(atlas, place, geometry, cplx.shape, vessels, cavities, b0, te, dchi_vein)

    gain = r_acquisition.uniform(600, 1000) / TISSUES["csf"].signal(contrast)
    cplx *= bias_field(r_acquisition, cplx.shape, b0, knobs.bias_scale) * np.float32(gain)
    sigma = gain * TISSUES["wm"].signal(contrast) / (protocol.snr * knobs.snr_scale)
    if noise:
        cplx = add_rician_noise(r_acquisition, cplx, sigma)
    cplx = motion_ghosts(knobs.rng, gibbs_ringing(cplx, knobs.kspace_kept), knobs.motion_rad)
    cplx *= np.exp(np.complex64(-1j * phase_per_ppm(b0, te)) * low)
    magnitude = np.abs(cplx)
    phase = np.angle(cplx).astype(np.float32)
    if protocol.kind == "swi3d":
        magnitude *= swi_phase_mask(phase)
    if skull_stripped:
        magnitude *= brain_mask
        phase *= brain_mask
    return SyntheticScan(magnitude.astype(np.float32), phase, labels, brain_mask, geometry, objects,
                         protocol, skull_stripped, int(seed), vessels_ras, float(sigma),
                         cplx if keep_complex else None)


def _resample(mapping: GridMapping, maps) -> list[np.ndarray]:
    """Trilinear interpolation of template maps on the fine grid, slab by slab."""
    nk = mapping.shape[0]
    out = [np.empty(mapping.shape, np.float32) for _ in maps]
    for k0 in range(0, nk, SLAB):
        k1 = min(nk, k0 + SLAB)
        coords = mapping.template_coords(k0, k1)
        for src, dst in zip(maps, out):
            ndimage.map_coordinates(src, coords, output=dst[k0:k1], order=1, mode="constant", cval=0.0,
                                    prefilter=False)
    return out


def _map_vessels(vessels: list[Vessel], atlas: Atlas, place: _Placement) -> list[Vessel]:
    pts = place.to_ras(atlas, np.concatenate([v.points for v in vessels]))
    out, start = [], 0
    for v in vessels:
        out.append(Vessel(v.kind, pts[start:start + len(v.points)], v.radii * place.scale))
        start += len(v.points)
    return out


def _add_veins(signal, chi, vessels_ras, place, contrast, dchi_vein) -> np.ndarray:
    """Blend venous blood into the tissue signal (two compartments) and the susceptibility map."""
    segs, radii = tube_segments(vessels_ras)
    frac, orient = render_tubes(place.fine.ijk_to_ras, signal.shape, segs, radii)
    chi += frac * np.float32(dchi_vein)
    inner = np.exp(np.complex64(1j * phase_per_ppm(contrast.b0_t, contrast.te_s) * dchi_vein / 6) * orient)
    return signal * (1 - frac) + frac * np.float32(venous_signal(contrast)) * inner


def _apply_field(cplx, chi, fine: Geometry, n_sub: int, b0, te):
    """Dephase the fine-grid signal by the susceptibility field and average the sub-slices."""
    spacing_kji = fine.spacing[::-1]
    b0_kji = fine.direction[2, ::-1]
    full, low = dipole_fields(chi, spacing_kji, b0_kji, LOWPASS_SIGMA_MM)
    cplx *= gradient_dephasing(full, spacing_kji, b0, te)
    cplx *= np.exp(np.complex64(1j * phase_per_ppm(b0, te)) * full)
    del full
    return _average_slices(cplx, n_sub), _average_slices(low, n_sub)


def _average_slices(array: np.ndarray, n_sub: int) -> np.ndarray:
    """Thick slice = mean of its sub-slices (complex data: through-slice dephasing)."""
    if n_sub == 1:
        return array
    return array.reshape(array.shape[0] // n_sub, n_sub, *array.shape[1:]).mean(axis=1, dtype=array.dtype)


def _in_fov(geometry: Geometry, shape_kji, center) -> bool:
    ijk = geometry.ras_to_ijk_points(center)[0]
    return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.asarray(shape_kji)[::-1] - 0.5))


def _add_spheres(cplx, labels, spheres: list[Sphere], atlas, place, geometry: Geometry, b0, te,
                 microbleed_signal: bool = True):
    """Multiply CMB / calcification signal into the image (the CMBs' only when
    ``microbleed_signal``), label CMBs, estimate apparent sizes."""
    out = []
    for sph in spheres:
        center = place.to_ras(atlas, sph.center_mni)[0]
        if not _in_fov(geometry, cplx.shape, center):
            continue
        radius = sph.radius_mm * place.scale
        res = sphere_block(geometry.ijk_to_ras, cplx.shape, center, radius, sph.dchi_ppm, sph.inside_signal, b0, te)
        if res is None:
            continue
        box, block = res
        if sph.kind != "cmb" or microbleed_signal:
            cplx[box] *= block
        label = 0
        if sph.kind == "cmb":
            label = len([o for o in out if o.is_cmb]) + 1
            _label_sphere(labels, geometry, center, radius, label)
        out.append(SyntheticObject(sph.kind, tuple(float(v) for v in center), _apparent_diameter(block, geometry),
                                   2 * radius, sph.kind == "cmb", label, sph.location,
                                   tuple(float(v) for v in sph.center_mni)))
    return out


def _apparent_diameter(block: np.ndarray, geometry: Geometry) -> float:
    """Equivalent-circle diameter of the visible dark spot (signal < 70 %) on its darkest slice,
    at least that of the integrated signal loss (so faint thick-slice spots keep a size)."""
    mag = np.abs(block)
    pixel = geometry.spacing[0] * geometry.spacing[1]
    area = max((mag < 0.7).sum(axis=(1, 2)).max(), (1 - mag).sum(axis=(1, 2)).max()) * pixel
    return float(2 * np.sqrt(max(area, 0) / np.pi))


def _label_sphere(labels, geometry: Geometry, center, radius, value):
    """Voxels whose centre lies inside the true sphere (at least the voxel holding the centre)."""
    ijk = geometry.ras_to_ijk_points(center)[0]
    ext = radius / geometry.spacing + 1
    lo = np.maximum(np.floor(ijk - ext).astype(int), 0)
    hi = np.minimum(np.ceil(ijk + ext).astype(int) + 1, np.asarray(labels.shape)[::-1])
    kk, jj, ii = np.meshgrid(*[np.arange(lo[a], hi[a]) for a in (2, 1, 0)], indexing="ij")
    pts = geometry.ijk_to_ras_points(np.stack([ii, jj, kk], -1).reshape(-1, 3))
    inside = (np.linalg.norm(pts - center, axis=1) <= radius).reshape(kk.shape)
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    labels[box][inside] = value
    near = np.clip(np.round(ijk).astype(int), 0, np.asarray(labels.shape)[::-1] - 1)
    labels[near[2], near[1], near[0]] = value


def _mimic_objects(atlas, place, geometry: Geometry, shape_kji, vessels, cavities, b0, te, dchi_vein):
    """Report veins, iron-rich nuclei and air-tissue interfaces (inside the FOV) as non-CMB objects."""
    out = []
    bloom = np.sqrt(max(1.0, abs(phase_per_ppm(b0, te) * dchi_vein) / 2))
    items = [("vein", v.points[len(v.points) // 2], 2 * v.radii[len(v.radii) // 2], bloom) for v in vessels]
    items += [("iron_nucleus", c, d, 1.0) for c, d in iron_nuclei()]
    items += [("air_artifact", np.asarray(c.center), 2 * float(np.prod(c.radii) ** (1 / 3)), 1.5)
              for c in cavities]
    centers = place.to_ras(atlas, np.stack([it[1] for it in items]))
    for (kind, _, diameter, factor), center in zip(items, centers):
        d = float(diameter) * place.scale
        if _in_fov(geometry, shape_kji, center):
            out.append(SyntheticObject(kind, tuple(float(v) for v in center), d * factor, d))
    return out
