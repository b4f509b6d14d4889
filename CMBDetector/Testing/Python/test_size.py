"""Apparent size and sub-voxel centre of dark spots on thin, thick and oblique grids."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.results import Detection, size_class
from CMBDetectorLib.size import THRESHOLD, measure_detections, measure_spot

OBLIQUE = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), -np.sin(0.2)],
                    [np.sin(0.3) * np.sin(0.2), np.cos(0.3) * np.sin(0.2), np.cos(0.2)]])


def dark_sphere(spacing, diameter_mm, direction=None, shape_kji=None, depth=0.95, noise=0.02, seed=0):
    """A tissue volume (signal 100) with a dark sphere at a sub-voxel RAS position; returns the
    array, geometry, the sphere's centre and its visible multiplier (for the expected size)."""
    spacing = np.asarray(spacing, float)
    shape_kji = shape_kji or tuple(int(np.ceil(32 / s)) for s in spacing[::-1])
    geometry = Geometry.from_parts(spacing, origin=(-20.0, 13.0, 7.0), direction=direction)
    centre = geometry.ijk_to_ras_points(np.asarray(shape_kji[::-1]) / 2 + [0.3, -0.2, 0.35])[0]
    sub = (np.arange(3) + 0.5) / 3 - 0.5
    offsets = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)  # (i, j, k) fractions
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in shape_kji], indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).reshape(-1, 1, 3) + offsets[None]
    ras = geometry.ijk_to_ras_points(ijk.reshape(-1, 3)).reshape(ijk.shape)
    fraction = (np.linalg.norm(ras - centre, axis=-1) < diameter_mm / 2).mean(axis=1).reshape(shape_kji)
    visible = 1 - depth * fraction
    rng = np.random.default_rng(seed)
    return (100 * visible + rng.normal(0, 100 * noise, shape_kji)).astype(np.float32), geometry, centre, visible


def expected_diameter(visible, geometry) -> float:
    """The synthetic engine's apparent size: equivalent circle of the darkest slice's spot."""
    area = max((visible < THRESHOLD).sum(axis=(1, 2)).max(), (1 - visible).sum(axis=(1, 2)).max())
    return 2 * np.sqrt(area * geometry.spacing[0] * geometry.spacing[1] / np.pi)


def voxel_ras(array, geometry) -> np.ndarray:
    """RAS position of every voxel of ``array``, shaped (K, J, I, 3)."""
    return geometry.ijk_to_ras_points(np.argwhere(array > -1e9)[:, ::-1]).reshape(*array.shape, 3)


@pytest.mark.parametrize("spacing, diameter, direction, along_tol", [
    ((0.9, 0.9, 1.5), 3.0, None, 0.4),  # 3D SWI
    ((0.5, 0.5, 0.5), 6.5, OBLIQUE, 0.3),  # isotropic, oblique
    ((0.9, 0.9, 5.0), 4.0, OBLIQUE, 1.5),  # thick-slice 2D GRE, oblique: the acquired slice is measured
])
def test_measured_diameter_and_subvoxel_centre(spacing, diameter, direction, along_tol):
    array, geometry, centre, visible = dark_sphere(spacing, diameter, direction)
    start = centre + np.array([0.8, -0.7, 0.6])  # a detector position off by ~1 mm
    spot = measure_spot(array, geometry, start)
    assert spot.diameter_mm == pytest.approx(expected_diameter(visible, geometry), abs=0.35)
    assert spot.diameter_mm == pytest.approx(diameter, abs=0.6)
    offset = np.asarray(spot.ras) - centre
    along = offset @ geometry.direction[:, 2]
    assert np.linalg.norm(offset - along * geometry.direction[:, 2]) < 0.25  # in-plane: sub-voxel
    assert abs(along) < along_tol
    np.testing.assert_allclose(geometry.ijk_to_ras_points(spot.ijk)[0], spot.ras, atol=1e-6)


