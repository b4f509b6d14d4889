"""The registered MARS atlas as an optional label-map overlay on the scan, with its colour table."""

from __future__ import annotations

import numpy as np
import slicer

from CMBDetectorLib.regions import REGIONS
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.location import atlas_on_scan

from . import volumes

# Lobar regions warm, deep regions blue / violet, infratentorial green (RGB 0-1).
REGION_COLORS = {
    1: (0.35, 0.75, 0.35), 2: (0.6, 0.9, 0.45),
    3: (0.25, 0.45, 0.9), 4: (0.45, 0.3, 0.85), 5: (0.3, 0.7, 0.95), 6: (0.55, 0.55, 1.0),
    7: (0.75, 0.45, 0.95), 8: (0.7, 0.8, 0.95),
    9: (0.95, 0.45, 0.3), 10: (0.95, 0.75, 0.25), 11: (0.9, 0.35, 0.55), 12: (0.95, 0.6, 0.45),
    13: (0.8, 0.55, 0.2),
}


def color_table(scene, name: str):
    """A new colour table node naming the MARS labels (0 = background, transparent)."""
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode", scene.GenerateUniqueName(name))
    colors.SetTypeToUser()
    colors.SetNumberOfColors(max(REGIONS) + 1)
    colors.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for value, (region, _) in REGIONS.items():
        colors.SetColor(value, region, *REGION_COLORS[value], 1.0)
    return colors


def add_overlay(volume_node, registration, name: str | None = None):
    """Add the atlas resampled onto ``volume_node``'s grid as a new ``vtkMRMLLabelMapVolumeNode``."""
    if registration is None or not registration.ok:
        reason = "the location stage did not run" if registration is None else registration.message
        raise CMBDetectorError(f"No atlas overlay for '{volume_node.GetName()}': {reason}")
    scene = volume_node.GetScene()
    geometry = volumes.world_geometry(volume_node)
    shape = tuple(int(n) for n in volume_node.GetImageData().GetDimensions()[::-1])
    labels = atlas_on_scan(registration, geometry, shape)
    base = name or f"{volume_node.GetName()} MARS regions"
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(base))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(labels))
    node.SetIJKToRASMatrix(volumes.numpy_to_matrix(geometry.ijk_to_ras))
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetAndObserveColorNodeID(color_table(scene, f"{base} colours").GetID())
    return node
