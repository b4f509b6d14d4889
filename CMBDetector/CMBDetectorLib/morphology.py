"""Binary erosion, dilation, opening and closing of a 3D mask by a Euclidean ball, exactly as
``scipy.ndimage`` does them with the ball as structure (voxels outside the volume are background),
in a fraction of its time: the ball is cut into rows along the last axis, each row length's
erosion is one running minimum, and the rows' results are intersected at their offsets."""

from __future__ import annotations

from math import isqrt

import numpy as np
from scipy import ndimage


def ball(radius: int) -> np.ndarray:
    """The voxels within ``radius`` of the centre, as a (2r+1)³ boolean structure."""
    r = np.arange(-radius, radius + 1)
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    return x * x + y * y + z * z <= radius * radius


def erode(mask: np.ndarray, radius: int, outside: bool = False) -> np.ndarray:
    """True where the ball around the voxel lies inside ``mask`` (``outside``: the value beyond the edges)."""
    mask = np.asarray(mask, dtype=bool)
    rows = {}  # half-length -> the mask eroded along the last axis by a row of that length
    out = np.ones_like(mask)
    for dz in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            left = radius * radius - dz * dz - dy * dy
            if left < 0:
                continue
            half = isqrt(left)
            if half not in rows:
                rows[half] = ndimage.minimum_filter1d(mask.view(np.uint8), 2 * half + 1, axis=-1,
                                                      mode="constant", cval=int(outside)).view(bool)
            _and_shifted(out, rows[half], dz, dy, outside)
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """True where the ball around the voxel touches ``mask``."""
    return ~erode(~np.asarray(mask, dtype=bool), radius, outside=True)


def opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of the erosion: removes what the ball cannot fit in (thin bridges, specks)."""
    return dilate(erode(mask, radius), radius)


def closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion of the dilation: fills gaps and dents narrower than the ball."""
    return erode(dilate(mask, radius), radius)


def _and_shifted(out: np.ndarray, rows: np.ndarray, dz: int, dy: int, outside: bool) -> None:
    """``out[k, j] &= rows[k + dz, j + dy]`` in place, with ``outside`` where that lies beyond the edges."""
    nk, nj = out.shape[:2]
    k0, k1 = max(0, -dz), min(nk, nk - dz)
    j0, j1 = max(0, -dy), min(nj, nj - dy)
    if k0 >= k1 or j0 >= j1:
        if not outside:
            out[:] = False
        return
    out[k0:k1, j0:j1] &= rows[k0 + dz:k1 + dz, j0 + dy:j1 + dy]
    if not outside:
        out[:k0] = out[k1:] = False
        out[:, :j0] = out[:, j1:] = False
