"""Held-out synthetic benchmark: lesion- and subject-level figures, ablation rows, FROC, runtime.

Seeds start at ``TEST_SEED0`` (training uses seeds below 10 000, threshold tuning
``VALIDATION_SEED0``); every fourth scan is a
1.5 T 2D GRE and every sixth has no microbleed, so both hard cases are always in the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..candidates import MIN_RESPONSE
from ..config import DetectorConfig
from ..pipeline import final_scores, score_candidates, select
from .metrics import lesion_metrics, match_candidates, match_detections, subject_metrics

TEST_SEED0 = 100_000
VALIDATION_SEED0 = 50_000
FROC_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class ScanOutcome:
    """Per-variant detections of one test scan plus its ground truth."""

    gt_ras: np.ndarray
    gt_diam: np.ndarray
    variants: dict  # name -> (det_ras (N,3), det_scores (N,)) at threshold 0
    protocol: str = ""  # "3D SWI" or "2D GRE"
    candidate_hits: int = 0  # microbleeds with a candidate within radius + 2 mm, before suppression
    n_candidates: int = 0


def test_scan(n: int, seed0: int = TEST_SEED0):
    """The n-th held-out synthetic scan (``seed0`` = VALIDATION_SEED0 for threshold tuning)."""
    from ..synth import generate_scan, sample_protocol

    seed = seed0 + n
    rng = np.random.default_rng(seed)
    protocol = sample_protocol(rng, kind="gre2d", field_strength_t=1.5) if n % 4 == 3 else None
    return generate_scan(seed, protocol=protocol, n_cmb=0 if n % 6 == 5 else None)


def evaluate_scan(scan, config: DetectorConfig) -> ScanOutcome:
    """Score every candidate once and keep the detections of each ablation variant; the last,
    "fused+phase", also uses the scan's phase image."""
    gt_ras, gt_diam = scan.cmb_truth()
    scored = score_candidates(scan.magnitude, scan.geometry, config, phase=scan.phase)
    variants = {}
    response = scored.candidates.response
    for name, scores, floor in (
        ("candidates", response, MIN_RESPONSE),
        ("cnn", scored.cnn, 0.0),
        ("cnn+yolo", (scored.cnn + np.nan_to_num(scored.yolo)) / 2, 0.0),  # plain mean, before the fusion
        ("fused", final_scores(scored, config.models_dir, use_phase=False), 0.0),
        ("fused+phase", final_scores(scored, config.models_dir), 0.0),
    ):
        result = select(scored, scores, floor)
        ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
        score = np.array([d.score for d in result.detections])  # select() stores the variant's score
        variants[name] = (ras, score)
    hit = match_candidates(scored.pre.geometry.ijk_to_ras_points(scored.candidates.kji[:, ::-1]), gt_ras, gt_diam)
    hits = len(np.unique(hit[hit >= 0]))
    return ScanOutcome(gt_ras, gt_diam, variants, "2D GRE" if scan.protocol.kind == "gre2d" else "3D SWI",
                       hits, len(response))


def summarise(outcomes: list[ScanOutcome], variant: str, threshold: float, scan_threshold: float | None = None) -> dict:
    """Lesion and subject metrics of one variant at one threshold; a scan counts as positive when
    it has a detection (or, with ``scan_threshold``, when its best detection reaches that)."""
    tp = fp = n_gt = 0
    has_cmb, predicted, scan_scores = [], [], []
    for o in outcomes:
        ras, scores = o.variants[variant]
        keep = scores >= threshold
        matched = match_detections(ras[keep], scores[keep], o.gt_ras, o.gt_diam)
        tp += int((matched >= 0).sum())
        fp += int((matched < 0).sum())
        n_gt += len(o.gt_ras)
        has_cmb.append(len(o.gt_ras) > 0)
        best = float(scores.max()) if len(scores) else 0.0
        predicted.append(bool(keep.any()) if scan_threshold is None else best >= scan_threshold)
        scan_scores.append(best)
    return {"lesion": lesion_metrics(tp, fp, n_gt, len(outcomes)),
            "subject": subject_metrics(np.array(has_cmb), np.array(predicted), np.array(scan_scores))}


def froc(outcomes: list[ScanOutcome], variant: str, thresholds=FROC_THRESHOLDS) -> list[tuple[float, float, float]]:
    """(threshold, false positives per scan, sensitivity) points."""
    points = []
    for t in thresholds:
        lesion = summarise(outcomes, variant, t)["lesion"]
        points.append((t, lesion["fp_per_scan"], lesion["sensitivity"]))
    return points
