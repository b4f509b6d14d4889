"""YOLO views: orthogonal-plane crops, their training boxes, and the views file beside the weights."""

import json
import shutil

import numpy as np
import pytest

from CMBDetectorLib.config import MODELS_DIR
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.patches import extract_orthogonal_crops
from CMBDetectorLib.yolo_rescore import (AXIAL, IMAGE_SIZE, ORTHOGONAL, YOLO_WEIGHTS, YoloRescorer, read_views,
                                         rescoring_crops, views_file)

SIZE = 32


def _dark_length(channel: np.ndarray, axis: int) -> int:
    """How many pixels along ``axis`` (through the crop centre) are dark."""
    line = np.take(channel, SIZE // 2, axis=1 - axis)
    return int((line < 64).sum())


def test_orthogonal_crops_show_a_sphere_as_a_dot_and_a_through_slice_vein_as_a_line():
    k, j, i = np.indices((48, 48, 48))
    sphere = np.where((k - 24) ** 2 + (j - 20) ** 2 + (i - 28) ** 2 <= 4, 0.1, 1.0).astype(np.float32)
    vein = np.where((j - 20) ** 2 + (i - 28) ** 2 <= 4, 0.1, 1.0).astype(np.float32)  # along k (the B0 axis)
    dot, tube = extract_orthogonal_crops(sphere, [[24, 20, 28]], SIZE)[0], extract_orthogonal_crops(vein, [[24, 20, 28]], SIZE)[0]
    assert dot.shape == tube.shape == (SIZE, SIZE, 3) and dot.dtype == np.uint8
    for c in range(3):  # centred dot, 5 pixels across, in every plane
        assert dot[SIZE // 2, SIZE // 2, c] < 64
        assert _dark_length(dot[..., c], 0) == _dark_length(dot[..., c], 1) == 5
    assert _dark_length(tube[..., 0], 0) == _dark_length(tube[..., 0], 1) == 5  # the axial slice: a dot
    for c in (1, 2):  # coronal and sagittal: rows are k, so the vein runs down the whole crop
        assert _dark_length(tube[..., c], 0) == SIZE and _dark_length(tube[..., c], 1) == 5


def test_orthogonal_channels_are_the_planes_through_the_point():
    image = np.random.default_rng(0).random((40, 40, 40)).astype(np.float32) * 2
    crop = extract_orthogonal_crops(image, [[20, 18, 22]], SIZE)[0]
    half = SIZE // 2
    expect = np.clip(image[20, 18 - half:18 + half, 22 - half:22 + half], 0, 2) * 127.5
    np.testing.assert_array_equal(crop[..., 0], expect.astype(np.uint8))
    np.testing.assert_array_equal(crop[..., 1], (image[20 - half:20 + half, 18, 22 - half:22 + half] * 127.5).astype(np.uint8))
    np.testing.assert_array_equal(crop[..., 2], (image[20 - half:20 + half, 18 - half:18 + half, 22] * 127.5).astype(np.uint8))


def test_rescoring_crops_per_view():
    image = np.ones((40, 40, 40), np.float32)
    points = np.array([[20, 20, 20], [10, 30, 25]])
    assert rescoring_crops(image, points, AXIAL).shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert rescoring_crops(image, points, ORTHOGONAL).shape == (2, 1, IMAGE_SIZE, IMAGE_SIZE, 3)


def test_training_boxes_only_for_microbleeds_every_plane_cuts():
    from CMBDetectorLib.training.examples import _boxes_in_planes

    centre = np.array([20, 20, 20])
    cmbs = np.array([[21, 20, 19], [20, 23, 20], [20, 20, 26]])  # on the point; 3 off in j; 6 off in i
    boxes = _boxes_in_planes(centre, cmbs, np.array([4.0, 4.0, 4.0]))
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0][:2], [(SIZE // 2 - 1 + 0.5) / SIZE, (SIZE // 2 + 0.5) / SIZE])
    assert len(_boxes_in_planes(centre, cmbs, np.array([4.0, 7.0, 4.0]))) == 2  # a larger one is cut by all


def test_views_file_absent_means_axial_and_a_bad_one_is_refused(tmp_path):
    weights = tmp_path / YOLO_WEIGHTS
    assert read_views(weights) == AXIAL
    views_file(weights).write_text(json.dumps({"views": ORTHOGONAL}))
    assert read_views(weights) == ORTHOGONAL
    views_file(weights).write_text(json.dumps({"views": "oblique"}))
    with pytest.raises(CMBDetectorError, match="oblique"):
        read_views(weights)
    views_file(weights).write_text("{not json")
    with pytest.raises(CMBDetectorError, match="views file"):
        read_views(weights)


def test_rescorer_runs_one_orthogonal_crop_per_candidate(tmp_path):
    shutil.copyfile(MODELS_DIR / YOLO_WEIGHTS, tmp_path / YOLO_WEIGHTS)
    views_file(tmp_path / YOLO_WEIGHTS).write_text(json.dumps({"views": ORTHOGONAL}))
    rescorer = YoloRescorer(tmp_path)
    seen = []
    predict = rescorer.model.predict
    rescorer.model.predict = lambda images, **kw: seen.append(len(images)) or predict(images, **kw)
    image = np.ones((40, 48, 48), np.float32)
    scores = rescorer.score(image, np.array([[20, 24, 24], [20, 10, 30]]), np.array([3.0, 3.0]))
    assert rescorer.views == ORTHOGONAL and seen == [2] and scores.shape == (2,)


def test_train_yolo_refuses_mixed_views(tmp_path):
    from CMBDetectorLib.training.train_yolo import dataset_views

    crops = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    common = dict(crops=crops, box_counts=np.array([0]), boxes=np.zeros((0, 4), np.float32))
    np.savez(tmp_path / "old.npz", **common)  # written before the key existed: axial
    np.savez(tmp_path / "ortho.npz", views=np.array(ORTHOGONAL), **common)
    assert dataset_views([tmp_path / "old.npz"]) == AXIAL
    assert dataset_views([tmp_path / "ortho.npz"]) == ORTHOGONAL
    with pytest.raises(CMBDetectorError, match="old.npz: axial, ortho.npz: orthogonal"):
        dataset_views([tmp_path / "old.npz", tmp_path / "ortho.npz"])


def test_rescoring_leaves_torch_cpu_threads_as_they_were():
    """ultralytics sets torch's CPU threads for the whole process when it predicts; the warm
    worker's next scan would run its CNN on those (one thread on 2 cores)."""
    import torch
    from ultralytics.utils import NUM_THREADS

    before = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS + 1)  # anything but what ultralytics would set
    try:
        image = np.ones((40, 64, 64), np.float32)
        image[18:23, 30:35, 30:35] = 0.1
        YoloRescorer(MODELS_DIR).score(image, np.array([[20, 32, 32]]), np.array([3.0]))
        assert torch.get_num_threads() == NUM_THREADS + 1
    finally:
        torch.set_num_threads(before)
