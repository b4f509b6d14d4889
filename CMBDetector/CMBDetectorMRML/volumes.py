"""Volume nodes <-> ``[k, j, i]`` arrays with world IJK-to-RAS geometry, and brain masks."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry, read_image, to_sitk
from CMBDetectorLib.scanfiles import scan_name


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def world_geometry(node) -> Geometry:
    """IJK -> world RAS of a volume node, including linear parent transforms.

    Raises CMBDetectorError for a non-linear (warping) parent transform: harden it first.
    """
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    m = matrix_to_numpy(ijk_to_ras)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise CMBDetectorError(
                f"'{node.GetName()}' is under the non-linear transform '{parent.GetName()}'. "
                "Harden the transform (Data module, right-click > Harden transform) and run again.")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        m = matrix_to_numpy(to_world) @ m
    return Geometry(m)


def _image_array(node, what: str) -> np.ndarray:
    image = node.GetImageData() if node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        raise CMBDetectorError(f"The {what} has no image data: load or select a volume.")
    if image.GetNumberOfScalarComponents() != 1:
        raise CMBDetectorError(
            f"The {what} '{node.GetName()}' has {image.GetNumberOfScalarComponents()} components per voxel "
            "(RGB/vector); select a single-channel magnitude volume.")
    return np.array(slicer.util.arrayFromVolume(node), copy=True)


def volume_to_array(node) -> tuple[np.ndarray, Geometry]:
    """Copy a scalar volume node's voxels as ``[k, j, i]`` and return them with world geometry.

    The node is never modified. Labelmaps, vector/tensor volumes and empty nodes are refused.
    """
    if node is None:
        raise CMBDetectorError("No input volume selected.")
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise CMBDetectorError(
            f"'{node.GetName()}' is a {node.GetClassName()}; select a scalar (SWI or T2*-GRE magnitude) volume.")
    if node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLTensorVolumeNode"):
        raise CMBDetectorError(f"'{node.GetName()}' is a vector/tensor volume; select a scalar magnitude volume.")
    array = _image_array(node, "input volume")
    return array, world_geometry(node)


def _same_grid(shape_a, geom_a: Geometry, shape_b, geom_b: Geometry) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(geom_a.ijk_to_ras, geom_b.ijk_to_ras, atol=1e-4)


def _resample_nearest(array: np.ndarray, geometry: Geometry, shape, reference: Geometry) -> np.ndarray:
    reference_image = to_sitk(np.zeros(shape, dtype=np.uint8), reference)
    moving = to_sitk(array.astype(np.uint8), geometry)
    resampled = sitk.Resample(moving, reference_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(resampled)


def _segmentation_to_labelmap(segmentation_node, reference_node) -> np.ndarray:
    """Export visible segments on the reference grid; temporary nodes are removed again."""
    scene = segmentation_node.GetScene()
    if scene is None or reference_node.GetScene() is not scene:
        raise CMBDetectorError("The brain mask segmentation and the input volume must be in the same scene.")
    before = {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}
    try:
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__CMBDetector_mask__")
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportVisibleSegmentsToLabelmapNode(
            segmentation_node, labelmap, reference_node)
        if not ok or labelmap.GetImageData() is None:
            raise CMBDetectorError(f"Could not convert segmentation '{segmentation_node.GetName()}' to a mask.")
        return np.array(slicer.util.arrayFromVolume(labelmap), copy=True)
    finally:
        added = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
        for node in reversed([n for n in added if n.GetID() not in before]):
            scene.RemoveNode(node)


def mask_to_array(mask_node, reference_node) -> np.ndarray:
    """Brain mask (labelmap volume or segmentation) as a bool ``[k, j, i]`` array on the reference grid.

    A labelmap on another grid is resampled (nearest neighbour, world coordinates); a
    segmentation is exported onto the reference volume. An empty mask is refused.
    """
    ref_array_shape = tuple(reversed(reference_node.GetImageData().GetDimensions()))
    ref_geometry = world_geometry(reference_node)
    if mask_node.IsA("vtkMRMLSegmentationNode"):
        if mask_node.GetSegmentation().GetNumberOfSegments() == 0:
            raise CMBDetectorError(f"Brain mask segmentation '{mask_node.GetName()}' has no segments.")
        labels = _segmentation_to_labelmap(mask_node, reference_node)
    elif mask_node.IsA("vtkMRMLLabelMapVolumeNode"):
        labels = _image_array(mask_node, "brain mask")
        mask_geometry = world_geometry(mask_node)
        if not _same_grid(labels.shape, mask_geometry, ref_array_shape, ref_geometry):
            labels = _resample_nearest(labels > 0, mask_geometry, ref_array_shape, ref_geometry)
    else:
        raise CMBDetectorError(
            f"Brain mask '{mask_node.GetName()}' is a {mask_node.GetClassName()}; "
            "use a labelmap volume or a segmentation.")
    mask = labels > 0
    if mask.shape != ref_array_shape:
        raise CMBDetectorError(f"Brain mask grid {mask.shape} does not match the input volume {ref_array_shape}.")
    if not mask.any():
        raise CMBDetectorError(f"Brain mask '{mask_node.GetName()}' does not overlap the input volume.")
    return mask


def phase_to_array(phase_node, reference_node) -> np.ndarray:
    """Phase image as a ``[k, j, i]`` array; it must share the magnitude volume's grid
    (phase cannot be interpolated across wraps)."""
    phase = _image_array(phase_node, "phase volume")
    ref_shape = tuple(reversed(reference_node.GetImageData().GetDimensions()))
    if not _same_grid(phase.shape, world_geometry(phase_node), ref_shape, world_geometry(reference_node)):
        raise CMBDetectorError(
            f"Phase volume '{phase_node.GetName()}' is not on the grid of '{reference_node.GetName()}' "
            "(size, spacing, origin or orientation differ); select the phase of the same acquisition.")
    return phase


def volume_from_array(scene, array: np.ndarray, geometry: Geometry, name: str):
    """Add a new ``vtkMRMLScalarVolumeNode`` holding ``array`` with ``geometry`` to ``scene``."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(numpy_to_matrix(geometry.ijk_to_ras))
    return node


def load_volume(scene, path):
    """Read an image file (SimpleITK) into a new scalar volume node named after the file."""
    array, geometry = read_image(path)
    if array.ndim != 3:
        raise CMBDetectorError(f"'{path}' is not a 3D scalar volume (array shape {array.shape}).")
    return volume_from_array(scene, array, geometry, scan_name(path))
