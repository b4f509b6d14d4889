"""Location in the scene: region / side on points, table and CSV, the reader's region correction,
the atlas overlay, and the Logic's fallback when registration is impossible."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from CMBDetectorLib.atlas import load_region_atlas
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.registration import AtlasRegistration
from CMBDetectorMRML import markups, tables, volumes
from CMBDetectorMRML.logic import CMBDetectorLogic

from conftest import result_from_ijk

GEOMETRY = Geometry.from_parts(spacing=(2.0, 2.0, 2.0), origin=(-40.0, -60.0, -30.0))
SHAPE = (30, 40, 40)  # k, j, i: -40..38 R, -60..18 A, -30..28 S in MNI mm


@pytest.fixture
def volume(scene):
    array = np.random.default_rng(2).uniform(20, 300, SHAPE).astype(np.float32)
    return volumes.volume_from_array(scene, array, GEOMETRY, "scan")


def test_region_and_side_reach_points_table_and_csv_and_reader_can_correct(scene, tmp_path):
    result = result_from_ijk(GEOMETRY, [(5, 6, 7), (20, 10, 8)], locations=["deep", "lobar"])
    result.detections[0] = replace(result.detections[0], region="thalamus", side="right")
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "cmbs")
    markups.fill_fiducials(node, result)
    assert [(p.location, p.region, p.side) for p in markups.points(node)] == \
        [("deep", "thalamus", "right"), ("lobar", "unknown", "unknown")]
    logic = CMBDetectorLogic()
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    node.SetNodeReferenceID(markups.TABLE_ROLE, table.GetID())
    logic.setPointRegion(node, 0, "cerebellum")
    assert (markups.point_info(node, 0).location, markups.point_info(node, 0).region,
            markups.point_info(node, 0).side) == ("infratentorial", "cerebellum", "right")
    assert markups.get_status(node, 0) == markups.PENDING  # the correction keeps the review state
    rows = tables.rows_from_table(table)
    assert (rows[0]["location"], rows[0]["region"], rows[0]["side"]) == ("infratentorial", "cerebellum", "right")
    logic.exportCSV(node, tmp_path / "out.csv")
    with open(tmp_path / "out.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert (first["region"], first["side"]) == ("cerebellum", "right")
    with pytest.raises(CMBDetectorError, match="Unknown region"):
        logic.setPointRegion(node, 1, "hippocampus")
    logic.setPointRegion(node, 1, "unknown")
    assert markups.point_info(node, 1).location == "unknown"
    assert markups.get_status(node, 1) == markups.PENDING and markups.has_review(node)  # corrections are kept


def test_a_rerun_keeps_a_list_whose_regions_the_reader_corrected(volume, fake_detect):
    fake_detect([(5, 6, 7)], locations=["lobar"])
    logic = CMBDetectorLogic()
    first = logic.process(volume)
    assert not markups.has_review(first.fiducialNode)
    logic.setPointRegion(first.fiducialNode, 0, "thalamus")
    again = logic.process(volume, outputFiducialNode=first.fiducialNode)
    assert again.fiducialNode is not first.fiducialNode
    assert markups.point_info(first.fiducialNode, 0).region == "thalamus"


def test_atlas_overlay_is_the_atlas_on_the_scan_grid(volume):
    identity = AtlasRegistration(sitk.Transform(3, sitk.sitkIdentity), True, "")  # scan already in MNI space
    node = CMBDetectorLogic().showAtlasOverlay(volume, identity)
    assert node.IsA("vtkMRMLLabelMapVolumeNode") and node is not volume
    labels = slicer.util.arrayFromVolume(node)
    kji = np.argwhere(labels >= 0)[::97]
    ras = GEOMETRY.ijk_to_ras_points(kji[:, ::-1])
    expected = [lab.region for lab in load_region_atlas().region_at(ras)]
    colors = node.GetDisplayNode().GetColorNode()
    got = [colors.GetColorName(int(labels[tuple(p)])) if labels[tuple(p)] else "unknown" for p in kji]
    agree = np.mean([a == b for a, b in zip(expected, got)])
    assert agree > 0.9  # nearest-voxel lookup vs resampling differ only on region borders
    assert len(set(got) - {"unknown"}) >= 5


def test_logic_labels_unknown_and_warns_when_registration_is_impossible(volume, fake_detect):
    fake_detect([(5, 6, 7), (20, 10, 8)], locations=["lobar", "deep"], real_location=True)
    logic = CMBDetectorLogic()
    out = logic.process(volume)
    assert out.registration is not None and not out.registration.ok
    assert out.registration.message in out.result.warnings
    assert {(p.location, p.region, p.side) for p in markups.points(out.fiducialNode)} == {("unknown",) * 3}
    assert {r["region"] for r in tables.rows_from_table(out.tableNode)} == {"unknown"}
    with pytest.raises(CMBDetectorError, match="No atlas overlay"):
        logic.showAtlasOverlay(volume, out.registration)


def test_reader_points_get_the_region_of_the_run_that_made_the_list(scene, volume, fake_detect, monkeypatch):
    """A missed microbleed the reader adds (panel or a click in a view) is located through the
    run's registration, so that it does not turn the pattern "undetermined"."""
    import vtk

    from CMBDetectorLib import location
    from CMBDetectorMRML import readout
    from CMBDetectorMRML.review_sync import ReviewSync

    fake_detect([(5, 6, 7)], locations=["lobar"])
    identity = AtlasRegistration(sitk.Transform(3, sitk.sitkIdentity), True, "")  # scan already in MNI space
    monkeypatch.setattr(location, "locate", lambda result, *args, **kwargs: location.Located(result, identity))
    logic = CMBDetectorLogic()
    node = logic.process(volume).fiducialNode
    added = markups.point_info(node, logic.addReaderPoint(node, (12.0, -18.0, 7.0)))
    assert (added.location, added.region, added.side) == ("deep", "thalamus", "right")
    sync = ReviewSync(node, locate=lambda ras: logic.pointRegion(node, ras))
    clicked = node.AddControlPointWorld(vtk.vtkVector3d(-24.0, 2.0, 2.0), "")  # as placed in a view
    p = markups.point_info(node, clicked)
    assert (p.source, p.location, p.region, p.side) == (markups.READER, "deep", "basal_ganglia", "left")
    node.SetNthControlPointPositionWorld(clicked, 30.0, 10.0, 25.0)  # dragged into the right white matter
    p = markups.point_info(node, clicked)
    assert (p.location, p.region, p.side) == ("deep", "deep_white_matter", "right")
    node.SetNthControlPointPositionWorld(clicked, -24.0, 2.0, 2.0)
    sync.stop()
    assert readout.read_out(node).pattern == "deep"  # the definite ones: both reader points
    loaded = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "from a file")  # no run in this session
    other = markups.point_info(loaded, logic.addReaderPoint(loaded, (12.0, -18.0, 7.0)))
    assert (other.location, other.region, other.side) == ("unknown",) * 3
