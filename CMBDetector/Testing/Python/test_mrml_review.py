"""Review state on a real MRML scene: records keyed by point ID, kept in step with the points.

Edits the Markups module allows (description, label, delete, move, add, selected flag) must not
change a decision nor leave the table behind; .mrk.json and .mrb round trips give back every
decision; files of earlier versions (records in descriptions) migrate.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
import vtk

from CMBDetectorLib.geometry import Geometry
from CMBDetectorMRML import markups, point_records, tables, volumes
from CMBDetectorMRML.logic import CMBDetectorLogic
from CMBDetectorMRML.review_cursor import CURRENT_COLOR, ReviewCursor
from CMBDetectorMRML.review_sync import ReviewSync
from CMBDetectorMRML.scene import new_scene

GEOMETRY = Geometry.from_parts(spacing=(0.8, 0.8, 1.5), origin=(80.0, -100.0, -30.0),
                               direction=np.diag([-1.0, 1.0, 1.0]))
SHAPE = (16, 24, 24)
IJK = [(4.0, 5.0, 3.0), (15.0, 8.0, 6.0), (10.0, 20.0, 11.0), (20.0, 3.0, 2.0)]
DECISIONS = ["accepted", "rejected", "pending", "rejected"]


@pytest.fixture
def reviewed(scene, fake_detect):
    """Four detections CMB-1..4 decided as DECISIONS, with their table."""
    volume = volumes.volume_from_array(scene, np.zeros(SHAPE, np.float32), GEOMETRY, "scan")
    fake_detect(IJK)
    out = CMBDetectorLogic().process(volume)
    for i, status in enumerate(DECISIONS):
        markups.set_status(out.fiducialNode, i, status)
    tables.update_table(out.tableNode, out.fiducialNode)
    return out


def statuses(node) -> list[tuple[str, str, str]]:
    return [(p.label, p.status, p.source) for p in markups.points(node)]


def table_rows(out) -> list[tuple[str, str, str]]:
    return [(r["label"], r["status"], r["source"]) for r in tables.rows_from_table(out.tableNode)]


def tally(node) -> tuple[int, int, int, int]:
    c = markups.counts(node)
    return c.accepted, c.rejected, c.pending, c.reader_added


def stored_ids(node) -> set[str]:
    """Control point IDs that have a record in the saved measurement."""
    return set(json.loads(node.GetMeasurement(point_records.MEASUREMENT_NAME).GetDescription())["points"])


def test_editing_description_or_label_leaves_decisions_alone(reviewed):
    node = reviewed.fiducialNode
    ReviewSync(node)
    before = [p.status for p in markups.points(node)]
    forged = json.dumps({"cmbdetector": 1, "status": "accepted", "source": "detector"})
    node.SetNthControlPointDescription(1, forged)  # what an earlier version would have read
    node.SetNthControlPointDescription(3, "looks like a vessel")
    node.SetNthControlPointLabel(2, "my favourite")
    assert [p.status for p in markups.points(node)] == before == DECISIONS
    assert tally(node) == (1, 2, 1, 0)
    assert node.GetNthControlPointDescription(3) == "looks like a vessel"  # the user's text is kept
    assert table_rows(reviewed)[2] == ("my favourite", "pending", "detector")


def test_deleting_points_keeps_each_decision_with_its_point(reviewed):
    node = reviewed.fiducialNode
    sync = ReviewSync(node)
    node.RemoveNthControlPoint(1)
    assert statuses(node) == [("CMB-1", "accepted", "detector"), ("CMB-3", "pending", "detector"),
                              ("CMB-4", "rejected", "detector")]
    assert table_rows(reviewed) == statuses(node) and tally(node) == (1, 1, 1, 0)
    node.RemoveNthControlPoint(2)  # the rejected CMB-4
    index = node.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0), "F-1")
    assert statuses(node)[index] == ("Reader-1", "accepted", "reader")
    assert table_rows(reviewed) == statuses(node) and tally(node) == (1, 0, 1, 1)
    sync.stop()


def test_reordered_and_inserted_points_keep_their_decisions(reviewed):
    node = reviewed.fiducialNode
    ReviewSync(node)
    node.SwapControlPoints(0, 3)  # the Markups module's move up / down
    node.InsertControlPoint(1, vtk.vtkVector3d(0.0, 0.0, 0.0), "")
    assert statuses(node) == table_rows(reviewed) == [
        ("CMB-4", "rejected", "detector"), ("Reader-1", "accepted", "reader"), ("CMB-2", "rejected", "detector"),
        ("CMB-3", "pending", "detector"), ("CMB-1", "accepted", "detector")]


def test_a_reused_id_never_inherits_a_deleted_decision_even_unobserved(reviewed):
    node = reviewed.fiducialNode  # no ReviewSync: e.g. edited while the module was never opened
    first_id = node.GetNthControlPointID(0)  # CMB-1, accepted by the detector's record
    node.RemoveAllControlPoints()
    index = node.AddControlPoint(vtk.vtkVector3d(5.0, 5.0, 5.0), "F-1")
    assert node.GetNthControlPointID(index) == first_id  # Slicer hands the ID out again
    p = markups.point_info(node, index)
    assert (p.status, p.source, p.score) == ("accepted", "reader", None)
    assert tally(node) == (0, 0, 0, 1)
    markups.update_point_data(node, index, note="checked")  # the stale record goes at the next write
    assert stored_ids(node) == {first_id} and markups.point_data(node, index)["source"] == "reader"


def test_moving_a_point_updates_table_position_and_voxel(reviewed):
    node = reviewed.fiducialNode
    ReviewSync(node)
    target = GEOMETRY.ijk_to_ras_points([7.0, 9.0, 12.0])[0]
    node.SetNthControlPointPositionWorld(2, *target)
    row = tables.rows_from_table(reviewed.tableNode)[2]
    np.testing.assert_allclose([row["R"], row["A"], row["S"]], target, atol=1e-6)
    np.testing.assert_allclose([row["I"], row["J"], row["K"]], (7, 9, 12), atol=1e-3)
    assert (row["label"], row["status"]) == ("CMB-3", "pending")
    assert markups.point_info(node, 2).score is not None  # the detector's scores stay with the point
    # dragged in a view: one update when the point is dropped, none per mouse move
    node.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent)
    node.SetNthControlPointPositionWorld(2, *GEOMETRY.ijk_to_ras_points([3.0, 4.0, 5.0])[0])
    assert tables.rows_from_table(reviewed.tableNode)[2]["I"] == pytest.approx(7, abs=1e-3)
    node.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)
    row = tables.rows_from_table(reviewed.tableNode)[2]
    np.testing.assert_allclose([row["I"], row["J"], row["K"]], (3, 4, 5), atol=1e-3)


def test_point_added_outside_the_module_becomes_an_accepted_reader_row(reviewed):
    node = reviewed.fiducialNode
    changes = []
    ReviewSync(node, changed=lambda: changes.append(node.GetNumberOfControlPoints()))
    changes.clear()
    ras = GEOMETRY.ijk_to_ras_points([8.0, 8.0, 8.0])[0]
    index = node.AddControlPointWorld(vtk.vtkVector3d(*ras), "Markups-5")  # as Markups placement does
    p = markups.point_info(node, index)
    assert (p.label, p.status, p.source) == ("Reader-1", "accepted", "reader")
    np.testing.assert_allclose(p.ijk, (8, 8, 8), atol=1e-3)
    assert table_rows(reviewed)[index] == ("Reader-1", "accepted", "reader")
    assert tally(node) == (1, 2, 1, 1) and changes and changes[-1] == 5
    assert node.GetNthControlPointLocked(index) and not node.GetNthControlPointSelected(index)


def test_point_placed_in_a_view_counts_once_it_is_clicked(reviewed):
    node = reviewed.fiducialNode
    ReviewSync(node)
    was_modifying = node.StartModify()  # place mode: a preview point appears and follows the mouse
    index = node.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0), "")
    node.SetNthControlPointPosition(index, 0.0, 0.0, 0.0, node.PositionPreview)
    node.EndModify(was_modifying)
    for x in (1.0, 2.0, 3.0):
        node.SetNthControlPointPosition(index, x, 0.0, 0.0, node.PositionPreview)
    assert len(markups.points(node)) == 4 and len(table_rows(reviewed)) == 4 and tally(node) == (1, 2, 1, 0)
    node.SetNthControlPointPosition(index, 4.0, 0.0, 0.0)  # the click
    assert table_rows(reviewed)[index] == ("Reader-1", "accepted", "reader") and tally(node) == (1, 2, 1, 1)


def test_status_changes_and_selection_toggles_are_synced(reviewed):
    node = reviewed.fiducialNode
    ReviewSync(node)
    markups.set_status(node, 2, "accepted")  # straight to MRML glue: no explicit table refresh
    assert table_rows(reviewed)[2] == ("CMB-3", "accepted", "detector")
    node.SetNthControlPointSelected(0, True)  # the Markups module's "selected" box
    assert not node.GetNthControlPointSelected(0) and markups.get_status(node, 0) == "accepted"


def test_stopped_sync_no_longer_touches_the_table(reviewed):
    node = reviewed.fiducialNode
    sync = ReviewSync(node)
    sync.stop()
    node.RemoveNthControlPoint(0)
    assert len(tables.rows_from_table(reviewed.tableNode)) == 4


def test_mrk_json_round_trip_gives_back_every_decision(reviewed, tmp_path):
    node = reviewed.fiducialNode
    ReviewSync(node)
    node.RemoveNthControlPoint(0)
    node.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0), "")
    path = tmp_path / "review.mrk.json"
    CMBDetectorLogic().saveMarkups(node, path)
    other = new_scene()
    reloaded = other.scene.GetNodeByID(other.markups_logic.LoadMarkups(str(path)))
    assert statuses(reloaded) == statuses(node) == [
        ("CMB-2", "rejected", "detector"), ("CMB-3", "pending", "detector"),
        ("CMB-4", "rejected", "detector"), ("Reader-1", "accepted", "reader")]
    assert [p.score for p in markups.points(reloaded)] == [p.score for p in markups.points(node)]
    ReviewSync(reloaded)  # selecting it in the module changes nothing to save
    assert not reloaded.GetModifiedSinceRead()
    markups.update_point_data(reloaded, 1, region="temporal")
    assert reloaded.GetModifiedSinceRead()  # a record change alone is offered for saving
    reloaded.SetNthControlPointDescription(0, "edited after reload")
    assert markups.get_status(reloaded, 0) == "rejected" and markups.has_review(reloaded)


def test_mrb_round_trip_gives_back_decisions_table_and_links(reviewed, headless, tmp_path):
    node = reviewed.fiducialNode
    ReviewSync(node)
    node.RemoveNthControlPoint(2)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert headless.application_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle), None)
    assert headless.application_logic.Zip(str(tmp_path / "review.mrb"), str(bundle))
    other = new_scene()
    (tmp_path / "open").mkdir()
    assert other.application_logic.OpenSlicerDataBundle(str(tmp_path / "review.mrb"), str(tmp_path / "open"))
    reloaded = other.scene.GetFirstNodeByName(node.GetName())
    assert statuses(reloaded) == statuses(node) and tally(reloaded) == tally(node) == (1, 2, 0, 0)
    table = reloaded.GetNodeReference(markups.TABLE_ROLE)
    assert [r["status"] for r in tables.rows_from_table(table)] == ["accepted", "rejected", "rejected"]
    assert reloaded.GetNodeReference(markups.VOLUME_ROLE).GetName() == "scan"


def legacy_file(scene, path) -> list[tuple[str, str, str]]:
    """A .mrk.json as earlier versions wrote it: the record JSON in each point description."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "old review")
    expected = []
    for n, (status, source) in enumerate([("accepted", "detector"), ("rejected", "detector"),
                                          ("pending", "detector"), ("accepted", "reader")], start=1):
        label = f"CMB-{n}" if source == "detector" else "Reader-1"
        index = node.AddControlPoint(vtk.vtkVector3d(float(n), 0.0, 0.0), label)
        node.SetNthControlPointDescription(index, json.dumps(
            {"cmbdetector": 1, "status": status, "source": source, "score": 0.9 - 0.1 * n, "diameter_mm": 3.0,
             "location": "lobar", "ijk": [n, 0, 0]}))
        expected.append((label, status, source))
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    return expected


