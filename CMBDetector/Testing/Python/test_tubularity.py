"""Hessian blobness: a round dark dot against a tube (a vein through the slice) or a sheet."""

import numpy as np

from CMBDetectorLib.tubularity import blobness, hessian_scale

SHAPE = (48, 48, 48)
CENTRE = np.array([[24, 24, 24]])


def _grid():
    return np.stack(np.mgrid[:48, :48, :48], axis=-1).astype(float) - 24.0


def _dark(distance2: np.ndarray, radius: float) -> np.ndarray:
    return (1.0 - 0.8 * np.exp(-distance2 / (2 * radius ** 2))).astype(np.float32)


def test_a_round_dot_is_a_blob_at_every_size():
    p = _grid()
    for radius in (0.8, 1.5, 3.0):
        image = _dark((p ** 2).sum(-1), radius)
        assert blobness(image, CENTRE, np.array([3.4 * radius]))[0] > 0.9


def test_a_tube_in_any_direction_and_a_sheet_are_not():
    p = _grid()
    for direction in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0.3, 1.0, 0.2)):
        d = np.asarray(direction, float) / np.linalg.norm(direction)
        across = p - (p @ d)[..., None] * d
        for radius in (0.7, 1.5):
            image = _dark((across ** 2).sum(-1), radius)
            assert blobness(image, CENTRE, np.array([3.4 * radius]))[0] < 0.1, (direction, radius)
    sheet = _dark(p[..., 0] ** 2, 1.0)
    assert blobness(sheet, CENTRE, np.array([3.0]))[0] < 0.1


def test_a_bright_spot_flat_tissue_and_no_points():
    p = _grid()
    bright = 2.0 - _dark((p ** 2).sum(-1), 1.5)
    flat = np.ones(SHAPE, np.float32)
    assert blobness(bright, CENTRE, np.array([5.0]))[0] == 0
    assert blobness(flat, CENTRE, np.array([5.0]))[0] == 0
    assert blobness(flat, np.zeros((0, 3), int), np.zeros(0)).shape == (0,)
    # A point at the volume's edge is padded, not an index error.
    assert np.isfinite(blobness(flat, np.array([[0, 47, 0]]), np.array([5.0]))).all()


def test_scale_follows_the_candidate_diameter_within_bounds():
    np.testing.assert_allclose(hessian_scale(np.array([1.0, 4.5, 30.0])), [1.0, 1.5, 2.5])
