"""What a detection lies on, from a synthetic scan's ground truth: the mimic behind a false
positive (benchmark only).

A vein running along B0 (through an axial slice) is a dark dot on the slice, the classic
microbleed mimic; one running across it is a line. Calcifications, iron-rich nuclei and air-tissue
interfaces are the other mimics the engine draws; anything else (noise, ringing, the cortical
surface, CSF edges) is "none of these".
"""

from __future__ import annotations

import numpy as np

from ..synth.vessels import tube_segments
from .metrics import MATCH_MARGIN_MM, match_candidates

ALONG_B0, ACROSS_B0 = "vein along B0", "vein across B0"
CALCIFICATION, IRON, AIR, NONE = "calcification", "iron-rich nucleus", "air-tissue interface", "none of these"
MIMICS = (ALONG_B0, ACROSS_B0, CALCIFICATION, IRON, AIR, NONE)
ALONG_B0_DEG = 30.0
B0_RAS = np.array([0.0, 0.0, 1.0])  # the engine's main field runs along the scanner's S axis
CHUNK = 64


def segment_distances(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(P, S) distances in mm from ``points`` (P, 3) to line segments (S, 2, 3)."""
    start, step = segments[:, 0], segments[:, 1] - segments[:, 0]
    length2 = np.maximum((step ** 2).sum(1), 1e-12)
    rel = points[:, None] - start[None]
    t = np.clip((rel * step[None]).sum(2) / length2, 0.0, 1.0)
    return np.linalg.norm(rel - t[..., None] * step[None], axis=2)


def nearest_segments(points: np.ndarray, segments: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the index of the tube segment whose surface is nearest and the gap (mm) to
    that surface (negative inside the tube), in blocks of ``CHUNK`` points."""
    nearest, gaps = np.zeros(len(points), int), np.zeros(len(points))
    for start in range(0, len(points), CHUNK):
        gap = segment_distances(points[start:start + CHUNK], segments) - radii[None]
        nearest[start:start + CHUNK] = gap.argmin(1)
        gaps[start:start + CHUNK] = gap[np.arange(len(gap)), nearest[start:start + CHUNK]]
    return nearest, gaps


def vein_kinds(points: np.ndarray, vessels: list) -> np.ndarray:
    """For each point, the nearest vein within its radius + ``MATCH_MARGIN_MM`` (as for
    microbleeds) as along / across B0
    (its local direction within ``ALONG_B0_DEG`` of B0 or not); ``NONE`` where there is none."""
    out = np.full(len(points), NONE, dtype=object)
    if not len(points) or not vessels:
        return out
    segments, radii = tube_segments(vessels)
    step = segments[:, 1] - segments[:, 0]
    cos_b0 = np.abs(step @ B0_RAS) / np.maximum(np.linalg.norm(step, axis=1), 1e-12)
    along = cos_b0 >= np.cos(np.radians(ALONG_B0_DEG))
    nearest, gap = nearest_segments(points, segments, radii)
    reached = gap <= MATCH_MARGIN_MM
    out[reached] = np.where(along[nearest[reached]], ALONG_B0, ACROSS_B0)
    return out


def mimic_kinds(points: np.ndarray, objects: list, vessels: list) -> np.ndarray:
    """What each point (RAS mm) lies on, first match in the order calcification, vein, iron-rich
    nucleus, air-tissue interface, else "none of these". ``objects``: the scan's
    ``SyntheticObject`` list; ``vessels``: its veins as RAS polylines."""
    points = np.asarray(points, float).reshape(-1, 3)
    kinds = np.full(len(points), NONE, dtype=object)

    def near(kind: str) -> np.ndarray:  # within radius + 2 mm, as a detection hits a microbleed
        found = [o for o in objects if o.kind == kind]
        centres = np.array([o.center_ras for o in found], float).reshape(-1, 3)
        return match_candidates(points, centres, np.array([o.diameter_mm for o in found], float)) >= 0

    veins = vein_kinds(points, vessels)
    for hit, kind in ((near("calcification"), CALCIFICATION), (veins != NONE, veins), (near("iron_nucleus"), IRON),
                      (near("air_artifact"), AIR)):
        free = hit & (kinds == NONE)
        kinds[free] = kind[free] if isinstance(kind, np.ndarray) else kind
    return kinds


def vein_gaps(centres: np.ndarray, diameters: np.ndarray, vessels: list) -> np.ndarray:
    """Each sphere's surface gap (mm) to the nearest vein's surface (negative: the vein runs into
    it; inf without veins): how close a microbleed lies to what a reader could take it for."""
    centres = np.asarray(centres, float).reshape(-1, 3)
    if not len(centres) or not vessels:
        return np.full(len(centres), np.inf)
    return nearest_segments(centres, *tube_segments(vessels))[1] - np.asarray(diameters, float) / 2