def test_file_of_an_earlier_version_reads_and_migrates(scene, tmp_path):
    expected = legacy_file(scene, tmp_path / "old.mrk.json")
    other = new_scene()
    node = other.scene.GetNodeByID(other.markups_logic.LoadMarkups(str(tmp_path / "old.mrk.json")))
    assert statuses(node) == expected and tally(node) == (1, 1, 1, 1)  # read before migration
    ReviewSync(node)  # what selecting it in the module does
    assert point_records.has_store(node)
    assert statuses(node) == expected and markups.point_info(node, 0).score == pytest.approx(0.8)
    assert all(node.GetNthControlPointDescription(i) == "" for i in range(4))
    node.SetNthControlPointDescription(1, json.dumps({"cmbdetector": 1, "status": "accepted"}))
    assert markups.get_status(node, 1) == "rejected"
    path = tmp_path / "migrated.mrk.json"
    CMBDetectorLogic().saveMarkups(node, path)
    third = new_scene()
    assert statuses(third.scene.GetNodeByID(third.markups_logic.LoadMarkups(str(path)))) == expected


def test_point_data_holds_extra_fields_other_features_add(reviewed, tmp_path):
    node = reviewed.fiducialNode
    markups.update_point_data(node, 1, region="frontal", side="left", measured_mm=4.2)
    data = markups.point_data(node, 1)
    assert (data["region"], data["side"], data["measured_mm"], data["status"]) == ("frontal", "left", 4.2, "rejected")
    assert "_label" not in data and "_xyz" not in data
    changes = []
    ReviewSync(node, changed=lambda: changes.append(1))
    changes.clear()
    markups.update_point_data(node, 0, region="occipital")  # no point flag changes: observers still hear it
    assert changes and markups.point_data(node, 0)["region"] == "occipital"
    path = tmp_path / "extra.mrk.json"
    CMBDetectorLogic().saveMarkups(node, path)
    other = new_scene()
    reloaded = other.scene.GetNodeByID(other.markups_logic.LoadMarkups(str(path)))
    assert markups.point_data(reloaded, 1) == data


def test_cursor_follows_its_point_and_highlights_it(reviewed):
    node = reviewed.fiducialNode
    cursor = ReviewCursor(node)
    assert cursor.index == -1 and cursor.step(+1) == 0
    assert cursor.step(+1) == 1 and cursor.step(-1) == 0 and cursor.step(-1) == 3  # wraps
    display = node.GetDisplayNode()
    assert display.GetActiveControlPoint() == 3 and display.GetActiveColor() == pytest.approx(CURRENT_COLOR)
    cursor.go_to(2)
    node.RemoveNthControlPoint(0)
    assert cursor.index == 1 and node.GetNthControlPointLabel(cursor.index) == "CMB-3"
    node.RemoveNthControlPoint(1)  # the current point itself: stepping goes on from where it was
    assert cursor.index == -1
    assert cursor.step(+1) == 1 and node.GetNthControlPointLabel(1) == "CMB-4"
    assert cursor.step(+1, pending_only=True) == -1 and display.GetActiveControlPoint() == -1
