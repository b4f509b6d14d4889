"""The trained-range check: which acquisitions get the warning, and where the field strength and
echo time come from (DICOM headers; JSON sidecars in test_sidecars.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectorLib import dicomseries
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.synth.acquisition import (sample_mid_slice_protocol, sample_protocol, sample_shifted_protocol,
                                              sample_stress_protocol, scan_geometry)
from CMBDetectorLib.trained_range import Acquisition, echo_time_ms, outside_training, range_warning
from conftest import write_dicom_series


def grid(spacing, direction=np.eye(3)) -> Geometry:
    return Geometry.from_parts(spacing=spacing, origin=(0.0, 0.0, 0.0), direction=direction)


def protocol_check(protocol) -> list[str]:
    geometry = scan_geometry(protocol, protocol.grid_shape(), np.eye(3), np.zeros(3))
    return outside_training(geometry, Acquisition(protocol.field_strength_t, protocol.te_ms))


def test_training_protocols_pass_and_every_stress_protocol_is_flagged():
    rng = np.random.default_rng(0)
    for _ in range(300):
        assert protocol_check(sample_protocol(rng)) == []
        assert protocol_check(sample_protocol(rng, kind="gre2d", field_strength_t=1.5)) == []
    for _ in range(100):
        found = protocol_check(sample_stress_protocol(rng))
        assert found[0].startswith("slices") and len(found) >= 2
        assert all(f.startswith(("field strength 7 T", "echo time")) for f in found[1:])
        (slices,) = protocol_check(sample_mid_slice_protocol(rng))
        assert "between the 1-2 mm 3D and 4-5 mm 2D" in slices
        found = protocol_check(sample_shifted_protocol(rng))  # 5 T (any TE), or 1.5 T with TE 45-60 ms
        assert found[0].startswith("slices") and found[1].startswith(("field strength 5 T", "echo time"))


@pytest.mark.parametrize("spacing, expected", [
    ((0.9, 0.9, 2.0), None), ((0.5, 0.5, 0.6), None), ((0.9, 0.9, 4.0), None), ((0.45, 0.45, 5.0), None),
    ((0.9, 0.9, 2.5), "slices 2.5 mm thick, between"), ((0.9, 0.9, 3.9), "slices 3.9 mm thick, between"),
    ((0.9, 0.9, 6.0), "slices 6.0 mm thick, thicker than any trained on (5 mm)"),
])
def test_slice_thickness_comes_from_the_grid(spacing, expected):
    found = outside_training(grid(spacing))
    assert found == [] if expected is None else found[0].startswith(expected)
    # the thick axis may be any voxel axis (e.g. a sagittal 2D acquisition, obliquely stored)
    rotation = sitk.VersorTransform((1.0, 1.0, 0.0), 0.4).GetMatrix()
    assert outside_training(grid(spacing[::-1], np.reshape(rotation, (3, 3)))) == found


@pytest.mark.parametrize("acquisition, expected", [
    (Acquisition(1.494, 25.0), []), (Acquisition(2.89, 15.0), []), (Acquisition(3.0, 40.0), []),
    (Acquisition(), []),
    (Acquisition(7.0, 20.0), ["field strength 7 T (trained on 1.5 and 3 T)"]),
    (Acquisition(0.55, None), ["field strength 0.55 T (trained on 1.5 and 3 T)"]),
    (Acquisition(None, 50.0), ["echo time 50 ms (trained on 15-40 ms)"]),
    (Acquisition(3.0, 7.2), ["echo time 7.2 ms (trained on 15-40 ms)"]),
])
def test_field_strength_and_echo_time_when_known(acquisition, expected):
    assert outside_training(grid((0.9, 0.9, 1.5)), acquisition) == expected


def test_one_warning_names_everything_and_what_to_do():
    assert range_warning(grid((0.9, 0.9, 1.5)), Acquisition(3.0, 20.0)) is None
    text = range_warning(grid((0.9, 0.9, 2.8)), Acquisition(7.0, 10.0))
    assert text.count("slices 2.8 mm") == 1 and "field strength 7 T" in text and "echo time 10 ms" in text
    assert "finds markedly fewer" in text and "high sensitivity preset" in text
    assert "balanced preset reports lower-scoring points on such scans" in text


def test_echo_time_of_a_chosen_echo_or_the_mean_of_combined_echoes():
    assert echo_time_ms([10.0, 20.0, 30.0], 2) == 30.0
    assert echo_time_ms([10.0, 20.0, 30.0], None) == 20.0
    assert echo_time_ms([10.0, None], None) is None  # one echo time unknown: the mean is too
    assert echo_time_ms([10.0, "n/a"], 1) is None and echo_time_ms([10.0], 3) is None


def test_dicom_headers_give_field_strength_and_echo_times(tmp_path):
    rng = np.random.default_rng(100_030)
    echoes = [sitk.GetImageFromArray(rng.uniform(50, 300, (4, 16, 16)).astype(np.int16)) for _ in range(2)]
    write_dicom_series(tmp_path / "a", echoes[0], 3, "ORIGINAL\\PRIMARY\\M\\ND", echoes=echoes,
                       echo_times_ms=(20.0, 45.0), field_strength_t=2.89)
    write_dicom_series(tmp_path / "b", echoes[0], 4, "ORIGINAL\\PRIMARY\\M\\ND")
    write_dicom_series(tmp_path / "c", echoes[0], 5, "ORIGINAL\\PRIMARY\\M\\ND", field_strength_t=0)
    scans, _ = dicomseries.find_scans(tmp_path)
    by_number = {s.magnitude.series_number: s.magnitude for s in scans}
    assert by_number[3].acquisition(0) == Acquisition(2.89, 20.0)
    assert by_number[3].acquisition(1) == Acquisition(2.89, 45.0)
    assert by_number[3].acquisition(None) == Acquisition(2.89, 32.5)
    assert by_number[4].acquisition(None) == Acquisition(None, 5.0)  # no MagneticFieldStrength tag
    assert by_number[5].acquisition(None) == Acquisition(None, 5.0)  # a 0 T header is no field strength


def test_known_values_are_filled_in_only_where_unknown():
    stated = Acquisition(3.0, 20.0)
    assert Acquisition().filled_from(stated) == stated
    assert Acquisition(7.0, None).filled_from(stated) == Acquisition(7.0, 20.0)
    assert Acquisition(None, 45.0).filled_from(stated) == Acquisition(3.0, 45.0)
    assert stated.filled_from(Acquisition()) == stated
