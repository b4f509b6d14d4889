"""End to end on the bundled sample scan with the shipped weights."""

import functools

import numpy as np
import pytest

from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.evaluation.metrics import match_detections
from CMBDetectorLib.geometry import Geometry, read_image
from CMBDetectorLib.phase_rule import DIAMAGNETIC_CAP, PHASE_RULE
from CMBDetectorLib.pipeline import detect
from CMBDetectorLib.progress import DetectionCancelled
from CMBDetectorLib.synth import read_objects_csv

from conftest import MODULE_DIR

SAMPLE = MODULE_DIR / "Resources" / "SampleData" / "SampleSWI_mag.nii.gz"
SAMPLE_PHASE = MODULE_DIR / "Resources" / "SampleData" / "SampleSWI_phase.nii.gz"
OBJECTS = MODULE_DIR / "Resources" / "SampleData" / "SampleSWI_objects.csv"


@functools.lru_cache(maxsize=None)
def sample():
    return read_image(SAMPLE)


@functools.lru_cache(maxsize=None)
def sample_result(use_yolo=True):
    array, geometry = sample()
    stages = []
    result = detect(array, geometry, DetectorConfig(use_yolo=use_yolo),
                    progress=lambda stage, fraction: stages.append((stage, fraction)))
    return result, stages


@functools.lru_cache(maxsize=None)
def sample_result_with_phase(convention="right-handed", threshold=None):
    array, geometry = sample()
    stages = []
    result = detect(array, geometry, DetectorConfig(phase_convention=convention, threshold=threshold),
                    phase=read_image(SAMPLE_PHASE)[0],
                    progress=lambda stage, fraction: stages.append((stage, fraction)))
    return result, stages


def truth():
    cmbs = [o for o in read_objects_csv(OBJECTS) if o.is_cmb]
    return np.array([o.center_ras for o in cmbs]), np.array([o.diameter_mm for o in cmbs])


def test_sample_detections_hit_the_known_microbleeds():
    result, _ = sample_result()
    gt_ras, gt_diam = truth()
    ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
    scores = np.array([d.score for d in result.detections])
    matched = match_detections(ras, scores, gt_ras, gt_diam)
    assert (matched >= 0).sum() >= 0.75 * len(gt_ras)
    assert (matched < 0).sum() <= 3


def test_sample_detections_are_consistent_and_inside_volume():
    result, _ = sample_result()
    array, geometry = sample()
    assert result.count > 0 and result.device in ("cpu", "cuda")
    scores = [d.score for d in result.detections]
    assert scores == sorted(scores, reverse=True)
    for d in result.detections:
        assert all(-0.5 <= c <= n - 0.5 for c, n in zip(d.ijk, array.shape[::-1]))
        np.testing.assert_allclose(d.ras, geometry.ijk_to_ras_points(d.ijk)[0], atol=1e-6)
        assert d.score >= result.threshold and d.yolo_score is not None
        assert 0.0 <= d.score <= 1.0
        assert 1.0 <= d.diameter_mm <= 15.0


def test_progress_names_every_stage_in_order():
    _, stages = sample_result()
    names = [s for n, (s, _) in enumerate(stages) if n == 0 or stages[n - 1][0] != s]
    assert names == ["Checking input", "Preprocessing", "Finding candidates", "3D CNN", "YOLO rescoring",
                     "Score fusion", "Post-processing", "Done"]
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)
    for stage in ("Preprocessing", "3D CNN"):  # the bar moves inside the long stages
        assert len({f for s, f in stages if s == stage}) >= 3, stage


def test_thresholds_follow_the_preset_of_the_input():
    from CMBDetectorLib.config import PHASE_SENSITIVITY_PRESETS, SCAN_THRESHOLD, SENSITIVITY_PRESETS

    plain, with_phase = sample_result()[0], sample_result_with_phase()[0]
    assert plain.threshold == SENSITIVITY_PRESETS["balanced"] and not plain.used_phase
    assert with_phase.threshold == PHASE_SENSITIVITY_PRESETS["balanced"] and with_phase.used_phase
    assert with_phase.scan_threshold == SCAN_THRESHOLD
    assert with_phase.has_microbleeds == any(d.score >= SCAN_THRESHOLD for d in with_phase.detections)
    assert with_phase.has_microbleeds  # the sample holds five microbleeds
    array, geometry = sample()
    with pytest.raises(CMBDetectorError, match="Unknown sensitivity 'paranoid'"):
        detect(array, geometry, DetectorConfig(sensitivity="paranoid"))


