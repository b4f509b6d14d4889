"""Turn a scan with known microbleed centres into CNN cubes and YOLO slice crops.

The scan goes through exactly the inference preprocessing and candidate screen, so the models
learn the candidate distribution they will see. Works on synthetic scans and on real annotated
scans (NIfTI + CSV of CMB centres in RAS mm) alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..candidates import find_candidates
from ..cnn import PATCH_SIZE
from ..geometry import Geometry
from ..patches import extract_axial_crops, extract_orthogonal_crops, extract_patches
from ..preprocessing import preprocess
from ..evaluation.metrics import match_candidates
from ..yolo_rescore import AXIAL, BOX_MARGIN_MM, CROP_VOXELS, ORTHOGONAL, UPSCALE

MIN_BOX_MM = 4.0

Ranker = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class ScanExamples:
    cubes: np.ndarray  # (N, P, P, P) float32
    cube_labels: np.ndarray  # (N,) 1 = microbleed
    crops: np.ndarray  # (M, S, S, 3) uint8 crops (axial slices, or orthogonal planes)
    boxes: list[np.ndarray]  # per crop (B, 4) normalised cx, cy, w, h of microbleeds
    views: str = AXIAL


def scan_examples(array: np.ndarray, geometry: Geometry, cmb_ras: np.ndarray, cmb_diam: np.ndarray,
                  rng: np.random.Generator, hard_negatives: int = 50, random_negatives: int = 50,
                  crop_negatives: int = 40, jitter_px: int = 8, ranker: Ranker | None = None,
                  views: str = AXIAL) -> ScanExamples:
    """Examples of one scan: cubes on every matched candidate, on each true microbleed (jittered)
    and on the hardest plus some random unmatched candidates; YOLO crops (``views``: axial slices
    shifted up to ``jitter_px`` in-plane, or the three orthogonal planes through the point) around
    the positives and the first ``crop_negatives`` negatives, with the microbleeds' boxes.

    Hardest means the strongest blobs, or, with ``ranker(image, kji) -> scores`` (e.g. the current
    CNN), the mimics that model scores highest: hard-negative mining."""
    pre = preprocess(array.astype(np.float32), geometry)
    cands = find_candidates(pre.image, pre.mask)
    cmb_ras = np.asarray(cmb_ras, dtype=float).reshape(-1, 3)
    cmb_diam = np.asarray(cmb_diam, dtype=float)
    cmb_kji = pre.geometry.ras_to_ijk_points(cmb_ras)[:, ::-1]
    inside = np.all((cmb_kji >= 0) & (cmb_kji < np.asarray(pre.image.shape)), axis=1)
    cmb_kji, cmb_ras, cmb_diam = cmb_kji[inside], cmb_ras[inside], cmb_diam[inside]

    hit = match_candidates(pre.geometry.ijk_to_ras_points(cands.kji[:, ::-1]), cmb_ras, cmb_diam)
    unmatched = np.flatnonzero(hit < 0)
    if ranker is not None and len(unmatched):
        unmatched = unmatched[np.argsort(-ranker(pre.image, cands.kji[unmatched]), kind="stable")]
    rest = unmatched[hard_negatives:]
    negatives = np.concatenate([unmatched[:hard_negatives],
                                rng.choice(rest, size=min(random_negatives, len(rest)), replace=False)])
    positives = np.flatnonzero(hit >= 0)
    jittered = _jittered(cmb_kji, pre.image.shape, rng)
    cube_points = np.concatenate([cands.kji[positives], jittered, cands.kji[negatives]])
    labels = np.concatenate([np.ones(len(positives) + len(jittered)), np.zeros(len(negatives))])
    cubes = extract_patches(pre.image, cube_points, PATCH_SIZE)

    crop_points = cube_points[:len(positives) + len(jittered) + crop_negatives]
    spacing = float(pre.geometry.spacing[0])
    if views == ORTHOGONAL:  # one crop per point instead of an in-plane shift: two more per microbleed
        more = [_jittered(cmb_kji, pre.image.shape, rng) for _ in range(2)]
        crop_points = np.concatenate([crop_points, *more])
        crops = extract_orthogonal_crops(pre.image, crop_points, CROP_VOXELS, upscale=UPSCALE)
        boxes = [_boxes_in_planes(c, cmb_kji, cmb_diam / spacing) for c in crop_points]
        return ScanExamples(cubes, labels.astype(np.float32), crops, boxes, views)
    shift = rng.integers(-jitter_px, jitter_px + 1, size=(len(crop_points), 3))
    shift[:, 0] = 0
    crop_centres = np.clip(crop_points + shift, 0, np.asarray(pre.image.shape) - 1)
    crops = extract_axial_crops(pre.image, crop_centres, CROP_VOXELS, offsets=(0,), upscale=UPSCALE)[:, 0]
    boxes = [_boxes_in_crop(c, cmb_kji, cmb_diam / spacing) for c in crop_centres]
    return ScanExamples(cubes, labels.astype(np.float32), crops, boxes, views)


def _jittered(kji: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Voxels within ±1 of each (sub-voxel) point, kept inside the volume."""
    return np.clip(np.round(kji + rng.integers(-1, 2, size=kji.shape)).astype(int), 0, np.asarray(shape) - 1)


def _boxes_in_crop(centre_kji: np.ndarray, cmb_kji: np.ndarray, cmb_diam_px: np.ndarray) -> np.ndarray:
    """YOLO boxes (normalised cx, cy, w, h) of microbleeds cut by the crop's axial slice: the
    lesion's chord on that slice plus a margin (working space is 1 mm, so px = mm)."""
    half = CROP_VOXELS // 2
    rows = []
    for (k, j, i), d in zip(cmb_kji, cmb_diam_px):
        dz = abs(k - centre_kji[0])
        r = d / 2
        if dz > r:
            continue
        size = max(MIN_BOX_MM, 2 * np.sqrt(r * r - dz * dz) + BOX_MARGIN_MM)
        cx, cy = i - centre_kji[2] + half + 0.5, j - centre_kji[1] + half + 0.5  # voxel centres
        if 0 <= cx < CROP_VOXELS and 0 <= cy < CROP_VOXELS:
            rows.append([cx / CROP_VOXELS, cy / CROP_VOXELS, size / CROP_VOXELS, size / CROP_VOXELS])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def _boxes_in_planes(centre_kji: np.ndarray, cmb_kji: np.ndarray, cmb_diam_px: np.ndarray) -> np.ndarray:
    """Boxes of an orthogonal-plane crop: microbleeds that all three planes cut (so they are a dot
    in every channel), framed at their axial position like :func:`_boxes_in_crop`."""
    offsets = np.abs(np.asarray(cmb_kji, float).reshape(-1, 3) - centre_kji)
    cut = np.all(offsets <= np.asarray(cmb_diam_px, float)[:, None] / 2, axis=1)
    return _boxes_in_crop(centre_kji, cmb_kji[cut], cmb_diam_px[cut])
