"""Ball morphology: the same masks as scipy.ndimage with the ball as structure, edges included."""

import numpy as np
import pytest
from scipy import ndimage

from CMBDetectorLib import morphology
from CMBDetectorLib.preprocessing import _fill_holes_by_slice, _otsu, brain_mask
from test_stages import head_phantom

SCIPY = {"erode": ndimage.binary_erosion, "dilate": ndimage.binary_dilation,
         "opening": ndimage.binary_opening, "closing": ndimage.binary_closing}


def test_ball_is_the_voxels_within_the_radius():
    ball = morphology.ball(2)
    assert ball.shape == (5, 5, 5) and ball.sum() == 33  # 1 + 6 + 12 + 8 + 6 offsets with |d|^2 <= 4
    assert ball[2, 2, 0] and not ball[0, 0, 2]


@pytest.mark.parametrize("op", sorted(SCIPY))
def test_each_operation_matches_scipy_with_the_ball(op):
    rng = np.random.default_rng(7)
    for _ in range(25):  # shapes from smaller than the ball to several times it, sparse to dense
        shape = tuple(int(n) for n in rng.integers(1, 16, 3))
        mask = rng.random(shape) < rng.uniform(0.2, 0.97)
        radius = int(rng.integers(1, 6))
        expected = SCIPY[op](mask, morphology.ball(radius))
        np.testing.assert_array_equal(getattr(morphology, op)(mask, radius), expected, err_msg=f"{shape} r={radius}")


def test_edges_count_as_background():
    full = np.ones((9, 9, 9), bool)
    eroded = morphology.erode(full, 2)
    assert eroded[4, 4, 4] and not eroded[1, 4, 4] and not eroded[4, 4, 8]
    assert morphology.closing(full, 2).sum() == eroded.sum()  # the closing's erosion sees the edge too
    assert not morphology.dilate(np.zeros((5, 5, 5), bool), 3).any()


def test_brain_mask_is_the_scipy_formulation():
    """The pipeline's brain mask with the fast ball operations equals the one scipy's gives."""
    image, _ = head_phantom(rng=np.random.default_rng(3))
    smooth = ndimage.gaussian_filter(image, 1.0)
    fg = smooth > _otsu(smooth[smooth > 0])
    opened = ndimage.binary_opening(fg, morphology.ball(4))
    labels, n = ndimage.label(opened)
    brain = labels == 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(labels), labels, np.arange(1, n + 1))))
    brain = _fill_holes_by_slice(ndimage.binary_fill_holes(ndimage.binary_closing(brain, morphology.ball(4))))
    np.testing.assert_array_equal(brain_mask(image), ndimage.binary_erosion(brain, morphology.ball(2)))