def test_outside_the_training_ranges_only_the_balanced_preset_changes():
    from CMBDetectorLib.config import OUT_OF_RANGE_BALANCED, preset_threshold

    assert OUT_OF_RANGE_BALANCED[False] < preset_threshold("balanced", with_phase=False)
    for with_phase in (False, True):
        assert preset_threshold("balanced", with_phase, out_of_range=True) == OUT_OF_RANGE_BALANCED[with_phase]
        assert OUT_OF_RANGE_BALANCED[with_phase] <= preset_threshold("balanced", with_phase)
        for name in ("high", "specific"):
            assert preset_threshold(name, with_phase, True) == preset_threshold(name, with_phase)
    assert DetectorConfig(threshold=0.65).threshold_for(False, out_of_range=True) == 0.65  # the user's own


def test_a_scan_outside_the_training_ranges_reports_from_its_balanced_threshold():
    from CMBDetectorLib.config import OUT_OF_RANGE_BALANCED
    from CMBDetectorLib.trained_range import Acquisition

    array, geometry = sample()
    plain = sample_result()[0]
    seven_t = detect(array, geometry, acquisition=Acquisition(7.0, None))  # e.g. what its DICOM header says
    assert seven_t.threshold == OUT_OF_RANGE_BALANCED[False] < plain.threshold
    # the same scores: every detection of the plain run, and more only between the two thresholds
    kept = [d for d in seven_t.detections if d.score >= plain.threshold]
    np.testing.assert_allclose([d.score for d in kept], [d.score for d in plain.detections], atol=1e-6)
    np.testing.assert_allclose([d.ras for d in kept], [d.ras for d in plain.detections], atol=1e-6)
    assert all(seven_t.threshold <= d.score for d in seven_t.detections)


def test_phase_scores_the_sample_microbleeds_as_paramagnetic():
    result, stages = sample_result_with_phase()
    assert "Phase evidence" in [s for s, _ in stages] and "phase" in result.timings
    gt_ras, gt_diam = truth()
    ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
    matched = match_detections(ras, np.array([d.score for d in result.detections]), gt_ras, gt_diam)
    assert (matched >= 0).sum() >= 0.75 * len(gt_ras) and (matched < 0).sum() <= 3
    hits = [d.paramagnetic_score for d, m in zip(result.detections, matched) if m >= 0]
    assert all(p is not None and p > 0.2 for p in hits)
    assert all(d.paramagnetic_score is None for d in sample_result()[0].detections)


def test_wrong_phase_convention_turns_the_microbleeds_diamagnetic():
    gt_ras, gt_diam = truth()

    def bleeds(result):
        """(final score, paramagnetic score) of the detection on each true microbleed."""
        ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
        matched = match_detections(ras, np.array([d.score for d in result.detections]), gt_ras, gt_diam)
        return {int(m): (d.score, d.paramagnetic_score) for d, m in zip(result.detections, matched) if m >= 0}

    # below the lowest preset: the phase rule caps confidently diamagnetic dots at DIAMAGNETIC_CAP
    right_result, left_result = sample_result_with_phase()[0], sample_result_with_phase("left-handed", 0.05)[0]
    right, left = bleeds(right_result), bleeds(left_result)
    assert len(set(left) & set(right)) >= 3 and len(right) >= 4
    for m in set(left) & set(right):
        assert left[m][0] < right[m][0]
    assert all(score <= DIAMAGNETIC_CAP + 1e-6 for score, p in left.values() if p < PHASE_RULE.diamagnetic_cutoff)
    # the same candidate, detected with either convention, has the opposite paramagnetic score
    right_at = {tuple(np.round(d.ras, 3)): d.paramagnetic_score for d in right_result.detections}
    same = [(d.paramagnetic_score, right_at[key]) for d in left_result.detections
            if (key := tuple(np.round(d.ras, 3))) in right_at]
    assert len(same) >= 3
    for left_score, right_score in same:
        assert left_score == pytest.approx(-right_score, abs=1e-4)
    assert sum(p < 0 for _, p in left.values()) > len(left) / 2


