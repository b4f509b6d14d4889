"""CMBDetectorLogic on a real MRML scene: apply, review, export, save/reload, rerun, failures, batch.

Only ``test_sample_scan_*`` runs the real detector; the others use the ``fake_detect`` stand-in
(known voxel positions) because they test the MRML side, not detection quality.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry, read_image, write_image
from CMBDetectorLib.progress import DetectionCancelled
from CMBDetectorMRML import markups, report, tables, volumes
from CMBDetectorMRML.__main__ import main as cli_main
from CMBDetectorMRML.logic import CMBDetectorLogic
from CMBDetectorMRML.scene import new_scene

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "Resources" / "SampleData"
SAMPLE_SCAN = SAMPLE_DIR / "SampleSWI_mag.nii.gz"
SAMPLE_OBJECTS = SAMPLE_DIR / "SampleSWI_objects.csv"
GEOMETRY = Geometry.from_parts(spacing=(0.9, 0.9, 2.0), origin=(90.0, -110.0, -40.0),
                               direction=np.diag([-1.0, 1.0, 1.0]))
SHAPE = (20, 32, 32)
IJK = [(5.0, 6.0, 4.0), (20.0, 10.0, 8.0), (12.0, 25.0, 15.0), (28.0, 3.0, 2.0)]


def scene_state(scene) -> list[tuple[str, str, int]]:
    """Node IDs, names and (for markups) point counts: what a rolled-back run must restore."""
    nodes = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
    return [(n.GetID(), n.GetName(), n.GetNumberOfControlPoints() if n.IsA("vtkMRMLMarkupsNode") else -1)
            for n in nodes]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def volume(scene):
    array = np.random.default_rng(1).uniform(20, 300, SHAPE).astype(np.float32)
    return volumes.volume_from_array(scene, array, GEOMETRY, "scan")


@pytest.fixture
def applied(volume, fake_detect):
    fake_detect(IJK, diameters=[3.0, 6.0, 12.0, 2.0], locations=["lobar", "deep", "lobar", "infratentorial"])
    return CMBDetectorLogic().process(volume)


# --- real detector on the bundled sample ---------------------------------------------------------

def test_sample_scan_detections_land_on_true_microbleeds(headless, tmp_path):
    volume = volumes.load_volume(headless.scene, SAMPLE_SCAN)
    out = CMBDetectorLogic().process(volume)
    truth = [r for r in read_csv(SAMPLE_OBJECTS) if r["is_cmb"].strip().lower() in ("1", "true")]
    truth_ras = np.array([[float(r["R"]), float(r["A"]), float(r["S"])] for r in truth])
    found = np.array([p.ras for p in markups.points(out.fiducialNode)])
    assert len(found) == out.result.count > 0
    np.testing.assert_allclose(found, [d.ras for d in out.result.detections], atol=1e-3)
    # Each detection near a true CMB counts as a hit; most true CMBs must be hit.
    distance = np.linalg.norm(found[:, None, :] - truth_ras[None, :, :], axis=2)
    hits = (distance.min(axis=0) <= 3.0).sum()
    assert hits >= 0.5 * len(truth_ras), f"only {hits}/{len(truth_ras)} true CMBs have a fiducial within 3 mm"
    assert len(tables.rows_from_table(out.tableNode)) == len(found)


# --- apply, table, review -------------------------------------------------------------------------

def test_apply_creates_pending_points_and_matching_table(volume, applied):
    fiducials, table = applied.fiducialNode, applied.tableNode
    assert fiducials.GetNodeReference(markups.VOLUME_ROLE) is volume
    assert fiducials.GetNodeReference(markups.TABLE_ROLE) is table
    infos = markups.points(fiducials)
    assert [p.label for p in infos] == ["CMB-1", "CMB-2", "CMB-3", "CMB-4"]
    assert [p.score for p in infos] == sorted((p.score for p in infos), reverse=True)
    assert {p.status for p in infos} == {"pending"} and {p.source for p in infos} == {"detector"}
    rows = tables.rows_from_table(table)
    assert [r["label"] for r in rows] == [p.label for p in infos]
    for row, info in zip(rows, infos):
        np.testing.assert_allclose([row["R"], row["A"], row["S"]], info.ras, atol=1e-6)
        np.testing.assert_allclose(GEOMETRY.ijk_to_ras_points([row["I"], row["J"], row["K"]])[0], info.ras, atol=1e-2)
        assert row["status"] == "pending" and row["score"] == pytest.approx(info.score)


def test_review_changes_status_counts_table_and_csv(applied, tmp_path):
    logic, fiducials = CMBDetectorLogic(), applied.fiducialNode
    logic.setPointStatus(fiducials, 0, "accepted")
    logic.setPointStatus(fiducials, 1, "rejected")
    logic.addReaderPoint(fiducials, GEOMETRY.ijk_to_ras_points([16, 16, 10])[0], diameter_mm=4.0)
    counts = logic.countsByStatus(fiducials)
    assert (counts.accepted, counts.rejected, counts.pending, counts.reader_added) == (1, 1, 2, 1)
    assert counts.final == 2 and counts.total == 5
    assert fiducials.GetNthControlPointSelected(2) and not fiducials.GetNthControlPointSelected(0)
    assert not fiducials.GetNthControlPointVisibility(1)
    reader = markups.point_info(fiducials, 4)
    assert (reader.label, reader.status, reader.source) == ("Reader-1", "accepted", "reader")
    np.testing.assert_allclose(reader.ijk, (16, 16, 10), atol=1e-2)
    statuses = [r["status"] for r in tables.rows_from_table(applied.tableNode)]
    assert statuses == ["accepted", "rejected", "pending", "pending", "accepted"]
    for node in (fiducials, applied.tableNode):
        path = tmp_path / f"{node.GetClassName()}.csv"
        assert logic.exportCSV(node, path) == 5
        rows = read_csv(path)
        assert list(rows[0]) == list(tables.COLUMNS)
        assert [r["status"] for r in rows] == statuses and rows[4]["source"] == "reader"
        assert rows[4]["score"] == "" and float(rows[4]["diameter_mm"]) == 4.0
    summary = logic.summary(fiducials)  # the 11 mm point is listed apart, not counted
    assert (summary.definite, summary.possible, summary.too_large, summary.rejected) == (2, 1, 1, 1)
    assert {name: (t.definite, t.possible) for name, t in summary.by_size.items()} == {
        "<5 mm": (2, 1), "5-10 mm": (0, 0), "unknown size": (0, 0)}
    with pytest.raises(CMBDetectorError, match="Unknown review status"):
        logic.setPointStatus(fiducials, 0, "maybe")
    with pytest.raises(CMBDetectorError, match="out of range"):
        logic.setPointStatus(fiducials, 9, "accepted")


def test_point_placed_in_views_counts_as_reader_point(applied):
    import vtk

    logic, fiducials = CMBDetectorLogic(), applied.fiducialNode
    ras = GEOMETRY.ijk_to_ras_points([8, 9, 10])[0]
    index = fiducials.AddControlPoint(vtk.vtkVector3d(*ras), "F-1")  # as Markups placement does
    assert logic.countsByStatus(fiducials).reader_added == 1
    logic.markReaderPoint(fiducials, index)
    info = markups.point_info(fiducials, index)
    assert (info.label, info.status, info.source) == ("Reader-1", "accepted", "reader")
    np.testing.assert_allclose(info.ijk, (8, 9, 10), atol=1e-2)
    assert report.counts_text(logic.countsByStatus(fiducials)).endswith("Reader-added 1 -> final count 1")
    assert tables.rows_from_table(applied.tableNode)[index]["label"] == "Reader-1"


def test_pending_only_filter_hides_reviewed_points(applied):
    logic, fiducials = CMBDetectorLogic(), applied.fiducialNode
    logic.setPointStatus(fiducials, 0, "accepted")
    logic.applyDisplay(fiducials, pendingOnly=True)
    assert [fiducials.GetNthControlPointVisibility(i) for i in range(4)] == [False, True, True, True]
    logic.applyDisplay(fiducials)
    assert fiducials.GetNthControlPointVisibility(0)


def test_saved_markups_reload_with_every_decision(applied, tmp_path):
    logic, fiducials = CMBDetectorLogic(), applied.fiducialNode
    logic.setPointStatus(fiducials, 0, "accepted")
    logic.setPointStatus(fiducials, 2, "rejected")
    logic.addReaderPoint(fiducials, (1.0, 2.0, 3.0))
    path = tmp_path / "review.mrk.json"
    logic.saveMarkups(fiducials, path)
    assert [p.name for p in tmp_path.iterdir()] == ["review.mrk.json"]  # no temp file left
    other = new_scene()
    reloaded = other.scene.GetNodeByID(other.markups_logic.LoadMarkups(str(path)))
    before, after = markups.points(fiducials), markups.points(reloaded)
    assert [(p.label, p.status, p.source, p.score, p.diameter_mm) for p in after] == \
           [(p.label, p.status, p.source, p.score, p.diameter_mm) for p in before]
    np.testing.assert_allclose([p.ras for p in after], [p.ras for p in before], atol=1e-6)
    assert logic.countsByStatus(reloaded) == logic.countsByStatus(fiducials)
    for i in range(fiducials.GetNumberOfControlPoints()):
        assert reloaded.GetNthControlPointSelected(i) == fiducials.GetNthControlPointSelected(i)
        assert reloaded.GetNthControlPointVisibility(i) == fiducials.GetNthControlPointVisibility(i)
    assert reloaded.GetDisplayNode().GetSelectedColor() == pytest.approx(markups.PENDING_COLOR)
    logic.setPointStatus(reloaded, 1, "accepted")  # review continues after reload
    assert logic.countsByStatus(reloaded).accepted == 2


# --- rerun and failure ------------------------------------------------------------------------------

def test_rerun_keeps_reviewed_node_and_reuses_unreviewed(scene, volume, applied):
    logic = CMBDetectorLogic()
    again = logic.process(volume, outputFiducialNode=applied.fiducialNode, outputTableNode=applied.tableNode)
    assert again.fiducialNode is applied.fiducialNode and again.tableNode is applied.tableNode
    logic.setPointStatus(applied.fiducialNode, 0, "rejected")
    third = logic.process(volume, outputFiducialNode=applied.fiducialNode, outputTableNode=applied.tableNode)
    assert third.fiducialNode is not applied.fiducialNode and third.tableNode is not applied.tableNode
    assert logic.getPointStatus(applied.fiducialNode, 0) == "rejected"
    assert any("reviewed points" in w for w in third.result.warnings)
    forced = logic.process(volume, outputFiducialNode=applied.fiducialNode, replace=True)
    assert forced.fiducialNode is applied.fiducialNode and forced.tableNode is applied.tableNode  # linked table
    assert logic.countsByStatus(applied.fiducialNode).pending == 4


def test_bad_input_volume_leaves_scene_unchanged(scene, volume, fake_detect):
    fake_detect(IJK)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    state = scene_state(scene)
    with pytest.raises(CMBDetectorError, match="select a scalar"):
        CMBDetectorLogic().process(labelmap)
    assert scene_state(scene) == state


def test_failure_while_writing_outputs_removes_created_nodes(scene, volume, fake_detect, monkeypatch):
    fake_detect(IJK)
    state = scene_state(scene)

    def broken(table_node, fiducial_node):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tables, "update_table", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        CMBDetectorLogic().process(volume)
    assert scene_state(scene) == state


def test_cancel_leaves_scene_and_existing_review_unchanged(scene, volume, applied):
    logic = CMBDetectorLogic()
    logic.setPointStatus(applied.fiducialNode, 0, "accepted")
    state = scene_state(scene)
    stages = []
    with pytest.raises(DetectionCancelled):
        logic.process(volume, outputFiducialNode=applied.fiducialNode, replace=True,
                      progress=lambda stage, f: stages.append(stage), cancel=lambda: "3D CNN" in stages)
    assert scene_state(scene) == state
    assert logic.getPointStatus(applied.fiducialNode, 0) == "accepted"


def test_phase_volume_reaches_the_detector_and_a_foreign_grid_is_refused(scene, volume, fake_detect):
    calls = fake_detect(IJK)
    phase = np.random.default_rng(2).uniform(-np.pi, np.pi, SHAPE).astype(np.float32)
    phase_node = volumes.volume_from_array(scene, phase, GEOMETRY, "phase")
    CMBDetectorLogic().process(volume, phaseNode=phase_node)
    np.testing.assert_array_equal(calls[-1]["phase"], phase)
    shifted = Geometry.from_parts(spacing=(0.9, 0.9, 2.0), origin=(91.0, -110.0, -40.0), direction=np.diag([-1.0, 1.0, 1.0]))
    other = volumes.volume_from_array(scene, phase, shifted, "phase elsewhere")
    state = scene_state(scene)
    with pytest.raises(CMBDetectorError, match="not on the grid of 'scan'"):
        CMBDetectorLogic().process(volume, phaseNode=other)
    assert scene_state(scene) == state and len(calls) == 1


def test_the_acquisition_reaches_the_detector_and_marks_scans_outside_the_training_ranges(scene, volume,
                                                                                          fake_detect):
    from CMBDetectorLib.trained_range import Acquisition
    from CMBDetectorMRML import acquisition_info

    calls = fake_detect(IJK)
    logic = CMBDetectorLogic()
    assert not logic.outsideTrainingRanges(volume)  # 2 mm slices, nothing else known
    logic.process(volume)
    assert calls[-1]["acquisition"] == Acquisition()
    acquisition_info.store(volume, Acquisition(7.0, 20.0))
    assert logic.outsideTrainingRanges(volume)
    logic.process(volume)
    assert calls[-1]["acquisition"] == Acquisition(7.0, 20.0)  # the detector picks its balanced threshold by it
    thick = Geometry.from_parts(spacing=(0.9, 0.9, 3.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3))
    assert logic.outsideTrainingRanges(volumes.volume_from_array(scene, np.ones(SHAPE, np.float32), thick, "thick"))


def test_the_panels_range_watch_reads_again_only_when_the_metadata_grid_or_file_change(scene, volume):
    from CMBDetectorLib.trained_range import Acquisition
    from CMBDetectorMRML import acquisition_info
    from CMBDetectorMRML.range_watch import TrainingRangeWatch

    reads, answers = [], []

    def read(node):
        reads.append(node.GetName())
        return CMBDetectorLogic.outsideTrainingRanges(node)

    watch = TrainingRangeWatch(read, answers.append)
    watch.follow(volume)
    assert answers == [False] and len(reads) == 1  # 2 mm slices, nothing else known
    volume.SetName("renamed")  # a change the answer does not depend on: not read again
    assert len(reads) == 1
    acquisition_info.store(volume, Acquisition(7.0, 20.0))  # metadata set after the selection
    assert answers[-1] is True and watch.out_of_range
    acquisition_info.store(volume, Acquisition())
    assert answers[-1] is False
    volume.SetSpacing(0.9, 0.9, 3.0)  # the grid: 3 mm slices lie between the trained regimes
    assert answers[-1] is True
    other = volumes.volume_from_array(scene, np.ones(SHAPE, np.float32), GEOMETRY, "other")
    watch.follow(other)
    assert answers[-1] is False
    n = len(reads)
    volume.SetSpacing(0.9, 0.9, 2.0)  # the volume no longer followed
    assert len(reads) == n
    watch.follow(None)
    assert answers[-1] is False and not watch.out_of_range
    other.SetSpacing(0.9, 0.9, 3.0)
    assert len(reads) == n


def test_scan_level_call_is_reported_and_stored(volume, fake_detect):
    from conftest import result_from_ijk

    result = result_from_ijk(GEOMETRY, IJK, scores=[0.85, 0.7, 0.6, 0.5])
    result.scan_threshold = 0.8
    assert report.scan_call_text(result).startswith("Scan-level call: microbleeds present (best score 0.85")
    result.scan_threshold = 0.9
    assert report.scan_call_text(result).startswith("Scan-level call: no microbleed (best score 0.85")
    result.timings, result.warnings = {"cnn": 1.5, "yolo": 0.5}, ["slice thickness 5 mm"]
    assert report.run_text(result).splitlines()[1:] == ["Time: 2.0 s (cnn 1.5 s, yolo 0.5 s)",
                                                         "Warning: slice thickness 5 mm"]
    fake_detect(IJK, scores=[0.95, 0.7, 0.6, 0.5])
    out = CMBDetectorLogic().process(volume)
    assert not out.result.has_microbleeds  # the stand-in result keeps the default call threshold 1.0
    assert out.fiducialNode.GetAttribute("CMBDetector.ScanCall") == "absent"
    assert out.fiducialNode.GetAttribute("CMBDetector.UsedPhase") == "false"


def test_input_volume_is_not_modified(volume, fake_detect):
    fake_detect(IJK)
    before, mtime = volumes.volume_to_array(volume)[0], volume.GetMTime()
    image_mtime = volume.GetImageData().GetMTime()
    CMBDetectorLogic().process(volume)
    np.testing.assert_array_equal(volumes.volume_to_array(volume)[0], before)
    assert volume.GetMTime() == mtime and volume.GetImageData().GetMTime() == image_mtime


# --- files and batch -----------------------------------------------------------------------------------

def write_scans(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in range(n):
        path = folder / f"scan{m + 1}.nii.gz"
        write_image(path, np.random.default_rng(m).uniform(20, 300, SHAPE).astype(np.float32), GEOMETRY)
        paths.append(path)
    return paths


def test_process_file_writes_markups_and_csv(tmp_path, fake_detect):
    fake_detect(IJK)
    (scan,) = write_scans(tmp_path / "in", 1)
    out = CMBDetectorLogic().processFile(scan, tmp_path / "out")
    assert out.markups_path.name == "scan1.mrk.json" and out.csv_path.name == "scan1.csv"
    rows = read_csv(out.csv_path)
    assert len(rows) == out.n_detections == 4
    _, geometry = read_image(scan)
    ras = geometry.ijk_to_ras_points(IJK[0])[0]
    np.testing.assert_allclose([float(rows[0][c]) for c in "RAS"], ras, atol=1e-3)


def test_batch_skips_corrupt_file_and_reports_it(tmp_path, fake_detect):
    fake_detect(IJK)
    write_scans(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"not a nifti file")
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    batch = CMBDetectorLogic().processDirectory(tmp_path / "in", tmp_path / "out")
    summary = read_csv(tmp_path / "out" / "summary.csv")
    assert [(r["file"], r["status"]) for r in summary] == [
        ("broken.nii.gz", "failed"), ("scan1.nii.gz", "ok"), ("scan2.nii.gz", "ok"), ("scan3.nii.gz", "ok")]
    assert "Cannot read image file" in summary[0]["error"] and summary[1]["n_detections"] == "4"
    assert [o.file for o in batch.failed] == ["broken.nii.gz"] and not batch.cancelled
    for m in (1, 2, 3):
        assert len(read_csv(tmp_path / "out" / f"scan{m}.csv")) == 4
        assert (tmp_path / "out" / f"scan{m}.mrk.json").exists()
    assert not (tmp_path / "out" / "broken.csv").exists()


def test_cancel_in_scan_k_keeps_earlier_scans(tmp_path, fake_detect):
    fake_detect(IJK)
    write_scans(tmp_path / "in", 4)
    stages = []
    batch = CMBDetectorLogic().processDirectory(
        tmp_path / "in", tmp_path / "out", progress=lambda stage, f: stages.append(stage),
        cancel=lambda: any(s.startswith("scan3.nii.gz") and s.endswith("3D CNN") for s in stages))
    assert batch.cancelled
    expected = [("scan1.nii.gz", "ok"), ("scan2.nii.gz", "ok"), ("scan3.nii.gz", "not run"), ("scan4.nii.gz", "not run")]
    assert [(o.file, o.status) for o in batch.outcomes] == expected
    assert [(r["file"], r["status"]) for r in read_csv(tmp_path / "out" / "summary.csv")] == expected
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["scan1.csv", "scan1.mrk.json", "scan1_counts.csv", "scan1_report.html", "scan2.csv",
                       "scan2.mrk.json", "scan2_counts.csv", "scan2_report.html", "summary.csv"]


def test_batch_pairs_each_scan_with_its_phase_image(tmp_path, fake_detect, capsys):
    calls = fake_detect(IJK)
    folder = tmp_path / "in"
    write_scans(folder, 2)
    (folder / "scan1.nii.gz").rename(folder / "scan1_mag.nii.gz")
    phase = np.random.default_rng(5).uniform(-np.pi, np.pi, SHAPE).astype(np.float32)
    write_image(folder / "scan1_phase.nii.gz", phase, GEOMETRY)
    batch = CMBDetectorLogic().processDirectory(folder, tmp_path / "out")
    assert [o.file for o in batch.outcomes] == ["scan1_mag.nii.gz", "scan2.nii.gz"] and not batch.failed
    np.testing.assert_allclose(calls[0]["phase"], phase)
    assert calls[1]["phase"] is None
    assert cli_main([str(folder / "scan1_mag.nii.gz"), str(tmp_path / "one"), "--sensitivity", "high"]) == 0
    assert "phase: scan1_phase.nii.gz" in capsys.readouterr().out
    assert calls[-1]["config"].sensitivity == "high" and calls[-1]["config"].threshold is None
    with pytest.raises(SystemExit):
        cli_main([str(folder), str(tmp_path / "x"), "--phase", str(folder / "scan1_phase.nii.gz")])


def test_cli_runs_a_folder_and_returns_failure_status(tmp_path, fake_detect, capsys):
    calls = fake_detect(IJK)
    write_scans(tmp_path / "in", 2)
    assert cli_main([str(tmp_path / "in"), str(tmp_path / "out"), "--threshold", "0.7", "--no-yolo"]) == 0
    printed = capsys.readouterr().out
    assert calls[0]["config"].threshold == 0.7 and not calls[0]["config"].use_yolo
    assert "scan2.nii.gz (2/2): 3D CNN" in printed and "2 scan(s) ok, 0 failed" in printed
    (tmp_path / "in" / "bad.nii").write_bytes(b"garbage")
    assert cli_main([str(tmp_path / "in"), str(tmp_path / "out2")]) == 1
    assert cli_main([str(tmp_path / "in" / "bad.nii"), str(tmp_path / "out3")]) == 2
