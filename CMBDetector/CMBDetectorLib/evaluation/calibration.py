"""Calibration of the final scores: reliability table and expected calibration error (ECE).

A detection's label is whether it hits a microbleed (the benchmark's greedy matching, best score
first). Only detections scoring at least ``floor`` count: below it lie the thousands of
candidates the CNN gate already rejected, which would swamp the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


CALIBRATION_FLOOR = 0.1
CALIBRATION_BINS = tuple(np.round(np.linspace(0.1, 1.0, 10), 2))  # edges: 0.1, 0.2, ..., 1.0


@dataclass
class Reliability:
    """Per score bin: edges, count, mean score, fraction that are microbleeds; and the ECE
    (count-weighted mean |mean score - fraction|)."""

    edges: tuple
    counts: list[int]
    mean_score: list[float]
    fraction_true: list[float]
    ece: float


def reliability(scores: np.ndarray, labels: np.ndarray, edges=CALIBRATION_BINS) -> Reliability:
    """Reliability table of ``scores`` against boolean ``labels`` (scores outside the edges
    are left out); empty bins have NaN means and no weight."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    counts, means, fractions, gap = [], [], [], 0.0
    for n, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = n == len(edges) - 2
        inside = (scores >= lo) & ((scores <= hi) if last else (scores < hi))
        counts.append(int(inside.sum()))
        means.append(float(scores[inside].mean()) if inside.any() else float("nan"))
        fractions.append(float(labels[inside].mean()) if inside.any() else float("nan"))
        if inside.any():
            gap += inside.sum() * abs(means[-1] - fractions[-1])
    total = sum(counts)
    return Reliability(tuple(float(e) for e in edges), counts, means, fractions,
                       gap / total if total else float("nan"))


def detection_labels(outcomes, variant: str, floor: float = CALIBRATION_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Scores and hit labels of every detection of ``variant`` scoring >= ``floor``."""
    scores, labels = [], []
    for o in outcomes:
        keep, matched = o.matched(variant, floor)
        scores.append(o.variants[variant][1][keep])
        labels.append(matched >= 0)
    return np.concatenate(scores) if scores else np.zeros(0), np.concatenate(labels) if labels else np.zeros(0, bool)
