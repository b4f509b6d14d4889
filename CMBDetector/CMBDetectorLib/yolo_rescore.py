"""YOLO rescoring: a 2D detector looks at slices through each CNN survivor.

The weights say which views they were trained on (``cmb_yolo_rescore.json`` beside them; none:
axial). Axial: each survivor gets three axial crops (its slice and the slices above and below,
each with its own neighbours as RGB channels). Orthogonal: one crop whose channels are the
axial, coronal and sagittal planes through it, so a vein running through the slice, a dot on
the axial plane, is a line on the other two. The YOLO score is the best confidence of a box
whose centre lies on the candidate, so elongated vessels and other mimics that fool the 3D CNN
lose score.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import CMBDetectorError
from .patches import extract_axial_crops, extract_orthogonal_crops
from .progress import FractionCallback
from .validation import RETRAIN_HINT

CROP_VOXELS = 32  # axial field of view of a crop, in working-space voxels (1 mm)
UPSCALE = 3  # crops are enlarged so a 2-3 mm lesion spans more than one stride-8 cell
IMAGE_SIZE = CROP_VOXELS * UPSCALE
YOLO_WEIGHTS = "cmb_yolo_rescore.pt"
CENTRE_TOLERANCE_VOXELS = 2.0
BOX_MARGIN_MM = 2.0  # boxes frame the lesion's dark core plus this margin
AXIAL, ORTHOGONAL = "axial", "orthogonal"
VIEWS = (AXIAL, ORTHOGONAL)


def views_file(weights: Path) -> Path:
    """The JSON beside a YOLO weights file that names its views."""
    return Path(weights).with_suffix(".json")


def read_views(weights: Path) -> str:
    """The views the weights were trained on: axial when no JSON lies beside them."""
    path = views_file(weights)
    if not path.is_file():
        return AXIAL
    try:
        views = json.loads(path.read_text()).get("views")
    except (OSError, ValueError, AttributeError) as exc:
        raise CMBDetectorError(f"'{path}' is not a readable YOLO views file ({exc}): {RETRAIN_HINT}.") from exc
    if views not in VIEWS:
        raise CMBDetectorError(f"'{path}' names views {views!r}; expected one of {', '.join(VIEWS)}.")
    return views


def rescoring_crops(image: np.ndarray, kji: np.ndarray, views: str) -> np.ndarray:
    """(N, M, IMAGE_SIZE, IMAGE_SIZE, 3) crops the detector sees for each point: M = 3 axial
    crops, or 1 orthogonal-plane crop."""
    if views == ORTHOGONAL:
        return extract_orthogonal_crops(image, kji, CROP_VOXELS, upscale=UPSCALE)[:, None]
    return extract_axial_crops(image, kji, CROP_VOXELS, upscale=UPSCALE)


class YoloRescorer:
    """Loads the shipped ultralytics model (offline) and scores candidates."""

    def __init__(self, models_dir: Path, device: str = "cpu"):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # ultralytics must never pip-install into Slicer
        path = Path(models_dir) / YOLO_WEIGHTS
        if not path.is_file():
            raise CMBDetectorError(f"Model weights not found at '{path}': {RETRAIN_HINT}.")
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a damaged file
            raise CMBDetectorError(
                f"Model weights file '{path}' is corrupt or incompatible ({exc}): {RETRAIN_HINT}.") from exc
        self.views = read_views(path)
        self.device = device

    def score(self, image: np.ndarray, kji: np.ndarray, diameters_mm: np.ndarray, spacing: float = 1.0,
              batch_size: int = 96, progress: FractionCallback | None = None) -> np.ndarray:
        """Best on-centre box confidence over the crops through each candidate;
        ``progress(fraction done)`` is called before each batch."""
        import torch

        if len(kji) == 0:
            return np.zeros(0, dtype=np.float32)
        crops = rescoring_crops(image, kji, self.views)
        n, m = crops.shape[:2]
        flat = crops.reshape(n * m, IMAGE_SIZE, IMAGE_SIZE, 3)
        tolerance = UPSCALE * np.maximum(CENTRE_TOLERANCE_VOXELS, np.repeat(diameters_mm, m) / (2 * spacing))
        best = np.zeros(n * m, dtype=np.float32)
        threads = torch.get_num_threads()
        try:
            for start in range(0, len(flat), batch_size):
                if progress is not None:
                    progress(start / len(flat))
                results = self.model.predict(list(flat[start:start + batch_size]), imgsz=IMAGE_SIZE, conf=0.01,
                                             device=self.device, verbose=False)
                for offset, result in enumerate(results):
                    best[start + offset] = _centre_confidence(result, tolerance[start + offset])
        finally:  # ultralytics sets torch's CPU threads to (cores - 1, at most 8) for the whole process:
            torch.set_num_threads(threads)  # on 2 cores the next scan's CNN would run on one thread
        return best.reshape(n, m).max(axis=1)


def _centre_confidence(result, tolerance: float) -> float:
    """Highest confidence among boxes centred within ``tolerance`` pixels of the crop centre."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return 0.0
    xywh = boxes.xywh.cpu().numpy()
    conf = boxes.conf.cpu().numpy()
    centre = (CROP_VOXELS // 2 + 0.5) * UPSCALE  # centre of the candidate's voxel
    near = np.hypot(xywh[:, 0] - centre, xywh[:, 1] - centre) <= tolerance
    return float(conf[near].max()) if near.any() else 0.0
