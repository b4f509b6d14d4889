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
