"""Shape of a dark candidate from the Hessian's eigenvalues: round dot or tube.

A reader tells a microbleed from a vein running through the slice by scrolling: the dot is round
in 3D, the vein is a tube. At a dark structure's centre the intensity Hessian (Gaussian
derivatives at the candidate's scale, in the 1 mm working space) has positive eigenvalues
l1 >= l2 >= l3; a sphere has l3 ~ l1, a tube has l3 ~ 0 along its axis, a dark sheet (a sulcus,
the cortical rim) has l2 ~ l3 ~ 0. ``blobness`` = l3 / l1 in [0, 1] (0 where l1 <= 0: not dark at
that scale) is one input of the score fusion (:mod:`.fusion`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .patches import extract_patches

MIN_SIGMA_MM, MAX_SIGMA_MM = 1.0, 2.5
# Second-derivative orders of the six Hessian entries (k, j, i axes) and their places in the matrix.
_ORDERS = ((2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1))
_PLACES = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def hessian_scale(diameter_mm: np.ndarray) -> np.ndarray:
    """Gaussian scale (mm) for a dark blob of the candidate screen's diameter: a third of it, in
    [1, 2.5] mm (the scale whose normalised response peaks at a sphere's centre)."""
    return np.clip(np.asarray(diameter_mm, dtype=float) / 3.0, MIN_SIGMA_MM, MAX_SIGMA_MM)


def hessian_eigenvalues(image: np.ndarray, kji: np.ndarray, diameter_mm: np.ndarray) -> np.ndarray:
    """(N, 3) eigenvalues, largest first, of the Hessian at each ``kji`` point of a 1 mm image."""
    sigmas = hessian_scale(diameter_mm)
    out = np.zeros((len(kji), 3))
    if not len(kji):
        return out
    size = 2 * int(np.ceil(4 * MAX_SIGMA_MM)) + 1
    patches = extract_patches(image, kji, size)
    centre = size // 2
    for n, (patch, sigma) in enumerate(zip(patches, sigmas)):
        hessian = np.empty((3, 3))
        for order, (a, b) in zip(_ORDERS, _PLACES):
            value = ndimage.gaussian_filter(patch.astype(np.float64), sigma, order=order, mode="nearest")
            hessian[a, b] = hessian[b, a] = value[centre, centre, centre]
        out[n] = np.linalg.eigvalsh(hessian)[::-1]
    return out


def blobness(image: np.ndarray, kji: np.ndarray, diameter_mm: np.ndarray) -> np.ndarray:
    """l3 / l1 of each candidate (N,) float32: ~1 for a round dark dot, ~0 for a tube or a sheet."""
    eig = hessian_eigenvalues(image, kji, diameter_mm)
    largest = eig[:, 0]
    ratio = np.where(largest > 0, eig[:, 2] / np.where(largest > 0, largest, 1.0), 0.0)
    return np.clip(ratio, 0.0, 1.0).astype(np.float32)
