"""Volume node <-> array + Geometry round trip, and voxel detections -> fiducials at the right RAS."""

from __future__ import annotations

import numpy as np
import pytest
import vtk

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorMRML import volumes
from CMBDetectorMRML.logic import CMBDetectorLogic

SHAPE = (12, 20, 16)  # k, j, i


def oblique_geometry() -> Geometry:
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, -1.0]])
    return Geometry.from_parts(spacing=(0.5, 0.8, 2.5), origin=(-30.0, 12.5, 40.0), direction=direction)


def node_matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return volumes.matrix_to_numpy(m)


@pytest.fixture
def volume(scene):
    array = np.random.default_rng(0).uniform(10, 200, SHAPE).astype(np.float32)
    return volumes.volume_from_array(scene, array, oblique_geometry(), "swi"), array


def test_volume_round_trip_keeps_array_and_geometry(volume):
    node, array = volume
    out, geometry = volumes.volume_to_array(node)
    np.testing.assert_array_equal(out, array)
    np.testing.assert_allclose(geometry.ijk_to_ras, oblique_geometry().ijk_to_ras, atol=1e-9)
    np.testing.assert_allclose(geometry.ijk_to_ras, node_matrix(node), atol=1e-12)
    out[:] = 0  # a copy: the node keeps its voxels
    assert volumes.volume_to_array(node)[0].max() > 0


def test_linear_parent_transform_is_applied(scene, volume):
    node, _ = volume
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -3.0, 7.0)
    transform.SetMatrixTransformToParent(volumes.numpy_to_matrix(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    _, geometry = volumes.volume_to_array(node)
    np.testing.assert_allclose(geometry.ijk_to_ras, shift @ node_matrix(node), atol=1e-9)


def test_nonlinear_parent_transform_is_refused(scene, volume):
    node, _ = volume
    transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(CMBDetectorError, match="non-linear transform"):
        volumes.volume_to_array(node)


@pytest.mark.parametrize("node_class", ["vtkMRMLLabelMapVolumeNode", "vtkMRMLVectorVolumeNode"])
def test_labelmap_and_vector_nodes_are_refused(scene, node_class):
    node = scene.AddNewNodeByClass(node_class, "bad")
    with pytest.raises(CMBDetectorError, match="select a scalar"):
        volumes.volume_to_array(node)


def test_empty_volume_node_is_refused(scene):
    with pytest.raises(CMBDetectorError, match="no image data"):
        volumes.volume_to_array(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))


def test_voxel_detection_becomes_fiducial_at_matrix_position(volume, fake_detect):
    node, _ = volume
    ijk = [(3.0, 7.0, 5.0), (10.5, 2.25, 9.0)]
    fake_detect(ijk)
    out = CMBDetectorLogic().process(node)
    matrix = node_matrix(node)
    fiducials = out.fiducialNode
    assert fiducials.GetNumberOfControlPoints() == 2
    for index, point in enumerate(ijk):
        expected = (matrix @ np.array([*point, 1.0]))[:3]
        position = [0.0, 0.0, 0.0]
        fiducials.GetNthControlPointPositionWorld(index, position)
        np.testing.assert_allclose(position, expected, atol=1e-6)


def test_labelmap_mask_on_other_grid_is_resampled(scene, volume, fake_detect):
    node, _ = volume
    coarse = Geometry.from_parts(spacing=(1.0, 1.6, 5.0), origin=oblique_geometry().origin,
                                 direction=oblique_geometry().direction)
    labels = np.zeros((6, 10, 8), np.uint8)
    labels[1:5, 2:8, 2:6] = 1
    mask_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "brain")
    import slicer

    slicer.util.updateVolumeFromArray(mask_node, labels)
    mask_node.SetIJKToRASMatrix(volumes.numpy_to_matrix(coarse.ijk_to_ras))
    mask = volumes.mask_to_array(mask_node, node)
    assert mask.shape == SHAPE and mask.dtype == bool
    # Voxel (i=6, j=8, k=4) of the input lies at coarse voxel (3, 4, 2): inside the box.
    assert mask[4, 8, 6] and not mask[0, 0, 0]
    calls = fake_detect([(1.0, 1.0, 1.0)])
    CMBDetectorLogic().process(node, maskNode=mask_node)
    np.testing.assert_array_equal(calls[0]["mask"], mask)


def test_segmentation_mask_is_exported_on_input_grid_without_leftover_nodes(scene, volume):
    import slicer

    node, _ = volume
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:9, 4:15, 3:12] = 1
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "brain")
    slicer.util.updateVolumeFromArray(label_node, labels)
    label_node.SetIJKToRASMatrix(volumes.numpy_to_matrix(oblique_geometry().ijk_to_ras))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "brain seg")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, segmentation)
    n_nodes = scene.GetNumberOfNodes()
    mask = volumes.mask_to_array(segmentation, node)
    np.testing.assert_array_equal(mask, labels > 0)
    assert scene.GetNumberOfNodes() == n_nodes


def test_empty_mask_is_refused(scene, volume):
    import slicer

    node, _ = volume
    mask_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "empty")
    slicer.util.updateVolumeFromArray(mask_node, np.zeros(SHAPE, np.uint8))
    mask_node.SetIJKToRASMatrix(volumes.numpy_to_matrix(oblique_geometry().ijk_to_ras))
    with pytest.raises(CMBDetectorError, match="does not overlap"):
        volumes.mask_to_array(mask_node, node)
