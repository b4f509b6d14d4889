"""High-recall screen for dark, roughly spherical blobs (microbleed candidates).

A scale-normalised multi-scale Laplacian of Gaussian responds positively at the centre of a
dark blob of radius ~ sqrt(3)·sigma; its local maxima inside the brain mask are candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIGMAS_MM = (0.8, 1.2, 1.7, 2.4, 3.2)
MIN_RESPONSE = 0.04
MAX_CANDIDATES = 4000


@dataclass
class Candidates:
    """Candidate centres in working-space voxel indices ``[k, j, i]``."""

    kji: np.ndarray  # (N, 3) int
    response: np.ndarray  # (N,) LoG response, higher = more blob-like
    diameter_mm: np.ndarray  # (N,) diameter implied by the best LoG scale

    def __len__(self) -> int:
        return len(self.response)


def find_candidates(image: np.ndarray, mask: np.ndarray, spacing: float = 1.0,
                    min_response: float = MIN_RESPONSE, max_candidates: int = MAX_CANDIDATES) -> Candidates:
    """Local maxima of the multi-scale dark-blob LoG response inside ``mask``."""
    # Outside the brain, fill with the brain's typical intensity so the mask edge is not a blob.
    filled = np.where(mask, image, np.float32(1.0))
    best = np.full(image.shape, -np.inf, dtype=np.float32)
    best_scale = np.zeros(image.shape, dtype=np.uint8)
    for n, sigma_mm in enumerate(SIGMAS_MM):
        sigma = sigma_mm / spacing
        response = (sigma * sigma) * ndimage.gaussian_laplace(filled, sigma)
        better = response > best
        best[better] = response[better]
        best_scale[better] = n
    peaks = (best == ndimage.maximum_filter(best, size=3)) & mask & (best > min_response)
    kji = np.argwhere(peaks)
    response = best[peaks]
    order = np.argsort(-response)[:max_candidates]
    kji, response = kji[order], response[order]
    sigmas = np.asarray(SIGMAS_MM)[best_scale[tuple(kji.T)]]
    return Candidates(kji=kji, response=response.astype(np.float32),
                      diameter_mm=(2 * np.sqrt(3) * sigmas).astype(np.float32))