def test_without_yolo_the_cnn_only_fusion_scores_and_still_finds_the_microbleeds():
    from CMBDetectorLib.fusion import ScoreFusion, fusion_inputs
    from CMBDetectorLib.preprocessing import guess_modality

    result, stages = sample_result(use_yolo=False)
    names = {s for s, _ in stages}
    assert "YOLO rescoring" not in names and "Score fusion" in names
    fusion = ScoreFusion.load(MODULE_DIR / "Resources" / "Models", with_yolo=False)
    thick = guess_modality(sample()[1]) == "gre"
    for d in result.detections:
        assert d.yolo_score is None and d.cnn_score >= 0.15  # the same CNN gate as with YOLO
        expected = fusion.score(fusion_inputs(np.array([d.cnn_score]), None, thick))[0]
        assert d.score == pytest.approx(expected, abs=1e-6) and d.score != pytest.approx(d.cnn_score, abs=1e-3)
    gt_ras, gt_diam = truth()
    ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
    matched = match_detections(ras, np.array([d.score for d in result.detections]), gt_ras, gt_diam)
    assert (matched >= 0).sum() >= 0.75 * len(gt_ras) and (matched < 0).sum() <= 3


def test_without_yolo_the_phase_still_counts_and_its_rule_still_caps():
    array, geometry = sample()
    phase = read_image(SAMPLE_PHASE)[0]
    right = detect(array, geometry, DetectorConfig(use_yolo=False, threshold=0.05), phase=phase)
    left = detect(array, geometry, DetectorConfig(use_yolo=False, threshold=0.05, phase_convention="left-handed"),
                  phase=phase)
    plain = detect(array, geometry, DetectorConfig(use_yolo=False, threshold=0.05))
    assert right.used_phase and all(d.paramagnetic_score is not None for d in right.detections)
    gt_ras, gt_diam = truth()

    def on_bleeds(result):
        ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
        matched = match_detections(ras, np.array([d.score for d in result.detections]), gt_ras, gt_diam)
        return {int(m): d for d, m in zip(result.detections, matched) if m >= 0}

    right_hits, left_hits, plain_hits = on_bleeds(right), on_bleeds(left), on_bleeds(plain)
    common = set(right_hits) & set(left_hits) & set(plain_hits)
    assert len(common) >= 3
    for m in common:  # paramagnetic microbleeds gain from the phase; read the other way round they are capped
        assert right_hits[m].score > plain_hits[m].score
        if left_hits[m].paramagnetic_score < PHASE_RULE.diamagnetic_cutoff:
            assert left_hits[m].score <= DIAMAGNETIC_CAP + 1e-6


def test_cancel_stops_before_the_next_stage():
    array, geometry = sample()
    seen = []

    def cancel():
        return "Finding candidates" in seen

    with pytest.raises(DetectionCancelled, match="3D CNN"):
        detect(array, geometry, progress=lambda s, f: seen.append(s), cancel=cancel)


