"""Calibration report (reliability table, ECE) and the benchmark's phase-rule and calcification helpers."""

import numpy as np
import pytest

from CMBDetectorLib.evaluation.benchmark import (ScanOutcome, calcifications_reported, found_by_size, found_near_veins,
                                                 lost_to_size, rule_variant)
from CMBDetectorLib.evaluation.mimics import ALONG_B0, NONE, vein_gaps
from CMBDetectorLib.evaluation.calibration import detection_labels, reliability
from CMBDetectorLib.phase_rule import DIAMAGNETIC_CAP, PhaseRule
from CMBDetectorLib.synth.vessels import Vessel

from conftest import load_script


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.1, 1.0, 20000)
    labels = rng.random(20000) < scores
    calibrated = reliability(scores, labels)
    assert calibrated.ece < 0.02 and sum(calibrated.counts) == 20000
    np.testing.assert_allclose(calibrated.fraction_true, calibrated.mean_score, atol=0.03)
    overconfident = reliability(np.full(1000, 0.99), rng.random(1000) < 0.3)
    assert overconfident.ece == pytest.approx(0.69, abs=0.05) and overconfident.counts[-1] == 1000
    assert np.isnan(overconfident.mean_score[0]) and np.isnan(reliability([], []).ece)


def _outcome():
    gt = np.array([[0.0, 0.0, 0.0]])
    ras = np.array([[0.5, 0.0, 0.0], [30.0, 0.0, 0.0], [60.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    rows = {"ras": ras, "diam": np.full(4, 2.0), "magnitude": np.array([0.9, 0.99, 0.3, 0.8], np.float32),
            "with_phase": np.array([0.95, 0.9, 0.6, 0.85], np.float32), "paramagnetic": np.array([0.7, -0.8, 0.5, 0.6])}
    variants = {"fused+phase": (ras[:3], rows["with_phase"][:3])}
    return ScanOutcome(gt, np.array([2.0]), variants, rule_rows=rows, calc_ras=np.array([[30.5, 0.0, 0.0]]))


def test_found_by_size_counts_each_microbleed_in_its_diameter_bin():
    gt = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [40.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    ras = np.array([[0.2, 0.0, 0.0], [40.5, 0.0, 0.0], [60.0, 0.0, 0.0], [90.0, 0.0, 0.0]])
    outcome = ScanOutcome(gt, np.array([1.2, 1.4, 2.0, 5.0]), {"fused": (ras, np.array([0.9, 0.6, 0.3, 0.95]))})
    assert found_by_size([outcome], "fused", 0.5) == {"< 1.5 mm": (1, 2), "1.5-3 mm": (1, 1), ">= 3 mm": (0, 1)}
    assert found_by_size([outcome, outcome], "fused", 0.0)[">= 3 mm"] == (2, 2)


def test_vein_gaps_measure_surface_to_surface():
    vein = Vessel("through_slice", np.array([[0.0, 0.0, -20.0], [0.0, 0.0, 0.0], [0.0, 0.0, 20.0]]), np.full(3, 0.5))
    centres = np.array([[0.0, 3.0, 0.0], [0.0, 0.2, 5.0], [40.0, 0.0, 0.0]])
    np.testing.assert_allclose(vein_gaps(centres, np.array([2.0, 3.0, 2.0]), [vein]), [1.5, -1.8, 38.5])
    assert np.isinf(vein_gaps(centres, np.ones(3), [])).all() and vein_gaps(np.zeros((0, 3)), [], [vein]).shape == (0,)


def test_found_near_veins_splits_microbleeds_by_their_vein_gap():
    gt = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    found = (np.array([[0.2, 0.0, 0.0], [40.0, 0.5, 0.0]]), np.array([0.9, 0.4]))
    outcome = ScanOutcome(gt, np.full(3, 3.0), {"fused": found}, vein_gap=np.array([-0.5, 1.0, 6.0]))
    assert found_near_veins([outcome], "fused", 0.5) == {"near a vein": (1, 2), "elsewhere": (0, 1)}
    assert found_near_veins([outcome], "fused", 0.3) == {"near a vein": (1, 2), "elsewhere": (1, 1)}
    old = ScanOutcome(gt, np.full(3, 3.0), {"fused": found})  # scored before vein gaps were kept
    assert found_near_veins([outcome, old], "fused", 0.3) == found_near_veins([outcome], "fused", 0.3)


def test_lost_to_size_counts_microbleeds_found_only_as_spots_measured_over_10mm():
    gt = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    found = (np.array([[0.2, 0.0, 0.0]]), np.array([0.9]))
    oversized = (np.array([[20.5, 0.0, 0.0], [0.5, 0.0, 0.0], [40.0, 1.0, 0.0]]), np.array([0.8, 0.7, 0.4]))
    outcome = ScanOutcome(gt, np.array([3.0, 4.0, 4.0]), {"fused": found}, oversized={"fused": oversized})
    assert lost_to_size([outcome], "fused", 0.6) == 1  # the second; the first is found anyway, the third too low
    assert lost_to_size([outcome], "fused", 0.3) == 2
    assert lost_to_size([outcome], "fused+phase", 0.3) == 0  # no spot recorded for that variant


def test_detection_labels_match_microbleeds():
    scores, labels = detection_labels([_outcome()], "fused+phase", floor=0.7)
    np.testing.assert_array_equal(scores, np.array([0.95, 0.9], np.float32))
    np.testing.assert_array_equal(labels, [True, False])


def test_rule_variant_caps_the_calcification_and_merges_duplicates():
    o = _outcome()
    assert calcifications_reported([o], "fused+phase", 0.2) == 1
    ras, scores = rule_variant(o, PhaseRule(-0.3, phase_may_raise=False))
    assert len(ras) == 3  # the fourth candidate lies within the first one's reach
    np.testing.assert_allclose(np.sort(scores), np.sort([0.9, DIAMAGNETIC_CAP, 0.3]))
    o.variants["rule"] = (ras, scores)
    assert calcifications_reported([o], "rule", 0.2) == 0


def test_stress_report_puts_every_stage_of_both_sets_side_by_side():
    bench = load_script("benchmark")
    thresholds = {"fused": 0.6, "fused+phase": 0.7}

    def outcome(found_without_yolo: bool):
        """Two microbleeds; the final pipeline finds both, without YOLO only the first unless told."""
        o = _outcome()
        gt = np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
        hit, other, false = np.array([0.2, 0.0, 0.0]), np.array([40.0, 0.5, 0.0]), np.array([80.0, 0.0, 0.0])
        both = (np.array([hit, other]), np.array([0.9, 0.8]))
        variants = {name: both for name in bench.VARIANTS}
        variants["candidates"] = (np.array([hit, other, false]), np.array([5.0, 4.0, 3.0]))
        variants["cnn"] = (np.array([hit, other, false]), np.array([0.9, 0.8, 0.65]))
        variants["fused-noyolo"] = (np.array([hit, other]), np.array([0.9, 0.8 if found_without_yolo else 0.5]))
        variants["fused"] = (np.array([hit, other, false]), np.array([0.9, 0.8, 0.3]))  # a vein, above 0.2 only
        mimics = {"fused": np.array([NONE, NONE, ALONG_B0]), "fused+phase": np.array([NONE, NONE])}
        return ScanOutcome(gt, np.array([2.0, 3.0]), variants, candidate_hits=2, rule_rows=o.rule_rows,
                           calc_ras=o.calc_ras, mimics=mimics, vein_gap=np.array([5.0, 1.0]))

    test, stress = [outcome(True)] * 2, [outcome(False)] * 2
    results = {**bench.final_rows(test, thresholds), "stress": bench.final_rows(stress, thresholds)}
    assert results["stress"]["stages"]["fused-noyolo"]["lesion"]["sensitivity"] == 0.5
    assert results["stress"]["stages"]["cnn"]["lesion"]["fp_per_scan"] == 1.0
    assert results["stress"]["froc"]["fused-noyolo"][0] == (0.2, 0.0, 1.0)  # at 0.2 it finds both
    text = bench.stress_report(results)
    assert "| 3D CNN + score fusion, no YOLO stage (magnitude only) | 1.000 | 0.00 | 0.500 | 0.00 |" in text
    assert "| + 3D CNN | 1.000 | 1.00 | 1.000 | 1.00 |" in text
    assert "candidate screen recall: in-distribution 1.000, stress 1.000" in text
    assert "FROC, stress set, magnitude only, no YOLO stage" in text
    assert ("Microbleeds found only as a spot the size step measured over 10 mm (listed, not counted), stress set, "
            "default threshold: magnitude only 0; magnitude + phase 0.") in text
    assert ("Found near a vein (surface within 2 mm of a vein's) and elsewhere, stress set, magnitude only, default "
            "threshold: near a vein 2/2; elsewhere 2/2.") in text
    assert ("False positives by what they lie on, stress set, magnitude only (balanced preset 0.6 / high preset "
            "0.2; 2 scans): vein along B0 0 / 2; vein across B0 0 / 0;") in text
