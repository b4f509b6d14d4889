"""Small metrics shared by training and evaluation."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); nan with one class."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties
    unique, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


MATCH_MARGIN_MM = 2.0  # a hit lies within the microbleed's radius + this


def match_candidates(points_mm: np.ndarray, cmb_mm: np.ndarray, cmb_diam: np.ndarray) -> np.ndarray:
    """Index of the microbleed each point hits (centre within radius + 2 mm), -1 for none."""
    hit = np.full(len(points_mm), -1, dtype=int)
    if len(cmb_mm) == 0 or len(points_mm) == 0:
        return hit
    dist = np.linalg.norm(points_mm[:, None, :] - cmb_mm[None, :, :], axis=2)
    within = dist <= cmb_diam[None, :] / 2 + MATCH_MARGIN_MM
    nearest = np.argmin(np.where(within, dist, np.inf), axis=1)
    hit[within.any(axis=1)] = nearest[within.any(axis=1)]
    return hit


def match_detections(det_ras: np.ndarray, det_scores: np.ndarray, gt_ras: np.ndarray, gt_diam: np.ndarray,
                     margin_mm: float = MATCH_MARGIN_MM) -> np.ndarray:
    """Greedy one-to-one matching, best score first: a detection is a true positive when its
    centre lies within a microbleed's radius + ``margin_mm``. Returns the matched GT index or -1."""
    det_ras = np.asarray(det_ras, dtype=float).reshape(-1, 3)
    gt_ras = np.asarray(gt_ras, dtype=float).reshape(-1, 3)
    matched = np.full(len(det_ras), -1, dtype=int)
    taken = np.zeros(len(gt_ras), dtype=bool)
    for n in np.argsort(-np.asarray(det_scores), kind="stable"):
        if len(gt_ras) == 0:
            break
        dist = np.linalg.norm(gt_ras - det_ras[n], axis=1)
        ok = (dist <= np.asarray(gt_diam) / 2 + margin_mm) & ~taken
        if ok.any():
            m = int(np.argmin(np.where(ok, dist, np.inf)))
            matched[n], taken[m] = m, True
    return matched


def lesion_metrics(n_tp: int, n_fp: int, n_gt: int, n_scans: int) -> dict:
    """Lesion-level sensitivity, precision, F1 and false positives per scan."""
    sens = n_tp / n_gt if n_gt else float("nan")
    prec = n_tp / (n_tp + n_fp) if n_tp + n_fp else float("nan")
    f1 = 2 * sens * prec / (sens + prec) if n_tp else 0.0
    return {"sensitivity": sens, "precision": prec, "f1": f1, "fp_per_scan": n_fp / max(n_scans, 1),
            "tp": n_tp, "fp": n_fp, "n_lesions": n_gt}


def subject_metrics(has_cmb: np.ndarray, predicted: np.ndarray, scan_scores: np.ndarray) -> dict:
    """Subject-level figures in the seed paper's form for "scan has >= 1 microbleed"."""
    y = np.asarray(has_cmb, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    tp, tn = int((y & p).sum()), int((~y & ~p).sum())
    fp, fn = int((~y & p).sum()), int((y & ~p).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"balanced_accuracy": (sens + spec) / 2, "auc": roc_auc(y, scan_scores), "precision": prec,
            "sensitivity": sens, "specificity": spec, "f1": f1}
