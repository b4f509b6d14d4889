"""Baseline / follow-up comparison on slicer-core: Logic.compareVisits on volumes with different
grids, change lists and table, review of the change call, CSV + summary, the compare CLI and its
batch over pairs, and a failed registration that reports no changes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import result_from_ijk
from test_followup import BASELINE_GRID, FOLLOWUP_GRID, ROTATION, SHIFT, phantom

from CMBDetectorLib import pipeline
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.followup.change import NEW, PERSISTENT, POSSIBLE_NEW, RESOLVED
from CMBDetectorLib.geometry import Geometry, write_image
from CMBDetectorMRML import followup, markups, volumes
from CMBDetectorMRML.compare import BATCH_SUMMARY, main as compare_main
from CMBDetectorMRML.logic import CMBDetectorLogic

OLD = np.array([[20.0, 30.0, 10.0], [-35.0, -20.0, 15.0]])  # head frame: in both visits
GONE = np.array([[0.0, 50.0, -20.0]])  # baseline only
NEW_SPOTS = np.array([[-20.0, 10.0, 30.0], [30.0, -45.0, -10.0]])  # follow-up only
WEAK = np.array([[10.0, -10.0, -30.0]])  # follow-up only, the baseline detector scored it 0.15


def moved(points):
    return points @ ROTATION.T + SHIFT


@pytest.fixture
def stub_detector(monkeypatch):
    """pipeline.detect stand-in: baseline calls (first) and follow-up calls (second) get their
    visit's detections, placed at head-frame points mapped through each scan's geometry."""
    calls = []

    def detect(array, geometry, config=None, mask=None, progress=None, cancel=None, phase=None):
        followup_call = len(calls) % 2 == 1
        calls.append({"geometry": geometry, "config": config, "phase": phase})
        if followup_call:
            points, scores = moved(np.vstack([OLD, NEW_SPOTS, WEAK])), [0.9, 0.85, 0.95, 0.9, 0.8]
        else:
            points, scores = np.vstack([OLD, GONE, WEAK]), [0.9, 0.8, 0.85, 0.15]
        return result_from_ijk(geometry, geometry.ras_to_ijk_points(points), scores=scores)

    monkeypatch.setattr(pipeline, "detect", detect)
    return calls


def add_volume(scene, array, grid, name):
    return volumes.volume_from_array(scene, array, grid[0], name)


@pytest.fixture
def pair_nodes(scene):
    base = add_volume(scene, phantom(*BASELINE_GRID), BASELINE_GRID, "baseline")
    follow = add_volume(scene, phantom(*FOLLOWUP_GRID, rotation=ROTATION, shift=SHIFT), FOLLOWUP_GRID, "followup")
    return base, follow


def test_compare_visits_on_different_grids(scene, pair_nodes, stub_detector, tmp_path):
    base, follow = pair_nodes
    out = CMBDetectorLogic().compareVisits(base, follow)
    assert len(stub_detector) == 2 and all(c["config"].threshold == 0.05 for c in stub_detector)
    counts = followup.reviewed_counts(out.tableNode)
    assert counts == {NEW: 2, POSSIBLE_NEW: 1, PERSISTENT: 2, RESOLVED: 1}
    assert out.comparison.change.grade == "mild"
    new_list = out.followupLists[NEW]
    assert new_list.GetNumberOfControlPoints() == 2
    assert new_list.GetNodeReference(markups.VOLUME_ROLE) is follow
    assert new_list.GetDisplayNode().GetSelectedColor() == pytest.approx(followup.CHANGE_COLORS[NEW])
    # follow-up points sit at the follow-up's RAS; the matched baseline point in baseline RAS
    rows = followup.change_rows(out.tableNode)
    persistent = [r for r in rows if r["change"] == PERSISTENT]
    for r in persistent:
        ras = np.array([r["R"], r["A"], r["S"]])
        assert np.linalg.norm(moved(OLD) - ras, axis=1).min() < 1e-3
        assert np.linalg.norm(OLD - [r["baseline_R"], r["baseline_A"], r["baseline_S"]], axis=1).min() < 1e-3
        assert r["distance_mm"] < 1.5  # registration error only
    resolved = [r for r in rows if r["change"] == RESOLVED]
    assert np.allclose([resolved[0]["R"], resolved[0]["A"], resolved[0]["S"]], GONE[0], atol=1e-3)
    assert out.baselineLists[PERSISTENT].GetNumberOfControlPoints() == 2
    assert np.allclose(volumes.matrix_to_numpy(out.transformNode.GetMatrixTransformToParent()),
                       out.comparison.change.registration.followup_to_baseline)
    assert follow.GetParentTransformNode() is None  # the user's volume is left alone
    # review: confirming the possible new one and rejecting a new one changes the grade inputs
    table = out.tableNode
    followup.set_change_status(table, out.followupLists[POSSIBLE_NEW], 0, markups.ACCEPTED)
    followup.set_change_status(table, new_list, 1, markups.REJECTED)
    assert followup.reviewed_counts(table)[NEW] == 2
    assert "rejected" in [table.GetTable().GetValueByName(r, "status").ToString()
                          for r in range(table.GetNumberOfRows())]
    changes, summary = followup.write_outputs(out, tmp_path, "pair", "baseline.nii.gz", "followup.nii.gz")
    with changes.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(followup.TABLE_COLUMNS) and len(rows) == 6
    with summary.open() as fh:
        s = next(csv.DictReader(fh))
    assert (s["new"], s["possible_new"], s["aria_h_grade"], s["status"]) == ("2", "0", "mild", "ok")


def test_failed_registration_reports_no_changes(scene, stub_detector):
    base = add_volume(scene, phantom(*BASELINE_GRID), BASELINE_GRID, "baseline")
    slab_grid = (Geometry.from_parts((2.0, 2.0, 2.0), (-90.0, -105.0, -20.0)), (20, 106, 91))  # 40 mm
    slab = add_volume(scene, phantom(*slab_grid), slab_grid, "slab")
    before = scene.GetNumberOfNodes()
    with pytest.raises(CMBDetectorError, match="covers only"):
        CMBDetectorLogic().compareVisits(base, slab)
    assert scene.GetNumberOfNodes() == before and not stub_detector  # nothing added, detector never ran


def test_compare_cli_single_pair_and_batch(tmp_path, stub_detector, capsys):
    data = tmp_path / "scans"
    data.mkdir()
    write_image(data / "s01_v1.nii.gz", phantom(*BASELINE_GRID), BASELINE_GRID[0])
    write_image(data / "s01_v2.nii.gz", phantom(*FOLLOWUP_GRID, rotation=ROTATION, shift=SHIFT), FOLLOWUP_GRID[0])
    slab_grid = (Geometry.from_parts((2.0, 2.0, 2.0), (-90.0, -105.0, -20.0)), (20, 106, 91))  # 40 mm
    write_image(data / "s02_v1.nii.gz", phantom(*BASELINE_GRID), BASELINE_GRID[0])
    write_image(data / "s02_v2.nii.gz", phantom(*slab_grid), slab_grid[0])
    out = tmp_path / "out"
    assert compare_main([str(data / "s01_v1.nii.gz"), str(data / "s01_v2.nii.gz"), str(out / "one")]) == 0
    printed = capsys.readouterr()
    assert "ARIA-H mild" in printed.out and "Warning: The visits were acquired differently" in printed.err
    assert (out / "one" / "s01_v2_changes.csv").is_file() and (out / "one" / "s01_v2_followup_new.mrk.json").is_file()
    assert compare_main([str(data), str(out / "batch")]) == 1  # s02's registration fails
    with (out / "batch" / BATCH_SUMMARY).open() as fh:
        rows = {r["followup"]: r for r in csv.DictReader(fh)}
    assert rows["s01_v2.nii.gz"]["status"] == "ok" and rows["s01_v2.nii.gz"]["new"] == "2"
    assert "(slices 2.0 mm at baseline, 4.0 mm at follow-up)" in rows["s01_v2.nii.gz"]["warnings"]
    assert rows["s02_v2.nii.gz"]["status"] == "failed" and "covers only" in rows["s02_v2.nii.gz"]["error"]
    assert not (out / "batch" / "s02_v2_changes.csv").exists()
    assert compare_main([str(data / "s02_v1.nii.gz"), str(data / "s02_v2.nii.gz"), str(out / "two")]) == 2
    assert "Registration of the follow-up to the baseline failed" in capsys.readouterr().err


def test_compare_cli_fills_in_the_acquisition_where_sidecars_are_silent(tmp_path, stub_detector, capsys):
    data = tmp_path / "scans"
    data.mkdir()
    write_image(data / "s01_v1.nii.gz", phantom(*BASELINE_GRID), BASELINE_GRID[0])
    write_image(data / "s01_v2.nii.gz", phantom(*FOLLOWUP_GRID, rotation=ROTATION, shift=SHIFT), FOLLOWUP_GRID[0])
    (data / "s01_v2.json").write_text(json.dumps({"MagneticFieldStrength": 7}))  # the follow-up's own word wins
    pair = [str(data / "s01_v1.nii.gz"), str(data / "s01_v2.nii.gz")]
    assert compare_main([*pair, str(tmp_path / "plain")]) == 0
    assert "at baseline, 7 T" not in capsys.readouterr().err  # the baseline's field is unknown
    assert compare_main([*pair, str(tmp_path / "stated"), "--field-strength", "3", "--echo-time", "20"]) == 0
    printed = capsys.readouterr().err
    assert "Baseline:" not in printed and "Follow-up: The scan lies outside" in printed
    assert "3 T at baseline, 7 T at follow-up" in printed and "ms at baseline" not in printed  # same TE
    with pytest.raises(SystemExit) as stop:
        compare_main([*pair, str(tmp_path / "bad"), "--echo-time", "-5"])
    assert stop.value.code == 2 and "--echo-time" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_each_visit_is_checked_and_the_pair_compared(tmp_path, scene, pair_nodes, stub_detector):
    from CMBDetectorLib.trained_range import Acquisition
    from CMBDetectorMRML import acquisition_info

    base, follow = pair_nodes
    acquisition_info.store(base, Acquisition(3.0, 20.0))
    acquisition_info.store(follow, Acquisition(7.0, 20.0))
    out = CMBDetectorLogic().compareVisits(base, follow)
    outside, differ = out.warnings
    assert outside.startswith("Follow-up: The scan lies outside") and "field strength 7 T" in outside
    assert "(slices 2.0 mm at baseline, 4.0 mm at follow-up; 3 T at baseline, 7 T at follow-up)" in differ
    followup.write_outputs(out, tmp_path, "pair", "v1.nii.gz", "v2.nii.gz")
    with (tmp_path / "pair_summary.csv").open() as fh:
        (row,) = csv.DictReader(fh)
    assert row["warnings"].split(" | ") == out.warnings
