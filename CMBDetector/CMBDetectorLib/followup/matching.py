"""One-to-one matching of detections across visits in baseline RAS (Hungarian assignment)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Two points are the same lesion within the larger radius + this many mm (the detector's hit
# rule, radius + 2 mm, plus 1 mm for the registration error).
MATCH_SLACK_MM = 3.0


@dataclass(frozen=True)
class Match:
    """Follow-up point ``followup`` is baseline point ``baseline``, ``distance_mm`` apart."""

    followup: int
    baseline: int
    distance_mm: float


def match_points(followup_mm: np.ndarray, followup_diam: np.ndarray, baseline_mm: np.ndarray,
                 baseline_diam: np.ndarray) -> list[Match]:
    """Pairs of (follow-up, baseline) points, both given in baseline RAS mm, that minimise the
    total distance among pairs closer than their :func:`tolerance_mm`."""
    f, b = np.reshape(followup_mm, (-1, 3)), np.reshape(baseline_mm, (-1, 3))
    if not len(f) or not len(b):
        return []
    dist = np.linalg.norm(f[:, None, :] - b[None, :, :], axis=2)
    tol = np.maximum(np.asarray(followup_diam, float)[:, None], np.asarray(baseline_diam, float)[None, :]) / 2
    allowed = dist <= tol + MATCH_SLACK_MM
    cost = np.where(allowed, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [Match(int(r), int(c), float(dist[r, c])) for r, c in zip(rows, cols) if allowed[r, c]]
