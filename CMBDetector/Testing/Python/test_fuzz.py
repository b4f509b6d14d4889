"""Seeded fuzzing of ``pipeline.detect``: random shapes, dtypes, spacings, orientations and
content must end in a consistent DetectionResult or a CMBDetectorError, never another exception.

Runs with small randomly initialised models written to a temporary folder, so it needs no
shipped weights and checks the contract, not the accuracy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from CMBDetectorLib.cnn import CNN_WEIGHTS, build_model
from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.pipeline import detect
from CMBDetectorLib.results import DetectionResult
from CMBDetectorLib.yolo_rescore import YOLO_WEIGHTS

N_CASES = 15
YOLO_CASES = (1, 7)  # fault-free, so YOLO really runs
MAX_FIELD_MM = 170.0  # keeps the 1 mm working grid small, so the whole file runs in well under a minute
DTYPES = (np.float32, np.float64, np.int16, np.uint8, np.uint16)
# Even-numbered cases each carry one of these faults, which must be refused; odd ones are odd but usable.
FAULTS = ("2d", "tiny", "constant", "phase", "mostly_nan", "label", "mask_mismatch", "empty_mask")


@dataclass(frozen=True)
class Case:
    """Recipe for one random input (the arrays are built from its seed when the test runs)."""

    index: int
    shape: tuple[int, ...]  # k, j, i [, echo]
    spacing: tuple[float, float, float]  # i, j, k
    left_handed: bool
    dtype: type
    nan_fraction: float
    box_mask: bool
    threshold: float
    fault: str | None

    def __str__(self) -> str:
        sp = "x".join(f"{s:.1f}" for s in self.spacing)
        return (f"{self.index}-{'x'.join(map(str, self.shape))}-{sp}mm-{'LR'[not self.left_handed]}-"
                f"{np.dtype(self.dtype).name}-{self.fault or 'ok'}")


def make_cases(seed: int = 20240601) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for n in range(N_CASES):
        spacing = tuple(float(s) for s in rng.uniform(0.4, 6.0, size=3))  # i, j, k
        shape = tuple(int(rng.integers(lo, max(lo, min(48, int(MAX_FIELD_MM / s))) + 1))
                      for s in spacing[::-1] for lo in [max(16, int(np.ceil(18 / s)))])
        if rng.random() < 0.25:
            shape += (int(rng.integers(1, 4)),)  # multi-echo
        fault = None if n % 2 else FAULTS[n // 2 % len(FAULTS)]
        if fault == "2d":
            shape = shape[1:3]
        elif fault == "tiny":
            shape = (int(rng.integers(4, 16)),) + shape[1:]
        dtype = np.float32 if fault == "mostly_nan" else DTYPES[rng.integers(len(DTYPES))]
        cases.append(Case(
            index=n, shape=shape, spacing=spacing, left_handed=bool(rng.integers(2)), dtype=dtype,
            nan_fraction=float(rng.uniform(0.0, 0.1)) if np.dtype(dtype).kind == "f" else 0.0,
            box_mask=bool(rng.integers(2)), threshold=float(rng.uniform(0.0, 0.3)), fault=fault))
    return cases


def build_input(case: Case) -> tuple[np.ndarray, Geometry, np.ndarray | None]:
    """Noisy magnitude with a few dark spots (or the case's fault), its geometry and mask."""
    rng = np.random.default_rng(case.index)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if (np.linalg.det(q) < 0) != case.left_handed:
        q[:, 0] *= -1
    geometry = Geometry.from_parts(case.spacing, origin=rng.uniform(-120, 120, size=3), direction=q)

    shape = case.shape
    values = rng.uniform(80, 240, size=shape)
    for _ in range(6 if len(shape) >= 3 else 0):
        centre = [int(rng.integers(2, s - 2)) for s in shape[:3]]
        values[tuple(slice(c - 1, c + 2) for c in centre)] = 10.0
    if case.fault == "constant":
        values[:] = 100.0
    elif case.fault == "phase":
        values = rng.uniform(-np.pi, np.pi, size=shape) * (1 if np.dtype(case.dtype).kind == "f" else 1000)
    elif case.fault == "label":
        values = rng.integers(0, 5, size=shape).astype(float)
    if np.issubdtype(case.dtype, np.integer):
        info = np.iinfo(case.dtype)
        values = np.round(values).clip(info.min, info.max)
    array = values.astype(case.dtype)
    nan_fraction = 0.7 if case.fault == "mostly_nan" else case.nan_fraction
    if nan_fraction:
        array[rng.random(shape) < nan_fraction] = np.nan

    mask = None
    if case.box_mask or case.fault in ("mask_mismatch", "empty_mask"):
        mask = np.zeros(shape[:3], bool)
        mask[tuple(slice(s // 4, s - s // 4) for s in shape[:3])] = case.fault != "empty_mask"
        if case.fault == "mask_mismatch":
            mask = mask[1:]
    return array, geometry, mask


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Randomly initialised CNN and YOLO weights in the shipped file format."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    torch.save({"state_dict": build_model(4).state_dict(), "width": 4}, folder / CNN_WEIGHTS)
    YOLO("yolov8n.yaml", task="detect").save(folder / YOLO_WEIGHTS)
    return folder


@pytest.mark.parametrize("case", make_cases(), ids=str)
def test_detect_returns_consistent_result_or_refuses(case, models_dir):
    array, geometry, mask = build_input(case)
    original = array.copy()
    config = DetectorConfig(device="cpu", threshold=case.threshold, use_yolo=case.index in YOLO_CASES,
                            models_dir=models_dir)
    try:
        result = detect(array, geometry, config, mask=mask)
    except CMBDetectorError as exc:
        assert str(exc), "refusals must explain themselves"
        return
    finally:
        np.testing.assert_array_equal(array, original)  # caller's volume untouched
    assert case.fault is None, f"a '{case.fault}' input was not refused"

    assert isinstance(result, DetectionResult)
    np.testing.assert_array_equal(result.geometry.ijk_to_ras, geometry.ijk_to_ras)
    upper = np.asarray(array.shape[:3][::-1], dtype=float) - 0.5
    scores = [d.score for d in result.detections]
    assert scores == sorted(scores, reverse=True)
    for d in result.detections:
        ijk = np.asarray(d.ijk)
        assert np.all(ijk >= -0.5) and np.all(ijk <= upper), f"{ijk} outside volume {array.shape}"
        np.testing.assert_allclose(d.ras, geometry.ijk_to_ras_points(ijk)[0], atol=1e-3)
        assert case.threshold <= d.score <= 1.0