def test_spot_in_dark_tissue_is_sized_against_its_surroundings():
    array, geometry, centre, visible = dark_sphere((0.9, 0.9, 1.5), 3.0)
    nucleus = np.linalg.norm(voxel_ras(array, geometry) - centre, axis=-1) < 7  # a darker nucleus (45 %)
    array = np.where(nucleus, array * 0.45, array)
    spot = measure_spot(array, geometry, centre)
    assert spot.diameter_mm == pytest.approx(expected_diameter(visible, geometry), abs=0.4)


def test_spot_touching_a_wide_darker_structure_on_the_next_slice_is_a_microbleed():
    """A 4 mm spot under a wide structure at 55 % of the tissue (a nucleus, below the spot
    threshold): the 0.7 spot runs into it (> 10 mm), the spot's dark core does not."""
    array, geometry, centre, visible = dark_sphere((0.9, 0.9, 1.5), 4.0, shape_kji=(24, 40, 40))
    off = voxel_ras(array, geometry) - centre
    nucleus = (off[..., 2] > 1.5) & (off[..., 2] < 7.5) & (np.abs(off[..., 0] - 6) < 7) & (np.abs(off[..., 1]) < 7)
    array = np.where(nucleus, array * 0.55, array)
    spot = measure_spot(array, geometry, centre + [0.5, -0.5, 0.5])
    assert spot.diameter_mm == pytest.approx(expected_diameter(visible, geometry), abs=0.6)
    assert np.linalg.norm(np.subtract(spot.ras, centre)) < 1.0


def test_spot_at_the_edge_of_a_skull_stripped_brain_is_not_inflated_by_the_air():
    array, geometry, centre, visible = dark_sphere((0.9, 0.9, 1.5), 3.0)
    ras = voxel_ras(array, geometry)
    outside = (ras[..., 0] > centre[0] + 2.5) | (ras[..., 1] > centre[1] + 2.5)  # a corner of the brain
    array = np.where(outside, 0.0, array)
    spot = measure_spot(array, geometry, centre)
    assert spot.diameter_mm == pytest.approx(expected_diameter(visible, geometry), abs=0.4)


def test_large_dark_spot_is_flagged_not_a_microbleed():
    array, geometry, centre, _ = dark_sphere((0.9, 0.9, 1.5), 14.0, shape_kji=(30, 56, 56))
    det = Detection(ras=tuple(centre), ijk=tuple(geometry.ras_to_ijk_points(centre)[0]), diameter_mm=5.9,
                    candidate_score=1.0, cnn_score=0.9, yolo_score=0.9, score=0.9)
    outside = Detection(ras=(500.0, 0.0, 0.0), ijk=(-1.0, 0.0, 0.0), diameter_mm=4.2, candidate_score=1.0,
                        cnn_score=0.9, yolo_score=None, score=0.8)
    inner = replace(det, ras=tuple(centre + [0.0, 3.0, 0.0]), score=0.85)
    measured, inner_measured, kept = measure_detections([det, inner, outside], array, geometry)
    assert inner_measured.score == 0.85  # a spot over 10 mm is no microbleed: it hides no other detection
    assert measured.diameter_mm == pytest.approx(14.0, abs=1.0)
    assert measured.size_class == ">10 mm" and not measured.is_microbleed
    assert kept == outside  # cannot be measured: keeps the detector's scale and position
    assert [size_class(d) for d in (4.9, 5.0, 10.0, 10.1)] == ["<5 mm", "5-10 mm", "5-10 mm", ">10 mm"]


def test_two_detections_of_one_spot_become_one():
    array, geometry, centre, _ = dark_sphere((0.9, 0.9, 1.5), 3.5)
    dets = [Detection(ras=tuple(centre + shift), ijk=tuple(geometry.ras_to_ijk_points(centre + shift)[0]),
                      diameter_mm=2.8, candidate_score=1.0, cnn_score=s, yolo_score=s, score=s)
            for shift, s in (((1.3, 0.4, 0.0), 0.9), ((-1.2, -0.3, 0.5), 0.7))]
    (kept,) = measure_detections(dets, array, geometry)
    assert kept.score == 0.9 and np.linalg.norm(np.subtract(kept.ras, centre)) < 0.3
