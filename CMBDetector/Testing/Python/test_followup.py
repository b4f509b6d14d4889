"""Follow-up comparison science: registration across grids (and its failure), matching, the
change call with baseline re-scoring, the ARIA-H grade, pair naming and synthetic pairs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.followup.change import (NEW, PERSISTENT, POSSIBLE_NEW, RESOLVED, Cutoffs, aria_h_grade,
                                            compare_detections)
from CMBDetectorLib.followup.evidence import best_score_near, spot_contrast
from CMBDetectorLib.followup.matching import match_points
from CMBDetectorLib.followup.pairs import pairs_from_csv, pairs_in_folder
from CMBDetectorLib.followup.registration import MIN_DICE, Registration, register
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.results import Detection
from CMBDetectorLib.scanfiles import scan_base

ROTATION = Rotation.from_euler("xyz", [8.0, -4.0, 6.0], degrees=True).as_matrix()
SHIFT = np.array([6.0, -4.0, 5.0])
BASELINE_GRID = (Geometry.from_parts((2.0, 2.0, 2.0), (-90.0, -105.0, -80.0)), (82, 106, 91))  # (k, j, i)
FOLLOWUP_GRID = (Geometry.from_parts((1.6, 1.6, 4.0), (95.0, 110.0, -75.0),
                                     Rotation.from_euler("z", 180 + 10, degrees=True).as_matrix()), (42, 136, 120))


def phantom(geometry: Geometry, shape_kji, rotation=np.eye(3), shift=np.zeros(3), dark_spots=(), brain=(68, 84, 62)):
    """A head-like ellipsoid with asymmetric inner structures, imaged on ``geometry`` after the
    head moved by ``p -> rotation @ p + shift``; ``dark_spots`` are RAS centres (head frame) of
    2 mm-radius microbleed-like spots."""
    nk, nj, ni = shape_kji
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ras = geometry.ijk_to_ras_points(np.stack([ii, jj, kk], -1).reshape(-1, 3))
    p = (ras - shift) @ rotation  # back into the head frame
    inside = ((p / np.asarray(brain, float)) ** 2).sum(axis=1) <= 1
    value = 100 * (1 + 0.15 * np.sin(p[:, 0] / 11) * np.cos(p[:, 1] / 17)) * inside
    for centre, radii, level in (((12, 5, 12), (7, 22, 9), 0.35), ((-30, 35, -8), (14, 10, 10), 1.5),
                                 ((25, -40, 20), (9, 9, 14), 0.6)):
        value[((p - centre) / np.asarray(radii, float)) ** 2 @ np.ones(3) <= 1] *= level
    for centre in dark_spots:
        value[np.linalg.norm(p - centre, axis=1) <= 2.0] *= 0.15
    return value.reshape(shape_kji).astype(np.float32)


def det(ras, score, diameter=3.0, location="lobar", **fields) -> Detection:
    return Detection(tuple(float(v) for v in ras), (0.0, 0.0, 0.0), diameter, 0.5, score, score, score, location,
                     **fields)


def test_aria_h_grade_bands():
    assert [aria_h_grade(n) for n in (0, 1, 4, 5, 9, 10, 15)] == [
        "none", "mild", "mild", "moderate", "moderate", "severe", "severe"]
    with pytest.raises(ValueError):
        aria_h_grade(-1)


def test_matching_is_one_to_one_optimal_and_within_tolerance():
    followup = np.array([[0.0, 0, 0], [2.6, 0, 0], [40.0, 0, 0]])
    baseline = np.array([[1.4, 0, 0], [4.0, 0, 0], [-60.0, 0, 0]])
    matches = match_points(followup, [2.0] * 3, baseline, [2.0] * 3)
    # greedy nearest would pair 0<->0 (1.4 mm) and leave 2.6 to 4.0 (1.4 mm): the same total here,
    # so check the assignment is one-to-one and the far points stay unmatched
    assert sorted((m.followup, m.baseline) for m in matches) == [(0, 0), (1, 1)]
    assert all(m.distance_mm <= 1.0 + 3.0 for m in matches)
    # a point 1 mm from two baseline points goes to the one that leaves the other free
    m2 = match_points(np.array([[0.0, 0, 0], [3.0, 0, 0]]), [2.0, 2.0],
                      np.array([[1.0, 0, 0], [-3.5, 0, 0]]), [2.0, 2.0])
    assert sorted((m.followup, m.baseline) for m in m2) == [(0, 1), (1, 0)]


@pytest.mark.parametrize("drop", [1.0, 20.0], ids=["even", "coil_gradient_20x"])
def test_registration_recovers_head_motion_across_grids(drop):
    """``drop``: the follow-up darkens that many times from one side to the other (a receive
    coil); without dividing the gradient out first a point landed 3.1 mm off."""
    base = phantom(*BASELINE_GRID)
    follow = phantom(*FOLLOWUP_GRID, rotation=ROTATION, shift=SHIFT)
    i = np.arange(follow.shape[2])
    follow *= np.exp(np.log(drop) * (i / i[-1] - 0.5)).astype(np.float32)
    reg = register(base, BASELINE_GRID[0], follow, FOLLOWUP_GRID[0])
    assert reg.ok, reg.reason
    assert reg.dice >= MIN_DICE
    points = np.array([[20.0, 30, 10], [-40, -20, -15], [0, 60, 30]])
    moved = points @ ROTATION.T + SHIFT
    assert np.linalg.norm(reg.to_baseline(moved) - points, axis=1).max() < 1.5
    assert np.allclose(reg.to_followup(reg.to_baseline(moved)), moved)


@pytest.mark.parametrize("case", ["slab", "unrelated"])
def test_registration_failure_is_reported_and_blocks_the_change_call(case):
    base = phantom(*BASELINE_GRID)
    if case == "slab":  # a 40 mm slab of the 124 mm brain
        geometry = Geometry.from_parts((2.0, 2.0, 2.0), (-90.0, -105.0, -20.0))
        follow = phantom(geometry, (20, 106, 91))
    else:  # another object: a small ball off to one side
        geometry, shape = BASELINE_GRID
        follow = phantom(geometry, shape, shift=np.array([40.0, 50.0, 30.0]), brain=(30, 30, 30))
    reg = register(base, BASELINE_GRID[0], follow, geometry)
    assert not reg.ok
    assert ("covers only" in reg.reason) if case == "slab" else ("Dice" in reg.reason or "covers" in reg.reason)
    with pytest.raises(CMBDetectorError, match="Registration of the follow-up to the baseline failed"):
        compare_detections([], [det((0, 0, 0), 0.9)], (0.5, 0.5), reg, (base, BASELINE_GRID[0]))


def test_a_follow_up_with_almost_no_brain_is_refused_by_name():
    geometry = Geometry.from_parts((2.0, 2.0, 2.0), (-90.0, -105.0, -10.0))  # a 20 mm slab
    with pytest.raises(CMBDetectorError, match="The follow-up scan shows almost no brain"):
        register(phantom(*BASELINE_GRID), BASELINE_GRID[0], phantom(geometry, (10, 106, 91)), geometry)


def test_spot_contrast_sees_dark_spots_only():
    geometry, shape = BASELINE_GRID
    image = phantom(geometry, shape, dark_spots=[(20.0, 30.0, 10.0)])
    c = spot_contrast(image, geometry, np.array([[20.0, 30, 10], [-20.0, -30, 10], [500.0, 0, 0]]), np.array([1.5] * 3))
    assert c[0] > 0.6 and c[1] < 0.3 and c[2] == 0.0


def test_best_score_near_takes_weak_detections_into_account():
    scores, index = best_score_near([det((0, 0, 0), 0.2), det((1, 0, 0), 0.3), det((30, 0, 0), 0.9)],
                                    np.array([[0.5, 0, 0], [60.0, 0, 0]]), np.array([3.0, 3.0]))
    assert scores.tolist() == [0.3, 0.0] and index.tolist() == [1, -1]


def test_change_call_rescoring_the_baseline():
    geometry, shape = BASELINE_GRID
    missed = (-25.0, 10.0, 5.0)  # a visible dark spot the baseline detector scored 0
    image = phantom(geometry, shape, dark_spots=[missed])
    reg = Registration(np.eye(4), 0.95, 1.0, -0.5, True)
    baseline = [det((10, 10, 10), 0.9), det((30, -20, 0), 0.2),  # persistent; weak (below threshold)
                det((-10, 40, 20), 0.8), det((0, -40, -10), 0.7)]  # resolved; weaker at follow-up
    followup = [det((11, 10.5, 10), 0.85, region="frontal"), det((30.5, -20, 0), 0.9),  # persistent; weak at baseline
                det((-30, -30, 25), 0.9, location="deep"), det(missed, 0.9),  # new; missed at baseline
                det((0.5, -40, -10), 0.3)]  # the resolved-looking one, weak at follow-up
    change = compare_detections(baseline, followup, (0.5, 0.5), reg, (image, geometry),
                                Cutoffs(score_high=0.3, score_low=0.1, contrast_high=0.5, contrast_low=0.35,
                                        new_score=0.5))
    by_place = {tuple(np.round(r.ras)): r for r in change.rows}
    assert by_place[(11, 10, 10)].change == PERSISTENT and by_place[(11, 10, 10)].region == "frontal"
    assert by_place[(11, 10, 10)].distance_mm == pytest.approx(1.118, abs=1e-3)
    assert by_place[(30, -20, 0)].change == POSSIBLE_NEW and by_place[(30, -20, 0)].baseline_score == pytest.approx(0.2)
    assert by_place[(-30, -30, 25)].change == NEW and by_place[(-30, -30, 25)].region == "deep"
    assert by_place[missed].change == PERSISTENT and by_place[missed].baseline_contrast > 0.5
    assert by_place[(0, -40, -10)].change == PERSISTENT  # seen weakly at follow-up, not resolved
    assert by_place[(-10, 40, 20)].change == RESOLVED
    assert change.counts() == {NEW: 1, POSSIBLE_NEW: 1, PERSISTENT: 3, RESOLVED: 1}
    assert change.grade == "mild" and change.grade_with_possible == "mild"


def test_weaker_follow_up_detections_are_called_only_where_the_baseline_shows_nothing():
    geometry, shape = BASELINE_GRID
    vein = (-25.0, 10.0, 5.0)  # a mimic: dark at both visits, the baseline scored it 0.25
    image = phantom(geometry, shape, dark_spots=[vein])
    reg = Registration(np.eye(4), 0.95, 1.0, -0.5, True)
    baseline = [det((10, 10, 10), 0.9), det(vein, 0.25), det((0, -40, -10), 0.8)]
    followup = [det((10, 10, 10), 0.9), det(vein, 0.35),  # persistent; the mimic again, still weak
                det((-30, -30, 25), 0.4), det((30, 20, -20), 0.25),  # new, weak; weaker still
                det((25, -30, 15), 0.1), det((0.5, -40, -10), 0.3)]  # under the floor; the baseline's 0.8
    cutoffs = Cutoffs(0.3, 0.1, 0.4, 0.3, new_score=0.3, new_floor=0.2)
    change = compare_detections(baseline, followup, (0.5, 0.5), reg, (image, geometry), cutoffs)
    by_place = {tuple(np.round(r.ras)): r.change for r in change.rows}
    assert by_place == {(10, 10, 10): PERSISTENT, (-30, -30, 25): NEW, (30, 20, -20): POSSIBLE_NEW,
                        (0, -40, -10): PERSISTENT}  # the mimic is not listed; the 0.8 is seen weakly
    assert change.grade == "mild" and change.grade_with_possible == "mild"
    at_threshold = compare_detections(baseline, followup, (0.5, 0.5), reg, (image, geometry),
                                      replace(cutoffs, new_floor=1.0))
    assert at_threshold.counts() == {NEW: 0, POSSIBLE_NEW: 0, PERSISTENT: 2, RESOLVED: 0}


def test_pairs_from_folder_rule_and_csv(tmp_path):
    for name in ("s01_v1.nii.gz", "s01_v2.nii.gz", "s01_v3_mag.nii.gz", "s01_v3_phase.nii.gz", "s02_20240105.nrrd",
                 "s02_20240712.nrrd", "lonely_v1.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    pairs = pairs_in_folder(tmp_path)
    assert [(p.name, p.baseline.name, p.followup.name) for p in pairs] == [
        ("s01_v2", "s01_v1.nii.gz", "s01_v2.nii.gz"), ("s01_v3", "s01_v1.nii.gz", "s01_v3_mag.nii.gz"),
        ("s02_20240712", "s02_20240105.nrrd", "s02_20240712.nrrd")]
    (tmp_path / "pairs.csv").write_text("baseline,followup,name\ns01_v1.nii.gz,s01_v2.nii.gz,first\n")
    assert pairs_from_csv(tmp_path / "pairs.csv")[0].followup == tmp_path / "s01_v2.nii.gz"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CMBDetectorError, match="baseline,followup"):
        pairs_from_csv(tmp_path / "bad.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CMBDetectorError, match="<subject>_<visit>"):
        pairs_in_folder(empty)


@pytest.mark.parametrize("name, base", [
    ("s01_v3_mag.nii.gz", "s01_v3"), ("s01_v3.nii", "s01_v3"), ("s01_v3_mag.nrrd", "s01_v3"),
    ("scan.MHA", "scan"), ("sub-01_ses-02_part-mag_T2starw.nii.gz", "sub-01_ses-02_T2starw"),
    ("s01_v3_phase.nii.gz", "s01_v3_phase")])
def test_scan_base_is_the_name_outputs_and_pairs_go_by(name, base):
    assert scan_base(name) == scan_base(f"/some/folder/{name}") == base


def test_synthetic_pair_shares_lesions_and_adds_new_ones():
    from CMBDetectorLib.synth import AcquisitionProtocol
    from CMBDetectorLib.synth.longitudinal import generate_pair

    swi = AcquisitionProtocol(3.0, 20.0, "swi3d", (2.0, 2.0, 2.0), (96, 112, 72))
    gre = AcquisitionProtocol(1.5, 20.0, "gre2d", (2.0, 2.0, 5.0), (96, 112, 30))
    pair = generate_pair(11, gre, swi, n_cmb=4, n_new_cmb=3)
    base, follow = pair.baseline.cmb_truth()[0], pair.followup.cmb_truth()[0]
    assert pair.n_new == 3 and len(follow) == len(base) + 3
    moved = pair.baseline_in_followup()
    d = np.linalg.norm(follow[:, None] - moved[None], axis=2).min(axis=1)
    assert np.all(d[~pair.new] < 1e-6) and np.all(d[pair.new] > 4.0)  # old ones moved with the head
    assert not np.allclose(follow[~pair.new], base)  # the head did move
    # the new microbleeds are dark in the follow-up, the baseline has nothing there
    back = (follow[pair.new] - pair.revisit.translation) @ pair.revisit.rotation
    for centre_f, centre_b in zip(follow[pair.new], back):
        k, j, i = np.round(pair.followup.geometry.ras_to_ijk_points(centre_f)[0][::-1]).astype(int)
        assert pair.followup.labels[k, j, i] > 0
        kb, jb, ib = np.round(pair.baseline.geometry.ras_to_ijk_points(centre_b)[0][::-1]).astype(int)
        assert pair.baseline.labels[kb, jb, ib] == 0
    assert pair.baseline.protocol.kind == "gre2d" and pair.followup.protocol.kind == "swi3d"


def test_registration_ignores_what_lies_outside_the_brain():
    """Validation pair 251001 (1.5 T 4 mm 2D GRE baseline, 3 T SWI follow-up whose slab leaves
    the lower brain dark): on whole-head images the fit stopped 20 mm off and the check refused
    the pair; cut to the brain it lands within 3 mm (about 50 s: a full-size synthetic pair)."""
    from CMBDetectorLib.synth import sample_protocol
    from CMBDetectorLib.synth.longitudinal import generate_pair

    rng = np.random.default_rng([251001, 11])  # the benchmark's cross-protocol draw for this seed
    baseline = sample_protocol(rng, kind="gre2d", field_strength_t=1.5)
    pair = generate_pair(251001, baseline, sample_protocol(rng, kind="swi3d", field_strength_t=3.0))
    reg = register(pair.baseline.magnitude, pair.baseline.geometry, pair.followup.magnitude, pair.followup.geometry)
    assert reg.ok, reg.reason
    points = np.stack(np.meshgrid(*[np.linspace(-40, 40, 3)] * 3), -1).reshape(-1, 3) + [0, -15, 15]
    error = np.linalg.norm(reg.to_followup(points) - pair.revisit.apply(points), axis=1)
    assert error.max() < 3.0


def test_visits_acquired_differently_are_named():
    from CMBDetectorLib.followup.protocols import mismatch_warning, protocol_differences
    from CMBDetectorLib.trained_range import Acquisition

    thin, thin2, thick = (Geometry.from_parts(s, (0.0, 0.0, 0.0)) for s in
                          ((0.9, 0.9, 1.5), (1.0, 1.0, 2.0), (0.9, 0.9, 5.0)))
    swi = Acquisition(3.0, 20.0)
    assert protocol_differences((thin, swi), (thin2, Acquisition(2.89, 24.0))) == []  # alike enough
    assert protocol_differences((thin, Acquisition()), (thin, swi)) == []  # unknown: nothing to compare
    assert protocol_differences((thin, swi), (thick, Acquisition(1.5, 25.0))) == [
        "slices 1.5 mm at baseline, 5.0 mm at follow-up", "3 T at baseline, 1.5 T at follow-up",
        "echo time 20 ms at baseline, 25 ms at follow-up"]
    assert mismatch_warning((thin, swi), (thin, swi)) is None
    text = mismatch_warning((thick, swi), (thin, swi))
    assert "slices 5.0 mm at baseline, 1.5 mm at follow-up" in text and "ARIA-H" in text


def test_followup_benchmark_reads_each_visit_at_todays_preset(tmp_path, monkeypatch):
    """A pair kept in the follow-up benchmark's cache is read at the presets in force, each visit
    at its input's (SWI with phase, 2D GRE magnitude only), as compare_visits reads a new pair."""
    import pickle
    import sys

    from conftest import load_script
    from CMBDetectorLib.config import DetectorConfig, preset_threshold

    bench = load_script("benchmark_followup")
    seed, row = bench.TEST_SEED + 1000, bench.ROWS[1]
    assert [p.kind for p in bench.pair_protocols(seed, row)] == ["gre2d", "swi3d"]
    expected = (preset_threshold("balanced", False), preset_threshold("balanced", True))
    assert bench.visit_thresholds(seed, row, DetectorConfig()) == expected
    assert all(b == f for b, f in (bench.pair_protocols(bench.TEST_SEED + n, bench.ROWS[0]) for n in range(4)))
    # a run kept at other thresholds is read at today's
    run = bench.PairRun(row, [], [], (0.95, 0.95), None, (None, None), np.zeros((0, 3)), np.zeros(0),
                        np.zeros(0, bool), 1.0, "kept as a failed registration: nothing else to read", 1.0)
    (tmp_path / f"pair_{seed}.pkl").write_bytes(pickle.dumps(run))
    seen = []
    evaluate = bench.evaluate
    monkeypatch.setattr(bench, "evaluate", lambda runs, cutoffs: seen.extend(runs) or evaluate(runs, cutoffs))
    monkeypatch.setattr(sys, "argv", ["benchmark_followup.py", "--n", "1", "--row", "cross", "--cache", str(tmp_path),
                                      "--cached-only"])
    bench.main()
    assert [r.thresholds for r in seen] == [expected]
