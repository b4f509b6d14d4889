"""3D non-maximum suppression and conversion of working-space hits to input-space detections."""

from __future__ import annotations

import numpy as np

from .geometry import Geometry
from .results import Detection


def nms_3d(points_mm: np.ndarray, scores: np.ndarray, diameters_mm: np.ndarray, min_gap_mm: float = 2.0) -> np.ndarray:
    """Indices kept, best first: a hit is dropped when it lies inside a better hit's sphere
    (its radius + ``min_gap_mm``, the benchmark's hit distance), which also merges duplicates
    of one lesion."""
    points_mm = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    reach = np.asarray(diameters_mm, dtype=float) / 2 + min_gap_mm
    kept = np.empty(len(points_mm), dtype=int)
    n_kept = 0
    for n in np.argsort(-np.asarray(scores), kind="stable"):
        k = kept[:n_kept]
        if not np.any(np.sum((points_mm[k] - points_mm[n]) ** 2, axis=1) <= reach[k] ** 2):
            kept[n_kept] = n
            n_kept += 1
    return kept[:n_kept].copy()


def to_detections(kji_work: np.ndarray, work: Geometry, source: Geometry, source_shape, diameters_mm,
                  candidate_scores, cnn_scores, yolo_scores, scores, paramagnetic=None) -> list[Detection]:
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
            yolo_score=None if yolo_scores is None else float(yolo_scores[n]), score=float(scores[n]),
            paramagnetic_score=None if paramagnetic is None else float(paramagnetic[n])))
    return detections