def test_user_mask_limits_the_search():
    array, geometry = sample()
    mask = np.zeros(array.shape, dtype=bool)
    k0, j0, i0 = (n // 2 for n in array.shape)
    mask[k0 - 20:k0 + 20, j0 - 40:j0 + 40, i0 - 40:i0 + 40] = True
    result = detect(array, geometry, DetectorConfig(use_yolo=False, threshold=0.2), mask=mask)
    for d in result.detections:
        i, j, k = np.round(d.ijk).astype(int)
        assert k0 - 22 <= k < k0 + 22 and j0 - 42 <= j < j0 + 42 and i0 - 42 <= i < i0 + 42


def test_a_partial_thick_slice_slab_runs_and_finds_its_microbleeds():
    """15 slices of 4 mm (pairs of the sample's 2 mm slices averaged): a partial 2D GRE-like slab
    with fewer than 16 slices is processed, not refused, and its microbleeds are found."""
    array, geometry = sample()
    first = 20
    slab = array[first:first + 30].reshape(15, 2, *array.shape[1:]).mean(axis=1, dtype=np.float32)
    matrix = geometry.ijk_to_ras.copy()
    matrix[:3, 3] += matrix[:3, 2] * (first + 0.5)  # centre of each averaged pair
    matrix[:3, 2] *= 2
    thick = Geometry(ijk_to_ras=matrix)
    result = detect(slab, thick, DetectorConfig(use_yolo=False))
    gt_ras, gt_diam = truth()
    k = thick.ras_to_ijk_points(gt_ras)[:, 2]
    inside = (k > -0.5) & (k < 14.5)
    ras = np.array([d.ras for d in result.detections]).reshape(-1, 3)
    matched = match_detections(ras, np.array([d.score for d in result.detections]),
                               gt_ras[inside], gt_diam[inside])
    assert inside.sum() >= 3
    assert (matched >= 0).sum() >= inside.sum() - 1
    assert (matched < 0).sum() <= 1
    assert any("4.00 mm" in w for w in result.warnings)


def test_echo_choice_reaches_validation():
    array, geometry = sample()
    multi_echo = np.stack([array, np.full_like(array, 7)], axis=-1)
    with pytest.raises(CMBDetectorError, match=r"same value \(7\)"):
        detect(multi_echo, geometry, DetectorConfig(echo=1, use_yolo=False))


def test_benchmark_no_yolo_rows_are_the_pipeline_with_yolo_switched_off():
    """The ablation's "no YOLO stage" variant reports what detect() reports with use_yolo=False."""
    from types import SimpleNamespace

    from CMBDetectorLib.config import SENSITIVITY_PRESETS
    from CMBDetectorLib.evaluation.benchmark import evaluate_scan, lost_to_size

    array, geometry = sample()
    gt_ras, gt_diam = truth()
    scan = SimpleNamespace(magnitude=array, geometry=geometry, phase=read_image(SAMPLE_PHASE)[0],
                           objects=read_objects_csv(OBJECTS), vessels=[],  # the sample's files keep no centre lines
                           protocol=SimpleNamespace(kind="swi3d", field_strength_t=3.0, te_ms=20.0),
                           cmb_truth=lambda: (gt_ras, gt_diam))
    outcome = evaluate_scan(scan, DetectorConfig())
    assert not outcome.out_of_range
    assert {"cnn", "cnn+yolo", "fused-noyolo", "fused", "fused+phase-noyolo", "fused+phase"} <= set(outcome.variants)
    assert set(outcome.oversized) == {"fused-noyolo", "fused", "fused+phase-noyolo", "fused+phase"}
    assert all(len(ras) == len(scores) for ras, scores in outcome.oversized.values())
    assert lost_to_size([outcome], "fused", 0.1) == 0  # the sample's microbleeds all measure under 10 mm
    threshold = SENSITIVITY_PRESETS["balanced"]
    ras, scores = outcome.variants["fused-noyolo"]
    expected = sample_result(use_yolo=False)[0].detections
    np.testing.assert_allclose(np.sort(scores[scores >= threshold]), np.sort([d.score for d in expected]), atol=1e-6)
    np.testing.assert_allclose(ras[np.argsort(-scores)][:len(expected)], [d.ras for d in expected], atol=1e-6)
    with_yolo = outcome.variants["fused"][1]
    assert not np.array_equal(np.sort(with_yolo), np.sort(scores))  # the YOLO stage moves the final scores


def test_benchmark_presets_take_each_scans_threshold():
    """The benchmark's default rows use the out-of-range balanced threshold on the scans outside the
    training ranges, as detect() does."""
    from dataclasses import replace

    from CMBDetectorLib.config import OUT_OF_RANGE_BALANCED, SENSITIVITY_PRESETS
    from CMBDetectorLib.evaluation.benchmark import Preset, ScanOutcome, summarise

    inside_t, outside_t = SENSITIVITY_PRESETS["balanced"], OUT_OF_RANGE_BALANCED[False]
    scores = np.array([0.95, (inside_t + outside_t) / 2, outside_t, 0.1])
    ras = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [40.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    inside = ScanOutcome(ras[:3], np.full(3, 3.0), {"fused": (ras, scores)})
    outside = replace(inside, out_of_range=True)
    balanced = Preset("balanced", with_phase=False)
    assert inside.threshold(balanced) == inside_t and inside.threshold(0.3) == 0.3
    assert outside.threshold(balanced) == outside_t
    assert summarise([inside], "fused", balanced)["lesion"]["sensitivity"] == 1 / 3
    assert summarise([outside], "fused", balanced)["lesion"]["sensitivity"] == 1.0
    assert str(balanced) == f"{inside_t:g} ({outside_t:g} outside the training ranges)"
    assert str(Preset("high", with_phase=False)) == "0.2"
