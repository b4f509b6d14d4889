"""Shipped weights load offline; missing or corrupt weights give a clear error."""

import shutil

import numpy as np
import pytest

from CMBDetectorLib.cnn import CNN_WEIGHTS, PATCH_SIZE, CandidateClassifier, build_model
from CMBDetectorLib.config import MODELS_DIR
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.yolo_rescore import YOLO_WEIGHTS, YoloRescorer


def test_shipped_weights_are_small_and_have_model_cards():
    cnn, yolo = MODELS_DIR / CNN_WEIGHTS, MODELS_DIR / YOLO_WEIGHTS
    assert cnn.stat().st_size < 2_000_000
    assert yolo.stat().st_size < 8_000_000
    for card in ("cmb_cnn3d.md", "cmb_yolo_rescore.md"):
        text = (MODELS_DIR / card).read_text()
        assert "synthetic" in text.lower() and "retrain" in text.lower()


def test_cnn_scores_dark_sphere_above_flat_tissue():
    clf = CandidateClassifier(MODELS_DIR, "cpu")
    rng = np.random.default_rng(0)
    image = (1.0 + rng.normal(0, 0.03, (48, 48, 48))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    image[(k - 24) ** 2 + (j - 24) ** 2 + (i - 24) ** 2 <= 4] = 0.15
    scores = clf.score(image, np.array([[24, 24, 24], [10, 10, 10]]))
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    assert scores[0] > scores[1]


def test_model_parameter_budget():
    import torch

    model = build_model(16)
    assert sum(p.numel() for p in model.parameters()) < 400_000
    assert model(torch.zeros(2, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)).shape == (2, 1)


@pytest.mark.parametrize("loader, name", [(CandidateClassifier, CNN_WEIGHTS), (YoloRescorer, YOLO_WEIGHTS)])
def test_missing_and_corrupt_weights(tmp_path, loader, name):
    with pytest.raises(CMBDetectorError, match="not found"):
        loader(tmp_path, "cpu")
    shutil.copyfile(MODELS_DIR / name, tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(CMBDetectorError, match=name):
        loader(tmp_path, "cpu")
