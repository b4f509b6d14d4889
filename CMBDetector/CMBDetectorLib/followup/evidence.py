"""What the baseline shows at a place where the follow-up has a microbleed: the detector's best
score nearby (including candidates below the reporting threshold) and the image's own dark-spot
contrast."""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from ..results import Detection

SHELL_MM = (2.0, 6.0)  # background shell, beyond the spot's radius


def best_score_near(detections: list[Detection], points_mm: np.ndarray,
                    radii_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the best score of ``detections`` within its radius (0 when none) and
    the index of that detection (-1 when none)."""
    pts = np.reshape(points_mm, (-1, 3))
    scores, index = np.zeros(len(pts)), np.full(len(pts), -1)
    if not detections or not len(pts):
        return scores, index
    pos = np.array([d.ras for d in detections], float)
    score = np.array([d.score for d in detections], float)
    near = np.linalg.norm(pts[:, None, :] - pos[None, :, :], axis=2) <= np.asarray(radii_mm, float)[:, None]
    masked = np.where(near, score[None, :], -1.0)
    best = masked.argmax(axis=1)
    found = masked[np.arange(len(pts)), best] >= 0
    scores[found], index[found] = score[best[found]], best[found]
    return scores, index


def spot_contrast(array: np.ndarray, geometry: Geometry, points_mm: np.ndarray, radii_mm: np.ndarray) -> np.ndarray:
    """Dark-spot contrast ``1 - darkest / background median`` at each RAS point: the darkest
    voxel within the radius (at least half a voxel diagonal, so the nearest voxel counts), against the median of a shell
    ``SHELL_MM`` beyond it. 0 where the point is outside the image."""
    pts = np.reshape(points_mm, (-1, 3))
    out = np.zeros(len(pts))
    half_voxel = 0.5 * float(np.linalg.norm(geometry.spacing))
    for n, (p, r) in enumerate(zip(pts, np.broadcast_to(radii_mm, len(pts)))):
        r_in = max(float(r), half_voxel)
        values, dist = _around(array, geometry, p, r_in + SHELL_MM[1])
        inner, shell = values[dist <= r_in], values[(dist > r_in + SHELL_MM[0]) & (dist <= r_in + SHELL_MM[1])]
        if inner.size and shell.size:
            out[n] = 1.0 - float(inner.min()) / max(float(np.median(shell)), 1e-6)
    return out


def _around(array: np.ndarray, geometry: Geometry, centre: np.ndarray, radius: float):
    """Voxel values and their centres' distances (mm) from ``centre`` within ``radius``."""
    ijk = geometry.ras_to_ijk_points(centre)[0]
    ext = radius / geometry.spacing + 1
    shape_ijk = np.asarray(array.shape[:3])[::-1]
    lo = np.clip(np.floor(ijk - ext).astype(int), 0, shape_ijk)
    hi = np.clip(np.ceil(ijk + ext).astype(int) + 1, 0, shape_ijk)
    if np.any(hi <= lo):
        return np.zeros(0), np.zeros(0)
    kk, jj, ii = np.meshgrid(*[np.arange(lo[a], hi[a]) for a in (2, 1, 0)], indexing="ij")
    pos = geometry.ijk_to_ras_points(np.stack([ii, jj, kk], -1).reshape(-1, 3))
    dist = np.linalg.norm(pos - centre, axis=1)
    values = np.asarray(array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]], float).reshape(-1)
    keep = dist <= radius
    return values[keep], dist[keep]
