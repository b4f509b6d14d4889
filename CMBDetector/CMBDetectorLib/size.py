"""Apparent size and sub-voxel centre of each detection, measured on the acquired grid.

Radiologists size a microbleed by its blooming hypointensity on the slice where it looks
largest. :func:`measure_spot` does the same on the input volume's own voxels (thick 2D GRE
slices stay the acquired slices): the local background is the tissue level where the radial
profile around the spot levels off (so a spot inside a dark nucleus is compared with the
nucleus); voxels darker than ``THRESHOLD`` x background form the spot, counted with a
partial-voxel ramp so the area is not quantised to whole voxels; on each slice the spot
reaches out to the first ring around its centre that is less than half dark (a vein crossing
the ring does not extend it); the slice with the largest area (or largest integrated signal
loss, which keeps faint thick-slice spots a size) gives the equivalent-circle diameter. The
centre is the signal-loss-weighted centroid of the spot in 3D. Spots wider than
``results.MAX_CMB_MM`` are not microbleeds (haemorrhage or vessel), unless the spot's dark core
alone is microbleed-sized: then a microbleed touches a wider, moderately dark structure (a
nucleus below the spot threshold) and the core's size and centre are reported."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from .geometry import Geometry
from .results import MAX_CMB_MM, Detection

BOX_MM = 12.0  # half-width of the neighbourhood measured around a detection
SEARCH_MM = 2.5  # the spot's darkest point is searched this far from the detection (in-plane)
SLAB_MM = 3.0  # slices this close to the spot's darkest point are searched for its largest section
PLATEAU = (0.3, 0.05)  # background level: risen 0.3 above the core, flat within 0.05 (x far median)
RAMP = 0.1  # partial-voxel ramp half-width around the threshold (fraction of background)
# A voxel belongs to the spot below this fraction of the local background: the synthetic
# engine's visibility level, which also gave the smallest size error on validation seeds (0.5-0.75
# tried, 3D SWI and 2D GRE alike; scripts/benchmark_size.py).
THRESHOLD = 0.7
# A spot measured over 10 mm is measured again at this darker level (below the iron-rich nuclei's
# 0.5-0.6, above microbleed cores); a core up to CORE_MAX_MM is a microbleed touching a darker
# structure, a wider one stays a haemorrhage or vessel (round 25, docs/MODEL_HISTORY.md).
CORE_THRESHOLD = 0.4
CORE_MAX_MM = 6.0


@dataclass(frozen=True)
class SpotSize:
    """One measured dark spot: apparent diameter (mm) and refined centre."""

    diameter_mm: float
    ras: tuple[float, float, float]
    ijk: tuple[float, float, float]


def measure_spot(array: np.ndarray, geometry: Geometry, ras, mask: np.ndarray | None = None) -> SpotSize | None:
    """Measure the dark spot nearest ``ras`` in the ``[k, j, i]`` ``array``; None when the point
    lies outside the volume or has no tissue around it."""
    c_ijk = geometry.ras_to_ijk_points(ras)[0]
    shape_ijk = np.asarray(array.shape[::-1])
    if np.any(c_ijk < -0.5) or np.any(c_ijk > shape_ijk - 0.5):
        return None
    spacing = geometry.spacing
    half = np.ceil(BOX_MM / spacing).astype(int)
    lo = np.maximum(np.round(c_ijk).astype(int) - half, 0)
    hi = np.minimum(np.round(c_ijk).astype(int) + half + 1, shape_ijk)
    box = tuple(slice(lo[a], hi[a]) for a in (2, 1, 0))
    sub = np.asarray(array[box], dtype=float)
    valid = sub > 0 if mask is None else (np.asarray(mask[box], dtype=bool) & (sub > 0))
    grid = np.stack(np.meshgrid(*[np.arange(lo[a], hi[a]) for a in (2, 1, 0)], indexing="ij")[::-1], -1)
    normal = geometry.direction[:, 2]  # slice normal (RAS)
    pos = geometry.ijk_to_ras_points(grid.reshape(-1, 3)).reshape(*sub.shape, 3)

    along, in_plane = _split(pos - np.asarray(ras, dtype=float).reshape(3), normal)
    ring = valid & (np.hypot(along, in_plane) > BOX_MM / 2)
    search = valid & (in_plane <= SEARCH_MM) & (along <= max(SEARCH_MM, spacing[2] / 2 + 0.5))
    if ring.sum() < 10 or not search.any() or np.median(sub[ring]) <= 0:
        return None
    smooth = ndimage.uniform_filter(sub, size=(1, 3, 3), mode="nearest")
    seed = np.unravel_index(np.argmin(np.where(search, smooth, np.inf)), sub.shape)
    _, in_plane = _split(pos - pos[seed], normal)
    background = _local_background(sub[seed[0]], valid[seed[0]], in_plane[seed[0]], spacing[:2].max(),
                                   float(np.median(sub[ring])))
    rel = sub / background
    diameter, centre = _measure(rel, valid, pos, pos[seed], normal, spacing, THRESHOLD)
    if diameter > MAX_CMB_MM:  # a microbleed touching a moderately dark structure, or no microbleed
        core = _measure(rel, valid, pos, pos[seed], normal, spacing, CORE_THRESHOLD)
        if core[0] <= CORE_MAX_MM:
            diameter, centre = core
    ijk = geometry.ras_to_ijk_points(centre)[0]
    return SpotSize(float(diameter), tuple(float(v) for v in centre), tuple(float(v) for v in ijk))


def _measure(rel: np.ndarray, valid: np.ndarray, pos: np.ndarray, centre: np.ndarray, normal: np.ndarray,
             spacing: np.ndarray, threshold: float) -> tuple[float, np.ndarray]:
    """Equivalent-circle diameter (mm) of the largest section of the spot of voxels darker than
    ``threshold`` x background around ``centre``, and its re-centred centre (RAS)."""
    weight = np.clip((threshold + RAMP - rel) / (2 * RAMP), 0, 1) * valid  # air outside the brain is no spot
    for _ in range(3):  # measure around the spot's centroid, then re-centre
        inside = _disc_stack(weight, pos - centre, normal, spacing)
        pull = np.clip(1 - rel, 0, None) * inside * valid
        if pull.sum() <= 0:
            break
        centre = (pull[..., None] * pos).sum(axis=(0, 1, 2)) / pull.sum()
    inside = _disc_stack(weight, pos - centre, normal, spacing)
    area_px = np.maximum((weight * inside).sum(axis=(1, 2)), (np.minimum(1 - rel, 1) * inside * valid).sum(axis=(1, 2)))
    return 2 * np.sqrt(max(float(area_px.max()), 0.0) * spacing[0] * spacing[1] / np.pi), centre


def _disc_stack(weight: np.ndarray, offset: np.ndarray, normal: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The spot's extent: on each slice within :data:`SLAB_MM` of the centre, the disc around
    the centre out to the spot's edge on that slice."""
    along, in_plane = _split(offset, normal)
    inside = np.zeros(weight.shape, bool)
    for k in np.flatnonzero(np.any(along <= max(SLAB_MM, spacing[2] / 2 + 0.1), axis=(1, 2))):
        inside[k] = in_plane[k] < _edge(weight[k], in_plane[k], spacing[:2].max())
    return inside


