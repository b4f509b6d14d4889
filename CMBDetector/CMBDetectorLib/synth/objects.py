"""Ground-truth objects: microbleeds and their mimics, sampled in template space."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .anatomy import NUCLEI, Atlas, mirrored

LOCATIONS = ("lobar", "deep", "infratentorial")
LOCATION_WEIGHTS = (0.6, 0.25, 0.15)
MAX_CMB = 30


@dataclass(frozen=True)
class SyntheticObject:
    """One ground-truth object of a synthetic scan (RAS millimetres)."""

    kind: str
    center_ras: tuple
    diameter_mm: float
    true_diameter_mm: float
    is_cmb: bool = False
    label: int = 0
    location: str = ""
    template_ras: tuple | None = None  # MNI152 2009a position before the pose (CMBs, calcifications)


@dataclass(frozen=True)
class Sphere:
    """A magnetised sphere in template space: CMB or calcification."""

    kind: str
    center_mni: np.ndarray
    radius_mm: float
    dchi_ppm: float
    inside_signal: float
    location: str = ""


def sample_cmb_count(rng: np.random.Generator) -> int:
    """Skewed count: ~30% none, positive scans mean ~3.3, long tail capped at 30."""
    if rng.random() < 0.3:
        return 0
    return int(min(MAX_CMB, 1 + rng.negative_binomial(1, 0.3)))


def sample_cmbs(rng: np.random.Generator, atlas: Atlas, n: int, kind: str = "cmb",
                avoid: tuple = ()) -> list[Sphere]:
    """``n`` haemosiderin spheres in lobar, deep and infratentorial tissue, not overlapping each
    other or the spheres ``avoid``. ``kind`` "calcification" draws the same sizes, |dchi|, core
    signal and locations with diamagnetic dchi: calcifications that only the phase tells apart."""
    out: list[Sphere] = []
    sign = -1.0 if kind == "calcification" else 1.0
    for _ in range(n):
        loc = LOCATIONS[rng.choice(3, p=LOCATION_WEIGHTS)]
        cand = atlas.regions[loc]
        radius = float(np.clip(rng.lognormal(np.log(1.35), 0.35), 0.8, 3.0))  # mean ~1.4 mm
        dchi = float(np.exp(rng.uniform(np.log(0.2), np.log(1.0))))
        inside = float(rng.uniform(0.02, 0.15))
        for _ in range(50):
            center = atlas.index_to_ras(cand[rng.integers(len(cand))] + rng.uniform(-0.5, 0.5, 3))
            if all(np.linalg.norm(center - s.center_mni) > radius + s.radius_mm + 4 for s in (*avoid, *out)):
                out.append(Sphere(kind, center, radius, sign * dchi, inside, loc))
                break
    return out


CALCIFICATION_SITES = (  # name, MNI centre (x >= 0), radius range, probability, bilateral probability
    ("choroid_plexus", (27, -40, 16), (1.5, 3.5), 0.45, 0.7),
    ("pineal", (0, -31, 3), (1.2, 3.0), 0.4, 0.0),
    ("basal_ganglia", (19, -3, -1), (0.6, 1.5), 0.2, 0.6),
)


def sample_calcifications(rng: np.random.Generator, atlas: Atlas) -> list[Sphere]:
    """Diamagnetic calcifications: choroid plexus (snapped into the ventricles), pineal, pallidum."""
    out = []
    vent = atlas.index_to_ras(atlas.regions["ventricle"])
    for name, center, (r0, r1), prob, p_bilateral in CALCIFICATION_SITES:
        present, bilateral = rng.random() < prob, rng.random() < p_bilateral
        jitter = rng.normal(0, 2.0, 3)
        sides = mirrored(center) if bilateral else [center]
        for c in sides:
            c = np.asarray(c, float) + jitter
            if name == "choroid_plexus":
                c = vent[np.argmin(np.linalg.norm(vent - c, axis=1))]
            radius, dchi = rng.uniform(r0, r1), -rng.uniform(0.4, 1.5)
            if present:
                out.append(Sphere("calcification", c, float(radius), float(dchi), 0.03))
    return out


IRON_NUCLEI = ("globus_pallidus", "dentate", "red_nucleus", "substantia_nigra", "putamen")


def iron_nuclei() -> list[tuple[np.ndarray, float]]:
    """(MNI centre, equivalent diameter) of the iron-rich nuclei reported as objects."""
    out = []
    for nuc in NUCLEI:
        if nuc.name in IRON_NUCLEI:
            d = 2 * float(np.prod(nuc.radii) ** (1 / 3))
            out += [(np.asarray(c, float), d) for c in mirrored(nuc.center, nuc.bilateral)]
    return out


def shrink_some(rng: np.random.Generator, spheres: list[Sphere], fraction: float) -> list[Sphere]:
    """Redraw ``fraction`` of the spheres placed in tissue (microbleeds and microbleed-like
    calcifications, not the anatomical calcifications) at 1.0-1.6 mm true diameter."""
    if fraction <= 0:
        return spheres
    return [replace(s, radius_mm=float(rng.uniform(0.5, 0.8))) if s.location and rng.random() < fraction else s
            for s in spheres]


VEINS_IN_TISSUE = ("medullary", "through_slice", "deep", "cortical")
VEIN_REACH_MM = 15.0


def onto_veins(rng: np.random.Generator, spheres: list[Sphere], vessels: list, atlas: Atlas,
               fraction: float) -> list[Sphere]:
    """Move ``fraction`` of the microbleeds onto a vein in tissue within ``VEIN_REACH_MM``: the
    centre a point of its centre line shifted across it by less than the microbleed's radius, so
    the vein runs through or along the microbleed (which must not read as the vein's dot). A
    microbleed with no such point, or that would come within 4 mm of another sphere, stays."""
    if fraction <= 0:
        return spheres
    points = [v.points for v in vessels if v.kind in VEINS_IN_TISSUE]
    points = np.concatenate(points) if points else np.zeros((0, 3))
    out = list(spheres)
    for n, s in enumerate(spheres):
        if s.kind != "cmb" or rng.random() >= fraction:
            continue
        near = points[np.linalg.norm(points - s.center_mni, axis=1) <= VEIN_REACH_MM]
        near = near[atlas.sample("brain", near) >= 0.5] if len(near) else near
        if not len(near):
            continue
        offset = rng.normal(0, 1, 3)
        centre = near[rng.integers(len(near))] + offset / np.linalg.norm(offset) * rng.uniform(0, s.radius_mm)
        if all(np.linalg.norm(centre - o.center_mni) > s.radius_mm + o.radius_mm + 4 for o in out if o is not s):
            out[n] = replace(s, center_mni=centre)
    return out
