"""IJK <-> RAS geometry and the SimpleITK (LPS) conversion."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry, from_sitk, read_image, to_sitk, write_image


def oblique(left_handed=False):
    d = Rotation.from_euler("xyz", [12, -25, 40], degrees=True).as_matrix()
    if left_handed:
        d[:, 0] *= -1
    return Geometry.from_parts((0.6, 0.8, 2.5), (-90.0, 110.0, -40.0), d)


@pytest.mark.parametrize("left_handed", [False, True])
def test_points_round_trip(left_handed):
    g = oblique(left_handed)
    ijk = np.array([[0, 0, 0], [3.5, 7.25, 1.0], [100, 50, 20]])
    np.testing.assert_allclose(g.ras_to_ijk_points(g.ijk_to_ras_points(ijk)), ijk, atol=1e-9)
    np.testing.assert_allclose(g.spacing, [0.6, 0.8, 2.5])


def test_no_points_map_to_no_points():
    g = oblique()
    assert g.ijk_to_ras_points(np.zeros((0, 3), int)).shape == (0, 3)
    assert g.ras_to_ijk_points(np.zeros((0, 3))).shape == (0, 3)


def test_ijk_to_ras_matches_matrix():
    g = oblique()
    ijk = np.array([4.0, 5.0, 6.0, 1.0])
    np.testing.assert_allclose(g.ijk_to_ras_points(ijk[:3])[0], (g.ijk_to_ras @ ijk)[:3])


@pytest.mark.parametrize("left_handed", [False, True])
def test_sitk_round_trip_and_file(tmp_path, left_handed):
    g = oblique(left_handed)
    a = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    a2, g2 = from_sitk(to_sitk(a, g))
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_allclose(g.ijk_to_ras, g2.ijk_to_ras, atol=1e-6)
    write_image(tmp_path / "x.nii.gz", a, g)
    a3, g3 = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(a, a3)
    np.testing.assert_allclose(g.ijk_to_ras, g3.ijk_to_ras, atol=1e-4)


def test_sitk_is_lps():
    g = Geometry.from_parts(origin=(10.0, 20.0, 30.0))
    assert to_sitk(np.zeros((2, 2, 2), np.float32), g).GetOrigin() == (-10.0, -20.0, 30.0)


def test_bad_geometry_and_files(tmp_path):
    with pytest.raises(CMBDetectorError):
        Geometry.from_parts(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(CMBDetectorError):
        Geometry(np.full((4, 4), np.nan))
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really a nifti")
    with pytest.raises(CMBDetectorError, match="broken.nii.gz"):
        read_image(bad)


def test_slice_thickness_is_the_largest_voxel_size_whatever_the_axis_order_and_direction():
    direction = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    assert Geometry.from_parts((2.8, 0.9, 0.9), direction=direction).slice_thickness == pytest.approx(2.8)
    assert Geometry.from_parts((0.5, 0.5, 0.5)).slice_thickness == pytest.approx(0.5)
