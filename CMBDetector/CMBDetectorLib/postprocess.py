"""3D non-maximum suppression and conversion of working-space hits to input-space detections."""

from __future__ import annotations

import numpy as np

from .geometry import Geometry
from .results import Detection


def nms_3d(points_mm: np.ndarray, scores: np.ndarray, diameters_mm: np.ndarray, min_gap_mm: float = 1.0) -> np.ndarray:
    """Indices kept, best first: a hit is dropped when it lies inside a better hit's sphere
    (its radius + ``min_gap_mm``), which also merges duplicates of one lesion."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for n in order:
        if all(np.linalg.norm(points_mm[n] - points_mm[m]) > diameters_mm[m] / 2 + min_gap_mm for m in kept):
            kept.append(int(n))
    return np.asarray(kept, dtype=int)


def to_detections(kji_work: np.ndarray, work: Geometry, source: Geometry, source_shape, diameters_mm,
                  candidate_scores, cnn_scores, yolo_scores, scores) -> list[Detection]:
    """Working-space hits -> detections in the input volume's IJK and RAS, dropping any that
    fall outside the input volume (e.g. in the padding added by resampling)."""
    ras = work.ijk_to_ras_points(np.asarray(kji_work, dtype=float)[:, ::-1]) if len(kji_work) else np.zeros((0, 3))
    ijk = source.ras_to_ijk_points(ras) if len(ras) else np.zeros((0, 3))
    upper = np.asarray(source_shape[::-1], dtype=float) - 0.5
    detections = []
    for n in range(len(ras)):
        if np.any(ijk[n] < -0.5) or np.any(ijk[n] > upper):
            continue
        detections.append(Detection(
            ras=tuple(float(v) for v in ras[n]), ijk=tuple(float(v) for v in ijk[n]),
            diameter_mm=float(diameters_mm[n]), candidate_score=float(candidate_scores[n]),
            cnn_score=float(cnn_scores[n]),
            yolo_score=None if yolo_scores is None else float(yolo_scores[n]), score=float(scores[n])))
    return detections
