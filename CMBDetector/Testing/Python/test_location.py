"""Location stage: MARS atlas look-up, registration to MNI on full-head, skull-stripped and
thick-slice synthetic scans, and the fallback to "unknown" when the scan shows too little brain."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from CMBDetectorLib.atlas import load_region_atlas
from CMBDetectorLib.regions import REGIONS, UNKNOWN, location_of, side_of
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.location import label_points, locate
from CMBDetectorLib.registration import MIN_DICE, register_to_template
from CMBDetectorLib.results import Detection, DetectionResult
from CMBDetectorLib.synth import AcquisitionProtocol, generate_scan

# Low-resolution heads (2.5 mm, 6 mm slices) keep generation and registration to seconds.
SWI = AcquisitionProtocol(3.0, 20.0, "swi3d", (2.5, 2.5, 2.5), (84, 96, 76), 40.0)
GRE_THICK = AcquisitionProtocol(1.5, 40.0, "gre2d", (2.5, 2.5, 6.0), (84, 96, 30), 40.0)


def _result(scan) -> DetectionResult:
    """Detections exactly at the true microbleeds."""
    dets = [Detection(ras=o.center_ras, ijk=tuple(scan.geometry.ras_to_ijk_points(o.center_ras)[0]),
                      diameter_mm=o.diameter_mm, candidate_score=1.0, cnn_score=1.0, yolo_score=1.0, score=1.0)
            for o in scan.cmbs]
    return DetectionResult(detections=dets, geometry=scan.geometry)


def test_atlas_regions_at_known_mni_points():
    atlas = load_region_atlas()
    points = {(12, -18, 7): ("thalamus", "right"), (-24, 2, 2): ("basal_ganglia", "left"),
              (0, -28, -30): ("brainstem", "midline"), (-22, -62, -38): ("cerebellum", "left"),
              (30, 40, 30): ("frontal", "right"), (-60, -20, -15): ("temporal", "left"), (-40, -60, 50): ("parietal", "left"),
              (20, -95, 5): ("occipital", "right"), (-38, 0, 5): ("insula", "left")}
    labels = atlas.region_at(list(points))
    assert [(lab.region, lab.side) for lab in labels] == list(points.values())
    assert [lab.location for lab in labels] == [location_of(r) for r, _ in points.values()]
    assert atlas.region_at([(0, 0, 150)]) == [UNKNOWN]  # far outside the brain
    assert side_of(1.0) == "midline" and side_of(-3.0) == "left"
    assert {loc for _, loc in REGIONS.values()} == {"lobar", "deep", "infratentorial"}


@pytest.mark.parametrize("protocol, stripped, seed", [(SWI, False, 50_001), (SWI, True, 50_002),
                                                      (GRE_THICK, False, 50_003)],
                         ids=["full_head_swi", "skull_stripped_swi", "thick_slice_gre"])
def test_registration_puts_true_microbleeds_in_their_region(protocol, stripped, seed):
    scan = generate_scan(seed, protocol, n_cmb=15, skull_stripped=stripped)
    located = locate(_result(scan), scan.magnitude, scan.geometry)
    reg = located.registration
    assert reg.ok and reg.dice >= MIN_DICE and reg.message == ""
    mapped = reg.to_template([o.center_ras for o in scan.cmbs])
    error = np.linalg.norm(mapped - np.array([o.template_ras for o in scan.cmbs]), axis=1)
    truth = load_region_atlas().region_at([o.template_ras for o in scan.cmbs])
    got = [(d.location, d.region, d.side) for d in located.result.detections]
    classes = np.mean([t.location == g[0] for t, g in zip(truth, got)])
    sides = np.mean([t.side == g[2] for t, g in zip(truth, got)])
    assert np.median(error) < 6.0 and classes >= 0.8 and sides >= 0.9, (np.median(error), classes, sides)
    assert all(g[0] != "unknown" and g[1] != "unknown" for g in got)
    assert "location" in located.result.timings


@pytest.mark.parametrize("slices", [12, 36], ids=["30mm_slab_too_little_brain", "90mm_slab_poor_overlap"])
def test_partial_slab_falls_back_to_unknown_with_a_warning(slices):
    scan = generate_scan(50_004, replace(SWI, shape=(84, 96, slices)), n_cmb=3, skull_stripped=False)
    result = _result(scan)
    result.warnings.append("earlier warning")
    located = locate(result, scan.magnitude, scan.geometry)
    assert not located.registration.ok and located.registration.transform is None
    assert "partial coverage" in located.registration.message
    assert located.result.warnings == ["earlier warning", located.registration.message]
    assert all((d.location, d.region, d.side) == ("unknown",) * 3 for d in located.result.detections)
    assert result.detections[0].location == "unknown" and len(result.warnings) == 1  # input untouched


def test_no_brain_in_view_is_unknown_not_an_error():
    geometry = Geometry.from_parts(spacing=(1.0, 1.0, 1.0), origin=(-20.0, -20.0, -20.0))
    array = np.random.default_rng(0).uniform(0, 100, (30, 40, 40)).astype(np.float32)
    reg = register_to_template(array, geometry)
    assert not reg.ok and "partial coverage" in reg.message
    assert label_points(reg, [(0.0, 0.0, 0.0), (5.0, 5.0, 5.0)]) == [UNKNOWN, UNKNOWN]
    with pytest.raises(ValueError):
        reg.to_template([(0.0, 0.0, 0.0)])


def test_location_benchmark_summary_on_hand_checked_outcomes():
    from CMBDetectorLib.evaluation.location import LocationOutcome, summarise_location
    from CMBDetectorLib.regions import RegionLabel

    frontal, parietal = RegionLabel("lobar", "frontal", "left"), RegionLabel("lobar", "parietal", "right")
    thalamus = RegionLabel("deep", "thalamus", "left")
    pairs = [(frontal, frontal, "lobar"), (frontal, parietal, "lobar"), (thalamus, frontal, "deep"),
             (thalamus, thalamus, "lobar")]
    outcomes = [LocationOutcome("3D SWI", False, True, 0.95, 1.0, 4.0, 8.0, pairs, True),
                LocationOutcome("2D GRE", True, False, 0.5, 0.3, 1.0, 1.0, [], False)]
    s = summarise_location(outcomes)
    assert (s["n_scans"], s["n_registered"], s["n_microbleeds"], s["slabs_refused"]) == (2, 1, 4, 1)
    assert (s["class_accuracy"], s["region_accuracy"], s["side_accuracy"]) == (0.75, 0.5, 0.75)
    assert s["engine_class_agreement"] == 0.5 and s["seconds_median"] == 4.0 and s["dice_min"] == 0.95
