"""High-recall screen for dark, roughly spherical blobs (microbleed candidates).

A scale-normalised multi-scale Laplacian of Gaussian responds positively at the centre of a
dark blob of radius ~ sqrt(3)·sigma; its local maxima inside the brain mask are candidates.
A small blob beside a larger, darker one (a microbleed next to a vein) is no maximum across
scales, so the strongest single-scale maxima away from every multi-scale one are added too.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIGMAS_MM = (0.8, 1.2, 1.7, 2.4, 3.2)
MIN_RESPONSE = 0.04
MAX_CANDIDATES = 4000
MAX_HIDDEN = 1000  # single-scale maxima added beside the multi-scale ones
HIDDEN_MIN_DISTANCE = 2.0  # voxels from every multi-scale candidate


@dataclass
class Candidates:
    """Candidate centres in working-space voxel indices ``[k, j, i]``."""

    kji: np.ndarray  # (N, 3) int
    response: np.ndarray  # (N,) LoG response, higher = more blob-like
    diameter_mm: np.ndarray  # (N,) diameter implied by the best LoG scale

    def __len__(self) -> int:
        return len(self.response)


def find_candidates(image: np.ndarray, mask: np.ndarray, spacing: float = 1.0,
                    min_response: float = MIN_RESPONSE, max_candidates: int = MAX_CANDIDATES,
                    max_hidden: int = MAX_HIDDEN) -> Candidates:
    """Local maxima of the multi-scale dark-blob LoG response inside ``mask``, then up to
    ``max_hidden`` single-scale maxima farther than HIDDEN_MIN_DISTANCE voxels from all of them."""
    # Outside the brain, fill with the brain's typical intensity so the mask edge is not a blob.
    filled = np.where(mask, image, np.float32(1.0))
    best = np.full(image.shape, -np.inf, dtype=np.float32)
    best_scale = np.zeros(image.shape, dtype=np.uint8)
    single = []  # (kji, response, scale index) of each scale's own maxima
    with ThreadPoolExecutor(max_workers=min(len(SIGMAS_MM), os.cpu_count() or 1)) as pool:  # scipy frees the GIL
        scales = pool.map(lambda sigma_mm: _scale_response(filled, mask, sigma_mm / spacing, min_response), SIGMAS_MM)
        for n, (response, at) in enumerate(scales):
            single.append((at, response[tuple(at.T)], np.full(len(at), n)))
            better = response > best
            best[better] = response[better]
            best_scale[better] = n
    peaks = (best == ndimage.maximum_filter(best, size=3)) & mask & (best > min_response)
    kji = np.argwhere(peaks)
    response = best[peaks]
    order = np.argsort(-response)[:max_candidates]
    kji, response, scale = kji[order], response[order], best_scale[tuple(kji[order].T)]
    hidden = _hidden_maxima(kji, *(np.concatenate(parts) for parts in zip(*single)), max_hidden)
    kji = np.concatenate([kji, hidden[0]])
    response = np.concatenate([response, hidden[1]])
    sigmas = np.asarray(SIGMAS_MM)[np.concatenate([scale, hidden[2]]).astype(int)]
    return Candidates(kji=kji, response=response.astype(np.float32),
                      diameter_mm=(2 * np.sqrt(3) * sigmas).astype(np.float32))


def _scale_response(filled: np.ndarray, mask: np.ndarray, sigma: float, min_response: float):
    """One scale's normalised dark-blob LoG response and its own local maxima inside ``mask``."""
    response = (sigma * sigma) * ndimage.gaussian_laplace(filled, sigma)
    at = np.argwhere((response == ndimage.maximum_filter(response, size=3)) & mask & (response > min_response))
    return response, at


def _hidden_maxima(kji, single_kji, single_response, single_scale, limit):
    """The ``limit`` strongest single-scale maxima farther than HIDDEN_MIN_DISTANCE from ``kji``
    and from each other (the stronger wins)."""
    from scipy.spatial import cKDTree

    if len(kji) and len(single_kji):
        far = cKDTree(kji).query(single_kji, k=1)[0] > HIDDEN_MIN_DISTANCE
        single_kji, single_response, single_scale = single_kji[far], single_response[far], single_scale[far]
    order = np.argsort(-single_response)
    single_kji, single_response, single_scale = single_kji[order], single_response[order], single_scale[order]
    taken: list[int] = []
    suppressed = np.zeros(len(single_kji), dtype=bool)
    tree = cKDTree(single_kji) if len(single_kji) else None
    for n in range(len(single_kji)):
        if len(taken) >= limit:
            break
        if not suppressed[n]:
            taken.append(n)
            suppressed[tree.query_ball_point(single_kji[n], HIDDEN_MIN_DISTANCE)] = True
    return single_kji[taken], single_response[taken], single_scale[taken]
