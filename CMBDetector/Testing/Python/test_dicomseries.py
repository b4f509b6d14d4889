"""DICOM series discovery and magnitude/phase pairing (CMBDetectorLib.dicomseries) on small
series written by SimpleITK; reading the bundled sample as DICOM is in test_mrml_io.py."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from CMBDetectorLib import dicomseries
from conftest import write_dicom_series

M, P = "ORIGINAL\\PRIMARY\\M\\ND", "ORIGINAL\\PRIMARY\\P\\ND"


def volume(seed: int, shape=(3, 16, 16), spacing=(0.9, 0.9, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.random.default_rng(seed).integers(0, 400, shape).astype(np.int16))
    image.SetSpacing(spacing)
    return image


def test_image_type_tells_magnitude_phase_and_projections():
    assert dicomseries.image_part("ORIGINAL\\PRIMARY\\M\\ND\\NORM") == dicomseries.MAGNITUDE
    assert dicomseries.image_part("ORIGINAL\\PRIMARY\\P\\ND") == dicomseries.PHASE
    assert dicomseries.image_part("ORIGINAL\\PRIMARY\\P_FFE\\P\\FFE") == dicomseries.PHASE  # Philips
    assert dicomseries.image_part("DERIVED\\PRIMARY\\MNIP\\ND") == dicomseries.PROJECTION
    assert dicomseries.image_part("") == dicomseries.MAGNITUDE


def test_phase_pairs_with_its_own_acquisition(tmp_path):
    write_dicom_series(tmp_path / "a", volume(100_001), 3, M)
    write_dicom_series(tmp_path / "a", volume(100_002), 4, P)
    write_dicom_series(tmp_path / "b", volume(100_003), 7, M)
    write_dicom_series(tmp_path / "b", volume(100_004), 8, P)
    # one series holding both image types (as some vendors store them)
    write_dicom_series(tmp_path / "c", volume(100_005), 9, M, uid="1.2.9")
    write_dicom_series(tmp_path / "c", volume(100_006), 9, P, uid="1.2.9", prefix="p")
    # a phase on another grid and a minimum-intensity projection are not scans
    write_dicom_series(tmp_path / "d", volume(100_007, shape=(3, 20, 20)), 11, P)
    write_dicom_series(tmp_path / "d", volume(100_008), 12, "DERIVED\\PRIMARY\\MNIP\\ND", description="mIP")
    scans, skipped = dicomseries.find_scans(tmp_path)
    pairs = {s.magnitude.series_number: s.phase.series_number for s in scans}
    assert pairs == {3: 4, 7: 8, 9: 9}
    assert sorted(s.reason.split(",")[0].split(" ")[0] for s in skipped) == ["minimum/maximum-intensity", "phase"]
    (same,) = [s for s in scans if s.magnitude.series_number == 9]
    assert same.phase.series_uid == same.magnitude.series_uid == "1.2.9"
    array, geometry = same.phase.read()
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(volume(100_006)))
    np.testing.assert_allclose(geometry.spacing, (0.9, 0.9, 2.0), atol=1e-4)


def test_outputs_are_named_after_the_series(tmp_path):
    write_dicom_series(tmp_path, volume(100_009), 5, M, description="SWI Images/axial")
    (scan,), _ = dicomseries.find_scans(tmp_path)
    assert scan.magnitude.name == "S005_SWI_Images_axial" and scan.phase is None
    assert not dicomseries.is_dicom_file(tmp_path / "missing") and dicomseries.is_dicom_file(next(tmp_path.iterdir()))