def _split(offset: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances along the slice normal (absolute) and within the slice plane."""
    along = offset @ normal
    return np.abs(along), np.sqrt(np.maximum(np.einsum("...c,...c->...", offset, offset) - along ** 2, 0))


def _local_background(image: np.ndarray, valid: np.ndarray, distance: np.ndarray, step: float, far: float) -> float:
    """Tissue signal around the spot on its slice: where the radial profile (ring medians) has
    risen clearly above the spot's core and levels off; ``far`` (the median 6-12 mm away) when
    it never does (a spot inside a dark nucleus is compared with the nucleus, not with the
    white matter beyond it)."""
    edges = np.arange(0.0, BOX_MM, step)
    rings = [valid & (distance >= r) & (distance < r + step) for r in edges]
    profile = np.array([np.median(image[ring]) if ring.any() else np.nan for ring in rings])
    for n in range(1, len(profile) - 2):
        rise = profile[n + 1:n + 3] - profile[n]
        if profile[n] >= profile[0] + PLATEAU[0] * far and np.all(np.abs(rise) < PLATEAU[1] * far):
            pooled = np.logical_or.reduce(rings[n:n + 4])
            return float(np.median(image[pooled]))
    return far


def _edge(weight: np.ndarray, distance: np.ndarray, step: float) -> float:
    """Outer radius (mm) of the dark disc on one slice: the outer edge of the first ring of
    width ``step`` around the centre that is less than half dark (veins crossing the ring do
    not make it dark, so they do not extend the spot)."""
    for inner in np.arange(0.0, BOX_MM, step):
        ring = (distance >= inner) & (distance < inner + step)
        if ring.any() and weight[ring].mean() < 0.5:
            return float(inner + step)
    return float(BOX_MM)


def measure_detections(detections: list[Detection], array: np.ndarray, geometry: Geometry,
                       mask: np.ndarray | None = None) -> list[Detection]:
    """Detections (best first) with measured apparent diameters and sub-voxel centres (input-grid
    IJK and RAS); one that cannot be measured keeps its detector scale and position. A detection
    whose measured centre falls inside a better microbleed's spot is that microbleed found twice
    and is dropped (a spot over 10 mm, not a microbleed, hides nothing)."""
    out: list[Detection] = []
    for det in detections:
        spot = measure_spot(array, geometry, det.ras, mask)
        if spot is not None:
            det = replace(det, ras=spot.ras, ijk=spot.ijk, diameter_mm=spot.diameter_mm)
        if not any(kept.is_microbleed and np.linalg.norm(np.subtract(det.ras, kept.ras)) < kept.diameter_mm / 2
                   for kept in out):
            out.append(det)
    return out
