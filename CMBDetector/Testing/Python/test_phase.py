"""Phase evidence: units, high-pass filtering, the dipole sign of bleeds vs calcifications, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.phase import dipole_correlation, highpass_phase, paramagnetic_sign, to_radians
from CMBDetectorLib.synth.physics import sphere_block
from CMBDetectorLib.validation import prepare_input

B0_T, TE_S = 3.0, 0.02


def oblique(spacing) -> Geometry:
    """A tilted, anisotropic grid: 15 degrees about R, then 20 degrees about S."""
    a, b = np.radians(15), np.radians(20)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return Geometry.from_parts(spacing=spacing, origin=(-40.0, -35.0, -20.0), direction=rz @ rx)


def scene_with_spheres(geometry: Geometry, shape_kji, spheres, seed=0):
    """Complex image of tissue (signal 1, noise 0.03) holding magnetised spheres (centre RAS, radius, dchi)."""
    rng = np.random.default_rng(seed)
    z = np.ones(shape_kji, dtype=np.complex64)
    for centre, radius, dchi in spheres:
        box, block = sphere_block(geometry.ijk_to_ras, shape_kji, centre, radius, dchi, 0.05, B0_T, TE_S)
        z[box] *= block.astype(np.complex64)
    z += (rng.normal(0, 0.03, shape_kji) + 1j * rng.normal(0, 0.03, shape_kji)).astype(np.complex64)
    return np.abs(z).astype(np.float32), np.angle(z).astype(np.float32)


@pytest.mark.parametrize("spacing", [(0.9, 0.9, 1.2), (0.5, 0.5, 4.0)])
def test_bleed_and_calcification_have_opposite_paramagnetic_scores(spacing):
    geometry = oblique(spacing)
    shape = tuple(int(np.ceil(70 / s)) for s in spacing[::-1])
    centre_ijk = np.array(shape[::-1]) / 2
    middle = geometry.ijk_to_ras_points(centre_ijk)[0]
    bleed, calcification, empty = middle + [-15, 0, 0], middle + [15, 0, 0], middle + [0, 15, 0]
    mag, phase = scene_with_spheres(geometry, shape, [(bleed, 1.5, 0.6), (calcification, 1.5, -0.8)])
    hp = highpass_phase(mag, phase, geometry)
    corr = dipole_correlation(hp, geometry, np.stack([bleed, calcification, empty]), np.full(3, 1.5))
    scores = paramagnetic_sign("right-handed") * corr  # the synthetic engine is right-handed
    assert scores[0] > 0.3 and scores[1] < -0.3 and abs(scores[2]) < 0.2
    np.testing.assert_allclose(paramagnetic_sign("left-handed") * corr, -scores)


def test_highpass_removes_a_smooth_background_field():
    geometry = Geometry.from_parts(spacing=(1.0, 1.0, 2.0))
    k, j, i = np.meshgrid(np.arange(30), np.arange(48), np.arange(48), indexing="ij")
    ramp = np.angle(np.exp(1j * (0.25 * i + 0.1 * j + 0.3 * k))).astype(np.float32)  # wraps several times
    hp = highpass_phase(np.ones(ramp.shape, np.float32), ramp, geometry)
    assert np.abs(hp[8:-8, 12:-12, 12:-12]).max() < 0.05


def test_phase_units_are_converted_to_radians():
    radians = np.linspace(-np.pi, np.pi - 0.01, 100).astype(np.float32)
    def same_phase(a, b, atol):
        np.testing.assert_allclose(np.exp(1j * a), np.exp(1j * b), atol=atol)

    same_phase(to_radians(radians), radians, 1e-5)
    same_phase(to_radians(np.round(radians * 4096 / np.pi)), radians, 2e-3)  # signed 12 bit
    unsigned = np.round((radians + np.pi) * 4096 / (2 * np.pi))  # 0..4095: shifted by pi, same phase mod 2pi
    same_phase(to_radians(unsigned), radians + np.pi, 2e-3)
    with pytest.raises(CMBDetectorError, match="phase image"):
        to_radians(np.array([0.0, 70000.0]))


def test_unknown_convention_is_refused():
    with pytest.raises(CMBDetectorError, match="right-handed or left-handed"):
        paramagnetic_sign("auto")


def test_phase_input_checks():
    geometry = Geometry.from_parts(spacing=(1.0, 1.0, 1.0))
    mag = np.random.default_rng(0).uniform(50, 100, (24, 24, 24)).astype(np.float32)
    phase = np.random.default_rng(1).uniform(-np.pi, np.pi, (24, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(prepare_input(mag, geometry, phase=phase).phase, phase, atol=1e-6)
    with pytest.raises(CMBDetectorError, match="same grid"):
        prepare_input(mag, geometry, phase=phase[:-1])
    with pytest.raises(CMBDetectorError, match="constant"):
        prepare_input(mag, geometry, phase=np.zeros_like(phase))
    with pytest.raises(CMBDetectorError, match="several echoes"):
        prepare_input(mag, geometry, phase=np.stack([phase, phase], -1))
    two_echo = prepare_input(np.stack([mag, mag], -1), geometry, echo=1, phase=np.stack([phase, -phase], -1))
    np.testing.assert_allclose(two_echo.phase, -phase, atol=1e-6)
    with pytest.raises(CMBDetectorError, match="expected real numbers"):
        prepare_input(mag, geometry, phase=phase > 0)
